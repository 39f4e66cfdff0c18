"""The OCPP central system's decisions, without a network: badges, transactions, energy,
lenient meter values, offline chargers, commands and current limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.ocpp.core import (
    Badge,
    CentralCore,
    CommandError,
    parse_badge_list,
)
from collector.ocpp.events import (
    ChargerOffline,
    ChargerOnline,
    ChargerWarning,
    ConnectorStatus,
    TransactionEnded,
    TransactionStarted,
)

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
GUEST = Badge("04A1B2C3", "12", T0 + timedelta(days=2))
GONE = Badge("04DEAD00", "7", T0 - timedelta(hours=1))


def core(mode: str = "list", state: dict[str, Any] | None = None) -> CentralCore:
    c = CentralCore(
        {"borne-1": {1: "cp1", 2: "cp1", 3: "cp2"}},
        mode,  # type: ignore[arg-type]
        heartbeat_s=60,
        offline_after_heartbeats=3,
        now=T0,
        state=state,
    )
    c.set_badges([GUEST, GONE])
    return c


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def sample(
    value: str, measurand: str | None, key: str = "measurand", **more: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {"value": value, **more}
    if measurand is not None:
        entry[key] = measurand
    return entry


def test_authorize_by_the_badge_list() -> None:
    c = core()
    assert c.authorize("borne-1", T0, "04a1b2c3")[0].id_tag_info() == {
        "status": "Accepted",
        "expiry_date": "2026-12-08T10:00:00.000Z",
    }
    assert c.authorize("borne-1", T0, "04DEAD00")[0].status == "Expired"
    assert c.authorize("borne-1", T0, "FFFFFFFF")[0].status == "Invalid"
    assert core("any").authorize("borne-1", T0, "FFFFFFFF")[0].status == "Accepted"
    # `any` accepts an expired badge too, without telling the charger a past expiry date.
    anyway = core("any").authorize("borne-1", T0, "04DEAD00")[0]
    assert anyway.id_tag_info() == {"status": "Accepted"} and anyway.badge == GONE
    assert core("free").authorize("borne-1", T0, "FFFFFFFF")[0].status == "Accepted"


def test_badge_list_payload_parsed_and_bad_entries_named() -> None:
    badges, problems = parse_badge_list(
        {
            "ts": ts(0),
            "badges": [
                {"badge": "04A1B2C3", "room": "12", "until": "2026-12-08T11:00:00.000Z"},
                {"badge": "", "room": "3"},
                {"badge": "X1", "room": 4, "until": "tomorrow"},
                {"badge": "X2", "room": 5},
            ],
        }
    )
    assert badges == [
        Badge("04A1B2C3", "12", datetime(2026, 12, 8, 11, tzinfo=UTC)),
        Badge("X2", "5", None),
    ]
    assert problems == [
        "badges[1].badge: expected an id of 1..20 characters",
        "badges[2].until: 'tomorrow' is not an ISO 8601 time",
    ]
    assert parse_badge_list([1, 2])[1] == [
        'expected {"ts": ..., "badges": [{"badge", "room", "until"}, ...]}'
    ]


def test_transaction_ids_continue_from_the_stored_counter() -> None:
    first = core()
    tid, auth, events = first.start_transaction("borne-1", T0, 1, "04A1B2C3", 1000, ts(0))
    assert (tid, auth.status) == (1, "Accepted")
    assert first.dirty
    started = [e for e in events if isinstance(e, TransactionStarted)]
    assert started[0].room == "12" and started[0].point == "cp1"
    again = core(state=first.state())
    assert again.start_transaction("borne-1", T0, 3, "04A1B2C3", 5, ts(1))[0] == 2
    _, events = again.stop_transaction("borne-1", T0, 1, 3500, ts(30), "Local", None, None)
    (ended,) = [e for e in events if isinstance(e, TransactionEnded)]
    assert (ended.badge, ended.room, ended.charger_energy_wh) == ("04A1B2C3", "12", 2500.0)
    assert ended.start == T0 and ended.end == T0 + timedelta(minutes=30)


def test_a_start_sent_again_gets_its_id_again_and_no_second_session() -> None:
    """The answer to a StartTransaction lost with the link, the charger sends the same start
    again: the same id, no second TransactionStarted, one session at the stop. Another start on
    that connector (another time) is another transaction."""
    c = core()
    tid, _, events = c.start_transaction("borne-1", T0, 1, "04A1B2C3", 1000, ts(0))
    assert [e for e in events if isinstance(e, TransactionStarted)]
    later = T0 + timedelta(minutes=2)
    again, auth, events = c.start_transaction("borne-1", later, 1, "04A1B2C3", 1000, ts(0))
    assert (again, auth.status) == (tid, "Accepted")
    assert not [e for e in events if isinstance(e, TransactionStarted)]
    _, events = c.stop_transaction("borne-1", later, tid, 3500, ts(30), "Local", None, None)
    (ended,) = [e for e in events if isinstance(e, TransactionEnded)]
    assert ended.charger_energy_wh == 2500.0
    assert c.start_transaction("borne-1", later, 1, "04A1B2C3", 1000, ts(0))[0] == tid + 1


def test_queued_start_judged_at_its_own_time() -> None:
    """A transaction the charger started while the link was down arrives with its real time;
    a badge valid then (expired since) is accepted."""
    c = core()
    now = T0 + timedelta(hours=3)
    late = (T0 - timedelta(hours=2)).isoformat()
    _, auth, events = c.start_transaction("borne-1", now, 1, "04DEAD00", 0, late)
    assert auth.status == "Accepted"
    assert events[-1].ts == T0 - timedelta(hours=2)  # type: ignore[union-attr]


def test_legrand_interval_energy_with_meter_start_zero_and_misspelt_measurand() -> None:
    c = core()
    tid, _, _ = c.start_transaction("borne-1", T0, 1, "04A1B2C3", 0, ts(0))
    values = [
        {
            "timestamp": ts(10),
            "sampled_value": [
                sample("1500", "Energy.Active.Import.Interval", key="mesurand"),
                sample("7.2", "Power.Active.Import", unit="kW"),
                sample("3", "Energy.Active.Import.Session"),
            ],
        },
        {
            "timestamp": ts(20),
            "sampled_value": [sample("1.25", "Energy.Active.Import.Interval", unit="kWh")],
        },
    ]
    events = c.meter_values("borne-1", T0, 1, tid, values)
    warnings = [e.kind for e in events if isinstance(e, ChargerWarning)]
    assert warnings == ["mesurand", "measurand Energy.Active.Import.Session"]
    # The same message again (its answer lost): not counted twice, not warned twice.
    assert not [
        e for e in c.meter_values("borne-1", T0, 1, tid, values) if isinstance(e, ChargerWarning)
    ]
    _, events = c.stop_transaction("borne-1", T0, tid, 0, ts(30), None, None, None)
    assert events[-1].charger_energy_wh == 2750.0  # type: ignore[union-attr]


def test_energy_from_meter_stop_minus_start_and_per_phase_intervals() -> None:
    c = core()
    tid, _, _ = c.start_transaction("borne-1", T0, 3, "X", 0, ts(0))
    phases = [sample("100", "Energy.Active.Import.Interval", phase=p) for p in ("L1", "L2", "L3")]
    c.meter_values("borne-1", T0, 3, None, [{"timestamp": ts(5), "sampled_value": phases}])
    _, events = c.stop_transaction("borne-1", T0, tid, 0, ts(6), None, None, None)
    assert events[-1].charger_energy_wh == 300.0  # type: ignore[union-attr]
    tid, _, _ = c.start_transaction("borne-1", T0, 3, "X", 0, ts(10))
    _, events = c.stop_transaction("borne-1", T0, tid, 420, ts(20), None, None, None)
    assert events[-1].charger_energy_wh == 420.0  # type: ignore[union-attr]


def test_stop_for_an_unknown_transaction_is_accepted_and_said() -> None:
    c = core()
    _, events = c.stop_transaction("borne-1", T0, 99, 10, ts(1), None, "04A1B2C3", None)
    ended = events[-1]
    assert isinstance(ended, TransactionEnded)
    assert (ended.start, ended.badge, ended.charger_energy_wh) == (None, "04A1B2C3", None)
    assert any(isinstance(e, ChargerWarning) and e.kind == "transaction" for e in events)


def test_offline_after_missed_heartbeats_and_back() -> None:
    c = core()
    assert c.heard("borne-1", T0) == [ChargerOnline(T0, "borne-1")]
    # 3 heartbeats of 60 s missed: the 3rd due at 180 s, missed half an interval later.
    assert c.tick(T0 + timedelta(seconds=209)) == []
    events = c.tick(T0 + timedelta(seconds=210))
    assert isinstance(events[0], ChargerOffline)
    assert [(e.connector, e.status) for e in events if isinstance(e, ConnectorStatus)] == [
        (1, "offline"),
        (2, "offline"),
        (3, "offline"),
    ]
    assert c.tick(T0 + timedelta(seconds=400)) == []  # said once
    assert isinstance(c.heard("borne-1", T0 + timedelta(seconds=401))[0], ChargerOnline)


def test_commands_pick_the_connector() -> None:
    c = core()
    c.status("borne-1", T0, 2, "Preparing", "NoError", None, None)
    (start,) = c.command("cp1", "start", T0, badge="04A1B2C3")
    assert (start.connector, start.request.id_tag) == (2, "04A1B2C3")
    with pytest.raises(CommandError, match="badge '04DEAD00' is expired"):
        c.command("cp1", "start", T0, badge="04DEAD00")
    with pytest.raises(CommandError, match="no transaction on cp1"):
        c.command("cp1", "stop", T0)
    tid, _, _ = c.start_transaction("borne-1", T0, 2, "04A1B2C3", 0, ts(0))
    (stop,) = c.command("cp1", "stop", T0)
    assert stop.request.transaction_id == tid
    assert [o.request.type for o in c.command("cp1", "disable", T0)] == ["Inoperative"] * 2
    assert c.command("cp2", "unlock", T0)[0].request.connector_id == 3
    with pytest.raises(CommandError, match="no charger serves"):
        c.command("cp9", "stop", T0)


def test_current_limit_profile_and_clear() -> None:
    c = core()
    (out,) = c.set_limit("cp2", 10.04, T0, duration_s=900)
    profile = out.request.cs_charging_profiles
    assert profile["charging_profile_purpose"] == "TxDefaultProfile"
    assert profile["valid_to"] == "2026-12-06T10:15:00.000Z"
    assert profile["charging_schedule"]["charging_schedule_period"] == [
        {"start_period": 0, "limit": 10.0}
    ]
    (clear,) = c.clear_limit("cp2")
    assert clear.request.id == profile["charging_profile_id"]


def test_local_list_versions_and_content() -> None:
    c = core()
    version = c.local_list_version
    assert [entry["id_tag"] for entry in c.local_list(T0)] == ["04A1B2C3"]  # the expired left out
    assert not c.set_badges([GUEST, GONE])  # same list: same version
    assert c.set_badges([GUEST])
    assert c.local_list_version == version + 1


@pytest.mark.parametrize(
    ("registers", "meter_stop", "energy"),
    [
        # meterStart 0 with a lifetime index: the first sample (10 min in) is far above what
        # 10 minutes can deliver, so the count is meterStop minus it.
        ([(10, "1234000"), (20, "1235500")], 1236000, 2000.0),
        # meterStart 0 with a count from zero: meterStop is the energy.
        ([(10, "1200"), (20, "2700")], 3000, 3000.0),
        # ... and a meterStop of 0 (nothing counted at the stop): the last sample.
        ([(10, "1.2"), (20, "2.7")], 0, 2700.0),
    ],
)
def test_energy_from_register_samples_with_meter_start_zero(
    registers: list[tuple[int, str]], meter_stop: int, energy: float
) -> None:
    c = core()
    tid, _, _ = c.start_transaction("borne-1", T0, 1, "X", 0, ts(0))
    unit = {"unit": "kWh"} if meter_stop == 0 else {}
    values = [
        {"timestamp": ts(m), "sampled_value": [sample(v, "Energy.Active.Import.Register", **unit)]}
        for m, v in registers
    ]
    c.meter_values("borne-1", T0, 1, tid, values)
    restored = core(state=c.state())  # the samples are in the stored state too
    _, events = restored.stop_transaction("borne-1", T0, tid, meter_stop, ts(30), None, None, None)
    assert events[-1].charger_energy_wh == pytest.approx(energy)  # type: ignore[union-attr]


def test_badge_list_survives_a_restart_without_a_new_version() -> None:
    first = core()
    again = core(state=first.state())  # core() sets the same list again after loading
    assert again.local_list_version == first.local_list_version
    assert again.check_badge("04A1B2C3", T0).status == "Accepted"
    assert again.check_badge("04DEAD00", T0).status == "Expired"
