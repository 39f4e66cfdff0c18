"""Shared helpers for tests that need meters: site files, the simulator, socat pty pairs.

Usage (see tests/meters/test_poller.py):
    path = write_site(tmp_path, buses=[tcp_bus("board")], meters=[socket_meter("cp1", "board", 1)])
    site, profiles = load_site(str(path))
    async with SimulatedSite(site, profiles, seed=1) as sim: ...
For RTU: `with socat_pair(tmp_path) as (server_end, client_end):` then an rtu bus on client_end
and `SimulatedSite(..., serial={"rs485": server_end})`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import SiteConfig
from collector.meters.profile import Profile
from collector.simulator.server import SimulatedSite
from tests.support.servers import free_port, port_open, wait_until

TARIFF = {"option": "base", "prices": [{"since": "2025-01-01", "base": 0.2}]}


def tcp_bus(bus_id: str, kind: str = "tcp", timeout_s: float = 0.3) -> dict[str, Any]:
    return {
        "id": bus_id,
        "type": kind,
        "host": "127.0.0.1",
        "port": free_port(),
        "timeout_s": timeout_s,
    }


def rtu_bus(
    bus_id: str, device: str, timeout_s: float = 0.3, baudrate: int = 19200
) -> dict[str, Any]:
    return {
        "id": bus_id,
        "type": "rtu",
        "device": device,
        "baudrate": baudrate,
        "timeout_s": timeout_s,
    }


def socket_meter(
    meter_id: str, bus: str, unit: int, profile: str = "eastron-sdm120", rated_a: float = 32
) -> dict[str, Any]:
    return {
        "id": meter_id,
        "bus": bus,
        "unit": unit,
        "profile": profile,
        "role": "socket",
        "socket": {"label": meter_id.upper(), "rated_current_a": rated_a, "phases": 1},
    }


def main_meter(
    meter_id: str, bus: str, unit: int, profile: str = "legrand-emdx3-412045"
) -> dict[str, Any]:
    return {"id": meter_id, "bus": bus, "unit": unit, "profile": profile, "role": "main"}


def write_site(
    tmp_path: Path,
    buses: list[dict[str, Any]],
    meters: list[dict[str, Any]],
    name: str = "site.yaml",
    **extra: Any,
) -> Path:
    """A valid site file (site id `test-site`, 36 kVA, base tariff) with these buses and meters."""
    data: dict[str, Any] = {
        "site": {"id": "test-site", "name": "Test", "subscribed_power_kva": 36},
        "tariff": TARIFF,
        "buses": buses,
        "meters": meters,
        **extra,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@contextlib.contextmanager
def socat_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals (a null-modem cable): (server end, client end)."""
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    a, b = tmp_path / "ttyA", tmp_path / "ttyB"
    process = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: a.exists() and b.exists(), timeout=10, what="socat ptys")
        yield str(a), str(b)
    finally:
        process.terminate()
        process.wait(timeout=5)


@contextlib.contextmanager
def running_simulator(
    site: SiteConfig, profiles: dict[str, Profile], **options: Any
) -> Iterator[SimulatedSite]:
    """A SimulatedSite served from a background thread's event loop, for tests whose code under
    test runs its own loop (`irve read`, `irve collect`). Scenario hooks may be called from the
    test thread: they only flip plain attributes the server reads on each request."""
    sim = SimulatedSite(site, profiles, **options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@contextlib.contextmanager
def simulate_process(
    site_file: Path, *args: str, port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`irve simulate -c SITE ARGS` as a real process; waits for `port` (a TCP bus) if given."""
    irve = Path(sys.executable).with_name("irve")
    process = subprocess.Popen(
        [str(irve), "simulate", "-c", str(site_file), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        if port is not None:
            wait_until(lambda: port_open(port) or process.poll() is not None, what="irve simulate")
            if process.poll() is not None:
                out = process.stdout.read().decode() if process.stdout else ""
                raise RuntimeError(f"irve simulate exited {process.returncode}: {out}")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)
