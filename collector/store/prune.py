"""Backfill the coarse series, then prune the raw readings (the I/O around
collector.store.downsample and collector.store.retention).

`prune` is what `irve ingest` runs every hour when `influx.raw_retention_days` is set, and
`irve downsample --prune` once. For each day to prune, oldest first, it FIRST writes that
day's `reading_1m` and `reading_1h` from the raw readings (the backfill of `irve downsample
--from --to`: the same points, so nothing is counted twice even where the continuous queries
or tasks already wrote them, and nothing is lost where they never ran), and deletes the day's
raw readings only once that write succeeded. The first failure stops the run: the days
already pruned stay pruned, the rest waits for the next run. Only `reading` is ever deleted.

Deleting: InfluxDB 1.x, InfluxQL `DELETE` through /query; 2.x, POST /api/v2/delete. The
server says which it is on /ping (`X-Influxdb-Version`); other servers are refused
(`Unsupported`) before anything is read or written. The tests run the 1.x path on influxd
1.6.7; no 2.x server is available to them, so the /api/v2/delete request is checked by its
body only (collector.store.retention.delete_body).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta

from collector.config import InfluxSettings
from collector.ingest.writer import Writer, backend_for
from collector.redact import redact
from collector.store.downsample import LEVELS, backfill_select
from collector.store.downsample import to_lines as downsampled_lines
from collector.store.influxql import InfluxQL, InfluxQLError, time_literal
from collector.store.retention import (
    CORE_FIELDS,
    PRUNED,
    cutoff,
    delete_body,
    major_version,
    plan,
    unsupported,
)

log = logging.getLogger(__name__)
HOUR = timedelta(hours=1)


class Unsupported(RuntimeError):
    """The server cannot be pruned (VictoriaMetrics, InfluxDB 3.x): retrying will not help."""


class PruneError(RuntimeError):
    """A step of the pruning (or of a backfill) failed, the message says which; nothing of a
    day is deleted unless its backfill was written."""


def _give_up_at_once() -> threading.Event:
    """A Writer's `stopping` event, already set: one attempt per write, no retry loop. A
    failed run is retried as a whole at the next one, and must never hang on a database
    that is down."""
    event = threading.Event()
    event.set()
    return event


def write_levels(client: InfluxQL, writer: Writer, start: datetime, end: datetime) -> int:
    """Both levels for [start, end) (whole hours), minutes before the hours made from them;
    the number of points written. PruneError if the database refused any of them."""
    written = 0
    for level in LEVELS:
        lines = list(downsampled_lines(level, client.query(backfill_select(level, start, end))))
        if lines:
            dropped = writer.write(lines)
            if dropped:
                raise PruneError(
                    f"{level.measurement}: the database refused {len(dropped)} of "
                    f"{len(lines)} points ({dropped[0].reason})"
                )
            written += len(lines)
    return written


def server_version(settings: InfluxSettings) -> str | None:
    """The `X-Influxdb-Version` header of the server's /ping (None when it sends none)."""
    url = settings.url.rstrip("/") + "/ping"
    try:
        with urllib.request.urlopen(url, timeout=settings.timeout_s) as response:
            version: str | None = response.headers.get("X-Influxdb-Version")
            return version
    except (urllib.error.URLError, OSError) as exc:
        raise PruneError(redact(f"{url}: cannot connect: {exc}")) from None


def oldest_reading(client: InfluxQL, before: datetime) -> datetime | None:
    """The time of the oldest raw reading before `before`, None when there is none."""
    found = []
    for field in CORE_FIELDS:
        statement = f'SELECT first("{field}") FROM "{PRUNED}" WHERE time < {time_literal(before)}'
        found += [row["time"] for series in client.query(statement) for row in series.rows()]
    return min(found, default=None)


def _token(settings: InfluxSettings) -> str:
    """As the writer's: the token, else InfluxDB 1.8's `username:password`."""
    if settings.token:
        return settings.token.get_secret_value()
    password = settings.password.get_secret_value() if settings.password else ""
    return f"{settings.username}:{password}" if settings.username else ""


def delete_v2(settings: InfluxSettings, start: datetime, end: datetime) -> None:
    """POST /api/v2/delete (InfluxDB 2.x): the raw readings of [start, end) in the bucket."""
    query = urllib.parse.urlencode({"org": settings.org, "bucket": settings.bucket})
    url = f"{settings.url.rstrip('/')}/api/v2/delete?{query}"
    request = urllib.request.Request(
        url,
        data=json.dumps(delete_body(start, end)).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Token {_token(settings)}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s):
            return
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()[:300]
        raise PruneError(redact(f"{url}: HTTP {exc.code}: {detail}")) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PruneError(redact(f"{url}: cannot connect: {exc}")) from None


def delete_raw(
    client: InfluxQL, settings: InfluxSettings, major: str, start: datetime, end: datetime
) -> None:
    if major == "2":
        delete_v2(settings, start, end)
    else:
        client.execute(
            f'DELETE FROM "{PRUNED}" WHERE time >= {time_literal(start)} '
            f"AND time < {time_literal(end)}"
        )


def prune(
    client: InfluxQL,
    settings: InfluxSettings,
    now: datetime,
    days: int,
    stopping: threading.Event | None = None,
) -> int:
    """Backfill then delete the raw readings older than `days` before `now`, a day at a time,
    oldest first, until `stopping` is set; the number of hours pruned. Raises Unsupported for
    a server that cannot be pruned, PruneError, InfluxQLError or WriteAborted at the first
    failure."""
    version = server_version(settings)
    problem = unsupported(version)
    if problem is not None:
        raise Unsupported(problem)
    major = major_version(version or "")
    chunks = plan(now, days, oldest_reading(client, cutoff(now, days)))
    if not chunks:
        return 0
    backend = backend_for(settings)
    writer = Writer(backend, _give_up_at_once())
    pruned = 0
    try:
        for start, end in chunks:
            if stopping is not None and stopping.is_set():
                break
            written = write_levels(client, writer, start, end)
            try:
                delete_raw(client, settings, major, start, end)
            except InfluxQLError as exc:
                raise PruneError(f"deleting raw readings: {exc}") from None
            log.debug(
                "pruned %s .. %s (%d coarse points written first)",
                start.isoformat(),
                end.isoformat(),
                written,
            )
            pruned += round((end - start) / HOUR)
    finally:
        backend.close()
    return pruned
