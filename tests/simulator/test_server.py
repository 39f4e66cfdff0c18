"""The simulator: a deterministic, plausible model, served over Modbus through the profiles."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.config import SiteConfig
from collector.meters.bus import ExceptionAnswer
from collector.meters.poller import read_once
from collector.meters.profile import load_profiles
from collector.simulator.model import Car, SiteModel, apply_scenario
from collector.simulator.server import SimulatedSite, mapped_blocks
from collector.site import load_site
from tests.support.sim_helpers import main_meter, socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.modbus]

START = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def _hotel(tmp_path: Path, sockets: int = 2) -> tuple[SiteConfig, dict[str, int]]:
    meters = [main_meter("main", "board", 10)]
    meters += [socket_meter(f"cp{i + 1}", "board", i + 1) for i in range(sockets)]
    site, profiles = load_site(str(write_site(tmp_path, [tcp_bus("board")], meters)))
    return site, {m.id: profiles[m.profile].phases for m in site.meters}


def test_same_seed_same_values_other_seed_other_values(tmp_path: Path) -> None:
    site, phases = _hotel(tmp_path)
    runs = []
    for seed in (7, 7, 8):
        model = SiteModel(site, phases, seed=seed, start=START, step_s=30)
        model.advance_to(START + timedelta(hours=30))
        runs.append({m: model.values(m) for m in model.meters})
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_energy_indexes_never_go_down_and_integrate_power(tmp_path: Path) -> None:
    site, phases = _hotel(tmp_path)
    model = SiteModel(site, phases, seed=3, start=START, step_s=60)
    model.control("cp1").force_current(16)  # a steady known load: 16 A x ~230 V x 0.99
    first = {m: model.values(m)["energy_wh"] for m in model.meters}
    previous = dict(first)
    for _ in range(2 * 24 * 6):  # two days, every 10 minutes
        model.advance_to(model.now + timedelta(minutes=10))
        for meter in model.meters:
            energy = model.values(meter)["energy_wh"]
            assert energy >= previous[meter], meter
            previous[meter] = energy
    gained = previous["cp1"] - first["cp1"]
    assert 16 * 218 * 0.99 * 48 < gained < 16 * 245 * 0.99 * 48
    assert previous["main"] - first["main"] > gained  # the incomer sees the socket too


def test_guests_arrive_in_the_evening(tmp_path: Path) -> None:
    site, phases = _hotel(tmp_path, sockets=4)
    model = SiteModel(site, phases, seed=11, start=START, step_s=60)
    tz = ZoneInfo(site.site.timezone)
    arrivals: list[int] = []
    for _ in range(40 * 24 * 60):  # 40 days
        before = {m: s.car for m, s in model.meters.items()}
        model.step()
        for meter, state in model.meters.items():
            if state.car is not None and before[meter] is None:
                arrivals.append(model.now.astimezone(tz).hour)
    evening = sum(1 for hour in arrivals if 16 <= hour < 22)
    assert len(arrivals) > 40
    assert evening / len(arrivals) > 0.5  # 6 hours of 24 get most guests
    peak = max(range(24), key=arrivals.count)
    assert 17 <= peak <= 20
    assert not any(2 <= hour < 6 for hour in arrivals)


def test_charges_at_rated_current_then_tapers_near_full(tmp_path: Path) -> None:
    site, phases = _hotel(tmp_path)
    model = SiteModel(site, phases, seed=1, start=START, step_s=60)
    state = model.meters["cp1"]
    state.car = Car(
        capacity_wh=40e3, stored_wh=20e3, target_soc=1.0, departs=START + timedelta(days=1)
    )
    currents = []
    for _ in range(12 * 60):
        model.step()
        if state.car is None:
            break
        currents.append((state.car.soc, model.values("cp1")["current_a"]))
    bulk = [i for soc, i in currents if soc < 0.79]
    taper = [i for soc, i in currents if 0.85 < soc < 0.97]
    assert bulk and all(i == 32 for i in bulk)  # the socket's rated current
    assert taper and all(0 < i < 32 for i in taper)
    assert taper == sorted(taper, reverse=True)
    assert currents[-1][1] == 0  # full: the car stays parked, drawing nothing
    power = model.values("cp1")["power_w"]
    assert power == 0


def test_scenarios_force_current_and_site_overload(tmp_path: Path) -> None:
    site, phases = _hotel(tmp_path)
    model = SiteModel(site, phases, seed=1, start=START)
    apply_scenario(model, "overcurrent:cp2:40")
    apply_scenario(model, "overload")
    cp2 = model.values("cp2")
    assert cp2["current_a"] == 40
    assert math.isclose(cp2["power_w"], cp2["voltage_v"] * 40 * 0.99, rel_tol=1e-9)
    assert math.isclose(model.values("main")["power_w"], 1.2 * 36000, rel_tol=1e-9)
    with pytest.raises(ValueError, match="cp9"):
        apply_scenario(model, "silent:cp9")
    with pytest.raises(ValueError, match="unknown scenario"):
        apply_scenario(model, "flood:cp1")


def test_base_scenario_holds_the_hotel_load_and_the_main_meter_follows_the_sockets(
    tmp_path: Path,
) -> None:
    site, phases = _hotel(tmp_path)
    model = SiteModel(site, phases, seed=1, start=START)
    apply_scenario(model, "base:30000")
    model.control("cp1").force_current(32.0)
    for _ in range(20):  # 100 simulated seconds: the base load does not drift
        model.step()
    cp1 = model.values("cp1")["power_w"]
    cp2 = model.values("cp2")["power_w"]
    assert math.isclose(model.values("main")["power_w"], 30_000 + cp1 + cp2, rel_tol=1e-6)
    with pytest.raises(ValueError, match="base:-1"):
        apply_scenario(model, "base:-1")


def test_every_bundled_profile_is_served_and_decodes_back(tmp_path: Path) -> None:
    profiles = load_profiles()
    meters = [
        socket_meter(f"m{i}", "board", i + 1, profile=pid)
        if profiles[pid].phases == 1
        else main_meter(f"m{i}", "board", i + 1, profile=pid)
        for i, pid in enumerate(sorted(profiles))
    ]
    # One main meter per site: the other three-phase meters are modelled as 3-phase sockets.
    mains = [m for m in meters if m["role"] == "main"]
    for m in mains[1:]:
        m.update(role="socket", socket={"label": m["id"], "rated_current_a": 16, "phases": 3})
    site, loaded = load_site(str(write_site(tmp_path, [tcp_bus("board")], meters)))

    async def scenario() -> None:
        # Time stands still (tiny speed) so the model and the registers agree exactly.
        async with SimulatedSite(site, loaded, seed=5, speed=1e-9) as sim:
            for meter in site.meters:
                if meter.socket:
                    sim.meter(meter.id).force_current(10.5)
            results = await read_once(site, loaded)
            for meter in site.meters:
                reading = results[meter.id]
                assert not isinstance(reading, Exception), f"{meter.profile}: {reading}"
                expected = sim.model.values(meter.id)
                profile = loaded[meter.profile]
                for name, spec in profile.values.items():
                    got = reading.values[name]
                    want = expected.get(name, 0.0)
                    resolution = profile.factor_of(spec)
                    assert got is not None, f"{meter.profile} {name}"
                    assert math.isclose(got, want, rel_tol=1e-6, abs_tol=resolution), (
                        f"{meter.profile} {name}: {got} != {want}"
                    )

    asyncio.run(scenario())


def test_reads_outside_the_map_are_refused_like_a_real_meter(tmp_path: Path) -> None:
    site, profiles = load_site(
        str(write_site(tmp_path, [tcp_bus("board")], [socket_meter("cp1", "board", 1)]))
    )
    profile = profiles["eastron-sdm120"]
    assert mapped_blocks(profile, "input") == [(0, 14), (30, 32), (70, 76)]

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=1):
            from collector.meters.bus import Bus

            bus = Bus(site.buses[0])
            try:
                assert len(await bus.read(1, "input", 0, 14)) == 14
                for address, count in ((14, 2), (0, 16), (28, 4), (200, 2)):
                    with pytest.raises(ExceptionAnswer) as refused:
                        await bus.read(1, "input", address, count)
                    assert refused.value.code == 2
                with pytest.raises(ExceptionAnswer):
                    await bus.read(1, "holding", 0, 2)
            finally:
                bus.close()

    asyncio.run(scenario())
