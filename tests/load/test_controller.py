"""Limits per socket from the site's headroom, schedules and the main meter's health (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import PriceRow, SiteConfig, TariffSettings
from collector.load.allocate import SocketSpec, allocate
from collector.load.controller import Limit, LoadController, Poll, from_config
from collector.load.schedule import Schedules
from collector.load.settings import LoadManagementSettings, ScheduleSettings
from collector.settings import load
from tests.support.paths import EXAMPLES

T0 = datetime(2026, 6, 10, 10, 0, tzinfo=UTC)  # 12:00 in Paris
HOTEL_W = 36_000.0  # 36 kVA; margin 1000 W: the site limit is 35 000 W
SOCKETS = [SocketSpec("cp1", 32), SocketSpec("cp2", 32)]
CAR_W = 32 * 230.0


def controller(sockets: list[SocketSpec] = SOCKETS, **overrides: Any) -> LoadController:
    return LoadController(LoadManagementSettings(**overrides), HOTEL_W, sockets)


def poll(seconds: float, base_w: float | None, **sockets_w: float) -> Poll:
    main = None if base_w is None else base_w + sum(sockets_w.values())
    return Poll(T0 + timedelta(seconds=seconds), main, sockets_w)


def amps(decision_limits: dict[str, Limit]) -> dict[str, float | None]:
    return {point: limit.current_a for point, limit in decision_limits.items()}


def test_no_limit_while_the_site_has_room() -> None:
    decision = controller().decide(poll(0, 10_000, cp1=CAR_W, cp2=CAR_W))
    assert decision.limits == {"cp1": Limit(None, "none"), "cp2": Limit(None, "none")}
    assert decision.site_limit_w == 35_000
    assert decision.headroom_w == 25_000


def test_overload_is_shared_fairly_at_once() -> None:
    c = controller()
    c.decide(poll(0, 10_000, cp1=CAR_W, cp2=CAR_W))
    decision = c.decide(poll(1, 25_000, cp1=CAR_W, cp2=CAR_W))
    # 10 000 W of headroom over two single-phase sockets: 21.7 A each, rounded down.
    assert decision.limits == {"cp1": Limit(21.7, "overload"), "cp2": Limit(21.7, "overload")}


def test_lowest_priority_socket_pauses_when_both_cannot_get_the_minimum() -> None:
    c = controller()
    decision = c.decide(poll(0, 33_000, cp1=CAR_W, cp2=CAR_W))
    # 2000 W < 2 x 6 A x 230 V: cp2 (last in the site file's order) pauses, cp1 gets 8.6 A.
    assert amps(decision.limits) == {"cp1": 8.6, "cp2": 0.0}
    ordered = controller(priority=["cp2", "cp1"])
    assert amps(ordered.decide(poll(0, 33_000, cp1=CAR_W, cp2=CAR_W)).limits) == {
        "cp1": 0.0,
        "cp2": 8.6,
    }


def test_priority_order_fills_the_first_socket_up_to_its_rating() -> None:
    c = controller(priority=["cp2"])
    # 10 000 W: both get their 6 A minimum, then cp2 (first) its rating, cp1 what is left.
    assert amps(c.decide(poll(0, 25_000, cp1=CAR_W, cp2=CAR_W)).limits) == {
        "cp1": 11.4,
        "cp2": None,
    }


def test_paused_socket_resumes_first_after_the_hysteresis() -> None:
    c = controller()
    assert amps(c.decide(poll(0, 33_000, cp1=CAR_W, cp2=CAR_W)).limits) == {"cp1": 8.6, "cp2": 0.0}
    # The base load falls: 3000 W of headroom would give both 6.5 A, but the site must first
    # stay 500 W under its limit for 60 s.
    for t in range(1, 60):
        decision = c.decide(poll(t, 32_000, cp1=8.6 * 230))
        assert amps(decision.limits) == {"cp1": 8.6, "cp2": 0.0}, t
    decision = c.decide(poll(61, 32_000, cp1=8.6 * 230))
    assert amps(decision.limits) == {"cp1": 6.5, "cp2": 6.5}


def test_a_new_excursion_restarts_the_hysteresis_timer() -> None:
    c = controller()
    c.decide(poll(0, 30_000, cp1=CAR_W, cp2=CAR_W))
    c.decide(poll(30, 25_000, cp1=10.8 * 230, cp2=10.8 * 230))
    c.decide(poll(35, 25_000, cp1=10.8 * 230, cp2=10.8 * 230))
    # 34 700 W: under the limit but not 500 W under it: the timer starts again.
    c.decide(poll(40, 34_700 - 2 * 10.8 * 230, cp1=10.8 * 230, cp2=10.8 * 230))
    for t in (95, 154):  # without the excursion the limits would have risen at 90 s
        limits = c.decide(poll(t, 20_000, cp1=10.8 * 230, cp2=10.8 * 230)).limits
        assert amps(limits) == {"cp1": 10.8, "cp2": 10.8}, t
    assert amps(c.decide(poll(155, 20_000, cp1=10.8 * 230, cp2=10.8 * 230)).limits) == {
        "cp1": None,
        "cp2": None,
    }


def test_increases_wait_min_change_interval_but_decreases_do_not() -> None:
    c = controller(raise_after_s=0, min_change_interval_s=30)
    c.decide(poll(0, 30_000, cp1=CAR_W, cp2=CAR_W))  # 10.8 A each
    assert amps(c.decide(poll(10, 25_000, cp1=2484, cp2=2484)).limits)["cp1"] == 10.8
    assert amps(c.decide(poll(20, 32_000, cp1=2484, cp2=2484)).limits)["cp1"] == 6.5
    # Changed at 20 s: the next increase is allowed from 50 s.
    assert amps(c.decide(poll(49, 25_000, cp1=1495, cp2=1495)).limits)["cp1"] == 6.5
    assert amps(c.decide(poll(50, 25_000, cp1=1495, cp2=1495)).limits)["cp1"] == 21.7


def test_failsafe_after_silent_polls_then_back() -> None:
    c = controller(failsafe_after_polls=3)
    c.decide(poll(0, 25_000, cp1=CAR_W, cp2=CAR_W))  # 21.7 A each
    # Two silent polls: the limits stay as they are.
    for t in (1, 2):
        decision = c.decide(poll(t, None, cp1=4991, cp2=4991))
        assert not decision.failsafe
        assert decision.limits["cp1"] == Limit(21.7, "overload")
    decision = c.decide(poll(3, None, cp1=4991, cp2=4991))
    assert decision.failsafe
    assert decision.limits == {"cp1": Limit(6.0, "failsafe"), "cp2": Limit(6.0, "failsafe")}
    # Readings return: the limits rise only after the usual hysteresis.
    back = c.decide(poll(4, 10_000, cp1=1380, cp2=1380))
    assert not back.failsafe
    assert back.limits == {"cp1": Limit(6.0, "overload"), "cp2": Limit(6.0, "overload")}
    assert amps(c.decide(poll(64, 10_000, cp1=1380, cp2=1380)).limits) == {"cp1": None, "cp2": None}


def test_failsafe_caps_idle_sockets_and_keeps_paused_ones_paused() -> None:
    c = controller(failsafe_current_a=10, failsafe_after_polls=1)
    c.decide(poll(0, 33_000, cp1=CAR_W, cp2=0))
    decision = c.decide(poll(1, None, cp1=1978, cp2=0))
    assert decision.limits == {"cp1": Limit(8.6, "failsafe"), "cp2": Limit(10.0, "failsafe")}
    c2 = controller(failsafe_after_polls=1)
    c2.decide(poll(0, 33_000, cp1=CAR_W, cp2=CAR_W))
    assert c2.decide(poll(1, None)).limits["cp2"] == Limit(0.0, "failsafe")


def nights() -> Schedules:
    tariff = TariffSettings(option="base", prices=[PriceRow(since="2026-01-01", base=0.2)])
    entry = ScheduleSettings(sockets=["cp1"], allowed=["22:00-07:00"])
    return Schedules([entry], tariff, ZoneInfo("Europe/Paris"))


def test_schedule_pause_wins_over_failsafe_and_ends_at_22_00() -> None:
    c = LoadController(
        LoadManagementSettings(failsafe_after_polls=1, raise_after_s=0), HOTEL_W, SOCKETS, nights()
    )
    evening = datetime(2026, 6, 10, 19, 59, tzinfo=UTC)  # 21:59 in Paris
    decision = c.decide(Poll(evening, 10_000, {"cp1": 0, "cp2": 0}))
    assert decision.limits == {"cp1": Limit(0.0, "schedule"), "cp2": Limit(None, "none")}
    assert c.decide(Poll(evening, None, {})).limits["cp1"] == Limit(0.0, "schedule")
    # 22:00: cp1 may charge; it resumes with a share of the headroom (its car may be waiting).
    at_22 = evening + timedelta(minutes=1)
    assert c.decide(Poll(at_22, 10_000, {"cp1": 0, "cp2": 0})).limits["cp1"] == Limit(None, "none")


def test_a_socket_that_stops_drawing_loses_its_limit_after_the_hysteresis() -> None:
    c = controller(raise_after_s=0, min_change_interval_s=0)
    c.decide(poll(0, 30_000, cp1=CAR_W, cp2=CAR_W))
    assert c.decide(poll(1, 20_000, cp1=0, cp2=2484)).limits["cp1"] == Limit(None, "none")


def test_three_phase_socket_converts_watts_per_phase() -> None:
    wallbox = SocketSpec("wb", 16, phases=3)
    assert allocate(6900, [wallbox], 6, fair=True) == {"wb": 10.0}
    assert allocate(11_040, [wallbox], 6, fair=True) == {"wb": None}
    assert allocate(4000, [wallbox], 6, fair=True) == {"wb": 0.0}


def test_fair_share_gives_a_small_socket_its_rating_and_the_rest_to_others() -> None:
    small = [SocketSpec("plug", 16), SocketSpec("cp1", 32)]
    # 9000 W: an equal 19.6 A is above the plug's 16 A; cp1 gets the 5320 W left, 23.1 A.
    assert allocate(9000, small, 6, fair=True) == {"plug": None, "cp1": 23.1}


def test_disabled_load_management_keeps_schedules_only(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["schedules"] = [{"sockets": ["cp2"], "allowed": "offpeak"}]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    c = from_config(load(SiteConfig, path))
    assert c is not None
    decision = c.decide(Poll(T0, 60_000, {"cp1": CAR_W, "cp2": CAR_W}))
    assert decision.limits == {"cp1": Limit(None, "none"), "cp2": Limit(0.0, "schedule")}
    del data["schedules"]
    path.write_text(yaml.safe_dump(data))
    assert from_config(load(SiteConfig, path)) is None


def test_sockets_missing_from_priority_follow_it_in_site_file_order() -> None:
    three = [SocketSpec("cp1", 32), SocketSpec("cp2", 32), SocketSpec("cp3", 32)]
    c = controller(three, priority=["cp3"])
    cars = {"cp1": CAR_W, "cp2": CAR_W, "cp3": CAR_W}
    # 3000 W holds two minimums (2760 W): cp3 (listed) and cp1 (first of the others) charge.
    decision = c.decide(Poll(T0, 32_000 + 3 * CAR_W, cars))
    assert amps(decision.limits) == {"cp1": 6.0, "cp2": 0.0, "cp3": 7.0}


def test_base_load_above_the_limit_pauses_everyone() -> None:
    decision = controller().decide(poll(0, 36_000, cp1=CAR_W, cp2=CAR_W))
    assert decision.headroom_w == -1000
    assert amps(decision.limits) == {"cp1": 0.0, "cp2": 0.0}


def test_margin_and_an_unknown_socket_reading() -> None:
    c = controller(margin_w=3000)
    # cp2's meter gave nothing: its power stays in the base load (the safe side).
    decision = c.decide(Poll(T0, 30_000 + CAR_W, {"cp1": CAR_W, "cp2": None}))
    assert decision.site_limit_w == 33_000
    assert decision.headroom_w == 3000
    assert amps(decision.limits) == {"cp1": 13.0, "cp2": None}


def test_failsafe_current_zero_pauses_every_socket() -> None:
    c = controller(failsafe_current_a=0, failsafe_after_polls=1)
    decision = c.decide(poll(0, None))
    assert decision.limits == {"cp1": Limit(0.0, "failsafe"), "cp2": Limit(0.0, "failsafe")}


def test_three_phase_wallbox_shares_with_a_single_phase_socket() -> None:
    c = controller([SocketSpec("wb", 16, phases=3), SocketSpec("cp1", 32)])
    # 9200 W over 3 x 230 + 230 W per amp: 10 A each.
    decision = c.decide(Poll(T0, 25_800 + 16 * 690 + CAR_W, {"wb": 16 * 690, "cp1": CAR_W}))
    assert amps(decision.limits) == {"wb": 10.0, "cp1": 10.0}


# -- properties ----------------------------------------------------------------------------------

MIN_INTERVAL_S = 30.0


@st.composite
def runs(
    draw: st.DrawFn,
) -> tuple[list[SocketSpec], list[str], list[tuple[float, float | None, dict[str, float]]]]:
    count = draw(st.integers(1, 4))
    sockets = [
        SocketSpec(f"cp{i}", draw(st.sampled_from([16.0, 32.0])), draw(st.sampled_from([1, 3])))
        for i in range(count)
    ]
    priority = draw(st.sampled_from([[], [s.id for s in reversed(sockets)]]))
    steps = []
    for _ in range(draw(st.integers(1, 60))):
        gap = draw(st.sampled_from([1.0, 5.0, 20.0, 61.0]))
        base = draw(st.one_of(st.none(), st.floats(0, 40_000)))
        # What each car would draw without a limit (0: no car).
        demand = {s.id: draw(st.sampled_from([0.0, 6.0, 10.0, s.rated_current_a])) for s in sockets}
        steps.append((gap, base, demand))
    return sockets, priority, steps


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(runs())
def test_obeyed_limits_keep_the_site_under_its_limit_without_oscillation(
    run: tuple[list[SocketSpec], list[str], list[tuple[float, float | None, dict[str, float]]]],
) -> None:
    sockets, priority, steps = run
    c = LoadController(
        LoadManagementSettings(priority=priority, min_change_interval_s=MIN_INTERVAL_S),
        HOTEL_W,
        sockets,
    )
    watts_per_amp = {s.id: s.watts_per_amp for s in sockets}

    def draw_w(point: str, wanted_a: float) -> float:
        """What an obedient car draws: what it wants, at most its limit."""
        limit = limits[point]
        return (wanted_a if limit is None else min(wanted_a, limit)) * watts_per_amp[point]

    limits: dict[str, float | None] = {s.id: None for s in sockets}
    changed: dict[str, float] = {}
    now = 0.0
    for gap, base, demand in steps:
        now += gap
        drawn = {p: draw_w(p, a) for p, a in demand.items()}
        decision = c.decide(
            Poll(
                T0 + timedelta(seconds=now),
                None if base is None else base + sum(drawn.values()),
                drawn,
            )
        )
        for point, limit in decision.limits.items():
            current = limit.current_a
            assert current is None or current == 0 or current >= 6, (point, limit)
            before = limits[point]
            rose = (current is None and before is not None) or (
                current is not None and before is not None and current > before
            )
            if rose and point in changed:
                assert now - changed[point] >= MIN_INTERVAL_S, (point, before, current)
            if current != before:
                changed[point] = now
            limits[point] = current
        if base is not None and not decision.failsafe and base <= c.site_limit_w:
            obeyed = base + sum(draw_w(p, a) for p, a in demand.items())
            assert obeyed <= c.site_limit_w + 1e-6, (base, demand, limits)
