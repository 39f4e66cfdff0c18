"""End to end: simulator (Modbus TCP, and RTU over a socat pty pair) -> the real collector app
-> real mosquitto -> a test subscriber. Also the process itself (status, last will on SIGKILL,
clean stop on SIGTERM, exit codes) and broker restarts against the buffering policy."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector import cli
from collector.collect import Collector, Stages
from collector.meters.poller import Poller
from collector.mqtt.client import MqttLink
from collector.pipeline import Processor
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from collector.wire.kinds import Outgoing
from collector.wire.messages import EnergyMessage, StateMessage
from tests.support import servers
from tests.support.app import make_app, with_app
from tests.support.collect_helpers import SITE, Quiet, Recorder, collect_process, until
from tests.support.servers import Server
from tests.support.sim_helpers import (
    main_meter,
    rtu_bus,
    socat_pair,
    socket_meter,
    tcp_bus,
    write_site,
)

pytestmark = [pytest.mark.broker, pytest.mark.serial]


def site_file(
    tmp_path: Path, broker: Server, buses: list[Any], meters: list[Any], **mqtt: Any
) -> Path:
    return write_site(
        tmp_path,
        buses=buses,
        meters=meters,
        mqtt={"host": "127.0.0.1", "port": broker.port, **mqtt},
        poll_interval_s=0.2,
        state_dir=str(tmp_path / "state"),  # the energy processor's file, never the repo's var/
    )


def assert_matches_model(state: dict[str, Any], model: dict[str, float]) -> None:
    """A published reading against the simulator's own numbers (the model may have moved one
    5 s step since the poll: voltage drifts, the index grows by at most one step)."""
    assert state["current_a"] == pytest.approx(model["current_a"], rel=1e-6)
    assert state["voltage_v"] == pytest.approx(model["voltage_v"], abs=2.0)
    assert state["power_w"] == pytest.approx(model["power_w"], rel=0.02)
    assert state["frequency_hz"] == pytest.approx(model["frequency_hz"], abs=0.25)
    # float32 kWh registers resolve about 0.1 Wh at this index.
    assert -1 <= model["energy_wh"] - state["energy_wh"] <= 20
    StateMessage.model_validate(state)


def test_tcp_end_to_end(tmp_path: Path, broker: Server) -> None:
    path = site_file(
        tmp_path,
        broker,
        [tcp_bus("board")],
        [main_meter("main", "board", 10), socket_meter("cp1", "board", 1)],
    )
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port)

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=3) as sim:
            sim.meter("cp1").force_current(10.0)
            app = make_app(site, profiles)

            async def body() -> None:
                await until(lambda: len(sub.states("cp1")) >= 3, "cp1 readings")
                await until(lambda: len(sub.states("main")) >= 3, "main readings")
                sim.meter("cp1").silent()
                await until(
                    lambda: sub.on(f"irve/{SITE}/cp1/availability")[-1:] == [b"offline"],
                    "cp1 offline",
                )
                sim.meter("cp1").silent(False)
                await until(
                    lambda: sub.on(f"irve/{SITE}/cp1/availability")[-1:] == [b"online"],
                    "cp1 back online",
                )
                await until(lambda: app.link.idle, "everything acknowledged")

            await with_app(app, Poller(site, profiles, app), body)
            # The model stops moving when nobody polls: the last reading is comparable.
            await until(lambda: sub.on(f"irve/{SITE}/status")[-1:] == [b"offline"], "offline")
            last = sub.states("cp1")[-1]
            assert_matches_model(last, sim.model.values("cp1"))
            assert last["power_w"] > 2000 and last["role"] == "socket"
            assert sub.states("main")[-1]["role"] == "main"
            # Each meter's limits from the site file travel with its readings (for Grafana).
            socket = next(m.socket for m in site.meters if m.id == "cp1")
            assert socket is not None and last["rated_current_a"] == socket.rated_current_a
            main = sub.states("main")[-1]
            assert main["limit_w"] == site.subscribed_power_w
            assert main["warning_w"] == site.subscribed_power_w * site.alerts.warning_share
            assert "rated_current_a" not in main and "limit_w" not in last
            assert len(sub.states("main")[-1]["currents_a"]) == 3

    asyncio.run(scenario())
    sub.close()
    assert sub.on(f"irve/{SITE}/cp1/availability") == [b"online", b"offline", b"online"]
    assert sub.on(f"irve/{SITE}/main/availability") == [b"online"]

    # A newcomer gets the retained picture: status, state, availability, discovery.
    late = Recorder(broker.port)
    late.wait(lambda: f"irve/{SITE}/cp1/state" in late.retained(), "retained state")
    late.wait(lambda: len(late.retained()) >= 24, "retained discovery")
    retained = late.retained()
    late.close()
    assert retained[f"irve/{SITE}/status"] == b"offline"
    assert retained[f"irve/{SITE}/cp1/availability"] == b"online"
    assert json.loads(retained[f"irve/{SITE}/cp1/state"]) == sub.states("cp1")[-1]
    energy = json.loads(retained[f"homeassistant/sensor/{SITE}/cp1_energy/config"])
    assert energy["state_topic"] == f"irve/{SITE}/cp1/state"
    assert (energy["device_class"], energy["state_class"]) == ("energy", "total_increasing")


def test_rtu_end_to_end(tmp_path: Path, broker: Server) -> None:
    """Over RS-485 (a socat pty pair), and to the broker in MQTT 3.1.1 this time."""
    with socat_pair(tmp_path) as (server_end, client_end):
        path = site_file(tmp_path, broker, [rtu_bus("rs485", client_end)],
                         [socket_meter("cp1", "rs485", 1)], protocol="3.1.1")  # fmt: skip
        site, profiles = load_site(str(path))
        sub = Recorder(broker.port)

        async def scenario() -> None:
            async with SimulatedSite(site, profiles, seed=5, serial={"rs485": server_end}) as sim:
                sim.meter("cp1").force_current(16.0)
                app = make_app(site, profiles)

                async def body() -> None:
                    await until(lambda: len(sub.states("cp1")) >= 3, "cp1 readings over RTU")
                    await until(lambda: app.link.idle, "everything acknowledged")

                await with_app(app, Poller(site, profiles, app), body)
                assert_matches_model(sub.states("cp1")[-1], sim.model.values("cp1"))

        asyncio.run(scenario())
        sub.close()
    assert sub.on(f"irve/{SITE}/cp1/availability") == [b"online"]
    assert sub.states("cp1")[-1]["current_a"] == 16.0


def test_process_status_last_will_and_clean_stop(tmp_path: Path, broker: Server) -> None:
    """`irve collect` as a process: `online` when up, `offline` by the last will when killed,
    `offline` by itself on SIGTERM; a meter that never answers is `offline`."""
    path = site_file(tmp_path, broker, [tcp_bus("board")], [socket_meter("cp1", "board", 1)])
    sub = Recorder(broker.port)
    status = f"irve/{SITE}/status"

    process = collect_process(path)
    sub.wait(lambda: sub.on(status)[-1:] == [b"online"], "status online", timeout=20)
    sub.wait(lambda: sub.on(f"irve/{SITE}/cp1/availability") == [b"offline"], "meter offline")
    process.kill()
    process.wait()
    sub.wait(lambda: sub.on(status)[-1:] == [b"offline"], "last will")

    process = collect_process(path)
    sub.wait(lambda: sub.on(status)[-2:] == [b"offline", b"online"], "online again", timeout=20)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=15)[0].decode()
    sub.wait(lambda: sub.on(status)[-1:] == [b"offline"], "clean offline")
    sub.close()
    assert process.returncode == 0, output
    assert "SIGTERM received" in output
    assert sub.on(status) == [b"online", b"offline", b"online", b"offline"]


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_site(tmp_path, buses=[tcp_bus("board")], meters=[socket_meter("cp1", "board", 0)])
    assert cli.main(["collect", "-c", str(bad)]) == 2
    assert "meters[0].unit: must be 1..247" in capsys.readouterr().err
    tls = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        name="tls.yaml",
        mqtt={"tls": True, "ca_file": str(tmp_path / "missing-ca.pem")},
    )
    assert cli.main(["collect", "-c", str(tls)]) == 2
    assert "mqtt.ca_file: no such file" in capsys.readouterr().err


# -- broker restarts ------------------------------------------------------------------------


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Server]:
    """mosquitto whose sessions survive a restart. Started as root, mosquitto drops to the
    `mosquitto` user, which cannot write its database in our temporary folder ("Error:
    Permission denied"): sessions would silently vanish on restart. `user` = whoever runs the
    tests keeps it able to write (the directive is ignored when not started as root)."""
    user = pwd.getpwuid(os.geteuid()).pw_name
    server = servers.mosquitto(tmp_path / "mosquitto", extra_conf=f"user {user}")
    server.start()
    yield server
    server.stop()


T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def energy(n: int) -> Outgoing:
    start = T0 + timedelta(minutes=n)
    message = EnergyMessage(
        start=start, end=start + timedelta(minutes=1), energy_wh=float(n), period="BASE",
        price_eur_kwh=0.2, cost_eur=n * 0.0002, index_start_wh=0.0, index_end_wh=float(n),
    )  # fmt: skip
    return Outgoing("cp1", message)


def state(n: int) -> Outgoing:
    message = StateMessage(
        ts=T0 + timedelta(seconds=n), power_w=float(n), current_a=None, voltage_v=None,
        energy_wh=None,
    )  # fmt: skip
    return Outgoing("cp1", message)


def numbers(sub: Recorder, kind: str, key: str) -> list[int]:
    """Distinct sequence numbers received, in order of first arrival (QoS 1 may duplicate)."""
    seen: dict[int, None] = {}
    for payload in sub.on(f"irve/{SITE}/cp1/{kind}"):
        seen.setdefault(int(json.loads(payload)[key]), None)
    return list(seen)


def idle_site(tmp_path: Path, broker: Server, **mqtt: Any) -> tuple[Collector[MqttLink], Quiet]:
    """An app whose only meter is never polled and without processors: every message comes
    from the test."""
    path = site_file(tmp_path, broker, [tcp_bus("board")], [socket_meter("cp1", "board", 1)],
                     discovery=False, **mqtt)  # fmt: skip
    site, profiles = load_site(str(path))
    return make_app(site, profiles, Stages()), Quiet()


def test_broker_restart_loses_nothing(tmp_path: Path, persistent_broker: Server) -> None:
    """Messages produced steadily while the broker restarts (including those handed to paho
    just before the socket died): every one arrives, in order, at a persistent subscriber."""
    app, quiet = idle_site(tmp_path, persistent_broker)
    sub = Recorder(persistent_broker.port, (f"irve/{SITE}/#",), client_id="persistent-subscriber")
    produced = 0

    async def body() -> None:
        nonlocal produced
        await until(lambda: app.link.connected, "connected")

        async def produce() -> None:
            nonlocal produced
            while True:
                app.publish(energy(produced))
                app.publish(state(produced))
                produced += 1
                await asyncio.sleep(0.005)

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(persistent_broker.restart)
        await until(lambda: app.link.stats.connects == 2, "reconnected")
        await asyncio.sleep(0.3)
        producer.cancel()
        await until(lambda: app.link.idle, "backlog flushed")

    asyncio.run(with_app(app, quiet, body))
    sub.wait(lambda: len(numbers(sub, "energy", "energy_wh")) == produced, "every energy message")
    sub.wait(lambda: len(numbers(sub, "state", "power_w")) == produced, "every state message")
    sub.close()
    assert app.link.outbox.stats.dropped == 0
    assert numbers(sub, "energy", "energy_wh") == list(range(produced))
    assert numbers(sub, "state", "power_w") == list(range(produced))


def test_outage_drops_oldest_states_only(tmp_path: Path, persistent_broker: Server) -> None:
    """Broker down, 350 messages for a 100-message outbox: the 50 energy messages and the
    newest 50 readings are delivered, in order, once it is back; the 250 oldest readings are
    the ones dropped (and counted)."""
    app, quiet = idle_site(tmp_path, persistent_broker, buffer_max_messages=100)
    sub = Recorder(persistent_broker.port, (f"irve/{SITE}/#",), client_id="persistent-subscriber")

    async def body() -> None:
        await until(lambda: app.link.connected, "connected")
        await asyncio.to_thread(persistent_broker.stop)
        await until(lambda: not app.link.connected, "broker seen down")
        for n in range(350):
            app.publish(energy(n) if n % 7 == 0 else state(n))
        assert app.link.outbox.stats.dropped_state == 250
        await asyncio.to_thread(persistent_broker.start)
        await until(lambda: app.link.idle, "backlog flushed")

    asyncio.run(with_app(app, quiet, body))
    sub.wait(lambda: len(numbers(sub, "state", "power_w")) == 50, "the newest readings")
    sub.wait(lambda: len(numbers(sub, "energy", "energy_wh")) == 50, "every energy message")
    sub.close()
    assert numbers(sub, "energy", "energy_wh") == list(range(0, 350, 7))
    assert numbers(sub, "state", "power_w") == [n for n in range(350) if n % 7][-50:]


# -- input from MQTT: badges, Home Assistant restarts; processors' hooks ----------------------


class Recording(Processor):
    """A processor that records what the app feeds it (a stand-in for energy/alerts)."""

    def __init__(self) -> None:
        self.badges: list[tuple[str, str]] = []
        self.ticks = 0

    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        self.badges.append((point, badge))
        return [energy(len(self.badges))]

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        self.ticks += 1
        return ()


class Broken(Processor):
    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        raise RuntimeError("processor bug")


def test_badges_ticks_and_home_assistant_restart(
    tmp_path: Path, broker: Server, caplog: pytest.LogCaptureFixture
) -> None:
    path = site_file(tmp_path, broker, [tcp_bus("board")], [socket_meter("cp1", "board", 1)])
    site, profiles = load_site(str(path))
    recording = Recording()
    observed: list[str] = []
    stages = Stages(others=[Broken(), recording], observers=[lambda out: observed.append(out.kind)])
    app = make_app(site, profiles, stages)
    sub = Recorder(broker.port)
    discovery = f"homeassistant/sensor/{SITE}/cp1_power/config"

    async def body() -> None:
        await until(lambda: len(sub.on(discovery)) == 1, "discovery")
        front_desk = sub.client
        front_desk.publish(f"irve/{SITE}/cp1/badge", b"not json", qos=1)
        front_desk.publish(f"irve/{SITE}/cp1/badge", b'{"badge": "  "}', qos=1)
        front_desk.publish(f"irve/{SITE}/nope/badge", b'{"badge": "room-1"}', qos=1)
        front_desk.publish(f"irve/{SITE}/cp1/badge", b'{"badge": "room-12"}', qos=1)
        await until(lambda: recording.badges == [("cp1", "room-12")], "the good badge")
        await until(lambda: len(sub.on(f"irve/{SITE}/cp1/energy")) == 1, "its output")
        front_desk.publish("homeassistant/status", b"online", qos=1)
        await until(lambda: len(sub.on(discovery)) == 2, "discovery re-sent")
        await until(lambda: recording.ticks >= 1, "a tick", timeout=3)

    asyncio.run(with_app(app, Quiet(), body))
    sub.close()
    logged = caplog.text
    assert f"bad badge message on 'irve/{SITE}/cp1/badge': payload: Invalid JSON" in logged
    assert "badge: Value error, badge must not be blank" in logged
    assert f"badge on 'irve/{SITE}/nope/badge': no meter 'nope'" in logged
    assert "processor Broken failed" in logged
    assert "energy" in observed and "state" not in observed


def test_badges_that_could_forge_logs_or_never_be_billed_are_refused_with_an_event(
    tmp_path: Path, broker: Server
) -> None:
    """`irve collect` as a process, badges from the front desk on the real broker: a newline
    (a forged log line), a tab, a backslash and 65 characters are
    refused, logged escaped on one line each, and said once on the point's `event` topic
    (a flood of them would be journaled otherwise); a padded good badge is taken stripped.
    (A newline in the topic never reaches the collector: mosquitto refuses such a topic.)"""
    path = site_file(tmp_path, broker, [tcp_bus("board")], [socket_meter("cp1", "board", 1)],
                     discovery=False)  # fmt: skip
    sub = Recorder(broker.port)
    events = f"irve/{SITE}/cp1/event"
    process = collect_process(path)
    try:
        sub.wait(lambda: sub.on(f"irve/{SITE}/status")[-1:] == [b"online"], "online", 20)
        bad = ["room-1\nINFO forged on cp9", "room\t2", "room\\3", "x" * 65]
        for badge in bad:
            payload = json.dumps({"badge": badge}).encode()
            sub.client.publish(f"irve/{SITE}/cp1/badge", payload, qos=1).wait_for_publish()
        sub.client.publish(f"irve/{SITE}/cp1/badge", b'{"badge": "  room-5 "}', qos=1)
        sub.wait(lambda: sub.on(events) != [], "the badge_refused event")
        time.sleep(1)  # the other refusals would have been said by now
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
        sub.close()
    lines = output.splitlines()
    assert not [line for line in lines if "forged" in line and "bad badge" not in line], output
    refused = [line for line in lines if "bad badge message on" in line]
    assert len(refused) == 4, output
    assert "badge contains '\\n': control characters and backslashes" in refused[0]
    assert "'room-1\\nINFO" not in output  # the badge itself is never echoed raw
    assert "badge contains '\\t'" in refused[1] and "badge contains '\\\\'" in refused[2]
    assert "badge has 65 characters, at most 64 allowed" in refused[3]
    assert "badge 'room-5' on cp1" in output
    (event,) = [json.loads(p) for p in sub.on(events)]
    assert event["event"] == "badge_refused"
    assert event["message"].startswith("badge refused: badge: Value error, badge contains '\\n'")


def test_badge_published_while_the_collector_restarts_is_delivered(
    tmp_path: Path, broker: Server
) -> None:
    path = site_file(tmp_path, broker, [tcp_bus("board")], [socket_meter("cp1", "board", 1)],
                     discovery=False)  # fmt: skip
    site, profiles = load_site(str(path))
    sub = Recorder(broker.port)

    def run(recording: Recording, body: Callable[[], Awaitable[None]]) -> None:
        asyncio.run(with_app(make_app(site, profiles, Stages(others=[recording])), Quiet(), body))

    async def connected() -> None:
        await until(lambda: sub.on(f"irve/{SITE}/status")[-1:] == [b"online"], "online")

    run(Recording(), connected)
    sub.wait(lambda: sub.on(f"irve/{SITE}/status")[-1:] == [b"offline"], "stopped")
    sub.client.publish(f"irve/{SITE}/cp1/badge", b'{"badge": "room-7"}', qos=1).wait_for_publish()
    after = Recording()

    async def badge_arrives() -> None:
        await until(lambda: after.badges == [("cp1", "room-7")], "the badge sent while stopped")

    run(after, badge_arrives)
    sub.close()


def test_energy_queued_during_an_outage_survives_a_collector_restart(
    tmp_path: Path, persistent_broker: Server
) -> None:
    """Broker down, ten energy windows queued, the collector stopped before the broker
    returns: the next collector process sends them from its journal (collector.mqtt.spool)."""
    sub = Recorder(persistent_broker.port, (f"irve/{SITE}/#",), client_id="persistent-subscriber")
    first, quiet = idle_site(tmp_path, persistent_broker)

    async def outage() -> None:
        await until(lambda: first.link.connected, "connected")
        await asyncio.to_thread(persistent_broker.stop)
        await until(lambda: not first.link.connected, "broker seen down")
        for n in range(10):
            first.publish(energy(n))
            first.publish(state(n))

    asyncio.run(with_app(first, quiet, outage))
    assert not first.link.idle  # stopped with the windows undelivered
    persistent_broker.start()
    second, quiet = idle_site(tmp_path, persistent_broker)

    async def back() -> None:
        await until(lambda: second.link.connected and second.link.idle, "journal flushed")

    asyncio.run(with_app(second, quiet, back))
    sub.wait(lambda: len(numbers(sub, "energy", "energy_wh")) == 10, "every energy window")
    sub.close()
    assert numbers(sub, "energy", "energy_wh") == list(range(10))
    assert numbers(sub, "state", "power_w") == []  # readings are not journaled: stale by then
    journal = tmp_path / "state" / f"outbox-{SITE}.jsonl"
    assert journal.read_text() == ""  # everything acknowledged: emptied


def test_discovery_configs_of_the_former_layout_are_cleared_once(
    tmp_path: Path, broker: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """An upgrade: the broker still holds the configs of the former topic layout
    (`irve_<site>_<meter>/<quantity>`); the collector clears them (empty retained payload)
    before announcing the new ones, so Home Assistant keeps one copy of each entity. Once:
    the next start does not send the clears again."""
    caplog.set_level(logging.INFO, "collector.collect")
    path = site_file(tmp_path, broker, [tcp_bus("board")], [socket_meter("cp1", "board", 1)])
    site, profiles = load_site(str(path))
    former = [
        f"homeassistant/binary_sensor/irve_{SITE}/collector/config",
        f"homeassistant/sensor/irve_{SITE}_cp1/power/config",
        f"homeassistant/sensor/irve_{SITE}_cp1/energy/config",
    ]
    old = Recorder(broker.port, ("none",))
    for topic in former:
        old.client.publish(topic, b'{"old": true}', qos=1, retain=True).wait_for_publish(5)
    old.close()
    new = f"homeassistant/sensor/{SITE}/cp1_power/config"

    def run_once() -> Recorder:
        sub = Recorder(broker.port, ("homeassistant/#",))

        async def body() -> None:
            await until(lambda: len(sub.on(new)) >= 1, "the new discovery configs")

        asyncio.run(with_app(make_app(site, profiles, Stages()), Quiet(), body))
        sub.close()
        return sub

    first = run_once()
    for topic in former:
        assert first.on(topic)[-1] == b"", topic  # cleared after the retained old config
    late = Recorder(broker.port, ("homeassistant/#",))
    late.wait(lambda: new in late.retained(), "retained new config")
    late.close()
    assert not set(former) & set(late.retained())
    # The collector's config and cp1's seven sensors (an SDM120 measures seven quantities).
    assert "clearing 8 Home Assistant discovery config(s) of the former topic layout" in (
        caplog.text
    )

    caplog.clear()
    second = run_once()
    assert not [t for t in former if second.on(t)]
    assert "former topic layout" not in caplog.text
