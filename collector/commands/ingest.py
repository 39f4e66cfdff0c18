"""`irve ingest [-c FILE]`: MQTT -> InfluxDB (configured by environment, optionally a file)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from collector.config import IngestorConfig
from collector.settings import apply_log_level, load


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "ingest",
        parents=[common],
        help="write what collectors publish to InfluxDB",
        description="Environment first (IRVE_MQTT__HOST, IRVE_INFLUX__URL, ...; see docs/ingest.md).",
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="optional YAML file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from collector.ingest.service import Ingestor

    config = load(IngestorConfig, args.config)
    apply_log_level(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    Ingestor(config).run(stop)
    return 0
