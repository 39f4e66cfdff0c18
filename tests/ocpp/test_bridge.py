"""The central system's events as catalogue messages (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.ocpp.bridge import OcppBridge
from collector.ocpp.events import (
    ChargerBooted,
    ChargerOffline,
    ChargerOnline,
    ChargerWarning,
    CommandResult,
    ConnectorStatus,
)
from collector.wire.messages import AlertMessage, ChargerMessage, ConnectorMessage, EventMessage

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_a_charger_offline_keeps_its_description_and_fires_then_resolves_the_alert() -> None:
    bridge = OcppBridge()
    (booted,) = bridge.messages(ChargerBooted(T0, "borne-1", "Legrand", "Green'up", "S1", "2.4"))
    assert booted.point == "borne-1" and isinstance(booted.message, ChargerMessage)
    later = T0 + timedelta(minutes=20)
    described, alert = bridge.messages(ChargerOffline(later, "borne-1", T0))
    assert isinstance(described.message, ChargerMessage)
    assert (described.message.online, described.message.vendor) == (False, "Legrand")
    assert described.message.last_seen == T0
    assert isinstance(alert.message, AlertMessage) and alert.point is None
    assert (alert.message.alert, alert.message.state, alert.message.point) == (
        "charger_offline",
        "firing",
        "borne-1",
    )
    assert alert.message.value == 1200
    assert alert.message.message.startswith("Borne borne-1 hors ligne : aucun message depuis")
    back, resolved = bridge.messages(ChargerOnline(later, "borne-1"))
    assert isinstance(back.message, ChargerMessage) and back.message.online
    assert isinstance(resolved.message, AlertMessage) and resolved.message.state == "resolved"
    assert resolved.message.message == "Borne borne-1 de nouveau en ligne"
    # Online again without having been offline: nothing to resolve.
    assert len(bridge.messages(ChargerOnline(later, "borne-1"))) == 1


def test_connector_statuses_of_mapped_connectors_and_command_answers() -> None:
    bridge = OcppBridge("en")
    (status,) = bridge.messages(
        ConnectorStatus(T0, "borne-1", 2, "cp1", "Charging", "NoError", None)
    )
    assert status.point == "cp1" and isinstance(status.message, ConnectorMessage)
    assert (
        bridge.messages(ConnectorStatus(T0, "borne-1", 0, None, "Available", "NoError", None)) == []
    )
    (answer,) = bridge.messages(
        CommandResult(T0, "borne-1", 1, "cp1", "unlock", "UnlockFailed", None)
    )
    assert isinstance(answer.message, EventMessage) and answer.point == "cp1"
    assert answer.message.event == "command_unlock"
    assert answer.message.details["status"] == "UnlockFailed"
    assert bridge.messages(ChargerWarning(T0, "borne-1", "measurand", "unknown")) == []


def test_a_description_from_before_a_restart_is_kept_when_the_charger_only_reconnects() -> None:
    before = OcppBridge()
    (booted,) = before.messages(ChargerBooted(T0, "borne-1", "Hager", "Witty", None, "1.0"))
    after = OcppBridge()
    after.remember("borne-1", booted.message.to_json())
    after.remember("borne-2", b"not json")  # logged, nothing kept
    (online,) = after.messages(ChargerOnline(T0 + timedelta(hours=1), "borne-1"))
    assert isinstance(online.message, ChargerMessage)
    assert (online.message.vendor, online.message.online) == ("Hager", True)
    assert "borne-2" not in after.chargers


def test_a_charger_offline_before_a_restart_is_not_fired_twice_and_resolves() -> None:
    """The alert state file says borne-1 was offline: still silent after the restart, it is
    described offline without a second `firing`; when it talks the alert resolves."""
    bridge = OcppBridge("en", offline=["borne-1"])
    later = T0 + timedelta(minutes=20)
    (described,) = bridge.messages(ChargerOffline(later, "borne-1", T0))
    assert isinstance(described.message, ChargerMessage) and not described.message.online
    assert bridge.offline == {"borne-1"}
    back, resolved = bridge.messages(ChargerOnline(later, "borne-1"))
    assert isinstance(back.message, ChargerMessage) and back.message.online
    assert isinstance(resolved.message, AlertMessage)
    assert (resolved.message.alert, resolved.message.state) == ("charger_offline", "resolved")
    assert bridge.offline == set()
