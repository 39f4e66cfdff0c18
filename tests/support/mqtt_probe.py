"""A plain MQTT 5 test client for broker rules (ACL, bridges): connect with credentials,
publish QoS 1, subscribe, and wait for an expected message."""

from __future__ import annotations

import itertools
import queue
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

TIMEOUT = 5.0
_ids = itertools.count()


class Probe:
    """One MQTT 5 client: connect, publish QoS 1, subscribe, and wait for messages."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"probe-{username}-{next(_ids)}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason
        self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def connect(self) -> ReasonCode:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._connected.wait(TIMEOUT), "no CONNACK"
        assert self.connack is not None
        return self.connack

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(TIMEOUT), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes | str) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(TIMEOUT)

    def wait_for(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Messages received up to and including (topic, payload); fails on timeout."""
        seen: list[tuple[str, bytes]] = []
        while True:
            try:
                message = self.messages.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"{topic} {payload!r} not received; got {seen}") from None
            seen.append(message)
            if message == (topic, payload):
                return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
