"""The on-disk journal of critical messages (pure file I/O in a temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.mqtt.spool import Spool
from collector.wire.kinds import Envelope
from tests.support.disk import TinyDisk


def energy(n: int) -> Envelope:
    return Envelope("irve/s/cp1/energy", f'{{"n": {n}, "é": "€"}}'.encode(), False, "energy", True)


def test_unacknowledged_messages_come_back_in_order_with_their_ids(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    spool = Spool(path)
    assert spool.recover() == []
    sent = [spool.add(energy(n)) for n in range(4)]
    assert [e.spool_id for e in sent] == [0, 1, 2, 3]
    spool.done(1)
    spool.close()  # or a crash: every line is already on disk
    again = Spool(path)
    back = again.recover()
    assert [e.payload for e in back] == [energy(n).payload for n in (0, 2, 3)]
    assert [e.spool_id for e in back] == [0, 2, 3]
    assert all(e.critical and e.kind == "energy" and not e.retain for e in back)
    assert again.add(energy(9)).spool_id == 4  # ids go on after the recovered ones


def test_the_file_is_emptied_once_everything_is_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.jsonl"
    spool = Spool(path)
    spool.recover()
    a, b = spool.add(energy(1)), spool.add(energy(2))
    assert len(path.read_text().splitlines()) == 2
    assert a.spool_id is not None and b.spool_id is not None
    spool.done(a.spool_id)
    assert len(path.read_text().splitlines()) == 3  # a `done` line
    spool.done(b.spool_id)
    assert path.read_text() == ""
    assert Spool(path).recover() == []


def test_a_line_cut_by_a_power_loss_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.jsonl"
    spool = Spool(path)
    spool.add(energy(1))
    spool.close()
    with path.open("a") as f:
        f.write('{"id": 1, "topic": "irve/s/cp1/ener')
    back = Spool(path).recover()
    assert [e.payload for e in back] == [energy(1).payload]
    assert "outbox.jsonl:2: unreadable spool entry skipped" in caplog.text


def test_a_journal_that_cannot_be_written_never_stops_a_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    spool = Spool(blocker / "outbox.jsonl")  # its folder cannot be made
    kept = spool.add(energy(1))
    assert kept == energy(1) and kept.spool_id is None  # sent all the same, from memory
    assert "cannot journal this energy message" in caplog.text


def test_a_full_disk_journals_nothing_half_and_the_journal_stays_readable(
    tiny_disk: TinyDisk, caplog: pytest.LogCaptureFixture
) -> None:
    """On a full disk a message is sent from memory (ERROR, no journal id); a line cut short by
    the disk filling never swallows the entries written once there is room again."""
    path = tiny_disk.path / "outbox.jsonl"
    spool = Spool(path)
    spool.recover()
    first = spool.add(energy(0))
    tiny_disk.fill()
    big = Envelope("irve/s/cp1/energy", b'{"n": 1, "pad": "' + b"x" * 8000 + b'"}', False,
                   "energy", True)  # fmt: skip
    assert spool.add(big).spool_id is None  # cut short where the disk filled up
    assert "cannot journal this energy message" in caplog.text
    tiny_disk.free()
    last = spool.add(energy(3))
    assert (first.spool_id, last.spool_id) == (0, 2)
    spool.close()
    back = Spool(path).recover()  # after a crash: exactly what was journaled, none lost
    assert [e.payload for e in back] == [energy(0).payload, energy(3).payload]


def test_entries_are_written_at_once_and_made_durable_by_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst costs one fsync (`sync`, which the link runs before handing any of it to the
    broker); a `done` line costs none; closing syncs what is left."""
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    path = tmp_path / "outbox.jsonl"
    spool = Spool(path)
    burst = [spool.add(energy(n)) for n in range(5)]
    assert len(path.read_text().splitlines()) == 5 and spool.unsynced  # a kill loses nothing
    assert synced == []
    spool.sync()
    spool.sync()  # nothing new
    assert len(synced) == 1 and not spool.unsynced
    assert burst[0].spool_id is not None
    spool.done(burst[0].spool_id)
    assert len(synced) == 1
    spool.add(energy(5))
    spool.close()
    assert len(synced) == 2


def test_a_failed_fsync_is_said_and_the_message_still_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    spool = Spool(tmp_path / "outbox.jsonl")
    sent = spool.add(energy(1))
    spool.sync()
    assert sent.spool_id == 0 and not spool.unsynced
    assert "cannot make the journal durable: [Errno 5] Input/output error" in caplog.text
