"""A site broker bridged to a central broker: two real mosquitto processes.

Both run the repository's mosquitto.conf and acl (scripts/local_broker.py); the site broker
gets `mosquitto/bridge-example.conf` in its conf.d with the placeholders filled for
127.0.0.1 and without TLS (the only lines changed). The central broker knows each site by
its site id, as in a real multi-site deployment.
"""

from __future__ import annotations

import queue
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scripts import local_broker
from tests.support import servers
from tests.support.mqtt_probe import Probe

pytestmark = [pytest.mark.broker]


SITE, OTHER_SITE = "hotel-vda", "gite-des-tilleuls"
CENTRAL_USERS = {SITE: "central-pw-1", OTHER_SITE: "central-pw-2", "ingestor": "central-ing"}
SITE_USERS = {SITE: "local-pw-1", OTHER_SITE: "local-pw-2"}
EXAMPLE = local_broker.MOSQUITTO_DIR / "bridge-example.conf"


def bridge_conf(central_port: int, password: str, forward: str | None = None) -> str:
    """The example with the placeholders filled, TLS lines dropped, and `forward` (a topic
    pattern) replacing the site's prefix to model a misconfigured bridge."""
    text = EXAMPLE.read_text()
    text = re.sub(r"^address .*$", f"address 127.0.0.1:{central_port}", text, flags=re.M)
    text = re.sub(r"^remote_password .*$", f"remote_password {password}", text, flags=re.M)
    text = re.sub(r"^bridge_(cafile|tls_version) .*$\n", "", text, flags=re.M)
    text = text.replace("restart_timeout 5 60", "restart_timeout 1 1")
    if forward is not None:
        text = re.sub(r"^topic irve/hotel-vda/# out 1$", f"topic {forward} out 1", text, flags=re.M)
    return text


def broker(workdir: Path, users: dict[str, str], bridge: str | None = None) -> servers.Server:
    port = servers.free_port()
    conf = local_broker.prepare(workdir, port, users)
    if bridge is not None:
        (conf.parent / "conf.d" / "bridge.conf").write_text(bridge)
    return servers.mosquitto_on(conf, port, workdir)


Pair = Callable[[str | None], tuple[servers.Server, servers.Server]]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    started: list[servers.Server] = []

    def make(forward: str | None) -> tuple[servers.Server, servers.Server]:
        central = broker(tmp_path / "central", CENTRAL_USERS)
        central.start()
        started.append(central)
        site = broker(
            tmp_path / "site", SITE_USERS, bridge_conf(central.port, CENTRAL_USERS[SITE], forward)
        )
        site.start()
        started.append(site)
        return central, site

    yield make
    for server in reversed(started):
        server.stop()


def connected(port: int, user: str, users: dict[str, str]) -> Probe:
    probe = Probe(port, user, users[user])
    assert probe.connect() == 0, f"{user} refused on {port}"
    return probe


def wait_for_bridge(publisher: Probe, reader: Probe, topic: str) -> None:
    """Publish until one arrives: the bridge connects asynchronously after the site starts."""
    for attempt in range(40):
        payload = f"hello-{attempt}".encode()
        publisher.publish(topic, payload)
        try:
            while reader.messages.get(timeout=0.25) != (topic, payload):
                pass
            return
        except queue.Empty:
            continue
    raise AssertionError("the bridge never forwarded a message to the central broker")


def test_site_data_reaches_the_central_broker(pair: Pair) -> None:
    central, site = pair(None)
    ingestor = connected(central.port, "ingestor", CENTRAL_USERS)
    collector = connected(site.port, SITE, SITE_USERS)
    try:
        ingestor.subscribe("$share/irve/irve/#")
        wait_for_bridge(collector, ingestor, f"irve/{SITE}/status")
        for i in range(20):
            collector.publish(f"irve/{SITE}/cp1/state", f'{{"power_w": {i}}}'.encode())
        seen = ingestor.wait_for(f"irve/{SITE}/cp1/state", b'{"power_w": 19}')
        states = [p for t, p in seen if t == f"irve/{SITE}/cp1/state"]
        assert states == [f'{{"power_w": {i}}}'.encode() for i in range(20)]
    finally:
        ingestor.close()
        collector.close()


def test_site_credentials_cannot_write_another_sites_prefix(pair: Pair) -> None:
    # A bridge that forwards every site's topics, with hotel-vda's central credentials.
    central, site = pair("irve/#")
    ingestor = connected(central.port, "ingestor", CENTRAL_USERS)
    local_own = connected(site.port, SITE, SITE_USERS)
    local_other = connected(site.port, OTHER_SITE, SITE_USERS)
    # The other site's own credentials: hotel-vda's are the bridge's connection, which a
    # second connection with them would replace (client id = username on the central broker).
    direct = connected(central.port, OTHER_SITE, CENTRAL_USERS)
    try:
        ingestor.subscribe("irve/#")
        wait_for_bridge(local_own, ingestor, f"irve/{SITE}/status")
        # Through the bridge: the other site's message is refused by the central ACL.
        local_other.publish(f"irve/{OTHER_SITE}/cp1/state", b"forged via bridge")
        local_own.publish(f"irve/{SITE}/cp1/state", b"sentinel-1")
        seen = ingestor.wait_for(f"irve/{SITE}/cp1/state", b"sentinel-1")
        # Straight to the central broker with a site's credentials: refused as well.
        direct.publish(f"irve/{SITE}/cp1/state", b"forged direct")
        direct.publish(f"irve/{OTHER_SITE}/cp1/state", b"sentinel-2")
        seen += ingestor.wait_for(f"irve/{OTHER_SITE}/cp1/state", b"sentinel-2")
        assert (f"irve/{SITE}/cp1/state", b"forged direct") not in seen, seen
        seen.remove((f"irve/{OTHER_SITE}/cp1/state", b"sentinel-2"))
        assert not [m for m in seen if m[0].startswith(f"irve/{OTHER_SITE}/")], seen
    finally:
        for probe in (ingestor, local_own, local_other, direct):
            probe.close()
