"""What the ingestor refuses beyond the message models: out-of-range numbers and times, numeric
timestamps, an energy window that ends before it starts, keys and strings InfluxDB would refuse
or store unreadable. Each is a Rejected with a reason naming the field (never an exception
of another kind), and what the collector itself publishes still passes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from collector.energy.intervals import Window
from collector.energy.sessions import Session
from collector.ingest.payloads import Rejected, decode

TS = "2026-11-23T10:15:02.123Z"
STATE: dict[str, Any] = {
    "ts": TS,
    "power_w": 7200,
    "current_a": 31.5,
    "voltage_v": 231,
    "energy_wh": 123456,
}
ENERGY: dict[str, Any] = {
    "start": "2026-11-23T10:15:00.000Z",
    "end": "2026-11-23T10:30:00.000Z",
    "energy_wh": 250,
    "period": "HC",
    "price_eur_kwh": 0.1635,
    "cost_eur": 0.040875,
    "index_start_wh": 1000,
    "index_end_wh": 1250,
}
SESSION: dict[str, Any] = {
    "event": "end",
    "session_id": "s-1",
    "ts": "2026-11-23T12:15:02.123Z",
    "badge": "room 12",
    "energy_wh": 5000,
    "cost_eur": 1.2,
    "duration_s": 7200,
    "max_power_w": 7000,
}
EVENT: dict[str, Any] = {"ts": TS, "event": "index_reset", "message": "m", "details": {}}
ALERT: dict[str, Any] = {
    "ts": TS,
    "alert": "site_overload",
    "state": "firing",
    "point": "main",
    "value": 37000,
    "limit": 36000,
    "message": "over 36 kVA",
}
TOPICS = {
    "state": "irve/h/cp1/state",
    "energy": "irve/h/cp1/energy",
    "session": "irve/h/cp1/session",
    "event": "irve/h/cp1/event",
    "alert": "irve/h/alert",
}
BASES = {"state": STATE, "energy": ENERGY, "session": SESSION, "event": EVENT, "alert": ALERT}


def reason_for(kind: str, **changes: Any) -> str:
    body = dict(BASES[kind], **changes)
    with pytest.raises(Rejected) as info:
        decode("irve", TOPICS[kind], json.dumps(body).encode(), 0)
    assert info.value.site == "h" and info.value.kind == kind
    return info.value.reason


def accepted(kind: str, **changes: Any) -> str | None:
    body = dict(BASES[kind], **changes)
    return decode("irve", TOPICS[kind], json.dumps(body).encode(), 0).line


REFUSED = [
    # Times InfluxDB cannot store, or that overflowed Python's datetime (OverflowError).
    ("state", {"ts": "0001-01-01T00:00:00+14:00"}, "ts: "),
    ("state", {"ts": "9999-12-31T23:59:59-12:00"}, "ts: "),
    ("state", {"ts": "1500-01-01T00:00:00Z"}, "outside what InfluxDB can store"),
    ("energy", {"end": "2300-01-01T00:00:00Z"}, "end: "),
    ("session", {"start": "0001-01-01T00:00:00+14:00"}, "start: "),
    ("session", {"duration_s": 1e300}, "duration_s: 1e+300 s is outside"),
    ("session", {"duration_s": 400 * 86400}, "duration_s"),
    # Numeric timestamps: the SPEC's wire format is ISO 8601.
    ("state", {"ts": 1795428902}, "ts: Value error, timestamp must be an ISO 8601 string"),
    ("state", {"ts": 1795428902.5}, "not a number"),
    ("state", {"ts": "1795428902"}, "ts: Value error, timestamp must be ISO 8601"),
    ("alert", {"ts": 0}, "ts: "),
    # Numbers no site can produce.
    ("state", {"power_w": 1e300}, "power_w: 1e+300 W is outside"),
    ("state", {"current_a": -1e9}, "current_a"),
    ("state", {"voltage_v": -230}, "voltage_v"),
    ("state", {"energy_wh": 1e20}, "energy_wh"),
    ("state", {"power_factor": 7}, "power_factor"),
    ("state", {"frequency_hz": 1e6}, "frequency_hz"),
    ("state", {"currents_a": [1, 2, 1e99]}, "currents_a.2"),
    ("state", {"voltages_v": [230] * 4}, "at most 3 phases"),
    ("state", {"rated_current_a": 1e9}, "rated_current_a"),
    ("state", {"limit_w": 1e300}, "limit_w"),
    ("state", {"warning_w": 1e300}, "warning_w"),
    ("energy", {"end": "2026-11-23T10:00:00.000Z"}, "end: 2026-11-23T10:00:00+00:00 is before"),
    ("energy", {"energy_wh": 1e12, "cost_eur": 1.635e8}, "energy_wh: 1e+12 Wh in 900 s"),
    ("energy", {"price_eur_kwh": 1e6, "cost_eur": 2.5e5}, "price_eur_kwh"),
    ("energy", {"cost_eur": 1e300}, "cost_eur: 1e+300 EUR is not energy x price"),
    ("energy", {"cost_eur": 0.05}, "cost_eur"),
    ("energy", {"index_end_wh": 1e300}, "index_end_wh"),
    ("session", {"energy_wh": 1e12}, "energy_wh"),
    ("session", {"cost_eur": 1e12}, "cost_eur"),
    ("session", {"max_power_w": 1e300}, "max_power_w"),
    ("session", {"start": "2026-11-23T13:00:00Z"}, "start: 2026-11-23T13:00:00+00:00 is after ts"),
    ("session", {"periods": {"HP": {"energy_wh": 1e15, "cost_eur": 0}}}, "periods.HP.energy_wh"),
    ("alert", {"value": 1e300}, "value"),
    ("event", {"details": {"x": 1e300}}, "details.x"),
    # Keys and strings InfluxDB refuses, hides or stores unreadable.
    ("event", {"details": {"": 1}}, "details: empty key"),
    ("event", {"details": {"time": 1}}, "details: key 'time' is reserved"),
    ("event", {"details": {"_field": 1}}, "reserved"),
    ("event", {"details": {"a\x00b": 1}}, "control character"),
    ("event", {"details": {"k" * 65: 1}}, "longer than 64"),
    ("event", {"message": "a\x00b"}, "message: contains a NUL character"),
    ("event", {"event": "a\x00"}, "event: contains a NUL"),
    ("session", {"badge": "04\x00A1"}, "badge: contains a NUL"),
    ("session", {"session_id": "s\x00"}, "session_id"),
    ("alert", {"point": "main\x00"}, "point"),
    ("alert", {"message": "\x00"}, "message"),
]


@pytest.mark.parametrize(("kind", "changes", "reason"), REFUSED)
def test_refused_with_a_reason(kind: str, changes: dict[str, Any], reason: str) -> None:
    assert reason in reason_for(kind, **changes)


def test_plausible_edges_are_accepted() -> None:
    assert accepted("state", power_factor=-1.05, power_w=-5000, current_a=-20) is not None
    assert accepted("state", ts="2026-11-23 10:15:02+01:00") is not None
    assert accepted("state", energy_wh=4.29e12, currents_a=[1, None, 3]) is not None
    # A window with no duration, and one into which a 1 kWh index step lands.
    assert accepted("energy", end=ENERGY["start"], energy_wh=0, cost_eur=0) is not None
    assert accepted("energy", energy_wh=1000, cost_eur=0.1635) is not None
    assert accepted("session", event="start", duration_s=0, energy_wh=0, cost_eur=0) is not None
    assert accepted("event", details={"message": 1, "wrapped": True, "text": "\x00"}) is not None


def test_what_the_collector_publishes_passes() -> None:
    start = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    window = Window(
        start, start + timedelta(seconds=60), "HP", Decimal("0.2516"), energy_wh=123.456789
    )
    body = window.message(index_end_wh=1123.5).to_json()
    assert decode("irve", "irve/h/cp1/energy", body, 0).line is not None
    session = Session("cp1-x", start, badge="04A1", max_power_w=7400)
    for event, ts in (("start", start), ("end", start + timedelta(hours=30))):
        body = session.message(event, ts).to_json()
        assert decode("irve", "irve/h/cp1/session", body, 0).line is not None
