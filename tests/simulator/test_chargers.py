"""The simulated chargers against the real central system (loopback websockets): a car plugged
by the `plug` scenario is charged as a transaction with MeterValues, and the charger obeys the
current limits the central system's internal API sets and clears; the meter follows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from collector.config import OcppSettings, SiteConfig
from collector.meters.profile import Profile
from collector.ocpp.events import (
    ChargerWarning,
    CommandResult,
    ConnectorStatus,
    Event,
    TransactionEnded,
    TransactionStarted,
)
from collector.ocpp.server import CentralSystem, state_path
from collector.simulator.chargers import play_charger
from collector.simulator.model import SiteModel
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from tests.support.servers import free_port
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.modbus]

OCPP16 = Subprotocol("ocpp1.6")
NOW = "2026-12-07T10:00:00.000Z"


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def amps(model: SiteModel) -> float:
    return model.values("cp1")["current_a"]


def charger_site(tmp_path: Path, port: int) -> tuple[SiteConfig, dict[str, Profile], OcppSettings]:
    """One socket (cp1, 32 A) served by the charger borne-1 of a central system on `port`."""
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1, rated_a=32)],
        ocpp={"listen": f"127.0.0.1:{port}", "authorize": "any"},
        chargers=[{"id": "borne-1", "password": "pw-borne-1", "connectors": {1: "cp1"}}],
    )
    site, profiles = load_site(str(path))
    assert site.ocpp is not None
    return site, profiles, site.ocpp


def test_a_plugged_car_charges_under_the_limits_the_central_system_sets(tmp_path: Path) -> None:
    port = free_port()
    site, profiles, settings = charger_site(tmp_path, port)
    events: list[Event] = []

    def of(kind: type[Any]) -> list[Any]:
        return [e for e in events if isinstance(e, kind)]

    def status() -> str:
        statuses: list[str] = [e.status for e in of(ConnectorStatus) if e.connector == 1]
        return statuses[-1] if statuses else ""

    async def scenario() -> None:
        system = CentralSystem(
            settings, site.chargers, state_path(tmp_path, "t"), events.append, tick_s=0.5
        )
        async with system, SimulatedSite(site, profiles, seed=1, scenarios=["plug:cp1:60"]) as sim:
            player = asyncio.create_task(
                play_charger(
                    site.chargers[0], f"ws://127.0.0.1:{port}", sim.model, {}, meter_values_s=1.0
                )
            )
            try:
                (started,) = await until(lambda: of(TransactionStarted), "the transaction")
                await until(lambda: status() == "Charging", "Charging")
                assert amps(sim.model) == pytest.approx(32.0)  # the car's own maximum
                transaction = system.core.transactions[started.transaction_id]
                await until(lambda: len(transaction.registers) >= 2, "two MeterValues")

                (result,) = await system.set_limit("cp1", 10.0, duration_s=600)
                assert result.status == "Accepted"
                assert amps(sim.model) == pytest.approx(10.0)  # the meter follows at once

                await system.set_limit("cp1", 5.0, duration_s=600)  # below 6 A: nothing
                await until(lambda: status() == "SuspendedEVSE", "SuspendedEVSE")
                assert amps(sim.model) == 0.0

                (cleared,) = await system.clear_limit("cp1")
                assert cleared.status == "Accepted"
                await until(lambda: status() == "Charging", "Charging again")
                assert amps(sim.model) == pytest.approx(32.0)

                sim.model.meters["cp1"].car = None  # the guest leaves
                await until(lambda: of(TransactionEnded), "the stop")
                await until(lambda: status() == "Available", "Available")
                assert amps(sim.model) == 0.0
            finally:
                player.cancel()
                await asyncio.gather(player, return_exceptions=True)
        # The charger's count is the meter's index, which moves as it is polled (none here).
        (ended,) = of(TransactionEnded)
        assert ended.meter_stop_wh == int(sim.model.meters["cp1"].import_wh)
        assert [r.status for r in of(CommandResult)] == ["Accepted"] * 3
        assert of(ChargerWarning) == []  # every measurand sent is one the schemas know

    asyncio.run(scenario())


def test_no_transaction_no_current_and_a_bad_plug_scenario_named(tmp_path: Path) -> None:
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        ocpp={"listen": f"127.0.0.1:{free_port()}"},
        chargers=[{"id": "borne-1", "password": "pw", "connectors": {1: "cp1"}}],
    )
    site, profiles = load_site(str(path))
    sim = SimulatedSite(site, profiles, seed=1, scenarios=["plug:cp1:30"])
    assert amps(sim.model) == pytest.approx(32.0)  # nobody gates it: the car draws
    sim.model.meters["cp1"].energized = False  # what a charger without a transaction does
    sim.model.refresh()
    assert amps(sim.model) == 0.0
    with pytest.raises(ValueError, match="minutes must be > 0"):
        SimulatedSite(site, profiles, scenarios=["plug:cp1:0"])


def test_a_transaction_goes_on_across_a_restart_of_the_central_system(tmp_path: Path) -> None:
    """The link lost (the collector restarting), the simulated charger reconnects with its
    transaction still running, as a real one does: Charging again, then one stop of that same
    transaction; no second start, the car drawing all along."""
    port = free_port()
    site, profiles, settings = charger_site(tmp_path, port)
    events: list[Event] = []

    def of(kind: type[Any]) -> list[Any]:
        return [e for e in events if isinstance(e, kind)]

    def system() -> CentralSystem:
        return CentralSystem(settings, site.chargers, state_path(tmp_path, "t"), events.append)

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=1, scenarios=["plug:cp1:60"]) as sim:
            player = asyncio.create_task(
                play_charger(site.chargers[0], f"ws://127.0.0.1:{port}", sim.model, {})
            )
            try:
                async with system():
                    (started,) = await until(lambda: of(TransactionStarted), "the transaction")
                    # Charging: the charger has the answer (the link cut before it, the
                    # charger would not know its transaction).
                    await until(
                        lambda: "Charging" in [e.status for e in of(ConnectorStatus)], "Charging"
                    )
                charging = len(of(ConnectorStatus))
                assert amps(sim.model) == pytest.approx(32.0)  # the link is down, not the car
                async with system():
                    await until(
                        lambda: "Charging" in [e.status for e in of(ConnectorStatus)[charging:]],
                        "Charging again on the new connection",
                        timeout=30,  # the charger retries every 5 s; CI runs 4 test workers
                    )
                    # Charging only: never Available or Finishing in between.
                    assert {e.status for e in of(ConnectorStatus)[charging:]} == {"Charging"}
                    sim.model.meters["cp1"].car = None
                    (ended,) = await until(lambda: of(TransactionEnded), "the stop")
            finally:
                player.cancel()
                await asyncio.gather(player, return_exceptions=True)
        assert ended.transaction_id == started.transaction_id
        assert ended.badge == started.badge  # the restarted system knew it (state file)
        assert len(of(TransactionStarted)) == 1

    asyncio.run(scenario())


def test_a_start_whose_answer_was_lost_is_sent_again_the_same(tmp_path: Path) -> None:
    """A central system cutting the link on the charger's StartTransaction, unanswered: the
    charger sends the same start (badge, index, time) on its next connection, as a real one
    does, and the central system then behind that port has one transaction."""
    port = free_port()
    site, profiles, settings = charger_site(tmp_path, port)
    events: list[Event] = []
    lost: list[dict[str, Any]] = []

    async def cut_on_start(ws: ServerConnection) -> None:
        async for frame in ws:
            _, message_id, action, payload = json.loads(frame)
            if action == "StartTransaction":
                lost.append(payload)
                return  # the link drops before the answer
            answers = {
                "BootNotification": {"status": "Accepted", "currentTime": NOW, "interval": 300},
                "Authorize": {"idTagInfo": {"status": "Accepted"}},
                "Heartbeat": {"currentTime": NOW},
            }
            await ws.send(json.dumps([3, message_id, answers.get(action, {})]))

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=1, scenarios=["plug:cp1:60"]) as sim:
            async with serve(cut_on_start, "127.0.0.1", port, subprotocols=[OCPP16]):
                player = asyncio.create_task(
                    play_charger(site.chargers[0], f"ws://127.0.0.1:{port}", sim.model, {})
                )
                await until(lambda: lost, "the first StartTransaction")
            try:
                system = CentralSystem(
                    settings, site.chargers, state_path(tmp_path, "t"), events.append
                )
                async with system:
                    # The charger tries again 5 s after losing its link.
                    (started,) = await until(
                        lambda: [e for e in events if isinstance(e, TransactionStarted)],
                        "the start sent again",
                        timeout=15,
                    )
                    await until(lambda: amps(sim.model) > 30, "the car charging")
            finally:
                player.cancel()
                await asyncio.gather(player, return_exceptions=True)
        (first,) = lost
        assert (started.badge, started.meter_start_wh) == (first["idTag"], first["meterStart"])
        assert started.ts == datetime.fromisoformat(first["timestamp"])

    asyncio.run(scenario())
