"""The front desk's SQLite database: users, web sessions, stays, badges, assignments, audit.

One file (`desk.database`), WAL journal so that readers never wait for a writer, and a schema
version in `PRAGMA user_version`: each migration runs once, in order, in one transaction.
Every change is one transaction with its audit row, so a stay is never half-written: when the
database is locked or full, SQLite rolls the transaction back and `StorageUnavailable` says
which. A connection per operation keeps the threads of the web server apart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_MS = 2000

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('reception', 'owner')),
        password_hash TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE web_sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        expires TEXT NOT NULL
    );
    CREATE TABLE stays (
        id INTEGER PRIMARY KEY,
        room TEXT NOT NULL,
        guest TEXT NOT NULL DEFAULT '',
        arrival TEXT NOT NULL,
        departure TEXT NOT NULL,
        policy TEXT NOT NULL CHECK (policy IN ('at_cost', 'flat', 'allowance')),
        fee_eur TEXT NOT NULL DEFAULT '0',
        kwh_per_night TEXT NOT NULL DEFAULT '8',
        closed TEXT
    );
    CREATE INDEX stays_room ON stays(room, arrival);
    CREATE TABLE stay_badges (
        stay_id INTEGER NOT NULL REFERENCES stays(id) ON DELETE CASCADE,
        badge TEXT NOT NULL,
        PRIMARY KEY (stay_id, badge)
    );
    CREATE INDEX stay_badges_badge ON stay_badges(badge);
    CREATE TABLE assignments (
        session_id TEXT PRIMARY KEY,
        stay_id INTEGER NOT NULL REFERENCES stays(id) ON DELETE CASCADE,
        session_start TEXT NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        user TEXT NOT NULL,
        stay_id INTEGER REFERENCES stays(id) ON DELETE CASCADE,
        action TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX audit_stay ON audit(stay_id, at);
    """,
)


class StorageUnavailable(Exception):
    """The database cannot take the change (locked by another process, or the disk is full);
    nothing of it was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # In WAL mode a write the disk has no room for fails as "disk I/O error" (the WAL file
        # cannot grow), not SQLITE_FULL: both are the disk, not another program's lock.
        self.full = "full" in reason or "disk I/O error" in reason


def iso(ts: datetime) -> str:
    """UTC, milliseconds, `Z`: sorts as text, as in every MQTT payload."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class StayFields:
    """What reception types in for a stay, validated (collector.desk.stays)."""

    room: str
    guest: str
    arrival: datetime
    departure: datetime
    badges: tuple[str, ...]
    policy: str
    fee_eur: Decimal
    kwh_per_night: Decimal


@dataclass(frozen=True)
class StayRow:
    id: int
    room: str
    guest: str
    arrival: datetime
    departure: datetime
    policy: str
    fee_eur: Decimal
    kwh_per_night: Decimal
    closed: datetime | None
    badges: tuple[str, ...] = ()
    assigned: dict[str, datetime] = field(default_factory=dict)  # session id -> its start

    def fields(self) -> StayFields:
        return StayFields(
            self.room,
            self.guest,
            self.arrival,
            self.departure,
            self.badges,
            self.policy,
            self.fee_eur,
            self.kwh_per_night,
        )


@dataclass(frozen=True)
class AuditRow:
    at: datetime
    user: str
    action: str
    details: dict[str, Any]


class Storage:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose `with conn:` blocks are transactions; SQLite's own errors for a
        locked or full database come out as StorageUnavailable."""
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            yield conn
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc
        finally:
            conn.close()

    def migrate(self) -> int:
        """Create or upgrade the schema; returns its version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this irve "
                    f"({len(MIGRATIONS)}): upgrade irve"
                )
            for number, script in enumerate(MIGRATIONS[version:], version + 1):
                # executescript commits first; the BEGIN keeps each migration atomic.
                conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
            return len(MIGRATIONS)

    # -- users and web sessions ---------------------------------------------------------------

    def user(self, name: str) -> User | None:
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def users(self) -> list[User]:
        with self.connect() as conn:
            return [_user(r) for r in conn.execute("SELECT * FROM users ORDER BY name")]

    def put_user(self, name: str, role: str, password_hash: str) -> bool:
        """Create the user, or replace its role and password; True when created."""
        with self.connect() as conn, conn:
            found = conn.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if found:
                conn.execute(
                    "UPDATE users SET role = ?, password_hash = ? WHERE id = ?",
                    (role, password_hash, found["id"]),
                )
                conn.execute("DELETE FROM web_sessions WHERE user_id = ?", (found["id"],))
                return False
            conn.execute(
                "INSERT INTO users (name, role, password_hash, created) VALUES (?, ?, ?, ?)",
                (name, role, password_hash, iso(datetime.now(UTC))),
            )
            return True

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self.connect() as conn, conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)
            )

    def add_web_session(self, token_hash: str, user_id: int, csrf: str, expires: datetime) -> None:
        with self.connect() as conn, conn:
            conn.execute("DELETE FROM web_sessions WHERE expires < ?", (iso(datetime.now(UTC)),))
            conn.execute(
                "INSERT INTO web_sessions VALUES (?, ?, ?, ?)",
                (token_hash, user_id, csrf, iso(expires)),
            )

    def web_session(self, token_hash: str, now: datetime) -> tuple[User, str] | None:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT users.*, web_sessions.csrf FROM web_sessions JOIN users "
                "ON users.id = web_sessions.user_id "
                "WHERE token_hash = ? AND expires > ?",
                (token_hash, iso(now)),
            ).fetchone()
        return (_user(row), str(row["csrf"])) if row else None

    def drop_web_session(self, token_hash: str) -> None:
        with self.connect() as conn, conn:
            conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))

    # -- stays ----------------------------------------------------------------------------------

    def stays(self, where: str = "1", args: tuple[Any, ...] = ()) -> list[StayRow]:
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT * FROM stays WHERE {where} ORDER BY arrival DESC, id DESC", args
            ).fetchall()
            return [_stay(conn, row) for row in rows]

    def stay(self, stay_id: int) -> StayRow | None:
        found = self.stays("id = ?", (stay_id,))
        return found[0] if found else None

    def overlapping(self, start: datetime, end: datetime) -> list[StayRow]:
        """Stays (closed or not) whose [arrival, departure) meets [start, end)."""
        return self.stays("arrival < ? AND departure > ?", (iso(end), iso(start)))

    def save_stay(self, user: str, fields: StayFields, stay_id: int | None = None) -> int:
        """Insert or update a stay and its badges, with the audit row saying what changed."""
        values = (
            fields.room,
            fields.guest,
            iso(fields.arrival),
            iso(fields.departure),
            fields.policy,
            str(fields.fee_eur),
            str(fields.kwh_per_night),
        )
        with self.connect() as conn, conn:
            if stay_id is None:
                cursor = conn.execute(
                    "INSERT INTO stays (room, guest, arrival, departure, policy, fee_eur, "
                    "kwh_per_night) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                stay_id = int(cursor.lastrowid or 0)
                action, details = "created", _describe(fields)
            else:
                before = _stay(
                    conn, conn.execute("SELECT * FROM stays WHERE id = ?", (stay_id,)).fetchone()
                )
                conn.execute(
                    "UPDATE stays SET room = ?, guest = ?, arrival = ?, departure = ?, "
                    "policy = ?, fee_eur = ?, kwh_per_night = ? WHERE id = ?",
                    (*values, stay_id),
                )
                conn.execute("DELETE FROM stay_badges WHERE stay_id = ?", (stay_id,))
                old, new = _describe(before.fields()), _describe(fields)
                details = {k: [old[k], new[k]] for k in new if old[k] != new[k]}
                action = "edited"
            conn.executemany(
                "INSERT INTO stay_badges (stay_id, badge) VALUES (?, ?)",
                [(stay_id, badge) for badge in fields.badges],
            )
            _audit(conn, user, stay_id, action, details)
        return stay_id

    def close_stay(self, user: str, stay_id: int, now: datetime) -> None:
        """Checkout: the stay ends now if it was to end later; its badges leave the list."""
        with self.connect() as conn, conn:
            row = conn.execute("SELECT * FROM stays WHERE id = ?", (stay_id,)).fetchone()
            departure = min(parse_iso(row["departure"]), max(now, parse_iso(row["arrival"])))
            conn.execute(
                "UPDATE stays SET closed = ?, departure = ? WHERE id = ?",
                (iso(now), iso(departure), stay_id),
            )
            _audit(conn, user, stay_id, "closed", {"departure": iso(departure)})

    def assign(self, user: str, session_id: str, session_start: datetime, stay_id: int) -> None:
        with self.connect() as conn, conn:
            conn.execute(
                "INSERT INTO assignments VALUES (?, ?, ?) ON CONFLICT(session_id) "
                "DO UPDATE SET stay_id = excluded.stay_id",
                (session_id, stay_id, iso(session_start)),
            )
            _audit(conn, user, stay_id, "session assigned", {"session_id": session_id})

    def assignments(self) -> dict[str, int]:
        with self.connect() as conn:
            return {
                str(r["session_id"]): int(r["stay_id"])
                for r in conn.execute("SELECT session_id, stay_id FROM assignments")
            }

    def audit(self, stay_id: int) -> list[AuditRow]:
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM audit WHERE stay_id = ? ORDER BY id DESC", (stay_id,)
            ).fetchall()
        return [
            AuditRow(parse_iso(r["at"]), r["user"], r["action"], json.loads(r["details"]))
            for r in rows
        ]


def _user(row: sqlite3.Row) -> User:
    return User(int(row["id"]), str(row["name"]), str(row["role"]), str(row["password_hash"]))


def _stay(conn: sqlite3.Connection, row: sqlite3.Row) -> StayRow:
    stay_id = int(row["id"])
    badges = tuple(
        str(r[0])
        for r in conn.execute(
            "SELECT badge FROM stay_badges WHERE stay_id = ? ORDER BY badge", (stay_id,)
        )
    )
    assigned = {
        str(r[0]): parse_iso(str(r[1]))
        for r in conn.execute(
            "SELECT session_id, session_start FROM assignments WHERE stay_id = ?", (stay_id,)
        )
    }
    return StayRow(
        stay_id,
        str(row["room"]),
        str(row["guest"]),
        parse_iso(row["arrival"]),
        parse_iso(row["departure"]),
        str(row["policy"]),
        Decimal(row["fee_eur"]),
        Decimal(row["kwh_per_night"]),
        parse_iso(row["closed"]) if row["closed"] else None,
        badges,
        assigned,
    )


def _describe(fields: StayFields) -> dict[str, Any]:
    return {
        "room": fields.room,
        "guest": fields.guest,
        "arrival": iso(fields.arrival),
        "departure": iso(fields.departure),
        "badges": list(fields.badges),
        "policy": fields.policy,
        "fee_eur": str(fields.fee_eur),
        "kwh_per_night": str(fields.kwh_per_night),
    }


def _audit(
    conn: sqlite3.Connection, user: str, stay_id: int, action: str, details: dict[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO audit (at, user, stay_id, action, details) VALUES (?, ?, ?, ?, ?)",
        (iso(datetime.now(UTC)), user, stay_id, action, json.dumps(details, ensure_ascii=False)),
    )
