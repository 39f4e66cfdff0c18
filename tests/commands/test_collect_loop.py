"""`irve collect` runs on uvloop where the package is installed (a dependency on Linux x86-64
and ARM64), and on asyncio's own loop where it is not."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from collector.commands.collect import event_loop_runner


def test_uvloop_where_it_is_installed() -> None:
    assert event_loop_runner() is uvloop.run


def test_asyncio_s_loop_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert event_loop_runner() is asyncio.run
