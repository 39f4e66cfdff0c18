"""`irve tariffs [--at DATE] [--kva N] [--option base|hphc|tempo] [-c SITE.yaml]`: EDF's
regulated prices and subscriptions in force on a day, from the bundled dated table, or with
`-c` the site's own resolved tariff (its rows from the table and its typed overrides).

Every figure is shown as the table or the site file gives it, never rounded; only a monthly
subscription derived from a yearly one is rounded to the cent, and marked `≈`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from collector.commands.check import add_config_argument, subscription_figure
from collector.config import PriceRow, SiteConfig, SubscriptionRow
from collector.settings import load
from collector.tariffs import regulated
from collector.tariffs.regulated import OPTIONS, Option, Prices, RegulatedError, Source, Table

# Dated rows (price, subscription): the one in force on a day is picked the same way.
DatedT = TypeVar("DatedT", PriceRow, SubscriptionRow)

OPTION_NAMES: dict[Option, str] = {"base": "Base", "hphc": "HP/HC", "tempo": "Tempo"}
REPORTED = "(reported, to verify)"
DEFAULT_ZONE = "Europe/Paris"  # the Tarif Bleu's days are French days


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "tariffs", parents=[common], help="EDF's regulated prices and subscriptions on a day"
    )
    parser.add_argument("--at", metavar="DATE", help="YYYY-MM-DD (default: today)")
    parser.add_argument("--kva", type=int, help="only this subscribed power")
    parser.add_argument("--option", choices=OPTIONS, help="only this option")
    add_config_argument(parser, required=False)
    parser.set_defaults(run=run)


def _usage(message: str) -> int:
    print(f"irve tariffs: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.config and (args.kva is not None or args.option):
        return _usage("-c shows the site's own tariff: --kva and --option are for the table alone")
    site = load(SiteConfig, args.config) if args.config else None
    zone = site.site.tz if site is not None else ZoneInfo(DEFAULT_ZONE)
    if args.at is None:
        day = datetime.now(zone).date()
    else:
        try:
            day = date.fromisoformat(args.at.strip())
        except ValueError:
            return _usage(f"--at: {args.at!r} is not a date (YYYY-MM-DD)")
    table = regulated.bundled()
    try:
        if args.kva is not None:
            regulated.check_kva(args.kva)
        since = table.movement_at(day)
    except RegulatedError as exc:
        option = "--kva" if args.kva is not None and args.kva not in regulated.KVA_STEPS else "--at"
        return _usage(f"{option}: {exc}")
    if site is not None:
        print("\n".join(site_lines(site, table, day)))
        return 0
    print("\n".join(table_lines(table, day, since, args.option, args.kva)))
    return 0


def table_lines(
    table: Table, day: date, since: date, only: Option | None, kva: int | None
) -> list[str]:
    lines = [f"EDF Tarif Bleu on {day} (prices from the movement of {since}), incl. tax"]
    cited: dict[str, Source] = {}
    for option in [only] if only else OPTIONS:
        powers = sorted({p.kva for p in table.prices if p.option == option})
        powers = [kva] if kva is not None else powers
        lines += ["", OPTION_NAMES[option]]
        for power in powers:
            lines.append(f"  {power:>2} kVA  " + _option_line(table, option, power, day, cited))
    lines += ["", "Sources:"]
    lines += [
        f"  [{s.key}] {s.ref} {s.url} (checked {s.checked})"
        for s in sorted(cited.values(), key=lambda s: s.key)
    ]
    return lines


def _option_line(
    table: Table, option: Option, kva: int, day: date, cited: dict[str, Source]
) -> str:
    try:
        entry = table.prices_at(option, kva, day)
    except RegulatedError:
        text = "prices: not in the table (no cited source gives them)"
    else:
        cited[entry.source.key] = entry.source
        text = f"{_prices(entry.prices)} EUR/kWh [{entry.source.key}]"
        text += f" {REPORTED}" if entry.reported else ""
    return f"{text}; {_subscription(table, option, kva, day, cited)}"


def _prices(prices: dict[str, Decimal]) -> str:
    return "  ".join(f"{period} {value}" for period, value in prices.items())


def _subscription(
    table: Table, option: Option, kva: int, day: date, cited: dict[str, Source]
) -> str:
    try:
        sub = table.subscription_at(option, kva, day)
    except RegulatedError:
        return "subscription: not in the table"
    cited[sub.source.key] = sub.source
    monthly = sub.monthly
    shown = monthly.quantize(Decimal("0.01"), ROUND_HALF_UP)
    month = str(monthly) if shown == monthly else f"≈{shown}"
    reported = f" {REPORTED}" if sub.reported else ""
    return f"subscription {month} EUR/month, {sub.yearly} EUR/year [{sub.source.key}]{reported}"


def site_lines(site: SiteConfig, table: Table, day: date) -> list[str]:
    tariff = site.tariff
    row = _row_at(tariff.prices, day)
    lines = [f"Site {site.site.id} on {day}: option {tariff.option}"]
    if tariff.supplier is None or tariff.kva is None:
        lines.append(f"  prices typed in the site file, from {row.since}: {_row_text(row)} EUR/kWh")
        return lines + _typed_subscription(site, day)
    lines[0] += f", {tariff.supplier} {tariff.kva} kVA"
    entry = _table_entry(table, tariff.option, tariff.kva, row)
    if entry is None:
        lines.append(f"  from {row.since}: {_row_text(row)} EUR/kWh, typed in the site file")
    else:
        reported = f" {REPORTED}" if entry.reported else ""
        lines.append(
            f"  from {row.since}: {_prices(entry.prices)} EUR/kWh, from the table "
            f"[{entry.source.key}]{reported}"
        )
    if tariff.subscription:
        return lines + _typed_subscription(site, day)
    cited: dict[str, Source] = {}
    lines.append("  " + _subscription(table, tariff.option, tariff.kva, day, cited))
    return lines


def _typed_subscription(site: SiteConfig, day: date) -> list[str]:
    """The site file's own subscription row in force, which the collector uses over the table."""
    rows = site.tariff.subscription
    if not rows:
        return []
    row = _row_at(rows, day)
    return [f"  subscription {subscription_figure(row)}, typed in the site file, from {row.since}"]


def _row_at(rows: Sequence[DatedT], day: date) -> DatedT:
    # As the tariff prices an instant: the first row also covers anything earlier.
    earlier = [row for row in rows if row.since <= day]
    return earlier[-1] if earlier else rows[0]


def _row_text(row: PriceRow) -> str:
    # Decimal prices print as typed (0.1952) or as the table has them (0.19398).
    return "  ".join(f"{period} {value}" for period, value in row.figures().items())


def _table_entry(table: Table, option: Option, kva: int, row: PriceRow) -> Prices | None:
    """The table's entry this row was filled from, or None when the site file typed it."""
    for entry in table.prices:
        if (entry.option, entry.kva, entry.since) == (option, kva, row.since):
            typed = row.figures()
            if all(typed.get(p) == v for p, v in entry.prices.items()):
                return entry
    return None
