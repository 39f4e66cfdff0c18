"""Who may use the desk: argon2 password hashes, web sessions, CSRF tokens, login throttling.

- Passwords: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane); only the hash is
  stored; a hash made with other parameters (stronger or weaker) is remade at the next login.
  One hash at a time in the whole process, and its memory handed back to the system after
  (glibc told to map large blocks apart): the desk's memory stays within its budget however
  many people log in at once.
- Web sessions: a random token in an HttpOnly, SameSite=Lax cookie (Secure when the page came
  over HTTPS); the database keeps only its SHA-256, so a copy of the database opens nothing.
- CSRF: each web session has its own token, put in every form and checked on every POST;
  the login form, before any session, uses a double-submit cookie.
- Throttling: after FREE_FAILURES failed logins in a row for a name (FREE_FAILURES_IP from
  one address, which a whole reception shares), each further attempt must wait, the wait
  doubling from 1 s to 5 min with every attempt, refused ones included, whatever the
  password.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from collector.desk.storage import Storage, User

ROLES = ("reception", "owner")
MIN_PASSWORD = 10
FREE_FAILURES = 5
FREE_FAILURES_IP = 20
MAX_WAIT_S = 300.0
SESSION_COOKIE = "desk_session"
LOGIN_CSRF_COOKIE = "desk_login_csrf"

# OWASP's password storage cheat sheet, first argon2id line: m=19 MiB, t=2, p=1. argon2-cffi's
# default (RFC 9106's, 64 MiB) took the desk over its memory budget during a login.
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)
# Each hash or check holds ARGON2_MEMORY_KIB: one at a time, so that ten logins at once cost
# the memory of one (they wait a tenth of a second each instead).
_one_at_a_time = threading.Lock()


# glibc's malloc: blocks of this size and more are mapped apart and unmapped when freed.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20


def _map_large_blocks_apart() -> None:
    """Make glibc give argon2's block back to the system as soon as it is freed.

    By default glibc raises its mmap threshold to the size of the largest block freed so far
    (up to 32 MiB): after the first login, argon2's 19 MiB comes from the heap of the thread
    that checks the password and stays there, once per web server thread; malloc_trim cannot
    give back the top of a thread's heap. Setting the threshold fixes it (no more raising) for
    the whole process, which only makes large blocks cheaper to return. A no-op elsewhere
    than glibc (musl and macOS already unmap large blocks)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


_map_large_blocks_apart()


def hash_password(password: str) -> str:
    with _one_at_a_time:
        return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    with _one_at_a_time:
        try:
            return _hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def needs_rehash(stored_hash: str) -> bool:
    """Made with other parameters than ours, stronger or weaker (or not argon2id)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    return None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and secrets.compare_digest(
        str(given).encode(), str(expected).encode()
    )


def ensure_user(storage: Storage, name: str, role: str, password: str) -> bool:
    """The account exists with this role and password (re-hashed only when it changed);
    True when something was written."""
    user = storage.user(name)
    if (
        user is not None
        and user.role == role
        and verify_password(user.password_hash, password)
        and not needs_rehash(user.password_hash)
    ):
        return False
    storage.put_user(name, role, hash_password(password))
    return True


def authenticate(storage: Storage, name: str, password: str) -> User | None:
    user = storage.user(name)
    if user is None:
        # The same work as for a real user: the time taken does not tell which names exist.
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        storage.set_password_hash(user.id, hash_password(password))
    return user


_DUMMY_HASH = hash_password(secrets.token_hex(16))


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


@dataclass
class LoginThrottle:
    """Failed logins per key (`name:...`, `ip:...`), in memory: one desk process per site."""

    _failures: dict[str, _Failures] = field(default_factory=dict)

    def wait_s(self, *keys: str) -> float:
        """Seconds before another attempt is allowed for these keys (0: allowed now)."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            found = self._failures.get(key)
            free = FREE_FAILURES_IP if key.startswith("ip:") else FREE_FAILURES
            if found is None or found.count < free:
                continue
            delay = min(MAX_WAIT_S, 2.0 ** (found.count - free))
            wait = max(wait, found.last + delay - now)
        return max(0.0, wait)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            entry = self._failures.setdefault(key, _Failures())
            if now - entry.last > 2 * MAX_WAIT_S:
                entry.count = 0  # a long quiet spell forgives
            entry.count += 1
            entry.last = now

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
