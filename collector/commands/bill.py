"""`irve bill`: a guest's charging statement for a stay (CSV, printable HTML, PDF; FR or EN).

    irve bill -c SITE.yaml --room 12 --arrival 2026-01-10 --departure 2026-01-13 \
        --policy allowance --kwh-per-night 8 --html statement.html --pdf statement.pdf

Sessions come from InfluxDB (`session` measurement, InfluxQL /query; connection from the
site file's `influx` section or IRVE_INFLUX__* variables). A date without a time means local
midnight for the arrival and the end of the day for the departure.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from collector.billing.render import to_csv, to_html, to_pdf
from collector.billing.source import load_sessions, meter_wh
from collector.billing.statement import (
    Hotel,
    Policy,
    Stay,
    StayKind,
    make_statement,
    statement_number,
)
from collector.commands.check import add_config_argument
from collector.config import SiteConfig
from collector.settings import ConfigError
from collector.site import load_site, local_instant
from collector.store.influxql import InfluxQL, InfluxQLError
from collector.wire.messages import badge_problem

POLICIES = {"at-cost": "at_cost", "flat": "flat", "allowance": "allowance"}
DEFAULT_KWH_PER_NIGHT = "8"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("bill", parents=[common], help="a guest's charging statement")
    add_config_argument(parser)
    who = parser.add_argument_group("whose sessions (at least one)")
    who.add_argument("--badge", help="sessions with this badge")
    who.add_argument(
        "--room",
        help="sessions of room ROOM (tagged by the chargers from the desk's badge list) or "
        "with badge ROOM, room-ROOM or chambre-ROOM (room card)",
    )
    who.add_argument("--point", help="sessions on this socket (a gîte's own charger)")
    parser.add_argument("--arrival", required=True, help="YYYY-MM-DD[THH:MM], local time")
    parser.add_argument("--departure", required=True, help="YYYY-MM-DD[THH:MM], local time")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="at-cost")
    parser.add_argument(
        "--fee",
        help="flat fee per session, EUR incl. VAT (required with --policy flat, only there)",
    )
    parser.add_argument(
        "--kwh-per-night",
        help=f"included kWh per night (--policy allowance only; default {DEFAULT_KWH_PER_NIGHT})",
    )
    parser.add_argument("--lang", choices=("fr", "en"), default="fr")
    parser.add_argument("--csv", type=Path, help="write the CSV here (default: standard output)")
    parser.add_argument("--html", type=Path, help="write the printable HTML statement here")
    parser.add_argument("--pdf", type=Path, help="write the PDF statement here")
    parser.set_defaults(run=run)


def decimal_arg(text: str, field: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigError([f"--{field}: {text!r} is not a number"]) from None
    if value < 0 or not value.is_finite():
        raise ConfigError([f"--{field}: must be >= 0"])
    return value


def make_policy(args: argparse.Namespace) -> Policy:
    """Each option only with the policy it belongs to: a fee forgotten must not bill 0 €, and
    a fee given to another policy must not be silently ignored."""
    name = POLICIES[args.policy]
    if name == "flat" and args.fee is None:
        raise ConfigError(["--fee: required with --policy flat (the fee per session, EUR)"])
    if name != "flat" and args.fee is not None:
        raise ConfigError([f"--fee: only with --policy flat, not {args.policy}"])
    if name != "allowance" and args.kwh_per_night is not None:
        raise ConfigError([f"--kwh-per-night: only with --policy allowance, not {args.policy}"])
    if name == "allowance" and args.kwh_per_night is None:
        print(
            f"irve bill: --kwh-per-night not given: {DEFAULT_KWH_PER_NIGHT} kWh per night "
            "(the default)",
            file=sys.stderr,
        )
    return Policy(
        name,  # type: ignore[arg-type]
        decimal_arg(args.fee or "0", "fee"),
        decimal_arg(args.kwh_per_night or DEFAULT_KWH_PER_NIGHT, "kwh-per-night"),
    )


def hotel_of(site: SiteConfig) -> Hotel:
    h = site.hotel
    return Hotel(site.site.name, h.address, h.siret, h.vat_number, Decimal(repr(h.vat_rate)))


def badge_arg(text: str | None, option: str) -> str | None:
    """A badge as the collector keeps it (surrounding spaces removed); characters it refuses
    could never be found, so they are a usage error naming the option."""
    if text is None:
        return None
    value = text.strip()
    problem = badge_problem(value)
    if problem is not None:
        raise ConfigError([f"--{option}: {problem}"])
    return value


def run(args: argparse.Namespace) -> int:
    site, _ = load_site(args.config)
    tz = site.site.tz
    if not (args.badge or args.room or args.point):
        raise ConfigError(["--room/--badge/--point: give at least one (whose sessions)"])
    sockets = {m.id: m.socket.label if m.socket else m.id for m in site.meters}
    if args.point and args.point not in sockets:
        raise ConfigError(
            [f"--point: no meter {args.point!r} in the site file ({', '.join(sorted(sockets))})"]
        )
    start = local_instant(args.arrival, tz, "arrival")
    end = local_instant(args.departure, tz, "departure", end_of_day=True)
    if end <= start:
        raise ConfigError(["--departure: must be after --arrival"])
    policy = make_policy(args)
    badge, room = badge_arg(args.badge, "badge"), badge_arg(args.room, "room")
    badges = [b for b in (badge,) if b]
    if room:
        badges += [room, f"room-{room}", f"chambre-{room}"]
    kind: StayKind = "room" if room else "badge" if badge else "point"
    label = room or badge or args.point
    client = InfluxQL.from_settings(site.influx)
    try:
        sessions, warnings = load_sessions(
            client, site.site.id, start, end, badges, args.point, [room] if room else None
        )
        meter = meter_wh(client, site.site.id, sessions, site.energy.window_s)
    except InfluxQLError as exc:
        print(f"irve bill: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"irve bill: warning: {warning}", file=sys.stderr)
    if not sessions:
        print(
            f"irve bill: no ended charging session for {kind} {label!r} between "
            f"{start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} ({tz.key}): no statement written",
            file=sys.stderr,
        )
        return 1
    stay = Stay(
        label,
        start.astimezone(tz).date(),
        (end - timedelta(seconds=1)).astimezone(tz).date(),
        kind,
        start,
        end,
    )
    statement = make_statement(
        stay,
        sessions,
        policy,
        meter,
        labels=sockets,
        hotel=hotel_of(site),
        number=statement_number(site.site.id, stay),
        issued=datetime.now(tz).date(),
    )
    for warning in statement.warnings:
        print(f"irve bill: warning: {warning}", file=sys.stderr)
    text = to_csv(statement, args.lang, tz)
    try:
        pdf = to_pdf(statement, args.lang, tz) if args.pdf else None
    except OSError as exc:  # WeasyPrint loads Pango when first imported
        print(
            f"irve bill: cannot make the PDF ({exc}): WeasyPrint needs the Pango library "
            "(Debian: libpango-1.0-0 libpangoft2-1.0-0); nothing written",
            file=sys.stderr,
        )
        return 1
    try:
        if args.csv:
            # With a byte order mark, Excel reads the file as UTF-8 (accents, the euro sign).
            args.csv.write_text(text, encoding="utf-8-sig")
        else:
            sys.stdout.write(text)
        if args.html:
            args.html.write_text(to_html(statement, args.lang, tz), encoding="utf-8")
        if args.pdf and pdf is not None:
            args.pdf.write_bytes(pdf)
    except OSError as exc:
        print(f"irve bill: cannot write the statement: {exc}", file=sys.stderr)
        return 1
    return 0
