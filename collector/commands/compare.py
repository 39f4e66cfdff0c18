"""`irve compare -c SITE.yaml --month 2026-01`: the month's consumption costed under the
contract in force and under the other option (Base vs HP/HC).

Both options need their prices in the month's price rows (`base`, and `hp` + `hc`), and HP/HC
needs its HC ranges (`tariff.offpeak` or `tariff.seasons`) even on a Base contract.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, time
from typing import Any

from collector.billing.compare import OptionCost, compare
from collector.billing.source import load_windows
from collector.billing.statement import money
from collector.commands.check import add_config_argument
from collector.config import ConfigError, SiteConfig, load
from collector.energy.tariff import Tariff, TariffError
from collector.store.influxql import InfluxQL, InfluxQLError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "compare", parents=[common], help="a month's cost under Base and under HP/HC"
    )
    add_config_argument(parser)
    parser.add_argument("--month", required=True, help="YYYY-MM (site local time)")
    parser.add_argument("--point", help="only this meter (default: every socket)")
    parser.set_defaults(run=run)


def month_bounds(text: str, site: SiteConfig) -> tuple[datetime, datetime]:
    try:
        first = date.fromisoformat(f"{text.strip()}-01")
    except ValueError:
        raise ConfigError([f"--month: {text!r} is not YYYY-MM"]) from None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    tz = site.site.tz
    return datetime.combine(first, time(0), tzinfo=tz), datetime.combine(
        following, time(0), tzinfo=tz
    )


def check_offpeak(site: SiteConfig) -> None:
    # A missing price is reported by the Tariff (TariffError) for the rows the month uses.
    if not site.tariff.offpeak and not site.tariff.seasons:
        raise ConfigError(["tariff.offpeak: HC ranges are needed to cost the HP/HC option"])


def run(args: argparse.Namespace) -> int:
    site = load(SiteConfig, args.config)
    check_offpeak(site)
    start, end = month_bounds(args.month, site)
    tariff = Tariff(site.tariff, site.site.tz)
    client = InfluxQL.from_settings(site.influx)
    try:
        windows = load_windows(client, site.site.id, start, end, args.point)
    except InfluxQLError as exc:
        print(f"irve compare: {exc}", file=sys.stderr)
        return 1
    sockets = {m.id for m in site.meters if m.role == "socket"}
    if not args.point:
        windows = [w for w in windows if w.point in sockets]
    try:
        result = compare(windows, tariff, site.energy.window_s)
    except TariffError as exc:
        raise ConfigError([str(exc)]) from None
    print(f"Site {site.site.id}, {args.month}: {len(windows)} energy windows")
    print(_line("in force", result.in_force))
    print(_line("other option", result.other))
    delta = money(result.other.cost_eur) - money(result.in_force.cost_eur)
    print(f"difference (other - in force): {delta:+} EUR")
    if money(result.stored_cost_eur) != money(result.in_force.cost_eur):
        print(
            f"note: the stored windows say {money(result.stored_cost_eur)} EUR; "
            "the price rows changed since: see `irve recompute`"
        )
    return 0


def _line(label: str, cost: OptionCost) -> str:
    parts = ", ".join(
        f"{period} {wh / 1000:.3f} kWh {money(eur)} EUR"
        for period, (wh, eur) in sorted(cost.by_period.items())
    )
    return (
        f"{label:<13} {cost.option:<5} {cost.energy_wh / 1000:.3f} kWh "
        f"{money(cost.cost_eur)} EUR ({parts or 'nothing'})"
    )
