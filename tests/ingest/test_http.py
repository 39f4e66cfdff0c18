"""The ingestor's `/healthz` and `/metrics` server, exposed to idle and slow clients: loopback
by default, connections bounded (503 beyond), idle ones closed after the timeout, no thread
per connection, and ingestion unaffected throughout. Against a real `irve ingest` process,
mosquitto and influxd."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from collector.config import IngestSettings
from collector.ingest.http import MAX_CONNECTIONS, TIMEOUT_S, StatusServer
from tests.support import servers
from tests.support.influx_db import count, create_database
from tests.support.ingest_helpers import SITE, config, publisher, spawn, state, subprocess_env
from tests.support.paths import REPO

pytestmark = [pytest.mark.broker, pytest.mark.influx]


IDLE = 300


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state_code = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state_code == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextmanager
def idle_connections(port: int, n: int) -> Iterator[list[socket.socket]]:
    """`n` connections that never send a byte (closed by us only at the end)."""
    opened = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.2)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return False  # still open
    except ConnectionResetError:
        return True
    # A refused one got its 503 and then the end of the stream.
    return data == b"" or (data.startswith(b"HTTP/1.1 503") and closed_by_server(sock))


@pytest.mark.timing
def test_idle_connections_bounded_and_closed_ingestion_unaffected(
    broker: servers.Server, influx: servers.Server, tmp_path: Path
) -> None:
    create_database(influx)
    env = subprocess_env(config(broker, influx, "1", flush_interval_s=0.1))
    del env["IRVE_INGEST__HTTP_HOST"]  # the default bind
    port = int(env["IRVE_INGEST__HTTP_PORT"])
    status = f"http://127.0.0.1:{port}"
    log = tmp_path / "ingest.log"
    proc = spawn(env, log)
    try:
        servers.wait_until(lambda: servers.http_ok(f"{status}/healthz"), 15, "healthz 200")
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only
        before = threads_of(proc.pid)
        with idle_connections(port, IDLE) as idle, publisher(broker.port) as pub:
            for i in range(100):
                pub.publish(f"irve/{SITE}/cp1/state", state(i))
            # No thread per connection: 300 idle ones add none (the old server: one each).
            assert threads_of(proc.pid) <= before + 2
            # Beyond the cap the answer is an immediate 503, not a hang.
            began = time.monotonic()
            code, body = get(f"{status}/healthz")
            assert (code, body) == (503, "too many connections\n")
            assert time.monotonic() - began < 3
            for i in range(100, 200):
                pub.publish(f"irve/{SITE}/cp1/state", state(i))
            servers.wait_until(lambda: count(influx) == 200, 15, "every reading written")
            # The idle ones are closed by the server after the timeout; ours are still open.
            time.sleep(TIMEOUT_S + 0.5)
            assert all(closed_by_server(sock) for sock in idle)
            code, body = get(f"{status}/healthz")
            assert code == 200 and json.loads(body)["database"] is True
            assert threads_of(proc.pid) <= before + 2
        assert "too many connections" not in log.read_text()  # no line per refusal
        assert log.read_text().count("answering 503") == 1
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    assert "Traceback" not in log.read_text()


@contextmanager
def status_server(**limits: float) -> Iterator[StatusServer]:
    server = StatusServer(
        "127.0.0.1",
        0,
        lambda: (True, {"status": "ok"}),
        lambda: "irve_x 1\n",
        **limits,  # type: ignore[arg-type]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.timing
def test_slow_request_is_cut_at_the_timeout() -> None:
    """A client trickling its request (slowloris) is closed `timeout_s` after connecting,
    however often it sends a byte."""
    with status_server(timeout_s=1.0) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        began = time.monotonic()
        with sock:
            try:
                for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n":
                    sock.send(bytes([byte]))
                    time.sleep(0.1)
                raise AssertionError("the server kept a trickling client")
            except (BrokenPipeError, ConnectionResetError):
                pass
        assert 0.9 < time.monotonic() - began < 3
        assert server.connections == 0


def test_answers_within_the_cap_and_503_beyond_it() -> None:
    with status_server(max_connections=2) as server:
        port = server.port
        reply = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b'{"status": "ok"}')
        assert exchange(port, b"HEAD /metrics HTTP/1.0\r\n\r\n").endswith(b"\r\n\r\n")
        assert exchange(port, b"GET /x HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
        assert exchange(port, b"POST /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert exchange(port, b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400")
        with idle_connections(port, 2):
            servers.wait_until(lambda: server.connections == 2, 5, "two held")
            for _ in range(5):
                reply = exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n")
                assert reply.startswith(b"HTTP/1.1 503") and reply.endswith(b"connections\n")
        servers.wait_until(lambda: server.connections == 0, 5, "released")
        assert exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_loopback_by_default_every_interface_in_the_stack() -> None:
    assert IngestSettings().http_host == "127.0.0.1"
    assert MAX_CONNECTIONS < IDLE
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    env = compose["services"]["ingestor"]["environment"]
    # The container's healthcheck asks 127.0.0.1:<port> inside the container, /metrics is
    # scraped from the stack's network: every interface there, on the port it checks.
    assert env["IRVE_INGEST__HTTP_HOST"] == "0.0.0.0"
    assert compose["services"]["ingestor"]["expose"] == [env["IRVE_INGEST__HTTP_PORT"]]
