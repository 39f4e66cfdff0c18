"""Switch each socket's enable contactor through the hotel's KNXnet/IP gateway (xknx).

The service never blocks its caller for longer than `knx.timeout_s`: it connects in the
background (retrying while the gateway is unreachable), answers `offline` while it has no
connection, and re-sends every socket's last state each time the connection comes (back), so
a gateway restart or a switch made while offline ends with the contactors as last asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from xknx import XKNX
from xknx.core.connection_state import XknxConnectionState
from xknx.dpt.payload import DPTBinary
from xknx.exceptions import XKNXException
from xknx.io import ConnectionConfig, ConnectionType
from xknx.telegram import GroupAddress, Telegram
from xknx.telegram.apci import GroupValueWrite

from collector.load.controller import Limit
from collector.load.settings import KnxSettings

log = logging.getLogger(__name__)

Status = Literal["sent", "failed", "timeout", "offline"]
# Between two connection attempts while the gateway does not answer.
RETRY_S = 2.0


@dataclass(frozen=True)
class SwitchResult:
    point: str
    address: str
    on: bool
    status: Status  # offline: not sent now; it will be once the gateway answers
    detail: str | None = None


def connection_config(settings: KnxSettings) -> ConnectionConfig:
    host, port = settings.host_port
    if settings.routing:
        return ConnectionConfig(
            connection_type=ConnectionType.ROUTING,
            local_ip=settings.local_ip,
            multicast_group=host,
            multicast_port=port,
        )
    kind = ConnectionType.TUNNELING_TCP if settings.tunnel == "tcp" else ConnectionType.TUNNELING
    return ConnectionConfig(
        connection_type=kind,
        gateway_ip=host,
        gateway_port=port,
        local_ip=settings.local_ip,
        auto_reconnect=True,
        auto_reconnect_wait=1,
    )


class KnxSwitches:
    """`async with KnxSwitches(settings) as knx: await knx.switch("cp1", on=False)`."""

    def __init__(self, settings: KnxSettings) -> None:
        self.settings = settings
        self._wanted: dict[str, bool] = {}
        self._results: dict[str, SwitchResult] = {}
        self._xknx: XKNX | None = None
        self._started = False  # xknx.start() succeeded: xknx.stop() is ours to call
        self._closing = False
        self._connected = asyncio.Event()
        # xknx matches each telegram with the gateway's confirmation one at a time.
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[object]] = set()
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> KnxSwitches:
        self._runner = asyncio.create_task(self._connect())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.settings.on_stop != "keep":
            if self.connected:
                for point in self.settings.switches:
                    await self.switch(point, self.settings.on_stop == "on")
            else:
                log.warning(
                    "KNX: no connection at stop: contactors left as they are (on_stop: %s)",
                    self.settings.on_stop,
                )
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._xknx is not None and self._started:
            self._closing = True
            await self._xknx.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        return self.connected

    def results(self) -> dict[str, SwitchResult]:
        """What was last done for each socket (for the `actuators` of its limit message)."""
        return dict(self._results)

    async def apply(self, point: str, limit: Limit) -> SwitchResult:
        """A contactor can only pause: open for a limit of 0 A, closed for any other (the
        current itself is the charger's business, through OCPP)."""
        return await self.switch(point, limit.current_a != 0)

    async def switch(self, point: str, on: bool) -> SwitchResult:
        """Close (`on`: charging allowed) or open a socket's contactor; at most timeout_s."""
        if point not in self.settings.switches:
            raise ValueError(f"knx.switches has no group address for socket {point!r}")
        self._wanted[point] = on
        if not self.connected:
            return self._record(point, on, "offline", "no connection to the KNX gateway")
        return await self._send(point, on)

    async def _send(self, point: str, on: bool) -> SwitchResult:
        # Shielded: a send that outlives the timeout still completes (or fails) in order,
        # rather than being cut in the middle of xknx's exchange with the gateway.
        task = asyncio.create_task(self._write(point, on))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                await asyncio.shield(task)
        except TimeoutError:
            return self._record(
                point, on, "timeout", f"not confirmed within {self.settings.timeout_s:g} s"
            )
        except XKNXException as exc:
            return self._record(point, on, "failed", str(exc) or type(exc).__name__)
        return self._record(point, on, "sent")

    async def _write(self, point: str, on: bool) -> None:
        telegram = Telegram(
            destination_address=GroupAddress(self.settings.switches[point]),
            payload=GroupValueWrite(DPTBinary(1 if on else 0)),
        )
        async with self._send_lock:
            assert self._xknx is not None
            await self._xknx.cemi_handler.send_telegram(telegram)

    def _record(
        self, point: str, on: bool, status: Status, detail: str | None = None
    ) -> SwitchResult:
        result = SwitchResult(point, self.settings.switches[point], on, status, detail)
        if status in ("failed", "timeout"):
            log.warning(
                "KNX: %s %s (%s) %s: %s",
                point,
                "on" if on else "off",
                result.address,
                status,
                detail,
            )
        self._results[point] = result
        return result

    async def _connect(self) -> None:
        host, port = self.settings.host_port
        where = f"{host}:{port}"
        warned = False
        while True:
            xknx = XKNX(
                connection_config=connection_config(self.settings),
                connection_state_changed_cb=self._state_changed,
            )
            self._xknx = xknx
            try:
                await xknx.start()
            except asyncio.CancelledError:
                # Stopped while connecting: close the half-open tunnel's socket.
                with contextlib.suppress(XKNXException):
                    await xknx.knxip_interface.stop()
                raise
            except XKNXException as exc:
                if not warned:
                    log.warning("KNX: gateway %s does not answer (%s); retrying", where, exc)
                    warned = True
                with contextlib.suppress(XKNXException):
                    await xknx.knxip_interface.stop()
                await asyncio.sleep(RETRY_S)
                continue
            self._started = True
            log.info("KNX: connected to %s", where)
            return  # xknx reconnects by itself from here on

    def _state_changed(self, state: XknxConnectionState) -> None:
        if state is not XknxConnectionState.CONNECTED:
            if self.connected and not self._closing:
                log.warning("KNX: connection to the gateway lost; reconnecting")
            self._connected.clear()
            return
        self._connected.set()
        # The states asked for until now; a switch made from here on sends itself.
        task = asyncio.create_task(self._resend(dict(self._wanted)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resend(self, wanted: dict[str, bool]) -> None:
        for point, on in wanted.items():
            await self._send(point, on)
