"""The test servers themselves start, answer, and restart on the same port."""

from __future__ import annotations

import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import servers

pytestmark = [pytest.mark.broker, pytest.mark.influx]


def test_mosquitto_accepts_clients_and_restarts(broker: servers.Server) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.disconnect()
    broker.restart()
    assert servers.port_open(broker.port)


def test_influxd_and_victoria_metrics_answer(
    influx: servers.Server, victoria: servers.Server
) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{influx.port}/ping") as response:
        assert response.status == 204
    assert servers.http_ok(f"http://127.0.0.1:{victoria.port}/health")
