"""`irve demo-history -c SITE.yaml [--days 30]`: write weeks of simulated history to InfluxDB,
so the dashboards are meaningful on the first start of the stack.

The values come from the simulator's model in coarse steps (`--step`, 60 s by default) and go
through the live energy, tariff and session code (collector.simulator.history); they are
written with the ingestor's writer to the database of the site file's `influx` section
(`IRVE_INFLUX__*`, API 2 or 1 as for `irve ingest`).
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from collector.commands.check import add_config_argument, load_site
from collector.config import ConfigError
from collector.ingest.writer import WriteAborted, Writer, backend_for
from collector.redact import redact_url
from collector.simulator.history import DEFAULT_STEP_S, HistoryCounts, history_lines

log = logging.getLogger(__name__)

BATCH_LINES = 5000


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
        f"{counts.sessions} session events, {counts.events} index events written"
        + (f", {dropped} refused by the database" if dropped else "")
    )
    return 1 if dropped else 0
