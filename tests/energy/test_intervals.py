"""Energy windows from index differences: alignment, tariff cuts, anomalies, coarse indexes,
gaps and restarts (pure, no I/O)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from collector.config import TariffSettings
from collector.energy.intervals import PointEnergy, Step, cost_eur
from collector.energy.tariff import Tariff
from collector.wire.messages import EnergyMessage, EventMessage

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SOCKET_W = 32 * 253.0  # 32 A single phase


def tariff(option: str = "hphc", offpeak: list[str] | None = None) -> Tariff:
    return Tariff(
        TariffSettings.model_validate(
            {
                "option": option,
                "offpeak": offpeak if offpeak is not None else ["22:00-06:00"],
                "prices": [
                    {"since": "2025-08-01", "base": 0.1952, "hp": 0.2081, "hc": 0.1635},
                    {"since": "2026-02-01", "base": 0.1927, "hp": 0.2065, "hc": 0.1579},
                ],
            }
        ),
        PARIS,
    )


def meter(t: Tariff | None = None, window_s: int = 60, gap_s: float = 60.0) -> PointEnergy:
    return PointEnergy("cp1", t or tariff(), window_s, SOCKET_W, gap_s)


class Run:
    """Feed readings, collect everything the meter emits."""

    def __init__(self, m: PointEnergy) -> None:
        self.m = m
        self.windows: list[EnergyMessage] = []
        self.events: list[EventMessage] = []

    def feed(self, ts: datetime, index: float | None, power: float | None = None) -> Step:
        step = self.m.update(ts, index, power)
        self.windows += step.windows
        self.events += step.events
        return step

    @property
    def emitted(self) -> float:
        return sum(w.energy_wh for w in self.windows)

    @property
    def open_wh(self) -> float:
        return self.m.window.energy_wh if self.m.window else 0.0


def test_constant_power_gives_aligned_windows_from_index() -> None:
    run = Run(meter())
    start = T0 + timedelta(seconds=30)
    for s in range(0, 181):
        run.feed(start + timedelta(seconds=s), 1_000_000 + 2.0 * s, power=7200.0)
    assert [w.start for w in run.windows] == [
        start,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=2),
    ]
    assert [w.end for w in run.windows] == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]
    assert [w.energy_wh for w in run.windows] == pytest.approx([60.0, 120.0, 120.0])
    first = run.windows[1]
    assert first.index_start_wh == pytest.approx(1_000_060.0)
    assert first.index_end_wh == pytest.approx(1_000_180.0)
    assert first.period == "HP"
    assert first.price_eur_kwh == 0.2081
    assert first.cost_eur == pytest.approx(0.120 * 0.2081)
    assert not run.events


def test_windows_cut_at_hc_start_and_price_change() -> None:
    t = tariff(offpeak=["22:30-06:00"])
    run = Run(meter(t, window_s=3600))
    start = datetime(2026, 1, 31, 21, 10, tzinfo=PARIS)  # 20:10 UTC
    for minute in range(0, 231):
        run.feed(start + timedelta(minutes=minute), 60.0 * minute, 3600.0)
    bounds = [
        (w.start.astimezone(PARIS).strftime("%H:%M"), w.period, w.price_eur_kwh)
        for w in run.windows
    ]
    assert bounds == [
        ("21:10", "HP", 0.2081),
        ("22:00", "HP", 0.2081),
        ("22:30", "HC", 0.1635),
        ("23:00", "HC", 0.1635),
        ("00:00", "HC", 0.1579),  # 1 February: the new price row, from local midnight
    ]
    assert [w.energy_wh for w in run.windows] == pytest.approx(
        [50 * 60, 30 * 60, 30 * 60, 3600, 3600]
    )


def test_counter_reset_is_estimated_from_power_never_negative(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = Run(meter())
    run.feed(T0, 50_000.0, 3000.0)
    run.feed(T0 + timedelta(seconds=10), 50_010.0, 3000.0)
    run.feed(T0 + timedelta(seconds=20), 3.0, 3600.0)  # meter replaced
    run.feed(T0 + timedelta(seconds=80), 63.0, 3600.0)
    assert [e.event for e in run.events] == ["index_reset"]
    assert run.events[0].details["estimated_wh"] == pytest.approx(3300 * 10 / 3600)
    assert all(w.energy_wh >= 0 for w in run.windows)
    assert run.emitted + run.open_wh == pytest.approx(10 + 3300 * 10 / 3600 + 60)
    assert any(w.estimated for w in run.windows)
    assert "cp1: energy index went down (counter reset or meter replaced)" in caplog.text


def test_reset_without_power_counts_nothing_rather_than_guessing() -> None:
    run = Run(meter())
    run.feed(T0, 50_000.0)
    run.feed(T0 + timedelta(seconds=10), 20.0)  # replaced, and no power register
    run.feed(T0 + timedelta(seconds=70), 80.0)
    assert [e.event for e in run.events] == ["index_reset"]
    assert run.events[0].details["estimated_wh"] == 0
    assert run.emitted + run.open_wh == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("top", "bottom"),
    [
        (2**31 * 100.0 - 150.0, -(2**31) * 100.0 + 350.0),  # s32 in 0.1 kWh counts (EM111)
        (2**32 * 10.0 - 150.0, 350.0),  # u32 in 10 Wh counts (Legrand EMDX3)
        (2**32 * 1.0 - 150.0, 350.0),  # u32 in Wh
    ],
)
def test_32_bit_wrap_counts_the_difference(
    top: float, bottom: float, caplog: pytest.LogCaptureFixture
) -> None:
    run = Run(meter(gap_s=600))
    run.feed(T0, top, 7000.0)  # counter at its top
    run.feed(T0 + timedelta(minutes=5), bottom, 7000.0)
    assert [e.event for e in run.events] == ["index_wrap"]
    assert run.events[0].details == {"index_before_wh": top, "index_after_wh": bottom}
    assert "cp1: energy counter wrapped around" in caplog.text
    assert run.emitted + run.open_wh == pytest.approx(500.0)


def test_counter_span_from_the_profile_decides_wrap_or_reset() -> None:
    """A 16-bit kWh register wraps at 65,535 kWh, which no guess covers; a float index never
    wraps, so a fall from the top of a guessed span is a reset, not energy."""
    u16_kwh = PointEnergy("cp1", tariff(), 60, SOCKET_W, 600, counter_spans_wh=(2**16 * 1000.0,))
    run = Run(u16_kwh)
    run.feed(T0, 65_535_000.0, 7000.0)
    run.feed(T0 + timedelta(minutes=5), 0.0, 7000.0)  # 1 kWh count later: wrapped
    assert [e.event for e in run.events] == ["index_wrap"]
    assert run.emitted + run.open_wh == pytest.approx(1000.0)
    float_index = PointEnergy("cp1", tariff(), 60, SOCKET_W, 600, counter_spans_wh=())
    run = Run(float_index)
    run.feed(T0, 2**32 * 1.0 - 150.0, 7000.0)
    run.feed(T0 + timedelta(minutes=5), 350.0, 7000.0)
    assert [e.event for e in run.events] == ["index_reset"]  # estimated from power instead
    assert run.emitted + run.open_wh == pytest.approx(7000 * 5 / 60)


def test_impossible_jump_is_dropped_and_estimated(caplog: pytest.LogCaptureFixture) -> None:
    run = Run(meter())
    run.feed(T0, 10_000.0, 7000.0)
    run.feed(T0 + timedelta(seconds=1), 10_002.0, 7000.0)
    run.feed(T0 + timedelta(seconds=2), 90_000.0, 7000.0)  # 80 kWh in a second: a glitch
    run.feed(T0 + timedelta(seconds=3), 90_002.0, 7000.0)
    assert [e.event for e in run.events] == ["index_jump"]
    # Allowed from the reading before the index's last change: 2 s.
    assert "cp1: energy index jumped 79998 Wh in 2 s" in caplog.text
    assert run.emitted + run.open_wh == pytest.approx(2 + 7000 / 3600 + 2)


def test_estimate_for_a_rejected_jump_covers_the_time_the_index_stood_still() -> None:
    """The polls while the index stood still counted nothing: the estimate replacing the
    jump covers all of them, not only the last poll's interval."""
    run = Run(meter())
    run.feed(T0, 10_000.0, 7000.0)
    for second in range(1, 6):
        run.feed(T0 + timedelta(seconds=second), 10_002.0, 7000.0)
    run.feed(T0 + timedelta(seconds=6), 90_000.0, 7000.0)
    assert [e.event for e in run.events] == ["index_jump"]
    assert run.events[0].details["estimated_wh"] == pytest.approx(7000 * 5 / 3600, abs=1e-6)
    assert run.emitted + run.open_wh == pytest.approx(2 + 7000 * 5 / 3600)


def test_register_refreshed_every_few_seconds_is_not_a_jump() -> None:
    """Polled every second, an index the meter refreshes every 5 s rises by 5 s of energy at
    once: judged against the time since it last changed, it is all counted."""
    run = Run(meter())
    power = 7000.0  # under the socket's 8096 W; steps of 9.72 Wh, not a coarse index
    for second in range(0, 61):
        index = 10_000.0 + power / 3600 * (second // 5 * 5)
        run.feed(T0 + timedelta(seconds=second), index, power)
    assert run.events == []
    assert run.emitted + run.open_wh == pytest.approx(power / 3600 * 60)


def test_glitch_after_idle_days_is_still_a_jump() -> None:
    """Three idle days leave the index still; a +100 kWh glitch is not 'possible since the
    index last changed'."""
    run = Run(meter())
    for minute in range(0, 3 * 24 * 60 + 1):
        run.feed(T0 + timedelta(minutes=minute), 500_000.0, 0.0)
    run.feed(T0 + timedelta(days=3, minutes=1), 600_000.0, 0.0)
    assert [e.event for e in run.events] == ["index_jump"]
    assert run.emitted + run.open_wh == 0


def test_float_jitter_is_not_a_reset() -> None:
    run = Run(meter())
    run.feed(T0, 10_000.0)
    run.feed(T0 + timedelta(seconds=1), 9_999.9)
    run.feed(T0 + timedelta(seconds=2), 10_001.0)
    assert not run.events
    assert run.open_wh == pytest.approx(1.0)


def test_coarse_index_spread_by_power_and_reconciled_at_each_tick() -> None:
    """A 0.1 kWh register at 3.6 kW ticks every 100 s; windows still add up at each tick."""
    run = Run(meter())
    index = 500_000.0
    ticks = []
    for s in range(0, 601):
        ts = T0 + timedelta(seconds=s)
        if s and s % 100 == 37:  # the counter's phase is unknown at start
            index += 100.0
            ticks.append(s)
        run.feed(ts, index, 3600.0)
        if s in ticks:
            assert run.emitted + run.open_wh == pytest.approx(index - 500_000.0)
    assert len(run.windows) == 10
    # Power fills the windows between ticks: no window after the first tick is empty.
    assert all(w.energy_wh > 50 for w in run.windows[2:])
    assert all(w.energy_wh >= 0 for w in run.windows)


def test_whole_kwh_index_spread_by_power_between_ticks() -> None:
    """A register counting whole kWh (Hager ECR) at 7.2 kW ticks every 500 s: after the first
    tick (the counter's phase is unknown before it), every minute shows its 120 Wh instead of
    0 or 1000, and the windows still add up to the index at each tick."""
    run = Run(meter())
    index = 2_345_000.0
    for s in range(0, 3001):
        if s and s % 500 == 123:
            index += 1000.0
        run.feed(T0 + timedelta(seconds=s), index, 7200.0)
        if s % 500 == 123:
            assert run.emitted + run.open_wh == pytest.approx(index - 2_345_000.0)
    assert run.m.quantum_wh == 1000.0
    after_first_tick = [w for w in run.windows if w.start >= T0 + timedelta(seconds=180)]
    assert [w.energy_wh for w in after_first_tick] == pytest.approx([120.0] * 47, abs=1e-6)
    assert not run.events


def test_gap_across_hc_start_is_shared_by_time_and_flagged() -> None:
    run = Run(meter(tariff(), window_s=600, gap_s=60))
    before = datetime(2026, 1, 15, 21, 50, tzinfo=PARIS)
    run.feed(before - timedelta(seconds=1), 1000.0)
    run.feed(before, 1000.0)
    run.feed(before + timedelta(minutes=20), 3000.0)  # 20 min outage, 2 kWh
    assert [e.event for e in run.events] == ["energy_estimated"]
    assert [(w.period, w.energy_wh, w.estimated) for w in run.windows] == [
        ("HP", pytest.approx(1000.0), True),
        ("HC", pytest.approx(1000.0), True),
    ]


def test_restart_from_saved_state_neither_loses_nor_double_counts() -> None:
    t = tariff()
    run = Run(meter(t))
    for s in range(0, 95):
        run.feed(T0 + timedelta(seconds=s), 100.0 + 2 * s)
    saved = json.loads(json.dumps(run.m.to_dict()))
    resumed = meter(t)
    resumed.restore(saved)
    run.m = resumed
    for s in range(200, 300):  # restarted 105 s later
        run.feed(T0 + timedelta(seconds=s), 100.0 + 2 * s)
    assert run.emitted + run.open_wh == pytest.approx(2 * 299)
    starts = [w.start for w in run.windows]
    assert starts == sorted(set(starts))


# ---- property: any sequence of readings ---------------------------------------------------

step_strategy = st.one_of(
    st.tuples(st.just("inc"), st.integers(1, 120), st.floats(0, 1.0)),  # share of max energy
    st.tuples(st.just("reset"), st.integers(1, 120), st.floats(0, 5000)),  # new index base
    st.tuples(st.just("gap"), st.integers(600, 8 * 3600), st.floats(0, 1.0)),
    st.tuples(st.just("restart"), st.just(0), st.just(0.0)),
    st.tuples(st.just("jump"), st.integers(1, 120), st.floats(0, 1e6)),  # glitch beyond limit
)


@settings(max_examples=80, deadline=None)
@example(  # a jump after minutes of a still index: judged against the time since it changed
    first=0.0,
    steps=[
        ("inc", 2, 0.0),
        ("inc", 80, 0.0),
        ("inc", 120, 0.0),
        ("inc", 120, 0.0),
        ("jump", 34, 0.0),
    ],
    powered=False,
    coarse=False,
)
@given(
    first=st.floats(0, 1e7),
    steps=st.lists(step_strategy, max_size=40),
    powered=st.booleans(),
    coarse=st.booleans(),
)
def test_property_sum_of_windows_equals_consistent_index_difference(
    first: float, steps: list[tuple[str, int, float]], powered: bool, coarse: bool
) -> None:
    t = tariff()
    quantum = 100.0 if coarse else 0.0
    index = round(first / 100) * 100 if coarse else first
    ts = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # the steps cross DST and HC boundaries
    run = Run(meter(t))
    run.feed(ts, index, 3000.0 if powered else None)
    expected = 0.0
    # The reading before the index last changed: a rise is judged against the time since.
    before_change = previous = ts
    for kind, seconds, value in steps:
        if kind == "restart":
            resumed = meter(t)
            resumed.restore(json.loads(json.dumps(run.m.to_dict())))
            run.m = resumed
            continue
        ts += timedelta(seconds=seconds)
        target = round(value / 100) * 100 if coarse else value
        before = index
        if kind == "reset" and target < index - 1:  # a reset takes the index down
            index = target
        elif kind == "jump":  # more than the socket can draw since the last change: not energy
            possible = SOCKET_W * 1.25 * (ts - before_change).total_seconds() / 3600
            index += math.ceil((possible + 1002 + value) / 100) * 100
        elif kind != "reset":
            drawn = value * SOCKET_W * seconds / 3600
            if coarse:
                drawn = (drawn // quantum) * quantum
            index += drawn
            expected += drawn
        if index != before:
            before_change = previous
        previous = ts
        run.feed(ts, index, 3000.0 if powered else None)
    estimates = sum(
        float(e.details.get("estimated_wh") or 0)
        + float(e.details.get("provisional_dropped_wh") or 0)
        for e in run.events
    )
    assert all(w.energy_wh >= 0 and w.cost_eur >= 0 for w in run.windows)
    total = run.emitted + run.open_wh
    rounding = 1e-6 * (len(run.windows) + 1)  # each window is published to the µWh
    assert total == pytest.approx(expected + estimates + run.m.provisional_wh, abs=rounding)
    if not powered:
        assert estimates == 0 and run.m.provisional_wh == 0
        assert total == pytest.approx(expected, abs=rounding)
    # Never absurd: no window holds more than the socket can draw over the time it covers,
    # plus what a gap or an estimate shared into it.
    for w in run.windows:
        if not w.estimated:
            span_h = (w.end - w.start).total_seconds() / 3600
            assert w.energy_wh <= SOCKET_W * 1.25 * (span_h + 120 / 3600) + quantum + 1


@settings(max_examples=150, deadline=None)
@example(  # 40 A on a 32 A socket at 230 V, polled every second, register refreshed every 5 s
    refresh_ms=5000,
    phase_ms=300,
    polls=[(1000, 9200 / (SOCKET_W * 1.25))] * 40 + [(1300, 9200 / (SOCKET_W * 1.25))] * 20,
)
@given(
    refresh_ms=st.integers(1000, 30_000),
    phase_ms=st.integers(0, 30_000),
    polls=st.lists(st.tuples(st.integers(200, 10_000), st.floats(0, 1)), min_size=2, max_size=80),
)
def test_property_register_refreshed_between_polls_loses_nothing(
    refresh_ms: int, phase_ms: int, polls: list[tuple[int, float]]
) -> None:
    """A socket drawing anything up to its rating plus the margin, read by polls that do not
    see when the meter refreshes its energy register: no rise is rejected, and the windows add
    up exactly to the index difference."""
    start = 1_000_000.0
    run = Run(meter(gap_s=3600))
    drawn: list[tuple[int, float]] = [(0, start)]  # (ms, true energy) at every poll
    t_ms, energy = 0, start

    def register(at_ms: int) -> float:
        """The index the meter shows at `at_ms`: the true energy at its last refresh."""
        if at_ms < phase_ms:
            return start
        refreshed = at_ms - (at_ms - phase_ms) % refresh_ms
        for (t0, e0), (t1, e1) in reversed(list(pairwise(drawn))):
            if t0 <= refreshed:
                return e0 + (e1 - e0) * (refreshed - t0) / (t1 - t0)
        return start

    run.feed(T0, start, 0.0)
    for interval_ms, share in polls:
        power = share * SOCKET_W * 1.25
        t_ms += interval_ms
        energy += power * interval_ms / 3_600_000
        drawn.append((t_ms, energy))
        run.feed(T0 + timedelta(milliseconds=t_ms), register(t_ms), power)
    assert run.events == []
    # Until the index shows it is not a whole-kWh counter, power fills in provisionally.
    counted = run.emitted + run.open_wh - run.m.provisional_wh
    assert counted == pytest.approx(register(t_ms) - start, abs=1e-6 * 80)


def test_a_month_of_equal_window_costs_adds_up_to_the_cent() -> None:
    """Constant power repeats the same rounding in every window: 43,200 of them in a month."""
    energy_wh, price = 7000 / 60 + 0.000_000_4, 0.1579  # 7 kW for one minute, a hair more
    windows = 43_200
    exact = windows * energy_wh / 1000 * price
    assert math.fsum([cost_eur(energy_wh, price)] * windows) == pytest.approx(exact, abs=1e-4)
