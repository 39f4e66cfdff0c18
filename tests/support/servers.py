"""Real servers for the tests, started as local processes on free ports in temporary folders.

The generic process code is scripts/processes.py (shared with `make demo`).
Nothing here is mocked: mosquitto, influxd (InfluxDB 1.x, InfluxQL and /write) and
victoria-metrics (accepts /api/v2/write line protocol) are the Debian packages' binaries.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from scripts import local_influxd
from scripts.processes import Server, find_program, free_port, http_ok, port_open, wait_until

__all__ = [
    "Server",
    "free_port",
    "http_ok",
    "influxd",
    "knxd",
    "mosquitto",
    "port_open",
    "require",
    "victoria_metrics",
    "wait_until",
]


def require(binary: str) -> str:
    path = find_program(binary)
    if path is None:
        raise RuntimeError(
            f"{binary} is not installed (see .ci/run for the packages the tests need)"
        )
    return path


def mosquitto(workdir: Path, extra_conf: str = "", port: int | None = None) -> Server:
    """mosquitto with persistence and queues sized for tests that park thousands of messages."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "autosave_interval 1\n"
        "max_inflight_messages 1000\n"
        "max_queued_messages 1000000\n"
        "max_queued_bytes 0\n"
        "log_type error\nlog_type warning\nlog_type notice\n"
        f"{extra_conf}\n"
    )
    return mosquitto_on(conf, port, workdir)


def mosquitto_on(conf: Path, port: int, workdir: Path, *more_ports: int) -> Server:
    """mosquitto with a configuration written elsewhere (the stack's, a bridge's, a bench's);
    ready once every listener answers."""
    return Server(
        "mosquitto",
        [require("mosquitto"), "-c", str(conf)],
        port,
        workdir,
        lambda: all(port_open(p) for p in (port, *more_ports)),
    )


def influxd(workdir: Path, auth: bool = False) -> Server:
    """InfluxDB 1.x (Debian's 1.6.7): the backup service gets its own free port. `auth`: HTTP
    authentication enabled (the first user, an admin, can be created without credentials)."""
    port, rpc = free_port(), free_port()
    conf = local_influxd.prepare(workdir, port, rpc)
    if auth:
        text = conf.read_text(encoding="utf-8")
        conf.write_text(text.replace("[http]\n", "[http]\n  auth-enabled = true\n"), "utf-8")
    return Server(
        "influxd",
        [require("influxd"), "-config", str(conf)],
        port,
        workdir,
        lambda: http_ok(f"http://127.0.0.1:{port}/ping"),
    )


def victoria_metrics(workdir: Path) -> Server:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    return Server(
        "victoria-metrics",
        [
            require("victoria-metrics"),
            f"-storageDataPath={workdir}/data",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-loggerLevel=ERROR",
            "-search.latencyOffset=0s",
        ],
        port,
        workdir,
        lambda: http_ok(f"http://127.0.0.1:{port}/health"),
    )


def knxd(workdir: Path) -> Server:
    """knxd as a KNXnet/IP tunnelling server on loopback with no bus behind it (`dummy:`).

    Its own clients (knxtool) use the Unix socket `<workdir>/knxd.sock`. The KNXnet/IP port is
    a free one, never 3671, and the server is bound to the loopback interface so that no
    telegram reaches a real installation's multicast group.
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "knxd.sock"
    return Server(
        "knxd",
        [
            require("knxd"),
            "--eibaddr=0.0.1",
            "--client-addrs=0.0.2:8",
            "--no-timestamp",
            f"--listen-local={sock}",
            "--Tunnelling",
            "--Interface=lo",
            f"--Server=224.0.23.12:{port}",
            "--layer2=dummy:",
        ],
        port,
        workdir,
        lambda: _unix_socket_answers(sock),
    )


def _unix_socket_answers(path: Path) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client,
    ):
        client.connect(str(path))
        return True
    return False
