"""`irve profiles`: the meter profiles this installation knows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from collector.meters.profile import load_profiles


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("profiles", parents=[common], help="list meter profiles")
    parser.add_argument(
        "-d", "--dir", action="append", default=[], type=Path, help="extra profiles directory"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for profile in sorted(load_profiles(args.dir).values(), key=lambda p: p.id):
        print(
            f"{profile.id:<28} {profile.phases}ph {profile.confidence:<10} "
            f"{profile.manufacturer} {profile.model}"
        )
    return 0
