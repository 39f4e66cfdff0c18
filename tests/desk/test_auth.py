"""Password hashing within the desk's memory budget, without servers: OWASP's argon2id
parameters, other hashes remade at the next login, one hash at a time, memory given back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from collector.desk import auth
from collector.desk.storage import Storage

PASSWORD = "a-guest-password"
OWASP = "$m=19456,t=2,p=1$"


def test_new_hashes_use_owasps_argon2id_parameters() -> None:
    hashed = auth.hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$v=19" + OWASP)
    assert auth.verify_password(hashed, PASSWORD)
    assert not auth.verify_password(hashed, PASSWORD + "x")
    assert not auth.needs_rehash(hashed)


@pytest.mark.parametrize(
    "older",
    [
        # argon2-cffi's default, which the desk used first: 64 MiB per check.
        PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY),
        # Weaker than OWASP's: 8 MiB, one pass.
        PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1),
    ],
    ids=["stronger", "weaker"],
)
def test_a_hash_with_other_parameters_is_remade_at_the_next_login(
    tmp_path: Path, older: PasswordHasher
) -> None:
    storage = Storage(tmp_path / "desk.sqlite3")
    storage.migrate()
    storage.put_user("anne", "reception", older.hash(PASSWORD))
    assert auth.needs_rehash(storage.user("anne").password_hash)  # type: ignore[union-attr]

    assert auth.authenticate(storage, "anne", PASSWORD + "x") is None
    unchanged = storage.user("anne")
    assert unchanged is not None and OWASP not in unchanged.password_hash  # not on a failure

    assert auth.authenticate(storage, "anne", PASSWORD) is not None
    remade = storage.user("anne")
    assert remade is not None and OWASP in remade.password_hash
    assert auth.authenticate(storage, "anne", PASSWORD) is not None  # the new hash works


def test_ensure_user_remakes_an_old_hash_of_the_same_password(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "desk.sqlite3")
    storage.migrate()
    storage.put_user(
        "owner", "owner", PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY).hash(PASSWORD)
    )
    assert auth.ensure_user(storage, "owner", "owner", PASSWORD)
    assert OWASP in storage.user("owner").password_hash  # type: ignore[union-attr]
    assert not auth.ensure_user(storage, "owner", "owner", PASSWORD)


# Run in a fresh interpreter: the memory of the test process says nothing about the desk's.
# VmHWM (the peak) is reset through /proc/self/clear_refs once the first hashes are made.
MEASURE = textwrap.dedent(
    """
    import threading
    from pathlib import Path

    from collector.desk import auth

    def mib(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise SystemExit(key + " missing")

    hashed = auth.hash_password("a-guest-password")
    auth.verify_password(hashed, "a-guest-password")
    before = mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    base = mib("VmHWM")
    logins = [
        threading.Thread(target=auth.verify_password, args=(hashed, "wrong-password"))
        for _ in range(8)
    ]
    for t in logins:
        t.start()
    for t in logins:
        t.join()
    print(mib("VmHWM") - base, mib("VmRSS") - before)
    """
)


@pytest.mark.process
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc needed")
def test_eight_logins_at_once_cost_the_memory_of_one_and_give_it_back() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE], capture_output=True, text=True, timeout=120, check=True
    )
    peak_mib, kept_mib = (float(x) for x in done.stdout.split())
    one_hash_mib = auth.ARGON2_MEMORY_KIB / 1024
    # Eight checks side by side would peak at 8 x 19 MiB; each thread keeping its block, the
    # same at rest.
    assert peak_mib < 1.5 * one_hash_mib, done.stdout
    assert kept_mib < 4, done.stdout
