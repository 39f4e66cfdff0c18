"""`irve demo-history -c SITE.yaml [--days 30]`: write weeks of simulated history to InfluxDB,
so the dashboards are meaningful on the first start of the stack.

The values come from the simulator's model in coarse steps (`--step`, 60 s by default) and go
through the live energy, tariff and session code (collector.simulator.history); they are
written with the ingestor's writer to the database of the site file's `influx` section
(`IRVE_INFLUX__*`, API 2 or 1 as for `irve ingest`).

Simulated data must never mix with a site's real data: every point is tagged `demo=1`, and the
command refuses a database that already holds real (untagged) data of the site unless
`--force` (exit 2).
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from collector.commands.check import add_config_argument
from collector.config import InfluxSettings
from collector.ingest.writer import WriteAborted, Writer, backend_for
from collector.redact import redact_url
from collector.settings import ConfigError
from collector.simulator.history import DEFAULT_STEP_S, DEMO_TAG, HistoryCounts, history_lines
from collector.site import load_site
from collector.store.influxql import InfluxQL, InfluxQLError, quote_string

log = logging.getLogger(__name__)

BATCH_LINES = 5000
# What a real site writes and the dashboards and bills read.
REAL_MEASUREMENTS = ("reading", "energy", "session")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "demo-history",
        parents=[common],
        help="write simulated history (readings, energy, sessions) to InfluxDB",
    )
    add_config_argument(parser)
    parser.add_argument("--days", type=float, default=30.0, help="how far back (default 30)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    parser.add_argument(
        "--step",
        type=float,
        default=DEFAULT_STEP_S,
        metavar="SECONDS",
        help=f"simulated seconds between readings (default {DEFAULT_STEP_S:g})",
    )
    parser.add_argument(
        "--end",
        metavar="ISO8601",
        help="end of the history (default: now), e.g. 2026-11-23T00:00:00Z",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write even if the database holds real data of this site (demo points stay "
        "tagged demo=1)",
    )
    parser.set_defaults(run=run)


def parse_end(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        end = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError([f"--end: {text!r} is not an ISO 8601 date and time"]) from None
    if end.tzinfo is None:
        raise ConfigError([f"--end: {text!r} needs a time zone (e.g. Z or +01:00)"])
    return end.astimezone(UTC)


def batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def real_data(influx: InfluxSettings, site_id: str) -> str | None:
    """The first measurement holding points of `site_id` that are not demo points, if any.

    A point without the demo tag has an empty `demo` value for InfluxQL, so `!=` finds it."""
    client = InfluxQL.from_settings(influx)
    key, value = DEMO_TAG
    for measurement in REAL_MEASUREMENTS:
        statement = (
            f"SELECT * FROM {measurement} WHERE site = {quote_string(site_id)} "
            f"AND {key} != {quote_string(value)} LIMIT 1"
        )
        if client.query(statement):
            return measurement
    return None


def run(args: argparse.Namespace) -> int:
    if not 0 < args.days <= 366:
        raise ConfigError([f"--days: {args.days:g} must be > 0 and <= 366"])
    if not 1 <= args.step <= 3600:
        raise ConfigError([f"--step: {args.step:g} must be 1..3600 seconds"])
    site, profiles = load_site(args.config)
    end = parse_end(args.end)
    start = end - timedelta(days=args.days)
    phases_of = {m.id: profiles[m.profile].phases for m in site.meters}
    backend = backend_for(site.influx)
    if not backend.ping():
        log.error("InfluxDB at %s does not answer: nothing written", redact_url(site.influx.url))
        return 1
    if not args.force:
        try:
            found = real_data(site.influx, site.site.id)
        except InfluxQLError as exc:
            log.error("cannot check the database for real data: %s; nothing written", exc)
            return 1
        if found:
            raise ConfigError(
                [
                    f"--force: the database already holds real data of site {site.site.id!r} "
                    f"(measurement {found}); simulated history would mix with it in bills, "
                    "`irve compare` and the dashboards. Use an empty database, or --force "
                    "(demo points are tagged demo=1 and can be deleted, see "
                    "docs/energy-and-billing.md)"
                ]
            )
    # Hundreds of simulated sessions: their start/end log lines would drown the summary.
    logging.getLogger("collector.energy").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    counts = HistoryCounts()
    writer = Writer(backend, threading.Event())
    lines = history_lines(
        site, phases_of, start, end, seed=args.seed, step_s=args.step, counts=counts
    )
    try:
        for batch in batches(lines, BATCH_LINES):
            writer.write(batch)
    except WriteAborted as exc:
        log.error("writing to InfluxDB failed: %s", exc)
        return 1
    finally:
        backend.close()
    dropped = writer.stats.points_dropped
    print(
        f"{site.site.id}: {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC, one reading every "
        f"{args.step:g} s: {counts.readings} readings, {counts.energy} energy windows, "
        f"{counts.sessions} session events, {counts.events} index events, "
        f"{counts.subscriptions} days of subscription written"
        + (f", {dropped} refused by the database" if dropped else "")
    )
    return 1 if dropped else 0
