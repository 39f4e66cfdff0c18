"""The stack's broker rules, enforced by the real mosquitto started from `mosquitto/`.

The configuration is the repository's mosquitto.conf and acl (paths rewritten by
scripts/local_broker.py), with a password file written by scripts/init_env.py. One addition,
for the tests only: an `observer` user allowed to read `#`, so that a publish the ACL refuses
can be told apart from one that merely has no reader.

Non-delivery is checked without sleeping: after the refused publish the same client publishes
an allowed sentinel; mosquitto handles one client's messages in order, so once the sentinel
has arrived the refused message would have arrived before it.
"""

from __future__ import annotations

import base64
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.mqtt.auth import default_client_id
from collector.wire.messages import EnergyMessage, StateMessage
from scripts import healthcheck, local_broker
from scripts.init_env import mosquitto_hash
from tests.support import servers
from tests.support.mqtt_probe import TIMEOUT, Probe
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site

pytestmark = [pytest.mark.broker]


SITE, OTHER_SITE = "hotel-vda", "gite-des-tilleuls"
USERS = {
    SITE: "pw-site-1",
    OTHER_SITE: "pw-site-2",
    "ingestor": "pw-ingestor",
    "building": "pw-building",
    "homeassistant": "pw-ha",
    "healthcheck": "pw-health",
    "desk": "pw-desk",
    "observer": "pw-observer",
}
Connect = Callable[[str], Probe]
_ids = itertools.count()  # sentinel payloads, unique across the module


@pytest.fixture
def stack_broker(tmp_path: Path) -> Iterator[servers.Server]:
    port = servers.free_port()
    conf = local_broker.prepare(tmp_path / "broker", port, USERS)
    acl = conf.parent / "acl"
    acl.write_text(acl.read_text() + "\n# tests only\nuser observer\ntopic read #\n")
    server = servers.mosquitto_on(conf, port, tmp_path / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def connect(stack_broker: servers.Server) -> Iterator[Connect]:
    probes: list[Probe] = []

    def make(username: str) -> Probe:
        probe = Probe(stack_broker.port, username, USERS[username])
        assert probe.connect() == 0, f"{username} refused"
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        probe.close()


def refused(publisher: Probe, observer: Probe, topic: str, sentinel_topic: str) -> bool:
    """Publish on `topic`, then an allowed sentinel: was `topic` kept from the observer?"""
    publisher.publish(topic, b"forbidden?")
    sentinel = f"sentinel-{next(_ids)}".encode()
    publisher.publish(sentinel_topic, sentinel)
    seen = observer.wait_for(sentinel_topic, sentinel)
    return (topic, b"forbidden?") not in seen


def test_password_hash_is_mosquitto_format() -> None:
    # Checked against a line written by mosquitto_passwd 2.0 (password "secret").
    line = mosquitto_hash("secret", base64.b64decode("9vbvQa5XIakBiW5i"))
    assert line == (
        "$7$101$9vbvQa5XIakBiW5i$eC5jQhE326R+EGs3LD+h1DGO8dJrhO6A+HxSkLFurK4pd9kxcyxy1+e1"
        "J5oPCbiYk0ORAudH26gYbeg0PPz1MA=="
    )


def test_anonymous_and_wrong_password_are_refused(stack_broker: servers.Server) -> None:
    anonymous = Probe(stack_broker.port, None, None)
    wrong = Probe(stack_broker.port, "building", "not-the-password")
    try:
        assert anonymous.connect() == "Not authorized"
        assert wrong.connect() in ("Bad user name or password", "Not authorized")
    finally:
        anonymous.close()
        wrong.close()


def test_collector_writes_only_its_prefix_and_discovery(connect: Connect) -> None:
    collector, observer = connect(SITE), connect("observer")
    observer.subscribe("#")
    own = f"irve/{SITE}/cp1/state"
    collector.publish(own, b"ok")
    observer.wait_for(own, b"ok")
    collector.publish(f"homeassistant/sensor/{SITE}/cp1_power/config", b"{}")
    observer.wait_for(f"homeassistant/sensor/{SITE}/cp1_power/config", b"{}")
    for topic in (
        f"irve/{OTHER_SITE}/cp1/state",
        f"irve/{SITE}x/cp1/state",
        "irve/cp1/state",
        "other/thing",
        f"{SITE}/cp1/state",
    ):
        assert refused(collector, observer, topic, own), topic


def test_collector_writes_only_its_own_home_assistant_discovery(connect: Connect) -> None:
    """A site cannot overwrite another site's retained discovery configs (nor anything else
    under homeassistant/); Home Assistant itself still owns the whole tree."""
    collector, other, ha, observer = (
        connect(SITE),
        connect(OTHER_SITE),
        connect("homeassistant"),
        connect("observer"),
    )
    observer.subscribe("homeassistant/#")
    theirs = f"homeassistant/sensor/{OTHER_SITE}/cp1_power/config"
    other.publish(theirs, b"genuine")
    observer.wait_for(theirs, b"genuine")
    own = f"homeassistant/binary_sensor/{SITE}/collector/config"
    for topic in (
        theirs,
        f"homeassistant/binary_sensor/{OTHER_SITE}/collector/config",
        f"homeassistant/sensor/irve_{OTHER_SITE}_cp1/power/config",  # the former layout
        "homeassistant/sensor/cp1_power/config",
        f"homeassistant/sensor/{SITE}x/cp1_power/config",
        "homeassistant/status",
    ):
        assert refused(collector, observer, topic, own), topic
    ha.publish("homeassistant/status", b"online")
    observer.wait_for("homeassistant/status", b"online")


def test_collector_cannot_read_other_sites(connect: Connect) -> None:
    collector, other, ingestor = connect(SITE), connect(OTHER_SITE), connect("ingestor")
    collector.subscribe("irve/#")  # mosquitto accepts it; the ACL filters each delivery
    collector.subscribe("homeassistant/status")
    other.publish(f"irve/{OTHER_SITE}/cp1/state", b"theirs")
    other.publish(f"irve/{OTHER_SITE}/cp1/badge", b"theirs")
    # The ingestor's dead letter for this site is readable by the site: the sentinel.
    ingestor.publish(f"irve/{SITE}/deadletter", b"sentinel")
    seen = collector.wait_for(f"irve/{SITE}/deadletter", b"sentinel")
    assert all(not topic.startswith(f"irve/{OTHER_SITE}/") for topic, _ in seen), seen


def test_collector_reads_its_badges_and_home_assistant_status(connect: Connect) -> None:
    collector, ha = connect(SITE), connect("homeassistant")
    collector.subscribe(f"irve/{SITE}/+/badge")
    collector.subscribe("homeassistant/status")
    ha.publish(f"irve/{SITE}/cp1/badge", b'{"badge": "room-12"}')
    collector.wait_for(f"irve/{SITE}/cp1/badge", b'{"badge": "room-12"}')
    ha.publish("homeassistant/status", b"online")
    collector.wait_for("homeassistant/status", b"online")


def test_building_user_reads_but_cannot_publish(connect: Connect) -> None:
    building, collector, observer = connect("building"), connect(SITE), connect("observer")
    building.subscribe("irve/#")
    observer.subscribe("#")
    collector.publish(f"irve/{SITE}/cp1/state", b"reading")
    building.wait_for(f"irve/{SITE}/cp1/state", b"reading")
    for topic in (
        f"irve/{SITE}/cp1/state",
        f"irve/{SITE}/cp1/badge",
        f"irve/{SITE}/shed",
        "irve/building/cp1/state",  # its own name as a site: the pattern is denied
        "homeassistant/sensor/x/y/config",
        "anything",
    ):
        # The building user has no allowed topic: the sentinel comes from the collector,
        # published after the refused message has been handled (QoS 1 round trip).
        building.publish(topic, b"forbidden?")
        sentinel = f"sentinel-{next(_ids)}".encode()
        collector.publish(f"irve/{SITE}/status", sentinel)
        seen = observer.wait_for(f"irve/{SITE}/status", sentinel)
        assert (topic, b"forbidden?") not in seen, topic


def test_healthcheck_user_reads_the_sites_status_only(connect: Connect) -> None:
    health, collector, observer = connect("healthcheck"), connect(SITE), connect("observer")
    health.subscribe("irve/#")  # accepted; the ACL filters each delivery
    observer.subscribe("#")
    collector.publish(f"irve/{SITE}/cp1/state", b"reading")
    collector.publish(f"irve/{SITE}/status", b"online")
    seen = health.wait_for(f"irve/{SITE}/status", b"online")
    assert seen == [(f"irve/{SITE}/status", b"online")]
    for topic in (
        f"irve/{SITE}/status",
        f"irve/{SITE}/cp1/badge",
        "irve/healthcheck/status",
        "homeassistant/sensor/healthcheck/x/config",
    ):
        health.publish(topic, b"forbidden?")
        sentinel = f"sentinel-{next(_ids)}".encode()
        collector.publish(f"irve/{SITE}/alert", sentinel)
        assert (topic, b"forbidden?") not in observer.wait_for(f"irve/{SITE}/alert", sentinel)


def test_ingestor_reads_by_shared_subscription_and_writes_only_dead_letters(
    connect: Connect,
) -> None:
    ingestor, collector, observer = connect("ingestor"), connect(SITE), connect("observer")
    ingestor.subscribe("$share/irve/irve/#")
    observer.subscribe("#")
    collector.publish(f"irve/{SITE}/cp1/energy", b"interval")
    ingestor.wait_for(f"irve/{SITE}/cp1/energy", b"interval")
    dead = f"irve/{SITE}/deadletter"
    for topic in (
        f"irve/{SITE}/cp1/state",
        f"irve/{SITE}/alert",
        "irve/ingestor/cp1/state",
        "homeassistant/sensor/x/y/config",
    ):
        assert refused(ingestor, observer, topic, dead), topic


def test_desk_writes_only_the_badge_list_and_its_status(connect: Connect) -> None:
    desk, collector, observer = connect("desk"), connect(SITE), connect("observer")
    desk.subscribe(f"irve/{SITE}/#")
    observer.subscribe("#")
    collector.publish(f"irve/{SITE}/cp1/state", b"reading")
    desk.wait_for(f"irve/{SITE}/cp1/state", b"reading")
    badges = f"irve/{SITE}/badges"
    desk.publish(badges, b'{"badges": []}')
    observer.wait_for(badges, b'{"badges": []}')
    desk.publish(f"irve/{SITE}/desk/status", b"online")
    observer.wait_for(f"irve/{SITE}/desk/status", b"online")
    for topic in (
        f"irve/{SITE}/cp1/state",
        f"irve/{SITE}/cp1/badge",
        f"irve/{SITE}/shed",
        f"irve/{SITE}/status",
        "irve/desk/cp1/state",  # its own name as a site: the pattern is denied
        "homeassistant/sensor/x/y/config",
    ):
        assert refused(desk, observer, topic, badges), topic


# --- queues: an ingestor or database outage of one hour at a 50-socket site ------------------

SOCKETS = 50
POLL_S = 1.0  # poll_interval_s of the example sites
WINDOW_S = 60  # energy.window_s default
OUTAGE_S = 3600


def broker_settings() -> dict[str, str]:
    conf = (local_broker.MOSQUITTO_DIR / "mosquitto.conf").read_text()
    pairs = (line.split(None, 1) for line in conf.splitlines() if line and line[0] != "#")
    return {key: value.strip() for key, value in pairs}


def worst_payloads() -> tuple[int, int]:
    """Largest state and energy payloads the collector sends: every optional key set, every
    number with 17 significant digits (what float noise can produce), a 3-phase main meter."""
    noisy = 1 / 3
    ts = datetime(2026, 11, 23, 10, 15, 2, 123000, tzinfo=UTC)
    main = StateMessage(
        ts=ts,
        power_w=12345.0 + noisy,
        current_a=31.0 + noisy,
        voltage_v=230.0 + noisy,
        energy_wh=12345678.0 + noisy,
        currents_a=[31.0 + noisy] * 3,
        voltages_v=[230.0 + noisy] * 3,
        power_factor=noisy,
        frequency_hz=50.0 + noisy,
        export_energy_wh=1234567.0 + noisy,
        charging=True,
        role="main",
    )
    energy = EnergyMessage(
        ts=ts,
        start=ts,
        end=ts,
        energy_wh=123.0 + noisy,
        period="HP",
        price_eur_kwh=0.2 + noisy / 100,
        cost_eur=0.02 + noisy / 100,
        index_start_wh=12345678.0 + noisy,
        index_end_wh=12345801.0 + noisy,
        estimated=True,
    )
    return len(main.to_json()), len(energy.to_json())


def test_queue_limits_hold_one_hour_of_a_50_socket_site() -> None:
    """The arithmetic of mosquitto.conf, with payload sizes measured from the collector's
    own message classes rather than assumed."""
    meters = SOCKETS + 1  # and the main meter
    states = meters * OUTAGE_S / POLL_S  # 183 600
    # A window that crosses an HP/HC boundary is split in two: at most twice a day.
    energy = meters * OUTAGE_S / WINDOW_S * 2  # 6 120, counted doubled for safety
    # Sessions, alerts, availability, shed, events: a few an hour per point; 10 is generous.
    other = meters * 10
    messages = states + energy + other
    state_bytes, energy_bytes = worst_payloads()
    payload = states * state_bytes + (energy + other) * max(state_bytes, energy_bytes)
    settings = broker_settings()
    assert settings["persistence"] == "true"
    assert int(settings["max_queued_messages"]) >= messages, (messages, state_bytes)
    queued_bytes = int(settings["max_queued_bytes"])
    assert queued_bytes == 0 or queued_bytes >= payload, (payload, state_bytes, energy_bytes)
    assert settings["queue_qos0_messages"] == "false"  # everything we send is QoS 1


def test_a_stopped_ingestor_gets_everything_queued_meanwhile(connect: Connect) -> None:
    """The limits of mosquitto.conf are the ones in force: 2 500 messages queued for an absent
    persistent session (2.5 times mosquitto's default max_queued_messages) all arrive."""
    port = connect("observer").port
    count = 2500

    def ingestor_session(received: queue.Queue[bytes]) -> tuple[mqtt.Client, threading.Event]:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="ingestor", protocol=mqtt.MQTTv5
        )
        client.username_pw_set("ingestor", USERS["ingestor"])
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.on_message = lambda c, u, msg: received.put(bytes(msg.payload))
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()
        return client, subscribed

    client, subscribed = ingestor_session(queue.Queue())
    servers.wait_until(client.is_connected, TIMEOUT, "ingestor connected")
    client.subscribe(f"irve/{SITE}/+/state", qos=1)
    assert subscribed.wait(TIMEOUT), "no SUBACK"
    client.disconnect()
    client.loop_stop()

    collector = Probe(port, SITE, USERS[SITE])
    collector.client.max_inflight_messages_set(1000)  # paho's default 20 makes this slow
    assert collector.connect() == 0
    try:
        infos = [
            collector.client.publish(f"irve/{SITE}/cp1/state", str(i).encode(), qos=1)
            for i in range(count)
        ]
        for info in infos:
            info.wait_for_publish(TIMEOUT)
    finally:
        collector.close()

    again: queue.Queue[bytes] = queue.Queue()
    client, _ = ingestor_session(again)
    try:
        servers.wait_until(lambda: again.qsize() >= count, 20, f"{count} queued messages")
        time.sleep(0.2)
        assert again.qsize() == count
    finally:
        client.disconnect()
        client.loop_stop()


# --- client ids: bound to usernames (use_username_as_clientid) -------------------------------

# Every service's client id, as the product sets it by default now (its username) and as it
# did before (so an attacker tries both); the healthcheck and the demo viewer included.
SERVICE_CLIENT_IDS = {
    SITE: (SITE, f"irve-collect-{SITE}", f"irve-recompute-{SITE}"),
    OTHER_SITE: (OTHER_SITE, f"irve-collect-{OTHER_SITE}"),
    "ingestor": ("ingestor", "irve-ingest", "irve-demo-ingest"),
    "building": ("building", "irve-demo-viewer"),
    "homeassistant": ("homeassistant",),
    "healthcheck": ("healthcheck", ""),
}


class Session:
    """A persistent MQTT 5 session (clean start off, one hour expiry) that records messages
    and whether the broker disconnected it."""

    def __init__(self, port: int, username: str, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(username, USERS[username])
        self.received: queue.Queue[bytes] = queue.Queue()
        self.dropped = threading.Event()
        self.connected = threading.Event()
        self.client.on_connect = lambda *args: self.connected.set()
        self.client.on_disconnect = lambda *args: self.dropped.set()
        self.client.on_message = lambda c, u, msg: self.received.put(bytes(msg.payload))
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.connected.wait(TIMEOUT), f"{username} as {client_id!r}: no CONNACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def attack(port: int, attacker: str, victims: dict[str, Session]) -> None:
    """`attacker` connects with every client id of every other service; the services in
    `victims` must stay connected and the attacker must receive nothing queued."""
    for victim, client_ids in SERVICE_CLIENT_IDS.items():
        for client_id in client_ids if victim != attacker else ():
            intruder = Session(port, attacker, client_id)
            time.sleep(0.05)
            intruder.close()
            assert intruder.received.empty(), (attacker, client_id)
            for user, session in victims.items():
                assert not session.dropped.is_set(), (user, attacker, client_id)


def test_no_user_takes_over_or_disconnects_another_service_by_its_client_id(
    stack_broker: servers.Server,
) -> None:
    """The ingestor's session holds 50 queued messages; every other service is connected.
    Each user then connects, clean start off, with every client id of every other service:
    no service is disconnected, no attacker receives a queued message, and the ingestor gets
    all 50 when it comes back (then attacks the others itself)."""
    port, count = stack_broker.port, 50
    subscribed = threading.Event()
    ingestor = Session(port, "ingestor", "irve-ingest")
    ingestor.client.on_subscribe = lambda *args: subscribed.set()
    ingestor.client.subscribe(f"irve/{SITE}/+/state", qos=1)
    assert subscribed.wait(TIMEOUT), "no SUBACK"
    ingestor.close()
    collector = Probe(port, SITE, USERS[SITE])
    assert collector.connect() == 0
    for i in range(count):
        collector.publish(f"irve/{SITE}/cp1/state", str(i).encode())
    collector.close()

    others = [user for user in SERVICE_CLIENT_IDS if user != "ingestor"]
    victims = {user: Session(port, user, user) for user in others}
    try:
        for attacker in others:
            # Its own connection is replaced by its attempts (same username, so the same
            # client id): that is the rule, not a takeover. It is back once done.
            victims.pop(attacker).close()
            attack(port, attacker, victims)
            victims[attacker] = Session(port, attacker, attacker)

        again = Session(port, "ingestor", "ingestor")
        servers.wait_until(lambda: again.received.qsize() >= count, TIMEOUT, "queued messages")
        assert sorted(int(again.received.get()) for _ in range(count)) == list(range(count))
        again.close()
        attack(port, "ingestor", victims)
    finally:
        for session in victims.values():
            session.close()


def test_the_collector_healthcheck_has_its_own_user_and_leaves_the_collector_connected(
    stack_broker: servers.Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the stack runs it: the healthcheck reads the collector's retained status with the
    collector's site file and environment, as the `healthcheck` user; the collector stays
    connected. With the collector's own user it would take the collector's client id."""
    site_file = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        site={"id": SITE, "name": "Test", "subscribed_power_kva": 36},
        mqtt={"host": "127.0.0.1", "port": stack_broker.port, "username": SITE},
    )
    monkeypatch.setenv("IRVE_MQTT__PASSWORD", USERS[SITE])
    monkeypatch.setattr(healthcheck, "TIMEOUT_S", 2.0)
    collector = Session(stack_broker.port, SITE, f"irve-collect-{SITE}")
    try:
        collector.client.publish(f"irve/{SITE}/status", b"online", qos=1, retain=True)
        monkeypatch.setenv("HEALTHCHECK_MQTT_USERNAME", "healthcheck")
        monkeypatch.setenv("HEALTHCHECK_MQTT_PASSWORD", USERS["healthcheck"])
        for _ in range(3):
            assert healthcheck.retained_status_online(str(site_file))
        assert not collector.dropped.is_set()

        monkeypatch.delenv("HEALTHCHECK_MQTT_USERNAME")
        assert healthcheck.retained_status_online(str(site_file))
        assert collector.dropped.wait(TIMEOUT), "the collector's own user replaces it"
    finally:
        collector.close()


def test_default_client_ids_follow_the_username() -> None:
    assert default_client_id(None, "ingestor", "irve-ingest") == "ingestor"
    assert default_client_id(None, None, "irve-ingest") == "irve-ingest"
    assert default_client_id("ingest-a", "ingestor", "irve-ingest") == "ingest-a"
