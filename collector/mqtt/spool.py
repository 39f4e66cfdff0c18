"""A journal on disk of the critical messages (energy, session, event, alert, shed) not yet
acknowledged by the broker, so that a collector stopped or killed during a broker outage sends
them when it starts again: the energy state file already counts them as sent.

Append-only JSON lines: `{"id", "topic", "payload", "retain", "kind"}` when a message is
queued, `{"done": id}` when the broker acknowledges it. The entries are written at once (a
killed process loses nothing the kernel holds) and made durable by `sync`, one fsync that the
link runs before it hands any of them to the broker: a burst (an energy window closing on every
socket) costs one fsync, not one per message. A `done` line is never synced on its own: lost
in a power cut, its message is sent again, a duplicate rather than a loss. The file is emptied
whenever nothing is outstanding, which is most of the time: critical messages are a few per
minute per socket. A message re-sent after a crash may reach the broker twice; every critical
payload is keyed by its timestamps, so the ingestor writes the same point again rather than a
second one.

A full or read-only disk: the message still goes out, from memory only (ERROR); such a message
is lost only if the collector also stops before the broker acknowledges it. Energy and session
messages reach the journal only once the energy state that emitted them is saved (see
collector.energy.processor), so on a full disk they wait there rather than here. Writes are
unbuffered, whole lines: a line cut by the disk filling up is skipped alone on recovery.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from collector.wire.kinds import Envelope

log = logging.getLogger(__name__)


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._outstanding: set[int] = set()
        self._next_id = 0
        self._fd: int | None = None
        self._torn = False  # the last write failed: the file may end in a cut line
        self.unsynced = False  # entries written since the last fsync

    def recover(self) -> list[Envelope]:
        """The messages a previous run queued and the broker never acknowledged, in order."""
        pending: dict[int, Envelope] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        except OSError as exc:
            log.error("%s: cannot read the journal: %s", self.path, exc)
            lines = []
        for number, line in enumerate(lines, 1):
            if not line:  # the separator written after a failed write
                continue
            try:
                entry = json.loads(line)
                if "done" in entry:
                    pending.pop(int(entry["done"]), None)
                    continue
                pending[int(entry["id"])] = Envelope(
                    entry["topic"],
                    entry["payload"].encode(),
                    bool(entry["retain"]),
                    entry["kind"],
                    critical=True,
                    spool_id=int(entry["id"]),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                # A line cut short by a power loss is the last one: what it held was never sent.
                log.warning("%s:%d: unreadable spool entry skipped", self.path, number)
        self._outstanding = set(pending)
        self._next_id = max(pending, default=-1) + 1
        if pending:
            log.info("%s: %d unacknowledged message(s) from the last run", self.path, len(pending))
        return list(pending.values())

    def add(self, envelope: Envelope) -> Envelope:
        """Journal a critical message; the returned envelope carries its journal id."""
        spool_id = self._next_id
        self._next_id += 1
        entry = {
            "id": spool_id,
            "topic": envelope.topic,
            "payload": envelope.payload.decode(),
            "retain": envelope.retain,
            "kind": envelope.kind,
        }
        try:
            self._write(json.dumps(entry, separators=(",", ":")))
        except OSError as exc:  # a full or read-only disk: still sent, kept in memory only
            log.error("%s: cannot journal this %s message: %s", self.path, envelope.kind, exc)
            return envelope
        self._outstanding.add(spool_id)
        self.unsynced = True
        return Envelope(
            envelope.topic, envelope.payload, envelope.retain, envelope.kind, True, spool_id
        )

    def done(self, spool_id: int) -> None:
        """The broker has it. (Should this line not be written, the message is sent again after
        a restart: a duplicate, never a loss.)"""
        self._outstanding.discard(spool_id)
        try:
            if self._outstanding:
                self._write(json.dumps({"done": spool_id}))
            else:
                self._truncate()
        except OSError as exc:
            log.error("%s: %s", self.path, exc)

    def sync(self) -> None:
        """Make the entries written so far durable (nothing to do when none was)."""
        if not self.unsynced or self._fd is None:
            return
        self.unsynced = False
        try:
            os.fsync(self._fd)
        except OSError as exc:  # as a failed write: the messages still go out, from memory
            log.error("%s: cannot make the journal durable: %s", self.path, exc)

    def close(self) -> None:
        self.sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, line: str) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # After a failed write (full disk) the file may end in a cut line: a newline first
        # keeps it apart, so it is skipped alone and never swallows the next entry.
        data = ("\n" if self._torn else "") + line + "\n"
        self._torn = True
        view = memoryview(data.encode())
        while view:
            view = view[os.write(self._fd, view) :]
        self._torn = False

    def _truncate(self) -> None:
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o600)
        self._torn = False
