"""The front desk over HTTP against a real `irve desk` (real mosquitto and influxd): who may
see what, CSRF, login throttling, stored passwords, and bad input in the stay form (a clear
message, nothing saved), including a locked database."""

from __future__ import annotations

import html
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import paho.mqtt.publish as publish
import pytest
import yaml
from starlette.routing import Route

from collector.config import SiteConfig
from collector.desk.app import Desk, create_app
from collector.desk.live import LiveState
from collector.desk.stays import Defaults
from collector.desk.storage import Storage, iso
from collector.settings import load
from collector.store.influxql import InfluxQL
from tests.support import servers
from tests.support.collect_helpers import Recorder
from tests.support.desk import (
    OWNER_PASSWORD,
    Client,
    add_user,
    desk_process,
    desk_site,
    local,
    typed,
)
from tests.support.disk import TinyDisk

pytestmark = [pytest.mark.broker, pytest.mark.influx]

RECEPTION_PASSWORD = "reception-password-1"


@dataclass(frozen=True)
class Running:
    url: str
    site: Path
    database: Path
    broker_port: int


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("desk")
    broker = servers.mosquitto(tmp / "mosquitto")
    influx = servers.influxd(tmp / "influxd")
    broker.start()
    influx.start()
    try:
        site = desk_site(tmp, broker, influx)
        assert add_user(site, "anna", "reception", RECEPTION_PASSWORD).returncode == 0
        with desk_process(site, tmp / "desk.log") as url:
            yield Running(url, site, tmp / "desk.sqlite3", broker.port)
    finally:
        influx.stop()
        broker.stop()


def reception(desk: Running) -> Client:
    client = Client(desk.url)
    assert client.login("anna", RECEPTION_PASSWORD).status == 303
    return client


def stay_form(
    room: str, arrival: datetime, departure: datetime, badges: str = ""
) -> dict[str, str]:
    return {
        "room": room,
        "guest": "",
        "arrival": local(arrival),
        "departure": local(departure),
        "badges": badges,
        "policy": "at_cost",
        "fee_eur": "0",
        "kwh_per_night": "8",
    }


def stay_count(desk: Running) -> int:
    with sqlite3.connect(desk.database) as conn:
        return int(conn.execute("SELECT count(*) FROM stays").fetchone()[0])


# ---- security -------------------------------------------------------------------------------


def app_paths(site_file: Path, tmp_path: Path) -> list[tuple[str, set[str]]]:
    """Every path the application serves, with its methods: from its own routing table, so a
    page added later is checked too."""
    site = load(SiteConfig, site_file)
    app = create_app(
        Desk(
            site,
            Storage(tmp_path / "unused.sqlite3"),
            None,
            LiveState(site, "irve/x"),
            None,
            InfluxQL.from_settings(site.influx),
            Defaults("at_cost", Decimal(0), Decimal(8), timedelta(hours=4)),
        )
    )
    paths = [(r.path, set(r.methods or ()) - {"HEAD"}) for r in app.routes if isinstance(r, Route)]
    assert len(paths) >= 15
    return paths


def test_every_path_but_healthz_refuses_an_anonymous_request(desk: Running, tmp_path: Path) -> None:
    anonymous = Client(desk.url)
    assert anonymous.get("/healthz").status == 200
    for path, methods in app_paths(desk.site, tmp_path):
        if path in ("/healthz", "/login"):
            continue
        concrete = path.replace("{stay_id}", "1")
        for method in methods:
            reply = anonymous.request(method, concrete, {} if method == "POST" else None)
            assert reply.status in (303, 401), (method, concrete, reply.status)
            if reply.status == 303:
                assert reply.location.startswith("/login"), (method, concrete)
            assert "Chambre" not in reply.text


def test_a_form_without_its_csrf_token_is_refused(desk: Running) -> None:
    client = reception(desk)
    now = datetime.now(UTC)
    before = stay_count(desk)
    form = stay_form("99", now, now + timedelta(days=1))
    for token in (None, "forged"):
        sent = form if token is None else {**form, "csrf": token}
        reply = client.post("/stays/new", sent)
        assert reply.status == 403 and "CSRF" in reply.text
    assert stay_count(desk) == before
    # The login form too: without the token of the page it came from.
    assert Client(desk.url).post("/login", {"name": "anna", "password": "x"}).status == 403


def test_reception_cannot_reach_owner_pages(desk: Running) -> None:
    client = reception(desk)
    for path in ("/users", "/settings"):
        reply = client.get(path)
        assert reply.status == 403, path
    reply = client.post("/users", {"csrf": client.csrf("/stays"), "name": "x", "role": "owner"})
    assert reply.status == 403
    owner = Client(desk.url)
    assert owner.login("owner", OWNER_PASSWORD).status == 303
    assert owner.get("/users").status == 200
    settings = owner.get("/settings")
    assert settings.status == 200 and "0.2426" in settings.text  # the tariff, read-only
    assert OWNER_PASSWORD not in settings.text


def test_login_sends_back_only_inside_the_desk(desk: Running) -> None:
    for target, expected in (
        ("/sessions", "/sessions"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
    ):
        client = Client(desk.url)
        path = f"/login?next={quote(target, safe='')}"
        form = {"csrf": client.csrf(path), "name": "anna", "password": RECEPTION_PASSWORD}
        assert client.post(path, form).location == expected, target


def test_the_owner_adds_a_reception_account_that_can_log_in(desk: Running) -> None:
    owner = Client(desk.url)
    assert owner.login("owner", OWNER_PASSWORD).status == 303
    short = owner.submit("/users", {"name": "marc", "role": "reception", "password": "short"})
    assert short.status == 422 and "10 caractères" in html.unescape(short.text)
    done = owner.submit(
        "/users", {"name": "marc", "role": "reception", "password": "marc-password-1"}
    )
    assert done.status == 303
    marc = Client(desk.url)
    assert marc.login("marc", "marc-password-1").status == 303
    assert marc.get("/users").status == 403


def test_cookies_are_httponly_and_samesite(desk: Running) -> None:
    client = Client(desk.url)
    token = client.csrf("/login")
    reply = client.post("/login", {"csrf": token, "name": "anna", "password": RECEPTION_PASSWORD})
    cookie = next(c for c in reply.headers["set-cookie"].split("\n") if "desk_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


def test_ten_wrong_passwords_in_a_row_are_slowed_down(desk: Running) -> None:
    assert add_user(desk.site, "victim", "reception", "the-right-password").returncode == 0
    client = Client(desk.url)
    statuses = [client.login("victim", "wrong password").status for _ in range(10)]
    assert statuses == [401] * 5 + [429] * 5
    refused = client.login("victim", "wrong password")
    # Each refused attempt doubles the wait: 2^(11 - 5) s by now.
    assert refused.status == 429 and int(refused.headers["retry-after"]) >= 60
    assert "réessayez dans" in refused.text
    # Even the right password waits its turn: nothing is learnt by guessing faster.
    assert client.login("victim", "the-right-password").status == 429
    # Another name from the same address is not locked out by it.
    assert Client(desk.url).login("anna", RECEPTION_PASSWORD).status == 303


def test_stored_passwords_are_not_in_clear(desk: Running) -> None:
    raw = desk.database.read_bytes()
    for password in (RECEPTION_PASSWORD, OWNER_PASSWORD):
        assert password.encode() not in raw
    with sqlite3.connect(desk.database) as conn:
        hashes = [row[0] for row in conn.execute("SELECT password_hash FROM users")]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)


def test_logout_ends_the_session(desk: Running) -> None:
    client = reception(desk)
    assert client.get("/stays").status == 200
    assert client.submit("/logout", {}, page="/stays").status == 303
    assert client.get("/stays").location.startswith("/login")


# ---- the badge list follows every change -----------------------------------------------------


def retained_badge_list(desk: Running) -> dict[str, Any]:
    """The retained list as a subscriber arriving now gets it."""
    recorder = Recorder(desk.broker_port, ("irve/hotel-bill/badges",))
    try:
        recorder.wait(lambda: bool(recorder.retained()), "the retained badge list")
        payload: dict[str, Any] = json.loads(recorder.retained()["irve/hotel-bill/badges"])
    finally:
        recorder.close()
    assert set(payload) == {"ts", "badges"}
    return payload


def badge_list(desk: Running, since: datetime | None = None) -> list[dict[str, str]]:
    """The test's badges in the retained list; with `since`, in the first list published at
    or after that instant (the desk publishes right after answering a form)."""
    deadline = time.monotonic() + 10
    while True:
        payload = retained_badge_list(desk)
        published = datetime.fromisoformat(payload["ts"].replace("Z", "+00:00"))
        if since is None or published >= since.replace(
            microsecond=since.microsecond // 1000 * 1000
        ):
            return [b for b in payload["badges"] if b["badge"].startswith("L-")]
        assert time.monotonic() < deadline, f"no badge list published since {since}"
        time.sleep(0.05)


def test_badge_list_is_republished_on_edit_extend_and_close(desk: Running) -> None:
    client = reception(desk)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    hours4 = timedelta(hours=4)  # the desk's grace
    mark = datetime.now(UTC)
    created = client.submit(
        "/stays/new", stay_form("41", now - timedelta(hours=1), now + timedelta(days=1), "L-1")
    )
    stay = created.location
    assert badge_list(desk, mark) == [
        {"badge": "L-1", "room": "41", "until": iso(typed(now + timedelta(days=1)) + hours4)}
    ]
    edited = stay_form("41", now - timedelta(hours=1), now + timedelta(days=1), "L-1 L-2")
    mark = datetime.now(UTC)
    assert client.submit(stay, edited).status == 303
    assert [b["badge"] for b in badge_list(desk, mark)] == ["L-1", "L-2"]
    later = now + timedelta(days=3)
    mark = datetime.now(UTC)
    assert client.submit(stay, {"departure": local(later)}).status == 303
    assert {b["until"] for b in badge_list(desk, mark)} == {iso(typed(later) + hours4)}
    # A stay that has not started yet is not in force: its badge waits for the arrival.
    client.submit(
        "/stays/new", stay_form("42", now + timedelta(days=5), now + timedelta(days=6), "L-3")
    )
    assert "L-3" not in [b["badge"] for b in badge_list(desk)]
    mark = datetime.now(UTC)
    assert client.submit(stay + "/close", {}, page=stay).status == 303
    assert badge_list(desk, mark) == []
    audit = html.unescape(client.get(stay).text)
    for action in ("created", "edited", "closed"):
        assert f"<td>{action}</td>" in audit
    # A closed stay no longer changes.
    assert client.submit(stay, {"departure": local(later)}, page="/stays").status == 409


def test_a_desk_starting_republishes_the_list_and_over_tls_cookies_are_secure(
    desk: Running, tmp_path: Path
) -> None:
    client = reception(desk)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    form = stay_form("51", now - timedelta(hours=1), now + timedelta(days=1), "L-51")
    assert client.submit("/stays/new", form).status == 303
    publish.single(  # the broker forgets the list (an empty retained message deletes it)
        "irve/hotel-bill/badges", b"", qos=1, retain=True, port=desk.broker_port
    )
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(tmp_path / "key.pem")),
            *("-out", str(tmp_path / "cert.pem")),
        ],
        check=True,
        capture_output=True,
    )
    data = yaml.safe_load(desk.site.read_text(encoding="utf-8"))
    data["desk"]["listen"] = f"127.0.0.1:{servers.free_port()}"
    data["desk"]["tls"] = {
        "cert_file": str(tmp_path / "cert.pem"),
        "key_file": str(tmp_path / "key.pem"),
    }
    data["mqtt"]["client_id"] = "second-desk"
    second = tmp_path / "site.yaml"
    second.write_text(yaml.safe_dump(data), encoding="utf-8")
    with desk_process(second, tmp_path / "desk.log") as url:
        assert url.startswith("https://")
        assert [b["badge"] for b in badge_list(desk)] == ["L-51"]
        secure = Client(url)
        reply = secure.login("anna", RECEPTION_PASSWORD)
        cookie = next(c for c in reply.headers["set-cookie"].split("\n") if "desk_session=" in c)
        assert "Secure" in cookie and "HttpOnly" in cookie


# ---- bad input in the stay form ---------------------------------------------------------------


def error_of(reply_text: str, field: str) -> str:
    found = re.search(rf'id="error-{field}">([^<]+)<', reply_text)
    assert found, f"no message for {field}"
    return html.unescape(found.group(1))


def test_bad_stays_are_refused_with_a_clear_message_and_nothing_saved(desk: Running) -> None:
    client = reception(desk)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first = client.submit("/stays/new", stay_form("21", now, now + timedelta(days=2), "B21"))
    assert first.status == 303
    before = stay_count(desk)
    cases = [
        (stay_form("22", now, now - timedelta(hours=2)), "departure", "après l'arrivée"),
        # Room 21's badge is still valid 4 h after its departure.
        (
            stay_form("28", now + timedelta(days=2, hours=2), now + timedelta(days=3), "B21"),
            "badges",
            "déjà donné",
        ),
        (
            stay_form("21", now + timedelta(days=1), now + timedelta(days=3)),
            "arrival",
            "déjà occupée",
        ),
        (stay_form("23", now, now + timedelta(days=1), "B21"), "badges", "déjà donné"),
        (
            stay_form("24", now + timedelta(days=900), now + timedelta(days=901)),
            "arrival",
            "hors limites",
        ),
        (
            stay_form("25", now - timedelta(days=400), now - timedelta(days=399)),
            "arrival",
            "hors limites",
        ),
        ({**stay_form("26", now, now + timedelta(days=1)), "arrival": "demain"}, "arrival", "Date"),
        ({**stay_form("27", now, now + timedelta(days=1)), "fee_eur": "-3"}, "fee_eur", "nombre"),
    ]
    for form, field, words in cases:
        reply = client.submit("/stays/new", form)
        assert reply.status == 422, (field, reply.status)
        assert words in error_of(reply.text, field), (field, reply.text)
        assert "n'a pas été enregistré" in html.unescape(reply.text)
        assert f'value="{form["room"]}"' in reply.text  # what was typed is kept
    assert stay_count(desk) == before


def test_a_locked_database_gives_a_clear_page_and_nothing_half_written(desk: Running) -> None:
    client = reception(desk)
    now = datetime.now(UTC)
    token = client.csrf("/stays/new")
    before = stay_count(desk)
    holder = sqlite3.connect(desk.database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        reply = client.post(
            "/stays/new", {"csrf": token, **stay_form("31", now, now + timedelta(days=1), "B31")}
        )
        assert time.monotonic() - started < 15
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert reply.status == 503
    page = html.unescape(reply.text)
    assert "verrouillée" in page and "rien n'a été enregistré" in page
    assert stay_count(desk) == before
    # Once free again, the same form goes through, and the desk is still up.
    assert (
        client.submit("/stays/new", stay_form("31", now, now + timedelta(days=1), "B31")).status
        == 303
    )
    assert stay_count(desk) == before + 1


@pytest.mark.process
def test_a_full_disk_gives_a_clear_page_and_nothing_half_written(tmp_path: Path) -> None:
    """The database on a small filesystem of its own (tmpfs: needs root or CAP_SYS_ADMIN, else
    skipped, saying so), filled once the user is signed in."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a full-disk test: {mounted.stderr.strip()}")
    broker = servers.mosquitto(tmp_path / "mosquitto")
    influx = servers.influxd(tmp_path / "influxd")
    broker.start()
    influx.start()
    try:
        site = desk_site(tmp_path, broker, influx)
        data = yaml.safe_load(site.read_text(encoding="utf-8"))
        data["desk"]["database"] = str(tiny / "desk.sqlite3")
        site.write_text(yaml.safe_dump(data), encoding="utf-8")
        with desk_process(site, tmp_path / "desk.log") as url:
            client = Client(url)
            assert client.login("owner", OWNER_PASSWORD).status == 303
            token = client.csrf("/stays/new")
            now = datetime.now(UTC)
            # Badges enough that the stay cannot fit in what the filesystem has left.
            form = stay_form(
                "41", now, now + timedelta(days=1), " ".join(f"B{i}" for i in range(400))
            )
            TinyDisk(tiny).fill()
            reply = client.post("/stays/new", {"csrf": token, **form})
            assert reply.status == 503, reply.text
            page = html.unescape(reply.text)
            assert "Base de données pleine" in page and "rien n'a été enregistré" in page
            TinyDisk(tiny).free()
            assert Client(url).get("/healthz").status == 200  # still serving
            with sqlite3.connect(tiny / "desk.sqlite3") as conn:
                assert conn.execute("SELECT count(*) FROM stays").fetchone()[0] == 0
                assert conn.execute("SELECT count(*) FROM stay_badges").fetchone()[0] == 0
                assert conn.execute("SELECT count(*) FROM audit").fetchone()[0] == 0
            # With room again, the same stay is saved whole.
            assert client.submit("/stays/new", form).status == 303
    finally:
        influx.stop()
        broker.stop()
        subprocess.run(["umount", "-l", str(tiny)], check=False)
