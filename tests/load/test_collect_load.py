"""Load management in the real `irve collect`: the simulator's Modbus meters (a hotel whose base
load the test moves, cars that draw what their charger allows), a real mosquitto, and charge
points driven by the tests with the `ocpp` library, which obey the charging profiles they get."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.site import load_site
from tests.support import servers
from tests.support.collect_helpers import collect_process, collecting
from tests.support.load import LimitRecorder, ObedientStation, Physics, knx_observer, obedient
from tests.support.servers import Server, free_port, wait_until
from tests.support.sim_helpers import (
    main_meter,
    running_simulator,
    simulate_process,
    socket_meter,
    tcp_bus,
    write_site,
)

pytestmark = [pytest.mark.broker]

SITE = "test-site"
PASSWORD = "borne-secret"
POLL_S = 0.5
LIMIT_W = 35_000  # 36 kVA - margin_w 1000


def load_site_file(
    tmp_path: Path, broker: Server, port: int, knx: dict[str, Any] | None = None, **load: Any
) -> Path:
    more: dict[str, Any] = {"knx": knx} if knx is not None else {}
    return write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[
            main_meter("main", "board", 10),
            socket_meter("cp1", "board", 1),
            socket_meter("cp2", "board", 2),
        ],
        mqtt={"host": "127.0.0.1", "port": broker.port},
        poll_interval_s=POLL_S,
        state_dir=str(tmp_path / "state"),
        ocpp={"listen": f"127.0.0.1:{port}", "heartbeat_s": 10},
        chargers=[
            {"id": "borne-1", "password": PASSWORD, "connectors": {1: "cp1"}},
            {"id": "borne-2", "password": PASSWORD, "connectors": {1: "cp2"}},
        ],
        load_management={
            "margin_w": 1000,
            "hysteresis_w": 500,
            "raise_after_s": 2,
            "min_change_interval_s": 1,
            **load,
        },
        **more,
    )


def stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=20)[0].decode()
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0].decode()


async def until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def url(port: int, charger: str) -> str:
    return f"ws://{charger}:{PASSWORD}@127.0.0.1:{port}/ocpp/{charger}"


@contextlib.asynccontextmanager
async def both_chargers(
    port: int, hotel: Physics
) -> AsyncIterator[tuple[ObedientStation, ObedientStation]]:
    """borne-1 (cp1) and borne-2 (cp2) connected to the collector, obeying its limits."""
    async with (
        obedient(url(port, "borne-1"), "borne-1", hotel.obey("cp1")) as cp1,
        obedient(url(port, "borne-2"), "borne-2", hotel.obey("cp2")) as cp2,
    ):
        yield cp1, cp2


def ts(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["ts"])


def test_two_cars_and_a_rising_base_load_are_limited_paused_and_resumed(
    tmp_path: Path, broker: Server
) -> None:
    """Two cars at 32 A and the hotel's base load rising past 36 kVA: both chargers get limits
    from the poll that read the overload or the next; the site is back under once the cars
    follow; below 2 x 6 A of headroom cp2 (last in the site's order) pauses; when the load falls
    the limits rise only after the site stayed under for raise_after_s, cp1 resuming before
    cp2."""
    port = free_port()
    path = load_site_file(tmp_path, broker, port)
    site, profiles = load_site(str(path))
    sub = LimitRecorder(broker.port, SITE)
    with (
        running_simulator(site, profiles, seed=1) as sim,
        Physics(sim, ["cp1", "cp2"], base_w=20_000, want_a=32) as hotel,
    ):
        process = collect_process(path)
        try:

            async def scenario() -> None:
                await until(collecting(lambda: sub.status, port), "collector online", 30)
                async with (
                    both_chargers(port, hotel) as (cp1, cp2),
                ):
                    await run_overload(sub, hotel, cp1, cp2)

            asyncio.run(scenario())
        finally:
            output = stop(process)
    sub.close()
    assert process.returncode == 0, output


async def run_overload(
    sub: LimitRecorder, hotel: Physics, cp1: ObedientStation, cp2: ObedientStation
) -> None:
    # No limit while the site is under: our profiles are cleared once each charger is there.
    def cleared(point: str) -> bool:
        return (sub.last(point) or {}).get("actuators") == {"ocpp": "accepted"}

    await until(lambda: cleared("cp1") and cleared("cp2"), "the first limits")
    for point in ("cp1", "cp2"):
        assert (sub.last(point) or {}).get("current_a") is None
        assert (sub.last(point) or {}).get("reason") == "none"
    assert cp1.got("ClearChargingProfile") and not cp1.profiles

    # 24 kW + two cars at 32 A (about 14.6 kW): over 35 kW.
    mark = len(sub.main)
    hotel.base_w = 24_000
    await until(lambda: cp1.limits() and cp2.limits(), "limits on both chargers")
    polls = sub.main[mark:]
    first = next(i for i, (_, m) in enumerate(polls) if m["power_w"] > LIMIT_W)
    await until(lambda: len(sub.main) > mark + first + 1, "the next poll")
    (limited,) = [m for m in sub.of("cp1") if m["current_a"] is not None][:1]
    assert limited["reason"] == "overload" and limited["actuators"] == {"ocpp": "accepted"}
    # Decided at the poll that read the overload, or the next one.
    assert ts(limited) <= ts(sub.main[mark + first + 1][1])
    assert 6 <= cp1.limits()[0] < 32 and cp1.limits()[0] == cp2.limits()[0]
    # Both limits obeyed together fit the headroom (35 kW - 24 kW).
    assert 2 * cp1.limits()[0] * 230 <= LIMIT_W - 24_000
    # The cars follow: the site is back under its limit.
    mark = len(sub.main)
    await until(lambda: any(m["power_w"] <= LIMIT_W for _, m in sub.main[mark:]), "site back under")

    # 33 kW: 2 kW of headroom cannot give both cars 6 A (2 x 1380 W): cp2 pauses, cp1 goes on.
    hotel.base_w = 33_000
    await until(lambda: (sub.last("cp2") or {}).get("current_a") == 0, "cp2 paused")
    assert cp2.limits()[-1] == 0
    # 2 kW give 8.6 A, or 8.7 when the base load reads a few watts under 33 kW: the main meter
    # holds the sockets' power as Physics last set it (every 50 ms), their voltage moves on.
    assert 6 <= (sub.last("cp1") or {})["current_a"] <= 8.7
    # 34.5 kW: not even one minimum: cp1 pauses too.
    hotel.base_w = 34_500
    await until(lambda: (sub.last("cp1") or {}).get("current_a") == 0, "cp1 paused")

    # 33.5 kW (1.5 kW of headroom: one minimum, not two): after raise_after_s cp1 resumes first.
    mark = len(sub.main)
    hotel.base_w = 33_500
    await until(lambda: len(sub.main) > mark, "a poll")
    resumed = await until(
        lambda: [m for m in sub.of("cp1") if m["current_a"] != 0 and ts(m) > ts(sub.main[mark][1])],
        "cp1 resumes",
    )
    under = [ts(m) for _, m in sub.main[mark:] if m["power_w"] <= LIMIT_W - 500]
    assert (ts(resumed[0]) - under[0]).total_seconds() >= 2.0  # the hysteresis held it
    assert (sub.last("cp2") or {}).get("current_a") == 0  # cp2 still waits
    # 20 kW: room for both at full current: cp2 resumes, then the limits are lifted.
    hotel.base_w = 20_000
    await until(
        lambda: all((sub.last(p) or {}).get("current_a") is None for p in ("cp1", "cp2")),
        "limits lifted",
        timeout=30,
    )
    assert cp2.got("ClearChargingProfile")


def test_failsafe_when_the_main_meter_goes_silent_and_profiles_that_expire_after_sigkill(
    tmp_path: Path, broker: Server
) -> None:
    """The main meter silent for failsafe_after_polls polls: both chargers capped at 6 A
    (reason failsafe), renewed at half their validity while it lasts; the collector killed:
    nothing clears them, and they end by themselves profile_validity_s after their last
    renewal, as their valid_to says."""
    port = free_port()
    path = load_site_file(tmp_path, broker, port, profile_validity_s=10)
    site, profiles = load_site(str(path))
    sub = LimitRecorder(broker.port, SITE)
    with (
        running_simulator(site, profiles, seed=1) as sim,
        Physics(sim, ["cp1", "cp2"], base_w=20_000, want_a=32) as hotel,
    ):
        process = collect_process(path)
        try:

            async def scenario() -> None:
                await until(collecting(lambda: sub.status, port), "collector online", 30)
                async with (
                    both_chargers(port, hotel) as (cp1, cp2),
                ):
                    await until(lambda: cp1.got("ClearChargingProfile"), "cp1 cleared")
                    silent_from = time.monotonic()
                    sim.meter("main").silent()
                    await until(lambda: cp1.limits() and cp2.limits(), "fail-safe limits")
                    # 3 polls of 0.5 s without a reading, counted at the collector's 1 s ticks.
                    assert time.monotonic() - silent_from < 3 * POLL_S + 2.5
                    assert cp1.limits() == [6.0] and cp2.limits() == [6.0]
                    for point in ("cp1", "cp2"):
                        await until(
                            lambda p=point: (  # type: ignore[misc]
                                (
                                    (sub.last(p) or {}).get("current_a"),
                                    (sub.last(p) or {}).get("reason"),
                                )
                                == (6.0, "failsafe")
                            ),
                            f"{point}'s fail-safe limit message",
                        )
                    # Renewed at half of profile_validity_s, with a later end.
                    await until(lambda: len(cp1.profiles) >= 2, "a renewal", timeout=10)
                    first, renewed = cp1.profiles[0], cp1.profiles[1]
                    assert 4.0 <= renewed[0] - first[0] <= 7.0
                    assert valid_to(renewed[1]) > valid_to(first[1])
                    process.kill()
                    process.wait()
                    killed_at = time.monotonic()
                    await asyncio.sleep(3.0)
                    for cp in (cp1, cp2):
                        # Received (by this loop, busy killing) at most a moment after the kill:
                        # a frame already on its way, nothing sent by a process that is gone.
                        received, last_profile = cp.profiles[-1]
                        assert received < killed_at + 1.0
                        assert not [a for a, _ in cp.received if a == "ClearChargingProfile"][1:]
                        profile = last_profile["cs_charging_profiles"]
                        assert profile["charging_profile_purpose"] == "TxDefaultProfile"
                        assert profile["charging_schedule"]["duration"] == 10
                        lasts = valid_to(last_profile) - datetime.fromisoformat(
                            profile["valid_from"]
                        )
                        assert lasts.total_seconds() == 10

            asyncio.run(scenario())
        finally:
            stop(process)
    sub.close()
    assert process.returncode == -signal.SIGKILL


def valid_to(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(payload["cs_charging_profiles"]["valid_to"])


@pytest.fixture
def knxd(tmp_path: Path) -> Iterator[Server]:
    server = servers.knxd(tmp_path / "knxd")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.knx
def test_chargers_refusing_profiles_fall_back_to_the_contactor_or_the_advisory_shed(
    tmp_path: Path, broker: Server, knxd: Server
) -> None:
    """Both chargers reject every charging profile. cp1 also has a KNX contactor: on overload
    it is opened (a telegram 1/1/1 = 0 that a second KNX client on knxd hears) and closed
    again once the limit is lifted; cp2 has none: only the advisory shed remains. Both
    refusals are logged."""
    port = free_port()
    path = load_site_file(
        tmp_path,
        broker,
        port,
        knx={"gateway": f"127.0.0.1:{knxd.port}", "switches": {"cp1": "1/1/1"}},
    )
    site, profiles = load_site(str(path))
    sub = LimitRecorder(broker.port, SITE)
    with (
        running_simulator(site, profiles, seed=1) as sim,
        Physics(sim, ["cp1", "cp2"], base_w=20_000, want_a=32) as hotel,
    ):
        process = collect_process(path)
        try:

            async def scenario() -> None:
                await until(collecting(lambda: sub.status, port), "collector online", 30)
                async with (
                    knx_observer(knxd.port) as knx,
                    both_chargers(port, hotel) as (cp1, cp2),
                ):
                    cp1.answer = cp2.answer = "Rejected"
                    # Closed at start-up (maybe before this client listened).
                    await until(
                        lambda: (sub.last("cp1") or {}).get("actuators", {}).get("knx") == "sent",
                        "cp1's contactor closed",
                    )
                    assert set(knx.writes("1/1/1")) <= {1}
                    before = len(knx.writes("1/1/1"))
                    hotel.base_w = 24_000  # over 35 kW with both cars
                    await until(
                        lambda: knx.writes("1/1/1")[before:] == [0], "cp1's contactor opens"
                    )
                    # The contactor cuts cp1's car: the test's hotel sees it draw nothing.
                    hotel.want["cp1"] = 0.0
                    await until(
                        lambda: (
                            (sub.last("cp1") or {}).get("actuators")
                            == {"ocpp": "rejected", "knx": "sent"}
                        ),
                        "cp1's limit message",
                    )
                    await until(
                        lambda: (
                            (sub.last("cp2") or {}).get("actuators")
                            == {"ocpp": "rejected", "advisory": "shed"}
                        ),
                        "cp2's limit message",
                    )
                    assert (sub.last("cp2") or {}).get("reason") == "overload"
                    hotel.base_w = 15_000
                    await until(
                        lambda: knx.writes("1/1/1")[before:] == [0, 1], "cp1's contactor again"
                    )

            asyncio.run(scenario())
        finally:
            output = stop(process)
    sub.close()
    assert process.returncode == 0, output
    assert "charger refused the" in output and "its KNX contactor pauses it instead" in output
    assert "only the advisory shed request remains" in output


def test_irve_simulate_cars_obey_the_limits_and_bring_the_site_back_under(
    tmp_path: Path, broker: Server
) -> None:
    """`irve simulate` and `irve collect` as processes: the simulator holds the hotel at 30 kW
    and plugs a car on each socket; its chargers start their transactions, the two cars at
    32 A would overload the site (about 44.7 kW); the collector limits both chargers and, as
    the simulated cars follow their profiles, the main meter reads the site under 35 kW with
    both cars charging. (Whether the overload is read first depends on which comes first, the
    cars drawing or the limits: on a loaded machine the limits often do.)"""
    port = free_port()
    path = load_site_file(tmp_path, broker, port)
    data = yaml.safe_load(path.read_text())
    data["ocpp"]["authorize"] = "any"  # the simulated badges need no list
    path.write_text(yaml.safe_dump(data))
    site, _ = load_site(str(path))
    bus = site.buses[0]
    sub = LimitRecorder(broker.port, SITE)
    collector = collect_process(path)
    try:
        # The simulated chargers connect at once (refused, they would try again 5 s later).
        wait_until(collecting(lambda: sub.status, port), 30, "collector online")
        scenarios = ["--scenario", "base:30000", "--scenario", "plug:cp1", "--scenario", "plug:cp2"]
        with simulate_process(path, "--seed", "1", *scenarios, port=getattr(bus, "port", None)):

            async def scenario() -> None:
                def applied(point: str) -> bool:
                    """Shared from the main meter's reading (the fail-safe's limits come first
                    when the collector polls before the simulator serves the meters)."""
                    last = sub.last(point) or {}
                    return (
                        last.get("reason") == "overload"
                        and last.get("current_a") not in (None, 0)
                        and last.get("actuators") == {"ocpp": "accepted"}
                    )

                await until(
                    lambda: applied("cp1") and applied("cp2"), "limits on both chargers", 40
                )
                for point in ("cp1", "cp2"):
                    # 5 kW of headroom shared: 10.8 A each.
                    assert 6 <= (sub.last(point) or {})["current_a"] <= 5000 / 2 / 230
                # Under the limit, both cars drawing at least their minimum (2 x 6 A).
                mark = len(sub.main_powers())
                await until(
                    lambda: any(
                        30_000 + 2 * 6 * 230 < w <= LIMIT_W for w in sub.main_powers()[mark:]
                    ),
                    "under the limit with both cars charging",
                )

            asyncio.run(scenario())
    finally:
        output = stop(collector)
    sub.close()
    assert collector.returncode == 0, output
