"""Overload scenarios end to end: the simulator (Modbus TCP) -> the real collector app and
poller -> real mosquitto -> a subscriber, and phone notifications at a local ntfy endpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.collect import Collector
from collector.simulator.server import SimulatedSite
from tests.alert_helpers import Subscriber, notifiers, overload_site, run_collector, until
from tests.ntfy_server import NtfyServer
from tests.servers import Server


def texts(ntfy: NtfyServer) -> list[str]:
    return [m.message for m in ntfy.received()]


def test_socket_overcurrent_and_site_overload_fire_shed_notify_and_resolve(
    tmp_path: Path, broker: Server, ntfy: NtfyServer
) -> None:
    site, profiles = overload_site(tmp_path, broker.port, ntfy.url)
    sub = Subscriber(broker.port)

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=5) as sim:
            main, cp1, cp2 = sim.meter("main"), sim.meter("cp1"), sim.meter("cp2")
            main.force_power(15_000)
            cp1.force_current(16.0)
            cp2.force_current(0.0)

            async def body(app: Collector) -> None:
                await until(lambda: sub.payloads("shed") != [], "the first shed request")
                assert sub.payloads("shed")[-1]["active"] is False
                assert sub.alerts() == []

                # A socket above its rating.
                cp1.force_current(35.2)
                await until(lambda: sub.alerts("socket_overcurrent") != [], "overcurrent alert")
                firing = sub.alerts("socket_overcurrent")[0]
                assert (firing["state"], firing["point"], firing["limit"]) == ("firing", "cp1", 32)
                assert firing["value"] == pytest.approx(35.2, abs=0.05)
                await until(lambda: len(ntfy.received()) == 1, "overcurrent notification")
                assert texts(ntfy) == ["Surintensité sur Borne 1 : 35,2 A pour 32 A autorisés"]
                cp1.force_current(12.0)
                await until(lambda: len(sub.alerts("socket_overcurrent")) == 2, "resolved")
                assert sub.alerts("socket_overcurrent")[1]["state"] == "resolved"
                await until(lambda: len(ntfy.received()) == 2, "resolved notification")
                assert (
                    texts(ntfy)[1] == "Fin de surintensité sur Borne 1 : 12,0 A pour 32 A autorisés"
                )

                # The site above its subscribed power: pre-alarm, alarm, shed request.
                main.force_power(40_000)
                await until(lambda: sub.alerts("site_overload") != [], "overload alert")
                await until(lambda: sub.payloads("shed")[-1]["active"], "active shed request")
                shed = sub.payloads("shed")[-1]
                assert shed["reason"] == "site_overload"
                assert shed["excess_w"] == pytest.approx(4000, abs=50)
                assert [a["state"] for a in sub.alerts("site_overload_warning")] == ["firing"]
                await until(lambda: len(ntfy.received()) == 4, "overload notifications")
                assert (
                    "Dépassement de la puissance souscrite : 40,0 kW pour 36,0 kW souscrits"
                    in texts(ntfy)
                )
                main.force_power(20_000)
                await until(lambda: not sub.payloads("shed")[-1]["active"], "shed lifted")
                await until(lambda: len(sub.alerts("site_overload")) == 2, "overload resolved")
                await until(lambda: len(ntfy.received()) == 6, "resolved notifications")
                assert any(t.startswith("Fin du dépassement") for t in texts(ntfy))
                assert [a["state"] for a in sub.alerts("site_overload")] == ["firing", "resolved"]

            await run_collector(site, profiles, body)

    try:
        asyncio.run(scenario())
    finally:
        sub.close()
    assert all(m.title and "Test" in m.title for m in ntfy.received())


def test_main_meter_going_silent_sheds_as_failsafe_and_recovers(
    tmp_path: Path, broker: Server, ntfy: NtfyServer
) -> None:
    site, profiles = overload_site(tmp_path, broker.port, ntfy.url)
    sub = Subscriber(broker.port)

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=6) as sim:
            main = sim.meter("main")
            main.force_power(15_000)
            sim.meter("cp1").force_current(16.0)
            sim.meter("cp2").force_current(10.0)

            async def body(app: Collector) -> None:
                await until(lambda: sub.payloads("shed") != [], "the first shed request")
                main.silent()
                await until(lambda: sub.alerts("meter_offline") != [], "offline alert")
                offline = sub.alerts("meter_offline")[0]
                assert (offline["point"], offline["state"]) == ("main", "firing")
                await until(lambda: sub.payloads("shed")[-1]["active"], "fail-safe shed")
                shed = sub.payloads("shed")[-1]
                assert shed["reason"] == "main_meter_offline"
                # Everything the sockets draw: 26 A at about 230 V.
                assert 5000 < shed["excess_w"] < 6800
                await until(lambda: len(ntfy.received()) == 1, "offline notification")
                assert texts(ntfy)[0].startswith(
                    "Compteur général hors ligne : aucune lecture depuis"
                )
                main.silent(False)
                await until(lambda: len(sub.alerts("meter_offline")) == 2, "back online")
                await until(lambda: not sub.payloads("shed")[-1]["active"], "shed lifted")
                assert sub.payloads("shed")[-1]["reason"] == "normal"
                await until(lambda: len(ntfy.received()) == 2, "online notification")
                assert texts(ntfy)[1].startswith("Compteur général de nouveau en ligne")

            await run_collector(site, profiles, body)

    try:
        asyncio.run(scenario())
    finally:
        sub.close()


def test_notification_endpoint_down_does_not_hold_back_polling_or_mqtt(
    tmp_path: Path, broker: Server, ntfy: NtfyServer
) -> None:
    site, profiles = overload_site(tmp_path, broker.port, ntfy.url)
    sub = Subscriber(broker.port)
    ntfy.stop()

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=7) as sim:
            sim.meter("main").force_power(15_000)
            sim.meter("cp2").force_current(0.0)
            cp1 = sim.meter("cp1")
            cp1.force_current(40.0)

            async def body(app: Collector) -> None:
                await until(lambda: sub.alerts("socket_overcurrent") != [], "overcurrent alert")
                channel = notifiers(app)[0].channels[0]
                await until(lambda: channel.failures >= 2, "failed notification attempts")
                # Polling goes on at its rate while the notification is being retried.
                before = len(sub.payloads("cp1/state"))
                await asyncio.sleep(1.0)
                assert len(sub.payloads("cp1/state")) - before >= 3  # 5 polls at 0.2 s
                cp1.force_current(10.0)
                await until(lambda: len(sub.alerts("socket_overcurrent")) == 2, "resolved on MQTT")
                assert ntfy.received() == []
                ntfy.start()
                await until(lambda: len(ntfy.received()) == 2, "delivery once ntfy is back")
                assert texts(ntfy)[0] == "Surintensité sur Borne 1 : 40,0 A pour 32 A autorisés"
                assert texts(ntfy)[1].startswith("Fin de surintensité sur Borne 1")

            await run_collector(site, profiles, body)

    try:
        asyncio.run(scenario())
    finally:
        sub.close()
