"""The collector seen from outside: a recording subscriber, an idle meter source, `irve collect`
as a process, and an asyncio wait. SITE is the site id of the collector tests' site files."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.paths import REPO
from tests.support.servers import port_open, wait_until

SITE = "test-site"


class Recorder:
    """A subscriber on a real broker, recording every message it receives."""

    def __init__(self, port: int, topics: tuple[str, ...] = ("#",), client_id: str = "") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        persistent = bool(client_id)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent:  # the broker keeps our messages while we (or it) are away
            properties.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=not persistent, properties=properties)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def retained(self) -> dict[str, bytes]:
        with self._lock:
            return {t: p for t, p, r in self.messages if r}

    def states(self, point: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on(f"irve/{SITE}/{point}/state")]

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 15) -> None:
        wait_until(check, timeout, what)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def collecting(statuses: Callable[[], list[bytes]], ocpp_port: int) -> Callable[[], bool]:
    """`irve collect` is up: its last status `online` (published when the MQTT link connects)
    and its OCPP port listening (the central system starts after the link, so a charger
    connecting on `online` alone may be refused on a loaded machine)."""
    return lambda: statuses()[-1:] == [b"online"] and port_open(ocpp_port)


def wait_collecting(
    sub: Recorder, site: str, ocpp_port: int, what: str = "online", timeout: float = 30
) -> None:
    wait_until(collecting(lambda: sub.on(f"irve/{site}/status"), ocpp_port), timeout, what)


async def until(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Quiet:
    """A source that never reads a meter."""

    async def run(self) -> None:
        await asyncio.Event().wait()


def collect_process(path: Path, output: Path | None = None) -> subprocess.Popen[bytes]:
    """`irve collect -c PATH` as a process; its output piped, or appended to the file `output`
    (which can then be read while it runs)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "collector", "collect", "-c", str(path)]
    if output is None:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with output.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
