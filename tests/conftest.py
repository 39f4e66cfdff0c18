from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import servers
from tests.ntfy_server import NtfyServer

# `make test` and CI run the same examples every time (a red build is reproducible); explore
# new ones with `pytest --hypothesis-profile=explore`.
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("default")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "config" / "examples"


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
def ntfy() -> Iterator[NtfyServer]:
    """A local ntfy endpoint (tests/ntfy_server.py)."""
    server = NtfyServer()
    server.start()
    yield server
    server.stop()
