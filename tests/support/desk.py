"""Shared by the front desk's tests: a real `irve desk` process on a site served by a real
mosquitto and influxd, and a small HTTP client that keeps cookies and does not follow
redirects (so a test sees the 303 to /login itself)."""

from __future__ import annotations

import contextlib
import html
import http.cookiejar
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from tests.support import servers
from tests.support.billing_helpers import HOTEL_BLOCK, site_file

PARIS = ZoneInfo("Europe/Paris")
OWNER_PASSWORD = "owner-password-for-tests"


def desk_site(tmp_path: Path, broker: servers.Server, influx: servers.Server) -> Path:
    """test_billing's two-socket hotel with a desk on a free port and its own database."""
    path = site_file(tmp_path, influx.port, broker.port, hotel=HOTEL_BLOCK)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["desk"] = {
        "listen": f"127.0.0.1:{servers.free_port()}",
        "database": str(tmp_path / "desk.sqlite3"),
        "grace_h": 4,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def desk_url(site: Path) -> str:
    desk = yaml.safe_load(site.read_text(encoding="utf-8"))["desk"]
    return f"{'https' if desk.get('tls') else 'http'}://{desk['listen']}"


# The tests' own self-signed certificate: the chain is not what they check.
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=INSECURE) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def desk_process(site: Path, log: Path) -> Iterator[str]:
    """`irve desk -c SITE` with the owner's password in the environment, as the stack has it;
    yields its base URL once /healthz answers."""
    irve = Path(sys.executable).with_name("irve")
    env = {**os.environ, "IRVE_DESK__OWNER_PASSWORD": OWNER_PASSWORD}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(irve), "desk", "-c", str(site)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        url = desk_url(site)
        try:
            servers.wait_until(
                lambda: process.poll() is None and healthy(url),
                timeout=30,
                what=f"irve desk ({log})",
            )
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


def _headers(message: Message) -> dict[str, str]:
    """Lower-case names; repeated headers (Set-Cookie) joined by newlines."""
    out: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        out[key] = f"{out[key]}\n{value}" if key in out else value
    return out


@dataclass
class Client:
    base: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> Reply:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        opener = urllib.request.build_opener(
            _NoRedirect,
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=INSECURE),
        )
        try:
            with opener.open(req, timeout=30) as response:
                return Reply(response.status, _headers(response.headers), response.read())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, _headers(exc.headers), exc.read())

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, form: dict[str, str]) -> Reply:
        return self.request("POST", path, form)

    def csrf(self, path: str) -> str:
        """The CSRF token of the form on this page."""
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert found, f"no CSRF token on {path}"
        return html.unescape(found.group(1))

    def login(self, name: str, password: str) -> Reply:
        token = self.csrf("/login")
        return self.post("/login", {"csrf": token, "name": name, "password": password})

    def submit(self, path: str, form: dict[str, str], page: str | None = None) -> Reply:
        """POST `form` with the CSRF token of the page it is on (default: the same path)."""
        return self.post(path, {"csrf": self.csrf(page or path), **form})


def add_user(site: Path, name: str, role: str, password: str) -> subprocess.CompletedProcess[str]:
    irve = Path(sys.executable).with_name("irve")
    return subprocess.run(
        [str(irve), "desk", "add-user", name, "--role", role, "-c", str(site)],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


def local(ts: datetime) -> str:
    """`ts` as a form's datetime-local field takes it: the hotel's local time."""
    return ts.astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")


def typed(ts: datetime) -> datetime:
    """The instant the form's `local(ts)` stands for: in the hour the clocks go back, the desk
    reads the first of the two (`ts` may be the second, an hour later)."""
    return datetime.fromisoformat(local(ts)).replace(tzinfo=PARIS)
