"""The load service in process: which readings a decision uses (no actuator: the limits are
advisory), and schedules switching KNX contactors through a real knxd at given instants."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.knx.switches import KnxSwitches
from collector.load.controller import from_config
from collector.load.service import LoadService
from collector.meters.reading import Reading
from collector.site import load_site
from collector.wire.kinds import Outgoing
from collector.wire.messages import LimitMessage
from tests.support import servers
from tests.support.collect_helpers import until
from tests.support.load import knx_observer
from tests.support.sim_helpers import main_meter, socket_meter, tcp_bus, write_site

T0 = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)


def service(tmp_path: Path, clock: list[float]) -> tuple[LoadService, list[Outgoing]]:
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[
            main_meter("main", "board", 10),
            socket_meter("cp1", "board", 1),
            socket_meter("cp2", "board", 2),
        ],
        poll_interval_s=1.0,
        load_management={"hysteresis_w": 0, "raise_after_s": 0, "min_change_interval_s": 0},
    )
    site, _ = load_site(str(path))
    controller = from_config(site)
    assert controller is not None
    published: list[Outgoing] = []
    return LoadService(site, controller, published.extend, monotonic=lambda: clock[0]), published


def limits(published: list[Outgoing], point: str) -> list[float | None]:
    return [
        o.message.current_a
        for o in published
        if o.point == point and isinstance(o.message, LimitMessage)
    ]


def test_the_main_meter_waits_for_the_sockets_read_in_its_poll_cycle(tmp_path: Path) -> None:
    """The main meter is read first in each cycle: reading it beside the sockets' previous
    readings (their cars not yet obeying) would see a smaller base load and raise the limits
    the cars have just obeyed (15.9 A here instead of keeping 10.8 A)."""
    clock = [0.0]
    load, published = service(tmp_path, clock)

    def cycle(n: int, main_w: float, cp1_w: float, cp2_w: float) -> None:
        at = T0 + timedelta(seconds=n)
        clock[0] = float(n)
        for point, watts in (("main", main_w), ("cp1", cp1_w), ("cp2", cp2_w)):
            load.reading(Reading(point, at, {"power_w": watts}))

    async def scenario() -> None:
        async with load:
            cycle(0, 20_000 + 14_620, 7_310, 7_310)  # under 35 kW: no limit
            await asyncio.sleep(0.05)
            cycle(1, 32_500 + 14_620, 7_310, 7_310)  # 2.5 kW of headroom: 10.8 A and a pause
            await asyncio.sleep(0.05)
            cycle(2, 32_500 + 2_470, 2_470, 0)  # the cars obeyed
            cycle(3, 32_500 + 2_470, 2_470, 0)
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert limits(published, "cp1") == [None, 10.8]
    assert limits(published, "cp2") == [None, 0.0]
    assert all(o.message.actuators == {"advisory": "shed"} for o in published)  # type: ignore[attr-defined]


def test_a_socket_that_does_not_answer_delays_the_decision_one_interval_at_most(
    tmp_path: Path,
) -> None:
    clock = [0.0]
    load, published = service(tmp_path, clock)

    async def scenario() -> None:
        async with load:
            load.reading(Reading("main", T0, {"power_w": 50_000}))
            load.reading(Reading("cp1", T0, {"power_w": 7_310}))
            await asyncio.sleep(0.05)
            assert published == []  # cp2 may still answer
            clock[0] = 1.0
            load.tick(T0 + timedelta(seconds=1))
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert limits(published, "cp1") == [0.0]  # 50 kW - 7.3 kW of base load: no headroom


@pytest.fixture
def knxd(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.knxd(tmp_path / "knxd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.knx
def test_schedule_boundaries_at_22_00_across_the_autumn_dst_change_switch_the_contactor(
    tmp_path: Path, knxd: servers.Server
) -> None:
    """cp1 may charge 22:00-07:00 (Europe/Paris), cp2 at any time, both behind KNX contactors.
    Polls at 21:59 and 22:00 on Saturday 24 October 2026 (CEST), then 06:59 and 07:00 on Sunday
    25 October (CET: the clocks went back at 03:00, so the night lasted 10 hours): cp1's
    contactor opens, closes at 22:00 and opens at 07:00; cp2's closes once. A second KNX client
    on knxd hears each telegram."""
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[
            main_meter("main", "board", 10),
            socket_meter("cp1", "board", 1),
            socket_meter("cp2", "board", 2),
        ],
        poll_interval_s=1.0,
        schedules=[{"sockets": ["cp1"], "allowed": ["22:00-07:00"]}],
        knx={"gateway": f"127.0.0.1:{knxd.port}", "switches": {"cp1": "1/1/1", "cp2": "1/1/2"}},
    )
    site, _ = load_site(str(path))
    assert site.site.timezone == "Europe/Paris" and site.knx is not None
    controller = from_config(site)
    assert controller is not None
    clock = [0.0]
    instants = [
        datetime(2026, 10, d, h, m, tzinfo=UTC)
        for d, h, m in ((24, 19, 59), (24, 20, 0), (25, 5, 59), (25, 6, 0))
    ]
    expected = [[0], [0, 1], [0, 1], [0, 1, 0]]
    published: list[Outgoing] = []

    async def scenario() -> None:
        async with (
            knx_observer(knxd.port) as observer,
            KnxSwitches(site.knx) as knx,  # type: ignore[arg-type]
        ):
            assert await knx.wait_connected(10)
            load = LoadService(site, controller, published.extend, None, knx, lambda: clock[0])
            async with load:
                for n, (at, heard) in enumerate(zip(instants, expected, strict=True)):
                    clock[0] = float(n)
                    for point in ("main", "cp1", "cp2"):
                        load.reading(Reading(point, at, {"power_w": 0.0}))
                    await until(lambda h=heard: observer.writes("1/1/1") == h, f"poll {n}")  # type: ignore[misc]
                await asyncio.sleep(0.3)
            assert observer.writes("1/1/2") == [1]
            assert observer.writes("1/1/1") == [0, 1, 0]

    asyncio.run(scenario())
    cp1 = [o.message for o in published if o.point == "cp1"]
    assert [(m.current_a, m.reason) for m in cp1] == [  # type: ignore[attr-defined]
        (0.0, "schedule"),
        (None, "none"),
        (0.0, "schedule"),
    ]
    assert all(m.actuators == {"knx": "sent"} for m in cp1)  # type: ignore[attr-defined]


def test_a_main_meter_silent_for_an_hour_is_the_fail_safe_at_once(tmp_path: Path) -> None:
    """A process suspended for an hour counts 3600 missed polls in one tick: the fail-safe
    (after failsafe_after_polls) caps every socket, without deciding 3600 times."""
    clock = [0.0]
    load, published = service(tmp_path, clock)
    decisions = 0
    decide = load.controller.decide

    def counted(poll: Any) -> Any:
        nonlocal decisions
        decisions += 1
        return decide(poll)

    load.controller.decide = counted  # type: ignore[method-assign]

    async def scenario() -> None:
        async with load:
            for point, watts in (("main", 20_000.0), ("cp1", 0.0), ("cp2", 0.0)):
                load.reading(Reading(point, T0, {"power_w": watts}))
            await asyncio.sleep(0.05)
            clock[0] = 3600.0
            load.tick(T0 + timedelta(hours=1))
            await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert decisions == 1 + 4  # the reading's, then failsafe_after_polls (3) + 1
    assert limits(published, "cp1") == [None, 6.0]
    assert published[-1].message.reason == "failsafe"  # type: ignore[attr-defined]
