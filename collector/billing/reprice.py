"""Stored energy windows and sessions re-priced with the site's (corrected) price rows.

Pure functions: the `irve recompute` command reads the stored points and publishes what these
return. A window keeps its start, point and period (so it overwrites the stored point: same
series, same time) and its energy; only its price and cost change. The period is kept as
stored: a correction of prices, not of HC schedules.

Tempo windows keep their hours (HP or HC) but take their day's colour as known now: a window
priced at the fallback colour (`tempo_fallback`) becomes the day's real period once its colour
is published. Its period is a tag, so the re-coloured window is a new point: the old one is
republished with no energy and no cost (`stale_window`), and a session's fields of the old
colour are republished at zero, so nothing is counted twice. `estimated` is kept as stored
(it cannot tell a gap from the colour); `tempo_fallback` turns false.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.billing.source import StoredWindow
from collector.billing.statement import SessionUse
from collector.energy.intervals import cost_eur, window_end
from collector.energy.tariff import TEMPO_PERIODS, Tariff
from collector.wire.messages import EnergyMessage, Period, PeriodTotal, SessionMessage
from collector.wire.times import window_start


def recoloured(stored: str, tariff: Tariff, start: datetime) -> Period:
    """The period a stored window has now: a Tempo one takes its day's colour as known now."""
    if not stored.startswith("TEMPO_"):
        return stored  # type: ignore[return-value]
    return TEMPO_PERIODS[tariff.colour_at(start), stored.endswith("_HC")]


def repriced_window(w: StoredWindow, tariff: Tariff, window_s: int) -> EnergyMessage:
    period = recoloured(w.period, tariff, w.start)
    price = tariff.price(w.start, period)
    f = w.fields
    fallback: bool | None = None
    if period.startswith("TEMPO_") and (f.get("tempo_fallback") or tariff.fallback_at(w.start)):
        fallback = tariff.fallback_at(w.start)
    return EnergyMessage(
        start=w.start,
        end=window_end(w.start, tariff, window_s),
        energy_wh=w.energy_wh,
        period=period,
        price_eur_kwh=float(price),
        cost_eur=cost_eur(w.energy_wh, float(price)),
        index_start_wh=f.get("index_start_wh"),
        index_end_wh=f.get("index_end_wh"),
        estimated=bool(f.get("estimated")),
        tempo_fallback=fallback,
    )


def stale_window(w: StoredWindow, new: EnergyMessage) -> EnergyMessage | None:
    """The stored point to empty when re-colouring moved its window to another period."""
    if new.period == w.period:
        return None
    return EnergyMessage(
        start=w.start,
        end=new.end,
        energy_wh=0.0,
        period=w.period,
        price_eur_kwh=float(w.fields.get("price_eur_kwh") or 0.0),
        cost_eur=0.0,
        index_start_wh=None,
        index_end_wh=None,
        estimated=bool(w.fields.get("estimated")),
        tempo_fallback=False,
    )


@dataclass(frozen=True)
class PointWindow:
    point: str
    message: EnergyMessage
    stored_period: str = ""  # the period it was stored under, when re-colouring changed it

    @property
    def was(self) -> str:
        return self.stored_period or self.message.period


def session_end(s: SessionUse) -> datetime:
    return s.start + timedelta(seconds=s.duration_s)


def repriced_session(
    s: SessionUse, windows: Sequence[PointWindow], tariff: Tariff, window_s: int
) -> SessionMessage:
    """Each period's energy (as stored) at the energy-weighted new price of that period's
    windows during the session, so a session across a price change keeps both prices. A
    Tempo period's energy follows its windows to their colour as known now (shared by their
    energy); a period left with none is republished at zero."""
    end = session_end(s)
    first = window_start(s.start, window_s)
    sums: dict[Period, tuple[float, float]] = {}
    for name, (energy, _) in s.periods.items():
        inside = [
            w.message
            for w in windows
            if w.point == s.point and w.was == name and first <= w.message.start < end
        ]
        wh = sum(w.energy_wh for w in inside)
        if wh <= 0:
            period = recoloured(name, tariff, s.start)
            parts = {period: (energy, energy / 1000 * float(tariff.price(s.start, period)))}
        else:
            groups: dict[Period, list[EnergyMessage]] = {}
            for m in inside:
                groups.setdefault(m.period, []).append(m)
            parts = {}
            for period, group in groups.items():
                group_wh = sum(m.energy_wh for m in group)
                share = energy if len(groups) == 1 else energy * group_wh / wh
                # Weighted by the windows' prices, not their costs: those are rounded.
                price = sum(m.energy_wh * m.price_eur_kwh for m in group) / group_wh
                parts[period] = (share, share / 1000 * price)
        for period, (wh_part, eur_part) in parts.items():
            old_wh, old_eur = sums.get(period, (0.0, 0.0))
            sums[period] = (old_wh + wh_part, old_eur + eur_part)
    periods: dict[Period, PeriodTotal] = {
        p: PeriodTotal(energy_wh=round(e, 6), cost_eur=round(c, 6)) for p, (e, c) in sums.items()
    }
    for name in s.periods:
        stale: Period = name  # type: ignore[assignment]
        periods.setdefault(stale, PeriodTotal(energy_wh=0.0, cost_eur=0.0))
    return SessionMessage(
        event="end",
        session_id=s.session_id,
        ts=end,
        badge=s.badge,
        energy_wh=round(s.energy_wh, 6),
        cost_eur=round(sum(p.cost_eur for p in periods.values()), 6),
        duration_s=s.duration_s,
        max_power_w=s.max_power_w,
        start=s.start,
        periods=periods,
    )


def span(
    start: datetime, end: datetime, sessions: Sequence[SessionUse], window_s: int
) -> tuple[datetime, datetime]:
    """The range to republish: the asked one, widened to whole sessions that overlap it, so
    a session and its windows always carry the same prices."""
    lo = min([start] + [window_start(s.start, window_s) for s in sessions])
    hi = max([end] + [session_end(s) for s in sessions])
    return lo, hi
