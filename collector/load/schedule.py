"""Allowed charging periods per socket, in the site's local wall-clock time (pure).

A range belongs to the day it starts on: `22:00-07:00` on `fri` runs from Friday 22:00 to
Saturday 07:00. Boundaries are wall-clock times, so on the spring DST day (23 h) 22:00-07:00
lasts 8 real hours and on the autumn one (25 h) 10. `allowed: offpeak` takes the HC ranges the
tariff has on the starting day (seasons included), through collector.energy.tariff.Tariff; on
Tempo, whose HC hours are fixed, 22:00-06:00.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from collector.config import TariffSettings, parse_clock_range
from collector.energy.tariff import TEMPO_DAY_START, TEMPO_HC_START, Tariff
from collector.load.settings import DAYS, ScheduleSettings

Ranges = tuple[tuple[time, time], ...]


@dataclass(frozen=True)
class _Entry:
    sockets: frozenset[str]
    days: frozenset[int]  # date.weekday(): Monday 0
    ranges: Ranges | None  # None: the tariff's HC ranges of the day


class Schedules:
    def __init__(
        self, settings: Sequence[ScheduleSettings], tariff: TariffSettings, tz: ZoneInfo
    ) -> None:
        self._tz = tz
        self._tariff = Tariff(tariff, tz)
        self._tempo = tariff.option == "tempo"
        self._entries = [
            _Entry(
                frozenset(s.sockets),
                frozenset(DAYS.index(day) for day in s.days),
                None
                if s.allowed == "offpeak"
                else tuple(parse_clock_range(text) for text in s.allowed),
            )
            for s in settings
        ]

    def scheduled(self, point: str) -> bool:
        """Does any schedule name this socket (else it may charge at any time)?"""
        return any(point in entry.sockets for entry in self._entries)

    def allowed(self, point: str, at: datetime) -> bool:
        entries = [entry for entry in self._entries if point in entry.sockets]
        if not entries:
            return True
        wall = at.astimezone(self._tz).replace(tzinfo=None)
        # A range started yesterday may still run (it wrapped midnight).
        for start_day in (wall.date(), wall.date() - timedelta(days=1)):
            for entry in entries:
                if start_day.weekday() in entry.days and _inside(
                    wall, start_day, self._ranges(entry, start_day)
                ):
                    return True
        return False

    def _ranges(self, entry: _Entry, day: date) -> Ranges:
        if entry.ranges is not None:
            return entry.ranges
        if self._tempo:
            return ((TEMPO_HC_START, TEMPO_DAY_START),)
        return self._tariff.offpeak_ranges(day)


def _inside(wall: datetime, day: date, ranges: Ranges) -> bool:
    for start, end in ranges:
        begin = datetime.combine(day, start)
        finish = datetime.combine(day if start < end else day + timedelta(days=1), end)
        if begin <= wall < finish:
            return True
    return False
