"""`irve demo-history` against a real influxd: simulated history never mixes with a site's real
data. Every demo point is tagged `demo=1`; a database holding real data of the site is refused
unless `--force`; the documented delete query removes the demo points and only them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.cli import main
from collector.config import SiteConfig
from collector.ingest.writer import HttpV1Backend
from collector.settings import load
from collector.simulator.history import HistoryCounts, demo_tagged, history_lines
from tests.support import servers
from tests.support.billing_helpers import (
    GUEST_CHARGES,
    local,
    scripted_messages,
    site_file,
    to_lines,
)
from tests.support.influx_db import count, create_database, influx_query, rows
from tests.support.paths import EXAMPLES

pytestmark = [pytest.mark.influx]


END = "2026-01-09T00:00:00+01:00"
# The delete query of docs/energy-and-billing.md.
DELETE_DEMO = "DROP SERIES WHERE \"demo\" = '1'"


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.influxd(tmp_path / "influxd")
    server.start()
    create_database(server)
    yield server
    server.stop()


def demo(path: Path, *extra: str) -> int:
    return main(["demo-history", "-c", str(path), "--days", "0.5", "--end", END, *extra])


def write_real_data(path: Path) -> None:
    """A real stay (the billing tests' guests), as the ingestor writes it."""
    site = load(SiteConfig, path)
    body = to_lines(
        scripted_messages(site, GUEST_CHARGES, local(2026, 1, 10, 12, 0), local(2026, 1, 12, 11))
    )
    backend = HttpV1Backend(site.influx)
    backend.write("\n".join(body))
    backend.close()


def test_demo_points_are_tagged_and_deletable(influx: servers.Server, tmp_path: Path) -> None:
    path = site_file(tmp_path, influx.port)
    assert demo(path) == 0
    for measurement, field in (("reading", "power_w"), ("energy", "energy_wh")):
        total = count(influx, measurement, field)
        assert total > 0
        tagged = rows(influx, f"SELECT count({field}) FROM {measurement} WHERE demo = '1'")
        assert tagged[0]["count"] == total
    assert rows(influx, "SHOW TAG VALUES FROM session WITH KEY = demo") == [
        {"key": "demo", "value": "1"}
    ]
    influx_query(influx, DELETE_DEMO)
    assert count(influx) == 0 and count(influx, "energy", "energy_wh") == 0


def test_refuses_a_database_with_real_data_of_the_site_unless_forced(
    influx: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = site_file(tmp_path, influx.port)
    write_real_data(path)
    real = count(influx)
    assert demo(path) == 2
    err = capsys.readouterr().err
    assert "--force: the database already holds real data of site 'hotel-bill'" in err
    assert count(influx) == real  # nothing written

    assert demo(path, "--force") == 0
    assert count(influx) > real
    # A bill for the real stay before and after deleting the demo points: the same.
    argv = ["bill", "-c", str(path), "--room", "12"]
    argv += ["--arrival", "2026-01-10", "--departure", "2026-01-12"]
    influx_query(influx, DELETE_DEMO)
    assert count(influx) == real
    capsys.readouterr()
    assert main(argv) == 0
    assert "5,96" in capsys.readouterr().out


def test_other_sites_data_and_earlier_demo_history_do_not_block(
    influx: servers.Server, tmp_path: Path
) -> None:
    path = site_file(tmp_path, influx.port)
    backend = HttpV1Backend(load(SiteConfig, path).influx)
    backend.write("reading,site=other-site,point=cp1,role=socket power_w=1.0 1767225600000")
    backend.close()
    assert demo(path) == 0
    assert demo(path) == 0  # demo history again over demo history


def test_demo_tag_goes_after_escaped_tags() -> None:
    line = 'session,site=a,badge=x\\ y energy_wh=1.0,session_id="a b" 1000'
    assert (
        demo_tagged(line) == 'session,site=a,badge=x\\ y,demo=1 energy_wh=1.0,session_id="a b" 1000'
    )


def test_each_day_before_the_last_gets_its_subscription_share() -> None:
    """Midday 3 January to 11:00 on the 6th (Paris): the 3rd, 4th and 5th each get the month's
    figure / 31, demo-tagged; the 6th is left to the collector, which publishes it when it
    starts (two points of one day would count it twice in the month's subscription)."""
    data = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text(encoding="utf-8"))
    data["tariff"]["subscription"] = [{"since": "2025-01-01", "per_month": 52.7}]
    site = SiteConfig(**data)
    paris = ZoneInfo("Europe/Paris")
    start, end = datetime(2026, 1, 3, 12, tzinfo=paris), datetime(2026, 1, 6, 11, tzinfo=paris)
    counts = HistoryCounts()
    phases = {m.id: 1 for m in site.meters}
    lines = history_lines(site, phases, start, end, counts=counts)
    shares = [line for line in lines if line.startswith("subscription,")]
    assert counts.subscriptions == 3
    assert shares == [
        "subscription,site=hotel-vda,option=hphc,demo=1 cost_eur=1.7,per_month_eur=52.7 "
        f"{int(datetime(2026, 1, day, tzinfo=paris).timestamp() * 1000)}"
        for day in (3, 4, 5)
    ]
