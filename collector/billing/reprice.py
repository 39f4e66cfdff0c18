"""Stored energy windows and sessions re-priced with the site's (corrected) price rows.

Pure functions: the `irve recompute` command reads the stored points and publishes what these
return. A window keeps its start, point and period (so it overwrites the stored point: same
series, same time) and its energy; only its price and cost change. The period is kept as
stored: a correction of prices, not of HC schedules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.billing.source import StoredWindow
from collector.billing.statement import SessionUse
from collector.energy.intervals import cost_eur, window_end
from collector.energy.tariff import Tariff
from collector.wire.messages import EnergyMessage, Period, PeriodTotal, SessionMessage
from collector.wire.times import window_start


def repriced_window(w: StoredWindow, tariff: Tariff, window_s: int) -> EnergyMessage:
    period: Period = w.period  # type: ignore[assignment]
    price = tariff.price(w.start, period)
    f = w.fields
    return EnergyMessage(
        start=w.start,
        end=window_end(w.start, tariff, window_s),
        energy_wh=w.energy_wh,
        period=period,
        price_eur_kwh=price,
        cost_eur=cost_eur(w.energy_wh, price),
        index_start_wh=f.get("index_start_wh"),
        index_end_wh=f.get("index_end_wh"),
        estimated=bool(f.get("estimated")),
    )


@dataclass(frozen=True)
class PointWindow:
    point: str
    message: EnergyMessage


def session_end(s: SessionUse) -> datetime:
    return s.start + timedelta(seconds=s.duration_s)


def repriced_session(
    s: SessionUse, windows: Sequence[PointWindow], tariff: Tariff, window_s: int
) -> SessionMessage:
    """Each period's energy (as stored) at the energy-weighted new price of that period's
    windows during the session, so a session across a price change keeps both prices."""
    end = session_end(s)
    first = window_start(s.start, window_s)
    periods: dict[Period, PeriodTotal] = {}
    for name, (energy, _) in s.periods.items():
        period: Period = name  # type: ignore[assignment]
        inside = [
            w.message
            for w in windows
            if w.point == s.point and w.message.period == period and first <= w.message.start < end
        ]
        wh = sum(w.energy_wh for w in inside)
        if wh > 0:
            # Weighted by the windows' prices, not their costs: those are rounded to 6 decimals.
            cost = energy / 1000 * sum(w.energy_wh * w.price_eur_kwh for w in inside) / wh
        else:
            cost = energy / 1000 * tariff.price(s.start, period)
        periods[period] = PeriodTotal(energy_wh=energy, cost_eur=round(cost, 6))
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
