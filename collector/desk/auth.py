"""Who may use the desk: argon2 password hashes, web sessions, CSRF tokens, login throttling.

- Passwords: argon2id (argon2-cffi's defaults); only the hash is stored.
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

import hashlib
import secrets
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

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


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
    if user is not None and user.role == role and verify_password(user.password_hash, password):
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
    if _hasher.check_needs_rehash(user.password_hash):
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
