"""The message catalogue: one record per kind, and the docs' topic table says the same."""

from __future__ import annotations

import re
import typing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.wire.kinds import KINDS, Outgoing, envelope, kind_of
from collector.wire.messages import (
    AvailabilityMessage,
    ChargerMessage,
    CommandMessage,
    EnergyMessage,
    SessionMessage,
    ShedMessage,
)
from collector.wire.topics import POINT_KINDS, SITE_KINDS, PointKind, SiteKind, Topics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"
TOPICS = Topics("irve", "hotel")
TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_the_topic_table_of_docs_mqtt_is_the_catalogue() -> None:
    rows = re.findall(
        r"^\| `irve/\{site\}/([^`]+)` \| ([^|]+) \| (yes|no) \|", DOCS.read_text(), re.M
    )
    scopes = {"{point}": "point", "chargers": "charger"}
    documented = {
        ("charger" if path.startswith("chargers/") else path.split("/")[-1]): (
            scopes.get(path.split("/")[0], "site"),
            retained == "yes",
            direction.strip() == "**in**",
        )
        for path, direction, retained in rows
    }
    catalogue = {
        k.name: (k.scope, k.retained, k.inbound) for k in KINDS.values() if k.scope != "discovery"
    }
    assert documented == catalogue


def test_topic_types_name_the_catalogue_kinds() -> None:
    assert set(typing.get_args(PointKind)) == set(POINT_KINDS)
    assert set(typing.get_args(SiteKind)) == set(SITE_KINDS)


def test_every_model_is_one_kind_and_critical_kinds_are_never_droppable() -> None:
    models = [k.model for k in KINDS.values() if k.model is not None]
    assert len(models) == len(set(models))
    for kind in KINDS.values():
        assert kind.droppable is not kind.critical
        if kind.model is not None:
            assert kind_of(kind.model.model_construct()) is kind


@pytest.mark.parametrize(
    ("outgoing", "topic", "payload", "retain", "critical"),
    [
        (Outgoing("cp1", AvailabilityMessage(online=False)), "irve/hotel/cp1/availability", b"offline", True, False),
        (Outgoing(None, ShedMessage(ts=TS, active=False, excess_w=0, reason="normal")), "irve/hotel/shed", None, True, True),
        (Outgoing("borne-1", ChargerMessage(ts=TS, online=True)), "irve/hotel/chargers/borne-1", None, True, False),
    ],
)  # fmt: skip
def test_envelope_takes_topic_and_flags_from_the_catalogue(
    outgoing: Outgoing, topic: str, payload: bytes | None, retain: bool, critical: bool
) -> None:
    out = envelope(TOPICS, outgoing)
    assert (out.topic, out.retain, out.critical, out.kind) == (
        topic,
        retain,
        critical,
        outgoing.kind,
    )
    assert out.payload == (payload if payload is not None else outgoing.message.to_json())


def test_a_point_kind_without_a_point_has_no_topic() -> None:
    window = EnergyMessage(
        start=TS, end=TS, energy_wh=0, period="HP", price_eur_kwh=0, cost_eur=0,
        index_start_wh=None, index_end_wh=None,
    )  # fmt: skip
    with pytest.raises(ValueError, match="energy message without a point"):
        envelope(TOPICS, Outgoing(None, window))


def test_a_charger_message_without_a_charger_has_no_topic() -> None:
    with pytest.raises(ValueError, match="charger message without a charger"):
        envelope(TOPICS, Outgoing(None, ChargerMessage(ts=TS, online=False)))


def test_session_keys_of_ocpp_appear_only_when_set() -> None:
    meter = SessionMessage(
        event="end", session_id="s", ts=TS, energy_wh=1, cost_eur=0, duration_s=1, max_power_w=0
    )
    assert b"room" not in meter.to_json() and b"source" not in meter.to_json()
    ocpp = meter.model_copy(update={"room": "12", "source": "ocpp", "transaction_id": 7})
    assert b'"room":"12","source":"ocpp","transaction_id":7}' in ocpp.to_json()


def test_a_command_names_a_known_action_and_a_valid_badge() -> None:
    assert CommandMessage.from_payload(b'{"action": "start", "badge": " 04A1 "}').badge == "04A1"
    with pytest.raises(ValueError, match="action"):
        CommandMessage.from_payload(b'{"action": "explode"}')
    with pytest.raises(ValueError, match="control characters"):
        CommandMessage.from_payload(b'{"action": "start", "badge": "a\\nb"}')
