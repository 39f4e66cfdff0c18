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

from collector import __version__, redact
from collector.config import LOG_LEVELS
from collector.meters.profile import ProfileError
from collector.settings import ConfigError

# Each module has `register(subparsers)`, which adds its parser and sets `run(args) -> int`.
COMMANDS = (
    "collector.commands.bill",
    "collector.commands.check",
    "collector.commands.collect",
    "collector.commands.compare",
    "collector.commands.demo_history",
    "collector.commands.desk",
    "collector.commands.downsample",
    "collector.commands.ingest",
    "collector.commands.profiles",
    "collector.commands.read",
    "collector.commands.recompute",
    "collector.commands.simulate",
    "collector.commands.tariffs",
)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def command_name(module: str) -> str:
    """`collector.commands.demo_history` -> `demo-history`: each module registers its name."""
    return module.rsplit(".", 1)[1].replace("_", "-")


def asked_command(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first argument that is one), None without one."""
    names = {command_name(module) for module in COMMANDS}
    return next((arg for arg in argv if arg in names), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or only `command`'s: a command then pays only for its own
    imports (`irve desk` does not load pymodbus, xknx, apprise or the OCPP library: about
    20 MB of its memory, and a second of start on a small box)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        # Without SUPPRESS the subcommand's default (None) would erase `irve --log-level X cmd`.
        default=argparse.SUPPRESS,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL, any case "
        "(default: IRVE_LOG_LEVEL, the site file's log_level, INFO)",
    )
    parser = argparse.ArgumentParser(
        prog="irve", description="Telemetry for EV charging points", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"irve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        if command is None or command_name(name) == command:
            importlib.import_module(name).register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(asked_command(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    # Above the environment and the site file, whose level a command applies once it has
    # loaded its configuration (collector.settings.apply_log_level).
    if "log_level" in args:
        os.environ["IRVE_LOG_LEVEL"] = args.log_level
    level = os.environ.get("IRVE_LOG_LEVEL", "INFO")
    if level.upper() not in LOG_LEVELS:
        print(
            f"irve: IRVE_LOG_LEVEL: {level!r} is not one of {', '.join(LOG_LEVELS)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    redact.install(logging.getLogger().level)
    try:
        return int(args.run(args))
    except (ConfigError, ProfileError) as exc:
        message = redact.redact(str(exc))  # a rejected value may be a URL with a password
        print(f"irve {args.command}: invalid configuration:\n{message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
