"""The collector when it cannot reach its broker: each failed attempt is logged at WARNING
with its reason (refused, name resolution, TLS, authentication), identical failures are
summarised instead of repeated, and the line when it connects again says what was sent.
Real peers: a closed port, an unresolvable `.invalid` name, the stack's mosquitto with its
password file and a TLS listener on certificates made with openssl."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from collector.collect import Collector, Stages
from collector.mqtt import client as mqtt_client
from collector.mqtt.client import MqttLink
from collector.site import load_site
from collector.wire.kinds import Envelope
from tests.support import servers
from tests.support.app import make_app, with_app
from tests.support.collect_helpers import SITE, Quiet, until
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site
from tests.support.tls import USERS

pytestmark = [pytest.mark.broker]


LOGGER = "collector.mqtt.client"


def collector(tmp_path: Path, **mqtt: Any) -> Collector[MqttLink]:
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[socket_meter("cp1", "board", 1)],
        mqtt={"discovery": False, **mqtt},
        state_dir=str(tmp_path / "state"),
    )
    site, profiles = load_site(str(path))
    return make_app(site, profiles, Stages())


def failures_for(seconds: float, app: Collector[MqttLink]) -> None:
    async def body() -> None:
        await asyncio.sleep(seconds)

    asyncio.run(with_app(app, Quiet(), body))


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == 30]


def attempts(caplog: pytest.LogCaptureFixture) -> int:
    """Failed attempts: each is logged, at DEBUG when it repeats the last warning."""
    return sum(
        1 for r in caplog.records if r.name == LOGGER and "cannot connect to" in r.getMessage()
    )


def test_refused_is_logged_once_summarised_and_the_reconnection_says_what_was_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens on the port: one warning naming it, repeats summarised with their
    count; then a broker appears there, and the messages queued meanwhile are delivered."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    # Attempts every second and summaries every 2.5 s instead of 1 to 30 s and 5 min.
    monkeypatch.setattr(mqtt_client, "RECONNECT_MAX_S", 1)
    monkeypatch.setattr(mqtt_client, "FAILURE_SUMMARY_S", 2.5)
    port = servers.free_port()
    app = collector(tmp_path, host="127.0.0.1", port=port)
    broker = servers.mosquitto(tmp_path / "broker", port=port)

    async def body() -> None:
        for n in range(5):
            app.link.send(Envelope(f"irve/{SITE}/cp1/event", b"queued %d" % n, False, "event"))
        await until(lambda: attempts(caplog) >= 5, "five failed attempts", timeout=15)
        assert not app.link.connected
        await asyncio.to_thread(broker.start)
        await until(lambda: app.link.idle, "the queued messages delivered", timeout=30)

    try:
        asyncio.run(with_app(app, Quiet(), body))
    finally:
        broker.stop()
    said = warnings(caplog)
    refused = f"MQTT: cannot connect to 127.0.0.1:{port}: connection refused by 127.0.0.1:{port}"
    assert said[0].startswith(refused), said
    assert "retrying with backoff (1 to 1 s)" in said[0]
    assert len(said) < attempts(caplog)  # not one warning per attempt
    assert any(s.startswith(f"MQTT: still cannot connect to 127.0.0.1:{port}") for s in said)
    assert "failed attempts in" in said[-1] and "5 message(s) waiting" in said[-1]
    text = caplog.text
    assert f"MQTT: connected to 127.0.0.1:{port} after" in text
    assert "5 message(s) waiting to be sent" in text
    assert "MQTT: the 5 message(s) queued while away are sent" in text


def test_unresolvable_host_names_the_host(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = collector(tmp_path, host="broker.invalid", port=1883)
    failures_for(1.5, app)
    said = warnings(caplog)
    assert said and said[0].startswith(
        "MQTT: cannot connect to broker.invalid:1883: cannot resolve host 'broker.invalid'"
    ), said


def test_wrong_password_says_the_broker_refused_the_credentials(
    tmp_path: Path,
    tls_broker: tuple[int, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, _ = tls_broker
    app = collector(tmp_path, host="127.0.0.1", port=port, username=SITE, password="wrong")
    failures_for(3.5, app)
    said = warnings(caplog)
    assert said, caplog.text
    assert said[0].startswith(f"MQTT: cannot connect to 127.0.0.1:{port}: the broker refused")
    assert "check mqtt.username and its password" in said[0]
    assert "wrong" not in caplog.text  # never the password
    assert len(said) == 1


def test_untrusted_certificate_and_plain_port_are_tls_failures(
    tmp_path: Path,
    tls_broker: tuple[int, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The TLS listener with the system's CAs (the test CA is not among them), then TLS
    spoken to the plain listener."""
    port, tls_port = tls_broker
    credentials = {"username": SITE, "password": USERS[SITE], "tls": True}
    failures_for(1.5, collector(tmp_path, host="localhost", port=tls_port, **credentials))
    untrusted = warnings(caplog)
    assert untrusted and untrusted[0].startswith(
        f"MQTT: cannot connect to localhost:{tls_port}: TLS: the broker's certificate is not "
        "trusted: self-signed certificate in certificate chain (mqtt.ca_file)"
    ), untrusted
    caplog.clear()
    ca = str(tmp_path / "certs" / "ca.crt")
    failures_for(1.5, collector(tmp_path, host="localhost", port=port, ca_file=ca, **credentials))
    plain = warnings(caplog)
    assert plain and plain[0].startswith(
        f"MQTT: cannot connect to localhost:{port}: TLS handshake failed"
    ), plain
