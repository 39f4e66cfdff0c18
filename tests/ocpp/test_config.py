"""The site file's `ocpp:` and `chargers:` keys: validated against the meters, the charger
password from the environment or a secret file like every secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.cli import main
from collector.config import SiteConfig
from collector.settings import load
from tests.support.paths import EXAMPLES


def hotel_with_chargers(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["ocpp"] = {"listen": "0.0.0.0:9000", "authorize": "list"}
    data["chargers"] = [
        {"id": "borne-1", "password": "pw-borne-1", "connectors": {1: "cp1", 2: "cp1", 3: "cp2"}}
    ]
    data.update(changes)
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_chargers_loaded(tmp_path: Path) -> None:
    site = load(SiteConfig, write(tmp_path, hotel_with_chargers()))
    assert site.ocpp is not None and (site.ocpp.host, site.ocpp.port) == ("0.0.0.0", 9000)
    assert site.ocpp.authorize == "list" and site.ocpp.tls is None
    (charger,) = site.chargers
    assert charger.connectors == {1: "cp1", 2: "cp1", 3: "cp2"}
    assert charger.password.get_secret_value() == "pw-borne-1"
    assert "pw-borne-1" not in repr(site)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"chargers": [{"id": "b", "password": "p", "connectors": {1: "main"}}]},
            "chargers[0].connectors.1: no meter with role socket has id 'main'",
        ),
        (
            {"chargers": [{"id": "b", "password": "p", "connectors": {1: "cp9"}}]},
            "chargers[0].connectors.1: no meter with role socket has id 'cp9'",
        ),
        (
            {
                "chargers": [
                    {"id": "b", "password": "p", "connectors": {1: "cp1"}},
                    {"id": "b", "password": "q", "connectors": {1: "cp2"}},
                ]
            },
            "chargers[1].id: duplicate id 'b'",
        ),
        (
            {
                "chargers": [
                    {"id": "a", "password": "p", "connectors": {1: "cp1"}},
                    {"id": "b", "password": "q", "connectors": {1: "cp1"}},
                ]
            },
            "chargers[1].connectors.1: 'cp1' is already served by charger 'a'",
        ),
        (
            {"chargers": [{"id": "b", "connectors": {1: "cp1"}}]},
            "chargers[0].password: required",
        ),
        ({"chargers": [{"id": "b", "password": "p", "connectors": {0: "cp1"}}]}, "must be 1..99"),
        ({"ocpp": None}, "ocpp: required when chargers are listed"),
        ({"chargers": []}, "chargers: ocpp needs at least one charger"),
        ({"ocpp": {"listen": "9000"}}, "ocpp.listen: '9000': expected HOST:PORT"),
        (
            {"ocpp": {"authorize": "badge"}},
            "ocpp.authorize: Input should be 'list', 'any' or 'free'",
        ),
    ],
)
def test_charger_errors_named(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    message: str,
) -> None:
    assert main(["check", "-c", str(write(tmp_path, hotel_with_chargers(**change)))]) == 2
    assert message in capsys.readouterr().err


def test_password_from_the_environment_or_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = hotel_with_chargers()
    del data["chargers"][0]["password"]
    data["chargers"].append({"id": "borne-2", "connectors": {1: "cp2"}})
    data["chargers"][0]["connectors"] = {1: "cp1"}
    secret = tmp_path / "borne-2.pw"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("IRVE_CHARGERS__0__PASSWORD", "from-env")
    monkeypatch.setenv("IRVE_CHARGERS__1__PASSWORD_FILE", str(secret))
    monkeypatch.setenv("IRVE_CHARGERS__1__PASSWORD", "the-file-wins")
    site = load(SiteConfig, write(tmp_path, data))
    assert [c.password.get_secret_value() for c in site.chargers] == ["from-env", "from-a-file"]
    assert [c.id for c in site.chargers] == ["borne-1", "borne-2"]  # the rest from the file


def test_unreadable_charger_secret_file_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IRVE_CHARGERS__0__PASSWORD_FILE", "/nonexistent/pw")
    assert main(["check", "-c", str(write(tmp_path, hotel_with_chargers()))]) == 2
    assert "IRVE_CHARGERS__0__PASSWORD_FILE: cannot read /nonexistent/pw" in capsys.readouterr().err
