"""Stopping the poller while a meter's answer and the cancellation arrive together."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from collector.meters.poller import Poller
from collector.meters.reading import Reading
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.modbus]


class Sink:
    def __init__(self) -> None:
        self.readings = 0

    def reading(self, reading: Reading) -> None:
        self.readings += 1

    def availability(self, point: str, online: bool, reason: str | None) -> None:
        pass


def test_stop_is_honoured_when_a_read_swallows_the_cancellation(tmp_path: Path) -> None:
    path = write_site(
        tmp_path, [tcp_bus("board")], [socket_meter("cp1", "board", 1)], poll_interval_s=0.1
    )
    site, profiles = load_site(str(path))

    async def scenario() -> int:
        async with SimulatedSite(site, profiles, seed=1):
            sink = Sink()
            poller = Poller(site, profiles, sink)
            bus = poller._buses["board"]
            real_read = bus.read
            reading = asyncio.Event()

            async def read_like_wait_for(*args: Any, **kwargs: Any) -> list[int]:
                # What asyncio.wait_for does in Python 3.11 when the answer is already there
                # as the task is cancelled: return the answer, drop the cancellation (once).
                words = await real_read(*args, **kwargs)
                if not reading.is_set():
                    reading.set()
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.sleep(0.5)
                return words

            bus.read = read_like_wait_for  # type: ignore[method-assign]
            task = asyncio.create_task(poller.run())
            await reading.wait()
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, "the poller went on polling after it was cancelled"
            assert task.cancelled()
            return sink.readings

    assert run(scenario()) <= 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)
