"""Tempo day colours (I/O): the cache in the state folder, RTE's public day-colour service
polled from a thread, and the retained `irve/{site}/tempo` messages.

The tariff core only reads `ColourCache.colours` (a dict date -> colour, Tempo day starting at
06:00 local on that date); everything that learns a colour goes through `ColourCache.learn`,
which saves the file and calls the `on_learned` hook (re-pricing the windows already published
at the fallback colour, see collector.tariffs.repricing).

Politeness towards RTE: one request when the collector starts without today's or tomorrow's
colour, then tomorrow's colour is asked for from 11:00 local (RTE publishes it around then),
every 30 minutes until it is known, and nothing more that day. A failed or slow request (the
timeout is `tempo.timeout_s`) is retried after 1, 2, 4 ... minutes, at most an hour.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from collector.config import SiteConfig, TempoColour, TempoSettings
from collector.energy.tariff import tempo_day
from collector.state import write_state
from collector.wire.messages import TempoMessage
from collector.wire.times import utc_now

log = logging.getLogger(__name__)

PUBLISHED_AT = time(11, 0)  # RTE publishes tomorrow's colour around 11:00 local
RETRY_UNTIL_PUBLISHED = timedelta(minutes=30)
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
_RTE_COLOURS: dict[str, TempoColour] = {"BLUE": "blue", "WHITE": "white", "RED": "red"}
_COLOURS = frozenset(get_args(TempoColour))


def cache_path(site: SiteConfig) -> Path:
    return site.state_dir / f"tempo-{site.site.id}.json"


def _load(path: Path) -> dict[date, TempoColour]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("Tempo colours %s unreadable (%s): asking for them again", path, exc)
        return {}
    out: dict[date, TempoColour] = {}
    for key, colour in raw.items() if isinstance(raw, dict) else []:
        try:
            day = date.fromisoformat(key)
        except (TypeError, ValueError):
            continue
        if colour in _COLOURS:
            out[day] = colour
    return out


def known_colours(site: SiteConfig) -> dict[date, TempoColour]:
    """The colours the collector has learned so far (for `irve recompute`)."""
    return _load(cache_path(site))


class ColourCache:
    """The known colours, kept in a JSON file so a restart asks RTE for nothing it knows."""

    def __init__(
        self, path: Path, on_learned: Callable[[date, TempoColour], None] | None = None
    ) -> None:
        self.path = path
        self.colours: dict[date, TempoColour] = _load(path)
        self.on_learned = on_learned
        self._lock = threading.Lock()

    def learn(self, day: date, colour: TempoColour) -> bool:
        """Record a colour; True when it is new or differs from the one known."""
        with self._lock:
            if self.colours.get(day) == colour:
                return False
            self.colours[day] = colour
            # Days the owner added to the file by hand while we ran are kept, not overwritten.
            for known, added in _load(self.path).items():
                self.colours.setdefault(known, added)
            payload = json.dumps({d.isoformat(): c for d, c in sorted(self.colours.items())})
            try:
                write_state(self.path, payload)
            except OSError as exc:
                log.error("Tempo colours: cannot save %s: %s", self.path, exc)
        log.info("Tempo colour of %s: %s", day, colour)
        if self.on_learned is not None:
            self.on_learned(day, colour)
        return True


def parse_rte(body: bytes) -> dict[date, TempoColour]:
    """RTE's `tempoLight` answer: `{"values": {"2026-12-06": "RED", "2026-12-06-fallback":
    "false", ...}}`. A day flagged `fallback: true` is RTE's placeholder, not the published
    colour: left out. ValueError when the body is not that shape."""
    data = json.loads(body)
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, dict):
        raise ValueError("no `values` object")
    out: dict[date, TempoColour] = {}
    for key, value in values.items():
        if not isinstance(key, str) or len(key) != 10:
            continue
        try:
            day = date.fromisoformat(key)
        except ValueError:
            continue
        if str(values.get(f"{key}-fallback", "false")).lower() == "true":
            continue
        colour = _RTE_COLOURS.get(str(value).upper())
        if colour is not None:
            out[day] = colour
    return out


def parse_message(payload: bytes) -> tuple[date, TempoColour]:
    """A retained `irve/{site}/tempo` payload; ValueError naming what is wrong."""
    try:
        message = TempoMessage.from_payload(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(problems) from None
    return message.date, message.colour


class RtePoller:
    """Asks RTE's day-colour service for the colours the cache lacks, from its own thread."""

    def __init__(
        self,
        settings: TempoSettings,
        cache: ColourCache,
        tz: ZoneInfo,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.tz = tz
        self.clock = clock
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RtePoller:
        self._thread = threading.Thread(target=self._run, name="tempo-rte", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s + 5)

    def wanted(self, now: datetime) -> list[date]:
        """The Tempo days whose colour is missing and may be published by now."""
        today = tempo_day(now, self.tz)
        days = [today]
        if now.astimezone(self.tz).time() >= PUBLISHED_AT or today < now.astimezone(self.tz).date():
            days.append(today + timedelta(days=1))
        return [d for d in days if d not in self.cache.colours]

    def poll_once(self, now: datetime) -> timedelta:
        """One request if a colour is wanted; the time to wait before the next call."""
        if not self.wanted(now):
            return self._until_published(now)
        try:
            colours = self._fetch()
        except (OSError, ValueError) as exc:
            self.failures += 1
            delay = min(BACKOFF_FIRST * (1 << min(self.failures - 1, 10)), BACKOFF_MAX)
            log.warning(
                "Tempo colours from %s: %s (failure %d, next try in %d s)",
                self.settings.url,
                exc,
                self.failures,
                delay.total_seconds(),
            )
            return delay
        if self.failures:
            log.info("Tempo colours from %s: answering again", self.settings.url)
        self.failures = 0
        for day, colour in sorted(colours.items()):
            self.cache.learn(day, colour)
        return RETRY_UNTIL_PUBLISHED if self.wanted(now) else self._until_published(now)

    def _until_published(self, now: datetime) -> timedelta:
        local = now.astimezone(self.tz)
        mark = datetime.combine(local.date(), PUBLISHED_AT, tzinfo=self.tz)
        if mark <= local:
            mark = datetime.combine(local.date() + timedelta(days=1), PUBLISHED_AT, tzinfo=self.tz)
        return max(mark - local, timedelta(seconds=1))

    def _fetch(self) -> dict[date, TempoColour]:
        request = urllib.request.Request(
            self.settings.url,
            headers={"Accept": "application/json", "User-Agent": "irve-telemetry"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                body: Any = response.read(1024 * 1024)
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise OSError(str(exc.reason)) from None
        try:
            return parse_rte(body)
        except ValueError as exc:
            raise ValueError(f"not a Tempo colour answer: {exc}") from None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.poll_once(self.clock())
            except Exception:  # the thread must outlive a surprise; the next poll retries
                log.exception("Tempo colours: poll failed")
                delay = BACKOFF_MAX
            self._stop.wait(delay.total_seconds())
