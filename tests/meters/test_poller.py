"""The poller against the simulator's real pymodbus server: requests, fallbacks, faults, rate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from collector.config import SiteConfig
from collector.meters.bus import BadAnswer, NoAnswer
from collector.meters.poller import Poller, PollStats, minimum_per_cycle, read_once
from collector.meters.profile import Profile, ValueSpec
from collector.meters.reading import Reading
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from tests.support.sim_helpers import main_meter, socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.modbus]

T = TypeVar("T")


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.availability_events: list[tuple[str, bool, str | None]] = []

    def reading(self, reading: Reading) -> None:
        self.readings.append(reading)

    def availability(self, point: str, online: bool, reason: str | None) -> None:
        self.availability_events.append((point, online, reason))

    def of(self, point: str) -> list[Reading]:
        return [r for r in self.readings if r.point == point]

    def events(self, point: str) -> list[bool]:
        return [online for p, online, _ in self.availability_events if p == point]


def hotel(
    tmp_path: Path, interval: float = 0.5, timeout: float = 0.3, kind: str = "tcp"
) -> tuple[SiteConfig, dict[str, Profile]]:
    meters = [
        main_meter("main", "board", 10),
        socket_meter("cp1", "board", 1),
        socket_meter("cp2", "board", 2),
    ]
    path = write_site(tmp_path, [tcp_bus("board", kind, timeout)], meters, poll_interval_s=interval)
    return load_site(str(path))


async def poll_until(poller: Poller, done: Callable[[], bool], limit_s: float = 10.0) -> PollStats:
    task = asyncio.create_task(poller.run())
    deadline = time.monotonic() + limit_s
    try:
        while not done():
            assert time.monotonic() < deadline, "poller did not get there in time"
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
        return poller.stats()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_each_meter_is_read_in_the_fewest_requests_its_profile_allows(tmp_path: Path) -> None:
    site, profiles = hotel(tmp_path)

    async def scenario() -> PollStats:
        async with SimulatedSite(site, profiles, seed=1):
            sink = Sink()
            poller = Poller(site, profiles, sink)
            stats = await poll_until(poller, lambda: poller.stats().cycles >= 2)
            assert len(sink.of("main")) == len(sink.of("cp1")) == stats.cycles
            return stats

    stats = run(scenario())
    # By hand from the profiles: the Legrand map is 39 registers from 4096 (1 request, max 40);
    # the SDM120's input registers 0-13, 30-31, 70-75 are 3 requests (gaps of 16 and 38 > 8).
    assert stats.requests == 7 * stats.cycles
    # Bytes, TCP ADU = 7-byte MBAP + PDU; request PDU 5; answer PDU 2 + 2 x registers.
    legrand = 12 + (7 + 2 + 2 * 39)
    sdm120 = 3 * 12 + (7 + 2 + 2 * 14) + (7 + 2 + 2 * 2) + (7 + 2 + 2 * 6)
    assert stats.bytes == (legrand + 2 * sdm120) * stats.cycles
    assert minimum_per_cycle(site, profiles) == (7, legrand + 2 * sdm120)
    assert stats.errors == 0 and stats.overruns == 0


def test_meter_refusing_long_reads_gets_smaller_ones_learnt_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site, profiles = hotel(tmp_path)
    caplog.set_level(logging.WARNING, logger="collector.meters.poller")

    async def scenario() -> tuple[Sink, list[int], dict[str, float]]:
        async with SimulatedSite(site, profiles, seed=1, speed=1e-9) as sim:
            sim.meter("cp1").max_read(4)  # older firmware: at most 4 registers per request
            sink = Sink()
            poller = Poller(site, profiles, sink)
            requests = []
            task = asyncio.create_task(poller.run())
            for cycles in range(1, 4):
                while poller.stats().cycles < cycles:
                    await asyncio.sleep(0.01)
                requests.append(poller.stats().requests)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            expected = sim.model.values("cp1")
            per_cycle = [requests[0], requests[1] - requests[0], requests[2] - requests[1]]
            return sink, per_cycle, expected

    sink, per_cycle, expected = run(scenario())
    # First cycle: 0+14 refused, 0+8 refused, 0+2, 6+2, 12+2, 30+2, 70+6 refused, 70+2, 72+4,
    # plus main (1) and cp2 (3). Then the learnt plan: 6 reads for cp1.
    assert per_cycle == [9 + 4, 6 + 4, 6 + 4]
    for reading in sink.of("cp1"):
        assert reading.values.keys() == profiles["eastron-sdm120"].values.keys()
        for name, value in reading.values.items():
            assert value == pytest.approx(expected[name], rel=1e-6), name
    learnt = [r for r in caplog.records if "refused reads" in r.getMessage()]
    assert len(learnt) == 1
    assert "cp1" in learnt[0].getMessage() and "at most 4 registers" in learnt[0].getMessage()


def test_value_whose_register_is_refused_becomes_null_and_is_not_asked_again(
    tmp_path: Path,
) -> None:
    site, profiles = hotel(tmp_path)
    sdm = profiles["eastron-sdm120"]
    # The collector's profile claims a register the (simulated) meter does not have.
    extra = {**sdm.values, "current_n_a": ValueSpec(address=0x0100, type="f32", unit="A")}
    collector_profiles = {**profiles, "eastron-sdm120": sdm.model_copy(update={"values": extra})}

    async def scenario() -> tuple[dict[str, Reading | Exception], dict[str, Reading | Exception]]:
        async with SimulatedSite(site, profiles, seed=1):
            return await read_once(site, collector_profiles, ["cp1"]), await read_once(
                site, collector_profiles, ["main"]
            )

    results, _ = run(scenario())
    reading = results["cp1"]
    assert isinstance(reading, Reading)
    assert reading.values["current_n_a"] is None
    assert reading.values["voltage_v"] == pytest.approx(230, abs=15)

    async def twice() -> list[int]:
        async with SimulatedSite(site, profiles, seed=1):
            sink = Sink()
            poller = Poller(site, collector_profiles, sink)
            seen = []
            task = asyncio.create_task(poller.run())
            for cycles in (1, 2):
                while poller.stats().cycles < cycles:
                    await asyncio.sleep(0.01)
                seen.append(poller.stats().requests)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert all(r.values["current_n_a"] is None for r in sink.of("cp1"))
            return [seen[0], seen[1] - seen[0]]

    # Cycle 1 asks 256+2 once per SDM120 (refused); cycle 2 no more: 1 + 3 + 3.
    assert run(twice()) == [1 + 4 + 4, 1 + 3 + 3]


@pytest.mark.timing
def test_silent_meter_costs_at_most_its_timeout_and_others_keep_their_rate(
    tmp_path: Path,
) -> None:
    site, profiles = hotel(tmp_path, interval=0.5, timeout=0.2)

    async def scenario() -> tuple[Sink, PollStats, float]:
        async with SimulatedSite(site, profiles, seed=1) as sim:
            sim.meter("cp2").silent()
            started = time.monotonic()
            single = await read_once(site, profiles, ["cp2"])
            cost = time.monotonic() - started
            assert isinstance(single["cp2"], NoAnswer)
            assert "unit 2" in str(single["cp2"])
            sink = Sink()
            poller = Poller(site, profiles, sink)
            stats = await poll_until(poller, lambda: len(sink.of("main")) >= 6)
            return sink, stats, cost

    sink, stats, cost = run(scenario())
    assert cost < 0.2 + 0.25  # one timeout, not one per request of its plan
    # The others were polled every cycle (the last cycle may stop between main and cp1).
    assert len(sink.of("cp1")) >= 5
    assert sink.of("cp2") == []
    assert stats.overruns == 0
    # Backoff: cp2 is not asked every cycle (retries after 1, 2, 4 .. cycles).
    # (stats.errors: requests that timed out; all are cp2's, one per attempt.)
    assert 1 <= stats.errors < stats.cycles
    assert sink.events("cp2") == [False]


def test_availability_goes_offline_then_online_again(tmp_path: Path) -> None:
    site, profiles = hotel(tmp_path, interval=0.2, timeout=0.15)

    async def scenario() -> Sink:
        async with SimulatedSite(site, profiles, seed=1) as sim:
            sim.meter("cp1").silent()
            sink = Sink()
            poller = Poller(site, profiles, sink)
            task = asyncio.create_task(poller.run())
            while not sink.events("cp1"):
                await asyncio.sleep(0.01)
            sim.meter("cp1").silent(False)
            deadline = time.monotonic() + 10
            while len(sink.events("cp1")) < 2 or not sink.of("cp1"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return sink

    sink = run(scenario())
    assert sink.events("cp1") == [False, True]
    assert sink.events("main") == [True]
    reason = next(r for p, online, r in sink.availability_events if p == "cp1" and not online)
    assert reason is not None and "unit 1" in reason and "no answer" in reason


def test_short_and_garbled_answers_fail_the_poll_without_a_bogus_number(
    tmp_path: Path,
) -> None:
    site, profiles = hotel(tmp_path, timeout=0.2)

    async def scenario() -> dict[str, Reading | Exception]:
        async with SimulatedSite(site, profiles, seed=1) as sim:
            sim.meter("cp1").short()
            sim.meter("cp2").garbled()
            return await read_once(site, profiles)

    results = run(scenario())
    assert isinstance(results["main"], Reading)
    short, garbled = results["cp1"], results["cp2"]
    assert isinstance(short, BadAnswer)
    assert "bus board unit 1 input 0+14" in str(short) and "7 registers, expected 14" in str(short)
    assert isinstance(garbled, NoAnswer)
    assert "bus board unit 2" in str(garbled)


class LyingGateway:
    """A Modbus TCP gateway whose every answer claims more data bytes than it carries."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tid, proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                function, _, count = struct.unpack(">BHH", await reader.readexactly(length - 1))
                self.requests += 1
                body = bytes([unit, function, 2 * count + 10]) + b"\x00\x01" * count
                writer.write(struct.pack(">HHH", tid, proto, len(body)) + body)
                await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def test_gateway_lying_about_its_byte_count_gives_one_warning_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """pymodbus cannot decode such a frame and raised inside the transport, where asyncio
    logged a 'Fatal error' traceback at every poll. Now: the meter goes offline with one
    warning naming a garbled answer, and is retried with backoff."""
    caplog.set_level(logging.DEBUG, logger="asyncio")
    caplog.set_level(logging.INFO)
    gateway = LyingGateway()
    interval = 0.1

    async def scenario() -> Sink:
        port = await gateway.start()
        bus = {**tcp_bus("board", timeout_s=0.5), "port": port}
        path = write_site(
            tmp_path, [bus], [socket_meter("cp1", "board", 1)], poll_interval_s=interval
        )
        site, profiles = load_site(str(path))
        sink = Sink()
        started = time.monotonic()
        try:
            await poll_until(Poller(site, profiles, sink), lambda: time.monotonic() > started + 3)
        finally:
            await gateway.stop()
        return sink

    sink = run(scenario())
    assert "Traceback" not in caplog.text and "Fatal error" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "meter cp1 (bus board, unit 1): offline" in warnings[0]
    assert "garbled answer" in warnings[0]
    assert sink.events("cp1") == [False]
    assert 2 <= gateway.requests <= 10  # backoff, not one request every 0.1 s (30)


def test_exception_code_marks_meter_offline(tmp_path: Path) -> None:
    site, profiles = hotel(tmp_path)

    async def scenario() -> Sink:
        async with SimulatedSite(site, profiles, seed=1) as sim:
            sim.meter("main").exception(4)  # slave device failure
            sink = Sink()
            poller = Poller(site, profiles, sink)
            await poll_until(poller, lambda: len(sink.of("cp1")) >= 2)
            return sink

    sink = run(scenario())
    assert sink.of("main") == []
    assert sink.events("main") == [False]
    reason = next(r for p, _, r in sink.availability_events if p == "main")
    assert reason is not None and "unit 10" in reason and "exception code 4" in reason


@pytest.mark.timing
def test_overrunning_cycle_skips_ticks_instead_of_stacking(tmp_path: Path) -> None:
    path = write_site(
        tmp_path, [tcp_bus("board")], [socket_meter("cp1", "board", 1)], poll_interval_s=0.2
    )
    site, profiles = load_site(str(path))
    # 120 ms between two requests to this meter, 3 requests: a cycle takes ~0.25 s > 0.2 s.
    slow = {
        **profiles,
        "eastron-sdm120": profiles["eastron-sdm120"].model_copy(update={"delay_ms": 120}),
    }

    async def scenario() -> tuple[Sink, PollStats, float]:
        async with SimulatedSite(site, profiles, seed=1):
            sink = Sink()
            poller = Poller(site, slow, sink)
            started = time.monotonic()
            stats = await poll_until(poller, lambda: len(sink.readings) >= 5)
            return sink, stats, time.monotonic() - started

    sink, stats, elapsed = run(scenario())
    assert stats.overruns >= 3
    gaps = [
        (b.ts - a.ts).total_seconds()
        for a, b in zip(sink.readings, sink.readings[1:], strict=False)
    ]
    # Skipping the missed tick doubles the period (0.4 s); stacking would give ~0.25 s.
    assert min(gaps) > 0.35, gaps
    assert elapsed > 4 * 0.35


def test_rtu_over_tcp_gateway(tmp_path: Path) -> None:
    site, profiles = hotel(tmp_path, kind="rtu_over_tcp")

    async def scenario() -> dict[str, Reading | Exception]:
        async with SimulatedSite(site, profiles, seed=1, speed=1e-9) as sim:
            sim.meter("cp2").force_current(12.5)
            return await read_once(site, profiles)

    results = run(scenario())
    cp2 = results["cp2"]
    assert isinstance(cp2, Reading)
    assert cp2.values["current_a"] == 12.5
    assert all(isinstance(r, Reading) for r in results.values())


def test_bus_reconnects_after_the_gateway_restarts(tmp_path: Path) -> None:
    site, profiles = hotel(tmp_path, interval=0.2, timeout=0.2)

    async def scenario() -> Sink:
        sink = Sink()
        poller = Poller(site, profiles, sink)
        task: asyncio.Task[None] | None = None
        try:
            async with SimulatedSite(site, profiles, seed=1):
                # Started once the gateway listens: its first connection must succeed.
                task = asyncio.create_task(poller.run())
                while len(sink.of("cp1")) < 2:
                    await asyncio.sleep(0.01)
            while sink.events("cp1") != [True, False]:  # gateway gone: every meter offline
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # a few failed reconnects, with backoff
            async with SimulatedSite(site, profiles, seed=1):  # same host:port again
                deadline = time.monotonic() + 15
                while sink.events("cp1") != [True, False, True]:
                    assert time.monotonic() < deadline, sink.availability_events
                    await asyncio.sleep(0.01)
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return sink

    sink = run(scenario())
    for point in ("main", "cp1", "cp2"):
        assert sink.events(point)[:2] == [True, False]
    reasons = [r for _, online, r in sink.availability_events if not online]
    assert all(r and "bus board" in r for r in reasons)


def test_a_failing_sink_does_not_stop_polling(tmp_path: Path) -> None:
    site, profiles = hotel(tmp_path, interval=0.1)

    class Flaky(Sink):
        def reading(self, reading: Reading) -> None:
            super().reading(reading)
            if len(self.readings) == 1:
                raise RuntimeError("downstream bug")

    async def scenario() -> Flaky:
        async with SimulatedSite(site, profiles, seed=1):
            sink = Flaky()
            await poll_until(Poller(site, profiles, sink), lambda: len(sink.readings) >= 6)
            return sink

    assert len(run(scenario()).readings) >= 6
