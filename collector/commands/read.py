"""`irve read -c SITE.yaml [--meter ID]`: read meters once and print what an installer checks.

Commissioning checks: each line voltage near 230 V, and P ≈ U × I × PF (a current transformer
on the wrong phase or reversed shows up as a power that does not match).
Exit status 1 if a meter did not answer; CHECK flags are advice and keep status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from collector.commands.check import add_config_argument
from collector.config import MeterSettings
from collector.meters.poller import read_once
from collector.meters.profile import Profile, public_unit
from collector.meters.reading import PHASES, Reading
from collector.site import load_site
from collector.wire.messages import format_ts

NOMINAL_V = 230.0
VOLTAGE_TOLERANCE = 0.10  # EN 50160: 230 V ± 10 %
POWER_TOLERANCE = 0.05  # of U × I × PF
POWER_TOLERANCE_W = 20.0  # floor, for small loads and meter resolution


@dataclass(frozen=True)
class Check:
    ok: bool | None  # None: not enough values to tell
    text: str

    @property
    def flag(self) -> str:
        return {True: "OK", False: "CHECK", None: "N/A"}[self.ok]


def voltage_checks(reading: Reading) -> list[Check]:
    present: list[tuple[str, float]] = [
        (f"L{i + 1}", v)
        for i, p in enumerate(PHASES)
        if (v := reading.values.get(f"voltage_{p}_v")) is not None
    ]
    single = reading.values.get("voltage_v")
    if not present and single is not None:
        present = [("L", single)]
    if not present:
        return [Check(None, "voltage: no voltage register")]
    low, high = NOMINAL_V * (1 - VOLTAGE_TOLERANCE), NOMINAL_V * (1 + VOLTAGE_TOLERANCE)
    return [
        Check(low <= v <= high, f"voltage {name} {v:.1f} V (expected {low:.0f}..{high:.0f} V)")
        for name, v in present
    ]


def _expected_power(values: dict[str, float | None]) -> float | None:
    """Σ U × I × |PF| per phase, or U × I × |PF| for a single-phase meter."""
    total_pf = values.get("power_factor")
    phases = []
    for p in PHASES:
        u, i = values.get(f"voltage_{p}_v"), values.get(f"current_{p}_a")
        if u is not None and i is not None:
            pf = values.get(f"power_factor_{p}", total_pf)
            phases.append(None if pf is None else u * i * abs(pf))
    if phases:
        return None if None in phases else sum(p for p in phases if p is not None)
    u, i = values.get("voltage_v"), values.get("current_a")
    if u is None or i is None or total_pf is None:
        return None
    return u * i * abs(total_pf)


def power_check(reading: Reading) -> Check:
    measured = reading.power_w
    expected = _expected_power(reading.values)
    if measured is None or expected is None:
        return Check(None, "P ≈ U × I × PF: needs power, voltage, current and power factor")
    tolerance = max(POWER_TOLERANCE * expected, POWER_TOLERANCE_W)
    return Check(
        abs(abs(measured) - expected) <= tolerance,
        f"P ≈ U × I × PF: {measured:.0f} W measured, {expected:.0f} W expected "
        f"(± {tolerance:.0f} W)",
    )


def checks(reading: Reading) -> list[Check]:
    return [*voltage_checks(reading), power_check(reading)]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "null (not available)"
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    if unit == "Wh" and abs(value) >= 1000:
        return f"{text} Wh ({value / 1000:.3f} kWh)"
    return f"{text} {unit}".rstrip()


def report(meter: MeterSettings, profile: Profile, result: Reading | Exception) -> str:
    head = (
        f"{meter.id} ({meter.role}) bus {meter.bus} unit {meter.unit}: "
        f"{profile.manufacturer} {profile.model}"
    )
    if profile.confidence != "confirmed":
        head += f" [profile {profile.confidence}: compare with the meter's display]"
    if isinstance(result, Exception):
        return f"{head}\n  NO ANSWER: {result}"
    lines = [head, f"  read at {format_ts(result.ts)}"]
    for name in profile.values:
        lines.append(f"  {name:<18} {_number(result.values.get(name), public_unit(name))}")
    lines.extend(f"  {check.flag:<5} {check.text}" for check in checks(result))
    return "\n".join(lines)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "read", parents=[common], help="read meters once and print decoded values (commissioning)"
    )
    add_config_argument(parser)
    parser.add_argument(
        "--meter", action="append", metavar="ID", help="only this meter (repeatable)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    site, profiles = load_site(args.config)
    known = {m.id for m in site.meters}
    unknown = [m for m in args.meter or [] if m not in known]
    if unknown:
        print(f"irve read: --meter {unknown[0]}: no such meter in {args.config}", file=sys.stderr)
        return 2
    results = asyncio.run(read_once(site, profiles, args.meter))
    meters = {m.id: m for m in site.meters}
    blocks = [
        report(meters[point], profiles[meters[point].profile], r) for point, r in results.items()
    ]
    print("\n\n".join(blocks))
    return 1 if any(isinstance(r, Exception) for r in results.values()) else 0
