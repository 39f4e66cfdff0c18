"""The load service's timing, in process (no actuator: the limits are advisory): which readings
a decision uses, and what a silent main meter counts as."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.load.controller import from_config
from collector.load.service import LoadService
from collector.meters.reading import Reading
from collector.site import load_site
from collector.wire.kinds import Outgoing
from collector.wire.messages import LimitMessage
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
