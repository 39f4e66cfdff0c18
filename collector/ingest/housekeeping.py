"""The ingestor's housekeeping thread: prunes raw readings older than
`influx.raw_retention_days` (collector.store.prune) a minute after start, then every hour.

Off the ingest path: its own thread, its own HTTP connections and writer, so live messages
are written and acknowledged while it runs. A failed run is logged (what failed, no secret)
and retried at the next hour; a server that cannot be pruned (VictoriaMetrics, InfluxDB 3.x)
is said once and the thread ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from collector.config import InfluxSettings
from collector.ingest.metrics import PruneStats
from collector.ingest.writer import WriteAborted
from collector.redact import redact
from collector.store.influxql import InfluxQL, InfluxQLError
from collector.store.prune import PruneError, Unsupported, prune
from collector.store.retention import cutoff
from collector.wire.times import utc_now

log = logging.getLogger(__name__)

DELAY_S = 60.0  # after start: the ingestor's own start-up (backlog from the broker) first
EVERY_S = 3600.0


class Housekeeping:
    def __init__(
        self,
        settings: InfluxSettings,
        days: int,
        *,
        delay_s: float = DELAY_S,
        every_s: float = EVERY_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.days = days
        self.delay_s = delay_s
        self.every_s = every_s
        self.clock = clock
        self.stats = PruneStats()  # on /metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ingest-housekeeping", daemon=True)

    def start(self) -> None:
        log.info(
            "raw readings kept for %d days: pruned %g s after start, then every %g s",
            self.days,
            self.delay_s,
            self.every_s,
        )
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """A run under way stops after the day it is pruning (its requests have
        influx.timeout_s each)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        wait = self.delay_s
        while not self._stop.wait(wait):
            wait = self.every_s
            if not self.run_once():
                return

    def run_once(self) -> bool:
        """One run; False when the server can never be pruned (the thread then ends)."""
        now = self.clock()
        client = InfluxQL.from_settings(self.settings)
        try:
            pruned = prune(client, self.settings, now, self.days, self._stop)
        except Unsupported as exc:
            log.warning("influx.raw_retention_days is ignored: %s", exc)
            self.stats.failures += 1
            self.stats.runs += 1
            return False
        except (PruneError, InfluxQLError, WriteAborted) as exc:
            log.error(
                "pruning raw readings failed, retried in %g s (nothing of a day is deleted "
                "before its reading_1m and reading_1h are written): %s",
                self.every_s,
                redact(str(exc)),
            )
            self.stats.failures += 1
        except Exception:  # a bug of ours must not end the housekeeping for good
            log.exception("pruning raw readings failed, retried in %g s", self.every_s)
            self.stats.failures += 1
        else:
            self.stats.hours_pruned += pruned
            log.info(
                "pruned raw readings before %s UTC: %d hours",
                f"{cutoff(now, self.days):%Y-%m-%d %H:%M}",
                pruned,
            )
        self.stats.runs += 1
        return True
