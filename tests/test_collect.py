"""The collector's orchestration without a broker: a recording link, a scripted source."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.collect import Collector, Stages
from collector.meters.reading import Reading
from collector.pipeline import Processor
from collector.site import load_site
from collector.wire.kinds import Outgoing
from collector.wire.messages import EventMessage
from tests.support.links import RecordingLink
from tests.support.paths import EXAMPLES

TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Recording(Processor):
    def __init__(self) -> None:
        self.badges: list[tuple[str, str]] = []
        self.closed = False

    def on_reading(self, reading: Reading) -> Iterable[Outgoing]:
        event = EventMessage(ts=reading.ts, event="seen", message=f"{reading.power_w} W")
        return [Outgoing(reading.point, event)]

    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        self.badges.append((point, badge))
        return ()

    def close(self) -> None:
        self.closed = True


class Script:
    """A source: one reading and an availability change, then waits to be cancelled."""

    def __init__(self, app: Collector[RecordingLink], fail: bool = False) -> None:
        self.app, self.fail = app, fail

    async def run(self) -> None:
        self.app.availability("cp1", True, None)
        self.app.reading(Reading("cp1", TS, {"power_w": 7000.0, "energy_wh": 1000.0}))
        if self.fail:
            raise OSError("bus gone")
        await asyncio.Event().wait()


def app_with(tmp_path: Path) -> tuple[Collector[RecordingLink], RecordingLink, Recording]:
    site, profiles = load_site(str(EXAMPLES / "hotel-vda.yaml"))
    site = site.model_copy(update={"state_dir": tmp_path})
    link, processor = RecordingLink(), Recording()
    observed: list[str] = []
    stages = Stages(others=[processor], observers=[lambda out: observed.append(out.kind)])
    return Collector(site, profiles, link, stages, clock=lambda: TS), link, processor


def test_readings_become_state_and_processor_messages_and_stop_closes_processors(
    tmp_path: Path,
) -> None:
    app, link, processor = app_with(tmp_path)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(Script(app), stop))
        while len(link.sent) < 3:
            await asyncio.sleep(0.01)
        link.receive("irve/hotel-vda/cp1/badge", b'{"badge": "room-12"}')
        link.receive("irve/hotel-vda/cp2/badge", b'{"badge": "room-9"}', retained=True)
        stop.set()
        await task

    asyncio.run(scenario())
    assert link.topics() == [
        "irve/hotel-vda/cp1/availability",
        "irve/hotel-vda/cp1/state",  # the reading first, then what processors made of it
        "irve/hotel-vda/cp1/event",
    ]
    assert [(e.retain, e.critical) for e in link.sent] == [
        (True, False),
        (True, False),
        (False, True),
    ]
    assert processor.badges == [("cp1", "room-12")]  # never a retained badge
    assert processor.closed


def test_connection_sends_discovery_and_a_failing_source_stops_the_app(tmp_path: Path) -> None:
    app, link, processor = app_with(tmp_path)
    link.connect()
    assert link.sent and all(e.kind == "discovery" and e.retain for e in link.sent)

    async def scenario() -> None:
        await app.run(Script(app, fail=True), asyncio.Event())

    with pytest.raises(RuntimeError, match="poller failed: bus gone"):
        asyncio.run(scenario())
    assert processor.closed
