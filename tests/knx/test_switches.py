"""KNX contactors through a real knxd (KNXnet/IP tunnelling on loopback, no bus): the group
telegrams for pause and resume, seen by a second KNX client and by knxd's own group monitor."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from xknx import XKNX
from xknx.dpt.payload import DPTBinary
from xknx.io import ConnectionConfig, ConnectionType
from xknx.telegram import Telegram
from xknx.telegram.apci import GroupValueWrite

from collector.config import PriceRow, TariffSettings
from collector.knx.switches import KnxSwitches, connection_config
from collector.load.allocate import SocketSpec
from collector.load.controller import LoadController, Poll
from collector.load.schedule import Schedules
from collector.load.settings import KnxSettings, LoadManagementSettings, ScheduleSettings
from tests.support import servers

pytestmark = [pytest.mark.knx]

SWITCHES = {"cp1": "1/1/1", "cp2": "1/1/2"}


@pytest.fixture
def knxd(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.knxd(tmp_path / "knxd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settings(port: int, **more: object) -> KnxSettings:
    return KnxSettings.model_validate(
        {"gateway": f"127.0.0.1:{port}", "switches": SWITCHES, "timeout_s": 1.0, **more}
    )


class Observer:
    """A second KNX client on the same knxd: every group write it hears, in order."""

    def __init__(self, port: int) -> None:
        self.heard: list[tuple[str, int]] = []
        self._xknx = XKNX(
            connection_config=ConnectionConfig(
                connection_type=ConnectionType.TUNNELING, gateway_ip="127.0.0.1", gateway_port=port
            ),
            telegram_received_cb=self._telegram,
        )

    def _telegram(self, telegram: Telegram) -> None:
        payload = telegram.payload
        if isinstance(payload, GroupValueWrite) and isinstance(payload.value, DPTBinary):
            self.heard.append((str(telegram.destination_address), payload.value.value))

    async def wait_for(self, *expected: tuple[str, int], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.heard[: len(expected)] != list(expected):
            assert time.monotonic() < deadline, f"heard {self.heard}, expected {expected}"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def observing(port: int) -> AsyncIterator[Observer]:
    watcher = Observer(port)
    async with watcher._xknx:
        yield watcher


class GroupMonitor:
    """knxd's own group monitor (`knxtool groupsocketlisten`), line by line."""

    # A group address no test switches: the telegrams that prove the monitor listens.
    PROBE = "15/7/255"

    def __init__(self, workdir: Path) -> None:
        self.lines: list[str] = []
        self._socket = f"local:{workdir}/knxd.sock"
        self._process = subprocess.Popen(
            [
                "stdbuf",
                "-oL",
                servers.require("knxtool"),
                "groupsocketlisten",
                self._socket,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line.strip())

    def wait_listening(self, timeout: float = 10.0) -> None:
        """The monitor prints nothing once connected, and never shows a telegram sent before:
        write probes until it shows one (seen missing the first telegrams in CI)."""

        def heard() -> bool:
            subprocess.run(
                [servers.require("knxtool"), "groupswrite", self._socket, self.PROBE, "1"],
                capture_output=True,
                timeout=5,
                check=False,
            )
            time.sleep(0.1)
            return any(self.PROBE in line for line in self.lines)

        servers.wait_until(heard, timeout, "knxd's group monitor to listen")

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(5)


@pytest.mark.timing
def test_pause_and_resume_send_the_sockets_group_telegrams(knxd: servers.Server) -> None:
    monitor = GroupMonitor(knxd.workdir)
    try:
        monitor.wait_listening()
        asyncio.run(pause_and_resume(knxd.port))
        servers.wait_until(lambda: len(monitor.lines) >= 3, 10, "the group monitor")
    finally:
        monitor.stop()
    assert writes(monitor) == ["1/1/1: 00", "1/1/2: 00", "1/1/1: 01"]


async def pause_and_resume(port: int) -> None:
    async with observing(port) as observer, KnxSwitches(settings(port)) as knx:
        assert await knx.wait_connected(10)
        paused = await knx.switch("cp1", on=False)
        assert (paused.status, paused.address, paused.on) == ("sent", "1/1/1", False)
        assert (await knx.switch("cp2", on=False)).status == "sent"
        assert (await knx.switch("cp1", on=True)).status == "sent"
        await observer.wait_for(("1/1/1", 0), ("1/1/2", 0), ("1/1/1", 1))
        assert {p: (r.on, r.status) for p, r in knx.results().items()} == {
            "cp1": (True, "sent"),
            "cp2": (False, "sent"),
        }


@pytest.mark.timing
def test_switch_while_the_gateway_is_down_does_not_block_and_is_sent_once_it_answers(
    tmp_path: Path,
) -> None:
    gateway = servers.knxd(tmp_path / "knxd")

    async def scenario() -> None:
        async with KnxSwitches(settings(gateway.port)) as knx:
            started = time.monotonic()
            result = await knx.switch("cp2", on=False)
            assert result.status == "offline"
            assert time.monotonic() - started < 0.5
            gateway.start()
            async with observing(gateway.port) as observer:
                assert await knx.wait_connected(15)
                await observer.wait_for(("1/1/2", 0))

    try:
        asyncio.run(scenario())
    finally:
        gateway.stop()


def test_last_states_are_sent_again_after_the_gateway_restarts(knxd: servers.Server) -> None:
    monitor: GroupMonitor | None = None

    async def scenario() -> None:
        nonlocal monitor
        async with KnxSwitches(settings(knxd.port)) as knx:
            assert await knx.wait_connected(10)
            assert (await knx.switch("cp1", on=False)).status == "sent"
            assert (await knx.switch("cp2", on=True)).status == "sent"
            knxd.stop()
            knxd.start()
            # knxd's own monitor: a tunnel of the restarted knxd could be closed by xknx's
            # farewell to its old channel number, which the new knxd has handed out again.
            monitor = GroupMonitor(knxd.workdir)
            await asyncio.to_thread(monitor.wait_listening)
            # The restarted knxd forgot our tunnel: this switch times out, xknx reconnects,
            # and every socket's last state goes out again.
            assert (await knx.switch("cp2", on=False)).status == "timeout"
            await asyncio.to_thread(
                servers.wait_until,
                lambda: {"1/1/1: 00", "1/1/2: 00"} <= set(writes(monitor)),
                20,
                "the last states again",
            )

    try:
        asyncio.run(scenario())
    finally:
        if monitor is not None:
            monitor.stop()


def writes(monitor: GroupMonitor) -> list[str]:
    return [
        line.split(" to ", 1)[1]
        for line in monitor.lines
        if line.startswith("Write from") and GroupMonitor.PROBE not in line
    ]


@pytest.mark.timing
def test_a_hung_gateway_times_out_without_blocking(knxd: servers.Server) -> None:
    assert knxd.process is not None
    pid = knxd.process.pid

    async def scenario() -> None:
        async with KnxSwitches(settings(knxd.port, timeout_s=0.5)) as knx:
            assert await knx.wait_connected(10)
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                result = await knx.switch("cp1", on=False)
                assert (result.status, result.detail) == ("timeout", "not confirmed within 0.5 s")
                assert time.monotonic() - started < 1.0
            finally:
                os.kill(pid, signal.SIGCONT)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("on_stop", "expected"),
    [("off", [("1/1/1", 0), ("1/1/2", 0)]), ("on", [("1/1/1", 1), ("1/1/2", 1)]), ("keep", [])],
)
def test_what_a_clean_stop_leaves(
    knxd: servers.Server, on_stop: str, expected: list[tuple[str, int]]
) -> None:
    async def scenario() -> None:
        async with observing(knxd.port) as observer:
            async with KnxSwitches(settings(knxd.port, on_stop=on_stop)) as knx:
                assert await knx.wait_connected(10)
                assert (await knx.switch("cp1", on=False)).status == "sent"
                await observer.wait_for(("1/1/1", 0))
            await asyncio.sleep(0.3)
            assert observer.heard[1:] == expected

    asyncio.run(scenario())


def test_unknown_socket_is_refused() -> None:
    async def scenario() -> None:
        async with KnxSwitches(settings(9)) as knx:
            with pytest.raises(ValueError, match="no group address for socket 'cp9'"):
                await knx.switch("cp9", on=True)

    asyncio.run(scenario())


def test_schedule_boundaries_at_22_00_and_across_the_spring_dst_change(
    knxd: servers.Server,
) -> None:
    tariff = TariffSettings(option="base", prices=[PriceRow(since=date(2026, 1, 1), base=0.2)])
    nights = ScheduleSettings(sockets=["cp1"], allowed=["22:00-07:00"])
    controller = LoadController(
        LoadManagementSettings(enabled=False),
        36_000,
        [SocketSpec("cp1", 32), SocketSpec("cp2", 32)],
        Schedules([nights], tariff, ZoneInfo("Europe/Paris")),
    )
    # 28 March 2026 21:59 and 22:00 CET, then 29 March 06:59 and 07:00 CEST (the night the
    # clocks go forward): 20:59, 21:00, 04:59 and 05:00 UTC.
    instants = [
        datetime(2026, 3, d, h, m, tzinfo=UTC)
        for d, h, m in ((28, 20, 59), (28, 21, 0), (29, 4, 59), (29, 5, 0))
    ]

    async def scenario() -> None:
        async with observing(knxd.port) as observer, KnxSwitches(settings(knxd.port)) as knx:
            assert await knx.wait_connected(10)
            applied: dict[str, bool] = {}
            for at in instants:
                for point, limit in controller.decide(Poll(at, 10_000, {})).limits.items():
                    if applied.get(point) != (limit.current_a != 0):
                        applied[point] = (await knx.apply(point, limit)).on
            await observer.wait_for(("1/1/1", 0), ("1/1/2", 1), ("1/1/1", 1), ("1/1/1", 0))
            await asyncio.sleep(0.2)
            assert len(observer.heard) == 4

    asyncio.run(scenario())


def test_connection_kinds_from_the_site_file() -> None:
    # Routing needs multicast, which this machine's loopback does not carry: only the mapping
    # to xknx is checked here.
    routing = connection_config(
        KnxSettings.model_validate(
            {"routing": True, "local_ip": "192.168.1.10", "switches": SWITCHES}
        )
    )
    assert routing.connection_type is ConnectionType.ROUTING
    assert (routing.multicast_group, routing.multicast_port) == ("224.0.23.12", 3671)
    assert routing.local_ip == "192.168.1.10"
    tcp = connection_config(settings(3700, tunnel="tcp"))
    assert tcp.connection_type is ConnectionType.TUNNELING_TCP
    assert (tcp.gateway_ip, tcp.gateway_port) == ("127.0.0.1", 3700)
    assert connection_config(settings(3700)).connection_type is ConnectionType.TUNNELING
