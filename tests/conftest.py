from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support import servers
from tests.support.disk import TinyDisk
from tests.support.ntfy_server import NtfyServer

# `make test` and CI run the same examples every time (a red build is reproducible); explore
# new ones with `pytest --hypothesis-profile=explore`.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")

# Fixtures that start a real server, and the marker a test using them gets, so that
# `pytest -m "not broker and not influx and not serial and not knx"` (make test-fast) runs the others alone.
# Modules whose every test needs a server say so with a module-level `pytestmark`.
SERVER_FIXTURES = {
    "broker": ("broker",),
    "persistent_broker": ("broker",),
    "tls_broker": ("broker",),
    "stack_broker": ("broker",),
    "real_messages": ("broker",),
    "influx": ("influx",),
    "victoria": ("influx",),
    "influx_module": ("influx",),
    "billed_site": ("influx",),
    "base_site": ("influx",),
    "ingest": ("broker", "influx"),
    "setup": ("broker", "influx"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            for marker in SERVER_FIXTURES.get(name, ()):
                item.add_marker(marker)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.mosquitto(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.influxd(tmp_path / "influxd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[servers.Server]:
    server = servers.victoria_metrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[TinyDisk]:
    """A real full-disk fault (ENOSPC) needs a small filesystem of its own: mounting one takes
    root (or CAP_SYS_ADMIN), so the test is skipped, saying so, where that is not permitted."""
    path = tmp_path / "tiny"
    path.mkdir()
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no `mount` command: cannot make a small filesystem for a full-disk test")
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full-disk test: {mounted.stderr.strip()}")
    try:
        yield TinyDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def ntfy() -> Iterator[NtfyServer]:
    """A local ntfy endpoint (tests/support/ntfy_server.py)."""
    server = NtfyServer()
    server.start()
    yield server
    server.stop()
