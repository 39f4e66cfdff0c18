"""`irve ingest` end to end: real mosquitto -> ingestor -> real influxd 1.6.7 (API 1) and
victoria-metrics (API 2 through influxdb-client). Every SPEC measurement must land with the
right tags, fields, field types and timestamps.

The helpers here are shared by the other test_ingest_* modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import IngestorConfig
from collector.ingest.service import Ingestor
from tests.support import servers

pytestmark = [pytest.mark.broker, pytest.mark.influx]


REPO = Path(__file__).resolve().parents[2]
SITE = "hotel-e2e"
BASE_MS = 1_795_428_902_123  # 2026-11-23T10:15:02.123Z


def iso(millis: int) -> str:
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def state(i: int, **extra: Any) -> bytes:
    """The i-th reading of a stream: a distinct timestamp per message, so counts are exact."""
    body = {
        "ts": iso(BASE_MS + i),
        "power_w": float(i),
        "current_a": 1.5,
        "voltage_v": 230,
        "energy_wh": 1000 + i,
    }
    body.update(extra)
    return json.dumps(body).encode()


def config(
    broker: servers.Server,
    db: servers.Server,
    api: str,
    *,
    client_id: str = "ingest-test",
    **ingest: Any,
) -> IngestorConfig:
    influx: dict[str, Any] = {"url": f"http://127.0.0.1:{db.port}", "api_version": api}
    if api == "2":
        influx["token"] = "unused-by-victoria"
    settings = {"client_id": client_id, "http_host": "127.0.0.1", "http_port": 0, **ingest}
    return IngestorConfig(
        mqtt={"host": "127.0.0.1", "port": broker.port},
        influx=influx,
        ingest=settings,
    )


@contextmanager
def running(cfg: IngestorConfig) -> Iterator[Ingestor]:
    ingestor = Ingestor(cfg)
    ingestor.start()
    try:
        servers.wait_until(lambda: ingestor.metrics.broker_connected, 10, "ingestor connected")
        time.sleep(0.2)  # let the SUBACK in before anything is published
        yield ingestor
    finally:
        ingestor.stop()


def subprocess_env(cfg: IngestorConfig) -> dict[str, str]:
    """The same settings as environment variables, the way a container gets them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    env.update(
        {
            "IRVE_MQTT__HOST": cfg.mqtt.host,
            "IRVE_MQTT__PORT": str(cfg.mqtt.port),
            "IRVE_INFLUX__URL": cfg.influx.url,
            "IRVE_INFLUX__API_VERSION": cfg.influx.api_version,
            "IRVE_INGEST__CLIENT_ID": cfg.ingest.client_id or "irve-ingest",
            "IRVE_INGEST__HTTP_HOST": "127.0.0.1",
            "IRVE_INGEST__HTTP_PORT": str(servers.free_port()),
            "IRVE_INGEST__FLUSH_INTERVAL_S": str(cfg.ingest.flush_interval_s),
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "collector", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


class Publisher:
    """A QoS 1 publisher with a persistent session, so it rides out a broker restart."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(200)
        # PUBACKs by packet id: `MQTTMessageInfo.is_published` raises for a message published
        # while disconnected, which paho still holds and sends after reconnecting.
        self.sent: set[int] = set()
        self.acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect("127.0.0.1", port, clean_start=False)
        self.client.loop_start()
        servers.wait_until(self.client.is_connected, 10, "publisher connected")

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.sent.add(info.mid)

    def wait(self, timeout: float = 30) -> None:
        servers.wait_until(lambda: self.acked >= self.sent, timeout, "all PUBACKs")

    def close(self) -> None:
        self.wait()
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def publisher(port: int, client_id: str = "test-publisher") -> Iterator[Publisher]:
    pub = Publisher(port, client_id)
    try:
        yield pub
    finally:
        pub.close()


def influx_query(db: servers.Server, query: str) -> list[dict[str, Any]]:
    """InfluxQL over /query (epoch ms); the statement's series, [] when none."""
    url = f"http://127.0.0.1:{db.port}/query?" + urllib.parse.urlencode(
        {"db": "irve", "q": query, "epoch": "ms"}
    )
    with urllib.request.urlopen(url, data=b"", timeout=5) as response:
        result = json.load(response)["results"][0]
    if "error" in result:
        raise AssertionError(result["error"])
    return list(result.get("series", []))


def create_database(db: servers.Server) -> None:
    influx_query(db, "CREATE DATABASE irve")


def rows(db: servers.Server, query: str) -> list[dict[str, Any]]:
    """Each returned row as a dict of column -> value (tags of GROUP BY included)."""
    out = []
    for series in influx_query(db, query):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags", {}))
            out.append(row)
    return out


def count(db: servers.Server, measurement: str = "reading", field: str = "power_w") -> int:
    try:
        found = rows(db, f'SELECT COUNT("{field}") FROM "{measurement}"')
    except OSError:
        return -1  # influxd is down or restarting
    return int(found[0]["count"]) if found else 0


def field_types(db: servers.Server, measurement: str) -> dict[str, str]:
    return {
        row["fieldKey"]: row["fieldType"]
        for row in rows(db, f'SHOW FIELD KEYS FROM "{measurement}"')
    }


def vm_export(db: servers.Server, name_regex: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{db.port}/api/v1/export?" + urllib.parse.urlencode(
        {"match[]": f'{{__name__=~"{name_regex}"}}'}
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        return [json.loads(line) for line in response.read().splitlines() if line.strip()]


# --- the SPEC measurements -----------------------------------------------------------------

T0 = BASE_MS
MESSAGES: list[tuple[str, dict[str, Any] | str]] = [
    (
        f"irve/{SITE}/cp1/state",
        {
            "ts": iso(T0),
            "power_w": 7200,
            "current_a": 31.5,
            "voltage_v": 231,
            "energy_wh": 123456,
            "currents_a": [31.5, 30, 29],
            "voltages_v": [231, 232, 230],
            "power_factor": 0.98,
            "frequency_hz": 50,
            "charging": True,
        },
    ),
    (
        f"irve/{SITE}/main/state",
        {
            "ts": iso(T0 + 1),
            "power_w": 12000,
            "current_a": 20,
            "voltage_v": 230,
            "energy_wh": 9e6,
            "role": "main",
        },
    ),
    (
        f"irve/{SITE}/cp1/energy",
        {
            "start": iso(T0 + 2),
            "end": iso(T0 + 900_002),
            "energy_wh": 250,
            "period": "HC",
            "price_eur_kwh": 0.1635,
            "cost_eur": 0.040875,
            "index_start_wh": 1000,
            "index_end_wh": 1250,
        },
    ),
    (
        f"irve/{SITE}/cp1/session",
        {
            "event": "end",
            "session_id": "s-42",
            "ts": iso(T0 + 7_200_003),
            "start": iso(T0 + 3),
            "badge": "room 12",
            "energy_wh": 5000,
            "cost_eur": 1,
            "duration_s": 7200,
            "max_power_w": 7000,
        },
    ),
    (
        f"irve/{SITE}/alert",
        {
            "ts": iso(T0 + 4),
            "alert": "site_overload",
            "state": "firing",
            "point": "main",
            "value": 37000,
            "limit": 36000,
            "message": "over 36 kVA",
        },
    ),
    (
        f"irve/{SITE}/cp1/event",
        {
            "ts": iso(T0 + 5),
            "event": "index_reset",
            "message": "index went back",
            "details": {"from_wh": 100, "to_wh": 5},
        },
    ),
    (f"irve/{SITE}/cp1/availability", "offline"),
]


def publish_spec_messages(broker: servers.Server) -> None:
    with publisher(broker.port) as pub:
        for topic, body in MESSAGES:
            pub.publish(topic, body if isinstance(body, str) else json.dumps(body))


def test_api1_influxd_every_measurement(broker: servers.Server, influx: servers.Server) -> None:
    create_database(influx)
    with running(config(broker, influx, "1", flush_interval_s=0.1)) as ingestor:
        publish_spec_messages(broker)
        servers.wait_until(
            lambda: ingestor.writer.stats.points_written >= len(MESSAGES), 15, "points"
        )

    readings = {r["point"]: r for r in rows(influx, "SELECT * FROM reading GROUP BY *")}
    assert readings["cp1"]["time"] == T0
    assert readings["cp1"]["role"] == "socket" and readings["cp1"]["site"] == SITE
    assert readings["cp1"]["current_l3_a"] == 29 and readings["cp1"]["voltage_l2_v"] == 232
    assert readings["cp1"]["charging"] == 1 and readings["cp1"]["power_factor"] == 0.98
    assert readings["main"]["role"] == "main" and readings["main"]["time"] == T0 + 1
    assert set(field_types(influx, "reading").values()) == {"float"}

    (energy,) = rows(influx, "SELECT * FROM energy GROUP BY *")
    assert (energy["time"], energy["period"], energy["point"]) == (T0 + 2, "HC", "cp1")
    assert (energy["energy_wh"], energy["cost_eur"], energy["price_eur_kwh"]) == (
        250,
        0.040875,
        0.1635,
    )
    assert set(field_types(influx, "energy").values()) == {"float"}

    (session,) = rows(influx, "SELECT * FROM session GROUP BY *")
    assert (session["time"], session["badge"], session["session_id"]) == (T0 + 3, "room 12", "s-42")
    assert (session["energy_wh"], session["cost_eur"], session["duration_s"]) == (5000, 1, 7200)
    types = field_types(influx, "session")
    assert types.pop("session_id") == "string" and types.pop("event") == "string"
    assert set(types.values()) == {"float"}

    (alert,) = rows(influx, "SELECT * FROM alert GROUP BY *")
    assert (alert["time"], alert["alert"], alert["point"], alert["state"]) == (
        T0 + 4,
        "site_overload",
        "main",
        "firing",
    )
    assert (alert["value"], alert["limit"]) == (37000, 36000)
    assert field_types(influx, "alert") == {
        "state": "string",
        "value": "float",
        "limit": "float",
        "message": "string",
    }

    (event,) = rows(influx, "SELECT * FROM event GROUP BY *")
    assert (event["time"], event["event"], event["from_wh"]) == (T0 + 5, "index_reset", 100)
    assert field_types(influx, "event")["to_wh"] == "float"

    (avail,) = rows(influx, "SELECT * FROM availability GROUP BY *")
    assert avail["online"] == 0 and avail["point"] == "cp1"
    assert abs(avail["time"] - time.time() * 1000) < 60_000  # received time


def test_api2_victoria_every_measurement(broker: servers.Server, victoria: servers.Server) -> None:
    with running(config(broker, victoria, "2", flush_interval_s=0.1)) as ingestor:
        publish_spec_messages(broker)
        servers.wait_until(
            lambda: ingestor.writer.stats.points_written >= len(MESSAGES), 15, "points"
        )
    # VictoriaMetrics keeps numeric fields only, as `{measurement}_{field}` series with the
    # tags as labels; string fields (session_id, alert state, messages) are not stored, so
    # they are checked on influxd above and not here.
    exported: list[dict[str, Any]] = []

    def exported_all() -> bool:
        exported[:] = vm_export(victoria, "(reading|energy|session|alert|event|availability)_.*")
        return len({e["metric"]["__name__"] for e in exported}) >= 20

    servers.wait_until(exported_all, 15, "series in victoria-metrics")
    series = {(e["metric"]["__name__"], e["metric"].get("point")): e for e in exported}

    cp1 = series[("reading_power_w", "cp1")]
    assert cp1["metric"] == {
        "__name__": "reading_power_w",
        "site": SITE,
        "point": "cp1",
        "role": "socket",
    }
    assert (cp1["values"], cp1["timestamps"]) == ([7200], [T0])
    assert series[("reading_current_l2_a", "cp1")]["values"] == [30]
    assert series[("reading_power_w", "main")]["metric"]["role"] == "main"

    energy = series[("energy_cost_eur", "cp1")]
    assert energy["metric"]["period"] == "HC"
    assert (energy["values"], energy["timestamps"]) == ([0.040875], [T0 + 2])

    session = series[("session_energy_wh", "cp1")]
    assert session["metric"]["badge"] == "room 12"
    assert (session["values"], session["timestamps"]) == ([5000], [T0 + 3])

    alert = series[("alert_value", "main")]
    assert alert["metric"]["alert"] == "site_overload"
    assert (alert["values"], alert["timestamps"]) == ([37000], [T0 + 4])

    event = series[("event_from_wh", "cp1")]
    assert event["metric"]["event"] == "index_reset" and event["timestamps"] == [T0 + 5]
    assert series[("availability_online", "cp1")]["values"] == [0]


def test_subprocess_health_metrics_and_sigterm(
    broker: servers.Server, influx: servers.Server, tmp_path: Path
) -> None:
    """`python -m collector ingest` from environment only; /healthz, /metrics; SIGTERM
    flushes and acknowledges (nothing is redelivered to the next run)."""
    create_database(influx)
    cfg = config(broker, influx, "1", flush_interval_s=5)
    env = subprocess_env(cfg)
    status = f"http://127.0.0.1:{env['IRVE_INGEST__HTTP_PORT']}"
    proc = spawn(env, tmp_path / "ingest.log")
    try:
        servers.wait_until(lambda: servers.http_ok(f"{status}/healthz"), 15, "healthz 200")
        with publisher(broker.port) as pub:
            for i in range(50):
                pub.publish(f"irve/{SITE}/cp1/state", state(i))
        time.sleep(0.5)
        # The batch waits for its 5 s age: nothing written yet; SIGTERM must flush it.
        assert count(influx) == 0
        metrics = urllib.request.urlopen(f"{status}/metrics", timeout=5).read().decode()
        assert 'irve_ingest_messages_total{kind="state"} 50' in metrics
        assert "irve_ingest_backlog 50" in metrics
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert count(influx) == 50
        # Everything was acknowledged: a new run gets nothing back from the session.
        proc = spawn(env, tmp_path / "ingest.log")
        servers.wait_until(lambda: servers.http_ok(f"{status}/healthz"), 15, "healthz 200")
        time.sleep(1.0)
        metrics = urllib.request.urlopen(f"{status}/metrics", timeout=5).read().decode()
        assert 'irve_ingest_messages_total{kind="state"}' not in metrics
        influx.stop()
        try:
            urllib.request.urlopen(f"{status}/healthz", timeout=5)
            raise AssertionError("healthz should fail without the database")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            assert json.load(exc)["database"] is False
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert "Traceback" not in (tmp_path / "ingest.log").read_text()


def stream(pub: Publisher, n: int, rate: float, start: int = 0, point: str = "cp1") -> None:
    """Publish readings start..start+n-1 at about `rate` per second."""
    began = time.monotonic()
    for i in range(start, start + n):
        pub.publish(f"irve/{SITE}/{point}/state", state(i))
        ahead = (i - start + 1) / rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)


def in_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
