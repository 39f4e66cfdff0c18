"""`irve compare` shows the subscription apart from the kWh costs, and `--kva N` checks another
subscribed power against the site's own peak demand, on a real influxd."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.billing.compare import demand_over
from collector.cli import main
from collector.config import SiteConfig
from collector.ingest.writer import HttpV1Backend
from collector.settings import load
from collector.wire import lines
from collector.wire.messages import EnergyMessage, StateMessage
from tests.support import servers

pytestmark = [pytest.mark.influx]

SITE = "hotel-sub"
PRICES = [{"since": "2026-02-01", "base": 0.1927, "hp": 0.2065, "hc": 0.1579}]


def site_file(tmp_path: Path, port: int, tariff: dict[str, Any]) -> Path:
    data = {
        "site": {"id": SITE, "subscribed_power_kva": 36},
        "tariff": {"option": "hphc", "offpeak": ["22:00-06:00"], **tariff},
        "buses": [{"id": "board", "type": "tcp", "host": "127.0.0.1", "port": 1502}],
        "meters": [
            {"id": "main", "bus": "board", "unit": 10, "profile": "eastron-sdm630", "role": "main"},
            {
                "id": "cp1",
                "bus": "board",
                "unit": 1,
                "profile": "eastron-sdm120",
                "socket": {"label": "Borne 1", "rated_current_a": 32},
            },
        ],
        "influx": {"url": f"http://127.0.0.1:{port}", "api_version": "1"},
        "state_dir": str(tmp_path / "state"),
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def history() -> list[str]:
    """March 2026: one 7 kWh HP window a day on cp1; the main meter at 8 kW (readings every
    minute 10:00-20:00 UTC), above 12 kW on the 12th 18:00-18:04 UTC and the 20th 18:00-18:01
    then 18:03 (14 kW at 18:01)."""
    out: list[str] = []
    start = datetime(2026, 3, 1, tzinfo=UTC)
    peaks = {(12, 18, m): 13_000.0 for m in range(5)} | {
        (20, 18, 0): 12_500.0,
        (20, 18, 1): 14_000.0,
        (20, 18, 3): 12_500.0,
    }
    for d in range(31):
        day = start + timedelta(days=d)
        at = day.replace(hour=12)
        out.append(
            lines.energy(
                SITE,
                "cp1",
                EnergyMessage(
                    start=at,
                    end=at + timedelta(hours=1),
                    energy_wh=7000.0,
                    period="HP",
                    price_eur_kwh=0.2065,
                    cost_eur=1.4455,
                    index_start_wh=None,
                    index_end_wh=None,
                ),
            )
            or ""
        )
        for minute in range(10 * 60, 20 * 60):
            ts = day + timedelta(minutes=minute)
            watts = peaks.get((day.day, ts.hour, ts.minute), 8_000.0)
            msg = StateMessage(
                ts=ts, power_w=watts, current_a=None, voltage_v=None, energy_wh=None, role="main"
            )
            out.append(lines.reading(SITE, "main", msg) or "")
    return out


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    db = servers.influxd(tmp_path_factory.mktemp("influxd"))
    db.start()
    url = f"http://127.0.0.1:{db.port}/query?" + urllib.parse.urlencode(
        {"q": "CREATE DATABASE irve"}
    )
    urllib.request.urlopen(url, data=b"", timeout=5).close()
    path = site_file(tmp_path_factory.mktemp("site"), db.port, {"prices": PRICES})
    backend = HttpV1Backend(load(SiteConfig, path).influx)
    backend.write("\n".join(history()))
    backend.close()
    yield db
    db.stop()


def run(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    argv = ["compare", "-c", str(path), "--month", "2026-03", "--lang", "en", *extra]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_the_subscription_is_a_separate_line(
    influx: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = {"prices": PRICES, "subscription": [{"since": "2026-01-01", "per_month": 52.54}]}
    out = run(site_file(tmp_path, influx.port, typed), capsys)
    # The energy lines are the kWh alone: 31 x 7 kWh at 0.2065.
    assert out[1] == "in force      HP/HC  217.000 kWh 44.81 EUR (HP 217.000 kWh 44.81 EUR)"
    assert out[-1] == (
        "subscription (36 kVA): 52.54 EUR for 31 day(s), a fixed cost of the site, apart from "
        "the kWh prices"
    )


def test_the_tables_subscription_and_another_power(
    influx: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = {"supplier": "edf-tarif-bleu", "kva": 15}
    out = run(site_file(tmp_path, influx.port, table), capsys, "--kva", "12")
    assert out[-4:] == [
        "subscription (15 kVA): 26.84 EUR for 31 day(s), a fixed cost of the site, apart from "
        "the kWh prices",
        "at 12 kVA: subscription 23.32 EUR for these days (3.52 EUR less)",
        "site peak (meter main): 14.0 kW on 2026-03-20 19:01",
        "at 12 kVA (12.0 kW): exceeded 3 time(s), 8 min in all: the meter could have tripped",
    ]
    out = run(site_file(tmp_path, influx.port, table), capsys, "--kva", "15")
    assert out[-1] == "at 15 kVA (15.0 kW): never exceeded this month"


def test_a_month_the_table_lacks_says_so(
    influx: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """From 1 August 2026 the table has no subscription: said, not invented."""
    base = datetime(2026, 8, 3, 12, tzinfo=UTC)
    msg = EnergyMessage(
        start=base, end=base + timedelta(hours=1), energy_wh=1000.0, period="HP",
        price_eur_kwh=0.2142, cost_eur=0.2142, index_start_wh=None, index_end_wh=None,
    )  # fmt: skip
    path = site_file(tmp_path, influx.port, {"supplier": "edf-tarif-bleu", "kva": 15})
    backend = HttpV1Backend(load(SiteConfig, path).influx)
    backend.write(lines.energy(SITE, "cp1", msg) or "")
    backend.close()
    argv = ["compare", "-c", str(path), "--month", "2026-08", "--lang", "en"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        "subscription: no figure from 2026-08-01: no hphc subscription for 15 kVA from "
        "2026-08-01 in the table (no cited source gives it)"
    )


def test_bad_kva_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = site_file(tmp_path, 1, {"prices": PRICES})
    assert main(["compare", "-c", str(path), "--month", "2026-03", "--kva", "7"]) == 2
    assert "--kva: 7 kVA is not a regulated subscribed power" in capsys.readouterr().err


def test_demand_counts_separate_times_over_the_limit() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    minute = timedelta(minutes=1)
    watts = [10.0, 30.0, 31.0, 10.0, 30.0, 10.0, 10.0, 32.0]
    d = demand_over([(t0 + n * minute, w) for n, w in enumerate(watts)], 24.0)
    assert (d.peak_w, d.peak_at, d.minutes_over, d.times_over) == (32.0, t0 + 7 * minute, 4, 3)
    # A minute without readings between two minutes over the limit: two times.
    gap = demand_over([(t0, 30.0), (t0 + 2 * minute, 30.0)], 24.0)
    assert gap.times_over == 2
    assert demand_over([], 24.0).peak_at is None
