"""`irve check -c SITE.yaml`: validate a site file and print what it describes."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from decimal import Decimal
from typing import Any

from collector.config import RtuBus, SiteConfig, SubscriptionRow
from collector.energy.tariff import offpeak_warnings
from collector.meters.profile import Profile
from collector.site import load_site


def add_config_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("-c", "--config", required=required, metavar="SITE.yaml", help="site file")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("check", parents=[common], help="validate a site file")
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    site, profiles = load_site(args.config)
    print(summary(site, profiles))
    for warning in serial_warnings(site, profiles) + offpeak_warnings(site.tariff):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def serial_warnings(site: SiteConfig, profiles: dict[str, Profile]) -> list[str]:
    """Serial buses whose speed or framing differs from the factory settings of the meters on
    them: right only if each meter was reconfigured, else every poll times out."""
    warnings = []
    for i, bus in enumerate(site.buses):
        if not isinstance(bus, RtuBus):
            continue  # a gateway's serial side is set on the gateway, not here
        line = f"{bus.baudrate} {bus.bytesize}{bus.parity}{bus.stopbits}"
        meters: dict[str, list[str]] = {}
        for meter in site.meters:
            if meter.bus == bus.id:
                meters.setdefault(meter.profile, []).append(meter.id)
        for profile_id, ids in meters.items():
            profile = profiles[profile_id]
            if "serial" not in profile.model_fields_set:
                continue  # the profile says nothing about the meter's factory settings
            factory = profile.serial
            if (factory.baudrate, factory.parity, factory.stopbits) != (
                bus.baudrate,
                bus.parity,
                bus.stopbits,
            ):
                warnings.append(
                    f"buses[{i}] ({bus.id}): {line}, but {profile_id} meters "
                    f"({', '.join(ids)}) leave the factory at {factory.baudrate} "
                    f"8{factory.parity}{factory.stopbits}: set the bus to that, or each "
                    "meter to the bus's settings on its front panel"
                )
    return warnings


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
    supplier = f" ({tariff.supplier} table, {tariff.kva} kVA)" if tariff.supplier else ""
    lines.append(f"Tariff: {tariff.option}{supplier}")
    if tariff.option == "hphc":
        entries = tariff.offpeak_entries()
        for entry in entries:
            indent = "  "
            if entry.since != date.min:
                lines.append(f"  HC from {entry.since}:")
                indent = "    "
            if entry.offpeak:  # an entry without ranges has seasons (offpeak_entries)
                lines.append(f"{indent}HC {', '.join(entry.offpeak)}")
            for season in entry.seasons:
                lines.append(
                    f"{indent}HC {season.name} ({season.start}..{season.end}): "
                    f"{', '.join(season.offpeak)}"
                )
        if not entries:
            lines.append("  HC -")
        if tariff.weekend is not None:
            extra = f" and {tariff.weekend.extra_day}" if tariff.weekend.extra_day else ""
            lines.append(f"  HC all day on sat, sun{extra} (weekend option)")
    if tariff.option == "tempo":
        tempo = tariff.tempo
        origin = tempo.url if tempo.source == "rte" else "the retained MQTT topic"
        lines.append(
            f"  Tempo: day 06:00-06:00, HC 22:00-06:00; colours from {origin}, "
            f"fallback {tempo.fallback}"
        )
    for row in tariff.prices:
        figures = row.figures()
        if tariff.option != "tempo":  # the table's Tempo figures, for comparisons only
            figures = {k: v for k, v in figures.items() if not k.startswith("TEMPO_")}
        prices = ", ".join(f"{name} {_price(value)}" for name, value in figures.items())
        lines.append(f"  from {row.since}: {prices} EUR/kWh")
    for sub in tariff.subscription:
        lines.append(
            f"  subscription from {sub.since}: {subscription_figure(sub)} (apart from the kWh prices)"
        )
    return "\n".join(lines)


def subscription_figure(row: SubscriptionRow) -> str:
    """A typed subscription row's figure as the installer gave it (per month or per year)."""
    if row.per_month is not None:
        return f"{row.per_month} EUR/month"
    return f"{row.per_year} EUR/year"


def _price(value: Decimal) -> str:
    """Four decimals as prices are printed, more when the source has more (0.19398)."""
    text = f"{value:.4f}"
    return text if Decimal(text) == value else str(value)
