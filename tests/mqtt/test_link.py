"""The MQTT link driven by the event loop, against a real mosquitto: acknowledgements (accepted
and refused), the keepalive it now sends itself, a broker that goes away and comes back."""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from collector.config import MqttSettings
from collector.mqtt.client import MqttLink
from collector.mqtt.spool import Spool
from collector.wire.kinds import Envelope
from tests.support import servers
from tests.support.collect_helpers import until

pytestmark = [pytest.mark.broker]

STATUS = "irve/test-site/status"


def link_to(port: int, **settings: object) -> MqttLink:
    mqtt = MqttSettings.model_validate({"host": "127.0.0.1", "port": port, **settings})
    return MqttLink(mqtt, "link-test", STATUS, [])


def run_on(
    broker: servers.Server,
    scenario: Callable[[MqttLink], Coroutine[Any, Any, None]],
    **settings: object,
) -> MqttLink:
    """Start the broker, run the scenario with a link to it, stop the broker; the link."""
    broker.start()
    link = link_to(broker.port, **settings)
    try:
        asyncio.run(scenario(link))
    finally:
        broker.stop()
    return link


def message(topic: str, n: int) -> Envelope:
    return Envelope(topic, str(n).encode(), retain=False, kind="energy", critical=True)


def test_accepted_and_refused_acknowledgements(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 2-byte PUBACK (success) takes the collector's short path; a PUBACK with a reason code
    (mosquitto's 'not authorised' for a topic its ACL forbids) still goes through paho's."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite irve/#\n")
    # Started as root, mosquitto drops to its own user, which cannot read a private folder.
    broker = servers.mosquitto(tmp_path / "broker", f"acl_file {acl}\nuser {getpass.getuser()}")
    caplog.set_level(logging.INFO)

    async def scenario(link: MqttLink) -> None:
        async with link:
            await until(lambda: link.connected, "connected")
            for n in range(200):
                link.send(message("irve/test-site/cp1/energy", n))
            link.send(message("elsewhere/energy", 200))
            assert await link.wait_idle(10)

    link = run_on(broker, scenario)
    # With the online and offline statuses.
    assert link.stats.published == link.stats.acked == 203
    assert link.stats.refused == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["MQTT: broker refused elsewhere/energy: Not authorized"]


@pytest.mark.slow
def test_an_idle_link_keeps_its_connection_past_the_keepalive(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mosquitto drops a client silent for 1.5 keepalives: the link's pings keep it."""
    broker = servers.mosquitto(tmp_path / "broker")

    async def scenario(link: MqttLink) -> None:
        async with link:
            await until(lambda: link.connected, "connected")
            await asyncio.sleep(12)  # 2.4 keepalives without a message (mosquitto checks lazily)
            link.send(message("irve/test-site/cp1/energy", 1))
            assert await link.wait_idle(5)

    link = run_on(broker, scenario, keepalive_s=5)
    # One connection, ended by the link itself (its close), never by the broker.
    assert (link.stats.connects, link.stats.disconnects) == (1, 1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_broker_restart_loses_nothing_and_reconnects(tmp_path: Path) -> None:
    """What is sent while the broker is away is kept, and acknowledged once it is back."""
    broker = servers.mosquitto(tmp_path / "broker")
    topic = "irve/test-site/cp1/energy"

    async def scenario(link: MqttLink) -> None:
        async with link:
            await until(lambda: link.connected, "connected")
            for n in range(50):
                link.send(message(topic, n))
            assert await link.wait_idle(10)
            broker.stop()
            await until(lambda: not link.connected, "disconnected")
            for n in range(50, 100):
                link.send(message(topic, n))
            assert link.pending == 50
            broker.start()
            await until(lambda: link.connected, "connected again", timeout=20)
            assert await link.wait_idle(10)

    link = run_on(broker, scenario)
    # The 100 messages, each connection's online status and the offline one on closing.
    assert link.stats.published == link.stats.acked == 103
    assert (link.stats.connects, link.stats.disconnects) == (2, 2)


def test_a_burst_of_critical_messages_is_journaled_with_one_fsync_before_it_goes_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An energy window closing on 30 sockets in one turn of the loop: one fsync, and none of
    the messages handed to the broker before it; all acknowledged, the journal emptied."""
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = tmp_path / "outbox.jsonl"

    async def scenario(link: MqttLink) -> None:
        async with link:
            await until(lambda: link.connected, "connected")
            hand_over = link._hand_over

            def counted(envelope: Envelope) -> bool:
                events.append("publish")
                return hand_over(envelope)

            monkeypatch.setattr(link, "_hand_over", counted)
            for n in range(30):
                link.send(message(f"irve/test-site/cp{n}/energy", n))
            assert events == []  # journaled, not yet synced nor sent
            assert len(journal.read_text().splitlines()) == 30
            assert await link.wait_idle(10)
            assert journal.read_text() == ""

    broker = servers.mosquitto(tmp_path / "broker")
    broker.start()
    mqtt = MqttSettings.model_validate({"host": "127.0.0.1", "port": broker.port})
    link = MqttLink(mqtt, "link-test", STATUS, [], spool=Spool(journal))
    try:
        asyncio.run(scenario(link))
    finally:
        broker.stop()
    assert events[:2] == ["fsync", "publish"]
    assert events.count("fsync") == 1, events
    assert events.count("publish") == 31  # the burst and the offline status
    assert link.stats.acked == 32  # with the online status, sent by paho on connecting
