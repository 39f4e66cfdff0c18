"""A statement as CSV (spreadsheets) and as a printable HTML page, in French or English.

French CSV uses `;` and decimal commas (what French spreadsheets open directly); English uses
`,` and decimal points. Times are printed in the site's local time. Warnings (a session still
running, the meter disagreeing) are for the front desk: `irve bill` prints them on standard
error, the guest's page does not carry them.
"""

from __future__ import annotations

import csv
import html
import io
from datetime import datetime
from decimal import Decimal
from importlib import resources
from string import Template
from typing import Literal
from zoneinfo import ZoneInfo

from collector.billing.statement import Statement

Lang = Literal["fr", "en"]

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Relevé de recharge",
        "stay": "Séjour",
        "arrival": "Arrivée",
        "departure": "Départ",
        "nights": "Nuits",
        "policy": "Tarification",
        "at_cost": "Au coût de l'électricité (prix du kWh en vigueur)",
        "flat": "Forfait de {fee} € par recharge",
        "allowance": "{per_night} kWh inclus par nuit ({included} kWh), excédent au coût",
        "session": "Recharge",
        "start": "Début",
        "point": "Borne",
        "period": "Période",
        "energy": "Énergie (kWh)",
        "included": "Inclus (kWh)",
        "billed": "Facturé (kWh)",
        "price": "Prix (€/kWh)",
        "amount": "Montant (€)",
        "total": "Total",
        "none": "Aucune recharge pendant ce séjour.",
        "all": "forfait",
        "HP": "Heures pleines",
        "HC": "Heures creuses",
        "BASE": "Base",
        "rounding": "Montants arrondis au centime, une seule fois, sur le total de chaque "
        "ligne ; le total est la somme des lignes. Prix TTC.",
        "meter": "Relevé du compteur sur ces recharges : {kwh} kWh.",
    },
    "en": {
        "title": "Charging statement",
        "stay": "Stay",
        "arrival": "Arrival",
        "departure": "Departure",
        "nights": "Nights",
        "policy": "Pricing",
        "at_cost": "At the cost of electricity (kWh price in force)",
        "flat": "Flat fee of €{fee} per charge",
        "allowance": "{per_night} kWh included per night ({included} kWh), excess at cost",
        "session": "Charge",
        "start": "Start",
        "point": "Charger",
        "period": "Period",
        "energy": "Energy (kWh)",
        "included": "Included (kWh)",
        "billed": "Billed (kWh)",
        "price": "Price (€/kWh)",
        "amount": "Amount (€)",
        "total": "Total",
        "none": "No charging during this stay.",
        "all": "flat fee",
        "HP": "Peak hours",
        "HC": "Off-peak hours",
        "BASE": "Base",
        "rounding": "Amounts rounded to the cent, once, on each line's total; the total is the "
        "sum of the lines. Prices include taxes.",
        "meter": "Meter reading over these charges: {kwh} kWh.",
    },
}


def number(value: Decimal | int, lang: Lang) -> str:
    text = str(value)
    return text.replace(".", ",") if lang == "fr" else text


def policy_text(statement: Statement, lang: Lang) -> str:
    t, p = TEXT[lang], statement.policy
    if p.name == "flat":
        return t["flat"].format(fee=number(p.fee_eur.quantize(Decimal("0.01")), lang))
    if p.name == "allowance":
        return t["allowance"].format(
            per_night=number(p.kwh_per_night, lang),
            included=number(p.kwh_per_night * statement.stay.nights, lang),
        )
    return t["at_cost"]


def _local(ts: datetime, tz: ZoneInfo) -> str:
    return ts.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _rows(statement: Statement, lang: Lang, tz: ZoneInfo) -> list[list[str]]:
    t = TEXT[lang]
    rows = []
    for line in statement.lines:
        rows.append(
            [
                line.session_id,
                _local(line.start, tz),
                line.point,
                t[line.period] if line.period else t["all"],
                number(line.energy_kwh, lang),
                number(line.included_kwh, lang),
                number(line.billed_kwh, lang),
                number(line.unit_price, lang) if line.unit_price is not None else "",
                number(line.amount_eur, lang),
            ]
        )
    return rows


def _header(lang: Lang) -> list[str]:
    t = TEXT[lang]
    keys = ("session", "start", "point", "period", "energy", "included", "billed")
    return [t[k] for k in keys] + [t["price"], t["amount"]]


def to_csv(statement: Statement, lang: Lang, tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if lang == "fr" else ",", lineterminator="\n")
    writer.writerow(_header(lang))
    writer.writerows(_rows(statement, lang, tz))
    writer.writerow(
        [
            TEXT[lang]["total"],
            "",
            "",
            "",
            number(statement.energy_kwh, lang),
            number(statement.included_kwh, lang),
            number(statement.billed_kwh, lang),
            "",
            number(statement.total_eur, lang),
        ]
    )
    return out.getvalue()


def to_html(statement: Statement, lang: Lang, tz: ZoneInfo, site_name: str) -> str:
    t = TEXT[lang]
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in _header(lang))
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in row) + "</tr>"
        for row in _rows(statement, lang, tz)
    )
    if not statement.lines:
        body = f'<tr><td colspan="9">{e(t["none"])}</td></tr>'
    total = (
        f"<tr class=total><td colspan=4>{e(t['total'])}</td>"
        f"<td>{number(statement.energy_kwh, lang)}</td>"
        f"<td>{number(statement.included_kwh, lang)}</td>"
        f"<td>{number(statement.billed_kwh, lang)}</td><td></td>"
        f"<td>{number(statement.total_eur, lang)}</td></tr>"
    )
    notes = [t["rounding"]]
    if statement.meter_wh is not None:
        meter = Decimal(repr(round(statement.meter_wh / 1000, 3))).quantize(Decimal("0.001"))
        notes.append(t["meter"].format(kwh=number(meter, lang)))
    stay = statement.stay
    template = Template(
        resources.files("collector.billing").joinpath("templates/statement.html").read_text("utf-8")
    )
    return template.substitute(
        lang=lang,
        title=e(t["title"]),
        site=e(site_name),
        stay_label=e(t["stay"]),
        stay=e(stay.label),
        arrival_label=e(t["arrival"]),
        arrival=stay.arrival.isoformat(),
        departure_label=e(t["departure"]),
        departure=stay.departure.isoformat(),
        nights_label=e(t["nights"]),
        nights=stay.nights,
        policy_label=e(t["policy"]),
        policy=e(policy_text(statement, lang)),
        head=head,
        body=body,
        total=total,
        notes="".join(f"<p>{e(n)}</p>" for n in notes),
    )
