"""Real servers for the tests, started as local processes on free ports in temporary folders.

Nothing here is mocked: mosquitto, influxd (InfluxDB 1.x, InfluxQL and /write) and
victoria-metrics (accepts /api/v2/write line protocol) are the Debian packages' binaries.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    """A process we can stop and start again on the same port and data folder."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    ready: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 20.0) -> None:
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self._alive_and_ready(), timeout, f"{self.name} on {self.port}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}") from None

    def _alive_and_ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        return self.ready()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        path = self.workdir / f"{self.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def require(binary: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
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
    return Server(
        "mosquitto", [require("mosquitto"), "-c", str(conf)], port, workdir, lambda: port_open(port)
    )


def influxd(workdir: Path) -> Server:
    """InfluxDB 1.x (Debian's 1.6.7): the backup service gets its own free port."""
    port, rpc = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "influxdb.conf"
    conf.write_text(
        f'bind-address = "127.0.0.1:{rpc}"\n'
        "reporting-disabled = true\n"
        f'[meta]\n  dir = "{workdir}/meta"\n'
        f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n'
        "  query-log-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        "[continuous_queries]\n  enabled = false\n"
    )
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
