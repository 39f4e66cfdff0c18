"""Site file validation: one case per class of error, asserting the message and exit code."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.cli import main
from collector.commands.check import serial_warnings
from collector.config import RtuBus, SiteConfig, TcpBus
from collector.settings import apply_log_level, load
from collector.site import load_site
from tests.support.cli import irve
from tests.support.paths import EXAMPLES


def hotel() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    return data


def run_check(
    tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    code = main(["check", "-c", str(path)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_are_valid(example: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(EXAMPLES / example)]) == 0
    assert "Meters:" in capsys.readouterr().out


def test_summary_names_buses_meters_sockets_and_tariff(capsys: pytest.CaptureFixture[str]) -> None:
    main(["check", "-c", str(EXAMPLES / "hotel-vda.yaml")])
    out = capsys.readouterr().out
    for expected in (
        "hotel-vda",
        "36 kVA",
        "board",
        "cp1",
        "Borne 2",
        "32 A",
        "[unverified]",
        "HC 22:00-06:00",
        "HP 0.2065",
    ):
        assert expected in out


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node: Any = data
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


CASES = [
    ("range", "meters.1.unit", 300, "meters[1].unit: must be 1..247"),
    ("type", "mqtt.port", "abc", "mqtt.port: Input should be a valid integer"),
    ("unknown key", "meters.0.adress", 3, "meters[0].adress: unknown key"),
    ("missing", "site.subscribed_power_kva", None, "site.subscribed_power_kva"),
    ("site id", "site.id", "Hotel VDA", "site.id: String should match pattern"),
    (
        "timezone",
        "site.timezone",
        "Europe/Lille",
        "site.timezone: unknown time zone 'Europe/Lille'",
    ),
    ("bus reference", "meters.1.bus", "rs485", "meters[1].bus: no bus with id 'rs485'"),
    (
        "profile reference",
        "meters.2.profile",
        "acme-x",
        "meters[2].profile: unknown profile 'acme-x'",
    ),
    ("two mains", "meters.1.role", "main", "meters[1]"),
    ("socket fields", "meters.1.socket", None, "meters[1].socket: required when role is socket"),
    (
        "socket rating",
        "meters.1.socket.rated_current_a",
        500,
        "meters[1].socket.rated_current_a: must be 1..125",
    ),
    ("duplicate id", "meters.2.id", "cp1", "meters[2].id: duplicate id 'cp1'"),
    ("duplicate unit", "meters.2.unit", 1, "buses: unit 1 used twice on bus 'board'"),
    ("HC range", "tariff.offpeak", ["22h-6h"], "tariff.offpeak: '22h-6h': expected HH:MM-HH:MM"),
    ("HC time", "tariff.offpeak", ["25:00-06:00"], "'25:00-06:00': not a time of day"),
    (
        "price order",
        "tariff.prices.1.since",
        "2025-01-01",
        "tariff.prices: rows must be in strictly increasing",
    ),
    ("price missing", "tariff.prices.0.hc", None, "tariff.prices[0].hc: required with option hphc"),
    ("bus type", "buses.0.type", "udp", "buses[0]"),
    ("poll interval", "poll_interval_s", 0, "poll_interval_s: must be 0.1..3600"),
    (
        "HC overlap",
        "tariff.offpeak",
        ["22:00-06:00", "05:00-07:00"],
        "tariff.offpeak: '22:00-06:00' and '05:00-07:00' overlap",
    ),
    (
        "HC overlap across midnight",
        "tariff.offpeak",
        ["12:00-14:00", "23:00-01:00", "00:30-02:00"],
        "tariff.offpeak: '23:00-01:00' and '00:30-02:00' overlap",
    ),
    (
        "season HC overlap",
        "tariff.seasons",
        [
            {
                "name": "summer",
                "start": "04-01",
                "end": "10-31",
                "offpeak": ["11:00-15:00", "14:00-16:00"],
            }
        ],
        "tariff.seasons[0].offpeak: '11:00-15:00' and '14:00-16:00' overlap",
    ),
    (
        "season day",
        "tariff.seasons",
        [{"name": "summer", "start": "04-31", "end": "10-31", "offpeak": ["02:00-06:00"]}],
        "tariff.seasons[0].start: '04-31' is not a day of the year",
    ),
    (
        "hidden season",
        "tariff.seasons",
        [
            {"name": "summer", "start": "04-01", "end": "10-31", "offpeak": ["02:00-06:00"]},
            {"name": "july", "start": "07-01", "end": "07-31", "offpeak": ["12:00-16:00"]},
        ],
        "tariff.seasons[1]: never applies: every day from 07-01 to 07-31 is in an earlier season",
    ),
    (
        "hidden season across the new year",
        "tariff.seasons",
        [
            {"name": "winter", "start": "11-01", "end": "03-31", "offpeak": ["02:00-06:00"]},
            {"name": "holidays", "start": "12-20", "end": "01-05", "offpeak": ["12:00-16:00"]},
        ],
        "tariff.seasons[1]: never applies",
    ),
    (
        "impossible date",
        "tariff.prices.1.since",
        "2026-02-30",
        "tariff.prices[1].since: '2026-02-30' is not a date",
    ),
    (
        "decimal comma",
        "tariff.prices.1.hc",
        "0,1579",
        "tariff.prices[1].hc: decimal comma: write 0.1579",
    ),
]


@pytest.mark.parametrize(("label", "path", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_error_class_names_its_path(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    label: str,
    path: str,
    value: Any,
    message: str,
) -> None:
    data = hotel()
    if value is None:
        parent, _, key = path.rpartition(".")
        node: Any = data
        for part in parent.split("."):
            node = node[int(part)] if part.isdigit() else node[part]
        del node[key]
    else:
        _set(data, path, value)
    code, output = run_check(tmp_path, data, capsys)
    assert code == 2, output
    assert message in output


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (6, "influx.raw_retention_days: must be 7..100000"),
        (0, "influx.raw_retention_days: must be 7..100000"),
        ("ninety", "influx.raw_retention_days: Input should be a valid integer"),
        (7.5, "influx.raw_retention_days: Input should be a valid integer"),
    ],
)
def test_raw_retention_days_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: Any, message: str
) -> None:
    data = hotel()
    data["influx"] = {"raw_retention_days": value}
    code, output = run_check(tmp_path, data, capsys)
    assert code == 2, output
    assert message in output


def test_raw_retention_days_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(SiteConfig, EXAMPLES / "hotel-vda.yaml").influx.raw_retention_days is None
    monkeypatch.setenv("IRVE_INFLUX__RAW_RETENTION_DAYS", "90")
    assert load(SiteConfig, EXAMPLES / "hotel-vda.yaml").influx.raw_retention_days == 90
    # The Docker stack passes ${RAW_RETENTION_DAYS:-}: empty when .env leaves it empty.
    monkeypatch.setenv("IRVE_INFLUX__RAW_RETENTION_DAYS", "")
    assert load(SiteConfig, EXAMPLES / "hotel-vda.yaml").influx.raw_retention_days is None


def test_tariff_edges_that_are_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ranges that touch, a range ending at 24:00 beside one from 00:00, 29 February and
    seasons that only partly overlap (the first wins on the shared days) are all accepted."""
    data = hotel()
    data["tariff"]["offpeak"] = ["01:00-07:00", "07:00-08:00", "22:00-24:00", "00:00-01:00"]
    data["tariff"]["seasons"] = [
        {"name": "summer", "start": "04-01", "end": "10-31", "offpeak": ["02:00-06:00"]},
        {"name": "late", "start": "10-01", "end": "02-29", "offpeak": ["12:00-16:00"]},
    ]
    code, output = run_check(tmp_path, data, capsys)
    assert code == 0, output


def test_phases_must_fit_the_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = hotel()
    data["meters"][1]["socket"]["phases"] = 3
    code, output = run_check(tmp_path, data, capsys)
    assert code == 2
    assert "meters[1].socket.phases: 3 phases but profile eastron-sdm120 measures 1" in output


def test_missing_and_broken_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("site: [unclosed\n")
    assert main(["check", "-c", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert main(["no-such-command"]) == 2


def test_environment_overrides_and_secret_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "mqtt_password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("IRVE_MQTT__HOST", "broker.lan")
    monkeypatch.setenv("IRVE_MQTT__PASSWORD_FILE", str(secret))
    monkeypatch.setenv("IRVE_INFLUX__TOKEN", "tok")
    monkeypatch.setenv("IRVE_POLL_INTERVAL_S", "2.5")
    monkeypatch.setenv("IRVE_ENERGY__STATE_FILE", str(tmp_path / "state.json"))  # not a secret
    site = load(SiteConfig, EXAMPLES / "hotel-vda.yaml")
    assert site.mqtt.host == "broker.lan"
    assert site.mqtt.username == "collector"  # from the file, merged with the environment
    assert site.mqtt.password is not None and site.mqtt.password.get_secret_value() == "s3cret"
    assert site.influx.token is not None and site.influx.token.get_secret_value() == "tok"
    assert site.poll_interval_s == 2.5
    assert site.energy.state_file == tmp_path / "state.json"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IRVE_MQTT__PORT", "99999", "IRVE_MQTT__PORT: must be 1..65535"),
        (
            "IRVE_INFLUX__RAW_RETENTION_DAYS",
            "3",
            "IRVE_INFLUX__RAW_RETENTION_DAYS: must be 7..100000",
        ),
        ("IRVE_TARIFF__PRICES__1__BASE", "0,1927", "IRVE_TARIFF__PRICES__1__BASE: decimal comma"),
        ("IRVE_METERS__2__BUS", "rs485", "IRVE_METERS__2__BUS: no bus with id 'rs485'"),
        (
            "IRVE_BUSES",
            '[{"id": "board", "type": "tcp", "host": "10.0.0.9", "port": 0}]',
            "IRVE_BUSES: buses[0].port: must be 1..65535",
        ),
    ],
)
def test_environment_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    message: str,
) -> None:
    """The installer fixes the variable, not the file: the file's key would send them looking
    in the wrong place."""
    monkeypatch.setenv(name, value)
    assert main(["check", "-c", str(EXAMPLES / "hotel-vda.yaml")]) == 2
    assert message in capsys.readouterr().err


def test_unreadable_secret_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IRVE_MQTT__PASSWORD_FILE", "/nonexistent/secret")
    assert main(["check", "-c", str(EXAMPLES / "hotel-vda.yaml")]) == 2
    assert "IRVE_MQTT__PASSWORD_FILE: cannot read /nonexistent/secret" in capsys.readouterr().err


def test_environment_reaches_into_list_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRVE_METERS__1__UNIT", "7")
    monkeypatch.setenv("IRVE_METERS__2__SOCKET__RATED_CURRENT_A", "16")
    monkeypatch.setenv("IRVE_BUSES__0__HOST", "192.168.10.5")
    site = load(SiteConfig, EXAMPLES / "hotel-vda.yaml")
    assert [m.unit for m in site.meters] == [10, 7, 2]
    cp2 = site.meters[2]
    assert cp2.socket is not None and cp2.socket.rated_current_a == 16
    assert cp2.id == "cp2" and cp2.profile  # the rest of the item comes from the file
    bus = site.buses[0]
    assert isinstance(bus, TcpBus) and bus.host == "192.168.10.5"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IRVE_METERS__9__UNIT", "7", "IRVE_METERS__9__UNIT: meters has no item 9 (3 items)"),
        ("IRVE_METERS__1__UNIT", "300", "IRVE_METERS__1__UNIT: must be 1..247"),
        ("IRVE_METERS__1__SOCKET", "{oops", "IRVE_METERS__1__SOCKET: not valid JSON"),
    ],
)
def test_list_item_override_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    message: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["check", "-c", str(EXAMPLES / "hotel-vda.yaml")]) == 2
    assert message in capsys.readouterr().err


def test_secret_list_from_a_file_one_per_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = tmp_path / "notify_urls"
    urls.write_text("ntfy://ntfy.sh/hotel-vda\n\ntgram://bot-token/12345\n")
    monkeypatch.setenv("IRVE_NOTIFY__URLS_FILE", str(urls))
    site = load(SiteConfig, EXAMPLES / "hotel-vda.yaml")
    assert [u.get_secret_value() for u in site.notify.urls] == [
        "ntfy://ntfy.sh/hotel-vda",
        "tgram://bot-token/12345",
    ]


def test_log_level_from_the_file_and_its_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)  # restored after the test
    data = hotel()
    data["log_level"] = "debug"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    load_site(str(path))  # as every command loads its site
    assert root.level == logging.DEBUG
    monkeypatch.setenv("IRVE_LOG_LEVEL", "WARNING")  # what `--log-level` sets, above the file
    load_site(str(path))
    assert root.level == logging.WARNING
    data["log_level"] = "chatty"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.delenv("IRVE_LOG_LEVEL")
    code, output = run_check(tmp_path, data, capsys)
    assert code == 2 and "log_level: Input should be 'DEBUG'" in output


# --- Bad site files through the real commands ---------------------------------------------------


GITE = (EXAMPLES / "gite-one-socket.yaml").read_text(encoding="utf-8")

BAD_FILES: list[tuple[str, bytes | None, str]] = [
    (
        "impossible date",
        GITE.replace("since: 2026-02-01", "since: 2026-02-30").encode(),
        "tariff.prices[0].since: '2026-02-30' is not a date: day value is outside expected range",
    ),
    (
        "Latin-1 from Notepad",
        GITE.encode("latin-1"),
        "site.yaml: line 4: byte 0xee is not UTF-8 (saved as Latin-1 or Windows-1252?)",
    ),
    ("empty", b"", "site.yaml: the file is empty"),
    ("list at the top", b"- site: {id: x}\n", "site.yaml: expected a mapping at the top level"),
    (
        "a number",
        b"42\n",
        "site.yaml: expected a mapping at the top level (site:, tariff:, ...), not the value 42",
    ),
    (
        "syntax error",
        b"site:\n  id: x\n  name: [\n",
        "site.yaml: not valid YAML: line 4, column 1: expected the node content",
    ),
    (
        "duplicate key",
        GITE.replace(
            "  timezone: Europe/Paris\n", "  timezone: Europe/Paris\n  id: other\n"
        ).encode(),
        "site.yaml: not valid YAML: line 6, column 3: duplicate key 'id' (first on line 3)",
    ),
    (
        "decimal comma in a flow mapping",
        GITE.replace("base: 0.1927", "base: 0,1927").encode(),
        "tariff.prices[0].base: decimal comma: write 0.1927",
    ),
    (
        "decimal comma in a block",
        GITE.replace(
            "{since: 2026-02-01, base: 0.1927}", "since: 2026-02-01\n      base: 0,1927"
        ).encode(),
        "tariff.prices[0].base: decimal comma: write 0.1927",
    ),
    ("missing file", None, "site.yaml: no such file"),
]


@pytest.mark.process
@pytest.mark.parametrize("command", ["check", "collect"])
@pytest.mark.parametrize(("label", "content", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_site_file_exits_2_naming_the_problem(
    tmp_path: Path, command: str, label: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / "site.yaml"
    if content is not None:
        path.write_bytes(content)
    result = irve(command, "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stderr.startswith(f"irve {command}: invalid configuration:\n")


@pytest.mark.process
@pytest.mark.parametrize("command", ["check", "collect"])
def test_a_directory_as_site_file(tmp_path: Path, command: str) -> None:
    result = irve(command, "-c", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert f"{tmp_path}: is a directory, not a file" in result.stderr


@pytest.mark.process
def test_a_profile_not_in_utf8_is_named(tmp_path: Path) -> None:
    mine = tmp_path / "profiles"
    mine.mkdir()
    (mine / "acme.yaml").write_bytes("id: acme\nmanufacturer: Société\n".encode("latin-1"))
    data = yaml.safe_load(GITE)
    data["profiles_dir"] = [str(mine)]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = irve("check", "-c", str(path))
    assert result.returncode == 2, result.stderr
    assert f"{mine / 'acme.yaml'}: line 2: byte 0xe9 is not UTF-8" in result.stderr


@pytest.mark.process
@pytest.mark.parametrize("command", ["check", "collect"])
def test_unreadable_site_file(tmp_path: Path, command: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(GITE, encoding="utf-8")
    path.chmod(0)
    argv = [sys.executable, "-m", "collector", command, "-c", str(path)]
    if os.geteuid() == 0:  # root reads any file: take away the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux) to drop the capability")
        argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"{path}: cannot read: Permission denied" in result.stderr


@pytest.mark.process
def test_a_bom_from_notepad_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_bytes(GITE.encode("utf-8-sig"))
    result = irve("check", "-c", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.process
def test_check_refuses_missing_certificate_files_as_collect_does(tmp_path: Path) -> None:
    data = yaml.safe_load(GITE)
    data["mqtt"] = {
        "tls": True,
        "ca_file": str(tmp_path / "ca.pem"),
        "key_file": str(tmp_path / "client.key"),
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    for command in ("check", "collect"):
        result = irve(command, "-c", str(path))
        assert result.returncode == 2, result.stderr
        assert f"mqtt.ca_file: no such file {tmp_path / 'ca.pem'}" in result.stderr
        assert f"mqtt.key_file: no such file {tmp_path / 'client.key'}" in result.stderr
        assert "mqtt.key_file: needs mqtt.cert_file" in result.stderr
    secret = {"IRVE_MQTT__PASSWORD_FILE": str(tmp_path / "nope")}
    result = irve("check", "-c", str(EXAMPLES / "gite-one-socket.yaml"), env=secret)
    assert result.returncode == 2
    assert f"IRVE_MQTT__PASSWORD_FILE: cannot read {tmp_path / 'nope'}" in result.stderr


# --- Log level ---------------------------------------------------------------------------------


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--log-level", "VERBOSE", "check"],
            {},
            "argument --log-level: invalid choice: 'VERBOSE'",
        ),
        (
            ["check", "--log-level", "verbose"],
            {},
            "argument --log-level: invalid choice: 'VERBOSE'",
        ),
        (["check"], {"IRVE_LOG_LEVEL": "verbose"}, "IRVE_LOG_LEVEL: 'verbose' is not one of DEBUG"),
    ],
)
def test_unknown_log_level_is_a_usage_error(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = irve(*args, "-c", str(EXAMPLES / "gite-one-socket.yaml"), env=env)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "args", [["--log-level", "debug", "check"], ["check", "--log-level", "Debug"]]
)
def test_log_level_before_or_after_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """`irve --log-level DEBUG collect` (the Docker stack's command line) was silently ignored:
    the subcommand's default overwrote it."""
    monkeypatch.setenv("IRVE_LOG_LEVEL", "ERROR")  # restored after the test
    assert main([*args, "-c", str(EXAMPLES / "gite-one-socket.yaml")]) == 0
    assert os.environ["IRVE_LOG_LEVEL"] == "DEBUG"


# --- Serial settings against the profiles ------------------------------------------------------


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_follow_their_profiles_serial_defaults(example: str) -> None:
    site, profiles = load_site(str(EXAMPLES / example))
    assert serial_warnings(site, profiles) == []
    for bus in site.buses:
        if isinstance(bus, RtuBus):
            for meter in (m for m in site.meters if m.bus == bus.id):
                factory = profiles[meter.profile].serial
                assert (bus.baudrate, bus.parity, bus.stopbits) == (
                    factory.baudrate,
                    factory.parity,
                    factory.stopbits,
                )


@pytest.mark.process
def test_check_warns_when_a_bus_differs_from_its_meters_factory_settings(tmp_path: Path) -> None:
    data = yaml.safe_load(GITE)
    data["buses"].append({"id": "rs485b", "type": "rtu", "device": "/dev/ttyUSB1", "parity": "E"})
    data["buses"][0]["baudrate"] = 9600
    data["meters"].append(
        {
            "id": "orno",
            "bus": "rs485b",
            "unit": 2,
            "profile": "orno-or-we-514",
            "socket": data["meters"][0]["socket"],
        }
    )
    data["buses"].append({"id": "gateway", "type": "rtu_over_tcp", "host": "10.0.0.9"})
    data["meters"].append(
        {
            "id": "cp3",
            "bus": "gateway",
            "unit": 3,
            "profile": "eastron-sdm120",
            "socket": data["meters"][0]["socket"],
        }
    )
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = irve("check", "-c", str(path))
    assert result.returncode == 0, result.stderr  # a warning, not a failure: meters can be reset
    assert "Meters:" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: buses[0] (rs485): 9600 8N1, but eastron-sdm120 meters (prise) leave the factory "
        "at 2400 8N1: set the bus to that, or each meter to the bus's settings on its front panel"
    ]  # the ORNO's bus matches it (9600 8E1); a gateway's serial side is not in the site file


def test_documented_file_faults_are_the_real_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fault table of docs/configuration.md quotes what `irve check` really prints."""
    real: set[str] = set()
    for label, content, _ in BAD_FILES:
        folder = tmp_path / label.replace(" ", "-")
        folder.mkdir()
        if content is not None:
            (folder / "site.yaml").write_bytes(content)
        assert main(["check", "-c", str(folder / "site.yaml")]) == 2
        real.update(capsys.readouterr().err.replace(f"{folder}/", "").splitlines())
    docs = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    table = docs[docs.index("| fault | message |") :].split("\n\n")[0]
    quoted = [
        m
        for m in re.findall(r"`([^`]+)`", table)
        if m.startswith(("site.yaml:", "tariff.")) and "Permission" not in m  # needs non-root
    ]
    assert len(quoted) >= 8
    assert [m for m in quoted if m not in real] == []


@pytest.mark.process
def test_collect_logs_the_serial_warning_at_start_up(tmp_path: Path) -> None:
    data = yaml.safe_load(GITE)
    data["buses"][0].update(device=str(tmp_path / "no-such-tty"), baudrate=9600)
    data["mqtt"] = {"host": "127.0.0.1", "port": 9}  # nobody there: the warning comes first
    data["state_dir"] = str(tmp_path / "var")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "collect", "-c", str(path)],
        env=environ,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        while line and "WARNING" not in line:
            line = process.stderr.readline()
        assert "buses[0] (rs485): 9600 8N1, but eastron-sdm120 meters (prise)" in line
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_loading_a_configuration_leaves_the_root_logger_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library loading a site file does not change the process's logging; the command
    applies the file's level when it chooses to."""
    data = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data["log_level"] = "debug"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.WARNING)
    site = load(SiteConfig, path)
    assert root.level == logging.WARNING
    apply_log_level(site)
    assert root.level == logging.DEBUG
