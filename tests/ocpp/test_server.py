"""The OCPP 1.6J central system on real websockets (loopback): charge points driven by the tests
with the `ocpp` library's charge-point side, or raw frames for what a real charger gets wrong."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ocpp.exceptions import InternalError
from ocpp.v16 import call
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from collector.config import ChargerSettings, OcppSettings
from collector.ocpp.core import Badge
from collector.ocpp.events import (
    ChargerBooted,
    ChargerOffline,
    ChargerWarning,
    CommandResult,
    Event,
    TransactionEnded,
    TransactionStarted,
)
from collector.ocpp.server import CentralSystem, StartError, load_ocpp_state, state_path
from tests.support.ocpp import Station, charge_point
from tests.support.servers import free_port
from tests.support.tls import make_certificates

PASSWORD = "s3cret-borne-1"
NOW = datetime.now(UTC).replace(microsecond=0)
GUEST = Badge("04A1B2C3", "12", NOW + timedelta(days=2))
GONE = Badge("04DEAD00", "7", NOW - timedelta(hours=1))


class Site:
    """A central system on a free loopback port, and what it emitted."""

    def __init__(self, tmp_path: Path, authorize: str = "list", **kw: Any) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.settings = OcppSettings(
            listen=f"127.0.0.1:{self.port}", authorize=authorize, **kw.pop("ocpp", {})
        )
        self.chargers = [
            ChargerSettings(
                id="borne-1", password=PASSWORD, connectors={1: "cp1", 2: "cp1", 3: "cp2"}
            ),
            ChargerSettings(id="borne-2", password="other-pass", connectors={1: "cp3"}),
        ]
        self.events: list[Event] = []
        self.kw = kw
        self.system = self.new_system()

    def new_system(self) -> CentralSystem:
        return CentralSystem(
            self.settings,
            self.chargers,
            state_path(self.tmp_path, "test"),
            self.events.append,
            **self.kw,
        )

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def url(self, charger: str = "borne-1", password: str = PASSWORD, scheme: str = "ws") -> str:
        return f"{scheme}://{charger}:{password}@127.0.0.1:{self.port}/ocpp/{charger}"


def station(
    site: Site, charger: str = "borne-1", password: str = PASSWORD, **kw: Any
) -> contextlib.AbstractAsyncContextManager[Station]:
    return charge_point(site.url(charger, password), charger, **kw)


async def until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_boot_accepted_and_charger_info_emitted(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system, station(site) as cp:
            reply = await cp.boot()
            assert (reply.status, reply.interval) == ("Accepted", 300)
            await cp.call(call.Heartbeat())
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
            )
        (booted,) = site.of(ChargerBooted)
        assert (booted.vendor, booted.model, booted.serial, booted.firmware) == (
            "Legrand",
            "Green'up Premium",
            "LG-0001",
            "2.4.1",
        )
        assert any(
            getattr(e, "status", None) == "Available" and getattr(e, "point", None) == "cp1"
            for e in site.events
        )

    asyncio.run(scenario())


def test_authorize_accepted_invalid_expired_by_the_badge_list(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system, station(site) as cp:
            site.system.set_badges([GUEST, GONE])
            answers = [
                (await cp.call(call.Authorize(id_tag=tag))).id_tag_info["status"]
                for tag in ("04A1B2C3", "04DEAD00", "FFFF0000")
            ]
        assert answers == ["Accepted", "Expired", "Invalid"]

    asyncio.run(scenario())


def test_start_meter_values_stop_gives_one_session_with_badge_room_and_energy(
    tmp_path: Path,
) -> None:
    """Legrand's way: meterStart 0, energy as Interval samples, `mesurand` misspelt and a
    measurand the schemas do not know; accepted, one warning each, connection kept."""

    async def scenario() -> None:
        site = Site(tmp_path)
        start = NOW - timedelta(minutes=40)
        async with site.system, station(site) as cp:
            site.system.set_badges([GUEST])
            await cp.boot()
            started = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag="04A1B2C3", meter_start=0, timestamp=iso(start)
                )
            )
            assert started.id_tag_info["status"] == "Accepted"
            tid = started.transaction_id
            for minute, wh in ((10, "1500"), (20, "1500"), (30, "750.5")):
                values = call.MeterValues(
                    connector_id=1,
                    transaction_id=tid,
                    meter_value=[
                        {
                            "timestamp": iso(start + timedelta(minutes=minute)),
                            "sampledValue": [
                                {
                                    "value": wh,
                                    "mesurand": "Energy.Active.Import.Interval",
                                    "unit": "Wh",
                                },
                                {"value": "7.1", "measurand": "Energy.Active.Import.Session"},
                            ],
                        }
                    ],
                )
                await cp.call(values, skip_schema_validation=True)
            stopped = await cp.call(
                call.StopTransaction(
                    meter_stop=0,
                    timestamp=iso(start + timedelta(minutes=35)),
                    transaction_id=tid,
                    id_tag="04A1B2C3",
                )
            )
            assert stopped.id_tag_info["status"] == "Accepted"
            assert (await cp.call(call.Heartbeat())).current_time  # still connected
        (ended,) = site.of(TransactionEnded)
        assert (ended.badge, ended.room, ended.point, ended.transaction_id) == (
            "04A1B2C3",
            "12",
            "cp1",
            tid,
        )
        assert ended.charger_energy_wh == 3750.5
        assert ended.start == start
        kinds = [w.kind for w in site.of(ChargerWarning)]
        assert kinds == ["mesurand", "measurand Energy.Active.Import.Session"]

    asyncio.run(scenario())


def test_stop_after_a_restart_and_ids_never_reused(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        start = NOW - timedelta(hours=1)
        async with site.system, station(site) as cp:
            site.system.set_badges([GUEST])
            tid = (
                await cp.call(
                    call.StartTransaction(
                        connector_id=3, id_tag="04A1B2C3", meter_start=12000, timestamp=iso(start)
                    )
                )
            ).transaction_id
        site.system = site.new_system()  # the collector restarted: state from the state folder
        async with site.system, station(site) as cp:
            await cp.call(
                call.StopTransaction(meter_stop=19500, timestamp=iso(NOW), transaction_id=tid)
            )
            again = await cp.call(
                call.StartTransaction(
                    connector_id=1, id_tag="04A1B2C3", meter_start=0, timestamp=iso(NOW)
                )
            )
        (ended,) = site.of(TransactionEnded)
        assert (ended.badge, ended.room, ended.point, ended.charger_energy_wh) == (
            "04A1B2C3",
            "12",
            "cp2",
            7500.0,
        )
        assert ended.start is not None and abs((ended.start - start).total_seconds()) < 0.001
        assert again.transaction_id == tid + 1

    asyncio.run(scenario())


def test_link_dropped_and_back_with_queued_transaction(tmp_path: Path) -> None:
    """While the link is down the charger starts and stops a session on its local list; back,
    it sends them with their real times, which the session keeps."""

    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system:
            site.system.set_badges([GUEST])
            async with station(site) as cp:
                await cp.boot()
            await until(lambda: "borne-1" not in site.system.links)
            began, ended_at = NOW - timedelta(minutes=50), NOW - timedelta(minutes=5)
            async with station(site) as cp:
                tid = (
                    await cp.call(
                        call.StartTransaction(
                            connector_id=2, id_tag="04A1B2C3", meter_start=500, timestamp=iso(began)
                        )
                    )
                ).transaction_id
                await cp.call(
                    call.StopTransaction(
                        meter_stop=2500, timestamp=iso(ended_at), transaction_id=tid
                    )
                )
        assert not site.of(ChargerOffline)
        (started,) = site.of(TransactionStarted)
        (ended,) = site.of(TransactionEnded)
        assert abs((started.ts - began).total_seconds()) < 0.001
        assert abs((ended.end - ended_at).total_seconds()) < 0.001
        assert ended.charger_energy_wh == 2000.0

    asyncio.run(scenario())


def test_wrong_password_and_unknown_id_refused_at_the_handshake(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def refused(url: str) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, subprotocols=["ocpp1.6"]):  # type: ignore[list-item]
                pass
        return int(info.value.response.status_code)

    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system:
            assert await refused(site.url(password="guessed-pass")) == 401
            assert await refused(site.url(password="guessed-pass")) == 401  # logged once
            assert await refused(site.url("borne-9", "whatever")) == 404
            assert await refused(f"ws://127.0.0.1:{site.port}/borne-1") == 401
            assert await refused(site.url("borne-1", "other-pass")) == 401  # borne-2's password

    with caplog.at_level(logging.DEBUG):  # websockets says the request headers at DEBUG
        asyncio.run(scenario())
    # What the central system logs (the test's own client logs its request too).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("collector"))
    assert "< Authorization: [hidden]" in text
    assert base64.b64encode(b"borne-1:guessed-pass").decode() not in text
    assert "charger 'borne-1' from 127.0.0.1:" in text and "wrong password" in text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Three wrong passwords from one address: one line (a charger retries every few seconds).
    assert len([w for w in warnings if "wrong password" in w]) == 1
    assert "charger 'borne-9' from 127.0.0.1:" in text and "unknown id" in text
    assert "no password (HTTP Basic) given" in text
    assert "guessed-pass" not in text and "other-pass" not in text and PASSWORD not in text


def test_malformed_frames_answered_with_callerror_and_connection_kept(tmp_path: Path) -> None:
    async def exchange(ws: ClientConnection, frame: str) -> list[Any]:
        await ws.send(frame)
        return list(json.loads(await asyncio.wait_for(ws.recv(), 5)))

    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system, connect(site.url(), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            assert (await exchange(ws, "this is not json"))[:3] == [4, "-1", "FormationViolation"]
            assert (await exchange(ws, '[2,"a1","Heartbeat",{'))[:3] == [
                4,
                "a1",
                "FormationViolation",
            ]
            assert (await exchange(ws, '[2,"a2","MakeCoffee",{}]'))[:3] == [4, "a2", "NotSupported"]
            assert (await exchange(ws, '[2,"a3","ReserveNow",{}]'))[:3] == [
                4,
                "a3",
                "NotImplemented",
            ]
            status = '[2,"a4","StatusNotification",{"connectorId":"one","errorCode":"NoError","status":"Available"}]'
            assert (await exchange(ws, status))[:3] == [4, "a4", "TypeConstraintViolation"]
            occupied = status.replace('"one"', "1").replace("Available", "Occupied")  # OCPP 1.5
            answer = await exchange(ws, occupied.replace("a4", "p1"))
            assert answer[:3] == [4, "p1", "PropertyConstraintViolation"]
            assert answer[4]["cause"].startswith("'Occupied' is not one of ['Available'")
            meter = '[2,"a5","MeterValues",{"connectorId":"x","meterValue":[]}]'
            assert (await exchange(ws, meter))[:3] == [4, "a5", "TypeConstraintViolation"]
            stop = '[2,"a6","StopTransaction",{"meterStop":1}]'
            assert (await exchange(ws, stop))[:3] == [4, "a6", "ProtocolError"]
            big = json.dumps([2, "a7", "Authorize", {"idTag": "A" * 1_000_000}])
            answer = await exchange(ws, big)
            assert answer[:3] == [4, "a7", "TypeConstraintViolation"]
            assert len(json.dumps(answer)) < 2000  # the frame is not echoed back
            junk = "x" * 1_000_000
            assert (await exchange(ws, junk))[:3] == [4, "-1", "FormationViolation"]
            boot = '{"chargePointVendor":"Legrand","chargePointModel":"Green up","kitVersion":"3"}'
            reply = await exchange(ws, f'[2,"b1","BootNotification",{boot}]')
            assert reply[:2] == [3, "b1"] and reply[2]["status"] == "Accepted"  # the extra dropped
            reply = await exchange(ws, '[2,"ok","Heartbeat",{}]')
            assert reply[:2] == [3, "ok"] and "currentTime" in reply[2]
        assert [w.kind for w in site.of(ChargerWarning)] == [
            "frame",  # once for the three frames that are not OCPP
            "MakeCoffee NotSupported",
            "ReserveNow NotImplemented",
            "StatusNotification TypeConstraintViolation",
            "StatusNotification PropertyConstraintViolation",
            "MeterValues TypeConstraintViolation",
            "StopTransaction ProtocolError",
            "Authorize TypeConstraintViolation",
            "BootNotification extra",
        ]

    asyncio.run(scenario())


def test_remote_start_stop_unlock_availability_round_trips(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system, station(site) as cp:
            site.system.set_badges([GUEST])
            await cp.call(
                call.StatusNotification(connector_id=2, error_code="NoError", status="Preparing")
            )
            (start,) = await site.system.command("cp1", "start", badge="04A1B2C3")
            tid = (
                await cp.call(
                    call.StartTransaction(
                        connector_id=2, id_tag="04A1B2C3", meter_start=0, timestamp=iso(NOW)
                    )
                )
            ).transaction_id
            (stop,) = await site.system.command("cp1", "stop")
            (unlock,) = await site.system.command("cp2", "unlock")
            disable = await site.system.command("cp1", "disable")
            enable = await site.system.command("cp1", "enable")
        assert cp.got("RemoteStartTransaction") == [{"id_tag": "04A1B2C3", "connector_id": 2}]
        assert cp.got("RemoteStopTransaction") == [{"transaction_id": tid}]
        assert cp.got("UnlockConnector") == [{"connector_id": 3}]
        assert cp.got("ChangeAvailability") == [
            {"connector_id": 1, "type": "Inoperative"},
            {"connector_id": 2, "type": "Inoperative"},
            {"connector_id": 1, "type": "Operative"},
            {"connector_id": 2, "type": "Operative"},
        ]
        assert [r.status for r in (start, stop, unlock, *disable, *enable)] == [
            "Accepted", "Accepted", "Unlocked", "Accepted", "Accepted", "Accepted", "Accepted",
        ]  # fmt: skip
        assert (start.action, start.point, start.connector) == ("start", "cp1", 2)
        assert len([e for e in site.of(CommandResult) if e.action != "local_list"]) == 7

    asyncio.run(scenario())


def test_a_charger_that_does_not_answer_delays_no_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path, call_timeout_s=1.0)
        async with (
            site.system,
            station(site) as slow,
            station(site, "borne-2", "other-pass") as fast,
        ):
            slow.answer_delay_s = 10
            t0 = asyncio.get_running_loop().time()
            slow_task = asyncio.create_task(site.system.command("cp2", "unlock"))
            (quick,) = await site.system.command("cp3", "unlock")
            assert quick.status == "Unlocked"
            assert asyncio.get_running_loop().time() - t0 < 0.5
            (late,) = await slow_task
            assert late.status == "Timeout"
            assert (await fast.call(call.Heartbeat())).current_time

    asyncio.run(scenario())


def test_local_list_pushed_on_boot_and_on_change_with_increasing_versions(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system:
            site.system.set_badges([GUEST, GONE])
            async with (
                station(site) as cp,
                station(site, "borne-2", "other-pass", local_list="false") as off,
            ):
                await cp.boot()
                await off.boot()
                await until(lambda: len(cp.got("SendLocalList")) == 1)
                site.system.set_badges([GUEST, Badge("0A0B0C0D", "3", None)])
                await until(lambda: len(cp.got("SendLocalList")) == 2)
                await asyncio.sleep(0.2)
        first, second = cp.got("SendLocalList")
        assert (
            first["update_type"] == "Full" and second["list_version"] == first["list_version"] + 1
        )
        assert first["local_authorization_list"] == [
            {
                "id_tag": "04A1B2C3",
                "id_tag_info": {
                    "status": "Accepted",
                    "expiry_date": GUEST.until.strftime("%Y-%m-%dT%H:%M:%S.000Z"),  # type: ignore[union-attr]
                },
            }
        ]
        assert [e["id_tag"] for e in second["local_authorization_list"]] == ["04A1B2C3", "0A0B0C0D"]
        assert off.got("GetConfiguration") and not off.got("SendLocalList")

    asyncio.run(scenario())


def test_current_limit_set_and_cleared_as_the_charger_receives_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system, station(site) as cp:
            results = await site.system.set_limit("cp1", 10.0, duration_s=600)
            cleared = await site.system.clear_limit("cp2")
        assert [r.status for r in results + cleared] == ["Accepted"] * 3
        profiles = cp.got("SetChargingProfile")
        assert [p["connector_id"] for p in profiles] == [1, 2]
        profile = profiles[0]["cs_charging_profiles"]
        assert profile["charging_profile_purpose"] == "TxDefaultProfile"
        assert profile["charging_schedule"]["charging_rate_unit"] == "A"
        assert profile["charging_schedule"]["charging_schedule_period"] == [
            {"start_period": 0, "limit": 10.0}
        ]
        assert profile["charging_schedule"]["duration"] == 600 and "valid_to" in profile
        (clear,) = cp.got("ClearChargingProfile")
        assert clear["connector_id"] == 3 and clear["id"] == 7103

    asyncio.run(scenario())


def test_charger_offline_after_missed_heartbeats(tmp_path: Path) -> None:
    clock = [NOW]

    async def scenario() -> None:
        site = Site(
            tmp_path,
            ocpp={"heartbeat_s": 10, "offline_after_heartbeats": 2},
            tick_s=0.05,
            clock=lambda: clock[0],
        )
        async with site.system, station(site) as cp:
            await cp.boot()
            clock[0] = NOW + timedelta(seconds=26)  # (2 + 0.5) heartbeats
            await until(lambda: site.of(ChargerOffline))
            await cp.call(call.Heartbeat())
        offline = [e for e in site.of(ChargerOffline) if e.charger == "borne-1"]
        assert len(offline) == 1
        statuses = [
            getattr(e, "status", None)
            for e in site.events
            if getattr(e, "charger", None) == "borne-1"
        ]
        assert statuses.count("offline") == 3

    asyncio.run(scenario())


def test_tls_listener(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    make_certificates(certs)

    async def scenario() -> None:
        tls = {"cert_file": certs / "server.crt", "key_file": certs / "server.key"}
        site = Site(tmp_path, ocpp={"tls": tls})
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        url = site.url(scheme="wss").replace("127.0.0.1", "localhost")
        async with site.system, connect(url, subprotocols=["ocpp1.6"], ssl=context) as ws:  # type: ignore[list-item]
            await ws.send('[2,"t1","Heartbeat",{}]')
            assert json.loads(await ws.recv())[:2] == [3, "t1"]

    asyncio.run(scenario())


def test_subprotocol_ocpp16_or_none_accepted_others_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system:
            async with connect(site.url(), subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
                assert ws.subprotocol == "ocpp1.6"
            async with connect(site.url()) as ws:  # older firmwares offer none
                await ws.send('[2,"n1","Heartbeat",{}]')
                assert json.loads(await ws.recv())[:2] == [3, "n1"]
            with pytest.raises(InvalidStatus) as info:
                async with connect(site.url(), subprotocols=["ocpp2.0.1"]):  # type: ignore[list-item]
                    pass
            assert info.value.response.status_code == 400

    asyncio.run(scenario())


def test_a_start_sent_again_after_a_lost_answer_is_one_session(tmp_path: Path) -> None:
    """The link cut before the charger had the answer to its StartTransaction, it sends the
    same start on its next connection: the same transaction id, one session."""

    async def scenario() -> None:
        site = Site(tmp_path)
        start = call.StartTransaction(
            connector_id=1, id_tag="04A1B2C3", meter_start=4000, timestamp=iso(NOW)
        )
        async with site.system:
            site.system.set_badges([GUEST])
            async with station(site) as cp:
                first = await cp.call(start)
            async with station(site) as cp:
                again = await cp.call(start)
                await cp.call(
                    call.StopTransaction(
                        meter_stop=5500, timestamp=iso(NOW), transaction_id=again.transaction_id
                    )
                )
        assert again.transaction_id == first.transaction_id
        assert len(site.of(TransactionStarted)) == 1
        (ended,) = site.of(TransactionEnded)
        assert ended.charger_energy_wh == 1500.0

    asyncio.run(scenario())


def test_start_refused_when_the_transaction_id_cannot_be_stored(tmp_path: Path) -> None:
    """An id the state folder does not hold could be handed out again after a restart: the
    charger gets an InternalError and retries, and nothing is said to have started."""

    async def scenario() -> None:
        site = Site(tmp_path)
        (tmp_path / "not-a-folder").write_text("")
        site.system.state_file = tmp_path / "not-a-folder" / "ocpp-test.json"
        async with site.system, station(site) as cp:
            start = call.StartTransaction(
                connector_id=1, id_tag="X1", meter_start=0, timestamp=iso(NOW)
            )
            with pytest.raises(InternalError):
                await cp.call(start, suppress=False)
            assert (await cp.call(call.Heartbeat())).current_time
        assert not site.of(TransactionStarted)
        assert not site.system.core.transactions

    asyncio.run(scenario())


def test_command_to_a_charger_not_connected_says_offline(tmp_path: Path) -> None:
    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system:
            (result,) = await site.system.command("cp3", "unlock")
        assert (result.status, result.charger, result.point) == ("Offline", "borne-2", "cp3")
        assert site.of(CommandResult) == [result]

    asyncio.run(scenario())


def test_cannot_start_names_the_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        tls = {"cert_file": tmp_path / "none.crt", "key_file": tmp_path / "none.key"}
        with pytest.raises(StartError, match=r"^ocpp.tls: cannot use .*none.crt"):
            await Site(tmp_path, ocpp={"tls": tls}).system.start()
        site = Site(tmp_path)
        async with site.system:
            twin = CentralSystem(site.settings, site.chargers, tmp_path / "twin.json", print)
            with pytest.raises(
                StartError, match=rf"^ocpp.listen: cannot listen on 127.0.0.1:{site.port}"
            ):
                await twin.start()

    asyncio.run(scenario())


def test_unreadable_state_never_reuses_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ocpp-test.json"
    path.write_text("{not json")
    now = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    assert load_ocpp_state(path, now) == {"next_transaction_id": int(now.timestamp())}
    good = {"id": 4, "charger": "borne-1", "connector": 1, "badge": "X", "room": None,
            "start": "2026-12-06T09:00:00Z", "meter_start_wh": 0}  # fmt: skip
    path.write_text(json.dumps({"next_transaction_id": 9, "transactions": [good, {"id": 5}]}))
    assert load_ocpp_state(path, now)["transactions"] == [good]
    assert "unreadable (Expecting property name" in caplog.text
    assert "transaction {'id': 5} unreadable" in caplog.text


def test_a_second_connection_replaces_the_first_and_gets_the_list(tmp_path: Path) -> None:
    """A charger that reconnects before the box noticed its old link dropped: the new link
    takes over (commands go to it), and it gets the local list without booting."""

    async def scenario() -> None:
        site = Site(tmp_path)
        async with site.system:
            site.system.set_badges([GUEST])
            async with station(site) as old:
                await old.call(call.Heartbeat())
                await until(lambda: old.got("SendLocalList"))
                async with station(site) as new:
                    await new.call(call.Heartbeat())
                    await until(lambda: new.got("SendLocalList"))
                    (result,) = await site.system.command("cp2", "unlock")
                    assert result.status == "Unlocked"
                    assert new.got("UnlockConnector") and not old.got("UnlockConnector")
                    await until(lambda: old._connection.state.name == "CLOSED")
                    await asyncio.sleep(0.1)  # the old link's end must not drop the new one
                    assert "borne-1" in site.system.links
                    assert (await new.call(call.Heartbeat())).current_time

    asyncio.run(scenario())


def test_a_local_list_answer_without_a_valid_status_is_not_taken_for_accepted(
    tmp_path: Path,
) -> None:
    """A sloppy box answers SendLocalList with `{}`, then with a status outside the schema: the
    push is a failed command each time and the same version goes out again at the box's next
    message, until an answer says Accepted."""
    answers: list[dict[str, Any]] = [{}, {"status": "OK"}, {"status": "Accepted"}]

    async def scenario() -> list[tuple[str, str | None]]:
        site = Site(tmp_path)
        async with site.system:
            site.system.set_badges([GUEST])
            url = site.url("borne-1", PASSWORD)
            async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
                boot = {"chargePointVendor": "Legrand", "chargePointModel": "Green'up"}
                await ws.send(json.dumps([2, "boot", "BootNotification", boot]))
                versions: list[int] = []
                while len(versions) < len(answers):
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if message[0] != 2:  # an answer to the box's own call
                        continue
                    reply: dict[str, Any] = {"status": "Accepted"}
                    if message[2] == "GetConfiguration":
                        key = {"key": "LocalAuthListEnabled", "readonly": False, "value": "true"}
                        reply = {"configurationKey": [key]}
                    elif message[2] == "SendLocalList":
                        versions.append(message[3]["listVersion"])
                        reply = answers[len(versions) - 1]
                    await ws.send(json.dumps([3, message[1], reply]))
                    if message[2] == "SendLocalList":
                        await until(lambda: len(pushes(site)) == len(versions))
                        await ws.send(json.dumps([2, f"hb{len(versions)}", "Heartbeat", {}]))
                assert len(set(versions)) == 1
                await asyncio.sleep(0.3)
                await ws.send(json.dumps([2, "hb-last", "Heartbeat", {}]))
                await asyncio.sleep(0.3)  # no fourth push: the version was accepted
        return [(e.status, e.detail) for e in pushes(site)]

    results = asyncio.run(scenario())
    assert [status for status, _ in results] == ["CallError", "CallError", "Accepted"]
    assert results[0][1] == (
        "ProtocolError: Payload for Action is incomplete ('status' is a required property)"
    )
    assert "'OK' is not one of ['Accepted'," in (results[1][1] or "")


def pushes(site: Site) -> list[CommandResult]:
    return [e for e in site.of(CommandResult) if e.action == "local_list"]


def test_the_local_list_is_made_once_per_version_and_set_of_valid_badges(tmp_path: Path) -> None:
    """Every charger gets the same wire payload, made once (not converted again per charger);
    a badge expiring makes a new one, under the same version."""
    now = [NOW]
    soon = Badge("0A0B0C0D", "3", NOW + timedelta(minutes=5))

    async def scenario() -> None:
        site = Site(tmp_path, clock=lambda: now[0])
        site.system.set_badges([GUEST, soon])
        first = site.system.local_list_payload()
        assert first is site.system.local_list_payload()
        assert [e["idTag"] for e in first["localAuthorizationList"]] == ["04A1B2C3", "0A0B0C0D"]
        assert first["localAuthorizationList"][0]["idTagInfo"] == {
            "status": "Accepted",
            "expiryDate": GUEST.until.strftime("%Y-%m-%dT%H:%M:%S.000Z"),  # type: ignore[union-attr]
        }
        now[0] = NOW + timedelta(minutes=10)
        later = site.system.local_list_payload()
        assert [e["idTag"] for e in later["localAuthorizationList"]] == ["04A1B2C3"]
        assert later["listVersion"] == first["listVersion"] and later["updateType"] == "Full"
        await site.system.stop()

    asyncio.run(scenario())
