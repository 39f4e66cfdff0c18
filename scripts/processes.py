"""Local server processes on free ports: `make demo` (scripts/demo.py) and the tests
(tests/support/servers.py re-exports this module).

A `Server` is a process that can be stopped and started again on the same port and folder,
its output appended to `<workdir>/<name>.log`, with a readiness check.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Debian installs mosquitto in /usr/sbin, which a normal user's PATH often lacks.
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_PR_SET_PDEATHSIG = 1


# A port handed out must stay free until its server binds it, seconds later. bind(0) picks from
# the kernel's ephemeral range, where every outgoing connection takes its local port and the
# other pytest-xdist workers' bind(0) take theirs: either could take it in between. So ports
# come from below that range, each worker (and a process outside xdist) from its own block,
# and a process never hands out a port twice until it went round its block.
_FIRST_PORT = 10000
_BLOCK = 2000


def _ephemeral_low() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768  # Linux's default


@functools.cache
def _candidates() -> Iterator[int]:
    blocks = (_ephemeral_low() - _FIRST_PORT) // _BLOCK
    if blocks < 2:
        return itertools.repeat(0)  # no room below the ephemeral range: the kernel's choice
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")  # gw0, gw1, ...
    index = int(worker) % (blocks - 1) if worker.isdigit() else blocks - 1
    first = _FIRST_PORT + index * _BLOCK
    # Each process starts at a random place in its block: two test runs at once (or a run
    # without xdist beside one with it) would otherwise hand out the same ports in turn.
    start = random.randrange(_BLOCK)
    return itertools.cycle([*range(first + start, first + _BLOCK), *range(first, first + start)])


def free_port() -> int:
    candidates = _candidates()
    for _ in range(_BLOCK):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", next(candidates)))
            except OSError:
                continue  # in use (a server of an earlier run still closing, another program)
            return int(sock.getsockname()[1])
    raise OSError(f"no free TCP port in {_BLOCK} tries")


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


def find_program(name: str, path: str | None = None) -> str | None:
    """`name` on PATH (or `path`), then in the sbin folders; None when it is not installed."""
    search = os.environ.get("PATH", "") if path is None else path
    return shutil.which(name, path=os.pathsep.join([search, *SBIN_DIRS]))


def _detach() -> Callable[[], None]:
    """A preexec function: own process group, and SIGTERM when the parent dies.

    The own group keeps a terminal's Ctrl-C (sent to the whole foreground group) from reaching
    the servers, so the parent can stop them in order (collector before broker, ingestor
    before database). The death signal covers the parent being killed outright (SIGKILL):
    no orphan keeps a port or a folder busy. Linux only; elsewhere just the group.
    """
    parent = os.getpid()
    # Looked up here, not in the child: between fork and exec only async-signal-safe work
    # (no symbol lookup, no import) is safe while other threads (paho's) exist.
    prctl = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None
    sigterm = int(signal.SIGTERM)

    def preexec() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sigterm)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), sigterm)

    return preexec


@dataclass
class Server:
    """A process we can stop and start again on the same port and data folder.

    `env`: the child's environment (default: ours). `detached`: see `_detach`.
    """

    name: str
    argv: list[str]
    port: int
    workdir: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] | None = None
    detached: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 20.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting (start several, then `wait_ready` each)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if self.env is None else dict(self.env),
                preexec_fn=_detach() if self.detached else None,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for the readiness check; on failure stop the process, raise with its log."""
        try:
            wait_until(lambda: self._alive_and_ready(), timeout, f"{self.name} on {self.port}")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}") from None
        except BaseException:
            self.stop()
            raise

    def _alive_and_ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            self.process = None
            raise RuntimeError(f"{self.name} exited ({code}):\n{self.log_tail()}")
        return self.ready()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
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
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
