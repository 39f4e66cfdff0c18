"""The energy state file's saver thread: coalesced writes, never blocking, retried after a
failure (real files in a temporary folder)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from collector.pipeline import RETRY_S
from collector.state import FileStateStore
from tests.support.servers import wait_until


@pytest.mark.timing
def test_snapshots_are_coalesced_and_submit_never_waits_for_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "energy.json"
    store = FileStateStore(path)
    started = time.monotonic()
    for n in range(1, 2001):
        assert store.submit({"n": n}) == n
    # 2,000 fsync'd writes would take seconds; handing them over must not.
    assert time.monotonic() - started < 1.0
    assert store.close(5.0)
    assert store.durable == 2000 and store.failure is None
    assert json.loads(path.read_text())["n"] == 2000
    assert [p.name for p in tmp_path.iterdir()] == ["energy.json"]  # no temporary file left


def test_a_failed_save_is_tried_again_without_a_new_snapshot(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.write_text("")  # a file where the folder should be: every write fails
    store = FileStateStore(folder / "energy.json")
    generation = store.submit({"n": 1})
    wait_until(lambda: store.failure is not None, 5, "the failure")
    assert store.durable == 0 and "state" in (store.failure or "")
    folder.unlink()
    folder.mkdir()
    wait_until(lambda: store.durable == generation, 3 * RETRY_S + 2, "the retry")
    assert store.failure is None
    assert store.close(5.0)
    assert json.loads((folder / "energy.json").read_text())["n"] == 1
