"""`irve downsample -c SITE.yaml [--setup] [--from D --to D] [--prune]`: the per-minute and
per-hour series the dashboards read over long ranges (collector.store.downsample,
docs/grafana.md).

- `--setup` (InfluxDB 1.x): creates the continuous queries that keep `reading_1m` and
  `reading_1h` up to date; on 2.x the stack's init script creates tasks instead.
- `--from/--to`: backfill, e.g. readings written before the setup, a demo history, or an
  ingestor's backlog older than the continuous queries recompute. The range is widened to
  whole hours; each day is read with InfluxQL and written with the ingestor's writer, so it
  works on 1.x, 2.x and 3.x. Running it twice writes the same points again (same series and
  times: nothing is counted twice).
- `--prune`: once, what `irve ingest` does every hour when `influx.raw_retention_days` is set
  (collector.store.prune): backfill, then delete, the raw readings older than that; for cron
  where no ingestor runs the housekeeping.

The database is the site file's `influx` section (`IRVE_INFLUX__*`); the coarse series cover
every site of the database, not only this file's.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.commands.check import add_config_argument
from collector.config import InfluxSettings
from collector.ingest.writer import WriteAborted, Writer, backend_for
from collector.settings import ConfigError
from collector.site import load_site, local_instant
from collector.store.downsample import LEVELS, chunks, continuous_queries, query_name
from collector.store.influxql import InfluxQL, InfluxQLError
from collector.store.prune import PruneError, Unsupported, prune, write_levels
from collector.store.retention import cutoff

log = logging.getLogger(__name__)
CHUNK = timedelta(days=1)  # a day of 1 s readings: 86,400 per meter, 1,440 minutes
HOUR = timedelta(hours=1)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "downsample",
        parents=[common],
        help="per-minute and per-hour readings for dashboards over long ranges",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--setup",
        action="store_true",
        help="InfluxDB 1.x: create the continuous queries that keep them up to date",
    )
    parser.add_argument("--from", dest="start", help="backfill from YYYY-MM-DD[THH:MM] local")
    parser.add_argument("--to", dest="end", help="backfill to YYYY-MM-DD[THH:MM] local, excluded")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="backfill, then delete, the raw readings older than influx.raw_retention_days",
    )
    parser.set_defaults(run=run)


def floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) widened to whole UTC hours, so that no hourly point is left partial."""
    lo, hi = floor_hour(start), floor_hour(end)
    return lo, hi if hi == end.astimezone(UTC) else hi + HOUR


def run(args: argparse.Namespace) -> int:
    if not args.setup and not args.prune and args.start is None and args.end is None:
        raise ConfigError(["--setup, --from/--to or --prune: nothing to do"])
    if (args.start is None) != (args.end is None):
        raise ConfigError(["--from and --to: give both, or neither"])
    site, _ = load_site(args.config)
    span = None
    if args.start is not None:
        tz = site.site.tz
        start = local_instant(args.start, tz, "from")
        end = local_instant(args.end, tz, "to")
        if end <= start:
            raise ConfigError(["--to: must be after --from"])
        span = hour_span(start, end)
    days = site.influx.raw_retention_days
    if args.prune and days is None:
        raise ConfigError(["--prune: influx.raw_retention_days is not set in the site file"])
    client = InfluxQL.from_settings(site.influx)
    try:
        if args.setup:
            setup(client)
        if span is not None:
            written = backfill(client, site.influx, *span)
            print(f"{span[0]:%Y-%m-%d %H:%M} .. {span[1]:%Y-%m-%d %H:%M} UTC: {written} points")
        if args.prune and days is not None:
            now = datetime.now(UTC)
            pruned = prune(client, site.influx, now, days)
            print(
                f"raw readings before {cutoff(now, days):%Y-%m-%d %H:%M} UTC: {pruned} hours pruned"
            )
    except (InfluxQLError, WriteAborted, PruneError, Unsupported) as exc:
        print(f"irve downsample: {exc}", file=sys.stderr)
        return 1
    return 0


def setup(client: InfluxQL) -> None:
    """Create the continuous queries (1.x), replacing any older definition of them."""
    existing = {
        row["name"]
        for series in client.query("SHOW CONTINUOUS QUERIES")
        if series.name == client.database
        for row in series.rows()
    }
    for statement, level in zip(continuous_queries(client.database), LEVELS, strict=True):
        name = query_name(level)
        if name in existing:
            client.execute(f'DROP CONTINUOUS QUERY "{name}" ON "{client.database}"')
        client.execute(statement)
        log.info("continuous query %s: %s every %s", name, level.measurement, level.every)


def backfill(client: InfluxQL, settings: InfluxSettings, start: datetime, end: datetime) -> int:
    """Write both levels for [start, end) (whole hours), a day at a time, minutes before the
    hours they make up; the number of points written."""
    backend = backend_for(settings)
    writer = Writer(backend, threading.Event())
    try:
        for lo, hi in chunks(start, end, CHUNK):
            write_levels(client, writer, lo, hi)
            log.info("downsampled %s .. %s", lo.isoformat(), hi.isoformat())
    finally:
        backend.close()
    return writer.stats.points_written
