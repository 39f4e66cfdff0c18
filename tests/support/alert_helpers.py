"""Shared by the alert end-to-end tests and the alert latency bench: a site served by the
simulator, the real collector app, a subscriber on the real broker, a local ntfy endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.alerts.notify import Notifier
from collector.collect import Collector
from collector.commands.collect import open_collector
from collector.config import SiteConfig
from collector.meters.poller import Poller
from collector.meters.profile import Profile
from collector.mqtt.client import MqttLink
from collector.site import load_site
from tests.support.sim_helpers import main_meter, tcp_bus, write_site

SITE = "test-site"


def overload_site(
    tmp_path: Path,
    broker_port: int,
    ntfy_url: str,
    poll_interval_s: float = 0.2,
    sessions: dict[str, Any] | None = None,
    **alerts: Any,
) -> tuple[SiteConfig, dict[str, Profile]]:
    """A 36 kVA site: the main meter and two 32 A sockets labelled like the hotel's."""
    sockets = [
        {
            "id": f"cp{n}",
            "bus": "board",
            "unit": n,
            "profile": "eastron-sdm120",
            "role": "socket",
            "socket": {"label": f"Borne {n}", "rated_current_a": 32, "phases": 1},
        }
        for n in (1, 2)
    ]
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[main_meter("main", "board", 10), *sockets],
        mqtt={"host": "127.0.0.1", "port": broker_port, "discovery": False},
        poll_interval_s=poll_interval_s,
        state_dir=str(tmp_path / "state"),  # never the repository's var/
        alerts={
            "overcurrent_for_s": 0,
            "overload_for_s": 0,
            "resolve_for_s": 0,
            "offline_after_polls": 3,
            **alerts,
        },
        notify={
            "urls": [ntfy_url],
            "min_interval_s": 0,
            "retry_initial_s": 0.1,
            "retry_max_s": 0.2,
        },
        sessions=sessions or {},
    )
    return load_site(str(path))


class Subscriber:
    """Records every message on the site's topics, with its arrival time."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, dict[str, Any] | str, float]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(f"irve/{SITE}/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("no SUBACK from the broker")

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        arrived = time.time()  # wall clock, comparable with reading timestamps
        payload = bytes(message.payload).decode()
        try:
            data: dict[str, Any] | str = json.loads(payload)
        except ValueError:
            data = payload
        with self._lock:
            self.messages.append((message.topic, data, arrived))

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                p for t, p, _ in self.messages if t == f"irve/{SITE}/{kind}" and isinstance(p, dict)
            ]

    def alerts(self, alert: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.payloads("alert") if alert is None or a["alert"] == alert]

    def arrivals(self, kind: str) -> list[tuple[dict[str, Any], float]]:
        with self._lock:
            return [
                (p, at)
                for t, p, at in self.messages
                if t == f"irve/{SITE}/{kind}" and isinstance(p, dict)
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def notifiers(app: Collector[MqttLink]) -> list[Notifier]:
    return [app.stages.notifier] if app.stages.notifier is not None else []


async def run_collector(
    site: SiteConfig,
    profiles: dict[str, Profile],
    body: Callable[[Collector[MqttLink]], Awaitable[None]],
    poller_sink: Callable[[Collector[MqttLink]], Any] | None = None,
) -> None:
    """The real app with the real poller (as `irve collect` runs them) while `body` runs."""
    async with open_collector(site, profiles) as app:
        sink = poller_sink(app) if poller_sink is not None else app
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(Poller(site, profiles, sink), stop))
        try:
            await until(lambda: app.link.connected, "the collector's MQTT connection")
            await body(app)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
