"""An InfluxDB URL with its credentials (`http://user:password@host:port`) against an influxd
with authentication enabled: irve bill, compare, recompute and the desk read through it, the
ingestor's writer writes through it, and the password appears in no output or log."""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.cli import main
from collector.ingest.writer import HttpV1Backend
from collector.simulator.history import history_lines
from collector.site import load_site
from tests.support import servers
from tests.support.desk import Client, add_user, desk_process
from tests.support.sim_helpers import main_meter, socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.influx, pytest.mark.broker, pytest.mark.process]

USER = "irve-admin"
PASSWORD = "Infl-s3cret/p@ss:word"  # a slash, an at sign and a colon: escaped in the URL
WRONG = "not-the-s3cret-pass"
DESK_PASSWORD = "reception-password-1"


def url_with(port: int, password: str) -> str:
    return f"http://{USER}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{port}"


def influx_admin(port: int, statement: str, auth: bool = True) -> None:
    # influxd 1.6 takes u and p from the query string only, not from a form body.
    query = urllib.parse.urlencode({"u": USER, "p": PASSWORD} if auth else {})
    data = urllib.parse.urlencode({"q": statement}).encode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/query?{query}", data, timeout=10) as r:
        assert "error" not in json.loads(r.read())["results"][0]


def site_with(tmp: Path, influx_url: str, broker: int, name: str = "site.yaml") -> Path:
    return write_site(
        tmp,
        buses=[tcp_bus("board")],
        meters=[main_meter("main", "board", 10), socket_meter("cp1", "board", 1)],
        name=name,
        tariff={
            "option": "hphc",
            "offpeak": ["22:00-06:00"],
            "prices": [{"since": "2020-01-01", "base": 0.1927, "hp": 0.2065, "hc": 0.1579}],
        },
        mqtt={"host": "127.0.0.1", "port": broker},
        influx={"url": influx_url, "api_version": "1"},
        state_dir=str(tmp / "state"),
        desk={"listen": f"127.0.0.1:{servers.free_port()}", "database": str(tmp / "desk.db")},
    )


class Stack:
    def __init__(self, tmp: Path, influx: servers.Server, broker: servers.Server) -> None:
        self.tmp, self.influx, self.broker = tmp, influx, broker
        self.site = site_with(tmp, url_with(influx.port, PASSWORD), broker.port)
        self.end = datetime.now(UTC).replace(second=0, microsecond=0)
        self.start = self.end - timedelta(days=2)
        self.badge = ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("credentials")
    influx = servers.influxd(tmp / "influxd", auth=True)
    broker = servers.mosquitto(tmp / "mosquitto")
    influx.start()
    broker.start()
    try:
        influx_admin(
            influx.port,
            f"CREATE USER \"{USER}\" WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES",
            auth=False,
        )
        influx_admin(influx.port, "CREATE DATABASE irve")
        stack = Stack(tmp, influx, broker)
        site, profiles = load_site(str(stack.site))
        phases = {m.id: profiles[m.profile].phases for m in site.meters}
        lines = list(history_lines(site, phases, stack.start, stack.end, step_s=60.0))
        # The ingestor's writer, given the same settings, authenticates too.
        backend = HttpV1Backend(site.influx)
        backend.write("\n".join(lines))
        backend.close()
        stack.badge = next(
            line.split("badge=", 1)[1].split(",", 1)[0].split(" ", 1)[0]
            for line in lines
            if line.startswith("session,") and "badge=" in line
        )
        yield stack
    finally:
        broker.stop()
        influx.stop()


def local_day(ts: datetime) -> str:
    return ts.astimezone().strftime("%Y-%m-%dT%H:%M")


def test_the_url_is_taken_apart_and_the_password_masked(stack: Stack) -> None:
    site, _ = load_site(str(stack.site))
    assert site.influx.url == f"http://127.0.0.1:{stack.influx.port}"
    assert site.influx.username == USER
    assert site.influx.password is not None
    assert site.influx.password.get_secret_value() == PASSWORD


def test_bill_compare_and_recompute_read_through_the_url(
    stack: Stack, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    site = str(stack.site)
    room = stack.badge.removeprefix("chambre-")
    period = ["--arrival", stack.start.strftime("%Y-%m-%d"), "--departure"]
    assert main(["bill", "-c", site, "--room", room, *period, stack.end.strftime("%Y-%m-%d")]) == 0
    month = stack.end.astimezone(load_site(site)[0].site.tz).strftime("%Y-%m")
    assert main(["compare", "-c", site, "--month", month]) == 0
    day = stack.end - timedelta(days=1)
    recompute = ["recompute", "-c", site, "--from", day.strftime("%Y-%m-%d")]
    assert main([*recompute, "--to", stack.end.strftime("%Y-%m-%d"), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "Total TTC" in out.out and "energy windows" in out.out
    for text in (out.out, out.err, caplog.text):
        assert PASSWORD not in text
        assert urllib.parse.quote(PASSWORD, safe="") not in text


def test_a_wrong_password_is_a_clear_error_without_the_password(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = site_with(
        stack.tmp, url_with(stack.influx.port, WRONG), stack.broker.port, name="wrong.yaml"
    )
    period = ["--arrival", stack.start.strftime("%Y-%m-%d"), "--departure"]
    assert main(["bill", "-c", str(wrong), "--room", "12", *period, "2099-01-01"]) == 1
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{stack.influx.port}/query: HTTP 401" in err
    assert WRONG not in err and urllib.parse.quote(WRONG, safe="") not in err


def test_the_desk_reads_statements_through_the_url(stack: Stack) -> None:
    assert add_user(stack.site, "anne", "reception", DESK_PASSWORD).returncode == 0
    log = stack.tmp / "desk.log"
    with desk_process(stack.site, log) as url:
        client = Client(url)
        assert client.login("anne", DESK_PASSWORD).status == 303
        created = client.submit(
            "/stays/new",
            {
                "room": stack.badge.removeprefix("chambre-"),
                "arrival": local_day(stack.start),
                "departure": local_day(stack.end + timedelta(days=1)),
                "badges": stack.badge,
                "policy": "at_cost",
                "fee_eur": "0",
                "kwh_per_night": "8",
            },
        )
        assert created.status == 303, created.text
        statement = client.get(f"{created.location}/statement.csv")
        assert statement.status == 200
        assert "\n1;" in statement.text and "Total TTC" in statement.text  # a session billed
    text = log.read_text(encoding="utf-8", errors="replace")
    assert PASSWORD not in text and urllib.parse.quote(PASSWORD, safe="") not in text
