"""A guest's statement for a stay: sessions, kWh per period, the owner's policy, amounts.

Money rules (docs/energy-and-billing.md):
- Energy windows and sessions carry costs unrounded (9 and 6 decimals). A statement line's amount
  is rounded ONCE, half up, to the cent; the statement total is the sum of its lines, so what
  the guest reads adds up.
- Every column adds up as printed: a line's billed kWh is its printed energy minus its printed
  included kWh, and each total is the sum of the printed lines.
- Policies: `at_cost` (one line per session and period, kWh x the price in force);
  `flat` (a fixed fee per session, whatever it drew); `allowance` (N kWh included per night
  of the stay, the excess at cost). The allowance is used up session by session in
  chronological order; inside one session it is taken from each period in proportion to that
  period's share of the session's energy, so the excess of a session keeps the session's
  own mix of HP and HC prices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from collector.wire.messages import PERIODS

PolicyName = Literal["at_cost", "flat", "allowance"]
StayKind = Literal["room", "badge", "point"]
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


def money(eur: float | Decimal) -> Decimal:
    """Euros to the cent, half up, from an unrounded float or Decimal sum (first cleaned to 6
    decimals so binary noise such as 6.0649999999 does not move a cent)."""
    if isinstance(eur, Decimal):
        return eur.quantize(MICRO).quantize(CENT, rounding=ROUND_HALF_UP)
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
    room: str | None = None  # the room the badge list gave the badge (OCPP sessions)

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
    label: str  # the room, badge or socket the sessions were selected by
    arrival: date
    departure: date
    kind: StayKind = "room"
    # The selection's exact bounds when times were given, for the statement number.
    start: datetime | None = None
    end: datetime | None = None

    @property
    def nights(self) -> int:
        return max(1, (self.departure - self.arrival).days)


@dataclass(frozen=True)
class Hotel:
    """The statement's issuer, from the site file (`site.name`, `hotel`)."""

    name: str = ""
    address: str = ""
    siret: str | None = None
    vat_number: str | None = None
    vat_rate: Decimal = Decimal("0.20")


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
    end: datetime | None = None
    point_label: str = ""  # the socket as the guest knows it ("Borne 1")
    session_no: int = 0  # 1, 2, ... in the statement: what the guest reads instead of the id


@dataclass(frozen=True)
class Statement:
    stay: Stay
    policy: Policy
    lines: list[Line]
    energy_wh: float
    included_wh: float
    meter_wh: float | None = None  # index difference over the sessions, for reconciliation
    warnings: list[str] = field(default_factory=list)
    hotel: Hotel = field(default_factory=Hotel)
    number: str = ""
    issued: date | None = None

    @property
    def total_eur(self) -> Decimal:
        return sum((line.amount_eur for line in self.lines), Decimal("0.00"))

    @property
    def energy_kwh(self) -> Decimal:
        return sum((line.energy_kwh for line in self.lines), Decimal("0.000"))

    @property
    def included_kwh(self) -> Decimal:
        return sum((line.included_kwh for line in self.lines), Decimal("0.000"))

    @property
    def billed_kwh(self) -> Decimal:
        return sum((line.billed_kwh for line in self.lines), Decimal("0.000"))

    @property
    def vat_eur(self) -> Decimal:
        """The VAT included in the total (prices are TTC), to the cent, half up."""
        rate = self.hotel.vat_rate
        return (self.total_eur * rate / (1 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)

    @property
    def sessions(self) -> int:
        return len({line.session_id for line in self.lines})


def statement_number(site_id: str, stay: Stay) -> str:
    """`RC-YYYYMMDD-XXXXXXXX`: the arrival date and a digest of the site, the selection and
    the stay's bounds. The same stay billed again gets the same number (a re-issued statement
    replaces the first); another room, socket or stay gets another one, with no counter to
    keep or lose."""
    bounds = f"{stay.start.isoformat()}/{stay.end.isoformat()}" if stay.start and stay.end else ""
    key = "|".join(
        (
            site_id,
            stay.kind,
            stay.label,
            stay.arrival.isoformat(),
            stay.departure.isoformat(),
            bounds,
        )
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8].upper()
    return f"RC-{stay.arrival:%Y%m%d}-{digest}"


def make_statement(
    stay: Stay,
    sessions: list[SessionUse],
    policy: Policy,
    meter_wh: float | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    hotel: Hotel | None = None,
    number: str = "",
    issued: date | None = None,
) -> Statement:
    """`labels`: point id -> the socket's label; a point without one is printed by its id."""
    ordered = sorted(sessions, key=lambda s: (s.start, s.session_id))
    labels = labels or {}
    lines: list[Line] = []
    allowance_wh = (
        float(policy.kwh_per_night) * 1000 * stay.nights if policy.name == "allowance" else 0.0
    )
    remaining, included_wh = allowance_wh, 0.0
    # A session that drew nothing has no line (but still its flat fee): no gap in the numbers.
    billed = [s for s in ordered if policy.name == "flat" or s.energy_wh > 0]
    for no, s in enumerate(billed, 1):
        end = s.start + timedelta(seconds=s.duration_s)
        label = labels.get(s.point) or s.point
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
                    end,
                    label,
                    no,
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
            amount = cost * (energy - included) / energy
            printed, printed_included = kwh(energy), kwh(included)
            lines.append(
                Line(
                    s.session_id,
                    s.start,
                    s.point,
                    period,
                    printed,
                    printed_included,
                    printed - printed_included,
                    Decimal(repr(round(cost / energy * 1000, 4))).quantize(Decimal("0.0001")),
                    money(amount),
                    end,
                    label,
                    no,
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
        hotel or Hotel(),
        number,
        issued,
    )


def _period_key(period: str) -> int:
    return PERIODS.index(period) if period in PERIODS else len(PERIODS)
