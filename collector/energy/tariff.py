"""Tariff periods and prices in force at an instant, in the site's local wall-clock time.

Rules (documented in docs/energy-and-billing.md):
- With option `base` every instant is BASE. With `hphc` an instant is HC when its local
  wall-clock time falls in one of the HC ranges of its local calendar day, else HP.
- The HC ranges of a day come from the `offpeak` entry in force that day (dated entries change
  at local midnight of their `since`; the first also covers earlier days; today's undated form
  is one entry): its first season whose MM-DD span contains the day, else its own ranges. A
  range that wraps midnight ("22:00-06:00") covers 00:00-06:00 and 22:00-24:00 of each day, so
  the morning part follows that day's schedule. With `weekend`, Saturday, Sunday and the
  extra day are HC from 00:00 to 24:00.
- Daylight saving: boundaries are wall-clock times, so on 29 March 2026 (23 h) the range
  22:00-06:00 holds 7 real hours and on 25 October 2026 (25 h) it holds 9.
- A price row applies from local midnight of its `since` date; the earliest row also covers
  any earlier instant (a site file's history starts with its first row).
- With `tempo` the Tempo day D runs from 06:00 local on D to 06:00 local on D+1 (wall clock,
  so 23 or 25 real hours on DST days); its HC are 22:00-06:00, its HP 06:00-22:00, and both
  take the colour of day D. The colours come from a mapping date -> colour known so far
  (filled by the I/O shell); a day missing from it is priced at `tempo.fallback` and its
  windows are marked (`fallback_at`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

from collector.config import (
    PriceRow,
    TariffSettings,
    TempoColour,
    parse_clock_range,
    season_contains,
)
from collector.wire.messages import Period

_TINY = timedelta(microseconds=1)
TEMPO_DAY_START = time(6, 0)
TEMPO_HC_START = time(22, 0)
TEMPO_PERIODS: dict[tuple[TempoColour, bool], Period] = {
    ("blue", False): "TEMPO_BLUE_HP",
    ("blue", True): "TEMPO_BLUE_HC",
    ("white", False): "TEMPO_WHITE_HP",
    ("white", True): "TEMPO_WHITE_HC",
    ("red", False): "TEMPO_RED_HP",
    ("red", True): "TEMPO_RED_HC",
}


ALL_DAY = ((time(0, 0), time(0, 0)),)


@dataclass(frozen=True)
class _Schedule:
    ranges: tuple[tuple[time, time], ...]
    seasons: tuple[tuple[str, str, tuple[tuple[time, time], ...]], ...]


def tempo_day(instant: datetime, tz: ZoneInfo) -> date:
    """The Tempo day an instant belongs to: the local date, less one before 06:00."""
    local = instant.astimezone(tz)
    return local.date() - timedelta(days=1) if local.time() < TEMPO_DAY_START else local.date()


class TariffError(ValueError):
    """The tariff cannot price something (a price missing from a row)."""


def row_price(row: PriceRow, period: Period, index: int | None = None) -> Decimal:
    value: Decimal | None
    if period.startswith("TEMPO_"):
        _, colour, hours = period.lower().split("_")
        value = None if row.tempo is None else getattr(getattr(row.tempo, colour), hours)
    else:
        value = {"BASE": row.base, "HP": row.hp, "HC": row.hc}[period]
    if value is None:
        where = f"prices[{index}]" if index is not None else f"price row since {row.since}"
        raise TariffError(f"tariff.{where}.{period.lower()}: no {period} price in this row")
    return value


@dataclass(frozen=True)
class Tariff:
    settings: TariffSettings
    tz: ZoneInfo
    # Tempo colours known so far by Tempo day; the I/O shell adds to it as they are published.
    colours: Mapping[date, TempoColour] = field(default_factory=dict, compare=False)
    # Last answer of next_boundary as (from, boundary): valid for any instant in [from, boundary).
    _last: list[tuple[datetime, datetime]] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def with_option(cls, tariff: Tariff, option: str) -> Tariff:
        """The same schedule and prices under the other contract option (comparisons)."""
        return cls(tariff.settings.model_copy(update={"option": option}), tariff.tz, tariff.colours)

    @cached_property
    def _schedules(self) -> tuple[tuple[date, _Schedule], ...]:
        """(since, schedule) of every dated HC entry, oldest first."""
        return tuple(
            (
                entry.since,
                _Schedule(
                    tuple(parse_clock_range(r) for r in entry.offpeak),
                    tuple(
                        (s.start, s.end, tuple(parse_clock_range(r) for r in s.offpeak))
                        for s in entry.seasons
                    ),
                ),
            )
            for entry in self.settings.offpeak_entries()
        )

    @cached_property
    def _weekend_days(self) -> frozenset[int]:
        # Once per tariff: `WeekendSettings.days` builds its set anew, and this runs per reading.
        weekend = self.settings.weekend
        return frozenset() if weekend is None else weekend.days

    def offpeak_ranges(self, day: date) -> tuple[tuple[time, time], ...]:
        """HC ranges (start, end) in force on a local calendar day: those of the dated entry in
        force that day (the first one also before its date, as price rows), of its first season
        containing the day, else its own. A weekend day of the weekend option is HC all day,
        (00:00, 00:00)."""
        if day.weekday() in self._weekend_days:
            return ALL_DAY
        if not self._schedules:
            return ()
        current = self._schedules[0][1]
        for since, schedule in self._schedules:
            if since <= day:
                current = schedule
        key = day.strftime("%m-%d")
        for start, end, ranges in current.seasons:
            if season_contains(start, end, key):
                return ranges
        return current.ranges

    def colour_at(self, instant: datetime) -> TempoColour:
        """The Tempo colour of the instant's day, or the fallback while it is unknown."""
        return self.colours.get(tempo_day(instant, self.tz), self.settings.tempo.fallback)

    def fallback_at(self, instant: datetime) -> bool:
        """Is the instant priced at the Tempo fallback colour (its day's colour unknown)?"""
        return self.settings.option == "tempo" and tempo_day(instant, self.tz) not in self.colours

    def period_at(self, instant: datetime) -> Period:
        if self.settings.option == "base":
            return "BASE"
        local = instant.astimezone(self.tz)
        clock = local.time().replace(tzinfo=None)
        if self.settings.option == "tempo":
            off = clock >= TEMPO_HC_START or clock < TEMPO_DAY_START
            return TEMPO_PERIODS[self.colour_at(instant), off]
        for start, end in self.offpeak_ranges(local.date()):
            # start == end only for ALL_DAY: `clock >= 00:00` holds all day.
            inside = start <= clock < end if start < end else clock >= start or clock < end
            if inside:
                return "HC"
        return "HP"

    def row_at(self, instant: datetime) -> PriceRow:
        local_day = instant.astimezone(self.tz).date()
        rows = self.settings.prices
        current = rows[0]
        for row in rows:
            if row.since <= local_day:
                current = row
        return current

    def price(self, instant: datetime, period: Period) -> Decimal:
        row = self.row_at(instant)
        return row_price(row, period, self.settings.prices.index(row))

    def rate_at(self, instant: datetime) -> tuple[Period, Decimal]:
        """(period, EUR/kWh) in force at an instant."""
        period = self.period_at(instant)
        return period, self.price(instant, period)

    def _state(self, instant: datetime) -> tuple[Period, date]:
        return self.period_at(instant), self.row_at(instant).since

    def next_boundary(self, instant: datetime) -> datetime:
        """First instant after `instant` where the period or the price row changes (UTC).

        Candidates are every day's wall-clock range ends and local midnights (season and price
        changes), mapped to UTC with both DST folds, plus the DST transitions themselves (a
        boundary inside the skipped spring hour takes effect when the clock jumps). Only
        candidates where something actually changes are kept, so windows are not cut needlessly.
        """
        instant = instant.astimezone(UTC)
        if self._last and self._last[0][0] <= instant < self._last[0][1]:
            return self._last[0][1]
        boundary = self._search(instant)
        self._last[:] = [(instant, boundary)]
        return boundary

    def _search(self, instant: datetime) -> datetime:
        local_day = instant.astimezone(self.tz).date()
        found: datetime | None = None
        for offset in range(-1, 400):
            day = local_day + timedelta(days=offset)
            for candidate in sorted(self._candidates(day)):
                if candidate <= instant or (found is not None and candidate >= found):
                    continue
                if self._state(candidate) != self._state(candidate - _TINY):
                    found = candidate
            if found is not None and offset >= 1:
                return found
        # No change at all within a year (base option, no price row ahead): cut yearly anyway.
        return found or instant + timedelta(days=366)

    def _candidates(self, day: date) -> set[datetime]:
        clocks = {time(0, 0)}
        if self.settings.option == "hphc":
            for start, end in self.offpeak_ranges(day):
                clocks.update((start, end))
        elif self.settings.option == "tempo":
            clocks.update((TEMPO_DAY_START, TEMPO_HC_START))
        out: set[datetime] = set()
        for clock in clocks:
            naive = datetime.combine(day, clock)
            for fold in (0, 1):
                out.add(naive.replace(tzinfo=self.tz, fold=fold).astimezone(UTC))
        out.update(_transitions(day, self.tz))
        return out


def _transitions(day: date, tz: ZoneInfo) -> list[datetime]:
    """UTC instants during a local day where the zone's UTC offset changes (to the second)."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = start + timedelta(hours=26)
    if start.astimezone(tz).utcoffset() == end.astimezone(tz).utcoffset():
        return []
    lo, hi = start, end
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
            lo = mid
        else:
            hi = mid
    return [hi.replace(microsecond=0)]


# The Enedis reform's shape of an HC day (TURPE 7; docs/tariffs.md), in minutes of the day.
_NIGHT = (23 * 60, 7 * 60)  # at least 5 consecutive HC hours in here
_AFTERNOON = (11 * 60, 17 * 60)  # at most 3 HC hours in here
_PEAKS = ((7 * 60, 11 * 60), (17 * 60, 23 * 60))  # no HC in here
REFORM_FROM = date(2025, 11, 1)  # Enedis moves meters to the new shape from this day


def _minutes(ranges: tuple[tuple[time, time], ...]) -> list[bool]:
    """The HC minutes of a day (1440 flags) from its ranges."""
    flags = [False] * 1440
    for start, end in ranges:
        a, b = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        for m in range(1440):
            if (a <= m < b) if a < b else (m >= a or m < b):
                flags[m] = True
    return flags


def _longest_run(flags: list[bool], span: tuple[int, int]) -> int:
    """Longest run of HC minutes inside a span of the day that may wrap midnight."""
    a, b = span
    minutes = list(range(a, 1440)) + list(range(b)) if a > b else list(range(a, b))
    best = run = 0
    for m in minutes:
        run = run + 1 if flags[m] else 0
        best = max(best, run)
    return best


def _hours(minutes: int) -> str:
    return f"{minutes / 60:g} h"


def schedule_warnings(ranges: tuple[tuple[time, time], ...], reform: bool) -> list[str]:
    """What is unusual in one day's HC ranges: not 8 hours, a boundary off the half hour, and
    once the reform applies, the shape Enedis gives (`reform`)."""
    out: list[str] = []
    flags = _minutes(ranges)
    if sum(flags) != 8 * 60:
        out.append(f"{_hours(sum(flags))} of HC a day, where Enedis gives 8 h")
    odd = [t for r in ranges for t in r if t.minute not in (0, 30)]
    if odd:
        out.append(f"boundary {odd[0]:%H:%M} is not on the hour or half hour as Enedis sets them")
    if not reform:
        return out
    night = _longest_run(flags, _NIGHT)
    if night < 5 * 60:
        out.append(
            f"{_hours(night)} of consecutive HC between 23:00 and 07:00, where the reform "
            "gives at least 5 h"
        )
    afternoon = sum(flags[_AFTERNOON[0] : _AFTERNOON[1]])
    if afternoon > 3 * 60:
        out.append(
            f"{_hours(afternoon)} of HC between 11:00 and 17:00, where the reform allows 3 h"
        )
    for a, b in _PEAKS:
        if any(flags[a:b]):
            out.append(
                f"HC between {a // 60:02d}:00 and {b // 60:02d}:00, which the reform "
                "keeps for peak hours"
            )
    return out


def offpeak_warnings(settings: TariffSettings) -> list[str]:
    """Every schedule of the site's HC entries checked by `schedule_warnings`, named by its
    place in the site file; the reform's shape for entries in force from REFORM_FROM on (an
    undated schedule may predate it, so only the 8 hours and half hours are checked there)."""
    if settings.option != "hphc":
        return []
    out: list[str] = []
    dated = settings.offpeak_entries()
    for i, entry in enumerate(dated):
        undated = entry.since == date.min
        where = "tariff.offpeak" if undated else f"tariff.offpeak[{i}] (since {entry.since})"
        reform = not undated and entry.since >= REFORM_FROM
        schedules: list[tuple[str, list[str]]] = (
            [(where, list(entry.offpeak))] if entry.offpeak else []
        )
        for j, season in enumerate(entry.seasons):
            prefix = "tariff" if undated else f"tariff.offpeak[{i}]"
            schedules.append((f"{prefix}.seasons[{j}] ({season.name})", list(season.offpeak)))
        for name, texts in schedules:
            ranges = tuple(parse_clock_range(t) for t in texts)
            out += [f"{name}: {problem}" for problem in schedule_warnings(ranges, reform)]
    return out
