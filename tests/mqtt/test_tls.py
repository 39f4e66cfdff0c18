"""The collector over TLS with its site credentials, against the stack's own mosquitto
configuration (password file, ACL) with its TLS listener example switched on, certificates
made with openssl as an installer would with a private CA (tests/support/tls.py; the
`tls_broker` fixture is in tests/mqtt/conftest.py)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.collect import Stages
from collector.site import load_site
from tests.support import servers
from tests.support.app import make_app, with_app
from tests.support.collect_helpers import SITE, Quiet, until
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site
from tests.support.tls import USERS

pytestmark = [pytest.mark.broker]


def ingestor_view(port: int) -> queue.Queue[tuple[str, bytes]]:
    """What the read-only ingestor user sees of this site's status topic."""
    seen: queue.Queue[tuple[str, bytes]] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("ingestor", USERS["ingestor"])
    client.on_connect = lambda c, *_: c.subscribe(f"irve/{SITE}/status", qos=1)
    client.on_message = lambda _c, _u, m: seen.put((m.topic, bytes(m.payload)))
    client.connect("127.0.0.1", port)
    client.loop_start()
    return seen


def run_collector(tmp_path: Path, tls_port: int, password: str, timeout: float) -> None:
    """`irve collect` for a site whose broker is the TLS listener; waits for `online`."""
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        mqtt={
            "host": "localhost",  # the name in the server certificate
            "port": tls_port,
            "username": SITE,
            "password": password,
            "tls": True,
            "ca_file": str(tmp_path / "certs" / "ca.crt"),
            "discovery": False,
        },
        state_dir=str(tmp_path / "state"),
    )
    site, profiles = load_site(str(path))
    app = make_app(site, profiles, Stages())

    async def body() -> None:
        await until(lambda: app.link.connected, "connected over TLS", timeout)

    asyncio.run(with_app(app, Quiet(), body))


def test_collector_publishes_over_tls_with_its_site_credentials(
    tmp_path: Path, tls_broker: tuple[int, int]
) -> None:
    port, tls_port = tls_broker
    seen = ingestor_view(port)
    run_collector(tmp_path, tls_port, USERS[SITE], timeout=10)
    statuses = [seen.get(timeout=5)[1] for _ in range(2)]
    assert statuses == [b"online", b"offline"]


def test_wrong_password_is_refused_and_reported(
    tmp_path: Path, tls_broker: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    port, tls_port = tls_broker
    seen = ingestor_view(port)
    with pytest.raises(TimeoutError):
        run_collector(tmp_path, tls_port, "wrong", timeout=3)
    assert seen.empty()
    assert "not authori" in caplog.text.lower() or "bad user name" in caplog.text.lower()


def test_the_tls_listener_binds_client_ids_to_usernames_too(
    tmp_path: Path, tls_broker: tuple[int, int]
) -> None:
    """use_username_as_clientid is a listener option: the TLS listener of the example sets it
    as well, so the collector's credentials over TLS with the ingestor's client id do not
    disconnect the ingestor connected on the plain port."""
    port, tls_port = tls_broker
    dropped = threading.Event()
    ingestor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingestor", protocol=mqtt.MQTTv5)
    ingestor.username_pw_set("ingestor", USERS["ingestor"])
    ingestor.on_disconnect = lambda *args: dropped.set()
    ingestor.connect("127.0.0.1", port)
    ingestor.loop_start()
    servers.wait_until(ingestor.is_connected, 5, "ingestor connected")
    try:
        for client_id in ("ingestor", "irve-ingest"):
            intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
            intruder.username_pw_set(SITE, USERS[SITE])
            intruder.tls_set(ca_certs=str(tmp_path / "certs" / "ca.crt"))
            intruder.connect("localhost", tls_port)
            intruder.loop_start()
            servers.wait_until(intruder.is_connected, 5, "intruder connected over TLS")
            time.sleep(0.2)
            intruder.disconnect()
            intruder.loop_stop()
            assert not dropped.is_set(), client_id
    finally:
        ingestor.disconnect()
        ingestor.loop_stop()
