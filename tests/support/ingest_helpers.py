"""`irve ingest` under test: its settings, the ingestor in a thread or as a process, a QoS 1
publisher, and numbered readings of site SITE (a distinct timestamp each, so counts are exact)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import IngestorConfig
from collector.ingest.service import Ingestor
from tests.support import servers
from tests.support.paths import REPO

SITE = "hotel-e2e"
BASE_MS = 1_795_428_902_123  # 2026-11-23T10:15:02.123Z


def iso(millis: int) -> str:
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def state(i: int, **extra: Any) -> bytes:
    """The i-th reading of a stream: a distinct timestamp per message, so counts are exact."""
    body = {
        "ts": iso(BASE_MS + i),
        "power_w": float(i),
        "current_a": 1.5,
        "voltage_v": 230,
        "energy_wh": 1000 + i,
    }
    body.update(extra)
    return json.dumps(body).encode()


def config(
    broker: servers.Server,
    db: servers.Server,
    api: str,
    *,
    client_id: str = "ingest-test",
    **ingest: Any,
) -> IngestorConfig:
    influx: dict[str, Any] = {"url": f"http://127.0.0.1:{db.port}", "api_version": api}
    if api == "2":
        influx["token"] = "unused-by-victoria"
    settings = {"client_id": client_id, "http_host": "127.0.0.1", "http_port": 0, **ingest}
    return IngestorConfig(
        mqtt={"host": "127.0.0.1", "port": broker.port},
        influx=influx,
        ingest=settings,
    )


@contextmanager
def running(cfg: IngestorConfig) -> Iterator[Ingestor]:
    ingestor = Ingestor(cfg)
    ingestor.start()
    try:
        servers.wait_until(lambda: ingestor.metrics.broker_connected, 10, "ingestor connected")
        time.sleep(0.2)  # let the SUBACK in before anything is published
        yield ingestor
    finally:
        ingestor.stop()


def subprocess_env(cfg: IngestorConfig) -> dict[str, str]:
    """The same settings as environment variables, the way a container gets them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    env.update(
        {
            "IRVE_MQTT__HOST": cfg.mqtt.host,
            "IRVE_MQTT__PORT": str(cfg.mqtt.port),
            "IRVE_INFLUX__URL": cfg.influx.url,
            "IRVE_INFLUX__API_VERSION": cfg.influx.api_version,
            "IRVE_INGEST__CLIENT_ID": cfg.ingest.client_id or "irve-ingest",
            "IRVE_INGEST__HTTP_HOST": "127.0.0.1",
            "IRVE_INGEST__HTTP_PORT": str(servers.free_port()),
            "IRVE_INGEST__FLUSH_INTERVAL_S": str(cfg.ingest.flush_interval_s),
            "PYTHONPATH": str(REPO),
        }
    )
    return env


def wait_connected(log: Path, runs: int = 1, timeout: float = 30) -> None:
    """Until the `runs`-th ingestor process writing `log` has connected to the broker. It
    subscribes in the same callback: the pause after lets its SUBACK in, as in `running`.
    (A fixed wait from the spawn instead fails when the start-up is slow on a loaded machine:
    what is published before the subscription is never delivered.)"""
    servers.wait_until(
        lambda: log.read_text(errors="replace").count("connected to ") >= runs,
        timeout,
        "the ingestor connected to the broker",
    )
    time.sleep(0.2)


def spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "collector", "ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )


class Publisher:
    """A QoS 1 publisher with a persistent session, so it rides out a broker restart."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(200)
        # PUBACKs by packet id: `MQTTMessageInfo.is_published` raises for a message published
        # while disconnected, which paho still holds and sends after reconnecting.
        self.sent: set[int] = set()
        self.acked: set[int] = set()
        self.client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.add(mid)
        self.client.connect("127.0.0.1", port, clean_start=False)
        self.client.loop_start()
        servers.wait_until(self.client.is_connected, 10, "publisher connected")

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.sent.add(info.mid)

    def wait(self, timeout: float = 30) -> None:
        servers.wait_until(lambda: self.acked >= self.sent, timeout, "all PUBACKs")

    def close(self) -> None:
        self.wait()
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def publisher(port: int, client_id: str = "test-publisher") -> Iterator[Publisher]:
    pub = Publisher(port, client_id)
    try:
        yield pub
    finally:
        pub.close()


def stream(pub: Publisher, n: int, rate: float, start: int = 0, point: str = "cp1") -> None:
    """Publish readings start..start+n-1 at about `rate` per second."""
    began = time.monotonic()
    for i in range(start, start + n):
        pub.publish(f"irve/{SITE}/{point}/state", state(i))
        ahead = (i - start + 1) / rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)


def in_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
