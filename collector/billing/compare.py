"""What a month's consumption cost under the contract in force, and under the other option.

Each stored energy window is re-priced with the site's price rows under both options. A
window of a Base contract is not cut at HP/HC boundaries, so under HP/HC it is shared
between periods in proportion to time (the same rule as for gaps). A Tempo contract is
compared with Base (with HP/HC when the site has HC ranges), its days at the colours known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from collector.billing.source import StoredWindow
from collector.config import ZERO
from collector.energy.intervals import window_end
from collector.energy.tariff import Tariff


def split_cost(
    tariff: Tariff, start: datetime, end: datetime, energy_wh: float
) -> dict[str, tuple[float, Decimal]]:
    """Energy drawn evenly over [start, end) -> {period: (Wh, EUR)} under `tariff`; the cost
    in Decimal (the binary energy taken exactly), so a year of windows adds up exactly."""
    out: dict[str, tuple[float, Decimal]] = {}
    total = (end - start).total_seconds()
    t = start
    assigned = 0.0
    while t < end:
        piece_end = min(tariff.next_boundary(t), end)
        # The last piece takes the rest: a window in one period keeps its energy to the bit
        # (x * s / s is not always x in binary).
        if piece_end == end or not total:
            share = energy_wh - assigned
        else:
            share = energy_wh * (piece_end - t).total_seconds() / total
        assigned += share
        period, price = tariff.rate_at(t)
        wh, eur = out.get(period, (0.0, ZERO))
        out[period] = (wh + share, eur + Decimal(share) / 1000 * price)
        t = piece_end
    return out


@dataclass
class OptionCost:
    option: str
    by_period: dict[str, tuple[float, Decimal]] = field(default_factory=dict)

    def add(self, parts: dict[str, tuple[float, Decimal]]) -> None:
        for period, (wh, eur) in parts.items():
            old_wh, old_eur = self.by_period.get(period, (0.0, ZERO))
            self.by_period[period] = (old_wh + wh, old_eur + eur)

    @property
    def energy_wh(self) -> float:
        return sum(wh for wh, _ in self.by_period.values())

    @property
    def cost_eur(self) -> Decimal:
        return sum((eur for _, eur in self.by_period.values()), ZERO)


@dataclass
class Comparison:
    in_force: OptionCost
    other: OptionCost
    stored_cost_eur: float  # what the windows say they cost (before any price correction)


def compared_with(tariff: Tariff) -> str:
    """The option a contract is compared with."""
    settings = tariff.settings
    if settings.option == "tempo":
        return "hphc" if settings.has_offpeak else "base"
    return "base" if settings.option == "hphc" else "hphc"


def compare(windows: list[StoredWindow], tariff: Tariff, window_s: int) -> Comparison:
    other_option = compared_with(tariff)
    other = Tariff.with_option(tariff, other_option)
    result = Comparison(OptionCost(tariff.settings.option), OptionCost(other_option), 0.0)
    for w in windows:
        end = window_end(w.start, tariff, window_s)
        result.in_force.add(split_cost(tariff, w.start, end, w.energy_wh))
        result.other.add(split_cost(other, w.start, end, w.energy_wh))
        result.stored_cost_eur += w.cost_eur
    return result


@dataclass(frozen=True)
class Demand:
    """The site's demand against a power limit, from the main meter's highest power a minute."""

    peak_w: float
    peak_at: datetime | None
    minutes_over: int
    times_over: int  # separate episodes: consecutive minutes above the limit count once


def demand_over(minutes: list[tuple[datetime, float]], limit_w: float) -> Demand:
    peak_w, peak_at = 0.0, None
    over = times = 0
    previous: datetime | None = None  # the last minute above the limit
    for at, watts in sorted(minutes):
        if watts > peak_w:
            peak_w, peak_at = watts, at
        if watts > limit_w:
            over += 1
            if previous is None or at - previous > timedelta(minutes=1):
                times += 1
            previous = at
    return Demand(peak_w, peak_at, over, times)
