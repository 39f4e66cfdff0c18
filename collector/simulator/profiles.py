"""Charging profiles as an OCPP 1.6 charge point obeys them (pure: time is passed in).

The simulated chargers keep the profiles the central system sets (SetChargingProfile) and
clears (ClearChargingProfile) here, and ask for the current limit of a connector at a moment:
- purposes: a TxProfile (only during a transaction, and for its transaction id when it names
  one) prevails over a TxDefaultProfile; a TxDefaultProfile on the connector prevails over one
  on connector 0 (every connector); a ChargePointMaxProfile (connector 0) caps every
  connector (the simulated charger does not share it between connectors);
- within one purpose the highest stack level with a limit at that moment wins: a profile
  outside validFrom..validTo, or whose schedule has not begun or has ended (duration), leaves
  the decision to the levels below;
- schedules: Absolute (from startSchedule), Relative (from the transaction's start),
  Recurring (Daily or Weekly from startSchedule); the limit is that of the last period begun;
  limits in W become amperes at 230 V per phase (numberPhases, else the socket's phases).
Below 6 A (IEC 61851's least PWM current) a car draws nothing: `draws_a` says what it draws.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

NOMINAL_V = 230.0
MIN_CHARGE_A = 6.0
PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
KINDS = ("Absolute", "Relative", "Recurring")
RECURRENCY = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}


@dataclass(frozen=True)
class Period:
    start_s: int
    limit: float
    phases: int | None = None


@dataclass(frozen=True)
class Profile:
    id: int
    connector: int
    purpose: str
    stack_level: int
    kind: str
    unit: str  # "A" or "W"
    periods: tuple[Period, ...]
    start: datetime | None = None
    duration_s: int | None = None
    recurrency: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: int | None = None


def _time(payload: Mapping[str, Any], key: str) -> datetime | None:
    text = payload.get(key)
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError(f"{key}: {text!r} is not a time")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{key}: {text!r} is not a time") from None
    if when.tzinfo is None:
        raise ValueError(f"{key}: {text!r} has no time zone")
    return when


def parse_profile(connector: int, payload: Mapping[str, Any]) -> Profile:
    """A SetChargingProfile's `cs_charging_profiles` (snake_case keys, as the `ocpp` library
    hands them to a handler). Raises ValueError naming what is wrong."""
    try:
        purpose = payload["charging_profile_purpose"]
        kind = payload["charging_profile_kind"]
        schedule = payload["charging_schedule"]
        unit = schedule["charging_rate_unit"]
        periods = tuple(
            Period(int(p["start_period"]), float(p["limit"]), p.get("number_phases"))
            for p in schedule["charging_schedule_period"]
        )
        profile = Profile(
            id=int(payload["charging_profile_id"]),
            connector=connector,
            purpose=purpose,
            stack_level=int(payload["stack_level"]),
            kind=kind,
            unit=unit,
            periods=tuple(sorted(periods, key=lambda p: p.start_s)),
            start=_time(schedule, "start_schedule"),
            duration_s=schedule.get("duration"),
            recurrency=payload.get("recurrency_kind"),
            valid_from=_time(payload, "valid_from"),
            valid_to=_time(payload, "valid_to"),
            transaction_id=payload.get("transaction_id"),
        )
    except KeyError as exc:
        raise ValueError(f"charging profile: {exc.args[0]} missing") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"charging profile: {exc}") from None
    if purpose not in PURPOSES:
        raise ValueError(f"charging_profile_purpose: {purpose!r} not one of {PURPOSES}")
    if kind not in KINDS:
        raise ValueError(f"charging_profile_kind: {kind!r} not one of {KINDS}")
    if unit not in ("A", "W"):
        raise ValueError(f"charging_rate_unit: {unit!r} is neither A nor W")
    if not periods:
        raise ValueError("charging_schedule_period: empty")
    if kind != "Relative" and profile.start is None:
        raise ValueError(f"start_schedule: needed by a {kind} profile")
    if kind == "Recurring" and profile.recurrency not in RECURRENCY:
        raise ValueError(f"recurrency_kind: {profile.recurrency!r} is neither Daily nor Weekly")
    if purpose == "ChargePointMaxProfile" and connector != 0:
        raise ValueError("ChargePointMaxProfile: only on connector 0")
    if purpose == "TxProfile" and connector == 0:
        raise ValueError("TxProfile: needs a connector, not 0")
    return profile


def installed(profiles: Iterable[Profile], new: Profile) -> list[Profile]:
    """The profiles after `new` is set: it replaces one with its id, or with its connector,
    purpose and stack level (OCPP 1.6, 5.16.3)."""
    return [
        p
        for p in profiles
        if p.id != new.id
        and (p.connector, p.purpose, p.stack_level) != (new.connector, new.purpose, new.stack_level)
    ] + [new]


def cleared(
    profiles: Iterable[Profile],
    id: int | None = None,
    connector: int | None = None,
    purpose: str | None = None,
    stack_level: int | None = None,
) -> list[Profile]:
    """The profiles left after a ClearChargingProfile: by id when given, else those matching
    every criterion given (none given: all)."""
    if id is not None:
        return [p for p in profiles if p.id != id]
    return [
        p
        for p in profiles
        if not (
            (connector is None or p.connector == connector)
            and (purpose is None or p.purpose == purpose)
            and (stack_level is None or p.stack_level == stack_level)
        )
    ]


def ended_transaction(profiles: Iterable[Profile], connector: int) -> list[Profile]:
    """A TxProfile lasts as long as its transaction."""
    return [p for p in profiles if not (p.purpose == "TxProfile" and p.connector == connector)]


def _schedule_start(profile: Profile, now: datetime, tx_start: datetime | None) -> datetime:
    if profile.kind == "Relative":
        return tx_start or now
    assert profile.start is not None  # parse_profile: Absolute and Recurring have one
    if profile.kind == "Recurring" and profile.recurrency is not None and now >= profile.start:
        every = RECURRENCY[profile.recurrency]
        return profile.start + every * ((now - profile.start) // every)
    return profile.start


def profile_limit_a(
    profile: Profile, now: datetime, tx_start: datetime | None, socket_phases: int
) -> float | None:
    """The profile's limit in amperes at `now`, None when it says nothing then."""
    if profile.valid_from is not None and now < profile.valid_from:
        return None
    if profile.valid_to is not None and now >= profile.valid_to:
        return None
    elapsed = (now - _schedule_start(profile, now, tx_start)).total_seconds()
    if elapsed < 0 or (profile.duration_s is not None and elapsed >= profile.duration_s):
        return None
    begun = [p for p in profile.periods if p.start_s <= elapsed]
    if not begun:
        return None
    period = begun[-1]
    if profile.unit == "A":
        return period.limit
    return period.limit / (NOMINAL_V * (period.phases or socket_phases))


def _winner(
    candidates: Iterable[Profile], now: datetime, tx_start: datetime | None, phases: int
) -> float | None:
    for profile in sorted(candidates, key=lambda p: -p.stack_level):
        limit = profile_limit_a(profile, now, tx_start, phases)
        if limit is not None:
            return limit
    return None


def limit_a(
    profiles: Iterable[Profile],
    connector: int,
    now: datetime,
    transaction_id: int | None = None,
    tx_start: datetime | None = None,
    socket_phases: int = 1,
) -> float | None:
    """The current limit on a connector at `now` (None: no limit), `transaction_id` and
    `tx_start` those of its transaction when one runs."""
    mine = list(profiles)
    limit: float | None = None
    if transaction_id is not None:
        tx = [
            p
            for p in mine
            if p.purpose == "TxProfile"
            and p.connector == connector
            and p.transaction_id in (None, transaction_id)
        ]
        limit = _winner(tx, now, tx_start, socket_phases)
    if limit is None:
        for where in (connector, 0):
            defaults = [p for p in mine if p.purpose == "TxDefaultProfile" and p.connector == where]
            limit = _winner(defaults, now, tx_start, socket_phases)
            if limit is not None:
                break
    cap = _winner(
        (p for p in mine if p.purpose == "ChargePointMaxProfile"), now, tx_start, socket_phases
    )
    if cap is not None:
        limit = cap if limit is None else min(limit, cap)
    return limit


def draws_a(wanted_a: float, limit: float | None) -> float:
    """What a car wanting `wanted_a` draws under a limit: nothing below 6 A."""
    if limit is None:
        return wanted_a
    if limit < MIN_CHARGE_A:
        return 0.0
    return min(wanted_a, limit)
