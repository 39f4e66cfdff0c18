"""EDF's regulated Tarif Bleu as bundled, dated data (`data/edf-tarif-bleu.yaml`).

Pure: no clock, no configuration. Prices are `Decimal` read from the file's decimal strings, so
a figure is shown and compared exactly as the source prints it.

Every `since` date of the file is a movement of the whole tariff (1 February, 1 August): a
figure the table lacks at a movement is reported as missing, never replaced by the previous
one, which would be a price that no longer applies.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

SUPPLIER = "edf-tarif-bleu"
# The subscribed powers a Tarif Bleu contract can have (Enedis steps up to 36 kVA).
KVA_STEPS = (3, 6, 9, 12, 15, 18, 24, 30, 36)
Option = Literal["base", "hphc", "tempo"]
OPTIONS: tuple[Option, ...] = ("base", "hphc", "tempo")
COLOURS = ("blue", "white", "red")
PERIODS: dict[Option, tuple[str, ...]] = {
    "base": ("BASE",),
    "hphc": ("HP", "HC"),
    "tempo": tuple(f"TEMPO_{c.upper()}_{h}" for c in COLOURS for h in ("HP", "HC")),
}

_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
DATA = resources.files("collector.tariffs") / "data" / f"{SUPPLIER}.yaml"


class RegulatedError(ValueError):
    """The table cannot answer: a date before it, a power that is not a step, a missing figure."""


def _decimal_text(value: object) -> Decimal:
    # A YAML float has already lost the source's digits (0.1900 -> 0.19): refuse it.
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise ValueError(f'{value!r}: write the figure as a quoted decimal string ("0.1927")')
    return Decimal(value)


Money = Annotated[Decimal, BeforeValidator(_decimal_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _SourceRow(_Strict):
    ref: str = Field(min_length=10)
    url: str = Field(pattern=r"^https://")
    checked: date


class _HpHc(_Strict):
    hp: Money
    hc: Money


class _Tempo(_Strict):
    blue: _HpHc
    white: _HpHc
    red: _HpHc


class _PriceRow(_Strict):
    option: Option
    since: date
    kva: list[int] = Field(min_length=1)
    base: Money | None = None
    hp: Money | None = None
    hc: Money | None = None
    tempo: _Tempo | None = None
    source: str
    reported: bool = False


class _SubscriptionRow(_Strict):
    option: Option
    since: date
    kva: int
    per_year: Money | None = None
    per_month: Money | None = None
    source: str
    reported: bool = False


class _File(_Strict):
    supplier: Literal["edf-tarif-bleu"]
    currency: Literal["EUR"]
    sources: dict[str, _SourceRow]
    prices: list[_PriceRow]
    subscriptions: list[_SubscriptionRow]


@dataclass(frozen=True)
class Source:
    key: str
    ref: str
    url: str
    checked: date


@dataclass(frozen=True)
class Prices:
    """The prices incl. tax of one option and power from one movement, by period name."""

    option: Option
    kva: int
    since: date
    prices: dict[str, Decimal]
    source: Source
    reported: bool


@dataclass(frozen=True)
class Subscription:
    """The subscription incl. tax, as the source gives it (per year or per month)."""

    option: Option
    kva: int
    since: date
    per_year: Decimal | None
    per_month: Decimal | None
    source: Source
    reported: bool

    @property
    def yearly(self) -> Decimal:
        return self.per_year if self.per_year is not None else 12 * (self.per_month or Decimal(0))

    @property
    def monthly(self) -> Decimal:
        """Exact when the source gives €/month; else the year / 12 (which may not end)."""
        return self.per_month if self.per_month is not None else self.yearly / 12


RowT = TypeVar("RowT", Prices, Subscription)


def _row_at(
    rows: tuple[RowT, ...], option: Option, kva: int, since: date, what: str, hint: str = ""
) -> RowT:
    """The row of one option and power from one movement: a date in the table moves every
    option, so a missing row is said, never taken from an earlier movement."""
    for entry in rows:
        if entry.option == option and entry.kva == kva and entry.since == since:
            return entry
    raise RegulatedError(
        f"no {option} {what} for {kva} kVA from {since} in the table (no cited source gives "
        f"{'them' if what == 'prices' else 'it'})" + (f": {hint}" if hint else "")
    )


_KEYS: dict[Option, tuple[str, ...]] = {
    "base": ("base",),
    "hphc": ("hp", "hc"),
    "tempo": ("tempo",),
}


def _row_prices(row: _PriceRow) -> dict[str, Decimal]:
    given = {"base": row.base, "hp": row.hp, "hc": row.hc, "tempo": row.tempo}
    if {key for key, value in given.items() if value is not None} != set(_KEYS[row.option]):
        raise ValueError(
            f"a {row.option} row gives {' and '.join(_KEYS[row.option])}, nothing else"
        )
    found: dict[str, Decimal | None] = {"BASE": row.base, "HP": row.hp, "HC": row.hc}
    if row.tempo is not None:
        for colour in COLOURS:
            hours = getattr(row.tempo, colour)
            found[f"TEMPO_{colour.upper()}_HP"] = hours.hp
            found[f"TEMPO_{colour.upper()}_HC"] = hours.hc
    return {period: value for period in PERIODS[row.option] if (value := found[period]) is not None}


@dataclass(frozen=True)
class Table:
    supplier: str
    sources: dict[str, Source]
    prices: tuple[Prices, ...]
    subscriptions: tuple[Subscription, ...]

    @property
    def movements(self) -> tuple[date, ...]:
        dates = {p.since for p in self.prices} | {s.since for s in self.subscriptions}
        return tuple(sorted(dates))

    def movement_at(self, when: date) -> date:
        """The latest movement on or before this day; RegulatedError before the table."""
        day = when.date() if isinstance(when, datetime) else when
        earlier = [d for d in self.movements if d <= day]
        if not earlier:
            raise RegulatedError(
                f"{day}: before the table of regulated prices, which starts on {self.movements[0]}"
            )
        return earlier[-1]

    def prices_at(self, option: Option, kva: int, when: date) -> Prices:
        check_kva(kva)
        since = self.movement_at(when)
        return _row_at(self.prices, option, kva, since, "prices", "type them in tariff.prices")

    def subscription_at(self, option: Option, kva: int, when: date) -> Subscription:
        check_kva(kva)
        return _row_at(self.subscriptions, option, kva, self.movement_at(when), "subscription")

    def history(self, option: Option, kva: int, covered: frozenset[date]) -> list[Prices]:
        """The prices of every movement from this option and power's first one on. A movement
        without them is an error unless `covered` (the dates of the site's own rows) has it."""
        check_kva(kva)
        own = {e.since: e for e in self.prices if e.option == option and e.kva == kva}
        if not own:
            powers = sorted({e.kva for e in self.prices if e.option == option})
            raise RegulatedError(
                f"the table has no {option} prices for {kva} kVA "
                f"(it has {', '.join(map(str, powers))} kVA)"
            )
        first = min(own)
        gaps = [d for d in self.movements if d >= first and d not in own and d not in covered]
        if gaps:
            raise RegulatedError(
                f"the table has no {option} prices for {kva} kVA from {gaps[0]} (no cited source "
                f"gives them): add a tariff.prices row with since: {gaps[0]} from your bill"
            )
        return [own[d] for d in sorted(own)]


def _step(kva: int, where: str) -> None:
    try:
        check_kva(kva)
    except RegulatedError as exc:
        raise RegulatedError(f"{where}: {exc}") from None


def check_kva(kva: int) -> None:
    if kva not in KVA_STEPS:
        raise RegulatedError(
            f"{kva} kVA is not a regulated subscribed power ({', '.join(map(str, KVA_STEPS))})"
        )


def regulated_kva(power_kva: float) -> int:
    """The subscription step a site needs for this power: 7.2 kVA -> 9."""
    needed = math.ceil(power_kva)
    for step in KVA_STEPS:
        if step >= needed:
            return step
    raise RegulatedError(
        f"{power_kva:g} kVA is above {KVA_STEPS[-1]} kVA, the largest Tarif Bleu power"
    )


def parse(text: str, name: str = SUPPLIER) -> Table:
    """The table from the file's text; RegulatedError naming the row that is wrong."""
    try:
        raw = _File.model_validate(yaml.safe_load(text))
    except (ValidationError, yaml.YAMLError) as exc:
        raise RegulatedError(f"{name}: {exc}") from None
    sources = {key: Source(key, s.ref, s.url, s.checked) for key, s in raw.sources.items()}

    def source(key: str, where: str) -> Source:
        if key not in sources:
            raise RegulatedError(f"{name}: {where}: unknown source {key!r}")
        return sources[key]

    prices: list[Prices] = []
    for i, row in enumerate(raw.prices):
        where = f"prices[{i}]"
        try:
            values = _row_prices(row)
        except ValueError as exc:
            raise RegulatedError(f"{name}: {where}: {exc}") from None
        for kva in row.kva:
            _step(kva, f"{name}: {where}")
            prices.append(
                Prices(row.option, kva, row.since, values, source(row.source, where), row.reported)
            )
    subscriptions: list[Subscription] = []
    for i, sub in enumerate(raw.subscriptions):
        where = f"subscriptions[{i}]"
        if (sub.per_year is None) == (sub.per_month is None):
            raise RegulatedError(f"{name}: {where}: give exactly one of per_year, per_month")
        _step(sub.kva, f"{name}: {where}")
        subscriptions.append(
            Subscription(
                sub.option,
                sub.kva,
                sub.since,
                sub.per_year,
                sub.per_month,
                source(sub.source, where),
                sub.reported,
            )
        )
    seen: set[tuple[str, str, int, date]] = set()
    for key in [("prices", p.option, p.kva, p.since) for p in prices] + [
        ("subscriptions", s.option, s.kva, s.since) for s in subscriptions
    ]:
        if key in seen:
            raise RegulatedError(f"{name}: {key[0]}: two rows for {key[1]} {key[2]} kVA {key[3]}")
        seen.add(key)
    return Table(raw.supplier, sources, tuple(prices), tuple(subscriptions))


@cache
def bundled() -> Table:
    return parse(DATA.read_text(encoding="utf-8"))


def prices_at(option: Option, kva: int, when: date) -> Prices:
    """The bundled table's prices for this option and power in force on this (local) day."""
    return bundled().prices_at(option, kva, when)


def subscription_at(option: Option, kva: int, when: date) -> Subscription:
    """The bundled table's subscription for this option and power in force on this day."""
    return bundled().subscription_at(option, kva, when)


def history(option: Option, kva: int, covered: frozenset[date] = frozenset()) -> list[Prices]:
    """The bundled table's prices for this option and power at every movement (Table.history)."""
    return bundled().history(option, kva, covered)
