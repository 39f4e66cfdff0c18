"""The desk's SQLite database and `irve desk add-user`, without servers: schema versions, WAL,
a full disk rolls the whole change back, passwords from standard input."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from collector.desk.auth import verify_password
from collector.desk.storage import MIGRATIONS, StayFields, Storage, StorageUnavailable
from tests.support.billing_helpers import site_file
from tests.support.desk import add_user


def fields(room: str, badges: tuple[str, ...] = (), guest: str = "") -> StayFields:
    now = datetime.now(UTC)
    return StayFields(
        room, guest, now, now + timedelta(days=1), badges, "at_cost", Decimal(0), Decimal(8)
    )


def test_schema_is_versioned_and_in_wal(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "desk.sqlite3")
    assert storage.migrate() == len(MIGRATIONS)
    assert storage.migrate() == len(MIGRATIONS)  # a second start changes nothing
    with sqlite3.connect(storage.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this irve"):
        storage.migrate()


class FullStorage(Storage):
    """A database file that may not grow: SQLite's own "database or disk is full"."""

    pages = 0

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        with super().connect() as conn:
            conn.execute(f"PRAGMA max_page_count = {self.pages}")
            yield conn


def test_a_full_database_writes_nothing_of_the_change(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "desk.sqlite3")
    storage.migrate()
    stay_id = storage.save_stay("anna", fields("12", ("B1",)))
    full = FullStorage(storage.path)
    with sqlite3.connect(storage.path) as conn:
        full.pages = conn.execute("PRAGMA page_count").fetchone()[0]
    big = fields("14", tuple(f"B{i:04d}-{'x' * 50}" for i in range(400)), "y" * 100)
    with pytest.raises(StorageUnavailable) as raised:
        full.save_stay("anna", big)
    assert raised.value.full
    assert [s.id for s in storage.stays()] == [stay_id]
    with sqlite3.connect(storage.path) as conn:
        assert conn.execute("SELECT count(*) FROM stay_badges").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 1


@pytest.mark.process
def test_add_user_reads_the_password_from_standard_input(tmp_path: Path) -> None:
    site = site_file(tmp_path)
    done = add_user(site, "anna", "reception", "a-long-password")
    assert done.returncode == 0 and "user anna (reception) created" in done.stdout
    storage = Storage(tmp_path / "state" / "desk.sqlite3")  # default: in the state folder
    user = storage.user("anna")
    assert user is not None and user.role == "reception"
    assert verify_password(user.password_hash, "a-long-password")
    assert b"a-long-password" not in storage.path.read_bytes()
    again = add_user(site, "anna", "owner", "another-long-password")
    assert again.returncode == 0 and "updated" in again.stdout
    user = storage.user("anna")
    assert user is not None and user.role == "owner"
    short = add_user(site, "bob", "reception", "short")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    assert storage.user("bob") is None
