"""`irve check -c SITE.yaml`: validate a site file and print what it describes."""

from __future__ import annotations

import argparse
from typing import Any

from collector.config import ConfigError, SiteConfig, load
from collector.meters.profile import Profile, load_profiles
from collector.mqtt.client import tls_problems


def add_config_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("-c", "--config", required=required, metavar="SITE.yaml", help="site file")


def load_site(path: str) -> tuple[SiteConfig, dict[str, Profile]]:
    """The site and the profiles its meters use, every reference and file checked: what
    `irve check` accepts, `irve collect` starts with."""
    site = load(SiteConfig, path)
    profiles = load_profiles(site.profiles_dir)
    problems = tls_problems(site.mqtt) + [
        f"meters[{i}].profile: unknown profile {m.profile!r} (see `irve profiles`)"
        for i, m in enumerate(site.meters)
        if m.profile not in profiles
    ]
    for i, meter in enumerate(site.meters):
        profile = profiles.get(meter.profile)
        if meter.socket and profile and meter.socket.phases > profile.phases:
            problems.append(
                f"meters[{i}].socket.phases: {meter.socket.phases} phases but profile "
                f"{profile.id} measures {profile.phases}"
            )
    if problems:
        raise ConfigError(problems)
    return site, profiles


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("check", parents=[common], help="validate a site file")
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    site, profiles = load_site(args.config)
    print(summary(site, profiles))
    return 0


def summary(site: SiteConfig, profiles: dict[str, Profile]) -> str:
    lines = [
        f"Site {site.site.id}: {site.site.name or '(no name)'} ({site.site.timezone}), "
        f"subscribed power {site.site.subscribed_power_kva:g} kVA",
        f"MQTT {site.mqtt.host}:{site.mqtt.port} prefix {site.mqtt.topic_prefix}/{site.site.id}, "
        f"poll every {site.poll_interval_s:g} s",
        "Buses:",
    ]
    for bus in site.buses:
        where = (
            f"{bus.device} {bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
            if bus.type == "rtu"
            else f"{bus.host}:{bus.port}"
        )
        lines.append(f"  {bus.id:<10} {bus.type:<13} {where}")
    lines.append("Meters:")
    for m in site.meters:
        profile = profiles[m.profile]
        socket = (
            f"socket {m.socket.label!r} {m.socket.rated_current_a:g} A {m.socket.phases}ph"
            if m.socket
            else "site incomer"
        )
        flag = "" if profile.confidence == "confirmed" else f" [{profile.confidence}]"
        lines.append(
            f"  {m.id:<10} {m.role:<6} bus {m.bus} unit {m.unit:<3} "
            f"{profile.manufacturer} {profile.model}{flag} - {socket}"
        )
    tariff = site.tariff
    lines.append(f"Tariff: {tariff.option}")
    if tariff.option == "hphc":
        lines.append(f"  HC {', '.join(tariff.offpeak) or '-'}")
        for season in tariff.seasons:
            lines.append(
                f"  HC {season.name} ({season.start}..{season.end}): {', '.join(season.offpeak)}"
            )
    for row in tariff.prices:
        prices = ", ".join(
            f"{key.upper()} {value:.4f}"
            for key in ("base", "hp", "hc")
            if (value := getattr(row, key)) is not None
        )
        lines.append(f"  from {row.since}: {prices} EUR/kWh")
    return "\n".join(lines)


__all__ = ["ConfigError", "add_config_argument", "load_site"]
