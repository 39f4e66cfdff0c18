"""The simulated charger's charging-profile arithmetic (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.simulator.profiles import (
    Profile,
    cleared,
    draws_a,
    ended_transaction,
    installed,
    limit_a,
    parse_profile,
)

T0 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def payload(
    profile_id: int = 1,
    purpose: str = "TxDefaultProfile",
    level: int = 0,
    periods: list[tuple[int, float]] | None = None,
    kind: str = "Absolute",
    unit: str = "A",
    start: datetime | None = T0,
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "charging_rate_unit": unit,
        "charging_schedule_period": [
            {"start_period": s, "limit": lim} for s, lim in (periods or [(0, 16.0)])
        ],
    }
    if start is not None:
        schedule["start_schedule"] = iso(start)
    for key in ("duration",):
        if key in extra:
            schedule[key] = extra.pop(key)
    return {
        "charging_profile_id": profile_id,
        "stack_level": level,
        "charging_profile_purpose": purpose,
        "charging_profile_kind": kind,
        "charging_schedule": schedule,
        **extra,
    }


def profile(connector: int = 1, **kw: Any) -> Profile:
    return parse_profile(connector, payload(**kw))


def test_the_collectors_limit_as_core_sends_it() -> None:
    """The shape of collector/ocpp/core.py's set_limit: TxDefaultProfile, Absolute, A, valid
    from now for `duration`."""
    p = profile(
        periods=[(0, 10.0)],
        valid_from=iso(T0),
        valid_to=iso(T0 + timedelta(seconds=300)),
        duration=300,
    )
    assert limit_a([p], 1, T0 + timedelta(seconds=1)) == 10.0
    assert limit_a([p], 1, T0 - timedelta(seconds=1)) is None  # not yet valid
    assert limit_a([p], 1, T0 + timedelta(seconds=300)) is None  # expired: no limit left
    assert limit_a([p], 2, T0 + timedelta(seconds=1)) is None  # another connector


def test_periods_the_last_begun_wins_and_before_the_first_nothing() -> None:
    p = profile(periods=[(60, 8.0), (0, 16.0), (120, 0.0)])
    assert limit_a([p], 1, T0 + timedelta(seconds=30)) == 16.0
    assert limit_a([p], 1, T0 + timedelta(seconds=60)) == 8.0
    assert limit_a([p], 1, T0 + timedelta(seconds=500)) == 0.0
    late = profile(periods=[(60, 8.0)])
    assert limit_a([late], 1, T0 + timedelta(seconds=30)) is None


def test_stack_levels_higher_wins_and_an_ended_one_falls_back() -> None:
    low = profile(profile_id=1, level=0, periods=[(0, 20.0)])
    high = profile(profile_id=2, level=3, periods=[(0, 8.0)], duration=600)
    assert limit_a([low, high], 1, T0 + timedelta(seconds=10)) == 8.0
    assert limit_a([low, high], 1, T0 + timedelta(seconds=600)) == 20.0


def test_tx_profile_beats_defaults_only_during_its_transaction() -> None:
    default0 = profile(connector=0, profile_id=1, periods=[(0, 20.0)])
    default1 = profile(connector=1, profile_id=2, periods=[(0, 16.0)])
    tx = profile(profile_id=3, purpose="TxProfile", periods=[(0, 10.0)], transaction_id=42)
    both = [default0, default1, tx]
    at = T0 + timedelta(seconds=1)
    assert limit_a([default0], 2, at) == 20.0  # connector 0 serves every connector
    assert limit_a([default0, default1], 1, at) == 16.0  # the connector's own default first
    assert limit_a(both, 1, at) == 16.0  # no transaction: the TxProfile says nothing
    assert limit_a(both, 1, at, transaction_id=42) == 10.0
    assert limit_a(both, 1, at, transaction_id=43) == 16.0  # not its transaction
    assert ended_transaction(both, 1) == [default0, default1]


def test_charge_point_max_caps_every_connector() -> None:
    cap = profile(connector=0, profile_id=9, purpose="ChargePointMaxProfile", periods=[(0, 12.0)])
    default = profile(profile_id=1, periods=[(0, 16.0)])
    at = T0 + timedelta(seconds=1)
    assert limit_a([cap, default], 1, at) == 12.0
    assert limit_a([cap], 2, at) == 12.0


def test_relative_starts_with_the_transaction_and_recurring_repeats() -> None:
    rel = profile(kind="Relative", start=None, periods=[(0, 6.0), (3600, 32.0)])
    tx_start = T0 + timedelta(hours=2)
    assert limit_a([rel], 1, tx_start + timedelta(minutes=59), 7, tx_start) == 6.0
    assert limit_a([rel], 1, tx_start + timedelta(minutes=61), 7, tx_start) == 32.0
    # Daily: 0 A from 18:00 for two hours (a peak-hours pause), every day.
    daily = profile(kind="Recurring", recurrency_kind="Daily", periods=[(0, 0.0)], duration=7200)
    assert limit_a([daily], 1, T0 + timedelta(days=3, hours=1)) == 0.0
    assert limit_a([daily], 1, T0 + timedelta(days=3, hours=3)) is None


def test_watts_become_amperes_per_phase() -> None:
    watts = profile(unit="W", periods=[(0, 11040.0)])
    at = T0 + timedelta(seconds=1)
    assert limit_a([watts], 1, at, socket_phases=3) == pytest.approx(16.0)
    assert limit_a([watts], 1, at, socket_phases=1) == pytest.approx(48.0)


def test_set_replaces_by_id_or_by_connector_purpose_and_level() -> None:
    a = profile(profile_id=1, level=0, periods=[(0, 16.0)])
    b = profile(profile_id=1, level=2, periods=[(0, 10.0)])
    c = profile(profile_id=5, level=2, periods=[(0, 8.0)])
    assert installed([a], b) == [b]  # same id
    d = profile(profile_id=7, level=2, periods=[(0, 6.0)])
    assert installed([a, c], d) == [a, d]  # same connector, purpose and stack level
    assert installed([a], c) == [a, c]


def test_clear_by_id_or_by_criteria() -> None:
    a = profile(connector=1, profile_id=1, level=0)
    b = profile(connector=2, profile_id=2, level=1)
    c = profile(connector=0, profile_id=3, purpose="ChargePointMaxProfile")
    assert cleared([a, b, c], id=2) == [a, c]
    assert cleared([a, b, c], id=99) == [a, b, c]
    assert cleared([a, b, c], connector=1) == [b, c]
    assert cleared([a, b, c], purpose="TxDefaultProfile", stack_level=1) == [a, c]
    assert cleared([a, b, c]) == []


def test_a_car_draws_nothing_below_6_amperes() -> None:
    assert draws_a(32.0, None) == 32.0
    assert draws_a(32.0, 16.0) == 16.0
    assert draws_a(10.0, 16.0) == 10.0
    assert draws_a(32.0, 6.0) == 6.0
    assert draws_a(32.0, 5.9) == 0.0
    assert draws_a(32.0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("connector", "changes", "message"),
    [
        (1, {"charging_profile_purpose": "Nope"}, "charging_profile_purpose"),
        (1, {"charging_profile_kind": "Sometimes"}, "charging_profile_kind"),
        (1, {"charging_schedule": {"charging_rate_unit": "kW"}}, "charging_schedule_period"),
        (0, {"charging_profile_purpose": "TxProfile"}, "TxProfile: needs a connector"),
        (1, {"charging_profile_purpose": "ChargePointMaxProfile"}, "only on connector 0"),
        (1, {"valid_to": "tomorrow"}, "valid_to: 'tomorrow' is not a time"),
        (1, {"charging_profile_kind": "Recurring"}, "recurrency_kind"),
    ],
)
def test_bad_profiles_are_refused_naming_what_is_wrong(
    connector: int, changes: dict[str, Any], message: str
) -> None:
    bad = payload() | changes
    with pytest.raises(ValueError, match=message):
        parse_profile(connector, bad)


def test_absolute_without_a_start_is_refused() -> None:
    with pytest.raises(ValueError, match="start_schedule"):
        parse_profile(1, payload(start=None))
