"""The guide's worked table through the real pipeline, to the cent: simulated meter (Modbus
TCP) -> the collector app -> real mosquitto -> a test subscriber's `energy` and `session`
messages. Also index anomalies (meter replaced, impossible jump) published as `event`s.

The simulator's clock is driven by the test instead of the wall clock: after each reading of
the current instant, the next step's power is forced and simulated time jumps to the step's
end, so hours of charging take a few seconds and every kWh is exact (18 kW is 25 Wh per 5 s
simulator step; the ABB B23 counts 10 Wh). The collector reads the same clock, so its readings'
timestamps and indexes always belong to the same instant.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.collect import build_processors
from collector.meters.poller import Poller
from collector.simulator.model import MeterControl, SiteModel
from collector.simulator.server import SimClock, SimulatedSite
from collector.site import load_site
from collector.wire.kinds import Outgoing
from collector.wire.messages import EnergyMessage, EventMessage, SessionMessage, StateMessage
from collector.wire.times import utc_now
from tests.support.app import make_app, with_app
from tests.support.collect_helpers import Recorder, until
from tests.support.servers import Server
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.broker]


PARIS = ZoneInfo("Europe/Paris")
SITE = "test-site"
POINT = "cp1"
# The guide prices recharges with EDF December 2023 figures (tariffs.md 2.7).
START = datetime(2023, 12, 11, 19, 0, tzinfo=PARIS)
PRICES = {"since": "2023-08-01", "base": 0.2276, "hp": 0.2426, "hc": 0.1828}
POWER_W = 18_000.0  # 3 x 6 kW on a 32 A three-phase socket
INDEX_WH = 1_000_000.0  # the meter's index when the test starts
WINDOW_S = 1800  # half-hours, like a Linky load curve: fewer steps, a faster test
MAX_STEP_S = WINDOW_S  # longer steps would be gaps (shared by time and flagged)
END_AFTER_S = 300.0
# The guide's table, kWh -> EUR per column, as printed (kWh x price, 4 decimals).
TABLE: dict[int, dict[str, str]] = {
    8: {"BASE": "1.8208", "HP": "1.9408", "HC": "1.4624"},
    12: {"BASE": "2.7312", "HP": "2.9112", "HC": "2.1936"},
    15: {"BASE": "3.4140", "HP": "3.6390", "HC": "2.7420"},  # per 100 km at 15 kWh
    20: {"BASE": "4.5520", "HP": "4.8520", "HC": "3.6560"},  # per 100 km at 20 kWh
    25: {"BASE": "5.6900", "HP": "6.0650", "HC": "4.5700"},
    40: {"BASE": "9.1040", "HP": "9.7040", "HC": "7.3120"},
    60: {"BASE": "13.6560", "HP": "14.5560", "HC": "10.9680"},
}
PRICE = {"BASE": 0.2276, "HP": 0.2426, "HC": 0.1828}


def cents(amount: float | str | Decimal) -> Decimal:
    return Decimal(str(amount)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class Step:
    """Force `power_w` on the socket (after `action`, if any), then let `seconds` pass."""

    seconds: float
    power_w: float
    action: Callable[[MeterControl], None] | None = None


def charge(kwh: float) -> list[Step]:
    """A recharge of exactly `kwh`, then the socket idle until the session ends."""
    seconds = kwh * 1000 / POWER_W * 3600
    steps = []
    while seconds > 0:
        steps.append(Step(min(seconds, MAX_STEP_S), POWER_W))
        seconds -= MAX_STEP_S
    return [*steps, Step(END_AFTER_S, 0.0), Step(END_AFTER_S, 0.0)]


class Script(SimClock):
    """The simulator's clock, moved by the test one step per reading (see the module doc).
    Steps are taken inside the app's observer, between two polls: no reading can see a
    half-taken step."""

    def __init__(self, model: SiteModel, steps: list[Step]) -> None:
        super().__init__(model, speed=1.0)
        self.t = model.now
        self.steps = deque(steps)
        self.control = model.control(POINT)
        self.done = asyncio.Event()

    def now(self) -> datetime:
        return self.t

    def observe(self, out: Outgoing) -> None:
        message = out.message
        if out.kind != "state" or out.point != POINT or not isinstance(message, StateMessage):
            return
        if message.ts != self.t:
            return
        if self.steps:
            self.take()
        else:
            self.done.set()

    def take(self) -> None:
        step = self.steps.popleft()
        if step.action is not None:
            step.action(self.control)
        self.control.force_power(step.power_w)
        self.t += timedelta(seconds=step.seconds)

    def resume(self, steps: list[Step]) -> None:
        """More steps, the first one taken at once (while no collector is running)."""
        self.steps.extend(steps)
        self.done.clear()
        self.take()


def site_file(tmp_path: Path, broker: Server, tariff: dict[str, Any]) -> Path:
    meter = socket_meter(POINT, "board", 1, profile="abb-b23")
    meter["socket"]["phases"] = 3
    return write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[meter],
        site={"id": SITE, "timezone": "Europe/Paris", "subscribed_power_kva": 36},
        tariff=tariff,
        mqtt={"host": "127.0.0.1", "port": broker.port, "discovery": False},
        poll_interval_s=0.1,
        state_dir=str(tmp_path / "state"),
        energy={"window_s": WINDOW_S},
        sessions={
            "start_power_w": 300,
            "start_after_s": 0,
            "stop_power_w": 100,
            "end_after_s": END_AFTER_S,
        },
    )


def run_pipeline(path: Path, broker: Server, steps: list[Step], *more: list[Step]) -> Recorder:
    """Simulator -> collector -> mosquitto until the script is played; the subscriber. Each
    list in `more` is played by a new collector (a restart, same state file), its first step
    while none runs."""
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port, (f"irve/{SITE}/{POINT}/#",))
    published: list[Outgoing] = []

    async def scenario() -> None:
        sim = SimulatedSite(site, profiles, seed=7, start=START)
        for phase in sim.meter(POINT).state.phases:
            phase.import_wh = INDEX_WH / 3
        script = Script(sim.model, steps)
        sim.clock = script  # before start(): the Modbus servers read this clock
        async with sim:
            for later in [None, *more]:
                if later is not None:
                    script.resume(later)
                stages = build_processors(site, profiles)
                stages.observers += [script.observe, published.append]
                app = make_app(site, profiles, stages, clock=script.now)

                async def body() -> None:
                    await asyncio.wait_for(script.done.wait(), 60)
                    await until(lambda: app.link.idle, "everything acknowledged")  # noqa: B023

                poller = Poller(site, profiles, app, clock=script.now)
                await with_app(app, poller, body)

    asyncio.run(scenario())
    for kind in ("energy", "session", "event"):
        sent = sum(1 for o in published if o.kind == kind)
        topic = f"irve/{SITE}/{POINT}/{kind}"
        sub.wait(lambda: len(sub.on(topic)) >= sent, f"{sent} {kind} messages")  # noqa: B023
    sub.close()
    return sub


def windows(sub: Recorder) -> list[EnergyMessage]:
    """Received energy windows, one per start (QoS 1 may deliver one twice)."""
    by_start: dict[datetime, EnergyMessage] = {}
    for payload in sub.on(f"irve/{SITE}/{POINT}/energy"):
        message = EnergyMessage.model_validate(json.loads(payload))
        by_start[message.start] = message
    return [by_start[s] for s in sorted(by_start)]


def session_ends(sub: Recorder) -> list[SessionMessage]:
    ends: dict[str, SessionMessage] = {}
    for payload in sub.on(f"irve/{SITE}/{POINT}/session"):
        message = SessionMessage.model_validate(json.loads(payload))
        if message.event == "end":
            ends[message.session_id] = message
    return sorted(ends.values(), key=lambda m: m.ts)


def events(sub: Recorder) -> list[EventMessage]:
    return [
        EventMessage.model_validate(json.loads(p)) for p in sub.on(f"irve/{SITE}/{POINT}/event")
    ]


HPHC = {"option": "hphc", "prices": [PRICES]}


@pytest.mark.parametrize(
    ("column", "tariff"),
    [
        ("BASE", {"option": "base", "prices": [PRICES]}),
        ("HC", {**HPHC, "offpeak": ["18:00-08:00"]}),  # covers the whole test (19:00 to 06:40)
        ("HP", {**HPHC, "offpeak": ["09:00-17:00"]}),  # avoids it
    ],
)
def test_guide_table_to_the_cent(
    tmp_path: Path, broker: Server, column: str, tariff: dict[str, Any]
) -> None:
    steps = [step for kwh in TABLE for step in charge(kwh)]
    sub = run_pipeline(site_file(tmp_path, broker, tariff), broker, [*steps, Step(WINDOW_S, 0)])
    price = PRICE[column]

    # Every recharge is one session, costed as the guide does.
    ends = session_ends(sub)
    assert [round(s.energy_wh, 6) for s in ends] == [kwh * 1000.0 for kwh in TABLE]
    for session, (kwh, row) in zip(ends, TABLE.items(), strict=True):
        assert session.cost_eur == pytest.approx(float(row[column]), abs=1e-6), kwh
        assert cents(session.cost_eur) == cents(row[column])
        assert list(session.periods) == [column]
        assert session.duration_s == kwh * 1000 / POWER_W * 3600 + END_AFTER_S
        assert session.max_power_w == pytest.approx(POWER_W, rel=1e-3)

    # The windows: one period and price each, never negative, adding up to the index
    # difference (each window's index_start is the previous one's index_end).
    received = windows(sub)
    assert {(w.period, w.price_eur_kwh) for w in received} == {(column, price)}
    assert all(w.energy_wh > 0 and not w.estimated for w in received)
    assert all(w.cost_eur == round(w.energy_wh / 1000 * price, 6) for w in received)
    for before, after in pairwise(received):
        assert after.index_start_wh == pytest.approx(before.index_end_wh, abs=1e-3)
    total_kwh = sum(TABLE)
    assert received[0].index_start_wh == INDEX_WH
    assert received[-1].index_end_wh == INDEX_WH + total_kwh * 1000
    assert sum(w.energy_wh for w in received) == pytest.approx(total_kwh * 1000, abs=1e-5)
    total_cost = sum(w.cost_eur for w in received)
    assert total_cost == pytest.approx(sum(float(row[column]) for row in TABLE.values()), abs=1e-5)
    assert cents(total_cost) == cents(total_kwh * Decimal(str(price)))
    assert events(sub) == []


def replace_meter(control: MeterControl) -> None:
    for phase in control.state.phases:
        phase.import_wh = 0.0  # a new meter, index from zero


def glitch(control: MeterControl) -> None:
    control.state.phases[0].import_wh += 50_000.0  # 50 kWh more than the socket can draw


def test_index_anomalies_are_published_as_events_and_estimated(
    tmp_path: Path, broker: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Meter replaced mid-charge, then an impossible jump: each step is estimated from power
    (here exact, the power is constant), logged and published; the session goes on."""
    tariff = {"option": "base", "prices": [PRICES]}
    steps = [
        Step(MAX_STEP_S, POWER_W),
        Step(MAX_STEP_S, POWER_W, replace_meter),
        Step(MAX_STEP_S, POWER_W, glitch),
        Step(MAX_STEP_S, POWER_W),
        Step(END_AFTER_S, 0.0),
        Step(END_AFTER_S, 0.0),
        Step(WINDOW_S, 0.0),
    ]
    sub = run_pipeline(site_file(tmp_path, broker, tariff), broker, steps)
    step_wh = POWER_W * MAX_STEP_S / 3600
    received = events(sub)
    assert [e.event for e in received] == ["index_reset", "index_jump"]
    assert [e.details["estimated_wh"] for e in received] == pytest.approx([step_wh, step_wh])
    assert received[0].details["index_after_wh"] == pytest.approx(step_wh)
    assert "counter reset or meter replaced" in caplog.text
    assert "more than the socket can draw" in caplog.text
    energy = windows(sub)
    assert all(w.energy_wh >= 0 for w in energy)
    assert [w.estimated for w in energy] == [False, True, True, False]
    assert sum(w.energy_wh for w in energy) == pytest.approx(4 * step_wh, abs=1e-5)
    (session,) = session_ends(sub)
    assert session.energy_wh == pytest.approx(4 * step_wh, abs=1e-5)
    assert session.cost_eur == pytest.approx(4 * step_wh / 1000 * 0.2276, abs=1e-6)


def test_restart_mid_charge_neither_loses_nor_double_counts(tmp_path: Path, broker: Server) -> None:
    """The collector stops mid-charge and comes back 40 minutes later (longer than a window).
    From the state file, the index difference since the last saved reading is shared over the
    gap by time and flagged; a window emitted again keeps its start (the store keeps the
    last); the session goes on as one."""
    tariff = {"option": "base", "prices": [PRICES]}
    before = [Step(MAX_STEP_S, POWER_W), Step(MAX_STEP_S / 2, POWER_W)]
    away_s = 2400.0
    after = [
        Step(away_s, POWER_W),
        Step(MAX_STEP_S, POWER_W),
        Step(END_AFTER_S, 0.0),
        Step(END_AFTER_S, 0.0),
        Step(WINDOW_S, 0.0),
    ]
    sub = run_pipeline(site_file(tmp_path, broker, tariff), broker, before, after)
    drawn_s = 1.5 * MAX_STEP_S + away_s + MAX_STEP_S
    truth_wh = POWER_W * drawn_s / 3600
    energy = windows(sub)
    assert sum(w.energy_wh for w in energy) == pytest.approx(truth_wh, abs=1e-5)
    assert energy[-1].index_end_wh == INDEX_WH + truth_wh
    assert any(w.estimated for w in energy)
    assert [e.event for e in events(sub)] == ["energy_estimated"]
    (session,) = session_ends(sub)
    assert session.energy_wh == pytest.approx(truth_wh, abs=1e-5)
    assert session.duration_s == drawn_s + END_AFTER_S


def test_overcurrent_socket_read_late_loses_no_energy(tmp_path: Path, broker: Server) -> None:
    """`overcurrent:cp1:40`: a 32 A socket drawing 40 A (its rating plus the over-current
    margin), its energy register refreshed every 5 s simulator step, polled every second by a
    poller whose timestamps lag every other read by most of a poll (a bus busy with other
    meters; the timestamp is taken before the read). No rise is rejected as a jump and the
    windows add up exactly to the index difference."""
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter(POINT, "board", 1)],
        mqtt={"host": "127.0.0.1", "port": broker.port, "discovery": False},
        poll_interval_s=1.0,
        state_dir=str(tmp_path / "state"),
        energy={"window_s": 10},
    )
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port, (f"irve/{SITE}/{POINT}/#",))
    polls = 0

    def lagging_clock() -> datetime:
        nonlocal polls
        polls += 1
        return utc_now() - timedelta(seconds=0.95 if polls % 2 else 0.0)

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=3, scenarios=["overcurrent:cp1:40"]):
            app = make_app(site, profiles)

            async def body() -> None:
                await until(lambda: len(windows(sub)) >= 2, "two 10 s windows", timeout=40)

            await with_app(app, Poller(site, profiles, app, clock=lagging_clock), body)

    asyncio.run(scenario())
    energy = windows(sub)
    sub.close()
    assert events(sub) == []
    assert all(w.energy_wh > 0 and not w.estimated for w in energy)
    first, last = energy[0].index_start_wh, energy[-1].index_end_wh
    assert first is not None and last is not None
    assert sum(w.energy_wh for w in energy) == pytest.approx(last - first, abs=1e-3)
    assert last - first > 2 * 40 * 230 * 5 / 3600  # several register refreshes at 40 A
