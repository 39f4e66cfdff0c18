"""Load-management tests' peers: charge points whose cars obey the charging profiles they get,
the site's physics (main meter = hotel base load + what the sockets draw) on the simulator's
meters, and an MQTT subscriber keeping the `limit` and main-meter `state` messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import paho.mqtt.client as mqtt
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect
from xknx import XKNX
from xknx.dpt.payload import DPTBinary
from xknx.io import ConnectionConfig, ConnectionType
from xknx.telegram import Telegram
from xknx.telegram.apci import GroupValueWrite

from collector.simulator.server import SimulatedSite
from tests.support.ocpp import Station

Obey = Callable[[float | None], None]


class ObedientStation(Station):
    """A charge point whose car draws what its charging profile allows (None: no profile).
    `answer` is what it replies to SetChargingProfile (Rejected: a charger refusing limits)."""

    def __init__(self, charger_id: str, ws: ClientConnection, obey: Obey) -> None:
        super().__init__(charger_id, ws)
        self.obey = obey
        self.answer = "Accepted"
        self.profiles: list[tuple[float, dict[str, Any]]] = []  # (monotonic, payload)

    @on(Action.set_charging_profile)
    async def set_profile(self, **p: Any) -> call_result.SetChargingProfile:
        self.profiles.append((time.monotonic(), p))
        await self._note("SetChargingProfile", p)
        if self.answer == "Accepted":
            periods = p["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"]
            self.obey(float(periods[0]["limit"]))
        return call_result.SetChargingProfile(status=self.answer)

    @on(Action.clear_charging_profile)
    async def clear_profile(self, **p: Any) -> call_result.ClearChargingProfile:
        await self._note("ClearChargingProfile", p)
        self.obey(None)
        return call_result.ClearChargingProfile(status="Accepted")

    def limits(self) -> list[float]:
        return [
            float(
                p["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0][
                    "limit"
                ]
            )
            for _, p in self.profiles
        ]


class Physics:
    """The hotel: the main meter reads `base_w` plus what the socket meters draw, the cars draw
    `want_a` or less when their charger limits them (below 6 A a car stops)."""

    def __init__(self, sim: SimulatedSite, sockets: list[str], base_w: float, want_a: float):
        self.sim, self.base_w = sim, base_w
        self.want = dict.fromkeys(sockets, want_a)
        self.limit: dict[str, float | None] = dict.fromkeys(sockets)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def obey(self, point: str) -> Obey:
        def follow(limit: float | None) -> None:
            self.limit[point] = limit
            self._apply()

        return follow

    def _apply(self) -> None:
        for point, want in self.want.items():
            limit = self.limit[point]
            amps = want if limit is None else min(want, limit)
            self.sim.meter(point).force_current(amps if amps >= 6 else 0.0)
        sockets_w = sum(self.sim.model.meters[p].power_w for p in self.want)
        self.sim.meter("main").force_power(self.base_w + sockets_w)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._apply()

    def __enter__(self) -> Physics:
        self._apply()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class LimitRecorder:
    """Every `limit` message of the site and the main meter's `state` power, in order."""

    def __init__(self, port: int, site: str) -> None:
        self.site = site
        self.limits: list[tuple[str, dict[str, Any]]] = []  # (point, payload)
        self.main: list[tuple[float, dict[str, Any]]] = []  # (monotonic received, payload)
        self.status: list[bytes] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        topics = [(f"irve/{site}/+/limit", 1), (f"irve/{site}/main/state", 1)]
        topics.append((f"irve/{site}/status", 1))
        self.client.on_connect = lambda c, *_: c.subscribe(topics)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        parts = message.topic.split("/")
        with self._lock:
            if parts[-1] == "status":
                self.status.append(bytes(message.payload))
            elif parts[-1] == "limit" and message.payload:
                self.limits.append((parts[-2], json.loads(message.payload)))
            elif parts[-1] == "state":
                self.main.append((time.monotonic(), json.loads(message.payload)))

    def of(self, point: str) -> list[dict[str, Any]]:
        with self._lock:
            return [payload for p, payload in self.limits if p == point]

    def last(self, point: str) -> dict[str, Any] | None:
        found = self.of(point)
        return found[-1] if found else None

    def main_powers(self) -> list[float]:
        with self._lock:
            return [m["power_w"] for _, m in self.main if m.get("power_w") is not None]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextlib.asynccontextmanager
async def obedient(url: str, charger: str, obey: Obey) -> AsyncIterator[ObedientStation]:
    """An ObedientStation connected to `url` (credentials in it) and booted."""
    async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = ObedientStation(charger, ws, obey)
        task = asyncio.create_task(cp.start())
        try:
            await cp.boot()
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class KnxObserver:
    """A second KNX client on the same knxd: every group write it hears, with when."""

    def __init__(self, port: int, on_write: Callable[[str, int], None] | None = None) -> None:
        self.heard: list[tuple[float, str, int]] = []  # (monotonic, group address, value)
        self.on_write = on_write
        self.xknx = XKNX(
            connection_config=ConnectionConfig(
                connection_type=ConnectionType.TUNNELING, gateway_ip="127.0.0.1", gateway_port=port
            ),
            telegram_received_cb=self._telegram,
        )

    def _telegram(self, telegram: Telegram) -> None:
        payload = telegram.payload
        if isinstance(payload, GroupValueWrite) and isinstance(payload.value, DPTBinary):
            address = str(telegram.destination_address)
            self.heard.append((time.monotonic(), address, payload.value.value))
            if self.on_write is not None:
                self.on_write(address, payload.value.value)

    def writes(self, address: str) -> list[int]:
        return [value for _, a, value in self.heard if a == address]


@contextlib.asynccontextmanager
async def knx_observer(
    port: int, on_write: Callable[[str, int], None] | None = None
) -> AsyncIterator[KnxObserver]:
    watcher = KnxObserver(port, on_write)
    async with watcher.xknx:
        yield watcher
