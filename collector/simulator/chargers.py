"""The site's OCPP chargers, played for `irve simulate` (I/O: websockets): each connects to the
collector's central system as a charge point, boots, reports its connectors, and follows the
simulated cars: a car plugged on a connector's meter is badged (Authorize) and charged
(StartTransaction); its departure stops the transaction. The car draws only during a
transaction, within the charging profiles the central system sets (collector/simulator/
profiles.py): below 6 A it draws nothing and the connector is SuspendedEVSE. The meter follows
what the car draws. During a transaction MeterValues (energy index, power, current, current
offered) go every `meter_values_s`. The charger's own energy count is the meter's index, as a
charger with a built-in MID meter would send. Remote commands are obeyed.

One connector per meter is played (the first the site file maps to it). A refused badge is not
charged (tried again after RETRY_S); a lost link is retried every RETRY_S.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect

from collector.config import ChargerSettings, SiteConfig
from collector.simulator.model import MeterState, SiteModel
from collector.simulator.profiles import (
    MIN_CHARGE_A,
    Profile,
    cleared,
    draws_a,
    ended_transaction,
    installed,
    limit_a,
    parse_profile,
)

log = logging.getLogger(__name__)

RETRY_S = 5.0
STEP_S = 1.0
METER_VALUES_S = 10.0


def default_url(site: SiteConfig) -> str:
    """The collector's central system as seen from this box (its listen address, or loopback)."""
    assert site.ocpp is not None
    host = site.ocpp.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"ws://{host}:{site.ocpp.port}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ChargerMemory:
    """What a charger keeps across the losses of its link, as a real one does: its running
    transactions (still charging meanwhile), their starts, its charging profiles, and the start
    or stop of a transaction that was not answered (sent again, the same, once the link is
    back)."""

    transactions: dict[int, int] = field(default_factory=dict)  # connector -> transaction id
    started: dict[int, datetime] = field(default_factory=dict)  # connector -> its start
    profiles: list[Profile] = field(default_factory=list)
    starts: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # badge, index, time
    stops: dict[int, tuple[int, str, str]] = field(default_factory=dict)  # index, time, reason


class SimulatedCharger(ChargePoint):
    """One charger on one connection: its connectors' transactions follow the cars of the
    model."""

    def __init__(
        self,
        settings: ChargerSettings,
        ws: Any,
        model: SiteModel,
        badges: Mapping[str, str],
        meter_values_s: float = METER_VALUES_S,
        memory: ChargerMemory | None = None,
    ) -> None:
        super().__init__(settings.id, ws, response_timeout=15)
        self.memory = memory if memory is not None else ChargerMemory()
        self.model = model
        self.badges = badges
        self.meter_values_s = meter_values_s
        self.connectors = set(settings.connectors)
        # connector -> point, one connector per meter.
        self.points: dict[int, str] = {}
        for number, point in sorted(settings.connectors.items()):
            if point not in self.points.values():
                self.points[number] = point
        self.transactions = self.memory.transactions
        self.started = self.memory.started
        self.refused_at: dict[int, float] = {}  # connector -> loop time of a refused badge
        self.remote: dict[int, str] = {}  # connector -> badge of a remote start, waiting
        self.sampled: dict[int, float] = {}  # connector -> loop time of its last MeterValues
        self.status: dict[int, str] = {}  # connector -> last status sent on this connection
        for number, point in self.points.items():
            self._meter(point).energized = number in self.transactions

    @property
    def profiles(self) -> list[Profile]:
        return self.memory.profiles

    @profiles.setter
    def profiles(self, profiles: list[Profile]) -> None:
        self.memory.profiles = profiles

    def _meter(self, point: str) -> MeterState:
        return self.model.meters[point]

    def _index_wh(self, point: str) -> int:
        return int(self._meter(point).import_wh)

    async def play(self) -> None:
        reply = await self.call(
            call.BootNotification(
                charge_point_vendor="irve-simulator",
                charge_point_model="simulated charger",
                firmware_version="1.0",
            )
        )
        heartbeat_s = float(reply.interval or 300)
        loop = asyncio.get_running_loop()
        for number, point in self.points.items():
            if number in self.memory.starts:  # its answer was lost with the link: again
                await self._start(number, point, self.memory.starts[number][0])
            elif number in self.memory.stops:  # the car left while the link was down
                await self._stop(number, point, "EVDisconnected")
            elif number in self.transactions:  # still charging: Charging, MeterValues again
                self.sampled[number] = loop.time()
                await self._report(number, point, loop.time())
            else:
                await self._status(number, "Available")
        beat = loop.time()
        while True:
            for number, point in self.points.items():
                await self._follow(number, point, loop.time())
                self._obey(number, point)
                await self._report(number, point, loop.time())
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
        if number not in self.memory.starts:
            await self._status(number, "Preparing")
            self.memory.starts[number] = (badge, self._index_wh(point), _now())
        badge, index, when = self.memory.starts[number]
        reply = await self.call(
            call.StartTransaction(
                connector_id=number, id_tag=badge, meter_start=index, timestamp=when
            )
        )
        del self.memory.starts[number]
        self.transactions[number] = int(reply.transaction_id)
        self.started[number] = datetime.now(UTC)
        self.sampled[number] = asyncio.get_running_loop().time()
        log.info("%s: transaction %s on %s (%s)", self.id, reply.transaction_id, point, badge)
        self._meter(point).energized = True
        self._obey(number, point, energized_changed=True)
        await self._report(number, point, self.sampled[number])

    async def _stop(self, number: int, point: str, reason: str) -> None:
        # The car stops drawing now; the stop is kept until the central system has it.
        if number not in self.memory.stops:
            self.memory.stops[number] = (self._index_wh(point), _now(), reason)
            self._meter(point).energized = False
            self._obey(number, point, energized_changed=True)
        index, when, why = self.memory.stops[number]
        await self.call(
            call.StopTransaction(
                transaction_id=self.transactions[number],
                meter_stop=index,
                timestamp=when,
                reason=why,
            )
        )
        del self.memory.stops[number], self.transactions[number], self.started[number]
        self.profiles = ended_transaction(self.profiles, number)
        self._obey(number, point)
        await self._status(number, "Available")

    async def _status(self, number: int, status: str) -> None:
        self.status[number] = status
        await self.call(
            call.StatusNotification(connector_id=number, error_code="NoError", status=status)
        )

    def _limit(self, number: int, point: str) -> float | None:
        socket = self._meter(point).settings.socket
        return limit_a(
            self.profiles,
            number,
            datetime.now(UTC),
            self.transactions.get(number),
            self.started.get(number),
            socket.phases if socket is not None else 1,
        )

    def _obey(self, number: int, point: str, energized_changed: bool = False) -> None:
        """The car under the connector's limit now: the meter follows at once."""
        limit = self._limit(number, point)
        meter = self._meter(point)
        if limit != meter.limit_a or energized_changed:
            meter.limit_a = limit
            self.model.refresh()

    async def _report(self, number: int, point: str, now: float) -> None:
        """During a transaction: Charging or SuspendedEVSE as the limit allows, and
        MeterValues every `meter_values_s`."""
        if number not in self.transactions:
            return
        limit = self._meter(point).limit_a
        status = "SuspendedEVSE" if limit is not None and limit < MIN_CHARGE_A else "Charging"
        if self.status.get(number) != status:
            await self._status(number, status)
        if self.meter_values_s > 0 and now - self.sampled[number] >= self.meter_values_s:
            self.sampled[number] = now
            await self._meter_values(number, point)

    async def _meter_values(self, number: int, point: str) -> None:
        meter = self._meter(point)
        values = self.model.values(point)
        socket = meter.settings.socket
        # What the charger offers is what a car wanting the socket's rating may draw.
        offered = draws_a(socket.rated_current_a if socket is not None else 0.0, meter.limit_a)
        sampled = [
            ("Energy.Active.Import.Register", "Wh", f"{values['energy_wh']:.0f}"),
            ("Power.Active.Import", "W", f"{values['power_w']:.0f}"),
            ("Current.Import", "A", f"{values['current_a']:.1f}"),
            ("Current.Offered", "A", f"{offered:.1f}"),
        ]
        await self.call(
            call.MeterValues(
                connector_id=number,
                transaction_id=self.transactions[number],
                meter_value=[
                    {
                        "timestamp": _now(),
                        "sampled_value": [
                            {
                                "value": value,
                                "context": "Sample.Periodic",
                                "measurand": measurand,
                                "unit": unit,
                            }
                            for measurand, unit, value in sampled
                        ],
                    }
                ],
            )
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
        number = p["connector_id"]
        try:
            if number != 0 and number not in self.connectors:
                raise ValueError(f"no connector {number}")
            profile = parse_profile(number, p["cs_charging_profiles"])
            if profile.purpose == "TxProfile" and number not in self.transactions:
                raise ValueError(f"TxProfile: no transaction on connector {number}")
        except ValueError as exc:
            log.warning("%s: charging profile rejected: %s", self.id, exc)
            return call_result.SetChargingProfile(status="Rejected")
        self.profiles = installed(self.profiles, profile)
        self._obey_all()
        return call_result.SetChargingProfile(status="Accepted")

    @on(Action.clear_charging_profile)
    def clear_profile(self, **p: Any) -> call_result.ClearChargingProfile:
        left = cleared(
            self.profiles,
            p.get("id"),
            p.get("connector_id"),
            p.get("charging_profile_purpose"),
            p.get("stack_level"),
        )
        known = len(left) < len(self.profiles)
        self.profiles = left
        self._obey_all()
        return call_result.ClearChargingProfile(status="Accepted" if known else "Unknown")

    def _obey_all(self) -> None:
        for number, point in self.points.items():
            self._obey(number, point)


async def play_charger(
    settings: ChargerSettings,
    url: str,
    model: SiteModel,
    badges: Mapping[str, str],
    meter_values_s: float = METER_VALUES_S,
) -> None:
    """Connect (again after any failure, every RETRY_S) and play until cancelled; what the
    charger was doing goes on across its connections."""
    memory = ChargerMemory()
    password = settings.password.get_secret_value()
    scheme, _, address = url.partition("://")
    target = f"{scheme}://{settings.id}:{password}@{address.rstrip('/')}/{settings.id}"
    while True:
        try:
            async with connect(target, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
                charger = SimulatedCharger(settings, ws, model, badges, meter_values_s, memory)
                log.info("charger %s connected to %s", settings.id, url)
                await asyncio.gather(charger.start(), charger.play())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a refused or lost link: the charger tries again
            log.warning("charger %s: %s; again in %.0f s", settings.id, exc, RETRY_S)
        await asyncio.sleep(RETRY_S)


async def play_chargers(
    site: SiteConfig,
    model: SiteModel,
    url: str,
    badges: Mapping[str, str],
    meter_values_s: float = METER_VALUES_S,
) -> None:
    await asyncio.gather(
        *(play_charger(c, url, model, badges, meter_values_s) for c in site.chargers)
    )
