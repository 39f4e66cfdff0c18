"""The site's OCPP chargers, played for `irve simulate` (I/O: websockets): each connects to the
collector's central system as a charge point, boots, reports its connectors, and follows the
simulated cars: a car plugged on a connector's meter is badged (Authorize) and charged
(StartTransaction); its departure stops the transaction. The charger's own energy count is the
meter's index, as a charger with a built-in MID meter would send. Remote commands are obeyed.

One connector per meter is played (the first the site file maps to it). A refused badge is not
charged (tried again after RETRY_S); a lost link is retried every RETRY_S.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect

from collector.config import ChargerSettings, SiteConfig
from collector.simulator.model import SiteModel

log = logging.getLogger(__name__)

RETRY_S = 5.0
STEP_S = 1.0


def default_url(site: SiteConfig) -> str:
    """The collector's central system as seen from this box (its listen address, or loopback)."""
    assert site.ocpp is not None
    host = site.ocpp.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"ws://{host}:{site.ocpp.port}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SimulatedCharger(ChargePoint):
    """One charger: its connectors' transactions follow the cars of the model."""

    def __init__(
        self, settings: ChargerSettings, ws: Any, model: SiteModel, badges: Mapping[str, str]
    ) -> None:
        super().__init__(settings.id, ws, response_timeout=15)
        self.model = model
        self.badges = badges
        # connector -> point, one connector per meter.
        self.points: dict[int, str] = {}
        for number, point in sorted(settings.connectors.items()):
            if point not in self.points.values():
                self.points[number] = point
        self.transactions: dict[int, int] = {}  # connector -> transaction id
        self.refused_at: dict[int, float] = {}  # connector -> loop time of a refused badge
        self.remote: dict[int, str] = {}  # connector -> badge of a remote start, waiting

    def _index_wh(self, point: str) -> int:
        return int(self.model.meters[point].import_wh)

    async def play(self) -> None:
        reply = await self.call(
            call.BootNotification(
                charge_point_vendor="irve-simulator",
                charge_point_model="simulated charger",
                firmware_version="1.0",
            )
        )
        heartbeat_s = float(reply.interval or 300)
        for number in self.points:
            await self._status(number, "Available")
        loop = asyncio.get_running_loop()
        beat = loop.time()
        while True:
            for number, point in self.points.items():
                await self._follow(number, point, loop.time())
            if loop.time() - beat >= heartbeat_s:
                beat = loop.time()
                await self.call(call.Heartbeat())
            await asyncio.sleep(STEP_S)

    async def _follow(self, number: int, point: str, now: float) -> None:
        plugged = self.model.meters[point].car is not None
        running = number in self.transactions
        if plugged and not running:
            if now - self.refused_at.get(number, -RETRY_S) < RETRY_S:
                return
            badge = self.remote.pop(number, None) or self.badges.get(point, f"SIM-{point}")
            answer = await self.call(call.Authorize(id_tag=badge))
            if answer.id_tag_info["status"] != "Accepted":
                log.info("%s: badge %s %s", self.id, badge, answer.id_tag_info["status"])
                self.refused_at[number] = now
                return
            await self._start(number, point, badge)
        elif running and not plugged:
            await self._stop(number, point, "EVDisconnected")

    async def _start(self, number: int, point: str, badge: str) -> None:
        await self._status(number, "Preparing")
        reply = await self.call(
            call.StartTransaction(
                connector_id=number,
                id_tag=badge,
                meter_start=self._index_wh(point),
                timestamp=_now(),
            )
        )
        self.transactions[number] = int(reply.transaction_id)
        log.info("%s: transaction %s on %s (%s)", self.id, reply.transaction_id, point, badge)
        await self._status(number, "Charging")

    async def _stop(self, number: int, point: str, reason: str) -> None:
        transaction_id = self.transactions.pop(number)
        await self.call(
            call.StopTransaction(
                transaction_id=transaction_id,
                meter_stop=self._index_wh(point),
                timestamp=_now(),
                reason=reason,
            )
        )
        await self._status(number, "Available")

    async def _status(self, number: int, status: str) -> None:
        await self.call(
            call.StatusNotification(connector_id=number, error_code="NoError", status=status)
        )

    # -- what the central system asks -------------------------------------------------------

    @on(Action.remote_start_transaction)
    def remote_start(self, **p: Any) -> call_result.RemoteStartTransaction:
        number = p.get("connector_id") or next(iter(self.points))
        if number not in self.points or number in self.transactions:
            return call_result.RemoteStartTransaction(status="Rejected")
        # Started by the loop once a car is plugged, with this badge.
        self.remote[number] = p["id_tag"]
        self.refused_at.pop(number, None)
        return call_result.RemoteStartTransaction(status="Accepted")

    def _connector_of(self, transaction_id: int) -> int | None:
        return next((n for n, t in self.transactions.items() if t == transaction_id), None)

    @on(Action.remote_stop_transaction)
    def remote_stop(self, **p: Any) -> call_result.RemoteStopTransaction:
        known = self._connector_of(p["transaction_id"]) is not None
        return call_result.RemoteStopTransaction(status="Accepted" if known else "Rejected")

    @after(Action.remote_stop_transaction)
    async def remote_stopped(self, **p: Any) -> None:
        # Answered first, then stopped: the order a charger sends them in.
        number = self._connector_of(p["transaction_id"])
        if number is not None:
            await self._stop(number, self.points[number], "Remote")

    @on(Action.unlock_connector)
    def unlock(self, **p: Any) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    def availability(self, **p: Any) -> call_result.ChangeAvailability:
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.get_configuration)
    def configuration(self, **p: Any) -> call_result.GetConfiguration:
        key = {"key": "LocalAuthListEnabled", "readonly": True, "value": "true"}
        return call_result.GetConfiguration(configuration_key=[key])

    @on(Action.send_local_list)
    def local_list(self, **p: Any) -> call_result.SendLocalList:
        return call_result.SendLocalList(status="Accepted")

    @on(Action.set_charging_profile)
    def set_profile(self, **p: Any) -> call_result.SetChargingProfile:
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def clear_profile(self, **p: Any) -> call_result.ClearChargingProfile:
        return call_result.ClearChargingProfile(status="Accepted")


async def play_charger(
    settings: ChargerSettings, url: str, model: SiteModel, badges: Mapping[str, str]
) -> None:
    """Connect (again after any failure, every RETRY_S) and play until cancelled."""
    password = settings.password.get_secret_value()
    scheme, _, address = url.partition("://")
    target = f"{scheme}://{settings.id}:{password}@{address.rstrip('/')}/{settings.id}"
    while True:
        try:
            async with connect(target, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
                charger = SimulatedCharger(settings, ws, model, badges)
                log.info("charger %s connected to %s", settings.id, url)
                await asyncio.gather(charger.start(), charger.play())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a refused or lost link: the charger tries again
            log.warning("charger %s: %s; again in %.0f s", settings.id, exc, RETRY_S)
        await asyncio.sleep(RETRY_S)


async def play_chargers(
    site: SiteConfig, model: SiteModel, url: str, badges: Mapping[str, str]
) -> None:
    await asyncio.gather(*(play_charger(c, url, model, badges) for c in site.chargers))
