"""`irve simulate -c SITE.yaml`: serve every meter of the site file over Modbus from the model.

TCP and RTU-over-TCP buses listen at their host:port; an rtu bus needs `--serial BUS=DEVICE`
(a USB adapter, or one end of a `socat` pty pair whose other end the collector uses).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from datetime import datetime
from typing import Any

from collector.commands.check import add_config_argument
from collector.settings import ConfigError
from collector.simulator.chargers import METER_VALUES_S, default_url, play_chargers
from collector.simulator.server import SimulatedSite
from collector.site import load_site

log = logging.getLogger(__name__)


def _serial(text: str) -> tuple[str, str]:
    bus, sep, device = text.partition("=")
    if not sep or not bus or not device:
        raise argparse.ArgumentTypeError(f"{text!r}: expected BUS_ID=DEVICE")
    return bus, device


def _start(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an ISO 8601 time") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a time zone (e.g. Z or +01:00)")
    return when


def _badge(text: str) -> tuple[str, str]:
    point, sep, badge = text.partition("=")
    if not sep or not point or not badge.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected POINT=BADGE")
    return point, badge.strip()


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "simulate", parents=[common], help="serve the site's meters over Modbus (demo, tests)"
    )
    add_config_argument(parser)
    parser.add_argument("--seed", type=int, help="random seed: same seed, same values")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    parser.add_argument("--start", type=_start, help="simulated start time (default now)")
    parser.add_argument(
        "--serial",
        type=_serial,
        action="append",
        default=[],
        metavar="BUS=DEVICE",
        help="serve an rtu bus on this serial device (repeatable)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[:METER[:ARG]]",
        help="overcurrent:ID[:A], overload[:W], base:W, silent:ID, exception:ID[:CODE], short:ID, "
        "garbled:ID, max-read:ID:N, plug:ID[:MINUTES] (repeatable)",
    )
    parser.add_argument(
        "--ocpp-url",
        help="the collector's OCPP central system the site's chargers connect to "
        "(default: ws://<ocpp.listen>, 127.0.0.1 for 0.0.0.0)",
    )
    parser.add_argument(
        "--badge",
        type=_badge,
        action="append",
        default=[],
        metavar="POINT=BADGE",
        help="the badge the simulated charger shows for the cars of a point (default SIM-POINT)",
    )
    parser.add_argument(
        "--meter-values-s",
        type=float,
        default=METER_VALUES_S,
        metavar="S",
        help="seconds between the chargers' MeterValues during a transaction "
        f"(default {METER_VALUES_S:g}; 0: none)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    site, profiles = load_site(args.config)
    if args.speed <= 0:
        raise ConfigError(["--speed: must be > 0"])
    if args.meter_values_s < 0:
        raise ConfigError(["--meter-values-s: must be >= 0"])
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    try:
        sim = SimulatedSite(
            site,
            profiles,
            seed=seed,
            speed=args.speed,
            serial=dict(args.serial),
            start=args.start,
            scenarios=args.scenario,
        )
    except ValueError as exc:
        raise ConfigError([f"--scenario {exc}"]) from None
    for bus in site.buses:
        meters = ", ".join(f"{m.id}@{m.unit}" for m in site.meters if m.bus == bus.id)
        where = sim.endpoint(bus.id)
        print(f"bus {bus.id} ({bus.type}) on {where}: {meters}", flush=True)
    url = args.ocpp_url or (default_url(site) if site.ocpp is not None else "")
    for charger in site.chargers:
        print(f"charger {charger.id} -> {url}", flush=True)
    print(f"seed {seed}, speed x{args.speed:g}; Ctrl-C to stop", flush=True)
    try:
        asyncio.run(_serve(sim, url, dict(args.badge), args.meter_values_s))
    except (OSError, RuntimeError) as exc:
        print(f"irve simulate: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    sim: SimulatedSite, url: str, badges: dict[str, str], meter_values_s: float
) -> None:
    if not sim.site.chargers:
        await sim.serve_forever()
        return
    async with sim:
        await play_chargers(sim.site, sim.model, url, badges, meter_values_s)
