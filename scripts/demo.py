"""`make demo`: the whole chain on one Debian/Ubuntu machine, without Docker.

mosquitto (the stack's mosquitto.conf and ACL, scripts/local_broker.py) and InfluxDB 1.x
(scripts/local_influxd.py) from the system packages, then `irve simulate`, `irve ingest` and
`irve collect` as local processes on the example hotel, every port a free local one and every
file in one run folder. A live table shows each meter's reading, the alerts and the shed
request (from the broker, as a building system sees them) and today's energy and cost (from
InfluxDB, as the bills see them). Ctrl-C or SIGTERM stops everything in order: collector,
ingestor, simulator, database, broker.

Environment:
  DEMO_SECONDS=N        stop after N seconds of live readings (default: run until Ctrl-C)
  DEMO_INSTALL=1        apt-get install mosquitto / influxdb when missing (sudo unless root)
  DEMO_SITE=FILE        site file to simulate (default config/examples/hotel-vda.yaml; TCP
                        buses only: the demo gives each a free local port)
  DEMO_DIR=DIR          run folder, kept afterwards (default: a temporary one, removed)
  DEMO_KEEP_LOGS=1      keep the temporary run folder (logs, site file) and print its path
  DEMO_SIMULATE_ARGS    `irve simulate` options, e.g. "--seed 3 --scenario overcurrent:cp1".
                        Unset: a guest's car plugged on each socket (the first for hours, the
                        others for a minute), charged through the OCPP charger with the badge
                        of a room, so that there is something to watch (guests' cars arrive a
                        few times a day)

The reference hotel's station is one OCPP charger (Legrand Green'up, two connectors per
charge point); a site file without `chargers` gets that one (`borne-1`), simulated by
`irve simulate`. The front desk's badge list (one badge and room per socket) is published,
retained, before the collector starts: the sessions come from the charger's transactions, with
the badge and the room, and the live view shows them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from pydantic import SecretStr

from collector.config import SiteConfig, TcpBus
from collector.mqtt.auth import new_client
from collector.settings import ConfigError, load
from collector.store.influxql import InfluxQL, InfluxQLError
from collector.wire.messages import format_ts
from scripts import local_broker, local_influxd
from scripts.demo_view import Board, render, totals_queries
from scripts.init_env import random_secret
from scripts.processes import Server, find_program, free_port, http_ok, port_open

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SITE = REPO / "config" / "examples" / "hotel-vda.yaml"
DATABASE = "irve"
# Program -> the Debian/Ubuntu package that installs it.
PACKAGES = {"mosquitto": "mosquitto", "influxd": "influxdb"}
DEMO_CHARGER = "borne-1"
TTY_REFRESH_S = 1.0
LOG_REFRESH_S = 5.0
TOTALS_EVERY_S = 5.0


class DemoError(Exception):
    """Something the user must fix; the message says what."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


@dataclass(frozen=True)
class Options:
    seconds: float | None
    install: bool
    site: Path
    run_dir: Path | None
    keep_logs: bool
    simulate_args: list[str] | None  # None: default_simulate_args


def _yes(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "") in ("1", "true", "yes")


def options(env: Mapping[str, str]) -> Options:
    raw = env.get("DEMO_SECONDS", "").strip()
    seconds: float | None = None
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if seconds <= 0:
            raise DemoError(f"DEMO_SECONDS={raw!r}: must be a number of seconds > 0")
    return Options(
        seconds=seconds,
        install=_yes(env, "DEMO_INSTALL"),
        site=Path(env.get("DEMO_SITE") or DEFAULT_SITE),
        run_dir=Path(env["DEMO_DIR"]) if env.get("DEMO_DIR") else None,
        keep_logs=_yes(env, "DEMO_KEEP_LOGS"),
        simulate_args=(
            shlex.split(env["DEMO_SIMULATE_ARGS"]) if "DEMO_SIMULATE_ARGS" in env else None
        ),
    )


# --- programs -------------------------------------------------------------------------------


def missing_programs(find: Callable[[str], str | None] = find_program) -> list[str]:
    return [name for name in PACKAGES if find(name) is None]


def install_commands(missing: Sequence[str], is_root: bool) -> list[list[str]]:
    """The apt-get commands that install the packages of the `missing` programs."""
    packages = [PACKAGES[name] for name in missing]
    sudo = [] if is_root else ["sudo"]
    return [
        [*sudo, "apt-get", "update"],
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *packages],
    ]


def missing_message(missing: Sequence[str]) -> str:
    listed = ", ".join(f"{name} (package {PACKAGES[name]})" for name in missing)
    packages = " ".join(PACKAGES[name] for name in missing)
    return (
        f"not installed: {listed}.\n"
        f"  Install with:  sudo apt-get install {packages}\n"
        "  or run again with DEMO_INSTALL=1 to let the demo install them.\n"
        "  (The packages start their own services on 1883/8086; the demo does not use them.)"
    )


def ensure_programs(install: bool) -> dict[str, str]:
    """Path of every program the demo needs, installing them first if allowed."""
    missing = missing_programs()
    if missing and not install:
        raise DemoError(missing_message(missing))
    if missing:
        if shutil.which("apt-get") is None:
            raise DemoError(
                "no apt-get: not a Debian/Ubuntu machine. Install mosquitto 2 and "
                "InfluxDB 1.x yourself, or use the Docker stack (make up)."
            )
        for command in install_commands(missing, os.geteuid() == 0):
            say("running: " + " ".join(command))
            if subprocess.run(command, check=False).returncode != 0:
                raise DemoError(f"failed: {' '.join(command)}")
        missing = missing_programs()
        if missing:
            raise DemoError(missing_message(missing))
    paths = {name: str(find_program(name)) for name in PACKAGES}
    major = local_influxd.installed_major(paths["influxd"])
    if major != 1:
        raise DemoError(
            f"{paths['influxd']} is InfluxDB {major or 'of an unknown version'}; the demo runs "
            "InfluxDB 1.x, the Debian/Ubuntu `influxdb` package (the Docker stack, make up, "
            "runs InfluxDB 2)."
        )
    return paths


# --- site file --------------------------------------------------------------------------------


def demo_site(
    example: dict[str, Any], mqtt_port: int, bus_ports: Mapping[str, int], ocpp_port: int
) -> dict[str, Any]:
    """The example site with its broker, TCP buses and OCPP central system on local ports (and
    the reference station's charger when it has none); the collector logs in with its site id,
    as the broker's ACL wants."""
    site = dict(example)
    buses = []
    for bus in example["buses"]:
        if bus.get("type") not in ("tcp", "rtu_over_tcp"):
            raise DemoError(
                f"bus {bus.get('id')!r} is {bus.get('type')}: the demo simulates TCP buses only"
            )
        buses.append({**bus, "host": "127.0.0.1", "port": bus_ports[bus["id"]]})
    site["buses"] = buses
    site["mqtt"] = {
        **example.get("mqtt", {}),
        "host": "127.0.0.1",
        "port": mqtt_port,
        "username": example["site"]["id"],
    }
    sockets = [m["id"] for m in example["meters"] if m.get("role") == "socket"]
    site["ocpp"] = {**example.get("ocpp", {}), "listen": f"127.0.0.1:{ocpp_port}"}
    if not example.get("chargers") and sockets:
        # The reference station: one charger, a Type 2 and a domestic socket per point.
        connectors = {2 * i + n: point for i, point in enumerate(sockets) for n in (1, 2)}
        # Its password in the run folder's site file: random, gone with the folder.
        site["chargers"] = [
            {"id": DEMO_CHARGER, "password": random_secret(), "connectors": connectors}
        ]
    return site


def demo_badges(site: SiteConfig) -> dict[str, tuple[str, str]]:
    """Socket -> (badge, room): what the front desk gave the guest charging there."""
    sockets = [m.id for m in site.meters if m.socket is not None]
    return {point: (f"04A1B2{0xC3 + i:02X}", str(12 + 2 * i)) for i, point in enumerate(sockets)}


def badge_list(site: SiteConfig, now: datetime) -> bytes:
    """The retained `irve/{site}/badges` message of the front desk, valid two days."""
    until = format_ts(now + timedelta(days=2))
    badges = [
        {"badge": badge, "room": room, "until": until} for badge, room in demo_badges(site).values()
    ]
    return json.dumps({"ts": format_ts(now), "badges": badges}).encode()


def default_simulate_args(site: SiteConfig) -> list[str]:
    """A guest's car on each socket, badged with its room: on the first for hours, on the
    others for a minute (a session that ends while you watch)."""
    args: list[str] = []
    for i, (point, (badge, _)) in enumerate(demo_badges(site).items()):
        args += [
            "--badge",
            f"{point}={badge}",
            "--scenario",
            f"plug:{point}:{240 if i == 0 else 1}",
        ]
    return args


def write_site(source: Path, run_dir: Path, mqtt_port: int) -> tuple[Path, SiteConfig]:
    try:
        example = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"{source}: {exc}") from None
    ports = {bus["id"]: free_port() for bus in example.get("buses", [])}
    path = run_dir / "site.yaml"
    header = f"# Generated by `make demo` from {source}: local ports.\n"
    data = demo_site(example, mqtt_port, ports, free_port())
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    try:
        site = load(SiteConfig, str(path))
    except ConfigError as exc:
        raise DemoError(f"{source}: " + "; ".join(exc.problems)) from None
    return path, site


# --- the run ----------------------------------------------------------------------------------


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


class Viewer:
    """MQTT subscriber feeding the board, as the `homeassistant` user (which reads irve/#).

    Not `building`: the broker gives each connection its username as client id, so a
    `mosquitto_sub -u building` of the user's (the footer suggests it) would replace ours."""

    def __init__(self, board: Board, port: int, password: str) -> None:
        settings = board.site.mqtt.model_copy(
            update={"port": port, "username": "homeassistant", "password": SecretStr(password)}
        )
        self.client = new_client(settings, "homeassistant", protocol="3.1.1")
        base = f"{board.prefix}/{board.site.site.id}"
        topics = [
            f"{base}/status",
            f"{base}/alert",
            f"{base}/shed",
            f"{base}/+/limit",
            f"{base}/+/state",
            f"{base}/+/availability",
            f"{base}/+/session",
            f"{base}/+/connector",
        ]

        def on_connect(client: mqtt.Client, *_: object) -> None:
            client.subscribe([(topic, 1) for topic in topics])

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            board.on_message(msg.topic, bytes(msg.payload))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_badges(site: SiteConfig, port: int, password: str) -> None:
    """The front desk's retained badge list, as `irve desk` publishes it (user `desk`)."""
    settings = site.mqtt.model_copy(
        update={"port": port, "username": "desk", "password": SecretStr(password)}
    )
    client = new_client(settings, "desk", protocol="3.1.1")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        topic = f"{site.mqtt.topic_prefix}/{site.site.id}/badges"
        info = client.publish(topic, badge_list(site, datetime.now(UTC)), qos=1, retain=True)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise DemoError(f"the badge list could not be published on {topic}")
        say(f"badge list published on {topic}: {len(demo_badges(site))} guests' badges")
    finally:
        client.disconnect()
        client.loop_stop()


class Demo:
    def __init__(self, opts: Options, programs: Mapping[str, str], run_dir: Path) -> None:
        self.opts = opts
        self.programs = programs
        self.run_dir = run_dir
        self.servers: list[Server] = []
        self.viewer: Viewer | None = None
        self.passwords = {
            user: random_secret()
            for user in ("collector", "ingestor", "building", "homeassistant", "desk")
        }
        self.mqtt_port = free_port()
        self.influx_port = free_port()
        self.ingest_port = free_port()

    def _start(self, *servers: Server, timeout: float = 30.0) -> None:
        """Spawn `servers` together (each irve process spends seconds importing), then wait
        for each to be ready."""
        for server in servers:
            say(f"starting {server.name} (log {server.log_path})")
            self.servers.append(server)
            server.spawn()
        for server in servers:
            server.wait_ready(timeout)

    def _irve(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "collector", *args]

    def _env(self, **extra: str) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH", "")
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), path) if p),
            "IRVE_STATE_DIR": str(self.run_dir / "state"),
            **extra,
        }

    def start(self) -> Board:
        site_path, site = write_site(self.opts.site, self.run_dir, self.mqtt_port)
        board = Board(site)
        site_id = site.site.id
        users = {
            site_id: self.passwords["collector"],
            "ingestor": self.passwords["ingestor"],
            "building": self.passwords["building"],
            "homeassistant": self.passwords["homeassistant"],
            "desk": self.passwords["desk"],
        }
        conf = local_broker.prepare(self.run_dir / "mosquitto", self.mqtt_port, users)
        influx_conf = local_influxd.prepare(
            self.run_dir / "influxdb", self.influx_port, free_port()
        )
        mqtt_port, influx_port, ingest_port = self.mqtt_port, self.influx_port, self.ingest_port
        self._start(
            Server(
                "mosquitto",
                [self.programs["mosquitto"], "-c", str(conf)],
                mqtt_port,
                self.run_dir,
                lambda: port_open(mqtt_port),
                detached=True,
            ),
            Server(
                "influxd",
                [self.programs["influxd"], "-config", str(influx_conf)],
                influx_port,
                self.run_dir,
                lambda: http_ok(f"http://127.0.0.1:{influx_port}/ping"),
                detached=True,
            ),
        )
        InfluxQL(self.influx_url, DATABASE).query(f"CREATE DATABASE {DATABASE}")
        self.viewer = Viewer(board, mqtt_port, self.passwords["homeassistant"])
        if site.chargers:
            publish_badges(site, mqtt_port, self.passwords["desk"])

        bus_ports = [bus.port for bus in site.buses if isinstance(bus, TcpBus)]
        simulate_args = self.opts.simulate_args
        if simulate_args is None:
            simulate_args = default_simulate_args(site)
        self._start(
            Server(
                "simulator",
                self._irve("simulate", "-c", str(site_path), *simulate_args),
                bus_ports[0],
                self.run_dir,
                lambda: all(port_open(port) for port in bus_ports),
                env=self._env(),
                detached=True,
            ),
            Server(
                "ingestor",
                self._irve("ingest"),
                ingest_port,
                self.run_dir,
                lambda: http_ok(f"http://127.0.0.1:{ingest_port}/healthz"),
                env=self._env(
                    IRVE_MQTT__HOST="127.0.0.1",
                    IRVE_MQTT__PORT=str(mqtt_port),
                    IRVE_MQTT__USERNAME="ingestor",
                    IRVE_MQTT__PASSWORD=self.passwords["ingestor"],
                    IRVE_MQTT__TOPIC_PREFIX=site.mqtt.topic_prefix,
                    IRVE_INFLUX__URL=self.influx_url,
                    IRVE_INFLUX__API_VERSION="1",
                    IRVE_INFLUX__DATABASE=DATABASE,
                    IRVE_INGEST__HTTP_HOST="127.0.0.1",
                    IRVE_INGEST__HTTP_PORT=str(ingest_port),
                ),
                detached=True,
            ),
        )
        self._start(
            Server(
                "collector",
                self._irve("collect", "-c", str(site_path)),
                mqtt_port,
                self.run_dir,
                lambda: board.collector_status == "online",
                env=self._env(IRVE_MQTT__PASSWORD=self.passwords["collector"]),
                detached=True,
            )
        )
        return board

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx_port}"

    def footer(self) -> list[str]:
        building = self.passwords["building"]
        return [
            f"InfluxDB  {self.influx_url}  database {DATABASE}",
            f"MQTT      127.0.0.1:{self.mqtt_port}  read-only user building, password {building}",
            f"watch     cd {REPO} && {sys.executable} -m scripts.watch -p {self.mqtt_port} "
            f"-u building -P {building} -t 'irve/#'",
            f"logs      {self.run_dir}/*.log",
        ]

    def stop(self) -> None:
        """Collector first (it publishes `offline`), broker last."""
        if self.viewer is not None:
            self.viewer.close()
        for server in reversed(self.servers):
            if server.process is not None:
                say(f"stopping {server.name}")
                server.stop(timeout=15)
        self.servers.clear()


def refresh_totals(demo: Demo, board: Board) -> None:
    energy_q, readings_q = totals_queries(board.site, datetime.now(UTC))
    db = InfluxQL(demo.influx_url, DATABASE, timeout_s=2.0)
    try:
        board.on_totals(db.query(energy_q), db.query(readings_q))
    except InfluxQLError as exc:
        say(f"InfluxDB: {exc}")


def live(demo: Demo, board: Board, seconds: float | None) -> None:
    """Redraw the table until the deadline (or Ctrl-C, which raises Interrupted)."""
    tty = sys.stdout.isatty()
    refresh = TTY_REFRESH_S if tty else LOG_REFRESH_S
    deadline = None if seconds is None else time.monotonic() + seconds
    next_totals = 0.0
    for line in demo.footer():
        say(line)
    say("live readings; Ctrl-C stops" + (f" (or after {seconds:g} s)" if seconds else ""))
    while deadline is None or time.monotonic() < deadline:
        if time.monotonic() >= next_totals:
            refresh_totals(demo, board)
            next_totals = time.monotonic() + TOTALS_EVERY_S
        frame = render(board, datetime.now(UTC), demo.footer())
        print(("\x1b[H\x1b[2J" if tty else "\n") + frame, flush=True)
        remaining = refresh if deadline is None else min(refresh, deadline - time.monotonic())
        time.sleep(max(0.0, remaining))
    refresh_totals(demo, board)
    if not tty:
        print("\n" + render(board, datetime.now(UTC), []), flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main() -> int:
    try:
        opts = options(os.environ)
        programs = ensure_programs(opts.install)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # during apt-get: nothing of ours is running yet
        return 130
    run_dir = opts.run_dir or Path(tempfile.mkdtemp(prefix="irve-demo-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    demo = Demo(opts, programs, run_dir)
    status = 0
    try:
        board = demo.start()
        live(demo, board, opts.seconds)
    except Interrupted as exc:
        say(f"{exc}: stopping")
    except (DemoError, RuntimeError, TimeoutError, InfluxQLError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        status = 1
    finally:
        # Stopping takes a few seconds; a second Ctrl-C must not leave half of it running.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if opts.run_dir is None and not opts.keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"run folder kept: {run_dir} (logs: {run_dir}/*.log)")
    say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
