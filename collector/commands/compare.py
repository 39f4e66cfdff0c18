"""`irve compare -c SITE.yaml --month 2026-01`: the month's consumption costed under the
contract in force and under the other option (Base vs HP/HC; Tempo vs Base, or vs HP/HC when
the site has HC ranges), said as a sentence.

Both options need their prices in the month's price rows (`base`, and `hp` + `hc`), and HP/HC
needs its HC ranges (`tariff.offpeak` or `tariff.seasons`) even on a Base contract. A month
the stored readings only partly cover gets a warning: the comparison holds for those days.
Tempo days are priced at the colours the collector learned (`{state_dir}/tempo-{site}.json`);
days still unknown at the fallback colour, which a note counts.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from collector.billing.compare import OptionCost, compare, compared_with, demand_over
from collector.billing.render import day, number
from collector.billing.source import covered_days, load_windows, main_demand
from collector.billing.statement import money
from collector.commands.check import add_config_argument
from collector.config import SiteConfig
from collector.energy.tariff import Tariff, TariffError, tempo_day
from collector.language import Lang
from collector.settings import ConfigError
from collector.site import load_site
from collector.store.influxql import InfluxQL, InfluxQLError
from collector.tariffs import regulated, subscription
from collector.tariffs.tempo import known_colours

OPTION_NAMES = {"base": "Base", "hphc": "HP/HC", "tempo": "Tempo"}
TEXT = {
    "fr": {
        "head": "Site {site}, {month} : {windows} fenêtres d'énergie",
        "in_force": "en vigueur",
        "other": "autre option",
        "nothing": "rien",
        "currency": "€",
        "less": "{other} aurait coûté {delta} € de moins que {current} (contrat en vigueur).",
        "more": "{other} aurait coûté {delta} € de plus que {current} (contrat en vigueur).",
        "same": "{other} aurait coûté autant que {current} (contrat en vigueur).",
        "partial": "attention : les relevés ne couvrent que {days} jour(s) sur {total} de ce "
        "mois (du {first} au {last}) ; la comparaison ne porte que sur ces jours.",
        "stored": "note : les fenêtres enregistrées disent {stored} € ; les prix ont changé "
        "depuis : voir `irve recompute`",
        "fallback": "note : couleur Tempo inconnue pour {days} jour(s), comptés en {colour}.",
        "subscription": "abonnement ({kva} kVA) : {amount} € pour {days} jour(s), coût fixe du "
        "site, à part du prix du kWh",
        "sub_missing": "abonnement : aucun montant {problem}",
        "kva_sub": "à {kva} kVA : abonnement {amount} € pour ces jours ({delta} € {sign})",
        "kva_sub_missing": "à {kva} kVA : abonnement inconnu {problem}",
        "less_word": "de moins",
        "more_word": "de plus",
        "peak": "pointe du site (compteur {main}) : {peak} kW le {when}",
        "tripped": "à {kva} kVA ({limit} kW) : dépassé {times} fois, {minutes} min en tout : "
        "le compteur aurait pu disjoncter",
        "fits": "à {kva} kVA ({limit} kW) : jamais dépassé ce mois-ci",
        "no_main": "à {kva} kVA : pas de compteur général (role: main), la pointe du site est "
        "inconnue",
        "no_demand": "à {kva} kVA : aucun relevé du compteur général {main} ce mois-ci",
    },
    "en": {
        "head": "Site {site}, {month}: {windows} energy windows",
        "in_force": "in force",
        "other": "other option",
        "nothing": "nothing",
        "currency": "EUR",
        "less": "{other} would have cost {delta} EUR less than {current} (the contract in force).",
        "more": "{other} would have cost {delta} EUR more than {current} (the contract in force).",
        "same": "{other} would have cost the same as {current} (the contract in force).",
        "partial": "warning: the stored readings cover only {days} day(s) of {total} in this "
        "month ({first} to {last}); the comparison holds for those days only.",
        "stored": "note: the stored windows say {stored} EUR; the price rows changed since: "
        "see `irve recompute`",
        "fallback": "note: Tempo colour unknown for {days} day(s), priced as {colour}.",
        "subscription": "subscription ({kva} kVA): {amount} EUR for {days} day(s), a fixed cost "
        "of the site, apart from the kWh prices",
        "sub_missing": "subscription: no figure {problem}",
        "kva_sub": "at {kva} kVA: subscription {amount} EUR for these days ({delta} EUR {sign})",
        "kva_sub_missing": "at {kva} kVA: subscription unknown {problem}",
        "less_word": "less",
        "more_word": "more",
        "peak": "site peak (meter {main}): {peak} kW on {when}",
        "tripped": "at {kva} kVA ({limit} kW): exceeded {times} time(s), {minutes} min in all: "
        "the meter could have tripped",
        "fits": "at {kva} kVA ({limit} kW): never exceeded this month",
        "no_main": "at {kva} kVA: no main meter (role: main), the site's peak is unknown",
        "no_demand": "at {kva} kVA: no reading of the main meter {main} this month",
    },
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "compare",
        parents=[common],
        help="a month's cost under Base, HP/HC and Tempo, and the subscription",
    )
    add_config_argument(parser)
    parser.add_argument("--month", required=True, help="YYYY-MM (site local time)")
    parser.add_argument("--point", help="only this meter (default: every socket)")
    parser.add_argument("--lang", choices=("fr", "en"), default="fr")
    parser.add_argument(
        "--kva",
        type=int,
        help="another subscribed power: its subscription (from the table) and whether the "
        "site's peak demand (main meter) would have exceeded it",
    )
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
    if not site.tariff.has_offpeak:
        raise ConfigError(["tariff.offpeak: HC ranges are needed to cost the HP/HC option"])


def run(args: argparse.Namespace) -> int:
    site, _ = load_site(args.config)
    lang: Lang = args.lang
    t = TEXT[lang]
    meters = sorted(m.id for m in site.meters)
    if args.point and args.point not in meters:
        raise ConfigError(
            [f"--point: no meter {args.point!r} in the site file ({', '.join(meters)})"]
        )
    if args.kva is not None:
        try:
            regulated.check_kva(args.kva)
        except regulated.RegulatedError as exc:
            raise ConfigError([f"--kva: {exc}"]) from None
    start, end = month_bounds(args.month, site)
    tz = site.site.tz
    tariff = Tariff(site.tariff, tz, known_colours(site))
    if "hphc" in (site.tariff.option, compared_with(tariff)):
        check_offpeak(site)
    client = InfluxQL.from_settings(site.influx)
    main = site.main_meter
    try:
        windows = load_windows(client, site.site.id, start, end, args.point)
        days = covered_days(client, site.site.id, start, end, tz, args.point)
        demand = (
            main_demand(client, site.site.id, start, end, main.id)
            if args.kva is not None and main is not None
            else []
        )
    except InfluxQLError as exc:
        print(f"irve compare: {exc}", file=sys.stderr)
        return 1
    sockets = {m.id for m in site.meters if m.role == "socket"}
    if not args.point:
        windows = [w for w in windows if w.point in sockets]
    if not windows and not days:
        where = f"meter {args.point}" if args.point else f"site {site.site.id}"
        print(
            f"irve compare: --month: no stored readings or energy for {where} in {args.month}: "
            "nothing to compare",
            file=sys.stderr,
        )
        return 2
    try:
        result = compare(windows, tariff, site.energy.window_s)
    except TariffError as exc:
        raise ConfigError([str(exc)]) from None
    print(t["head"].format(site=site.site.id, month=args.month, windows=len(windows)))
    print(_line(t["in_force"], result.in_force, lang))
    print(_line(t["other"], result.other, lang))
    current, other = money(result.in_force.cost_eur), money(result.other.cost_eur)
    names = {
        "current": OPTION_NAMES[result.in_force.option],
        "other": OPTION_NAMES[result.other.option],
        "delta": number(abs(other - current), lang),
    }
    print(t["less" if other < current else "more" if other > current else "same"].format(**names))
    total = (end.date() - start.date()).days
    if len(days) < total:
        print(
            t["partial"].format(
                days=len(days),
                total=total,
                first=day(min(days), lang) if days else "-",
                last=day(max(days), lang) if days else "-",
            )
        )
    if money(result.stored_cost_eur) != current:
        print(t["stored"].format(stored=number(money(result.stored_cost_eur), lang)))
    unknown = {tempo_day(w.start, tz) for w in windows if tariff.fallback_at(w.start)}
    if unknown:
        print(t["fallback"].format(days=len(unknown), colour=site.tariff.tempo.fallback))
    month_days = sorted(days) or [
        start.date() + timedelta(days=n) for n in range((end.date() - start.date()).days)
    ]
    for line in _subscription(site, month_days, args.kva, demand, lang):
        print(line)
    return 0


def _subscription(
    site: SiteConfig,
    days: list[date],
    kva: int | None,
    demand: list[tuple[datetime, float]],
    lang: Lang,
) -> list[str]:
    """The subscription over the days compared, apart from the kWh costs; with `kva`, the
    table's subscription at that power and the site's demand against it."""
    t = TEXT[lang]
    configured = bool(site.tariff.subscription) or site.tariff.supplier is not None
    if not configured and kva is None:
        return []  # a market offer whose subscription was not typed: nothing to say
    own = subscription.total(site.tariff, days)
    power = site.tariff.kva or site.site.subscribed_power_kva
    out = []
    if own.known_days:
        out.append(
            t["subscription"].format(
                kva=f"{power:g}", amount=number(money(own.cost_eur), lang), days=own.known_days
            )
        )
    out += [t["sub_missing"].format(problem=p) for p in own.problems]
    if kva is None:
        return out
    other = subscription.total(site.tariff, days, kva)
    if other.known_days and not other.missing and not own.missing:
        delta = money(other.cost_eur) - money(own.cost_eur)
        out.append(
            t["kva_sub"].format(
                kva=kva,
                amount=number(money(other.cost_eur), lang),
                delta=number(abs(delta), lang),
                sign=t["less_word"] if delta < 0 else t["more_word"],
            )
        )
    out += [t["kva_sub_missing"].format(kva=kva, problem=p) for p in other.problems]
    main = site.main_meter
    limit_w = kva * 1000 * site.alerts.power_factor
    limit = number(Decimal(f"{limit_w / 1000:.1f}"), lang)
    if main is None:
        out.append(t["no_main"].format(kva=kva))
    elif not demand:
        out.append(t["no_demand"].format(kva=kva, main=main.id))
    else:
        found = demand_over(demand, limit_w)
        when = found.peak_at.astimezone(site.site.tz) if found.peak_at else None
        out.append(
            t["peak"].format(
                main=main.id,
                peak=number(Decimal(f"{found.peak_w / 1000:.1f}"), lang),
                when=f"{day(when.date(), lang)} {when:%H:%M}" if when else "-",
            )
        )
        key = "tripped" if found.times_over else "fits"
        out.append(
            t[key].format(kva=kva, limit=limit, times=found.times_over, minutes=found.minutes_over)
        )
    return out


def _line(label: str, cost: OptionCost, lang: Lang) -> str:
    currency = TEXT[lang]["currency"]

    def amount(wh: float, eur: Decimal) -> str:
        energy = Decimal(f"{wh / 1000:.3f}")
        return f"{number(energy, lang)} kWh {number(money(eur), lang)} {currency}"

    parts = ", ".join(
        f"{period} {amount(wh, eur)}" for period, (wh, eur) in sorted(cost.by_period.items())
    )
    option = OPTION_NAMES[cost.option]
    return (
        f"{label:<13} {option:<6} {amount(cost.energy_wh, cost.cost_eur)} "
        f"({parts or TEXT[lang]['nothing']})"
    )
