"""The link's short path for successful PUBACKs gives on_publish what paho's own decoding
gives, and leaves every other PUBACK to paho."""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt._packet import decode_puback
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from collector.mqtt.client import _Client

SHORT = [b"\x00\x07", b"\x00\x07\x00", b"\x00\x07\x10", b"\x00\x07\x00\x00", b"\x00\x07\x10\x00"]
PAHO = [b"\x00\x07\x87", b"\x00\x07\x10\x03\x1f\x00\x00", b"\x00\x07\x80\x00"]


def acknowledged(packet: bytes, short: bool, monkeypatch: pytest.MonkeyPatch) -> ReasonCode:
    """Send QoS 1 message 7 into a client without a socket, then hand it `packet` as PUBACK."""
    client = _Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    seen: list[ReasonCode] = []
    client.on_publish = lambda c, u, mid, reason, props: seen.append(reason)
    client._out_messages[7] = mqtt.MQTTMessage(7)  # a message paho holds, as after publish()
    client._out_messages[7].qos = 1
    client._inflight_messages = 1
    took_paho: list[bool] = []
    original = mqtt.Client._handle_pubackcomp

    def paho_path(self: Any, cmd: Any) -> MQTTErrorCode:
        took_paho.append(True)
        return original(self, cmd)

    monkeypatch.setattr(mqtt.Client, "_handle_pubackcomp", paho_path)
    client._in_packet["command"] = 0x40
    client._in_packet["packet"] = bytearray(packet)
    assert client._handle_pubackcomp("PUBACK") == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert took_paho == ([] if short else [True])
    assert 7 not in client._out_messages
    return seen[0]


@pytest.mark.parametrize("packet", SHORT)
def test_successful_pubacks_take_the_short_path_with_paho_s_reason(
    packet: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = acknowledged(packet, True, monkeypatch)
    expected = decode_puback(0x40, packet, mqtt.MQTTv5).reason  # paho's own decoding
    assert (reason.value, str(reason), reason.is_failure) == (
        expected.value,
        str(expected),
        False,
    )


@pytest.mark.parametrize("packet", PAHO)
def test_failures_and_properties_go_through_paho(
    packet: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = acknowledged(packet, False, monkeypatch)
    assert reason.value == packet[2]
