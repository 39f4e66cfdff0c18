"""A charge point driven by the tests (the `ocpp` library's charge-point side), for the
central system's tests and those of `irve collect` with chargers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect


class Station(ChargePoint):
    """A charge point that answers the central system's requests and remembers them."""

    def __init__(self, charger_id: str, ws: ClientConnection, local_list: str = "true") -> None:
        super().__init__(charger_id, ws, response_timeout=5)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.local_list = local_list
        self.answer_delay_s = 0.0

    async def _note(self, action: str, payload: dict[str, Any]) -> None:
        self.received.append((action, payload))
        await asyncio.sleep(self.answer_delay_s)

    def got(self, action: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.received if name == action]

    @on(Action.remote_start_transaction)
    async def remote_start(self, **p: Any) -> call_result.RemoteStartTransaction:
        await self._note("RemoteStartTransaction", p)
        return call_result.RemoteStartTransaction(status="Accepted")

    @on(Action.remote_stop_transaction)
    async def remote_stop(self, **p: Any) -> call_result.RemoteStopTransaction:
        await self._note("RemoteStopTransaction", p)
        return call_result.RemoteStopTransaction(status="Accepted")

    @on(Action.unlock_connector)
    async def unlock(self, **p: Any) -> call_result.UnlockConnector:
        await self._note("UnlockConnector", p)
        return call_result.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    async def availability(self, **p: Any) -> call_result.ChangeAvailability:
        await self._note("ChangeAvailability", p)
        return call_result.ChangeAvailability(status="Accepted")

    @on(Action.get_configuration)
    async def configuration(self, **p: Any) -> call_result.GetConfiguration:
        await self._note("GetConfiguration", p)
        key = {"key": "LocalAuthListEnabled", "readonly": False, "value": self.local_list}
        return call_result.GetConfiguration(configuration_key=[key])

    @on(Action.send_local_list)
    async def local_list_push(self, **p: Any) -> call_result.SendLocalList:
        await self._note("SendLocalList", p)
        return call_result.SendLocalList(status="Accepted")

    @on(Action.set_charging_profile)
    async def set_profile(self, **p: Any) -> call_result.SetChargingProfile:
        await self._note("SetChargingProfile", p)
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    async def clear_profile(self, **p: Any) -> call_result.ClearChargingProfile:
        await self._note("ClearChargingProfile", p)
        return call_result.ClearChargingProfile(status="Accepted")

    async def boot(self) -> Any:
        return await self.call(
            call.BootNotification(
                charge_point_model="Green'up Premium",
                charge_point_vendor="Legrand",
                charge_point_serial_number="LG-0001",
                firmware_version="2.4.1",
            )
        )


@contextlib.asynccontextmanager
async def charge_point(url: str, charger: str, **kw: Any) -> AsyncIterator[Station]:
    """A Station connected to `url` (credentials in it), answering until the block ends."""
    async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        cp = Station(charger, ws, **kw)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
