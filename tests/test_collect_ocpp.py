"""`irve collect` with OCPP chargers, end to end: the real process, the simulator's Modbus
meters, a real mosquitto, and a charge point driven by the test with the `ocpp` library."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import call
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from collector.simulator.chargers import default_url, play_chargers
from collector.simulator.model import Car
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from tests.support.collect_helpers import SITE, Recorder, collect_process, wait_collecting
from tests.support.influx_db import create_database, rows
from tests.support.ingest_helpers import config, running
from tests.support.ocpp import Station, charge_point
from tests.support.servers import Server, free_port, wait_until
from tests.support.sim_helpers import (
    running_simulator,
    simulate_process,
    socket_meter,
    tcp_bus,
    write_site,
)

pytestmark = [pytest.mark.broker, pytest.mark.influx]

PASSWORD = "borne-1-secret"
GUEST, GONE = "04A1B2C3", "04DEAD00"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ocpp_site(tmp_path: Path, broker: Server, port: int) -> Path:
    return write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        mqtt={"host": "127.0.0.1", "port": broker.port},
        poll_interval_s=0.2,
        state_dir=str(tmp_path / "state"),
        # The shortest heartbeat: a charger silent for 10 s is offline.
        ocpp={"listen": f"127.0.0.1:{port}", "heartbeat_s": 10, "offline_after_heartbeats": 1},
        chargers=[{"id": "borne-1", "password": PASSWORD, "connectors": {1: "cp1"}}],
    )


async def until_true(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def payloads(sub: Recorder, topic: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.on(topic) if p]


async def list_arrived(cp: Station) -> None:
    """Until the guest's badge is accepted: the retained list may reach the collector just
    after its status says online."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        reply = await cp.call(call.Authorize(id_tag=GUEST))
        if reply.id_tag_info["status"] == "Accepted":
            return
        assert asyncio.get_running_loop().time() < deadline, "the badge list never arrived"
        await asyncio.sleep(0.1)


def publish_badges(sub: Recorder) -> None:
    """The front desk's retained list: a guest of room 12, and one who left."""
    now = datetime.now(UTC)
    badges = {
        "ts": iso(now),
        "badges": [
            {"badge": GUEST, "room": "12", "until": iso(now + timedelta(days=2))},
            {"badge": GONE, "room": "7", "until": iso(now - timedelta(hours=1))},
        ],
    }
    sub.client.publish(f"irve/{SITE}/badges", json.dumps(badges), qos=1, retain=True)


def stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM, and what the process said."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=20)[0].decode()
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0].decode()


def session_ends(sub: Recorder) -> list[dict[str, Any]]:
    return [s for s in payloads(sub, f"irve/{SITE}/cp1/session") if s["event"] == "end"]


def test_a_charger_runs_in_irve_collect(tmp_path: Path, broker: Server, influx: Server) -> None:
    """Boot -> retained charger; badges from the retained list; start -> meter values -> stop
    -> one session with badge, room, MID energy and cost, the charger's count, stored in
    InfluxDB by the ingestor with its room tag; commands from MQTT; the link dropped ->
    charger_offline."""
    create_database(influx)
    with running(config(broker, influx, "1", flush_interval_s=0.1)):
        charger_session(tmp_path, broker, influx)


def charger_session(tmp_path: Path, broker: Server, influx: Server) -> None:
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port)
    publish_badges(sub)
    base = f"irve/{SITE}"

    with running_simulator(site, profiles, seed=1) as sim:
        sim.meter("cp1").force_current(0.0)
        process = collect_process(path)
        try:
            wait_collecting(sub, SITE, port)

            async def scenario() -> None:
                url = f"ws://borne-1:{PASSWORD}@127.0.0.1:{port}/ocpp/borne-1"
                async with charge_point(url, "borne-1") as cp:
                    await cp.boot()
                    # Online as soon as it talks, then what its boot says.
                    charger = await until_true(
                        lambda: [
                            c for c in payloads(sub, f"{base}/chargers/borne-1") if c["vendor"]
                        ],
                        "charger message",
                    )
                    assert charger[-1]["online"] is True
                    assert (charger[-1]["vendor"], charger[-1]["serial"]) == ("Legrand", "LG-0001")
                    await cp.call(
                        call.StatusNotification(
                            connector_id=1, error_code="NoError", status="Preparing"
                        )
                    )
                    status = await until_true(
                        lambda: payloads(sub, f"{base}/cp1/connector"), "connector status"
                    )
                    assert (status[-1]["status"], status[-1]["charger"]) == ("Preparing", "borne-1")

                    async def answer(tag: str) -> str:
                        reply = await cp.call(call.Authorize(id_tag=tag))
                        return str(reply.id_tag_info["status"])

                    await list_arrived(cp)
                    assert await answer(GONE) == "Expired"
                    assert await answer("NOBODY") == "Invalid"

                    # A charging session: the meter draws while the transaction runs.
                    sim.meter("cp1").force_current(30.0)
                    await asyncio.sleep(1.0)
                    began = datetime.now(UTC)
                    started = await cp.call(
                        call.StartTransaction(
                            connector_id=1, id_tag=GUEST, meter_start=1000, timestamp=iso(began)
                        )
                    )
                    tx = started.transaction_id
                    await cp.call(
                        call.MeterValues(
                            connector_id=1,
                            transaction_id=tx,
                            meter_value=[
                                {
                                    "timestamp": iso(datetime.now(UTC)),
                                    "sampled_value": [{"value": "1002", "unit": "Wh"}],
                                }
                            ],
                        )
                    )
                    # Long enough for the meter's index (10 Wh steps) to move.
                    await asyncio.sleep(8.0)
                    ended = datetime.now(UTC)
                    await cp.call(
                        call.StopTransaction(
                            transaction_id=tx, meter_stop=1004, timestamp=iso(ended)
                        )
                    )
                    await asyncio.sleep(1.0)
                    sim.meter("cp1").force_current(0.0)
                    ends = await until_true(
                        lambda: [
                            s for s in payloads(sub, f"{base}/cp1/session") if s["event"] == "end"
                        ],
                        "session end",
                    )
                    (session,) = ends
                    assert (session["badge"], session["room"], session["source"]) == (
                        GUEST,
                        "12",
                        "ocpp",
                    )
                    assert session["transaction_id"] == tx
                    assert session["session_id"] == f"cp1-tx{tx}"
                    assert session["start"] == iso(began) and session["ts"] == iso(ended)
                    assert session["charger_energy_wh"] == 4.0
                    # The MID meter's energy between the charger's times: what its index counted
                    # from the last reading before the start to the first one after the end,
                    # within one step of the index.
                    states = [
                        (datetime.fromisoformat(m["ts"]), m["energy_wh"]) for m in sub.states("cp1")
                    ]
                    before = max(idx for ts, idx in states if ts <= began)
                    after = min(idx for ts, idx in states if ts >= ended)
                    assert 0 < session["energy_wh"] <= after - before + 10
                    assert session["cost_eur"] == pytest.approx(
                        session["energy_wh"] / 1000 * 0.2, abs=1e-6
                    )
                    starts = [
                        s for s in payloads(sub, f"{base}/cp1/session") if s["event"] == "start"
                    ]
                    assert [s["room"] for s in starts] == ["12"]

                    # Commands from MQTT become OCPP calls; the answer is an event.
                    command = f"{base}/cp1/command"
                    sub.client.publish(command, json.dumps({"action": "start", "badge": GUEST}), 1)
                    await until_true(lambda: cp.got("RemoteStartTransaction"), "remote start")
                    assert cp.got("RemoteStartTransaction")[0]["id_tag"] == GUEST
                    second = await cp.call(
                        call.StartTransaction(
                            connector_id=1,
                            id_tag=GUEST,
                            meter_start=0,
                            timestamp=iso(datetime.now(UTC)),
                        )
                    )
                    assert second.transaction_id > tx  # never reused
                    sub.client.publish(command, json.dumps({"action": "stop"}), 1)
                    await until_true(lambda: cp.got("RemoteStopTransaction"), "remote stop")
                    assert cp.got("RemoteStopTransaction")[0]["transaction_id"] == (
                        second.transaction_id
                    )
                    events = await until_true(
                        lambda: [
                            e
                            for e in payloads(sub, f"{base}/cp1/event")
                            if e["event"] == "command_stop"
                        ],
                        "the charger's answer",
                    )
                    assert events[0]["details"]["status"] == "Accepted"
                    sub.client.publish(command, json.dumps({"action": "explode"}), 1)
                    await until_true(
                        lambda: [
                            e
                            for e in payloads(sub, f"{base}/cp1/event")
                            if e["event"] == "command_refused"
                        ],
                        "a refused command",
                    )

                # The link dropped: silent for a heartbeat, the charger is offline.
                alerts = await until_true(
                    lambda: [
                        a for a in payloads(sub, f"{base}/alert") if a["alert"] == "charger_offline"
                    ],
                    "charger_offline",
                    timeout=30,
                )
                assert (alerts[0]["state"], alerts[0]["point"]) == ("firing", "borne-1")
                # Published with the alert, on other topics: they may arrive just after it.
                await until_true(
                    lambda: payloads(sub, f"{base}/chargers/borne-1")[-1]["online"] is False,
                    "the charger described offline",
                )
                await until_true(
                    lambda: payloads(sub, f"{base}/cp1/connector")[-1]["status"] == "offline",
                    "the connector offline",
                )

            asyncio.run(scenario())
        finally:
            output = stop(process)
    sub.close()
    assert process.returncode == 0, output
    assert PASSWORD not in output
    (session,) = [s for s in payloads(sub, f"{base}/cp1/session") if s["event"] == "end"]

    def stored() -> list[dict[str, Any]]:
        found = rows(influx, "SELECT * FROM session WHERE \"source\" = 'ocpp' GROUP BY *")
        return [r for r in found if r["session_id"] == session["session_id"]]

    wait_until(lambda: any(r["event"] == "end" for r in stored()), 15, "the session in InfluxDB")
    (row,) = stored()
    assert (row["room"], row["badge"], row["point"]) == ("12", GUEST, "cp1")
    assert row["energy_wh"] == session["energy_wh"]
    assert row["charger_energy_wh"] == 4.0 and row["transaction_id"] == session["transaction_id"]
    expected = {("borne-1", "1", "Preparing"), ("borne-1", "1", "offline")}

    def statuses() -> set[tuple[str, str, str]]:
        found = rows(influx, "SELECT * FROM connector GROUP BY *")
        return {(r["charger"], r["connector"], r["status"]) for r in found}

    # The offline status is published last, just before the stop: the ingestor may write it
    # after the session row waited for above (seen once in make test).
    wait_until(lambda: statuses() >= expected, 15, "the connector statuses in InfluxDB")
    assert statuses() >= expected


def test_a_transaction_across_a_collector_restart_with_a_stop_queued_meanwhile(
    tmp_path: Path, broker: Server
) -> None:
    """The collector stops mid-transaction; the charger stops the charge while it is down and
    sends the StopTransaction once it is back: one session, at the charger's times, with the MID
    energy over them (the gap shared out); the next transaction id is a new one."""
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port)
    publish_badges(sub)
    url = f"ws://borne-1:{PASSWORD}@127.0.0.1:{port}/ocpp/borne-1"
    base = f"irve/{SITE}"

    with running_simulator(site, profiles, seed=1) as sim:
        sim.meter("cp1").force_current(30.0)
        first = collect_process(path)
        try:
            wait_collecting(sub, SITE, port)

            async def start() -> tuple[int, datetime]:
                async with charge_point(url, "borne-1") as cp:
                    await cp.boot()
                    await list_arrived(cp)
                    began = datetime.now(UTC)
                    reply = await cp.call(
                        call.StartTransaction(
                            connector_id=1, id_tag=GUEST, meter_start=0, timestamp=iso(began)
                        )
                    )
                    await until_true(
                        lambda: payloads(sub, f"{base}/cp1/session"), "the session's start"
                    )
                    # Long enough for the meter's index (10 Wh steps) to move.
                    await asyncio.sleep(10.0)
                    return int(reply.transaction_id), began

            tx, began = asyncio.run(start())
        finally:
            output = stop(first)
        assert first.returncode == 0, output
        time.sleep(4.0)  # the car charges on while the collector is down...
        ended = datetime.now(UTC)  # ... until the guest stops it, the charger queues the stop
        time.sleep(2.0)
        sim.meter("cp1").force_current(0.0)
        second = collect_process(path)
        try:
            wait_collecting(sub, SITE, port)

            async def resume() -> int:
                async with charge_point(url, "borne-1") as cp:
                    await cp.boot()
                    await cp.call(
                        call.StopTransaction(transaction_id=tx, meter_stop=25, timestamp=iso(ended))
                    )
                    await until_true(lambda: session_ends(sub), "the session's end")
                    reply = await cp.call(
                        call.StartTransaction(
                            connector_id=1,
                            id_tag=GUEST,
                            meter_start=0,
                            timestamp=iso(datetime.now(UTC)),
                        )
                    )
                    return int(reply.transaction_id)

            again = asyncio.run(resume())
        finally:
            output = stop(second)
    sub.close()
    assert second.returncode == 0, output
    assert again > tx
    (session,) = session_ends(sub)
    assert (session["transaction_id"], session["room"]) == (tx, "12")
    assert (session["start"], session["ts"]) == (iso(began), iso(ended))
    # What the MID index counted from the start to the queued stop (the simulated meter stands
    # still while nobody polls it), within one 10 Wh step.
    states = [(datetime.fromisoformat(m["ts"]), m["energy_wh"]) for m in sub.states("cp1")]
    before = max(idx for ts, idx in states if ts <= began)
    after = min(idx for ts, idx in states if ts >= ended)
    assert after > before
    assert after - before - 10 <= session["energy_wh"] <= after - before + 10


def test_the_simulator_plays_the_chargers_of_the_site(tmp_path: Path, broker: Server) -> None:
    """`irve simulate`'s chargers follow the simulated cars: a car plugged on cp1 is badged
    and charged as an OCPP transaction, its departure stops it: one session from the charger,
    with the badge's room, against the real `irve collect`."""
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port)
    now = datetime.now(UTC)
    listed = {"badge": "SIM-cp1", "room": "21", "until": iso(now + timedelta(days=1))}
    sub.client.publish(
        f"irve/{SITE}/badges", json.dumps({"ts": iso(now), "badges": [listed]}), 1, retain=True
    )
    process = collect_process(path)
    try:
        wait_collecting(sub, SITE, port)

        async def scenario() -> None:
            async with SimulatedSite(site, profiles, seed=2) as sim:
                sim.model.meters["cp1"].car = None
                players = asyncio.create_task(play_chargers(site, sim.model, default_url(site), {}))
                try:
                    await until_true(
                        lambda: payloads(sub, f"irve/{SITE}/cp1/connector"), "charger status"
                    )
                    departs = datetime.now(UTC) + timedelta(hours=1)
                    sim.model.meters["cp1"].car = Car(40e3, 10e3, 0.95, departs)
                    sim.model.refresh()
                    await until_true(
                        lambda: payloads(sub, f"irve/{SITE}/cp1/session"), "session start"
                    )
                    await asyncio.sleep(6.0)  # the index moves (10 Wh steps)
                    sim.model.meters["cp1"].car = None
                    sim.model.refresh()
                    await until_true(lambda: session_ends(sub), "session end")
                finally:
                    players.cancel()
                    await asyncio.gather(players, return_exceptions=True)

        asyncio.run(scenario())
    finally:
        output = stop(process)
    sub.close()
    assert process.returncode == 0, output
    (session,) = session_ends(sub)
    assert (session["badge"], session["room"], session["source"]) == ("SIM-cp1", "21", "ocpp")
    assert session["energy_wh"] > 0
    assert session["charger_energy_wh"] is not None
    assert payloads(sub, f"irve/{SITE}/chargers/borne-1")[-1]["vendor"] == "irve-simulator"


def test_irve_simulate_connects_the_site_chargers_to_irve_collect(
    tmp_path: Path, broker: Server
) -> None:
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    site, _ = load_site(str(path))
    bus = site.buses[0]
    sub = Recorder(broker.port)
    collector = collect_process(path)
    try:
        # The simulated charger connects at once (refused, it would try again 5 s later).
        wait_collecting(sub, SITE, port)
        with simulate_process(path, "--seed", "1", port=getattr(bus, "port", None)):
            sub.wait(
                lambda: any(
                    c["vendor"] == "irve-simulator" and c["online"]
                    for c in payloads(sub, f"irve/{SITE}/chargers/borne-1")
                ),
                "the simulated charger",
                timeout=30,
            )
            sub.wait(
                lambda: (
                    [c["status"] for c in payloads(sub, f"irve/{SITE}/cp1/connector")][-1:]
                    == ["Available"]
                ),
                "its connector",
            )
    finally:
        output = stop(collector)
    sub.close()
    assert collector.returncode == 0, output


def alerts_of(sub: Recorder, state: str) -> list[dict[str, Any]]:
    return [
        a
        for a in payloads(sub, f"irve/{SITE}/alert")
        if a["alert"] == "charger_offline" and a["state"] == state
    ]


def test_refused_handshakes_and_malformed_frames_in_irve_collect(
    tmp_path: Path, broker: Server
) -> None:
    """Wrong password and unknown id refused at the handshake, logged with the id and the peer
    (never the password); frames that are not JSON, unknown actions, wrong types and 1 MB get
    their CALLERROR and the connection stays up: the real `irve collect`."""
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    sub = Recorder(broker.port)
    process = collect_process(path)

    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
                pass
        return int(info.value.response.status_code)

    async def exchange(ws: ClientConnection, frame: str) -> list[Any]:
        await ws.send(frame)
        return list(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    async def scenario() -> None:
        good = f"ws://borne-1:{PASSWORD}@127.0.0.1:{port}/ocpp/borne-1"
        assert await refused(good.replace(PASSWORD, "guessed-pass")) == 401
        assert await refused(f"ws://borne-9:whatever@127.0.0.1:{port}/ocpp/borne-9") == 404
        async with connect(good, subprotocols=["ocpp1.6"], max_size=None) as ws:  # type: ignore[list-item]
            assert (await exchange(ws, "this is not json"))[:3] == [4, "-1", "FormationViolation"]
            assert (await exchange(ws, '[2,"a2","MakeCoffee",{}]'))[:3] == [4, "a2", "NotSupported"]
            status = (
                '[2,"a4","StatusNotification",'
                '{"connectorId":"one","errorCode":"NoError","status":"Available"}]'
            )
            assert (await exchange(ws, status))[:3] == [4, "a4", "TypeConstraintViolation"]
            big = json.dumps([2, "a7", "Authorize", {"idTag": "A" * 1_000_000}])
            answer = await exchange(ws, big)
            assert answer[:3] == [4, "a7", "TypeConstraintViolation"]
            assert len(json.dumps(answer)) < 2000  # the frame is not echoed back
            assert (await exchange(ws, "x" * 1_000_000))[:3] == [4, "-1", "FormationViolation"]
            reply = await exchange(ws, '[2,"ok","Heartbeat",{}]')  # still connected
            assert reply[:2] == [3, "ok"] and "currentTime" in reply[2]

    try:
        wait_collecting(sub, SITE, port)
        asyncio.run(scenario())
    finally:
        output = stop(process)
    sub.close()
    assert process.returncode == 0, output
    assert "charger 'borne-1' from 127.0.0.1:" in output and "wrong password" in output
    assert "charger 'borne-9' from 127.0.0.1:" in output and "unknown id" in output
    assert "guessed-pass" not in output and PASSWORD not in output and "whatever" not in output
    assert "Traceback" not in output


def test_legrand_quirks_local_list_commands_and_the_link_back_in_irve_collect(
    tmp_path: Path, broker: Server
) -> None:
    """The real `irve collect`: the local list pushed on boot and again, full and with a higher
    version, when the retained badge list changes; a Legrand transaction (`meterStart: 0`,
    `mesurand`, a measurand the schemas do not know, a MeterValues sent twice) counted from its
    interval samples with one warning per kind; unlock, disable and enable from MQTT; the link
    dropped (charger_offline firing) and back (resolved, the list pushed again)."""
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port)
    publish_badges(sub)
    base = f"irve/{SITE}"
    url = f"ws://borne-1:{PASSWORD}@127.0.0.1:{port}/ocpp/borne-1"

    def legrand_values(ts: datetime, wh: str) -> list[dict[str, Any]]:
        return [
            {
                "timestamp": iso(ts),
                "sampled_value": [
                    {"value": wh, "mesurand": "Energy.Active.Import.Interval", "unit": "Wh"},
                    {"value": "31", "measurand": "Temperature.Board", "unit": "Celsius"},
                ],
            }
        ]

    async def scenario(sim: Any) -> None:
        async with charge_point(url, "borne-1") as cp:
            await cp.boot()
            await until_true(lambda: cp.got("SendLocalList"), "the local list")
            (first,) = cp.got("SendLocalList")
            assert first["update_type"] == "Full"
            # Only the badges valid now: the guest who left is not in it.
            assert [e["id_tag"] for e in first["local_authorization_list"]] == [GUEST]
            now = datetime.now(UTC)
            badges = [
                {"badge": GUEST, "room": "12", "until": iso(now + timedelta(days=2))},
                {"badge": "0A0B0C0D", "room": "3", "until": iso(now + timedelta(days=1))},
            ]
            sub.client.publish(
                f"{base}/badges", json.dumps({"ts": iso(now), "badges": badges}), 1, retain=True
            )
            await until_true(lambda: len(cp.got("SendLocalList")) == 2, "the new list")
            second = cp.got("SendLocalList")[1]
            assert second["update_type"] == "Full"
            assert second["list_version"] > first["list_version"]
            assert [e["id_tag"] for e in second["local_authorization_list"]] == [
                GUEST,
                "0A0B0C0D",
            ]

            # Legrand: meterStart 0, interval energy under a misspelt key, a vendor measurand.
            sim.meter("cp1").force_current(16.0)
            began = datetime.now(UTC)
            started = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag=GUEST, meter_start=0, timestamp=iso(began)
                )
            )
            tx = started.transaction_id
            t1, t2 = began + timedelta(seconds=1), began + timedelta(seconds=2)
            for stamp, wh in ((t1, "150"), (t1, "150"), (t2, "100")):  # the first one twice
                await cp.call(
                    call.MeterValues(
                        connector_id=1, transaction_id=tx, meter_value=legrand_values(stamp, wh)
                    ),
                    skip_schema_validation=True,  # the schemas know neither key nor measurand
                )
            await asyncio.sleep(2.0)
            await cp.call(
                call.StopTransaction(
                    transaction_id=tx, meter_stop=0, timestamp=iso(datetime.now(UTC))
                )
            )
            sim.meter("cp1").force_current(0.0)
            (session,) = await until_true(lambda: session_ends(sub), "the Legrand session")
            assert session["charger_energy_wh"] == 250.0  # 150 once, then 100
            assert (session["badge"], session["room"]) == (GUEST, "12")

            # Commands from MQTT, each answered by the charger and published as an event.
            for action in ("unlock", "disable", "enable"):
                sub.client.publish(f"{base}/cp1/command", json.dumps({"action": action}), 1)
                await until_true(
                    lambda a=action: [
                        e
                        for e in payloads(sub, f"{base}/cp1/event")
                        if e["event"] == f"command_{a}"
                    ],
                    f"the answer to {action}",
                )
            assert cp.got("UnlockConnector") == [{"connector_id": 1}]
            assert [(p["connector_id"], p["type"]) for p in cp.got("ChangeAvailability")] == [
                (1, "Inoperative"),
                (1, "Operative"),
            ]
            answers = [
                e["details"]["status"]
                for e in payloads(sub, f"{base}/cp1/event")
                if e["event"].startswith("command_")
            ]
            assert answers == ["Unlocked", "Accepted", "Accepted"]

        # The link dropped: offline after a heartbeat, then back.
        await until_true(lambda: alerts_of(sub, "firing"), "charger_offline", timeout=40)
        async with charge_point(url, "borne-1") as cp:
            await cp.boot()
            await until_true(lambda: alerts_of(sub, "resolved"), "charger back")
            await until_true(lambda: cp.got("SendLocalList"), "the list on the new connection")
            assert cp.got("SendLocalList")[0]["list_version"] == second["list_version"]
            reply = await cp.call(call.Authorize(id_tag="0A0B0C0D"))
            assert reply.id_tag_info["status"] == "Accepted"
        assert payloads(sub, f"{base}/chargers/borne-1")[-1]["online"] is True

    with running_simulator(site, profiles, seed=1) as sim:
        sim.meter("cp1").force_current(0.0)
        process = collect_process(path)
        try:
            wait_collecting(sub, SITE, port)
            asyncio.run(scenario(sim))
        finally:
            output = stop(process)
    sub.close()
    assert process.returncode == 0, output
    # One warning per charger and kind, however many times the charger repeats it.
    assert output.count("'mesurand' read as 'measurand'") == 1, output
    assert output.count("unknown measurand 'Temperature.Board'") == 1, output
    assert "Traceback" not in output


def test_charger_offline_across_a_collector_restart(tmp_path: Path, broker: Server) -> None:
    """A charger_offline alert firing when `irve collect` stops is in the alert state file:
    the next run, the charger still silent, says it is offline again without a second
    `firing` (no second notification); when the charger talks the alert resolves, once."""
    port = free_port()
    path = ocpp_site(tmp_path, broker, port)
    state = tmp_path / "state" / f"alerts-{SITE}.json"
    sub = Recorder(broker.port)
    base = f"irve/{SITE}"
    url = f"ws://borne-1:{PASSWORD}@127.0.0.1:{port}/ocpp/borne-1"

    def offline_described() -> int:
        return sum(not c["online"] for c in payloads(sub, f"{base}/chargers/borne-1"))

    async def connect_once() -> None:
        async with charge_point(url, "borne-1") as cp:
            await cp.boot()

    first = collect_process(path)
    try:
        wait_collecting(sub, SITE, port)
        asyncio.run(connect_once())
        sub.wait(lambda: bool(alerts_of(sub, "firing")), "charger_offline", timeout=40)
    finally:
        output = stop(first)
    assert first.returncode == 0, output
    saved = json.loads(state.read_text())["firing"]
    assert {"alert": "charger_offline", "point": "borne-1"} in saved

    second = collect_process(path)
    try:
        wait_collecting(sub, SITE, port, "online again")
        # Silent for a heartbeat after the restart: described offline again, not fired again.
        sub.wait(lambda: offline_described() == 2, "offline after the restart", timeout=40)
        assert len(alerts_of(sub, "firing")) == 1
        asyncio.run(connect_once())
        sub.wait(lambda: bool(alerts_of(sub, "resolved")), "resolved", timeout=20)
    finally:
        output = stop(second)
    sub.close()
    assert second.returncode == 0, output
    assert len(alerts_of(sub, "firing")) == 1 and len(alerts_of(sub, "resolved")) == 1
    saved = json.loads(state.read_text())["firing"]
    assert {"alert": "charger_offline", "point": "borne-1"} not in saved
