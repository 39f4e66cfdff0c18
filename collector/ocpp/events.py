"""What the central system tells the rest of the collector: typed domain events.

The core (collector.ocpp.core) returns them; the wiring into `irve collect` turns them into
MQTT messages (charger info, connector status, sessions, command answers, alerts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ChargerBooted:
    ts: datetime
    charger: str
    vendor: str
    model: str
    serial: str | None
    firmware: str | None


@dataclass(frozen=True)
class ChargerOnline:
    ts: datetime
    charger: str


@dataclass(frozen=True)
class ChargerOffline:
    """The charger missed `offline_after_heartbeats` heartbeats (that many intervals and a half)."""

    ts: datetime
    charger: str
    last_seen: datetime


@dataclass(frozen=True)
class ConnectorStatus:
    ts: datetime
    charger: str
    connector: int
    point: str | None  # None: connector 0 (the whole charger) or one the site file does not map
    status: str  # OCPP 1.6 ChargePointStatus, or "offline"
    error_code: str
    info: str | None


@dataclass(frozen=True)
class TransactionStarted:
    ts: datetime  # the charger's start time (earlier than now for a transaction it queued)
    charger: str
    connector: int
    point: str | None
    transaction_id: int
    badge: str
    room: str | None
    authorization: str  # the IdTagInfo status answered: Accepted, Invalid, Expired...
    meter_start_wh: int


@dataclass(frozen=True)
class TransactionEnded:
    start: datetime | None  # None: a stop for a transaction this central system never saw start
    end: datetime
    charger: str
    connector: int | None
    point: str | None
    transaction_id: int
    badge: str | None
    room: str | None
    reason: str | None
    meter_start_wh: int | None
    meter_stop_wh: int
    charger_energy_wh: float | None  # the charger's own count; the MID meter stays the truth


@dataclass(frozen=True)
class CommandResult:
    ts: datetime
    charger: str
    connector: int
    point: str | None
    action: str  # start, stop, unlock, disable, enable, limit, clear_limit, local_list
    status: str  # the charger's answer (Accepted, Rejected, ...), or Timeout / CallError
    detail: str | None = None


@dataclass(frozen=True)
class ChargerWarning:
    """Something a charger sent that was understood only in part; one per charger and kind."""

    ts: datetime
    charger: str
    kind: str
    text: str


Event = (
    ChargerBooted
    | ChargerOnline
    | ChargerOffline
    | ConnectorStatus
    | TransactionStarted
    | TransactionEnded
    | CommandResult
    | ChargerWarning
)
