"""The load management's I/O shell in `irve collect`: each poll of the main meter goes through the
controller (collector.load.controller), and each socket's limit to its actuators: OCPP charging
profiles through the central system, the KNX contactor, or none (the retained `shed` request
stays the advice to other systems). What was applied is published as the retained `limit`.

The poll loop is never kept waiting: `reading` and `tick` only decide (pure, in-memory) and wake
the socket's worker. Each socket has its own worker task, which sends the latest decision only:
a slow or refusing charger, or a KNX gateway that does not answer, delays its own socket, and a
decision it could not send yet is replaced by the newer one rather than queued behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from collector.config import SiteConfig
from collector.load.controller import Limit, LoadController, Poll
from collector.meters.reading import Reading
from collector.ocpp.core import CommandError
from collector.ocpp.events import ChargerBooted, ChargerOnline, CommandResult, Event
from collector.wire.kinds import Outgoing
from collector.wire.messages import LimitMessage

if TYPE_CHECKING:  # xknx costs the collector 15 MB of RSS: imported only on KNX sites
    from collector.knx.switches import SwitchResult

log = logging.getLogger(__name__)

# OCPP answers after which the same limit is not sent again before the renewal: the charger has
# it, or said it will not take it. ClearChargingProfile answers Unknown when it has no such
# profile (already expired, or never sent), which is what clearing wants.
SETTLED = {"accepted", "unknown", "rejected", "notsupported"}
REFUSED = {"rejected", "notsupported"}
# A charger that answered neither (timeout, call error) is asked again this much later. One
# that is offline is asked again when it comes back (`ocpp_event`).
RETRY_S = 10.0


class ChargerLimits(Protocol):
    """What the service needs of the OCPP central system (collector.ocpp.server)."""

    async def set_limit(
        self,
        point: str,
        current_a: float,
        duration_s: int | None = None,
        connector: int | None = None,
    ) -> list[CommandResult]: ...

    async def clear_limit(
        self, point: str, connector: int | None = None
    ) -> list[CommandResult]: ...


class Contactors(Protocol):
    """What the service needs of the KNX switches (collector.knx.switches)."""

    async def switch(self, point: str, on: bool) -> SwitchResult: ...


@dataclass
class _Socket:
    point: str
    ocpp: bool
    knx: bool
    wanted: Limit | None = None  # the controller's latest decision
    wanted_at: datetime | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # OCPP: the limit the charger last settled on, its answer, and when to send it again.
    ocpp_limit: Limit | None = None
    ocpp_status: str | None = None
    ocpp_due: float | None = None  # monotonic; None: only when the limit changes or it reconnects
    knx_on: bool | None = None
    knx_status: str | None = None
    published: tuple[Limit, dict[str, str]] | None = None


class LoadService:
    """Made and entered by collector.commands.collect.open_collector; fed by the Collector."""

    def __init__(
        self,
        site: SiteConfig,
        controller: LoadController,
        publish: Callable[[Iterable[Outgoing]], None],
        chargers: ChargerLimits | None = None,
        contactors: Contactors | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.controller = controller
        self._publish = publish
        self._chargers = chargers
        self._contactors = contactors
        self._monotonic = monotonic
        self._interval_s = site.poll_interval_s
        self._validity_s = controller.settings.profile_validity_s
        main = site.main_meter
        self._main = main.id if main is not None else None
        self._points_of = {c.id: set(c.connectors.values()) for c in site.chargers}
        served = set().union(*self._points_of.values()) if chargers else set()
        switched = set(site.knx.switches) if site.knx is not None and contactors else set()
        self._sockets = {
            m.id: _Socket(m.id, m.id in served, m.id in switched)
            for m in site.meters
            if m.socket is not None
        }
        self._power: dict[str, float | None] = dict.fromkeys(self._sockets)
        self._last_poll: float | None = None  # monotonic
        # The main meter's reading waits for the sockets' readings of the same poll cycle: the
        # base load is the main meter minus the sockets, and sockets read a cycle earlier (before
        # their cars obeyed, say) would make it wrong by what changed meanwhile.
        self._pending: tuple[datetime, float | None, float] | None = None  # (ts, W, monotonic)
        self._awaited: set[str] = set()
        self._offline: set[str] = set()
        self._workers: list[asyncio.Task[None]] = []

    # -- life cycle --------------------------------------------------------------------------

    async def __aenter__(self) -> LoadService:
        self._workers = [
            asyncio.create_task(self._work(socket), name=f"load-{socket.point}")
            for socket in self._sockets.values()
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop acting: what the actuators hold stays (OCPP profiles until they expire, KNX
        contactors as `knx.on_stop` says when the switches close)."""
        workers, self._workers = self._workers, []
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    # -- input (from the Collector, on the loop: no waiting here) ------------------------------

    def reading(self, reading: Reading) -> None:
        clock = self._monotonic()
        if reading.point in self._sockets:
            self._power[reading.point] = reading.power_w
            self._awaited.discard(reading.point)
        elif reading.point == self._main:
            if self._pending is not None:
                self._flush()  # a socket did not answer in the last cycle: decide without it
            self._last_poll = clock
            self._pending = (reading.ts, reading.power_w, clock)
            self._awaited = set(self._sockets) - self._offline
        self._flush_when_complete(clock)

    def availability(self, point: str, online: bool) -> None:
        if point not in self._sockets:
            return
        if online:
            self._offline.discard(point)
            return
        self._power[point] = None
        self._offline.add(point)
        self._awaited.discard(point)
        self._flush_when_complete(self._monotonic())

    def _flush_when_complete(self, clock: float) -> None:
        """Decide once every socket has answered since the main meter, or a poll interval after
        it (a socket meter on a slower bus, or one that failed without being offline yet)."""
        if self._pending is None:
            return
        if not self._awaited or clock - self._pending[2] >= self._interval_s:
            self._flush()

    def _flush(self) -> None:
        assert self._pending is not None
        at, main_w, _ = self._pending
        self._pending = None
        self._decide(at, main_w)

    def tick(self, now: datetime) -> None:
        """The collector's clock tick: polls of the main meter that did not come count as polls
        without a reading (the fail-safe counts them), and profiles due are sent again."""
        clock = self._monotonic()
        self._flush_when_complete(clock)
        if self._last_poll is None:
            self._last_poll = clock  # a main meter that never answers is silent from the start
        # A poll is missed once one and a half intervals passed without it (the poller's
        # jitter), counted on the monotonic clock: a wall-clock step is no silence.
        missed = int((clock - self._last_poll) / self._interval_s - 0.5)
        if missed > 0:
            self._last_poll += missed * self._interval_s
            # Beyond the fail-safe's count, more silent polls change nothing (a suspended
            # process may come back hours later).
            for _ in range(min(missed, self.controller.settings.failsafe_after_polls + 1)):
                self._decide(now, None)
        for socket in self._sockets.values():
            if socket.ocpp_due is not None and clock >= socket.ocpp_due:
                socket.ocpp_due = None
                socket.wake.set()

    def ocpp_event(self, event: Event) -> None:
        """A charger (re)connected: it is sent its sockets' limits again (a charger that
        rebooted may have lost them; one that was offline never got the last one)."""
        if isinstance(event, ChargerBooted | ChargerOnline):
            for point in self._points_of.get(event.charger, ()):
                socket = self._sockets.get(point)
                if socket is not None and socket.ocpp:
                    socket.ocpp_limit = None
                    socket.wake.set()

    def _decide(self, at: datetime, main_w: float | None) -> None:
        decision = self.controller.decide(Poll(at, main_w, dict(self._power)))
        for point, limit in decision.limits.items():
            socket = self._sockets[point]
            if limit != socket.wanted:
                socket.wanted, socket.wanted_at = limit, at
                socket.wake.set()

    # -- the workers ---------------------------------------------------------------------------

    async def _work(self, socket: _Socket) -> None:
        while True:
            await socket.wake.wait()
            socket.wake.clear()
            limit, at = socket.wanted, socket.wanted_at
            if limit is None or at is None:
                continue
            try:
                actuators = await self._apply(socket, limit)
            except Exception:  # a bug must not end the socket's worker
                log.exception("load management: applying %s on %s failed", limit, socket.point)
                continue
            if socket.published != (limit, actuators):
                socket.published = (limit, actuators)
                message = LimitMessage(
                    ts=at, current_a=limit.current_a, reason=limit.reason, actuators=actuators
                )
                self._publish([Outgoing(socket.point, message)])

    async def _apply(self, socket: _Socket, limit: Limit) -> dict[str, str]:
        actuators: dict[str, str] = {}
        if socket.ocpp:
            actuators["ocpp"] = await self._ocpp(socket, limit)
        if socket.knx:
            # A charger that refused the limit is paused by its contactor instead: the site's
            # limit is kept at the cost of that car's charging.
            refused = socket.ocpp and socket.ocpp_status in REFUSED
            on = limit.current_a is None if refused else limit.current_a != 0
            actuators["knx"] = await self._knx(socket, on)
        if not actuators or (actuators.get("ocpp") in REFUSED and not socket.knx):
            actuators["advisory"] = "shed"
        return actuators

    async def _ocpp(self, socket: _Socket, limit: Limit) -> str:
        assert self._chargers is not None
        renewal = socket.ocpp_limit == limit and socket.ocpp_status == "accepted"
        if socket.ocpp_limit == limit and socket.ocpp_status in SETTLED and not renewal:
            return socket.ocpp_status or "accepted"
        if renewal and limit.current_a is None:
            return "accepted"  # nothing to renew: no profile of ours is left
        try:
            if limit.current_a is None:
                results = await self._chargers.clear_limit(socket.point)
            else:
                results = await self._chargers.set_limit(
                    socket.point, limit.current_a, duration_s=self._validity_s
                )
        except CommandError as exc:
            log.warning("load management: no OCPP limit on %s: %s", socket.point, exc)
            return "failed"
        status = _worst([r.status.lower() for r in results])
        socket.ocpp_status = status
        if status in SETTLED:
            socket.ocpp_limit = limit
        clock = self._monotonic()
        if status == "accepted" and limit.current_a is not None:
            # Renewed at half its life: a missed renewal still leaves time for the next one.
            socket.ocpp_due = clock + self._validity_s / 2
        elif status in ("timeout", "callerror", "error"):
            socket.ocpp_due = clock + RETRY_S
        elif status in REFUSED:
            socket.ocpp_due = clock + self._validity_s / 2  # the charger may change its mind
            detail = "; ".join(f"{r.status} {r.detail or ''}".strip() for r in results)
            log.warning(
                "load management: charger refused the %s limit on %s (%s): %s",
                "no" if limit.current_a is None else f"{limit.current_a:g} A",
                socket.point,
                detail,
                "its KNX contactor pauses it instead"
                if socket.knx
                else "only the advisory shed request remains",
            )
        else:
            socket.ocpp_due = None  # offline: sent again when the charger comes back
        return status

    async def _knx(self, socket: _Socket, on: bool) -> str:
        assert self._contactors is not None
        if socket.knx_on == on and socket.knx_status == "sent":
            return "sent"
        # Offline or timed out: the switches send it themselves once the gateway answers.
        result = await self._contactors.switch(socket.point, on)
        socket.knx_on, socket.knx_status = on, result.status
        return result.status


def _worst(statuses: list[str]) -> str:
    """One status for the point's connectors: the first that is not a success."""
    for status in statuses:
        if status not in ("accepted", "unknown"):
            return status
    return "accepted" if statuses else "failed"
