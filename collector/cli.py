"""`irve`: one console script, one subcommand per job (SPEC.md).

Exit status: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from collector import __version__
from collector.config import ConfigError
from collector.meters.profile import ProfileError

# Each module has `register(subparsers)`, which adds its parser and sets `run(args) -> int`.
COMMANDS = (
    "collector.commands.bill",
    "collector.commands.check",
    "collector.commands.collect",
    "collector.commands.compare",
    "collector.commands.demo_history",
    "collector.commands.desk",
    "collector.commands.ingest",
    "collector.commands.profiles",
    "collector.commands.read",
    "collector.commands.recompute",
    "collector.commands.simulate",
)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        help="DEBUG, INFO, WARNING or ERROR (default: IRVE_LOG_LEVEL, the site file's log_level, INFO)",
    )
    parser = argparse.ArgumentParser(
        prog="irve", description="Telemetry for EV charging points", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"irve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.log_level:  # above the environment and the site file, which `config.load` applies
        os.environ["IRVE_LOG_LEVEL"] = args.log_level.upper()
    try:
        logging.basicConfig(
            level=os.environ.get("IRVE_LOG_LEVEL", "INFO").upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    except ValueError as exc:  # an unknown level name
        print(f"irve: --log-level / IRVE_LOG_LEVEL: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except (ConfigError, ProfileError) as exc:
        print(f"irve {args.command}: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
