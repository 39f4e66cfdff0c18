"""Re-pricing Tempo windows once their day's colour is known (I/O: InfluxDB and MQTT through
`irve recompute`, from its own thread).

When the collector learns the colour of a Tempo day that has already begun, the windows of
that day published so far were priced at the fallback colour. Windows still open then close
at the fallback too, and the ingestor writes with a delay, so the re-pricing waits
`settle_s` (two windows and a minute), then runs `irve recompute` over the Tempo day from its
06:00 to the moment the colour was learned plus one window. A failure (InfluxDB or the broker
away) is logged with the command that does the same by hand.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta

from collector.config import SiteConfig, TempoColour
from collector.energy.tariff import TEMPO_DAY_START, Tariff, tempo_day
from collector.wire.times import utc_now

log = logging.getLogger(__name__)

Recompute = Callable[[SiteConfig, Tariff, datetime, datetime], int]


class Repricer:
    """Queues a re-pricing for each colour learned for a day already begun."""

    def __init__(
        self,
        site: SiteConfig,
        colours: Mapping[date, TempoColour],
        recompute: Recompute,
        clock: Callable[[], datetime] = utc_now,
        settle_s: float | None = None,
    ) -> None:
        self.site = site
        self.colours = colours
        self.recompute = recompute
        self.clock = clock
        window_s = site.energy.window_s
        self.settle_s = 2 * window_s + 60.0 if settle_s is None else settle_s
        self._jobs: queue.Queue[tuple[datetime, datetime] | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def learned(self, day: date, _colour: TempoColour) -> None:
        """ColourCache's hook: the Tempo day `day` has a (new) colour."""
        now = self.clock()
        tz = self.site.site.tz
        if day > tempo_day(now, tz):
            return  # tomorrow's colour: nothing priced yet
        start = datetime.combine(day, TEMPO_DAY_START, tzinfo=tz)
        end = min(
            datetime.combine(day + timedelta(days=1), TEMPO_DAY_START, tzinfo=tz),
            now + timedelta(seconds=self.site.energy.window_s),
        )
        self._jobs.put((start, end))

    def __enter__(self) -> Repricer:
        self._thread = threading.Thread(target=self._run, name="tempo-reprice", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            start, end = job
            tz = self.site.site.tz
            by_hand = (
                f"irve recompute -c SITE.yaml --from {start.astimezone(tz):%Y-%m-%dT%H:%M} "
                f"--to {end.astimezone(tz):%Y-%m-%dT%H:%M}"
            )
            if self._stop.wait(self.settle_s):
                log.warning("stopping before the Tempo re-pricing: run `%s`", by_hand)
                return
            tariff = Tariff(self.site.tariff, tz, self.colours)
            try:
                failed = self.recompute(self.site, tariff, start, end) != 0
            except Exception as exc:  # a bad stored row must not stop later re-pricings
                log.error("Tempo re-pricing failed: %s", exc)
                failed = True
            if failed:
                log.error("Tempo windows not re-priced; run `%s` once the servers answer", by_hand)
            else:
                log.info("Tempo windows of %s re-priced", start.astimezone(tz).date())
