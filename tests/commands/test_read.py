"""`irve read` against `irve simulate` (TCP) and against the simulator over RTU (socat ptys)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.cli import main
from collector.commands.read import checks
from collector.meters.reading import Reading
from collector.site import load_site
from tests.support.sim_helpers import (
    main_meter,
    rtu_bus,
    running_simulator,
    simulate_process,
    socat_pair,
    socket_meter,
    tcp_bus,
    write_site,
)

pytestmark = [pytest.mark.modbus]

TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.mark.process
def test_read_prints_values_with_units_and_commissioning_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bus = tcp_bus("board", timeout_s=0.3)
    path = write_site(
        tmp_path,
        [bus],
        [
            main_meter("main", "board", 10),
            socket_meter("cp1", "board", 1),
            socket_meter("cp2", "board", 2),
        ],
    )
    with simulate_process(
        path, "--seed", "4", "--scenario", "overcurrent:cp1:40", port=bus["port"]
    ):
        assert main(["read", "-c", str(path)]) == 0
        everything = capsys.readouterr().out
        assert main(["read", "-c", str(path), "--meter", "cp1"]) == 0
        only_cp1 = capsys.readouterr().out

    assert "main (main) bus board unit 10: Legrand EMDX3" in everything
    assert "[profile unverified: compare with the meter's display]" in everything
    for line in ("L1", "L2", "L3"):
        assert f"OK    voltage {line} " in everything
    assert "voltage_l1_v " in everything and " V\n" in everything
    assert " Wh (" in everything and " kWh)" in everything
    assert everything.count("OK    P ≈ U × I × PF") == 3
    assert "cp2 (socket)" in everything
    assert only_cp1.startswith("cp1 (socket) bus board unit 1: Eastron SDM120")
    assert "current_a          40 A\n" in only_cp1
    assert "main" not in only_cp1


def test_read_reports_a_meter_that_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_site(
        tmp_path,
        [tcp_bus("board", timeout_s=0.2)],
        [socket_meter("cp1", "board", 1), socket_meter("cp2", "board", 2)],
    )
    site, profiles = load_site(str(path))
    with running_simulator(site, profiles, seed=1) as sim:
        sim.meter("cp2").silent()
        assert main(["read", "-c", str(path)]) == 1
    out = capsys.readouterr().out
    assert "cp1 (socket)" in out and "OK    voltage L" in out
    assert (
        "cp2 (socket) bus board unit 2: Eastron SDM120-Modbus (single phase)\n  NO ANSWER:" in out
    )
    assert main(["read", "-c", str(path), "--meter", "cp9"]) == 2
    assert "--meter cp9: no such meter" in capsys.readouterr().err


@pytest.mark.serial
def test_read_over_rtu_through_a_socat_pty_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socat_pair(tmp_path) as (server_end, client_end):
        path = write_site(
            tmp_path,
            [rtu_bus("rs485", client_end, timeout_s=0.5)],
            [main_meter("main", "rs485", 10), socket_meter("cp1", "rs485", 1)],
        )
        site, profiles = load_site(str(path))
        with running_simulator(site, profiles, seed=2, serial={"rs485": server_end}) as sim:
            sim.meter("cp1").force_current(16)
            assert main(["read", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "main (main) bus rs485 unit 10" in out
    assert "cp1 (socket) bus rs485 unit 1" in out
    assert "current_a          16 A\n" in out
    assert out.count("CHECK") == 0 and out.count("OK    P ≈ U × I × PF") == 2


def test_checks_flag_a_wrong_voltage_and_a_power_that_does_not_match() -> None:
    good = Reading(
        "cp1", TS, {"voltage_v": 231.0, "current_a": 10.0, "power_factor": 0.99, "power_w": 2287.0}
    )
    assert [c.flag for c in checks(good)] == ["OK", "OK"]
    # A CT on the wrong phase or reversed: the power does not match U x I x PF.
    wrong_ct = Reading("cp1", TS, {**good.values, "power_w": 1200.0})
    assert [c.flag for c in checks(wrong_ct)] == ["OK", "CHECK"]
    # A neutral lost or a voltage transformer ratio wrong.
    low = Reading("m", TS, {"voltage_l1_v": 229.0, "voltage_l2_v": 133.0, "voltage_l3_v": 230.0})
    flags = [c.flag for c in checks(low)]
    assert flags == ["OK", "CHECK", "OK", "N/A"]
    three_phase = Reading(
        "main",
        TS,
        {
            **{f"voltage_l{i}_v": 230.0 for i in (1, 2, 3)},
            **{f"current_l{i}_a": 10.0 for i in (1, 2, 3)},
            "power_factor": 0.9,
            "power_w": 3 * 230 * 10 * 0.9,
        },
    )
    assert checks(three_phase)[-1].ok is True
