"""`irve ingest` end to end: real mosquitto -> ingestor -> real influxd 1.6.7 (API 1) and
victoria-metrics (API 2 through influxdb-client). Every SPEC measurement must land with the
right tags, fields, field types and timestamps.

The helpers shared with the other ingest tests are in tests/support/ingest_helpers.py.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import servers
from tests.support.influx_db import count, create_database, rows
from tests.support.ingest_helpers import (
    BASE_MS,
    SITE,
    config,
    iso,
    publisher,
    running,
    spawn,
    state,
    subprocess_env,
)

pytestmark = [pytest.mark.broker, pytest.mark.influx]


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
