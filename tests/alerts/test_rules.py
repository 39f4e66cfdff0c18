"""Alert rules, shed request and the alert processor, without I/O: time is passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.alerts import shed
from collector.alerts.processor import AlertProcessor
from collector.alerts.rules import AlertEvent, AlertRules, Trigger
from collector.alerts.text import describe
from collector.config import SiteConfig
from collector.meters.reading import Reading
from collector.state import FileStateStore
from collector.wire.messages import AlertMessage, ShedMessage
from tests.support.paths import EXAMPLES

T0 = datetime(2026, 11, 23, 18, 0, 0, tzinfo=UTC)
SUBSCRIBED_W = 36_000.0


def site(**alerts: Any) -> SiteConfig:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["alerts"] = {
        "overcurrent_for_s": 2,
        "overload_for_s": 2,
        "resolve_for_s": 3,
        "offline_after_polls": 3,
        **alerts,
    }
    return SiteConfig(**data)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def socket_reading(t: float, current_a: float, point: str = "cp1") -> Reading:
    return Reading(point, at(t), {"current_a": current_a, "power_w": current_a * 230})


def main_reading(t: float, power_w: float) -> Reading:
    return Reading("main", at(t), {"power_w": power_w})


def feed(rules: AlertRules, readings: list[Reading]) -> list[AlertEvent]:
    """One reading per poll and the app's tick after it, like the collector."""
    events: list[AlertEvent] = []
    for reading in readings:
        events += rules.reading(reading)
        events += rules.tick(reading.ts)
    return events


def states(events: list[AlertEvent], alert: str) -> list[tuple[str, float]]:
    return [(e.state, (e.ts - T0).total_seconds()) for e in events if e.alert == alert]


# Trigger ------------------------------------------------------------------------------------


def test_trigger_fires_only_after_the_condition_held_for_its_duration() -> None:
    trigger = Trigger(timedelta(seconds=2), timedelta(seconds=3))
    assert trigger.update(True, False, at(0)) is None
    assert trigger.update(True, False, at(1)) is None
    assert trigger.update(True, False, at(2)) == "firing"
    assert trigger.update(True, False, at(3)) is None  # no repeat while firing


def test_trigger_interrupted_condition_starts_over() -> None:
    trigger = Trigger(timedelta(seconds=2), timedelta(seconds=0))
    trigger.update(True, False, at(0))
    trigger.update(False, True, at(1))
    assert trigger.update(True, False, at(2)) is None
    assert trigger.update(True, False, at(4)) == "firing"
    assert trigger.update(False, True, at(5)) == "resolved"


def test_zero_durations_fire_and_resolve_at_once() -> None:
    trigger = Trigger(timedelta(0), timedelta(0))
    assert trigger.update(True, False, at(0)) == "firing"
    assert trigger.update(False, True, at(0.5)) == "resolved"


# Socket over-current --------------------------------------------------------------------------


def test_socket_overcurrent_fires_after_duration_and_resolves_under_hysteresis() -> None:
    rules = AlertRules(site())
    currents = [31.0, 35.2, 35.2, 35.2, 35.0, 31.0, 31.0, 30.0, 30.0, 30.0, 30.0]
    events = feed(rules, [socket_reading(t, a) for t, a in enumerate(currents)])
    # Above from t=1, fires at t=3 (2 s); 31 A is above 32 x 0.95 = 30.4 A, so the clear
    # timer only starts at t=7 and resolves 3 s later.
    assert states(events, "socket_overcurrent") == [("firing", 3.0), ("resolved", 10.0)]
    firing = events[0]
    assert (firing.point, firing.value, firing.limit) == ("cp1", 35.2, 32.0)


def test_highest_phase_current_is_compared_with_the_rating() -> None:
    rules = AlertRules(site(overcurrent_for_s=0))
    three_phase = Reading(
        "cp2",
        at(0),
        {"current_l1_a": 20.0, "current_l2_a": 33.5, "current_l3_a": 12.0, "power_w": 15000.0},
    )
    events = rules.reading(three_phase)
    assert [(e.alert, e.state, e.point, e.value) for e in events] == [
        ("socket_overcurrent", "firing", "cp2", 33.5)
    ]


def test_flapping_around_the_rating_gives_exactly_one_firing_and_one_resolved() -> None:
    rules = AlertRules(site(overcurrent_for_s=0, resolve_for_s=3))
    # Noise of +-0.8 A around 32 A for a minute, then the car slows down.
    flapping = [32.8 if t % 2 else 31.2 for t in range(60)]
    currents = flapping + [20.0] * 5
    events = feed(rules, [socket_reading(t, a) for t, a in enumerate(currents)])
    assert states(events, "socket_overcurrent") == [("firing", 1.0), ("resolved", 63.0)]


def test_flapping_across_the_hysteresis_band_is_held_by_the_resolve_duration() -> None:
    rules = AlertRules(site(overcurrent_for_s=0, resolve_for_s=3))
    # Wide swings (a charger regulating badly): under the band for 1-2 s at a time only.
    pattern = [36.0, 28.0, 28.0, 36.0, 28.0, 36.0]
    currents = pattern * 8 + [10.0] * 4
    events = feed(rules, [socket_reading(t, a) for t, a in enumerate(currents)])
    assert [s for s, _ in states(events, "socket_overcurrent")] == ["firing", "resolved"]


def test_reading_without_current_changes_nothing() -> None:
    rules = AlertRules(site(overcurrent_for_s=0))
    assert rules.reading(Reading("cp1", at(0), {"power_w": 100.0})) == []


# Site overload and pre-alarm --------------------------------------------------------------------


def test_site_overload_and_warning_with_their_limits() -> None:
    rules = AlertRules(site())
    powers = [
        30_000,
        33_000,
        33_000,
        33_000,
        37_500,
        37_500,
        37_500,
        20_000,
        20_000,
        20_000,
        20_000,
    ]
    events = feed(rules, [main_reading(t, p) for t, p in enumerate(powers)])
    assert states(events, "site_overload_warning") == [("firing", 3.0), ("resolved", 10.0)]
    assert states(events, "site_overload") == [("firing", 6.0), ("resolved", 10.0)]
    overload = next(e for e in events if e.alert == "site_overload")
    assert (overload.point, overload.value, overload.limit) == ("main", 37_500, SUBSCRIBED_W)
    warning = next(e for e in events if e.alert == "site_overload_warning")
    assert warning.limit == pytest.approx(SUBSCRIBED_W * 0.9)


def test_warning_share_and_power_factor_are_configurable() -> None:
    rules = AlertRules(site(warning_share=0.8, power_factor=0.9, overload_for_s=0))
    events = rules.reading(main_reading(0, 29_000))  # > 36 kVA x 0.9 x 0.8 = 25.9 kW
    assert [e.alert for e in events] == ["site_overload_warning"]
    assert events[0].limit == pytest.approx(25_920.0)


def test_minimum_duration_elapses_on_ticks_between_readings() -> None:
    rules = AlertRules(site(overload_for_s=2))
    assert [e.alert for e in rules.reading(main_reading(0, 40_000))] == []
    events = rules.tick(at(2.0))  # the next poll is late; the value stands until then
    assert {e.alert for e in events} == {"site_overload", "site_overload_warning"}


# Meter offline and the stale-main fail-safe -------------------------------------------------


def test_meter_offline_after_n_missed_polls_and_back_online() -> None:
    rules = AlertRules(site(offline_after_polls=3))
    for point in ("main", "cp1", "cp2"):
        rules.reading(Reading(point, at(0), {"power_w": 0.0, "current_a": 0.0}))
    events: list[AlertEvent] = []
    for t in (1, 2):
        events += rules.reading(Reading("main", at(t), {"power_w": 0.0}))
        events += rules.reading(Reading("cp2", at(t), {"power_w": 0.0, "current_a": 0.0}))
        events += rules.tick(at(t))
    events += rules.availability("cp1", False, at(2.5))
    events += rules.tick(at(3.4))
    assert events == []  # missed 2 polls only, the 3rd is due at 3 (a little late is not missed)
    events += rules.tick(at(3.5))
    events += rules.tick(at(4))  # no repeat
    assert states(events, "meter_offline") == [("firing", 3.5)]
    assert (events[0].point, events[0].value, events[0].limit) == ("cp1", 3.5, 3.0)
    assert rules.firing("meter_offline", "cp1")
    back = rules.reading(Reading("cp1", at(9), {"power_w": 0.0, "current_a": 0.0}))
    assert [(e.alert, e.state, e.value) for e in back] == [("meter_offline", "resolved", 9.0)]


def test_one_missed_poll_is_offline_and_a_late_reading_is_not() -> None:
    """offline_after_polls 1: every other reading 40 ms late (a busy event loop), a tick just
    before it, never fires; a poll that brings nothing does, half an interval after it was due."""
    rules = AlertRules(site(offline_after_polls=1))
    zero: dict[str, float | None] = {"power_w": 0.0, "current_a": 0.0}
    events: list[AlertEvent] = []
    for t in range(4):
        late = 0.04 * (t % 2)
        events += rules.tick(at(t + 0.03))
        events += [
            e for p in ("main", "cp1", "cp2") for e in rules.reading(Reading(p, at(t + late), zero))
        ]
    assert events == []
    for p in ("main", "cp2"):  # cp1 (last read at 3.04) misses the poll at 4
        events += rules.reading(Reading(p, at(4), zero))
    events += rules.tick(at(4.5))
    assert events == []
    events += rules.tick(at(4.6))
    assert [(e.alert, e.point, e.value, e.limit) for e in events] == [
        ("meter_offline", "cp1", 1.6, 1.0)
    ]


def test_meter_that_never_answers_goes_offline_counted_from_start() -> None:
    rules = AlertRules(site(offline_after_polls=2))
    assert rules.tick(at(0)) == []
    assert rules.tick(at(2)) == []
    events = rules.tick(at(2.5))
    assert sorted(e.point for e in events if e.alert == "meter_offline") == ["cp1", "cp2", "main"]


def test_main_failed_when_offline_or_stale() -> None:
    rules = AlertRules(site(offline_after_polls=3))
    rules.reading(main_reading(0, 10_000))
    assert not rules.main_failed(at(3))
    assert rules.main_failed(at(3.5))  # stale, even before a tick declared it offline


# Shed request ---------------------------------------------------------------------------------


def test_shed_decision() -> None:
    settings = site().alerts
    assert shed.decide(settings, SUBSCRIBED_W, True, 38_250.4, False, 7000) == shed.ShedRequest(
        True, 2250, "site_overload"
    )
    assert shed.decide(settings, SUBSCRIBED_W, True, 35_000, False, 7000).excess_w == 0
    assert shed.decide(settings, SUBSCRIBED_W, False, 35_000, False, 7000) == shed.ShedRequest(
        False, 0, "normal"
    )
    failed = shed.decide(settings, SUBSCRIBED_W, False, None, True, 7360.2)
    assert failed == shed.ShedRequest(True, 7360, "main_meter_offline")
    margin = site(shed_margin_share=0.1).alerts
    assert shed.decide(margin, SUBSCRIBED_W, True, 38_000, False, 0).excess_w == 5600
    no_fail_safe = site(stale_main_is_overload=False).alerts
    assert not shed.decide(no_fail_safe, SUBSCRIBED_W, False, None, True, 7000).active


def test_shed_publisher_on_change_step_and_refresh() -> None:
    publisher = shed.ShedPublisher(site(shed_step_w=100, shed_refresh_s=60).alerts)
    normal = shed.ShedRequest(False, 0, "normal")
    assert publisher.update(normal, at(0)) is not None
    assert publisher.update(normal, at(1)) is None
    over = publisher.update(shed.ShedRequest(True, 500, "site_overload"), at(2))
    assert over is not None and over.active and over.excess_w == 500
    assert publisher.update(shed.ShedRequest(True, 550, "site_overload"), at(3)) is None
    assert publisher.update(shed.ShedRequest(True, 650, "site_overload"), at(4)) is not None
    assert publisher.update(shed.ShedRequest(True, 0, "site_overload"), at(5)) is not None
    assert publisher.update(shed.ShedRequest(True, 0, "site_overload"), at(64)) is None
    refreshed = publisher.update(shed.ShedRequest(True, 0, "site_overload"), at(65))
    assert refreshed is not None and refreshed.ts == at(65)


# Processor ------------------------------------------------------------------------------------


def outgoing(processor: AlertProcessor, readings: list[Reading]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for reading in readings:
        for item in [*processor.on_reading(reading), *processor.on_tick(reading.ts)]:
            assert item.point is None  # site-level topics; the point is in the payload
            out.append((item.kind, item.message))
    return out


def test_processor_overload_gives_alerts_and_shed_requests() -> None:
    processor = AlertProcessor(site(overload_for_s=0, resolve_for_s=0))
    out = outgoing(
        processor, [main_reading(0, 20_000), main_reading(1, 38_000), main_reading(2, 20_000)]
    )
    sheds = [m for kind, m in out if kind == "shed"]
    assert all(isinstance(m, ShedMessage) for m in sheds)
    assert [(m.active, m.excess_w, m.reason) for m in sheds] == [
        (False, 0, "normal"),
        (True, 2000, "site_overload"),
        (False, 0, "normal"),
    ]
    alerts = [m for kind, m in out if kind == "alert"]
    assert all(isinstance(m, AlertMessage) for m in alerts)
    assert [(m.alert, m.state) for m in alerts] == [
        ("site_overload_warning", "firing"),
        ("site_overload", "firing"),
        ("site_overload_warning", "resolved"),
        ("site_overload", "resolved"),
    ]
    assert (
        alerts[1].message
        == "Dépassement de la puissance souscrite : 38,0 kW pour 36,0 kW souscrits"
    )
    assert alerts[1].point == "main"


def test_processor_stale_main_fail_safe_sheds_the_socket_load() -> None:
    processor = AlertProcessor(site(offline_after_polls=3))
    outgoing(
        processor,
        [main_reading(0, 20_000), socket_reading(0, 16.0, "cp1"), socket_reading(0, 10.0, "cp2")],
    )
    out = outgoing(
        processor,
        [socket_reading(t, a, p) for t in (1, 2, 3, 4) for p, a in (("cp1", 16.0), ("cp2", 10.0))],
    )
    sheds = [m for kind, m in out if kind == "shed"]
    assert [(m.active, m.excess_w, m.reason) for m in sheds] == [
        (True, (16 + 10) * 230, "main_meter_offline")
    ]
    offline = [m for kind, m in out if kind == "alert"]
    assert [(m.alert, m.point, m.state) for m in offline] == [("meter_offline", "main", "firing")]
    assert offline[0].message == "Compteur général hors ligne : aucune lecture depuis 4 s"
    back = outgoing(processor, [main_reading(5, 20_000)])
    assert [(k, getattr(m, "reason", None)) for k, m in back] == [
        ("alert", None),
        ("shed", "normal"),
    ]


def test_processor_stays_silent_about_shed_until_the_main_meter_is_known() -> None:
    processor = AlertProcessor(site())
    assert list(processor.on_tick(at(0))) == []
    assert [o.kind for o in processor.on_reading(socket_reading(0.5, 10))] == []


def test_processor_without_main_meter_publishes_an_inactive_request() -> None:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["meters"] = [m for m in data["meters"] if m["id"] != "main"]
    processor = AlertProcessor(SiteConfig(**data))
    out = list(processor.on_tick(at(0)))
    assert [(o.kind, getattr(o.message, "reason", None)) for o in out] == [
        ("shed", "no_main_meter")
    ]


def test_a_restart_keeps_a_firing_alert_firing_and_resolves_it_once(tmp_path: Path) -> None:
    """Alert state survives a restart: no second `firing`, one `resolved` when it clears,
    and the shed request holds meanwhile."""
    path = tmp_path / "alerts-hotel-vda.json"
    first = AlertProcessor(site(), store=FileStateStore(path, background=False))
    out = outgoing(first, [main_reading(t, 40_000) for t in range(5)])
    assert [(m.alert, m.point, m.state) for k, m in out if k == "alert"] == [
        ("site_overload_warning", "main", "firing"),
        ("site_overload", "main", "firing"),
        ("meter_offline", "cp1", "firing"),  # the sockets say nothing
        ("meter_offline", "cp2", "firing"),
    ]
    first.close()

    again = AlertProcessor(site(), store=FileStateStore(path, background=False))
    still = outgoing(again, [main_reading(t, 40_000) for t in range(10, 14)])
    assert [k for k, _ in still] == ["shed"]  # no second firing
    assert still[0][1].active
    cleared = outgoing(again, [main_reading(t, 20_000) for t in range(14, 20)])
    assert [(m.alert, m.state) for k, m in cleared if k == "alert"] == [
        ("site_overload_warning", "resolved"),
        ("site_overload", "resolved"),
    ]
    again.close()
    restarted = AlertProcessor(site(), store=FileStateStore(path, background=False))
    assert restarted.rules.firing_alerts() == [("meter_offline", "cp1"), ("meter_offline", "cp2")]


def test_a_restart_resolves_a_meter_offline_alert_at_the_first_reading(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    first = AlertProcessor(site(), store=FileStateStore(path, background=False))
    assert [o.kind for o in first.on_tick(at(5))] == []
    fired = [o.message for o in first.on_tick(at(10)) if isinstance(o.message, AlertMessage)]
    assert {(m.alert, m.state) for m in fired} == {("meter_offline", "firing")}
    first.close()

    again = AlertProcessor(site(), store=FileStateStore(path, background=False))
    back = [
        o.message
        for o in again.on_reading(socket_reading(20, 1.0))
        if isinstance(o.message, AlertMessage)
    ]
    assert [(m.alert, m.point, m.state) for m in back] == [("meter_offline", "cp1", "resolved")]


def test_alerts_held_from_outside_the_rules_are_saved_with_theirs(tmp_path: Path) -> None:
    """charger_offline (decided by the OCPP bridge) is in the same state file as the rules'
    alerts: saved when it changes, kept when the rules save, back after a restart."""
    path = tmp_path / "alerts.json"
    first = AlertProcessor(site(), store=FileStateStore(path, background=False))
    first.hold("charger_offline", ["borne-1", "borne-2"])
    list(first.on_tick(at(5)))
    fired = list(first.on_tick(at(10)))  # the rules' meter_offline alerts, saved too
    assert {o.message.alert for o in fired if isinstance(o.message, AlertMessage)} == {
        "meter_offline"
    }
    first.close()
    again = AlertProcessor(site(), store=FileStateStore(path, background=False))
    assert again.restored("charger_offline") == {"borne-1", "borne-2"}
    meters_offline = [("meter_offline", p) for p in ("main", "cp1", "cp2")]
    assert again.rules.firing_alerts() == meters_offline
    again.hold("charger_offline", ["borne-2"])  # borne-1 is back
    again.close()
    last = AlertProcessor(site(), store=FileStateStore(path, background=False))
    assert last.restored("charger_offline") == {"borne-2"}
    assert last.rules.firing_alerts() == meters_offline


def test_an_unreadable_alert_state_starts_with_no_alert_firing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts.json"
    path.write_text('{"version": 1, "firing": [{"point": "main"}]}')
    processor = AlertProcessor(site(), store=FileStateStore(path, background=False))
    assert processor.rules.firing_alerts() == []
    assert "alert state" in caplog.text


# Texts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("socket_overcurrent", "firing", "Borne 1", 35.2, 32.0, "fr"),
            "Surintensité sur Borne 1 : 35,2 A pour 32 A autorisés",
        ),
        (
            ("socket_overcurrent", "resolved", "Borne 1", 20.0, 32.0, "fr"),
            "Fin de surintensité sur Borne 1 : 20,0 A pour 32 A autorisés",
        ),
        (
            ("socket_overcurrent", "firing", "Socket 1", 35.2, 32.0, "en"),
            "Overcurrent on Socket 1: 35.2 A for 32 A allowed",
        ),
        (
            ("site_overload_warning", "firing", "général", 33_000, 32_400, "fr"),
            "Puissance proche de la limite souscrite : 33,0 kW pour un seuil d'alerte de 32,4 kW",
        ),
        (
            ("meter_offline", "resolved", "Borne 2", 42.0, 3.0, "fr"),
            "Compteur Borne 2 de nouveau en ligne après 42 s sans lecture",
        ),
        (
            ("site_overload", "firing", "main", 37_512.0, 36_000.0, "en"),
            "Subscribed power exceeded: 37.5 kW for 36.0 kW subscribed",
        ),
    ],
)
def test_texts(args: tuple[Any, ...], expected: str) -> None:
    assert describe(*args) == expected
