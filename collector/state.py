"""State files of the processors (I/O): the energy state (last index, open windows, open
sessions and the messages emitted but not yet handed to MQTT, per point) and the alert state
(which alerts are firing), JSON. The processors themselves only see a `StateStore`
(collector.pipeline).

Written atomically (temporary file, fsync, rename, directory fsync) so a crash leaves the old or
the new state, never half of one.

`FileStateStore` writes from its own thread, so a slow or full disk never holds up polling:
`submit` hands over a snapshot and returns at once; snapshots submitted while a write is in
progress are coalesced (only the newest is written). Each snapshot gets a number (its
generation) and `durable` is the newest one known to be on disk, which is how the energy
processor knows when the messages a snapshot records as emitted may go out.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from collector.pipeline import RETRY_S

log = logging.getLogger(__name__)

VERSION = 1


def default_path(state_dir: Path, site_id: str) -> Path:
    return state_dir / f"energy-{site_id}.json"


def alerts_path(state_dir: Path, site_id: str) -> Path:
    return state_dir / f"alerts-{site_id}.json"


def load_state(path: Path, what: str = "energy state") -> dict[str, Any]:
    """The saved state, or an empty one (first start, or an unreadable file, which is logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("%s %s unreadable (%s): starting from the next readings", what, path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.error("%s %s has an unknown format: starting from the next readings", what, path)
        return {}
    return data


def encode_state(data: dict[str, Any]) -> str:
    # Compact: without `indent` json uses its C encoder, an order of magnitude faster on the
    # event loop than the pure-Python one that indenting takes (bench.ocpp_bench).
    return json.dumps({"version": VERSION, **data}, sort_keys=True, separators=(",", ":"))


def write_state(path: Path, payload: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself survives a power loss only once the folder is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class FileStateStore:
    """The state file, written by a saver thread (or in the caller's thread: `background=False`,
    for batch computations and tests)."""

    def __init__(self, path: Path, background: bool = True, what: str = "energy state") -> None:
        self.path = path
        self.what = what
        self._background = background
        self._cond = threading.Condition()
        self._pending: tuple[int, str] | None = None
        self._generation = 0
        self._durable = 0
        self._failure: str | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    @property
    def durable(self) -> int:
        return self._durable

    @property
    def failure(self) -> str | None:
        return self._failure

    def load(self) -> dict[str, Any]:
        return load_state(self.path, self.what)

    def submit(self, data: dict[str, Any]) -> int:
        payload = encode_state(data)
        with self._cond:
            self._generation += 1
            self._pending = (self._generation, payload)
            generation = self._generation
            if self._background:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name=self.what.replace(" ", "-"), daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
                return generation
        self._write_pending()
        return generation

    def close(self, timeout: float) -> bool:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():  # still writing (a very slow disk)
                return False
        else:
            self._write_pending()
        return self._pending is None and self._failure is None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
            if self._write_pending():
                continue
            if self._closing:
                return
            # Newer snapshots wait too: never a busy loop on a full disk.
            deadline = time.monotonic() + RETRY_S
            with self._cond:
                while not self._closing and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)

    def _write_pending(self) -> bool:
        with self._cond:
            if self._pending is None:
                return True
            generation, payload = self._pending
            self._pending = None
        try:
            write_state(self.path, payload)
        except OSError as exc:
            with self._cond:
                if self._pending is None:  # nothing newer: this one is tried again
                    self._pending = (generation, payload)
                self._failure = f"{type(exc).__name__}: {exc}"
            return False
        with self._cond:
            self._durable = max(self._durable, generation)
            self._failure = None
        return True
