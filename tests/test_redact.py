"""No secret in any log line, error or /healthz, at any level.

Every command runs as a real `irve` process at --log-level DEBUG with every secret set: the
MQTT password, the InfluxDB token, password and a `user:password@` in its URL, and notify
URLs carrying tokens (ntfy with a token query and with user:password at a local ntfy
endpoint, Telegram and Pushover, whose tokens apprise prints at DEBUG). Their whole output
is searched for each secret.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from collector import redact
from scripts.processes import port_open
from tests.support import servers
from tests.support.influx_db import create_database
from tests.support.ntfy_server import NtfyServer
from tests.support.sim_helpers import simulate_process, socket_meter, tcp_bus, write_site

MQTT_PASSWORD = "mqtt-pw-Secret-4711"
INFLUX_TOKEN = "influx-token-Secret-0815"
INFLUX_PASSWORD = "influx-pw-Secret-1234"
URL_PASSWORD = "url-pw-Secret-9999"
NTFY_TOKEN = "tk_ntfyTokenSecret42"
NTFY_PASSWORD = "ntfy-pw-Secret-77"
TELEGRAM_TOKEN = "123456789:AAtelegramBotTokenSecret"
PUSHOVER_USER = "uPushoverUserKeySecret000000a"
PUSHOVER_TOKEN = "aPushoverAppTokenSecret00000b"
SECRETS = (
    MQTT_PASSWORD,
    INFLUX_TOKEN,
    INFLUX_PASSWORD,
    URL_PASSWORD,
    NTFY_TOKEN,
    NTFY_PASSWORD,
    TELEGRAM_TOKEN,
    PUSHOVER_USER,
    PUSHOVER_TOKEN,
)
IRVE = [sys.executable, "-m", "collector"]


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def setup(
    tmp_path: Path, broker: servers.Server, influx: servers.Server, ntfy: NtfyServer
) -> tuple[Path, Path, dict[str, str]]:
    """A site file (a socket and one whose bus is dead, so a meter_offline alert goes out to
    every notify URL), the simulator's site file (the live bus alone: `irve simulate` serves
    every bus it is given) and the environment holding every secret."""
    create_database(influx)
    board, cp1 = tcp_bus("board"), socket_meter("cp1", "board", 1)
    simulated = write_site(tmp_path, buses=[board], meters=[cp1], name="simulated.yaml")
    site = write_site(
        tmp_path,
        buses=[board, tcp_bus("dead")],
        meters=[cp1, socket_meter("cp2", "dead", 2)],
        poll_interval_s=0.2,
        mqtt={"host": "127.0.0.1", "port": broker.port, "username": "test-site"},
        influx={
            "url": f"http://irve:{URL_PASSWORD}@127.0.0.1:{influx.port}",
            "api_version": "1",
            "database": "irve",
            "username": "irve",
        },
        alerts={"offline_after_polls": 1},
        notify={"retry_initial_s": 0.1, "retry_max_s": 0.3, "timeout_s": 2},
        state_dir=str(tmp_path / "state"),
    )
    urls = [
        f"ntfy://127.0.0.1:{ntfy.port}/irve?token={NTFY_TOKEN}",
        f"ntfy://irve:{NTFY_PASSWORD}@127.0.0.1:{ntfy.port}/irve2",
        f"tgram://{TELEGRAM_TOKEN}/12345",
        f"pover://{PUSHOVER_USER}@{PUSHOVER_TOKEN}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    env.update(
        IRVE_MQTT__PASSWORD=MQTT_PASSWORD,
        IRVE_INFLUX__TOKEN=INFLUX_TOKEN,
        IRVE_INFLUX__PASSWORD=INFLUX_PASSWORD,
        IRVE_NOTIFY__URLS=json.dumps(urls),
        # The ingestor is configured by the environment alone.
        IRVE_MQTT__HOST="127.0.0.1",
        IRVE_MQTT__PORT=str(broker.port),
        IRVE_MQTT__USERNAME="ingestor",
        IRVE_INFLUX__URL=f"http://irve:{URL_PASSWORD}@127.0.0.1:{influx.port}",
        IRVE_INFLUX__API_VERSION="1",
        IRVE_INFLUX__USERNAME="irve",
        IRVE_INGEST__HTTP_HOST="127.0.0.1",
        IRVE_INGEST__HTTP_PORT=str(servers.free_port()),
        PYTHONPATH=str(Path(__file__).resolve().parent.parent),
    )
    return site, simulated, env


def command(name: str, *args: str) -> list[str]:
    return [*IRVE, name, "--log-level", "DEBUG", *args]


def run(env: dict[str, str], name: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        command(name, *args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.stdout + done.stderr


def run_until(
    env: dict[str, str], done: Callable[[], bool], what: str, name: str, *args: str
) -> str:
    """A long-running command until `done()` (`what`, 60 s at most) and 3 s more, then
    SIGTERM; its output. (A fixed run time was too short when a loaded machine slowed the
    start-up: the condition makes the wait as long as the start needs.)"""
    process = subprocess.Popen(
        command(name, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        servers.wait_until(done, 60, what)
    except TimeoutError as exc:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
        raise AssertionError(f"{exc}; irve {name} printed:\n{output[-6000:]}") from exc
    time.sleep(3)
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=30)[0]


def test_no_command_prints_a_secret_at_debug(
    setup: tuple[Path, Path, dict[str, str]], ntfy: NtfyServer
) -> None:
    site, simulated, env = setup
    board_port = int(yaml.safe_load(simulated.read_text())["buses"][0]["port"])
    outputs: dict[str, str] = {}
    with simulate_process(simulated, port=board_port):
        outputs["check"] = run(env, "check", "-c", str(site))
        outputs["read"] = run(env, "read", "-c", str(site), "--meter", "cp1")
        # Until the offline alert reached the ntfy endpoint, and 3 s more for the other
        # channels of the same alert (Telegram, Pushover), which apprise prints at DEBUG.
        outputs["collect"] = run_until(
            env,
            lambda: bool(ntfy.messages),
            "the offline alert at the ntfy endpoint (token URL in use)",
            "collect",
            "-c",
            str(site),
        )

    ingest = subprocess.Popen(
        command("ingest"), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    health_url = f"http://127.0.0.1:{env['IRVE_INGEST__HTTP_PORT']}/healthz"
    try:
        servers.wait_until(lambda: port_open(int(env["IRVE_INGEST__HTTP_PORT"])), 20, "/healthz")
        try:
            with urllib.request.urlopen(health_url, timeout=5) as response:
                outputs["healthz"] = response.read().decode()
        except urllib.error.HTTPError as exc:  # 503 while something is down: still checked
            outputs["healthz"] = exc.read().decode()
    finally:
        ingest.send_signal(signal.SIGTERM)
        outputs["ingest"] = ingest.communicate(timeout=30)[0]

    month = ("--arrival", "2026-11-01", "--departure", "2026-11-03")
    outputs["bill"] = run(env, "bill", "-c", str(site), "--badge", "room-1", *month)
    outputs["compare"] = run(env, "compare", "-c", str(site), "--month", "2026-11")
    outputs["recompute"] = run(
        env, "recompute", "-c", str(site), "--from", "2026-11-01", "--to", "2026-11-02"
    )
    outputs["demo-history"] = run(env, "demo-history", "-c", str(site), "--days", "0.05")

    for name, text in outputs.items():
        assert text.strip(), f"{name}: no output at all"
        assert not leaked(text), f"{name} printed {leaked(text)}:\n{text[-3000:]}"
    # The URL is still shown, its user and password taken out into the settings.
    assert "into http://127.0.0.1:" in outputs["ingest"]
    assert any(" DEBUG " in text for text in outputs.values())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw-12345@db:8086/x", "http://user:***@db:8086/x"),
        ("https://h/q?db=irve&u=me&p=hunter2&epoch=ms", "https://h/q?db=irve&u=me&p=***&epoch=ms"),
        ("ntfys://ntfy.sh/topic?token=tk_abc&priority=high", "ntfys://ntfy.sh/topic?token=***&priority=high"),
        ("at http://db:8086 (no credentials)", "at http://db:8086 (no credentials)"),
        ("mailto://a@b.example", "mailto://a@b.example"),
    ],
)  # fmt: skip
def test_url_redaction_by_shape(text: str, expected: str) -> None:
    assert redact.redact_url(text) == expected


def test_registered_secrets_and_the_token_parts_of_secret_urls_are_masked() -> None:
    redact.register(
        [f"tgram://{TELEGRAM_TOKEN}/12345", f"pover://{PUSHOVER_USER}@{PUSHOVER_TOKEN}"]
    )
    line = f"POST https://api.telegram.org/bot{TELEGRAM_TOKEN}/sendMessage {{'token': '{PUSHOVER_TOKEN}', 'user': '{PUSHOVER_USER}'}}"
    assert not leaked(redact.redact(line))


def test_an_uncaught_traceback_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    redact.register([INFLUX_TOKEN])
    try:
        raise RuntimeError(f"write to http://irve:{URL_PASSWORD}@db:8086 with {INFLUX_TOKEN}")
    except RuntimeError as exc:
        redact._excepthook(RuntimeError, exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "RuntimeError: write to http://irve:***@db:8086 with ***" in err
    assert not leaked(err)


def test_short_url_parts_are_not_masked_in_ordinary_words() -> None:
    url = f"ntfy://irve:{NTFY_PASSWORD}@127.0.0.1:8080/alerts"
    redact.register([url])
    assert redact.redact(f"collector.alerts.notify: {url} failed") == (
        "collector.alerts.notify: *** failed"
    )
    assert redact.redact(f"password {NTFY_PASSWORD}") == "password ***"
