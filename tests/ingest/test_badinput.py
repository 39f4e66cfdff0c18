"""Malformed input never stops the ingestor: each bad message is counted, republished on
`irve/{site}/deadletter` with its reason, acknowledged, and the good messages after it are
still written. A point the database refuses (field type conflict) is dead-lettered alone."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from collector.ingest.payloads import Rejected, decode
from collector.ingest.service import Ingestor
from collector.wire.messages import MAX_PAYLOAD_BYTES
from tests.support import servers
from tests.support.influx_db import count, create_database, rows
from tests.support.ingest_helpers import BASE_MS, SITE, config, iso, publisher, running, state

pytestmark = [pytest.mark.broker, pytest.mark.influx]


CORPUS: list[tuple[str, bytes]] = [
    (f"irve/{SITE}/cp1/state", b"not json"),
    (f"irve/{SITE}/cp1/state", b"\xff\xfe\x00garbage"),
    (f"irve/{SITE}/cp1/state", b""),
    (f"irve/{SITE}/cp1/state", b"[1, 2, 3]"),
    (f"irve/{SITE}/cp1/state", b'{"ts": "yesterday", "power_w": 1}'),
    (f"irve/{SITE}/cp1/state", b'{"ts": "2026-11-23T10:15:02Z", "power_w": "high"}'),
    (
        f"irve/{SITE}/cp1/state",
        b'{"ts": "2026-11-23T10:15:02Z", "power_w": NaN, "current_a": 1, "voltage_v": 1,'
        b' "energy_wh": 1}',
    ),
    (
        f"irve/{SITE}/cp1/state",
        b'{"ts": "2026-11-23T10:15:02Z", "power_w": Infinity, "current_a": 1, "voltage_v": 1,'
        b' "energy_wh": 1}',
    ),
    (f"irve/{SITE}/cp1/state", b'{"ts": "2026-11-23T10:15:02Z"' + b" " * MAX_PAYLOAD_BYTES + b"}"),
    (f"irve/{SITE}/cp1/energy", b'{"start": "2026-11-23T10:15:02Z", "period": "NIGHT"}'),
    (f"irve/{SITE}/cp1/session", b'{"event": "pause", "session_id": ""}'),
    (f"irve/{SITE}/alert", b'{"alert": "fire", "state": "burning"}'),
    (f"irve/{SITE}/cp1/event", b'{"ts": "2026-11-23T10:15:02Z", "event": "", "message": 1}'),
    (f"irve/{SITE}/cp1/availability", b"maybe"),
    ("irve//cp1/state", b"{}"),  # empty site level: unknown topic shape
]


class DeadLetters:
    """Listens to every site's dead letter topic."""

    def __init__(self, port: int) -> None:
        self.letters: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("irve/+/deadletter", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        assert not msg.retain
        with self._lock:
            self.letters.append((msg.topic, json.loads(msg.payload)))

    def __len__(self) -> int:
        with self._lock:
            return len(self.letters)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def stack(
    broker: servers.Server, influx: servers.Server
) -> Iterator[tuple[Ingestor, DeadLetters, servers.Server, servers.Server]]:
    create_database(influx)
    letters = DeadLetters(broker.port)
    with running(config(broker, influx, "1", flush_interval_s=0.1)) as ingestor:
        yield ingestor, letters, broker, influx
    letters.close()


def healthy(ingestor: Ingestor) -> bool:
    url = f"http://127.0.0.1:{ingestor.http.port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


def test_corpus_is_dead_lettered_and_good_messages_still_land(
    stack: tuple[Ingestor, DeadLetters, servers.Server, servers.Server],
) -> None:
    ingestor, letters, broker, influx = stack
    with publisher(broker.port) as pub:
        for i, (topic, payload) in enumerate(CORPUS):
            pub.publish(topic, payload)
            pub.publish(f"irve/{SITE}/cp1/state", state(i))  # a good one after each bad one
    servers.wait_until(lambda: len(letters) == len(CORPUS), 15, "dead letters")
    servers.wait_until(lambda: count(influx) == len(CORPUS), 15, "good points")
    assert sum(ingestor.metrics.dead_letters.values()) == len(CORPUS)
    assert ingestor.metrics.dead_letters["unknown"] == 1
    topic, letter = letters.letters[0]
    assert topic == f"irve/{SITE}/deadletter"
    assert letter["topic"] == f"irve/{SITE}/cp1/state" and "JSON" in letter["reason"]
    assert letter["payload"] == "not json"
    assert ("irve/unknown/deadletter") in {t for t, _ in letters.letters}
    oversized = next(body for _, body in letters.letters if body["payload_bytes"] > 1024)
    assert "exceeds" in oversized["reason"] and len(oversized["payload"]) == 1024
    assert healthy(ingestor)
    metrics = ingestor.metrics_text()
    assert 'irve_ingest_dead_letters_total{kind="state"} 9' in metrics
    # Dead letters are acknowledged: nothing is waiting for the broker to redeliver.
    servers.wait_until(lambda: ingestor.metrics.received == ingestor.metrics.settled, 5, "acks")


payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner),
        max_leaves=10,
    ).map(lambda value: json.dumps(value, allow_nan=True).encode()),
)
topics = st.sampled_from(
    [f"irve/{SITE}/cp1/{kind}" for kind in ("state", "energy", "session", "event", "availability")]
    + [f"irve/{SITE}/alert"]
)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(st.tuples(topics, payloads), min_size=5, max_size=25))
def test_generated_garbage_never_stops_the_stream(
    stack: tuple[Ingestor, DeadLetters, servers.Server, servers.Server],
    batch: list[tuple[str, bytes]],
) -> None:
    ingestor, letters, broker, influx = stack
    # The servers live across examples: compare against what was there before this one.
    letters_before, points_before = len(letters), count(influx)
    bad = 0
    for topic, payload in batch:
        try:
            decode("irve", topic, payload, 0)
        except Rejected:
            bad += 1
    marker = BASE_MS + 10_000 + points_before
    with publisher(broker.port) as pub:
        for topic, payload in batch:
            pub.publish(topic, payload)
        pub.publish(f"irve/{SITE}/marker/state", state(marker - BASE_MS))
    servers.wait_until(lambda: len(letters) == letters_before + bad, 15, f"{bad} dead letters")
    servers.wait_until(
        lambda: any(
            r["time"] == marker
            for r in rows(influx, "SELECT power_w FROM reading WHERE point='marker'")
        ),
        15,
        "the good message after the garbage",
    )
    assert ingestor.writer.stats.points_dropped == 0
    assert healthy(ingestor)


def test_type_conflict_dead_letters_only_the_bad_point(
    stack: tuple[Ingestor, DeadLetters, servers.Server, servers.Server],
) -> None:
    ingestor, letters, broker, influx = stack
    # Someone else wrote `count` as a string into `event` earlier: our float cannot go there.
    request = urllib.request.Request(
        f"http://127.0.0.1:{influx.port}/write?db=irve&precision=ms",
        data=f'event,site={SITE},point=cp9,event=x count="many" {BASE_MS}'.encode(),
    )
    urllib.request.urlopen(request, timeout=5).close()
    ingestor.batcher.max_age_s = 1.0  # so that the three messages share one batch
    refused = json.dumps(
        {"ts": iso(BASE_MS + 2), "event": "wrap", "message": "m", "details": {"count": 3}}
    )
    with publisher(broker.port) as pub:
        pub.publish(f"irve/{SITE}/cp1/state", state(1))
        pub.publish(f"irve/{SITE}/cp1/event", refused)
        pub.publish(f"irve/{SITE}/cp1/state", state(3))
    servers.wait_until(lambda: ingestor.writer.stats.points_dropped == 1, 15, "the dropped point")
    servers.wait_until(lambda: count(influx) == 2, 15, "the good points")
    assert ingestor.metrics.batch_latency.count == 1  # one batch, split inside the writer
    assert ingestor.writer.stats.points_written == 2
    assert "irve_ingest_points_dropped_total 1" in ingestor.metrics_text()
    # Never silently dropped: the message is on its site's dead letter topic with the reason.
    servers.wait_until(lambda: len(letters) == 1, 10, "the dead letter")
    topic, letter = letters.letters[0]
    assert topic == f"irve/{SITE}/deadletter"
    assert letter["topic"] == f"irve/{SITE}/cp1/event" and letter["payload"] == refused
    assert letter["reason"].startswith("refused by the database: HTTP 400")
    assert "field type conflict" in letter["reason"]
    assert ingestor.metrics.dead_letters["event"] == 1
    # All three messages are acknowledged: the refused point will not come back forever.
    servers.wait_until(lambda: ingestor.metrics.received == ingestor.metrics.settled, 5, "acks")


def reading(ts: object, **values: object) -> bytes:
    body = {"ts": ts, "power_w": 1.0, "current_a": 1.0, "voltage_v": 230.0, "energy_wh": 1.0}
    return json.dumps(dict(body, **values)).encode()


ENERGY = {
    "start": iso(BASE_MS),
    "end": iso(BASE_MS + 60_000),
    "energy_wh": 25.0,
    "period": "HC",
    "price_eur_kwh": 0.2,
    "cost_eur": 0.005,
    "index_start_wh": 1000.0,
    "index_end_wh": 1025.0,
}
SESSION = {
    "event": "end",
    "session_id": "s-1",
    "ts": iso(BASE_MS + 3_600_000),
    "badge": "room 12",
    "energy_wh": 5000.0,
    "cost_eur": 1.0,
    "duration_s": 3600.0,
    "max_power_w": 7000.0,
}
EVENT = {"ts": iso(BASE_MS), "event": "index_reset", "message": "m", "details": {"from_wh": 5}}
# (topic kind, payload, what the reason names); none of these may reach the database.
REFUSED: list[tuple[str, bytes, str]] = [
    ("state", reading("0001-01-01T00:00:00+14:00"), "ts: "),
    ("state", reading("9999-12-31T23:59:59-12:00"), "ts: "),
    ("session", json.dumps(dict(SESSION, duration_s=1e300)).encode(), "duration_s"),
    ("state", reading(BASE_MS // 1000), "ISO 8601"),
    ("state", reading(iso(BASE_MS), power_w=1e300), "power_w"),
    ("energy", json.dumps(dict(ENERGY, end=iso(BASE_MS - 60_000))).encode(), "before start"),
    ("energy", json.dumps(dict(ENERGY, energy_wh=1e13, cost_eur=2e9)).encode(), "energy_wh"),
    ("energy", json.dumps(dict(ENERGY, cost_eur=1e300)).encode(), "cost_eur"),
    ("event", json.dumps(dict(EVENT, details={"": 1})).encode(), "empty key"),
    ("event", json.dumps(dict(EVENT, details={"time": 1})).encode(), "reserved"),
    ("event", json.dumps(dict(EVENT, message="a\x00b")).encode(), "NUL"),
    ("session", json.dumps(dict(SESSION, badge="04\x00A1")).encode(), "NUL"),
]


def test_out_of_range_numeric_times_and_bad_keys_are_refused_on_the_site_topic(
    stack: tuple[Ingestor, DeadLetters, servers.Server, servers.Server],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Refused in validation with a reason, on the site's own topic: not an internal error,
    no traceback, nothing of them stored, and the good readings in between all written."""
    ingestor, letters, broker, influx = stack
    caplog.set_level(logging.WARNING)
    with publisher(broker.port) as pub:
        for i, (kind, payload, _) in enumerate(REFUSED):
            pub.publish(f"irve/{SITE}/cp1/{kind}", payload)
            pub.publish(f"irve/{SITE}/cp1/state", state(i))
    servers.wait_until(lambda: len(letters) == len(REFUSED), 15, "dead letters")
    servers.wait_until(lambda: count(influx) == len(REFUSED), 15, "good points")
    for (kind, payload, reason), (topic, letter) in zip(REFUSED, letters.letters, strict=True):
        assert topic == f"irve/{SITE}/deadletter"
        assert letter["topic"] == f"irve/{SITE}/cp1/{kind}"
        assert letter["payload"] == payload.decode()
        assert reason in letter["reason"] and "internal error" not in letter["reason"]
    assert not any(record.exc_info for record in caplog.records)
    assert ingestor.writer.stats.points_dropped == 0
    for measurement, field in (("energy", "energy_wh"), ("session", "duration_s")):
        assert count(influx, measurement, field) == 0
    assert count(influx, "event", "message") == 0
