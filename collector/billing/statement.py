"""A guest's statement for a stay: sessions, kWh per period, the owner's policy, amounts.

Money rules (docs/energy-and-billing.md):
- Energy windows and sessions carry costs unrounded (9 and 6 decimals). A statement line's amount
  is rounded ONCE, half up, to the cent; the statement total is the sum of its lines, so what
  the guest reads adds up.
- Policies: `at_cost` (one line per session and period, kWh x the price in force);
  `flat` (a fixed fee per session, whatever it drew); `allowance` (N kWh included per night
  of the stay, the excess at cost). The allowance is used up session by session in
  chronological order; inside one session it is taken from each period in proportion to that
  period's share of the session's energy, so the excess of a session keeps the session's
  own mix of HP and HC prices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

PolicyName = Literal["at_cost", "flat", "allowance"]
CENT = Decimal("0.01")
PERIOD_ORDER = ("HP", "HC", "BASE")


def money(eur: float) -> Decimal:
    """Euros to the cent, half up, from an unrounded float (first cleaned to 6 decimals so
    binary noise such as 6.0649999999 does not move a cent)."""
    return Decimal(repr(round(eur, 6))).quantize(CENT, rounding=ROUND_HALF_UP)


def kwh(wh: float) -> Decimal:
    return Decimal(repr(round(wh / 1000, 3))).quantize(Decimal("0.001"))


@dataclass(frozen=True)
class SessionUse:
    """One ended session as stored: energy (Wh) and unrounded cost (EUR) per period."""

    session_id: str
    point: str
    badge: str | None
    start: datetime
    duration_s: float
    periods: dict[str, tuple[float, float]]
    max_power_w: float = 0.0

    @property
    def energy_wh(self) -> float:
        return sum(e for e, _ in self.periods.values())


@dataclass(frozen=True)
class Policy:
    name: PolicyName = "at_cost"
    fee_eur: Decimal = Decimal("0")
    kwh_per_night: Decimal = Decimal("8")


@dataclass(frozen=True)
class Stay:
    label: str  # room or badge, as printed
    arrival: date
    departure: date

    @property
    def nights(self) -> int:
        return max(1, (self.departure - self.arrival).days)


@dataclass(frozen=True)
class Line:
    session_id: str
    start: datetime
    point: str
    period: str | None  # None: a flat fee for the whole session
    energy_kwh: Decimal
    included_kwh: Decimal
    billed_kwh: Decimal
    unit_price: Decimal | None  # average EUR/kWh of the billed energy (4 decimals)
    amount_eur: Decimal


@dataclass(frozen=True)
class Statement:
    stay: Stay
    policy: Policy
    lines: list[Line]
    energy_wh: float
    included_wh: float
    meter_wh: float | None = None  # index difference over the sessions, for reconciliation
    warnings: list[str] = field(default_factory=list)

    @property
    def total_eur(self) -> Decimal:
        return sum((line.amount_eur for line in self.lines), Decimal("0.00"))

    @property
    def energy_kwh(self) -> Decimal:
        return kwh(self.energy_wh)

    @property
    def included_kwh(self) -> Decimal:
        return kwh(self.included_wh)

    @property
    def billed_kwh(self) -> Decimal:
        return kwh(self.energy_wh - self.included_wh)


def make_statement(
    stay: Stay, sessions: list[SessionUse], policy: Policy, meter_wh: float | None = None
) -> Statement:
    ordered = sorted(sessions, key=lambda s: (s.start, s.session_id))
    lines: list[Line] = []
    allowance_wh = (
        float(policy.kwh_per_night) * 1000 * stay.nights if policy.name == "allowance" else 0.0
    )
    remaining, included_wh = allowance_wh, 0.0
    for s in ordered:
        if policy.name == "flat":
            lines.append(
                Line(
                    s.session_id,
                    s.start,
                    s.point,
                    None,
                    kwh(s.energy_wh),
                    Decimal("0.000"),
                    kwh(s.energy_wh),
                    None,
                    policy.fee_eur.quantize(CENT, rounding=ROUND_HALF_UP),
                )
            )
            continue
        total = s.energy_wh
        included_session = min(remaining, total)
        remaining -= included_session
        included_wh += included_session  # summed, not allowance - remaining: no float loss
        for period in sorted(s.periods, key=_period_key):
            energy, cost = s.periods[period]
            if energy <= 0:
                continue
            included = included_session * energy / total if total > 0 else 0.0
            billed = energy - included
            amount = cost * billed / energy
            lines.append(
                Line(
                    s.session_id,
                    s.start,
                    s.point,
                    period,
                    kwh(energy),
                    kwh(included),
                    kwh(billed),
                    Decimal(repr(round(cost / energy * 1000, 4))).quantize(Decimal("0.0001")),
                    money(amount),
                )
            )
    energy_wh = sum(s.energy_wh for s in ordered)
    warnings = []
    if meter_wh is not None and abs(meter_wh - energy_wh) > max(1.0, 0.005 * energy_wh):
        warnings.append(
            f"sessions hold {energy_wh / 1000:.3f} kWh but the meter index moved "
            f"{meter_wh / 1000:.3f} kWh over them"
        )
    return Statement(
        stay,
        policy,
        lines,
        energy_wh,
        included_wh,
        meter_wh,
        warnings,
    )


def _period_key(period: str) -> int:
    return PERIOD_ORDER.index(period) if period in PERIOD_ORDER else len(PERIOD_ORDER)
