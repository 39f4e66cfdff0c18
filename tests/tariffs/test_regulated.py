"""EDF's regulated Tarif Bleu shipped as data: the table's integrity, its lookups, a site file
that says `supplier: edf-tarif-bleu` instead of typing prices, and `irve tariffs`."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.cli import main
from collector.config import SiteConfig
from collector.energy.tariff import Tariff
from collector.settings import ConfigError, load
from collector.tariffs import regulated
from collector.tariffs.regulated import KVA_STEPS, RegulatedError, Table
from scripts import tariffs_table
from tests.support.cli import irve
from tests.support.paths import EXAMPLES

DATA = Path(regulated.__file__).parent / "data" / "edf-tarif-bleu.yaml"
PARIS = ZoneInfo("Europe/Paris")


# --- The table's integrity: what the maintainer's twice-yearly update must keep true ------------


def table_problems(text: str) -> list[str]:
    """Everything wrong with a table file, one line each (empty: the file is sound)."""
    raw: dict[str, Any] = yaml.safe_load(text)
    problems: list[str] = []
    for section in ("prices", "subscriptions"):
        last: dict[str, date] = {}
        for i, row in enumerate(raw[section]):
            where = f"{section}[{i}]"
            if row["since"] < last.get(row["option"], date.min):
                problems.append(f"{where}: since {row['since']} before the row above it")
            last[row["option"]] = row["since"]
            source = raw["sources"].get(row.get("source"))
            if source is None or not source.get("url") or not source.get("checked"):
                problems.append(f"{where}: no cited source (url and date checked)")
            kvas = row["kva"] if isinstance(row["kva"], list) else [row["kva"]]
            problems += [
                f"{where}: {k} kVA is not a regulated step" for k in kvas if k not in KVA_STEPS
            ]
            figures = {
                k: v for k, v in row.items() if k in ("base", "hp", "hc", "per_year", "per_month")
            }
            for colour, hours in (row.get("tempo") or {}).items():
                figures |= {f"{colour}.{h}": v for h, v in hours.items()}
            problems += [
                f"{where}: {k} {v!r} is not a quoted decimal string"
                for k, v in figures.items()
                if not isinstance(v, str)
            ]
    if problems:
        return problems
    try:
        table = regulated.parse(text)
    except RegulatedError as exc:
        return [str(exc)]
    for entry in table.prices:
        where = f"{entry.option} {entry.kva} kVA {entry.since}"
        problems += [
            f"{where}: {period} {price} €/kWh outside 0.05..1.00"
            for period, price in entry.prices.items()
            if not Decimal("0.05") <= price <= Decimal("1.00")
        ]
        if entry.option == "tempo":
            p = entry.prices
            if not p["TEMPO_BLUE_HP"] < p["TEMPO_WHITE_HP"] < p["TEMPO_RED_HP"]:
                problems.append(f"{where}: Tempo HP prices must rise blue < white < red")
            problems += [
                f"{where}: {colour} HC is not below its HP"
                for colour in ("BLUE", "WHITE", "RED")
                if not p[f"TEMPO_{colour}_HC"] < p[f"TEMPO_{colour}_HP"]
            ]
        if entry.option == "hphc" and not entry.prices["HC"] < entry.prices["HP"]:
            problems.append(f"{where}: HC is not below HP")
    for sub in table.subscriptions:
        if not Decimal(50) <= sub.yearly <= Decimal(1500):
            problems.append(
                f"{sub.option} {sub.kva} kVA {sub.since}: subscription {sub.yearly} €/year "
                "outside 50..1500"
            )
    return problems


def test_the_bundled_table_is_sound() -> None:
    assert table_problems(DATA.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('base: "0.2016"', 'base: "2.016"'), "BASE 2.016 €/kWh outside 0.05..1.00"),
        (('base: "0.2016"', "base: 0.2016"), "base 0.2016 is not a quoted decimal string"),
        (('per_year: "116.04"', 'per_year: "11604"'), "subscription 11604 €/year outside"),
        (('kva: [3, 6, 9, 12, 15], base: "0.2516"', 'kva: [3, 7], base: "0.2516"'), "7 kVA"),
        (('red: {hp: "0.7060"', 'red: {hp: "0.1700"'), "must rise blue < white < red"),
        (('base: "0.2016", source: cre-base-csv', 'base: "0.2016", source: nowhere'), "source"),
        (
            (
                "since: 2025-02-01, kva: [3, 6, 9, 12, 15]",
                "since: 2023-02-01, kva: [3, 6, 9, 12, 15]",
            ),
            "before the row above",
        ),
    ],
)
def test_the_integrity_check_catches_a_bad_update(change: tuple[str, str], problem: str) -> None:
    text = DATA.read_text(encoding="utf-8")
    assert change[0] in text
    problems = table_problems(text.replace(change[0], change[1], 1))
    assert any(problem in line for line in problems), problems


def test_the_file_ships_as_package_data() -> None:
    assert regulated.DATA.is_file()
    assert '"tariffs/data/*.yaml"' in (Path(__file__).parents[2] / "pyproject.toml").read_text()


def test_docs_tables_are_the_data() -> None:
    doc = tariffs_table.DOC.read_text(encoding="utf-8")
    table = tariffs_table.markdown(regulated.bundled())
    assert tariffs_table.replace(doc, table) == doc, "run: python -m scripts.tariffs_table --write"
    assert "| 2026-02-01 | 6 | 0.19398 | `cre-base-csv-2026-02` |" in doc


def test_an_unquoted_figure_is_refused_by_the_loader() -> None:
    text = DATA.read_text(encoding="utf-8").replace('hp: "0.2700"', "hp: 0.2700", 1)
    with pytest.raises(RegulatedError, match=r"quoted decimal string"):
        regulated.parse(text)


# --- Lookups ---------------------------------------------------------------------------------


def test_figures_are_the_sources_digits_exactly() -> None:
    feb = date(2026, 2, 1)
    assert regulated.prices_at("base", 6, feb).prices == {"BASE": Decimal("0.19398")}
    assert regulated.prices_at("base", 9, feb).prices == {"BASE": Decimal("0.19266")}
    assert regulated.prices_at("base", 3, feb).prices == {"BASE": Decimal("0.1940")}
    hphc = regulated.prices_at("hphc", 36, feb)
    assert hphc.prices == {"HP": Decimal("0.2065"), "HC": Decimal("0.1579")}
    assert not hphc.reported and hphc.source.key == "press-2026-02"
    tempo = regulated.prices_at("tempo", 9, feb).prices
    assert tempo["TEMPO_RED_HP"] == Decimal("0.7060") and tempo["TEMPO_BLUE_HC"] == Decimal(
        "0.1325"
    )
    assert list(tempo) == list(regulated.PERIODS["tempo"])


def test_a_movement_applies_from_its_day_and_reported_rows_say_so() -> None:
    before = regulated.prices_at("hphc", 6, date(2026, 7, 31))
    after = regulated.prices_at("hphc", 6, datetime(2026, 8, 1, 0, 0, tzinfo=PARIS))
    assert (before.since, before.prices["HP"], before.reported) == (
        date(2026, 2, 1),
        Decimal("0.2065"),
        False,
    )
    assert (after.since, after.prices["HP"], after.reported) == (
        date(2026, 8, 1),
        Decimal("0.2142"),
        True,
    )


def test_subscriptions_per_year_and_per_month() -> None:
    base = regulated.subscription_at("base", 6, date(2025, 9, 1))
    assert (base.yearly, base.per_month) == (Decimal("185.94"), None)
    assert base.monthly == Decimal("185.94") / 12
    hphc = regulated.subscription_at("hphc", 36, date(2025, 3, 1))
    assert (hphc.monthly, hphc.yearly) == (Decimal("48.72"), Decimal("584.64"))


def test_a_missing_figure_is_missing_not_the_previous_one() -> None:
    # 3 kVA Base subscription: in the table from 2026-02-01, not found for 2026-08-01.
    assert regulated.subscription_at("base", 3, date(2026, 7, 31)).monthly == Decimal("12.03")
    with pytest.raises(RegulatedError, match=r"no base subscription for 3 kVA from 2026-08-01"):
        regulated.subscription_at("base", 3, date(2026, 8, 1))
    # Base above 15 kVA: in the table from 2026-02-01 (one price for 9-36 kVA), not before.
    assert regulated.prices_at("base", 18, date(2026, 12, 1)).prices == {"BASE": Decimal("0.1985")}
    with pytest.raises(RegulatedError, match=r"no base prices for 18 kVA from 2025-08-01"):
        regulated.prices_at("base", 18, date(2025, 12, 1))


def test_before_the_table_and_unknown_powers_are_errors() -> None:
    with pytest.raises(RegulatedError, match=r"2024-01-31: before the table .* 2024-02-01"):
        regulated.prices_at("base", 6, date(2024, 1, 31))
    with pytest.raises(RegulatedError, match=r"7 kVA is not a regulated subscribed power"):
        regulated.prices_at("base", 7, date(2026, 1, 1))


@pytest.mark.parametrize(
    ("power", "step"), [(0.5, 3), (3, 3), (3.1, 6), (7.2, 9), (16, 18), (36, 36)]
)
def test_a_power_maps_to_the_next_regulated_step(power: float, step: int) -> None:
    assert regulated.regulated_kva(power) == step


def test_history_refuses_a_gap_unless_the_site_covers_it() -> None:
    text = DATA.read_text(encoding="utf-8")
    gap = '  - {option: hphc, since: 2025-08-01, kva: [6, 9, 12, 15, 18, 24, 30, 36], hp: "0.2081", hc: "0.1635", source: press-2025-08}\n'
    assert gap in text
    table: Table = regulated.parse(text.replace(gap, ""))
    with pytest.raises(RegulatedError, match=r"no hphc prices for 9 kVA from 2025-08-01"):
        table.history("hphc", 9, frozenset())
    dates = [e.since for e in table.history("hphc", 9, frozenset({date(2025, 8, 1)}))]
    assert date(2025, 8, 1) not in dates and dates[0] == date(2024, 2, 1)


# --- A site file with supplier: edf-tarif-bleu ----------------------------------------------


def hotel(tariff: dict[str, Any], power: float = 36) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["tariff"] = tariff
    data["site"]["subscribed_power_kva"] = power
    return data


def load_site(tmp_path: Path, data: dict[str, Any]) -> SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load(SiteConfig, path)


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path, data)
    return info.value.problems


D = Decimal  # the table's figures reach the tariff as the exact decimals the source prints
HPHC = {"supplier": "edf-tarif-bleu", "option": "hphc", "offpeak": ["22:00-06:00"]}


def test_the_table_fills_the_price_rows(tmp_path: Path) -> None:
    site = load_site(tmp_path, hotel(HPHC | {"kva": 36}))
    rows = [(r.since, r.hp, r.hc) for r in site.tariff.prices]
    assert rows == [
        (date(2024, 2, 1), D("0.27"), D("0.2068")),
        (date(2025, 2, 1), D("0.2146"), D("0.1696")),
        (date(2025, 8, 1), D("0.2081"), D("0.1635")),
        (date(2026, 2, 1), D("0.2065"), D("0.1579")),
        (date(2026, 8, 1), D("0.2142"), D("0.1589")),
    ]
    # Priced through the real tariff: the August movement at local midnight.
    tariff = Tariff(site.tariff, PARIS)
    midnight = datetime(2026, 8, 1, tzinfo=PARIS)
    assert tariff.price(midnight - timedelta(seconds=1), "HP") == D("0.2065")
    assert tariff.price(midnight, "HP") == D("0.2142")


def test_own_prices_override_the_table_on_their_date(tmp_path: Path) -> None:
    own = [
        {"since": date(2026, 2, 1), "hp": 0.25, "hc": 0.15},
        {"since": date(2026, 3, 15), "hp": 0.3, "hc": 0.2},
    ]
    site = load_site(tmp_path, hotel(HPHC | {"kva": 9, "prices": own}))
    by_date = {r.since: (r.hp, r.hc) for r in site.tariff.prices}
    assert by_date[date(2026, 2, 1)] == (D("0.25"), D("0.15"))
    assert by_date[date(2026, 3, 15)] == (D("0.3"), D("0.2"))
    assert by_date[date(2026, 8, 1)] == (D("0.2142"), D("0.1589"))
    assert by_date[date(2025, 8, 1)] == (D("0.2081"), D("0.1635"))


def test_the_other_options_figures_come_along_for_comparisons(tmp_path: Path) -> None:
    site = load_site(tmp_path, hotel(HPHC | {"kva": 9}))
    last = site.tariff.prices[-1]
    assert (last.since, last.base, last.hp, last.hc) == (
        date(2026, 8, 1),
        D("0.1985"),
        D("0.2142"),
        D("0.1589"),
    )
    # 36 kVA has a Base price only from 2026-02-01: earlier rows carry HP/HC alone.
    site = load_site(tmp_path, hotel(HPHC | {"kva": 36}))
    bases = {row.since: row.base for row in site.tariff.prices}
    assert bases.pop(date(2026, 2, 1)) == D("0.1927")
    assert bases.pop(date(2026, 8, 1)) == D("0.1985")
    assert set(bases.values()) == {None}


def test_kva_defaults_to_the_step_above_the_subscribed_power(tmp_path: Path) -> None:
    site = load_site(tmp_path, hotel({"supplier": "edf-tarif-bleu", "option": "base"}, 7.2))
    assert site.tariff.kva == 9
    assert site.tariff.prices[-2].base == D("0.19266")


@pytest.mark.parametrize(
    ("tariff", "power", "expected"),
    [
        (
            {"supplier": "edf-tarif-bleu", "option": "base"},
            42,
            "tariff.kva: site.subscribed_power_kva: 42 kVA is above 36 kVA",
        ),
        (
            {"supplier": "edf-tarif-bleu", "option": "base", "kva": 7},
            6,
            "tariff.kva: 7 kVA is not a regulated subscribed power",
        ),
        (
            {"supplier": "edf", "option": "base"},
            6,
            "tariff.supplier: Input should be 'edf-tarif-bleu'",
        ),
        (
            {"supplier": "edf-tarif-bleu", "option": "tempo", "tempo": {"source": "sms"}},
            6,
            "tariff.tempo.source: Input should be 'rte' or 'mqtt'",
        ),
        (
            {"supplier": "edf-tarif-bleu", "option": "tempo", "kva": 3},
            3,
            "tariff.kva: the table has no tempo prices for 3 kVA",
        ),
        (
            {"option": "base"},
            6,
            "tariff.prices: required (at least one row) unless `supplier` is set",
        ),
    ],
)
def test_bad_supplier_settings_are_named(
    tmp_path: Path, tariff: dict[str, Any], power: float, expected: str
) -> None:
    found = problems(tmp_path, hotel(tariff, power))
    assert any(line.startswith(expected) for line in found), found


def test_own_rows_must_still_be_in_order(tmp_path: Path) -> None:
    own = [
        {"since": date(2026, 3, 1), "hp": 0.3, "hc": 0.2},
        {"since": date(2026, 2, 1), "hp": 0.25, "hc": 0.15},
    ]
    found = problems(tmp_path, hotel(HPHC | {"kva": 9, "prices": own}))
    assert "tariff.prices: rows must be in strictly increasing `since` order" in found


def test_check_shows_the_table_and_its_exact_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(hotel({"supplier": "edf-tarif-bleu", "option": "base"}, 6)))
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Tariff: base (edf-tarif-bleu table, 6 kVA)" in out
    assert "from 2026-02-01: BASE 0.19398, HP 0.2065, HC 0.1579 EUR/kWh" in out
    assert "from 2024-02-01: BASE 0.2516, HP 0.2700, HC 0.2068 EUR/kWh" in out


def test_check_shows_a_tempo_contract_from_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tariff = {"supplier": "edf-tarif-bleu", "option": "tempo", "tempo": {"fallback": "white"}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(hotel(tariff, 9)))
    assert main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Tariff: tempo (edf-tarif-bleu table, 9 kVA)" in out
    assert (
        "  Tempo: day 06:00-06:00, HC 22:00-06:00; colours from "
        "https://www.services-rte.com/cms/open_data/v1/tempoLight, fallback white"
    ) in out
    assert (
        "TEMPO_BLUE_HP 0.1494, TEMPO_BLUE_HC 0.1232, TEMPO_WHITE_HP 0.1730, "
        "TEMPO_WHITE_HC 0.1391, TEMPO_RED_HP 0.6468, TEMPO_RED_HC 0.1460 EUR/kWh"
    ) in out


# --- irve tariffs, as a subprocess ---------------------------------------------------------------


@pytest.mark.process
def test_irve_tariffs_shows_prices_and_subscription() -> None:
    done = irve("tariffs", "--at", "2025-03-01", "--kva", "9", "--option", "hphc")
    assert done.returncode == 0, done.stderr
    assert (
        "   9 kVA  HP 0.2146  HC 0.1696 EUR/kWh [press-2025-02]; "
        "subscription 18.01 EUR/month, 216.12 EUR/year [edf-grid-2025-02]"
    ) in done.stdout
    assert "[press-2025-02] Révolution Énergétique" in done.stdout
    assert "Base" not in done.stdout.splitlines()


@pytest.mark.process
def test_irve_tariffs_marks_reported_and_missing_figures() -> None:
    done = irve("tariffs", "--at", "2026-12-06", "--kva", "6")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "(prices from the movement of 2026-08-01)" in out
    assert (
        "6 kVA  BASE 0.2001 EUR/kWh [reported-2026-08] (reported, to verify); subscription: not in the table"
        in out
    )
    assert "TEMPO_RED_HP 0.7295" in out


@pytest.mark.process
def test_irve_tariffs_derived_month_is_marked() -> None:
    done = irve("tariffs", "--at", "2025-08-01", "--kva", "6", "--option", "base")
    assert "subscription ≈15.50 EUR/month, 185.94 EUR/year [cre-base-csv]" in done.stdout


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--at", "2023-12-31"),
            "irve tariffs: --at: 2023-12-31: before the table of regulated prices, which starts on 2024-02-01",
        ),
        (
            ("--kva", "7"),
            "irve tariffs: --kva: 7 kVA is not a regulated subscribed power (3, 6, 9, 12, 15, 18, 24, 30, 36)",
        ),
        (("--at", "2026-02-30"), "irve tariffs: --at: '2026-02-30' is not a date (YYYY-MM-DD)"),
    ],
)
def test_irve_tariffs_refuses_what_it_cannot_answer(args: tuple[str, ...], message: str) -> None:
    done = irve("tariffs", *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip() == message


@pytest.mark.process
def test_irve_tariffs_with_a_site_shows_its_resolved_tariff(tmp_path: Path) -> None:
    data = hotel(HPHC | {"prices": [{"since": date(2026, 3, 1), "hp": 0.25, "hc": 0.15}]}, 36)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    table = irve("tariffs", "-c", str(path), "--at", "2026-02-15")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "Site hotel-vda on 2026-02-15: option hphc, edf-tarif-bleu 36 kVA",
        "  from 2026-02-01: HP 0.2065  HC 0.1579 EUR/kWh, from the table [press-2026-02]",
        "  subscription 52.54 EUR/month, 630.48 EUR/year [edf-grid-2026-02-hphc] "
        "(reported, to verify)",
    ]
    both = irve("tariffs", "-c", str(path), "--kva", "9")
    assert both.returncode == 2 and "--kva and --option are for the table alone" in both.stderr
    own = irve("tariffs", "-c", str(path), "--at", "2026-03-01")
    assert "  from 2026-03-01: HP 0.25  HC 0.15 EUR/kWh, typed in the site file" in own.stdout
    assert irve("tariffs", "-c", str(path), "--at", "2023-01-01").returncode == 2


@pytest.mark.process
def test_irve_tariffs_with_a_tempo_site_shows_its_six_prices(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(hotel({"supplier": "edf-tarif-bleu", "option": "tempo"}, 9)))
    done = irve("tariffs", "-c", str(path), "--at", "2026-03-01")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        "Site hotel-vda on 2026-03-01: option tempo, edf-tarif-bleu 9 kVA",
        "  from 2026-02-01: TEMPO_BLUE_HP 0.1612  TEMPO_BLUE_HC 0.1325  TEMPO_WHITE_HP 0.1871  "
        "TEMPO_WHITE_HC 0.1499  TEMPO_RED_HP 0.7060  TEMPO_RED_HC 0.1575 EUR/kWh, from the table "
        "[press-2026-02]",
    ]
