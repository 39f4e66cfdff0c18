"""A statement as CSV (spreadsheets), a printable HTML page and a PDF, in French or English.

One table for the three: `table()` gives the header, the rows and the total rows as printed;
CSV, HTML and PDF only lay them out, so what the front desk exports is what the guest reads.
The columns follow the policy (no « Inclus » unless an allowance applies, no price on a flat
fee). French uses `;` and decimal commas in CSV (what French spreadsheets open directly);
English `,` and decimal points. Times are in the site's local time. Warnings (a session still
running, the meter disagreeing) are for the front desk: `irve bill` prints them on standard
error, the guest's page does not carry them.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from string import Template
from zoneinfo import ZoneInfo

from collector.billing.statement import Line, Statement
from collector.language import Lang, decimal_mark

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Relevé de recharge",
        "number": "N°",
        "issued": "Émis le",
        "room": "Chambre {label}",
        "badge": "Badge {label}",
        "point": "Borne {label}",
        "stay": "Séjour du {arrival} au {departure} ({nights})",
        "night": "{n} nuit",
        "nights": "{n} nuits",
        "policy": "Tarification",
        "at_cost": "Au coût de l'électricité (prix du kWh en vigueur)",
        "flat": "Forfait de {fee} € TTC par recharge",
        "allowance": "{per_night} kWh inclus par nuit ({included} kWh), excédent au coût",
        "session": "Recharge",
        "socket": "Borne",
        "start": "Début",
        "end": "Fin",
        "duration": "Durée",
        "period": "Période",
        "energy": "Énergie (kWh)",
        "included": "Inclus (kWh)",
        "billed": "Facturé (kWh)",
        "price": "Prix TTC (€/kWh)",
        "amount": "Montant TTC (€)",
        "reference": "Référence",
        "total": "Total TTC",
        "vat": "dont TVA {rate} %",
        "none": "Aucune recharge pendant ce séjour.",
        "all": "forfait",
        "HP": "Heures pleines",
        "HC": "Heures creuses",
        "BASE": "Base",
        "TEMPO_BLUE_HP": "Tempo bleu HP",
        "TEMPO_BLUE_HC": "Tempo bleu HC",
        "TEMPO_WHITE_HP": "Tempo blanc HP",
        "TEMPO_WHITE_HC": "Tempo blanc HC",
        "TEMPO_RED_HP": "Tempo rouge HP",
        "TEMPO_RED_HC": "Tempo rouge HC",
        "siret": "SIRET",
        "vat_number": "N° TVA",
        "rounding": "Montants TTC arrondis au centime, une seule fois, sur chaque ligne ; "
        "les totaux sont la somme des lignes imprimées.",
        "meter": "Relevé du compteur sur ces recharges : {kwh} kWh.",
    },
    "en": {
        "title": "Charging statement",
        "number": "No.",
        "issued": "Issued",
        "room": "Room {label}",
        "badge": "Badge {label}",
        "point": "Charger {label}",
        "stay": "Stay from {arrival} to {departure} ({nights})",
        "night": "{n} night",
        "nights": "{n} nights",
        "policy": "Pricing",
        "at_cost": "At the cost of electricity (kWh price in force)",
        "flat": "Flat fee of €{fee} per charge, VAT included",
        "allowance": "{per_night} kWh included per night ({included} kWh), excess at cost",
        "session": "Charge",
        "socket": "Charger",
        "start": "Start",
        "end": "End",
        "duration": "Duration",
        "period": "Period",
        "energy": "Energy (kWh)",
        "included": "Included (kWh)",
        "billed": "Billed (kWh)",
        "price": "Price incl. VAT (€/kWh)",
        "amount": "Amount incl. VAT (€)",
        "reference": "Reference",
        "total": "Total incl. VAT",
        "vat": "of which VAT {rate} %",
        "none": "No charging during this stay.",
        "all": "flat fee",
        "HP": "Peak hours",
        "HC": "Off-peak hours",
        "BASE": "Base",
        "TEMPO_BLUE_HP": "Tempo blue peak",
        "TEMPO_BLUE_HC": "Tempo blue off-peak",
        "TEMPO_WHITE_HP": "Tempo white peak",
        "TEMPO_WHITE_HC": "Tempo white off-peak",
        "TEMPO_RED_HP": "Tempo red peak",
        "TEMPO_RED_HC": "Tempo red off-peak",
        "siret": "SIRET",
        "vat_number": "VAT No.",
        "rounding": "Amounts include VAT, rounded to the cent once on each line; the totals are "
        "the sums of the printed lines.",
        "meter": "Meter reading over these charges: {kwh} kWh.",
    },
}

# What a spreadsheet would run as a formula (OWASP CSV injection): such a cell gets a leading
# quote, which spreadsheets show as text. Numbers we print never start with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def number(value: Decimal | int, lang: Lang) -> str:
    return decimal_mark(str(value), lang)


def day(value: date, lang: Lang) -> str:
    return value.strftime("%d/%m/%Y") if lang == "fr" else value.isoformat()


def local_time(ts: datetime, tz: ZoneInfo, lang: Lang) -> str:
    local = ts.astimezone(tz)
    return f"{day(local.date(), lang)} {local:%H:%M}"


def duration(start: datetime, end: datetime) -> str:
    """Between the times as printed (to the minute), so the guest's subtraction agrees."""
    minutes = int(
        (
            end.replace(second=0, microsecond=0) - start.replace(second=0, microsecond=0)
        ).total_seconds()
        // 60
    )
    return f"{minutes // 60} h {minutes % 60:02d} min"


def percent(rate: Decimal, lang: Lang) -> str:
    return decimal_mark(f"{(rate * 100).normalize():f}", lang)


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


def selection(statement: Statement, lang: Lang) -> str:
    """Whose statement: « Chambre 12 », « Badge 04A1B2C3 », « Borne Borne 1 » reads badly, so
    a socket is printed by its label alone."""
    stay = statement.stay
    if stay.kind == "point":
        labels = {line.point: line.point_label for line in statement.lines}
        return labels.get(stay.label) or TEXT[lang]["point"].format(label=stay.label)
    return TEXT[lang][stay.kind].format(label=stay.label)


def stay_text(statement: Statement, lang: Lang) -> str:
    t, stay = TEXT[lang], statement.stay
    nights = t["night" if stay.nights == 1 else "nights"].format(n=stay.nights)
    return t["stay"].format(
        arrival=day(stay.arrival, lang), departure=day(stay.departure, lang), nights=nights
    )


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    totals: list[list[str]]  # the total row, then the VAT row when a rate applies
    numeric_from: int  # columns from here on are numbers (right-aligned)
    session_columns: int  # the first columns describe the session (shared by its lines)


def table(statement: Statement, lang: Lang, tz: ZoneInfo) -> Table:
    t, name = TEXT[lang], statement.policy.name
    header = [t["session"], t["socket"], t["start"], t["end"], t["duration"]]
    if name != "flat":
        header.append(t["period"])
    numeric_from = len(header)
    header.append(t["energy"])
    if name == "allowance":
        header += [t["included"], t["billed"]]
    if name != "flat":
        header.append(t["price"])
    header.append(t["amount"])
    rows = [_row(line, statement, lang, tz) for line in statement.lines]
    total = [t["total"], *[""] * (numeric_from - 1), number(statement.energy_kwh, lang)]
    if name == "allowance":
        total += [number(statement.included_kwh, lang), number(statement.billed_kwh, lang)]
    if name != "flat":
        total.append("")
    total.append(number(statement.total_eur, lang))
    totals = [total]
    if statement.hotel.vat_rate > 0:
        vat = t["vat"].format(rate=percent(statement.hotel.vat_rate, lang))
        totals.append([vat, *[""] * (len(header) - 2), number(statement.vat_eur, lang)])
    return Table(header, rows, totals, numeric_from, 5)


def _row(line: Line, statement: Statement, lang: Lang, tz: ZoneInfo) -> list[str]:
    end = line.end or line.start
    row = [
        str(line.session_no),
        line.point_label or line.point,
        local_time(line.start, tz, lang),
        local_time(end, tz, lang),
        duration(line.start, end),
    ]
    name = statement.policy.name
    if name != "flat":
        row.append(TEXT[lang].get(line.period or "", line.period or ""))
    row.append(number(line.energy_kwh, lang))
    if name == "allowance":
        row += [number(line.included_kwh, lang), number(line.billed_kwh, lang)]
    if name != "flat":
        row.append(number(line.unit_price, lang) if line.unit_price is not None else "")
    row.append(number(line.amount_eur, lang))
    return row


def csv_cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(statement: Statement, lang: Lang, tz: ZoneInfo) -> str:
    """The table, one line per session and period, with the session's reference last (to find
    it in the database); every text cell neutralised against spreadsheet formulas."""
    tab = table(statement, lang, tz)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";" if lang == "fr" else ",", lineterminator="\n")
    rows = [[*tab.header, TEXT[lang]["reference"]]]
    rows += [[*row, line.session_id] for row, line in zip(tab.rows, statement.lines, strict=True)]
    rows += [[*row, ""] for row in tab.totals]
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return out.getvalue()


def to_html(statement: Statement, lang: Lang, tz: ZoneInfo) -> str:
    t, e, hotel = TEXT[lang], html.escape, statement.hotel
    tab = table(statement, lang, tz)
    numeric = tab.numeric_from
    # The session's number, socket, times and duration share one cell: the page stays narrow
    # enough for A4 portrait.
    shown = [t["session"], *tab.header[tab.session_columns :]]
    head = "".join(
        f'<th class="{"num" if i >= numeric - tab.session_columns + 1 else "text"}">{e(h)}</th>'
        for i, h in enumerate(shown)
    )
    body = _html_body(statement, tab)
    if not statement.lines:
        body = f'<tr><td colspan="{len(shown)}">{e(t["none"])}</td></tr>'
    label_span = numeric - tab.session_columns + 1
    foot = "".join(
        f'<tr class="{"total" if i == 0 else "vat"}">'
        f'<td colspan="{label_span}">{e(row[0])}</td>'
        + "".join(f'<td class="num">{e(cell)}</td>' for cell in row[numeric:])
        + "</tr>"
        for i, row in enumerate(tab.totals)
    )
    notes = [t["rounding"]]
    if statement.meter_wh is not None:
        meter = Decimal(repr(round(statement.meter_wh / 1000, 3))).quantize(Decimal("0.001"))
        notes.append(t["meter"].format(kwh=number(meter, lang)))
    ids = []
    if hotel.siret:
        ids.append(f"{t['siret']} {hotel.siret}")
    if hotel.vat_number:
        ids.append(f"{t['vat_number']} {hotel.vat_number}")
    template = Template(
        resources.files("collector.billing").joinpath("templates/statement.html").read_text("utf-8")
    )
    return template.substitute(
        lang=lang,
        title=e(t["title"]),
        hotel=e(hotel.name),
        address="<br>".join(e(part) for part in hotel.address.splitlines() if part.strip()),
        ids="<br>".join(e(i) for i in ids),
        number_label=e(t["number"]),
        number=e(statement.number),
        issued_label=e(t["issued"]),
        issued=day(statement.issued, lang) if statement.issued else "",
        selection=e(selection(statement, lang)),
        stay=e(stay_text(statement, lang)),
        policy_label=e(t["policy"] + (" :" if lang == "fr" else ":")),
        policy=e(policy_text(statement, lang)),
        head=head,
        body=body,
        foot=foot,
        notes="".join(f"<p>{e(n)}</p>" for n in notes),
    )


def _html_body(statement: Statement, tab: Table) -> str:
    """One row per line; a session's own cells span its lines (one per period)."""
    e, out = html.escape, []
    spans: dict[int, int] = {}
    for line in statement.lines:
        spans[line.session_no] = spans.get(line.session_no, 0) + 1
    shown: set[int] = set()
    for row, line in zip(tab.rows, statement.lines, strict=True):
        cells = []
        if line.session_no not in shown:
            shown.add(line.session_no)
            no, socket, start, end, lasted = row[: tab.session_columns]
            if end[:10] == start[:10]:
                end = end[11:]  # same day: the time is enough
            cells.append(
                f'<td class="text session" rowspan="{spans[line.session_no]}">'
                f"<b>{e(no)}</b> · {e(socket)}<br>{e(start)} – {e(end)}<br>{e(lasted)}</td>"
            )
        cells += [
            f'<td class="{"num" if i >= tab.numeric_from else "text"}">{e(cell)}</td>'
            for i, cell in enumerate(row)
            if i >= tab.session_columns
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out)


def to_pdf(statement: Statement, lang: Lang, tz: ZoneInfo) -> bytes:
    """The HTML statement printed to an A4 PDF by WeasyPrint (which needs the system's Pango)."""
    from weasyprint import HTML  # imported here: loading Pango costs a second

    pdf: bytes = HTML(string=to_html(statement, lang, tz)).write_pdf()
    return pdf
