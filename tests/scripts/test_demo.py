"""`make demo` end to end: real mosquitto and influxd from the system packages, the simulator,
ingestor and collector as processes; readings reach InfluxDB; nothing is left running after
DEMO_SECONDS, Ctrl-C, or the demo being killed outright. Plus the pure parts of the script.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import yaml

from collector.config import SiteConfig
from collector.settings import load
from collector.store.influxql import InfluxQL, Series
from scripts import demo, local_influxd
from scripts.demo_view import Board, local_midnight, render, totals_queries
from scripts.processes import find_program
from tests.support.servers import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.influx, pytest.mark.process]


REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "examples" / "hotel-vda.yaml"
METERS = {"main", "cp1", "cp2"}


class Run:
    """The demo as a child process in its own session (a terminal's foreground group)."""

    def __init__(self, argv: list[str], **env: str) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for_line(self, pattern: str, timeout: float = 40) -> re.Match[str]:
        deadline = datetime.now().timestamp() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - datetime.now().timestamp()))
            except queue.Empty:
                raise AssertionError(f"no line {pattern!r} in:\n{self.text()}") from None
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def finish(self, timeout: float) -> str:
        self.process.wait(timeout=timeout)
        return self.text()

    def text(self) -> str:
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def descendants(self) -> list[psutil.Process]:
        return list(psutil.Process(self.process.pid).children(recursive=True))


def gone(processes: list[psutil.Process]) -> bool:
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def started_servers(run: Run) -> tuple[str, list[psutil.Process]]:
    """Wait for the live view; the InfluxDB URL and every process the demo started."""
    # Five servers start first (the collector with its OCPP central system, the simulator with
    # its charger): on a loaded 2-core machine that takes more than the default 40 s.
    url = run.wait_for_line(r"InfluxDB\s+(http://127\.0\.0\.1:\d+)", timeout=90).group(1)
    run.wait_for_line("live readings")
    children = run.descendants()
    names = " ".join(" ".join(p.cmdline()) for p in children)
    for program in ("mosquitto", "influxd", "simulate", "ingest", "collect"):
        assert program in names, names
    return url, children


def readings_per_meter(url: str) -> dict[str, int]:
    series = InfluxQL(url, "irve").query(
        "SELECT count(\"power_w\") AS n FROM reading WHERE site = 'hotel-vda' GROUP BY point"
    )
    return {s.tags["point"]: int(s.values[0][1]) for s in series}


@pytest.mark.timing
def test_make_demo_reaches_influxdb_and_stops_after_demo_seconds() -> None:
    run = Run(
        ["make", "--no-print-directory", "-o", ".venv/bin/.installed", "demo"],
        DEMO_SECONDS="6",
        VENV=sys.prefix,
    )
    try:
        url, children = started_servers(run)
        # Simulator -> Modbus -> collector -> mosquitto -> ingestor -> influxd, every meter.
        wait_until(
            lambda: set(readings_per_meter(url)) == METERS,
            timeout=10,
            what="readings of every meter in InfluxDB",
        )
        latest = InfluxQL(url, "irve").query(
            "SELECT last(voltage_v) FROM reading WHERE point = 'cp1'"
        )
        assert 200 < latest[0].values[0][1] < 260
        output = run.finish(timeout=40)
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
    assert run.process.returncode == 0, output
    assert output.rstrip().endswith("demo: stopped"), output
    wait_until(lambda: gone(children), timeout=5, what="every child gone")
    temporary = re.search(r"logs\s+(\S+)/\*\.log", output)
    assert temporary and not Path(temporary.group(1)).exists()


def test_demo_shows_the_guests_ocpp_sessions_with_badges_and_rooms() -> None:
    """The default scenario: the reference station's charger simulated, the front desk's
    badges with rooms; cp1's car charges (a transaction, badge of room 12, the socket's 32 A),
    cp2's leaves after a minute: its session ends with the MID meter's energy and cost."""
    run = Run([sys.executable, "-m", "scripts.demo"], DEMO_SECONDS="150")
    try:
        started_servers(run)
        run.wait_for_line(r"\d\d:\d\d:\d\d  cp2  badge 04A1B2C4  room 14  OCPP tx \d+  ended ", 120)
        run.process.send_signal(signal.SIGTERM)
        output = run.finish(timeout=60)
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
    assert run.process.returncode == 0, output
    assert "badge list published on irve/hotel-vda/badges: 2 guests' badges" in output
    frame = output.rsplit("(hotel-vda)", 1)[1]  # the last frame
    assert re.search(r"^chargers cp1 Charging, cp2 Available$", frame, re.M), frame
    assert re.search(
        r"\d\d:\d\d:\d\d  cp1  badge 04A1B2C3  room 12  OCPP tx \d+  charging$", frame, re.M
    )
    ended = re.search(r"cp2  badge 04A1B2C4  room 14  OCPP tx \d+  ended \S+  (\S+) kWh", frame)
    assert ended and float(ended.group(1)) > 0, frame
    # The car on cp1 draws the socket's 32 A through the charger: about 7.3 kW.
    cp1 = re.findall(r"^cp1\s+Borne 1\s+charging\s+-\s+(\d+) (\d+)\s", frame, re.M)
    assert cp1 and 7000 < int("".join(cp1[-1])) < 7600, frame


def test_demo_shows_alerts_and_shed_offers_a_watch_command_and_keeps_logs() -> None:
    """An overcurrent on cp1 and an overload of the site: the table shows both alerts firing
    (time, value, limit) and the shed request; the footer's watch command works without
    mosquitto-clients; DEMO_KEEP_LOGS keeps the temporary run folder and prints it."""
    run = Run(
        [sys.executable, "-m", "scripts.demo"],
        DEMO_SECONDS="12",
        DEMO_KEEP_LOGS="1",
        DEMO_SIMULATE_ARGS="--scenario overcurrent:cp1:40 --scenario overload:40000",
    )
    try:
        started_servers(run)
        watch = re.search(r"^demo: watch\s+cd (\S+) && (.+)$", run.text(), re.M)
        assert watch, run.text()
        # The collector's retained status: the command connects as `building` and reads.
        command = watch.group(2).replace("'irve/#'", "irve/hotel-vda/status") + " -C 1"
        result = subprocess.run(
            shlex.split(command), cwd=watch.group(1), capture_output=True, text=True, timeout=20
        )
        assert result.stdout == "irve/hotel-vda/status online\n", result.stderr
        output = run.finish(timeout=60)
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
        folder = re.search(
            r"^demo: run folder kept: (\S+) \(logs: \S+/\*\.log\)$", run.text(), re.M
        )
    assert folder, run.text()
    kept = Path(folder.group(1))
    try:
        assert run.process.returncode == 0, output
        frame = output.rsplit("live readings", 1)[1]
        assert re.search(r"^cp1\s+Borne 1\s+\w+\s+socket_overcurrent\s", frame, re.M), frame
        assert re.search(
            r"^main\s+\(site\)\s+\w+\s+site_overload, site_overload_warning\s", frame, re.M
        )
        assert re.search(
            r"\d\d:\d\d:\d\d  firing\s+socket_overcurrent\s+cp1  40\.0 A \(limit 32\.0 A\)",
            frame,
        ), frame
        assert re.search(r"firing\s+site_overload\s+main  40 000 W \(limit 36 000 W\)", frame)
        assert re.search(r"^shed    ACTIVE: take \d[\d ]* W off \(site_overload\)$", frame, re.M)
        assert kept.name.startswith("irve-demo-")
        log = (kept / "collector.log").read_text()
        assert "alert socket_overcurrent firing on cp1: Surintensité sur Borne 1" in log
    finally:
        shutil.rmtree(kept)


def test_ctrl_c_stops_everything_in_order(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = Run([sys.executable, "-m", "scripts.demo"], DEMO_DIR=str(run_dir), DEMO_SECONDS="60")
    try:
        url, children = started_servers(run)
        wait_until(lambda: readings_per_meter(url) != {}, timeout=10, what="readings")
        # A terminal's Ctrl-C goes to the whole foreground process group.
        os.killpg(run.process.pid, signal.SIGINT)
        output = run.finish(timeout=40)
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
    assert run.process.returncode == 0, output
    stops = re.findall(r"^demo: stopping (\w+)$", output, re.M)
    assert stops == ["collector", "ingestor", "simulator", "influxd", "mosquitto"], output
    wait_until(lambda: gone(children), timeout=5, what="every child gone")
    # The collector got a SIGTERM of its own and went offline cleanly; the run folder stays.
    assert "SIGTERM received" in (run_dir / "collector.log").read_text()


def test_killed_demo_leaves_no_orphan(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run = Run([sys.executable, "-m", "scripts.demo"], DEMO_DIR=str(run_dir), DEMO_SECONDS="60")
    try:
        _, children = started_servers(run)
        run.process.kill()  # no chance to clean up: the children's death signal must do it
        run.process.wait(timeout=5)
        wait_until(lambda: gone(children), timeout=20, what="every child gone")
    finally:
        for child in children:
            if not gone([child]):
                child.kill()


# --- pure parts -------------------------------------------------------------------------------


def test_missing_programs_get_a_clear_message_and_apt_commands() -> None:
    assert demo.missing_programs(lambda name: None) == ["mosquitto", "influxd"]
    assert demo.missing_programs(lambda name: f"/usr/sbin/{name}") == []
    message = demo.missing_message(["influxd"])
    assert "influxd (package influxdb)" in message
    assert "sudo apt-get install influxdb" in message and "DEMO_INSTALL=1" in message
    assert demo.install_commands(["mosquitto", "influxd"], is_root=True)[1] == [
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "mosquitto",
        "influxdb",
    ]
    assert demo.install_commands(["mosquitto"], is_root=False)[0][0] == "sudo"


def test_a_missing_program_stops_the_demo_with_the_package_to_install(tmp_path: Path) -> None:
    # A PATH without the servers: only the sbin folders are still searched.
    missing = [name for name in demo.PACKAGES if find_program(name, str(tmp_path)) is None]
    assert missing, "every server binary is in an sbin folder: nothing to test"
    result = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=REPO,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    for name in missing:
        assert f"{name} (package {demo.PACKAGES[name]})" in result.stderr
    assert "DEMO_INSTALL=1" in result.stderr and "Traceback" not in result.stderr


def test_options_from_environment() -> None:
    opts = demo.options({"DEMO_SECONDS": "2.5", "DEMO_INSTALL": "1", "DEMO_SIMULATE_ARGS": "-s 3"})
    assert (opts.seconds, opts.install, opts.simulate_args) == (2.5, True, ["-s", "3"])
    assert demo.options({}).seconds is None and demo.options({}).site == demo.DEFAULT_SITE
    assert not demo.options({}).keep_logs and demo.options({"DEMO_KEEP_LOGS": "1"}).keep_logs
    assert demo.options({}).simulate_args is None  # the default scenario
    assert demo.options({"DEMO_SIMULATE_ARGS": ""}).simulate_args == []  # none at all
    for bad in ("0", "-1", "soon"):
        with pytest.raises(demo.DemoError, match="DEMO_SECONDS"):
            demo.options({"DEMO_SECONDS": bad})


def test_influxd_version_is_read() -> None:
    assert local_influxd.major_version("InfluxDB v1.6.7~rc0 (git: unknown unknown)") == 1
    assert local_influxd.major_version("InfluxDB v2.7.11 (git: fbf5d4ab5e) build_date: x") == 2
    assert local_influxd.major_version("garbage") is None


def test_demo_site_uses_local_ports_and_the_site_id_as_mqtt_user() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    site = demo.demo_site(example, 41883, {"board": 45020}, 49000)
    assert site["buses"] == [{**example["buses"][0], "host": "127.0.0.1", "port": 45020}]
    assert site["mqtt"]["port"] == 41883 and site["mqtt"]["username"] == "hotel-vda"
    assert site["meters"] == example["meters"]
    # The reference station: one charger, two connectors (Type 2, domestic) per charge point.
    assert site["ocpp"]["listen"] == "127.0.0.1:49000"
    (charger,) = site["chargers"]
    assert charger["id"] == "borne-1" and len(charger["password"]) >= 16
    assert charger["connectors"] == {1: "cp1", 2: "cp1", 3: "cp2", 4: "cp2"}
    own = {**example, "chargers": [{"id": "wb", "password": "x", "connectors": {1: "cp2"}}]}
    assert demo.demo_site(own, 1, {"board": 2}, 3)["chargers"] == own["chargers"]
    rtu = {**example, "buses": [{"id": "rs485", "type": "rtu", "device": "/dev/ttyUSB0"}]}
    with pytest.raises(demo.DemoError, match="TCP buses only"):
        demo.demo_site(rtu, 1883, {}, 3)


def test_the_load_management_example_runs_with_the_demo_charger_and_shows_its_limits(
    tmp_path: Path,
) -> None:
    example = yaml.safe_load((EXAMPLE.parent / "hotel-vda-load.yaml").read_text())
    data = demo.demo_site(example, 1, {"board": 2}, 3)
    assert data["load_management"] == {"margin_w": 1000} and data["chargers"]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    board = Board(load(SiteConfig, str(path)))
    board.on_message(
        "irve/hotel-vda/cp2/limit",
        b'{"ts": "2026-11-23T10:15:02.123Z", "current_a": 10.8, "reason": "overload",'
        b' "actuators": {"ocpp": "accepted"}}',
    )
    board.on_message(
        "irve/hotel-vda/cp1/limit",
        b'{"ts": "2026-11-23T10:15:02.123Z", "current_a": 0, "reason": "schedule",'
        b' "actuators": {"ocpp": "rejected", "advisory": "shed"}}',
    )
    board.on_message("irve/hotel-vda/cp1/limit", b'{"current_a": "lots"}')  # kept the last good
    frame = render(board, datetime(2026, 11, 23, 10, 15, 5, tzinfo=UTC), [])
    assert (
        "limits  cp1  paused  schedule  (ocpp rejected, advisory shed)\n"
        "        cp2  10.8 A  overload  (ocpp accepted)"
    ) in frame


def test_board_and_table(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        yaml.safe_dump(demo.demo_site(yaml.safe_load(EXAMPLE.read_text()), 1, {"board": 2}, 3))
    )
    site = load(SiteConfig, str(path))
    assert demo.default_simulate_args(site) == [
        *("--badge", "cp1=04A1B2C3", "--scenario", "plug:cp1:240"),
        *("--badge", "cp2=04A1B2C4", "--scenario", "plug:cp2:1"),
    ]
    badges = json.loads(demo.badge_list(site, datetime(2026, 11, 23, 10, 0, tzinfo=UTC)))
    assert badges["badges"] == [
        {"badge": "04A1B2C3", "room": "12", "until": "2026-11-25T10:00:00.000Z"},
        {"badge": "04A1B2C4", "room": "14", "until": "2026-11-25T10:00:00.000Z"},
    ]
    board = Board(site)
    board.on_message("irve/hotel-vda/status", b"online")
    board.on_message(
        "irve/hotel-vda/cp1/state",
        b'{"ts": "2026-11-23T10:15:02.123Z", "power_w": 7245.4, "current_a": 31.52,'
        b' "voltage_v": 230.1, "energy_wh": 1000, "charging": true}',
    )
    board.on_message("irve/hotel-vda/cp2/availability", b"offline")
    board.on_message("irve/other-site/cp1/state", b'{"power_w": 1}')  # not this site: ignored
    board.on_message("irve/hotel-vda/cp1/state", b"not json")  # kept the last good one
    now = datetime(2026, 11, 23, 10, 15, 5, tzinfo=UTC)
    energy_q, readings_q = totals_queries(site, now)
    # Paris is UTC+1 in November: the local day began at 23:00 UTC the day before.
    assert local_midnight(now, "Europe/Paris") == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    assert "time >= '2026-11-22T23:00:00.000000Z'" in energy_q
    assert "\"site\" = 'hotel-vda'" in energy_q and 'GROUP BY "point"' in readings_q
    board.on_totals(
        [
            Series(
                "energy", {"point": "cp1"}, ["time", "energy_wh", "cost_eur"], [[0, 1234.5, 0.2549]]
            )
        ],
        [Series("reading", {"point": "cp1"}, ["time", "n"], [[0, 42]])],
    )
    frame = render(board, now, ["footer line"])
    assert re.search(r"^main\s+\(site\)\s+waiting", frame, re.M)
    assert frame.endswith("footer line")
    assert "shed    no request yet\nalerts  none yet" in frame
    assert "collector online" in frame.splitlines()[0]
    assert re.search(
        r"^cp1\s+Borne 1\s+charging\s+-\s+7 245\s+31\.5\s+1\.234\s+0\.25\s+42$", frame, re.M
    )
    assert re.search(r"^cp2\s+Borne 2\s+offline\s+-\s+-\s+-\s+0\.000\s+0\.00\s+0$", frame, re.M)

    def alert(ts: str, state: str, value: float) -> bytes:
        return (
            f'{{"ts": "{ts}", "alert": "socket_overcurrent", "state": "{state}", "point": "cp1",'
            f' "value": {value}, "limit": 32.0, "message": "..."}}'
        ).encode()

    board.on_message("irve/hotel-vda/alert", alert("2026-11-23T10:15:03.500Z", "firing", 40.04))
    board.on_message(
        "irve/hotel-vda/shed",
        b'{"ts": "2026-11-23T10:15:03.500Z", "active": true, "excess_w": 4000.0,'
        b' "reason": "site_overload"}',
    )
    frame = render(board, now, [])
    assert re.search(r"^cp1\s+Borne 1\s+charging\s+socket_overcurrent\s+7 245\s", frame, re.M)
    assert "shed    ACTIVE: take 4 000 W off (site_overload)" in frame
    assert "alerts  11:15:03  firing    socket_overcurrent     cp1  40.0 A (limit 32.0 A)" in frame
    board.on_message(
        "irve/hotel-vda/shed",
        b'{"ts": "2026-11-23T10:15:05Z", "active": true, "excess_w": 0, "reason": "site_overload"}',
    )
    assert "shed    ACTIVE: hold the reduction (site_overload)" in render(board, now, [])
    board.on_message("irve/hotel-vda/alert", alert("2026-11-23T10:15:09Z", "resolved", 12.0))
    board.on_message("irve/hotel-vda/alert", b'{"alert": "bogus"}')  # refused, ignored
    board.on_message(
        "irve/hotel-vda/shed",
        b'{"ts": "2026-11-23T10:15:09Z", "active": false, "excess_w": 0, "reason": "normal"}',
    )
    frame = render(board, now, [])
    assert re.search(r"^cp1\s+Borne 1\s+charging\s+-\s+7 245\s", frame, re.M)
    assert "shed    none (normal)" in frame
    # Latest first, each with its local time, value and limit.
    assert (
        "alerts  11:15:09  resolved  socket_overcurrent     cp1  12.0 A (limit 32.0 A)\n"
        "        11:15:03  firing    socket_overcurrent     cp1  40.0 A (limit 32.0 A)"
    ) in frame
    assert "sessions none yet" in frame and "chargers" not in frame

    def session(event: str, ts: str, **more: object) -> bytes:
        body = {
            "event": event,
            "session_id": "cp1-tx7",
            "ts": ts,
            "badge": "04A1B2C3",
            "energy_wh": 0,
            "cost_eur": 0,
            "duration_s": 0,
            "max_power_w": 0,
            "room": "12",
            "source": "ocpp",
            "transaction_id": 7,
            **more,
        }
        return json.dumps(body).encode()

    board.on_message(
        "irve/hotel-vda/cp1/connector",
        b'{"ts": "2026-11-23T10:15:00Z", "charger": "borne-1", "connector": 1,'
        b' "status": "Charging", "error_code": "NoError", "info": null}',
    )
    board.on_message("irve/hotel-vda/cp1/session", session("start", "2026-11-23T10:15:00Z"))
    frame = render(board, now, [])
    assert "chargers cp1 Charging\n" in frame
    assert "sessions 11:15:00  cp1  badge 04A1B2C3  room 12  OCPP tx 7  charging" in frame
    end = session(
        "end", "2026-11-23T10:45:00Z", start="2026-11-23T10:15:00Z", energy_wh=3456.7, cost_eur=0.69
    )
    board.on_message("irve/hotel-vda/cp1/session", end)
    board.on_message("irve/hotel-vda/cp1/session", b"{}")  # refused, ignored
    frame = render(board, now, [])
    assert (
        "sessions 11:15:00  cp1  badge 04A1B2C3  room 12  OCPP tx 7  ended 11:45:00  3.457 kWh"
        "  0.69 EUR"
    ) in frame
    assert "charging" not in frame.split("sessions", 1)[1]
