"""Message -> line protocol mapping and payload validation (pure, no servers)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest.payloads import Decoded, Rejected, decode, site_of, subscriptions
from collector.wire import lines
from collector.wire.messages import MAX_PAYLOAD_BYTES

TS = "2026-11-23T10:15:02.123Z"
TS_MS = 1795428902123


def line_of(topic: str, payload: object, received_ms: int = 0) -> str:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    decoded = decode("irve", topic, raw, received_ms)
    assert decoded.line is not None
    return decoded.line


def test_timestamp_is_exact_milliseconds() -> None:
    assert line_of(
        "irve/h/cp1/state",
        {"ts": TS, "power_w": 1, "current_a": None, "voltage_v": None, "energy_wh": None},
    ).endswith(f" {TS_MS}")


def test_reading_all_fields_floats_and_phases() -> None:
    line = line_of(
        "irve/hotel-vda/cp1/state",
        {
            "ts": TS,
            "power_w": 7200,
            "current_a": 31.5,
            "voltage_v": 231,
            "energy_wh": 123456,
            "currents_a": [31.5, None, 30],
            "voltages_v": [231, 232.5, 230],
            "power_factor": 0.98,
            "frequency_hz": 50,
            "export_energy_wh": 0,
            "charging": True,
        },
    )
    assert line == (
        "reading,site=hotel-vda,point=cp1,role=socket "
        "power_w=7200.0,current_a=31.5,voltage_v=231.0,energy_wh=123456.0,power_factor=0.98,"
        "frequency_hz=50.0,export_energy_wh=0.0,charging=1.0,current_l1_a=31.5,current_l3_a=30.0,"
        "voltage_l1_v=231.0,voltage_l2_v=232.5,voltage_l3_v=230.0 "
        f"{TS_MS}"
    )
    assert "i," not in line and not line.split(" ")[1].endswith("i")


def test_reading_role_main_and_nulls_left_out() -> None:
    line = line_of(
        "irve/h/main/state",
        {
            "ts": TS,
            "power_w": 1.5e-05,
            "current_a": None,
            "voltage_v": None,
            "energy_wh": None,
            "role": "main",
        },
    )
    assert line == f"reading,site=h,point=main,role=main power_w=1.5e-05 {TS_MS}"


def test_reading_without_any_value_is_valid_but_not_written() -> None:
    decoded = decode(
        "irve",
        "irve/h/cp1/state",
        b'{"ts":"2026-11-23T10:15:02.123Z","power_w":null,"current_a":null,'
        b'"voltage_v":null,"energy_wh":null}',
        0,
    )
    assert decoded == Decoded("state", "h", None)


def test_energy_at_interval_start_with_period_tag() -> None:
    line = line_of(
        "irve/h/cp1/energy",
        {
            "start": TS,
            "end": "2026-11-23T10:30:00.000Z",
            "energy_wh": 250,
            "period": "HC",
            "price_eur_kwh": 0.1635,
            "cost_eur": 0.040875,
            "index_start_wh": 1000,
            "index_end_wh": None,
        },
    )
    assert line == (
        "energy,site=h,point=cp1,period=HC energy_wh=250.0,cost_eur=0.040875,"
        f"price_eur_kwh=0.1635,index_start_wh=1000.0,estimated=0.0 {TS_MS}"
    )


SESSION = {
    "event": "end",
    "session_id": "s-1",
    "ts": "2026-11-23T12:15:02.123Z",
    "badge": "room 12",
    "energy_wh": 5000,
    "cost_eur": 1.2,
    "duration_s": 7200,
    "max_power_w": 7000,
}


def test_session_end_lands_on_the_start_time_with_badge_escaped() -> None:
    line = line_of("irve/h/cp1/session", SESSION)
    assert line == (
        "session,site=h,point=cp1,badge=room\\ 12 energy_wh=5000.0,cost_eur=1.2,"
        f'duration_s=7200.0,max_power_w=7000.0,session_id="s-1",event="end" {TS_MS}'
    )


def test_session_explicit_start_periods_and_no_badge() -> None:
    msg = dict(
        SESSION,
        badge=None,
        start="2026-11-23T09:00:00.000Z",
        periods={"HP": {"energy_wh": 1000, "cost_eur": 0.2}},
    )
    line = line_of("irve/h/cp1/session", msg)
    assert line.startswith("session,site=h,point=cp1 ")
    assert "energy_hp_wh=1000.0,cost_hp_eur=0.2," in line
    assert line.endswith(" 1795424400000")


def test_session_start_event_uses_ts() -> None:
    msg = dict(SESSION, event="start", ts=TS, energy_wh=0, duration_s=0, badge="")
    assert line_of("irve/h/cp1/session", msg).endswith(f',event="start" {TS_MS}')


def test_ocpp_session_has_a_room_tag_and_the_charger_fields() -> None:
    msg = dict(SESSION, room="12", source="ocpp", transaction_id=42, charger_energy_wh=4900)
    assert line_of("irve/h/cp1/session", msg) == (
        "session,site=h,point=cp1,badge=room\\ 12,room=12 energy_wh=5000.0,cost_eur=1.2,"
        "duration_s=7200.0,max_power_w=7000.0,charger_energy_wh=4900.0,transaction_id=42.0,"
        f'session_id="s-1",event="end",source="ocpp" {TS_MS}'
    )


def test_connector_status_strings_with_charger_and_connector_tags() -> None:
    msg = {"ts": TS, "charger": "borne-1", "connector": 2, "status": "Charging",
           "error_code": "NoError", "info": None}  # fmt: skip
    assert line_of("irve/h/cp1/connector", msg) == (
        "connector,site=h,point=cp1,charger=borne-1,connector=2 "
        f'status="Charging",error_code="NoError" {TS_MS}'
    )


def test_limits_with_current_and_reason_and_no_current_field_without_a_limit() -> None:
    msg = {"ts": TS, "current_a": 10.8, "reason": "overload", "actuators": {"ocpp": "accepted"}}
    assert line_of("irve/h/cp1/limit", msg) == (
        f'limit,site=h,point=cp1 current_a=10.8,reason="overload" {TS_MS}'
    )
    lifted: dict[str, object] = {"ts": TS, "current_a": None, "reason": "none", "actuators": {}}
    assert line_of("irve/h/cp1/limit", lifted) == f'limit,site=h,point=cp1 reason="none" {TS_MS}'
    with pytest.raises(Rejected, match="reason"):
        decode("irve", "irve/h/cp1/limit", json.dumps({**msg, "reason": "tired"}).encode(), 0)


def test_charger_messages_are_read_and_not_stored() -> None:
    msg = {"ts": TS, "online": True, "vendor": "Legrand", "model": "Green'up",
           "serial": None, "firmware": "1.2", "last_seen": TS}  # fmt: skip
    decoded = decode("irve", "irve/h/chargers/borne-1", json.dumps(msg).encode(), 0)
    assert (decoded.kind, decoded.line) == ("charger", None)
    with pytest.raises(Rejected, match="online"):
        decode("irve", "irve/h/chargers/borne-1", b'{"ts": "2026-11-23T10:15:02Z"}', 0)


def test_alert_strings_and_point_tag_from_payload() -> None:
    line = line_of(
        "irve/h/alert",
        {
            "ts": TS,
            "alert": "site_overload",
            "state": "firing",
            "point": "main",
            "value": 37000,
            "limit": 36000,
            "message": 'Site "over" 36 kVA\\\nnow',
        },
    )
    assert line == (
        'alert,site=h,point=main,alert=site_overload state="firing",value=37000.0,'
        f'limit=36000.0,message="Site \\"over\\" 36 kVA\\\\\\nnow" {TS_MS}'
    )


def test_event_numeric_details_as_floats_strings_left_out() -> None:
    line = line_of(
        "irve/h/cp1/event",
        {
            "ts": TS,
            "event": "index_reset",
            "message": "index went back",
            "details": {
                "from_wh": 100,
                "to_wh": 5.5,
                "meter": "x",
                "ok": False,
                "gone": None,
                "a b": 1,
            },
        },
    )
    assert line == (
        'event,site=h,point=cp1,event=index_reset message="index went back",a\\ b=1.0,'
        f"from_wh=100.0,ok=0.0,to_wh=5.5 {TS_MS}"
    )


def test_availability_uses_receive_time() -> None:
    assert line_of("irve/h/cp1/availability", b"offline", 42) == (
        "availability,site=h,point=cp1 online=0.0 42"
    )
    assert line_of("irve/h/cp1/availability", b"online", 43).endswith(" online=1.0 43")


def test_tag_escaping() -> None:
    assert lines.escape_tag("a,b=c d\ne\\") == "a\\,b\\=c\\ d\\ e/"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("irve/h/cp1/state", b"not json", "Invalid JSON"),
        ("irve/h/cp1/state", b'{"ts": "2026-11-23T10:15:02Z", "power_w": "abc"}', "power_w"),
        (
            "irve/h/cp1/state",
            b'{"ts": "2026-11-23T10:15:02Z", "power_w": NaN, "current_a": null,'
            b' "voltage_v": null, "energy_wh": null}',
            "power_w",
        ),
        (
            "irve/h/cp1/state",
            b'{"ts": "2026-11-23T10:15:02", "power_w": 1, "current_a": null,'
            b' "voltage_v": null, "energy_wh": null}',
            "time zone",
        ),
        (
            "irve/h/cp1/state",
            b'{"ts": "2300-01-01T00:00:00Z", "power_w": 1, "current_a": null,'
            b' "voltage_v": null, "energy_wh": null}',
            "outside",
        ),
        ("irve/h/cp1/energy", b"[]", "should be an object"),
        ("irve/h/cp1/availability", b"maybe", "online"),
        ("irve/h/cp1/unknown", b"{}", "unknown topic shape"),
        ("irve//cp1/state", b"{}", "unknown topic shape"),
        ("irve/h/cp1/state", b" " * (MAX_PAYLOAD_BYTES + 1), "exceeds"),
        ("irve/h/alert", b'{"ts": "2026-11-23T10:15:02Z", "alert": "fire"}', "alert"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        decode("irve", topic, payload, 0)
    assert reason in info.value.reason


def test_a_days_subscription_is_one_point_at_its_local_midnight() -> None:
    payload = (
        b'{"ts": "2026-12-05T23:00:00.000Z", "day": "2026-12-06", "kva": 36, "option": "hphc",'
        b' "per_month_eur": 52.54, "cost_eur": 1.69483871, "source": "site file"}'
    )
    decoded = decode("irve", "irve/h/subscription", payload, 0)
    assert decoded.kind == "subscription"
    assert decoded.line == (
        "subscription,site=h,option=hphc cost_eur=1.69483871,per_month_eur=52.54,kva=36.0 "
        "1796511600000"
    )
    with pytest.raises(Rejected, match="cost_eur"):
        decode("irve", "irve/h/subscription", payload.replace(b"1.69483871", b"52.54"), 0)


def test_dead_letter_site() -> None:
    assert site_of("irve", "irve/h/x/y/z") == "h"
    assert site_of("irve", "irve//cp1/state") == "unknown"
    assert site_of("irve", "other/h") == "unknown"


def test_subscriptions_shared_and_plain() -> None:
    assert subscriptions("irve", None)[0] == "irve/+/+/state"
    shared = subscriptions("irve", "grp")
    assert "$share/grp/irve/+/alert" in shared
    assert "$share/grp/irve/+/+/connector" in shared
    assert "$share/grp/irve/+/chargers/+" in shared
    assert "$share/grp/irve/+/subscription" in shared
    assert "$share/grp/irve/+/+/limit" in shared
    assert len(shared) == 10


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        "ts",
        "start",
        "end",
        "power_w",
        "current_a",
        "voltage_v",
        "energy_wh",
        "currents_a",
        "period",
        "event",
        "session_id",
        "alert",
        "state",
        "point",
        "message",
        "details",
        "badge",
        "value",
        "limit",
        "role",
    ]
)
messages = st.dictionaries(keys, json_values | st.just(TS), max_size=10)
kinds = st.sampled_from(["state", "energy", "session", "event", "availability", "alert", "x"])


@settings(max_examples=400, deadline=None)
@given(kind=kinds, body=messages | json_values, raw=st.binary(max_size=64), use_raw=st.booleans())
def test_any_payload_decodes_or_is_rejected(
    kind: str, body: object, raw: bytes, use_raw: bool
) -> None:
    topic = "irve/h/alert" if kind == "alert" else f"irve/h/cp1/{kind}"
    payload = raw if use_raw else json.dumps(body, allow_nan=True).encode()
    try:
        decoded = decode("irve", topic, payload, 0)
    except Rejected as exc:
        assert exc.reason and exc.site == "h"
        return
    if decoded.line is not None:
        # Every accepted line is well formed: no NaN/inf, no newline, fields and a timestamp.
        assert "\n" not in decoded.line
        assert not any(word in decoded.line for word in ("=nan", "=inf", "=-inf"))
        assert decoded.line.rsplit(" ", 1)[1].lstrip("-").isdigit()
        assert not math.isnan(float(decoded.line.rsplit(" ", 1)[1]))


def test_session_with_null_start_is_valid() -> None:
    # Regression: the timestamp validator used to crash (AttributeError) on `"start": null`.
    msg = dict(SESSION, start=None)
    assert line_of("irve/h/cp1/session", msg).endswith(f" {TS_MS}")


def test_reading_carries_the_site_limits_as_float_fields() -> None:
    """The socket's rating and the main meter's subscribed power and pre-alarm threshold are
    fields of every reading, so that Grafana compares each series with its own site's limits."""
    core = {"ts": TS, "power_w": 3680, "current_a": 16, "voltage_v": None, "energy_wh": None}
    socket = line_of("irve/gite/prise/state", {**core, "rated_current_a": 16})
    assert socket == (
        "reading,site=gite,point=prise,role=socket power_w=3680.0,current_a=16.0,"
        f"rated_current_a=16.0 {TS_MS}"
    )
    main = line_of(
        "irve/gite/main/state", {**core, "role": "main", "limit_w": 9000, "warning_w": 8100}
    )
    assert main.endswith(f",limit_w=9000.0,warning_w=8100.0 {TS_MS}")


@pytest.mark.parametrize(
    ("key", "value"),
    [("rated_current_a", 0), ("limit_w", -9000), ("warning_w", "8100 W")],
)
def test_bad_site_limit_is_a_dead_letter_naming_the_key(key: str, value: object) -> None:
    core = {"ts": TS, "power_w": 1, "current_a": None, "voltage_v": None, "energy_wh": None}
    with pytest.raises(Rejected) as info:
        decode("irve", "irve/h/main/state", json.dumps({**core, key: value}).encode(), 0)
    assert info.value.reason.startswith(key)
