"""The central system's decisions, without I/O: the shell (collector.ocpp.server) passes in what
a charger sent and the time, and gets back the answer and the domain events.

Transaction ids come from a counter that is part of `state()`: the shell stores it before it
answers, so an id is never handed out twice, even across restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from ocpp.v16 import call

from collector.ocpp.events import (
    ChargerBooted,
    ChargerOffline,
    ChargerOnline,
    ChargerWarning,
    CommandResult,
    ConnectorStatus,
    Event,
    TransactionEnded,
    TransactionStarted,
)

AuthorizeMode = Literal["list", "any", "free"]
CommandAction = Literal["start", "stop", "unlock", "disable", "enable"]
COMMAND_ACTIONS: tuple[str, ...] = ("start", "stop", "unlock", "disable", "enable")

# Profile ids we own on each connector: setting a limit again replaces ours, clearing removes
# only ours (an installer's own profiles on the charger are left alone).
PROFILE_ID_BASE = 7100
ENERGY_MEASURANDS = {
    "Energy.Active.Import.Register": "register",
    "Energy.Active.Import.Interval": "interval",
}
KNOWN_MEASURANDS = {
    "Current.Export",
    "Current.Import",
    "Current.Offered",
    "Energy.Active.Export.Register",
    "Energy.Active.Import.Register",
    "Energy.Reactive.Export.Register",
    "Energy.Reactive.Import.Register",
    "Energy.Active.Export.Interval",
    "Energy.Active.Import.Interval",
    "Energy.Reactive.Export.Interval",
    "Energy.Reactive.Import.Interval",
    "Frequency",
    "Power.Active.Export",
    "Power.Active.Import",
    "Power.Factor",
    "Power.Offered",
    "Power.Reactive.Export",
    "Power.Reactive.Import",
    "RPM",
    "SoC",
    "Temperature",
    "Voltage",
}
_UNIT_TO_WH = {"Wh": 1.0, "kWh": 1000.0}


class CommandError(Exception):
    """A command that cannot be sent (unknown point, no transaction to stop...), said plainly."""


@dataclass(frozen=True)
class Badge:
    badge: str
    room: str | None
    until: datetime | None  # None: no end


def parse_ts(value: object) -> datetime | None:
    """An OCPP timestamp (`2026-12-06T04:10:00Z`, offsets, fractions) as aware UTC; None if not."""
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_badge_list(payload: object) -> tuple[list[Badge], list[str]]:
    """The front desk's `{"ts", "badges": [{"badge", "room", "until"}]}`: the badges that can be
    understood and one line per entry that cannot (which is left out, never guessed)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("badges"), list):
        return [], ['expected {"ts": ..., "badges": [{"badge", "room", "until"}, ...]}']
    badges: list[Badge] = []
    problems: list[str] = []
    for i, entry in enumerate(payload["badges"]):
        where = f"badges[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object")
            continue
        tag = entry.get("badge")
        if not isinstance(tag, str) or not tag.strip() or len(tag.strip()) > 20:
            problems.append(f"{where}.badge: expected an id of 1..20 characters")
            continue
        room = entry.get("room")
        if room is not None and not isinstance(room, str | int):
            problems.append(f"{where}.room: expected text")
            continue
        until = parse_ts(entry.get("until"))
        if entry.get("until") is not None and until is None:
            problems.append(f"{where}.until: {entry.get('until')!r} is not an ISO 8601 time")
            continue
        badges.append(Badge(tag.strip(), None if room is None else str(room), until))
    return badges, problems


@dataclass
class Transaction:
    id: int
    charger: str
    connector: int
    badge: str
    room: str | None
    start: datetime
    meter_start_wh: int
    # Energy.Active.Import.Interval samples by (timestamp, phase): a message the charger sends
    # twice (its answer lost) is not counted twice.
    intervals: dict[str, float] = field(default_factory=dict)
    # Energy.Active.Import.Register totals by timestamp: tell a lifetime index sent with
    # `meterStart: 0` from a counter that starts at zero.
    registers: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (a deep copy, the bulk of a save's time): the sample
        # dicts are copied, so that the snapshot can be encoded off the event loop.
        return {
            "id": self.id,
            "charger": self.charger,
            "connector": self.connector,
            "badge": self.badge,
            "room": self.room,
            "start": format_ts(self.start),
            "meter_start_wh": self.meter_start_wh,
            "intervals": dict(self.intervals),
            "registers": dict(self.registers),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transaction:
        start = parse_ts(data["start"])
        if start is None:
            raise ValueError(f"transaction {data.get('id')}: bad start {data['start']!r}")
        return cls(
            id=int(data["id"]),
            charger=str(data["charger"]),
            connector=int(data["connector"]),
            badge=str(data["badge"]),
            room=None if data.get("room") is None else str(data["room"]),
            start=start,
            meter_start_wh=int(data["meter_start_wh"]),
            intervals={str(k): float(v) for k, v in dict(data.get("intervals", {})).items()},
            registers={str(k): float(v) for k, v in dict(data.get("registers", {})).items()},
        )


@dataclass
class Connector:
    status: str = "Unknown"
    error_code: str = "NoError"
    transaction_id: int | None = None


@dataclass
class Charger:
    id: str
    points: dict[int, str]  # connector id -> meter id
    last_seen: datetime
    online: bool | None = None  # None: not heard of since start, not yet timed out either
    connectors: dict[int, Connector] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)

    def connector(self, number: int) -> Connector:
        return self.connectors.setdefault(number, Connector())


@dataclass(frozen=True)
class Outgoing:
    """A request for the shell to send to a charger (an `ocpp.v16.call` payload)."""

    charger: str
    connector: int
    point: str | None
    action: str
    request: Any


@dataclass(frozen=True)
class Authorization:
    status: str  # Accepted, Invalid, Expired (OCPP 1.6 AuthorizationStatus)
    badge: Badge | None
    expiry: datetime | None = None  # told to the charger, which caches the answer until then

    def id_tag_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"status": self.status}
        if self.expiry is not None:
            info["expiry_date"] = format_ts(self.expiry)
        return info


class CentralCore:
    def __init__(
        self,
        chargers: Mapping[str, Mapping[int, str]],
        authorize: AuthorizeMode,
        heartbeat_s: int,
        offline_after_heartbeats: int,
        now: datetime,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        self.authorize_mode: AuthorizeMode = authorize
        self.heartbeat_s = heartbeat_s
        # N missed heartbeats: the N-th is due at N intervals, missed half an interval later
        # (a box's clock and the network make it a little late; the meters' rule is the same).
        self.offline_after = timedelta(seconds=heartbeat_s * (offline_after_heartbeats + 0.5))
        self.chargers = {
            cid: Charger(cid, dict(points), last_seen=now) for cid, points in chargers.items()
        }
        self.badges: dict[str, Badge] = {}
        self._saved_badges: list[dict[str, Any]] | None = None  # self.badges as saved
        self.transactions: dict[int, Transaction] = {}
        self.next_transaction_id = 1
        self.local_list_version = 0
        self.dirty = False  # state() changed since the shell last stored it
        if state:
            self._load(state)

    # -- persistent state ------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "next_transaction_id": self.next_transaction_id,
            "local_list_version": self.local_list_version,
            "transactions": [t.to_json() for t in self.transactions.values()],
            # Kept so that a restart answers from the last list before the broker's retained
            # copy arrives, and that copy then changes nothing (no new local list version).
            "badges": self._badges_json(),
        }

    def _badges_json(self) -> list[dict[str, Any]]:
        """The list as saved, made once per list (every save has it, the list rarely changes);
        never changed afterwards, so a snapshot may share it."""
        if self._saved_badges is None:
            self._saved_badges = [
                {"badge": b.badge, "room": b.room, "until": format_ts(b.until) if b.until else None}
                for b in self.badges.values()
            ]
        return self._saved_badges

    def _load(self, state: Mapping[str, Any]) -> None:
        self.next_transaction_id = max(1, int(state.get("next_transaction_id", 1)))
        self.local_list_version = int(state.get("local_list_version", 0))
        badges, _ = parse_badge_list({"badges": state.get("badges", [])})
        self.badges = {b.badge.upper(): b for b in badges}
        self._saved_badges = None
        for data in state.get("transactions", []):
            transaction = Transaction.from_json(data)
            self.transactions[transaction.id] = transaction
            self.next_transaction_id = max(self.next_transaction_id, transaction.id + 1)
            if transaction.charger in self.chargers:
                charger = self.chargers[transaction.charger]
                charger.connector(transaction.connector).transaction_id = transaction.id

    # -- badges ----------------------------------------------------------------------------

    def set_badges(self, badges: Iterable[Badge]) -> bool:
        """Replace the badge list; True (and a new local list version) when it changed."""
        new = {b.badge.upper(): b for b in badges}
        if new == self.badges:
            return False
        self.badges = new
        self._saved_badges = None
        self.local_list_version += 1
        self.dirty = True
        return True

    def check_badge(self, id_tag: str, at: datetime) -> Authorization:
        badge = self.badges.get(id_tag.upper())
        if self.authorize_mode != "list":
            return Authorization("Accepted", badge)
        if badge is None:
            return Authorization("Invalid", None)
        if badge.until is not None and badge.until <= at:
            return Authorization("Expired", badge)
        return Authorization("Accepted", badge, badge.until)

    def local_list(self, now: datetime) -> list[dict[str, Any]]:
        """The full local authorization list: the badges valid now, with their end."""
        if self.authorize_mode != "list":
            return []
        return [
            {"id_tag": b.badge, "id_tag_info": Authorization("Accepted", b, b.until).id_tag_info()}
            for b in self.badges.values()
            if b.until is None or b.until > now
        ]

    # -- messages from chargers --------------------------------------------------------------

    def heard(self, charger_id: str, now: datetime) -> list[Event]:
        """Any message from the charger: it is alive."""
        charger = self.chargers[charger_id]
        charger.last_seen = now
        if charger.online:
            return []
        charger.online = True
        return [ChargerOnline(now, charger_id)]

    def malformed(self, charger_id: str, now: datetime, kind: str, text: str) -> list[Event]:
        """A frame refused with a CALLERROR by the shell: said once per charger and kind."""
        return self.heard(charger_id, now) + self._warn(self.chargers[charger_id], now, kind, text)

    def boot(
        self,
        charger_id: str,
        now: datetime,
        vendor: str,
        model: str,
        serial: str | None,
        firmware: str | None,
    ) -> tuple[dict[str, Any], list[Event]]:
        events = self.heard(charger_id, now)
        events.append(ChargerBooted(now, charger_id, vendor, model, serial, firmware))
        reply = {"current_time": format_ts(now), "interval": self.heartbeat_s, "status": "Accepted"}
        return reply, events

    def status(
        self,
        charger_id: str,
        now: datetime,
        connector_id: int,
        status: str,
        error_code: str,
        info: str | None,
        timestamp: str | None,
    ) -> list[Event]:
        events = self.heard(charger_id, now)
        charger = self.chargers[charger_id]
        connector = charger.connector(connector_id)
        connector.status, connector.error_code = status, error_code
        point = charger.points.get(connector_id)
        if point is None and connector_id != 0:
            events += self._warn(
                charger, now, f"connector {connector_id}", "not in the site file's connectors"
            )
        ts = parse_ts(timestamp) or now
        events.append(
            ConnectorStatus(ts, charger_id, connector_id, point, status, error_code, info)
        )
        return events

    def authorize(
        self, charger_id: str, now: datetime, id_tag: str
    ) -> tuple[Authorization, list[Event]]:
        return self.check_badge(id_tag, now), self.heard(charger_id, now)

    def start_transaction(
        self,
        charger_id: str,
        now: datetime,
        connector_id: int,
        id_tag: str,
        meter_start: int,
        timestamp: str,
    ) -> tuple[int, Authorization, list[Event]]:
        """A transaction the charger started (maybe while the link was down: it then arrives
        late, with its real start time, and the badge is judged at that time)."""
        events = self.heard(charger_id, now)
        charger = self.chargers[charger_id]
        start = parse_ts(timestamp)
        if start is None:
            events += self._warn(charger, now, "timestamp", f"{timestamp!r}: using receipt time")
            start = now
        authorization = self.check_badge(id_tag, min(start, now))
        # The same start again: its answer was lost with the link, and a charger sends a
        # transaction message until it is answered. Its id again, not a second session.
        same = (charger_id, connector_id, id_tag, start, meter_start)
        for t in self.transactions.values():
            if (t.charger, t.connector, t.badge, t.start, t.meter_start_wh) == same:
                return t.id, authorization, events
        transaction = Transaction(
            id=self.next_transaction_id,
            charger=charger_id,
            connector=connector_id,
            badge=id_tag,
            room=authorization.badge.room if authorization.badge else None,
            start=start,
            meter_start_wh=meter_start,
        )
        self.next_transaction_id += 1
        self.transactions[transaction.id] = transaction
        charger.connector(connector_id).transaction_id = transaction.id
        self.dirty = True
        events.append(
            TransactionStarted(
                start,
                charger_id,
                connector_id,
                charger.points.get(connector_id),
                transaction.id,
                id_tag,
                transaction.room,
                authorization.status,
                meter_start,
            )
        )
        return transaction.id, authorization, events

    def cancel_start(self, transaction_id: int) -> None:
        """Forget a start whose answer could not be given (its id is not handed out again)."""
        transaction = self.transactions.pop(transaction_id, None)
        if transaction is not None and transaction.charger in self.chargers:
            connector = self.chargers[transaction.charger].connector(transaction.connector)
            if connector.transaction_id == transaction_id:
                connector.transaction_id = None

    def meter_values(
        self,
        charger_id: str,
        now: datetime,
        connector_id: int,
        transaction_id: int | None,
        meter_values: Sequence[Any],
    ) -> list[Event]:
        events = self.heard(charger_id, now)
        charger = self.chargers[charger_id]
        if transaction_id is None:
            transaction_id = charger.connector(connector_id).transaction_id
        transaction = self.transactions.get(transaction_id) if transaction_id else None
        if transaction_id is not None and transaction is None:
            events += self._warn(
                charger,
                now,
                "transaction",
                f"meter values for unknown transaction {transaction_id}",
            )
        events += self._samples(charger, now, transaction, meter_values)
        return events

    def stop_transaction(
        self,
        charger_id: str,
        now: datetime,
        transaction_id: int,
        meter_stop: int,
        timestamp: str,
        reason: str | None,
        id_tag: str | None,
        transaction_data: Sequence[Any] | None,
    ) -> tuple[Authorization | None, list[Event]]:
        events = self.heard(charger_id, now)
        charger = self.chargers[charger_id]
        end = parse_ts(timestamp)
        if end is None:
            events += self._warn(charger, now, "timestamp", f"{timestamp!r}: using receipt time")
            end = now
        transaction = self.transactions.pop(transaction_id, None)
        if transaction is None:
            events += self._warn(
                charger, now, "transaction", f"stop for unknown transaction {transaction_id}"
            )
        events += self._samples(charger, now, transaction, transaction_data or [])
        authorization = self.check_badge(id_tag, min(end, now)) if id_tag else None
        connector_id = transaction.connector if transaction else None
        if transaction is not None:
            connector = charger.connector(transaction.connector)
            if connector.transaction_id == transaction_id:
                connector.transaction_id = None
        self.dirty = True
        energy = _charger_energy(transaction, meter_stop)
        if energy is None and transaction is not None:
            events += self._warn(
                charger,
                now,
                "meter_stop",
                f"meterStop {meter_stop} below meterStart {transaction.meter_start_wh}",
            )
        events.append(
            TransactionEnded(
                start=transaction.start if transaction else None,
                end=end,
                charger=charger_id,
                connector=connector_id,
                point=charger.points.get(connector_id) if connector_id is not None else None,
                transaction_id=transaction_id,
                badge=transaction.badge if transaction else id_tag,
                room=transaction.room if transaction else None,
                reason=reason,
                meter_start_wh=transaction.meter_start_wh if transaction else None,
                meter_stop_wh=meter_stop,
                charger_energy_wh=energy,
            )
        )
        return authorization, events

    def tick(self, now: datetime) -> list[Event]:
        """Chargers silent for too long go offline, with each of their connectors."""
        events: list[Event] = []
        for charger in self.chargers.values():
            if charger.online is False or now - charger.last_seen < self.offline_after:
                continue
            charger.online = False
            events.append(ChargerOffline(now, charger.id, charger.last_seen))
            for number, point in sorted(charger.points.items()):
                connector = charger.connector(number)
                connector.status = "offline"
                events.append(
                    ConnectorStatus(now, charger.id, number, point, "offline", "NoError", None)
                )
        return events

    # -- commands ------------------------------------------------------------------------------

    def command(
        self,
        point: str,
        action: str,
        now: datetime,
        badge: str | None = None,
        connector: int | None = None,
    ) -> list[Outgoing]:
        """`irve/{site}/{point}/command` as the requests to send; CommandError if it cannot be."""
        charger, numbers = self._point(point, connector)
        if action == "start":
            if not badge:
                raise CommandError("start: a badge is needed")
            authorization = self.check_badge(badge, now)
            if authorization.status != "Accepted":
                raise CommandError(f"start: badge {badge!r} is {authorization.status.lower()}")
            number = self._pick(charger, numbers, ("Preparing", "Available"))
            request: Any = call.RemoteStartTransaction(id_tag=badge, connector_id=number)
            return [Outgoing(charger.id, number, point, action, request)]
        if action == "stop":
            for number in numbers:
                transaction_id = charger.connector(number).transaction_id
                if transaction_id is not None:
                    request = call.RemoteStopTransaction(transaction_id=transaction_id)
                    return [Outgoing(charger.id, number, point, action, request)]
            raise CommandError(f"stop: no transaction on {point}")
        if action == "unlock":
            busy = ("Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Preparing", "Faulted")
            number = self._pick(charger, numbers, busy)
            request = call.UnlockConnector(connector_id=number)
            return [Outgoing(charger.id, number, point, action, request)]
        if action in ("disable", "enable"):
            kind = "Inoperative" if action == "disable" else "Operative"
            return [
                Outgoing(
                    charger.id, n, point, action, call.ChangeAvailability(connector_id=n, type=kind)
                )
                for n in numbers
            ]
        raise CommandError(f"{action!r}: not one of {', '.join(COMMAND_ACTIONS)}")

    def set_limit(
        self,
        point: str,
        current_a: float,
        now: datetime,
        duration_s: int | None = None,
        connector: int | None = None,
    ) -> list[Outgoing]:
        """A current limit on the point's connectors (TxDefaultProfile, so it also holds for the
        next transaction), ending after `duration_s` so that a limit the collector can no longer
        renew does not outlive it."""
        charger, numbers = self._point(point, connector)
        if current_a < 0:
            raise CommandError(f"limit: {current_a} A is negative")
        schedule: dict[str, Any] = {
            "charging_rate_unit": "A",
            "charging_schedule_period": [{"start_period": 0, "limit": round(current_a, 1)}],
            "start_schedule": format_ts(now),
        }
        profile: dict[str, Any] = {
            "stack_level": 0,
            "charging_profile_purpose": "TxDefaultProfile",
            "charging_profile_kind": "Absolute",
            "valid_from": format_ts(now),
            "charging_schedule": schedule,
        }
        if duration_s is not None:
            schedule["duration"] = duration_s
            profile["valid_to"] = format_ts(now + timedelta(seconds=duration_s))
        return [
            Outgoing(
                charger.id,
                n,
                point,
                "limit",
                call.SetChargingProfile(
                    connector_id=n,
                    cs_charging_profiles={"charging_profile_id": PROFILE_ID_BASE + n, **profile},
                ),
            )
            for n in numbers
        ]

    def clear_limit(self, point: str, connector: int | None = None) -> list[Outgoing]:
        charger, numbers = self._point(point, connector)
        return [
            Outgoing(
                charger.id,
                n,
                point,
                "clear_limit",
                call.ClearChargingProfile(id=PROFILE_ID_BASE + n, connector_id=n),
            )
            for n in numbers
        ]

    def command_result(
        self, outgoing: Outgoing, now: datetime, status: str, detail: str | None = None
    ) -> CommandResult:
        return CommandResult(
            now,
            outgoing.charger,
            outgoing.connector,
            outgoing.point,
            outgoing.action,
            status,
            detail,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _point(self, point: str, connector: int | None) -> tuple[Charger, list[int]]:
        for charger in self.chargers.values():
            numbers = sorted(n for n, p in charger.points.items() if p == point)
            if not numbers:
                continue
            if connector is None:
                return charger, numbers
            if connector in numbers:
                return charger, [connector]
            raise CommandError(f"{point}: connector {connector} is not one of {numbers}")
        raise CommandError(f"{point}: no charger serves this point")

    @staticmethod
    def _pick(charger: Charger, numbers: list[int], preferred: Sequence[str]) -> int:
        for status in preferred:
            for number in numbers:
                if charger.connector(number).status == status:
                    return number
        return numbers[0]

    def _warn(self, charger: Charger, now: datetime, kind: str, text: str) -> list[Event]:
        if kind in charger.warned:
            return []
        charger.warned.add(kind)
        return [ChargerWarning(now, charger.id, kind, text)]

    def _samples(
        self,
        charger: Charger,
        now: datetime,
        transaction: Transaction | None,
        meter_values: Sequence[Any],
    ) -> list[Event]:
        """Read what can be understood of MeterValues (or a stop's transactionData): interval
        energy is added to the transaction; a misspelt key, an unknown measurand or a value that
        is not a number is skipped with one warning per charger and kind."""
        events: list[Event] = []
        for meter_value in meter_values:
            if not isinstance(meter_value, dict) or not isinstance(
                meter_value.get("sampled_value"), list
            ):
                events += self._warn(charger, now, "meter_value", "a meterValue without samples")
                continue
            stamp = parse_ts(meter_value.get("timestamp"))
            for sample in meter_value["sampled_value"]:
                if not isinstance(sample, dict):
                    continue
                if "mesurand" in sample and "measurand" not in sample:
                    events += self._warn(charger, now, "mesurand", "'mesurand' read as 'measurand'")
                    sample = {**sample, "measurand": sample["mesurand"]}
                measurand = sample.get("measurand", "Energy.Active.Import.Register")
                if measurand not in KNOWN_MEASURANDS:
                    events += self._warn(
                        charger, now, f"measurand {measurand}", f"unknown measurand {measurand!r}"
                    )
                    continue
                kind = ENERGY_MEASURANDS.get(measurand)
                if kind is None or transaction is None:
                    continue
                wh = _sample_wh(sample)
                if wh is None:
                    events += self._warn(
                        charger, now, "value", f"{sample.get('value')!r} {sample.get('unit')!r}"
                    )
                    continue
                when = format_ts(stamp) if stamp else str(len(transaction.intervals))
                if kind == "interval":
                    store, key = transaction.intervals, f"{when}/{sample.get('phase', '')}"
                elif stamp is not None and not sample.get("phase"):
                    store, key = transaction.registers, when
                else:
                    continue
                if store.get(key) != wh:
                    store[key] = wh
                    self.dirty = True
        return events


def _sample_wh(sample: Mapping[str, Any]) -> float | None:
    factor = _UNIT_TO_WH.get(sample.get("unit", "Wh"))
    value = sample.get("value")
    if factor is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number * factor if number == number and abs(number) != float("inf") else None


# Above any AC charge point: a first index sample larger than this power could have delivered
# since the start is a lifetime index, not a count from zero.
_MAX_POWER_W = 50_000


def _charger_energy(transaction: Transaction | None, meter_stop: int) -> float | None:
    """The charger's own count for a transaction: meterStop - meterStart. With `meterStart: 0`
    (Legrand): the sum of its Energy.Active.Import.Interval samples when it sent some; else,
    when its first Register sample is a lifetime index, meterStop minus that sample (what came
    before the first sample is not known); else meterStop (a count from zero)."""
    if transaction is None:
        return None
    start = transaction.meter_start_wh
    if start == 0 and transaction.intervals:
        # Per-phase samples add up to the total; a charger sending both is counted once.
        totals = [wh for key, wh in transaction.intervals.items() if key.endswith("/")]
        return round(sum(totals or transaction.intervals.values()), 3)
    if start == 0 and transaction.registers:
        first_ts = min(transaction.registers)
        first = transaction.registers[first_ts]
        stamp = parse_ts(first_ts)
        hours = max(0.0, (stamp - transaction.start).total_seconds() / 3600) if stamp else 0.0
        if first > _MAX_POWER_W * hours + 100:
            last = max(meter_stop, transaction.registers[max(transaction.registers)])
            return round(last - first, 3)
        if meter_stop == 0:
            return transaction.registers[max(transaction.registers)]
    if meter_stop < start:
        return None
    return float(meter_stop - start)
