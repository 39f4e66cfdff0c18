"""Tariff comparison: a month's consumption under the contract in force and the other option.

Pure tests of the splitting and re-pricing, then `irve compare` on a Base contract whose
windows went through the live energy code into a real influxd.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from collector.billing.compare import compare, split_cost
from collector.billing.source import StoredWindow
from collector.cli import main
from collector.config import SiteConfig, TariffSettings
from collector.energy.tariff import Tariff
from collector.ingest.writer import HttpV1Backend
from collector.settings import load
from tests.support import servers
from tests.support.billing_helpers import (
    GUEST_CHARGES,
    GUIDE_PRICES,
    PARIS,
    Charge,
    local,
    scripted_messages,
    site_file,
    to_lines,
)
from tests.support.influx_db import create_database

pytestmark = [pytest.mark.influx]


def tariff(option: str, offpeak: str = "22:00-06:00") -> Tariff:
    settings = TariffSettings.model_validate(
        {"option": option, "offpeak": [offpeak], "prices": [GUIDE_PRICES]}
    )
    return Tariff(settings, PARIS)


def window(start_hour: int, minute: int, wh: float, period: str, cost: float) -> StoredWindow:
    return StoredWindow(local(2026, 1, 10, start_hour, minute), "cp1", period, wh, cost, {})


def test_split_cost_shares_a_window_across_a_boundary_in_proportion_to_time() -> None:
    # An hour-long Base window 22:00-23:00 against HC from 22:30.
    parts = split_cost(
        tariff("hphc", "22:30-06:00"),
        local(2026, 1, 10, 22, 0),
        local(2026, 1, 10, 23, 0),
        1000.0,
    )
    assert parts == {"HP": (500.0, Decimal("0.1213")), "HC": (500.0, Decimal("0.0914"))}


def test_compare_hphc_contract_with_base() -> None:
    windows = [
        window(21, 0, 10_500.0, "HP", 2.5473),  # one stored window per hour, for short
        window(22, 0, 14_000.0, "HC", 2.5592),
        window(12, 0, 10_500.0, "HP", 2.5473),
    ]
    result = compare(windows, tariff("hphc"), 3600)
    assert result.in_force.option == "hphc" and result.other.option == "base"
    assert result.in_force.by_period["HP"] == (21_000.0, Decimal("5.0946"))
    assert result.in_force.by_period["HC"] == (14_000.0, Decimal("2.5592"))
    assert result.other.by_period == {"BASE": (35_000.0, Decimal("7.966"))}
    assert result.stored_cost_eur == pytest.approx(7.6538)


def test_compare_base_contract_with_hphc_cuts_windows_at_hc_ranges() -> None:
    # Base windows of an hour, HC from 22:30: the 22:00 window is half HP, half HC.
    windows = [window(22, 0, 2000.0, "BASE", 0.4552)]
    result = compare(windows, tariff("base", "22:30-06:00"), 3600)
    assert result.in_force.by_period == {"BASE": (2000.0, Decimal("0.4552"))}
    assert result.other.by_period == {
        "HP": (1000.0, Decimal("0.2426")),
        "HC": (1000.0, Decimal("0.1828")),
    }


# ---- irve compare on real data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def base_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Base contract (with the HC ranges it would get under HP/HC), 35 kWh in January:
    21 kWh in HP hours, 14 kWh in HC hours."""
    influx = servers.influxd(tmp_path_factory.mktemp("influxd"))
    influx.start()
    create_database(influx)
    path = site_file(tmp_path_factory.mktemp("site"), influx.port, option="base")
    site = load(SiteConfig, path)
    start = local(2026, 1, 10, 12, 0)
    body = to_lines(scripted_messages(site, GUEST_CHARGES, start, start + timedelta(hours=47)))
    backend = HttpV1Backend(site.influx)
    backend.write("\n".join(body))
    backend.close()
    yield path
    influx.stop()


def test_compare_command_with_known_numbers(
    base_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", "-c", str(base_site), "--month", "2026-01", "--lang", "en"]) == 0
    out = capsys.readouterr().out.splitlines()
    # Base: 35 x 0.2276 = 7.966; HP/HC: 21 x 0.2426 + 14 x 0.1828 = 5.0946 + 2.5592 = 7.6538.
    assert out[1] == "in force      Base   35.000 kWh 7.97 EUR (BASE 35.000 kWh 7.97 EUR)"
    assert out[2] == (
        "other option  HP/HC  35.000 kWh 7.65 EUR (HC 14.000 kWh 2.56 EUR, HP 21.000 kWh 5.09 EUR)"
    )
    assert out[3] == "HP/HC would have cost 0.32 EUR less than Base (the contract in force)."


def test_compare_says_it_in_french_and_warns_of_a_partly_covered_month(
    base_site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The readings cover 10..12 January: the comparison says it holds for 3 days of 31."""
    assert main(["compare", "-c", str(base_site), "--month", "2026-01"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Site hotel-bill, 2026-01 : 360 fenêtres d'énergie"
    assert out[1] == "en vigueur    Base   35,000 kWh 7,97 € (BASE 35,000 kWh 7,97 €)"
    assert out[3] == "HP/HC aurait coûté 0,32 € de moins que Base (contrat en vigueur)."
    assert out[4] == (
        "attention : les relevés ne couvrent que 3 jour(s) sur 31 de ce mois (du 10/01/2026 "
        "au 12/01/2026) ; la comparaison ne porte que sur ces jours."
    )


def test_compare_command_per_point(base_site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "-c", str(base_site), "--month", "2026-01", "--lang", "en"]
    assert main([*argv, "--point", "cp2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("in force      Base   7.000 kWh 1.59 EUR")  # 7 x 0.2276 = 1.5932


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--month", "2026-02"],
            "--month: no stored readings or energy for site hotel-bill in 2026-02",
        ),
        (
            ["--month", "2026-02", "--point", "cp1"],
            "--month: no stored readings or energy for meter cp1 in 2026-02",
        ),
        (["--month", "2026-01", "--point", "cp9"], "--point: no meter 'cp9' in the site file"),
    ],
)
def test_compare_unknown_point_or_month_without_data_exits_2(
    base_site: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["compare", "-c", str(base_site), *extra]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("month", "offpeak", "message"),
    [
        ("2026-13", ["22:00-06:00"], "--month: '2026-13' is not YYYY-MM"),
        ("2026-01", [], "tariff.offpeak: HC ranges are needed"),
    ],
)
def test_compare_bad_input_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    month: str,
    offpeak: list[str],
    message: str,
) -> None:
    path = site_file(tmp_path, option="base")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["tariff"]["offpeak"] = offpeak
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["compare", "-c", str(path), "--month", month]) == 2
    assert message in capsys.readouterr().err


def test_compare_notes_stored_costs_priced_with_other_rows(
    base_site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load(base_site.read_text(encoding="utf-8"))
    data["tariff"]["prices"] = [{**GUIDE_PRICES, "base": 0.2000}]
    corrected = tmp_path / "corrected.yaml"
    corrected.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["compare", "-c", str(corrected), "--month", "2026-01", "--lang", "en"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("in force      Base   35.000 kWh 7.00 EUR")
    assert out[-1].startswith("note: the stored windows say 7.97 EUR")


def test_compare_tempo_contract_with_hphc_at_the_colours_known(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """7 kWh on the red 7 December and 7 kWh on 8 December, whose colour is not known yet
    (priced at the fallback, blue), against HP/HC; the stored windows were all at blue."""
    influx = servers.influxd(tmp_path / "influxd")
    influx.start()
    try:
        create_database(influx)
        row = {
            "since": "2026-02-01",
            "base": 0.1927,
            "hp": 0.2065,
            "hc": 0.1579,
            "tempo": {
                "blue": {"hp": 0.1612, "hc": 0.1325},
                "white": {"hp": 0.1871, "hc": 0.1499},
                "red": {"hp": 0.7060, "hc": 0.1575},
            },
        }
        path = site_file(tmp_path, influx.port, option="tempo", prices=[row])
        site = load(SiteConfig, path)
        charges = [
            Charge("cp1", local(2026, 12, d, 7, 0), local(2026, 12, d, 8, 0), 7000.0)
            for d in (7, 8)
        ]
        start = local(2026, 12, 7, 6, 30)
        body = to_lines(scripted_messages(site, charges, start, start + timedelta(hours=26)))
        backend = HttpV1Backend(site.influx)
        backend.write("\n".join(body))
        backend.close()
        (tmp_path / "state").mkdir(exist_ok=True)
        (tmp_path / "state" / "tempo-hotel-bill.json").write_text('{"2026-12-07": "red"}')
        argv = ["compare", "-c", str(path), "--month", "2026-12", "--lang", "en"]
        assert main(argv) == 0
    finally:
        influx.stop()
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "in force      Tempo  14.000 kWh 6.07 EUR (TEMPO_BLUE_HP 7.000 kWh 1.13 EUR, "
        "TEMPO_RED_HP 7.000 kWh 4.94 EUR)"
    )
    assert out[2] == "other option  HP/HC  14.000 kWh 2.89 EUR (HP 14.000 kWh 2.89 EUR)"
    assert out[3] == "HP/HC would have cost 3.18 EUR less than Tempo (the contract in force)."
    assert "note: the stored windows say 2.26 EUR; the price rows changed since: " in out[-2]
    assert out[-1] == "note: Tempo colour unknown for 1 day(s), priced as blue."
