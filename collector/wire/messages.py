"""The messages the collector publishes and the ingestor reads (one definition for both sides).

Field names and meanings are fixed by the public interface (SPEC.md). Every model refuses NaN and
infinities, so a bogus number can never travel from a meter to the database.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime
from datetime import date as _Date
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

MAX_PAYLOAD_BYTES = 64 * 1024
BADGE_MAX_CHARS = 64


def badge_problem(badge: str) -> str | None:
    """Why a badge (surrounding spaces already removed) is refused, or None.

    Control and invisible characters (newline, tab, ...) and backslashes are refused: the
    database stores them escaped in tags, where `irve bill --badge` could never find them,
    and a newline would forge log lines."""
    if not badge:
        return "must not be blank"
    if len(badge) > BADGE_MAX_CHARS:
        return f"has {len(badge)} characters, at most {BADGE_MAX_CHARS} allowed"
    bad = sorted({c for c in badge if c == "\\" or unicodedata.category(c).startswith("C")})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        return f"contains {shown}: control characters and backslashes are not allowed"
    return None


def format_ts(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, as every timestamp on the wire."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware")
    # isoformat, not strftime: several per reading, and three times cheaper.
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (use ...Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError("timestamp is outside the years 1..9999 in UTC") from None


# Pydantic would also take a number, or a string of digits, as Unix seconds: the wire format is
# ISO 8601 (SPEC), and a bare number says nothing about its unit or time zone.
_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


Timestamp = Annotated[datetime, PlainSerializer(format_ts, return_type=str)]
# One encoder for every state message (json.dumps builds one per call when given options).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
Period = Literal[
    "BASE",
    "HP",
    "HC",
    "TEMPO_BLUE_HP",
    "TEMPO_BLUE_HC",
    "TEMPO_WHITE_HP",
    "TEMPO_WHITE_HC",
    "TEMPO_RED_HP",
    "TEMPO_RED_HC",
]
# The tariff periods in the order statements and reports list them.
PERIODS: tuple[Period, ...] = ("HP", "HC", "BASE", *get_args(Period)[3:])
AlertName = Literal[
    "socket_overcurrent",
    "site_overload",
    "site_overload_warning",
    "meter_offline",
    "charger_offline",
]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()

    @classmethod
    def from_payload(cls, payload: bytes | bytearray) -> Any:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        return cls.model_validate_json(payload)


class _Timed(Message):
    @field_validator("ts", "start", "end", "until", "last_seen", mode="before", check_fields=False)
    @classmethod
    def _iso(cls, value: Any) -> Any:
        if isinstance(value, str) and not _ISO_DATE_TIME.match(value):
            raise ValueError("timestamp must be ISO 8601 date and time (2026-11-23T10:15:02.123Z)")
        if isinstance(value, int | float):
            raise ValueError("timestamp must be an ISO 8601 string, not a number")
        return value

    @field_validator("ts", "start", "end", "until", "last_seen", mode="after", check_fields=False)
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # Optional timestamps (SessionMessage.start) may be null.
        return None if value is None else _require_aware(value)


class StateMessage(_Timed):
    """Retained `irve/{site}/{point}/state`: the latest reading of one meter."""

    ts: Timestamp
    power_w: float | None
    current_a: float | None
    voltage_v: float | None
    energy_wh: float | None
    currents_a: list[float | None] | None = None
    voltages_v: list[float | None] | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None
    export_energy_wh: float | None = None
    charging: bool | None = None
    # Which meter this is (SPEC `reading.role` tag); the ingestor assumes "socket" when absent.
    role: Literal["socket", "main"] | None = None
    # The limits this meter is judged by, from the site file, so that dashboards and alert
    # rules compare each series with its own site's limits: a socket's rated current; the
    # main meter's subscribed power and pre-alarm threshold, in W.
    rated_current_a: float | None = Field(default=None, gt=0)
    limit_w: float | None = Field(default=None, gt=0)
    warning_w: float | None = Field(default=None, gt=0)

    def to_json(self) -> bytes:
        """Optional keys are left out rather than sent as null; the four core keys always
        appear. Built from the fields directly rather than with `model_dump`: one of these per
        reading, and pydantic's serializer cost more than the rest of the message
        (tests/wire/test_state_json.py checks it against `model_dump`). Non-finite numbers
        raise ValueError, as validation would."""
        data = {key: value for key, value in self.__dict__.items() if value is not None}
        data["ts"] = format_ts(self.ts)
        for key in ("power_w", "current_a", "voltage_v", "energy_wh"):
            data.setdefault(key, None)
        return _COMPACT_JSON(data).encode()


class EnergyMessage(_Timed):
    """`irve/{site}/{point}/energy`: energy drawn in one window that lies in one tariff period."""

    start: Timestamp
    end: Timestamp
    energy_wh: float = Field(ge=0)
    period: Period
    price_eur_kwh: float = Field(ge=0)
    cost_eur: float = Field(ge=0)
    index_start_wh: float | None
    index_end_wh: float | None
    # Set when the energy was shared out over a gap (restart, outage) rather than measured
    # inside this window, or when a Tempo day's colour was unknown; the ingestor keeps it as a
    # field so reports can show it.
    estimated: bool = False
    # True when priced at the Tempo fallback colour because the day's colour was unknown
    # (absent otherwise): `irve recompute` re-prices such windows once the colour is known.
    tempo_fallback: bool | None = None

    def to_json(self) -> bytes:
        # The key is left out when absent, so other contracts' messages stay as they were.
        drop = {"tempo_fallback"} if self.tempo_fallback is None else None
        return self.model_dump_json(exclude=drop).encode()


class TempoMessage(Message):
    """`irve/{site}/tempo` (retained, in): the colour of the Tempo day that starts at 06:00
    local time on `date`, for sites whose colours come from MQTT (`tempo.source: mqtt`)."""

    date: _Date
    colour: Literal["blue", "white", "red"]


class SubscriptionMessage(_Timed):
    """Retained `irve/{site}/subscription`: the share of the monthly subscription (abonnement)
    one local day bears, the month's figure / its number of days; `ts` is the day's local
    midnight. Kept apart from energy costs: never in a kWh price or a guest's statement."""

    ts: Timestamp
    day: _Date
    kva: int | None = Field(default=None, ge=1, le=1000)
    option: str
    per_month_eur: float = Field(ge=0)
    cost_eur: float = Field(ge=0)
    source: str  # "site file", or the key of the supplier table's source


class PeriodTotal(Message):
    energy_wh: float = Field(ge=0)
    cost_eur: float = Field(ge=0)


class SessionMessage(_Timed):
    """`irve/{site}/{point}/session`: start and end of a guest's charging session."""

    event: Literal["start", "end"]
    session_id: str = Field(min_length=1, max_length=64)
    ts: Timestamp
    badge: str | None = None
    energy_wh: float = Field(ge=0)
    cost_eur: float = Field(ge=0)
    duration_s: float = Field(ge=0)
    max_power_w: float = Field(ge=0)
    start: Timestamp | None = None
    periods: dict[Period, PeriodTotal] = Field(default_factory=dict)
    # Sessions of a point served by an OCPP charger: the room of the badge list, the charger's
    # transaction and its own energy count (the MID meter's `energy_wh` stays the billing truth).
    room: str | None = Field(default=None, max_length=64)
    source: Literal["ocpp", "meter"] | None = None
    transaction_id: int | None = None
    charger_energy_wh: float | None = Field(default=None, ge=0)

    def to_json(self) -> bytes:
        # The OCPP keys are left out when absent, so that a meter session's payload is the same
        # as before they existed.
        data = self.model_dump(mode="json")
        for key in _SESSION_OPTIONAL:
            if data[key] is None:
                del data[key]
        return json.dumps(data, separators=(",", ":")).encode()


_SESSION_OPTIONAL = ("room", "source", "transaction_id", "charger_energy_wh")


class AlertMessage(_Timed):
    """`irve/{site}/alert`: an alert firing or resolving."""

    ts: Timestamp
    alert: AlertName
    state: Literal["firing", "resolved"]
    point: str
    value: float | None
    limit: float | None
    message: str


class ShedMessage(_Timed):
    """Retained `irve/{site}/shed`: how much building systems should take off the site."""

    ts: Timestamp
    active: bool
    excess_w: float = Field(ge=0)
    reason: str


class EventMessage(_Timed):
    """`irve/{site}/{point}/event`: something the owner should know that is not an alert
    (index reset, meter replaced, counter wrap, implausible jump, energy estimated over a gap)."""

    ts: Timestamp
    event: str = Field(min_length=1, max_length=64)
    message: str
    details: dict[str, float | str | bool | None] = Field(default_factory=dict)


class _OnOff(Message):
    """A bare `online` / `offline` payload (no JSON, no timestamp)."""

    WHAT: ClassVar[str] = "payload"

    online: bool

    def to_json(self) -> bytes:
        return b"online" if self.online else b"offline"

    @classmethod
    def from_payload(cls, payload: bytes | bytearray) -> Any:
        text = payload.strip()
        if text in (b"online", b"offline"):
            return cls(online=text == b"online")
        raise ValueError(f"{cls.WHAT} must be 'online' or 'offline', not {payload[:40]!r}")


class AvailabilityMessage(_OnOff):
    """Retained `irve/{site}/{point}/availability`: the meter answers or not."""

    WHAT: ClassVar[str] = "availability"


class StatusMessage(_OnOff):
    """Retained `irve/{site}/status`: the collector is running (its last will says offline)."""

    WHAT: ClassVar[str] = "status"


class BadgeMessage(Message):
    """Input on `irve/{site}/{point}/badge` from an RFID reader or the front desk."""

    badge: str

    @field_validator("badge")
    @classmethod
    def _valid(cls, value: str) -> str:
        value = value.strip()
        problem = badge_problem(value)
        if problem is not None:
            raise ValueError(f"badge {problem}")
        return value


class BadgeEntry(_Timed):
    badge: str = Field(min_length=1, max_length=BADGE_MAX_CHARS)
    room: str | None = None
    until: Timestamp | None = None


class BadgesMessage(_Timed):
    """Retained input `irve/{site}/badges` from the front desk: the whole list each time."""

    ts: Timestamp
    badges: list[BadgeEntry]


ChargePointStatus = Literal[
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEV",
    "SuspendedEVSE",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
    "offline",
]


class ConnectorMessage(_Timed):
    """Retained `irve/{site}/{point}/connector`: an OCPP connector's status (or `offline`)."""

    ts: Timestamp
    charger: str = Field(min_length=1, max_length=48)
    connector: int = Field(ge=0)
    status: ChargePointStatus
    error_code: str = Field(max_length=64)
    info: str | None = Field(default=None, max_length=500)


LimitReason = Literal["none", "overload", "schedule", "failsafe"]
# What an actuator reports: its own outcome (OCPP answers lower-cased: accepted, rejected,
# offline, timeout...; KNX: sent, failed, timeout, offline), or `advisory` for the retained `shed`.
ActuatorOutcome = Annotated[str, Field(min_length=1, max_length=32)]


class LimitMessage(_Timed):
    """Retained `irve/{site}/{point}/limit`: the current the load management allows the socket
    (0 = paused, null = no limit), why, and what each of its actuators did with it."""

    ts: Timestamp
    current_a: float | None = Field(ge=0, le=1000)
    reason: LimitReason
    actuators: dict[Annotated[str, Field(min_length=1, max_length=16)], ActuatorOutcome] = Field(
        default_factory=dict
    )


class ChargerMessage(_Timed):
    """Retained `irve/{site}/chargers/{charger}`: whether it talks to us, and what it is."""

    ts: Timestamp
    online: bool
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    last_seen: Timestamp | None = None


CommandAction = Literal["start", "stop", "unlock", "disable", "enable"]


class CommandMessage(Message):
    """Input on `irve/{site}/{point}/command`: an order for the point's charger."""

    action: CommandAction
    badge: str | None = None

    @field_validator("badge")
    @classmethod
    def _valid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        problem = badge_problem(value)
        if problem is not None:
            raise ValueError(f"badge {problem}")
        return value
