"""`irve recompute` end to end: live energy code -> real mosquitto -> `irve ingest` (a
subprocess) -> real influxd; the owner corrects a price row, `irve recompute` republishes,
and the ingestor overwrites the same points (same timestamps, same count, no double count).
"""

from __future__ import annotations

import asyncio
import getpass
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.billing.reprice import span
from collector.billing.statement import SessionUse
from collector.cli import main
from collector.collect import Stages
from collector.commands import recompute
from collector.commands.collect import open_collector, tempo_services
from collector.commands.recompute import publish
from collector.config import MqttSettings, SiteConfig
from collector.settings import load
from collector.site import load_site
from collector.tariffs.tempo import ColourCache, cache_path
from collector.wire.messages import EnergyMessage, SessionMessage
from collector.wire.topics import Topics
from tests.support import servers
from tests.support.billing_helpers import SITE_ID, Charge, local, scripted_messages, site_file
from tests.support.collect_helpers import Recorder
from tests.support.influx_db import create_database, rows
from tests.support.ingest_helpers import config, publisher, spawn, subprocess_env
from tests.support.tls import make_certificates, openssl

# The owner typed the February 2026 HC price as 0.1597 instead of 0.1579 (tariffs.md 2.1).
OLD_ROW = {"since": date(2025, 8, 1), "base": 0.1952, "hp": 0.2081, "hc": 0.1635}
TYPO_ROW = {"since": date(2026, 2, 1), "base": 0.1927, "hp": 0.2065, "hc": 0.1597}
FIXED_ROW = {**TYPO_ROW, "hc": 0.1579}

CHARGES = [
    # 7 kWh at the January HC price, 7 kWh at the February one: across the price change.
    Charge("cp1", local(2026, 1, 31, 23, 0), local(2026, 2, 1, 1, 0), 7000.0),
    Charge("cp2", local(2026, 2, 1, 14, 0), local(2026, 2, 1, 15, 0), 7000.0),  # HP, unchanged
    Charge("cp1", local(2026, 2, 2, 3, 0), local(2026, 2, 2, 4, 0), 7000.0),  # HC, out of range
]


@pytest.fixture
def ingest(
    tmp_path: Path, broker: servers.Server, influx: servers.Server
) -> Iterator[subprocess.Popen[bytes]]:
    create_database(influx)
    cfg = config(broker, influx, "1", client_id="ingest-recompute", flush_interval_s=0.1)
    env = subprocess_env(cfg)
    process = spawn(env, tmp_path / "ingest.log")
    health = f"http://127.0.0.1:{env['IRVE_INGEST__HTTP_PORT']}/healthz"
    servers.wait_until(lambda: servers.http_ok(health), 15, "the ingestor's /healthz")
    time.sleep(0.3)  # its SUBACK, before anything is published
    yield process
    process.terminate()
    process.wait(timeout=10)


def stored(influx: servers.Server, measurement: str) -> list[dict[str, Any]]:
    return sorted(
        rows(influx, f"SELECT * FROM {measurement} GROUP BY *"),
        key=lambda r: (r["time"], r["point"]),
    )


def keys(points: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(p["time"], p["point"], p.get("period") or p.get("badge") or "") for p in points]


def test_recompute_rewrites_costs_in_place(
    tmp_path: Path,
    broker: servers.Server,
    influx: servers.Server,
    ingest: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = site_file(tmp_path, influx.port, broker.port, prices=[OLD_ROW, TYPO_ROW])
    site = load(SiteConfig, path)
    produced = scripted_messages(site, CHARGES, local(2026, 1, 31, 22, 0), local(2026, 2, 2, 5))
    topics = Topics("irve", SITE_ID)
    energy = sessions = 0
    with publisher(broker.port, "collector-stand-in") as pub:
        for out, _ in produced:
            message = out.message
            if isinstance(message, EnergyMessage):
                energy += 1
                pub.publish(topics.point(out.point or "", "energy"), message.to_json())
            elif isinstance(message, SessionMessage):
                sessions += message.event == "end"
                pub.publish(topics.point(out.point or "", "session"), message.to_json())
    servers.wait_until(
        lambda: (
            len(stored(influx, "energy")) == energy
            and len([s for s in stored(influx, "session") if s["event"] == "end"]) == sessions
        ),
        20,
        "the ingestor to store every window and session",
    )
    before_windows, before_sessions = stored(influx, "energy"), stored(influx, "session")
    assert sessions == 3 and len(before_sessions) == 3
    assert sum(w["cost_eur"] for w in before_windows) == pytest.approx(
        7 * 0.1635 + 7 * 0.1597 + 7 * 0.2065 + 7 * 0.1597, abs=1e-3
    )

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["tariff"]["prices"] = [OLD_ROW, FIXED_ROW]
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    argv = ["recompute", "-c", str(path), "--from", "2026-02-01", "--to", "2026-02-02"]
    argv += ["--client-id", "recompute-after-price-fix"]
    assert main([*argv, "--dry-run"]) == 0
    report = capsys.readouterr().out
    # Widened to the session that began on 31 January; its 60 HC windows of February change.
    assert "2026-01-31 22:59 .. 2026-02-02 00:00:" in report
    assert "(60 with a new cost), 2 sessions" in report
    assert main(argv) == 0
    expected = 7 * 0.1635 + 7 * 0.1579 + 7 * 0.2065 + 7 * 0.1597  # 2 Feb keeps the typo
    servers.wait_until(
        lambda: (
            sum(w["cost_eur"] for w in stored(influx, "energy"))
            == pytest.approx(expected, abs=1e-3)
        ),
        20,
        "the ingestor to overwrite the re-priced windows",
    )

    after_windows, after_sessions = stored(influx, "energy"), stored(influx, "session")
    assert keys(after_windows) == keys(before_windows)  # same points, same timestamps
    assert [w["energy_wh"] for w in after_windows] == [w["energy_wh"] for w in before_windows]
    servers.wait_until(
        lambda: stored(influx, "session")[0]["cost_eur"] == pytest.approx(2.2498),
        10,
        "the session across the price change to be re-priced",
    )
    after_sessions = stored(influx, "session")
    assert keys(after_sessions) == keys(before_sessions)
    assert [s["cost_eur"] for s in after_sessions] == pytest.approx(
        [7 * 0.1635 + 7 * 0.1579, 7 * 0.2065, 7 * 0.1597]
    )
    assert after_sessions[0]["cost_hc_eur"] == pytest.approx(2.2498)
    assert after_sessions[0]["energy_wh"] == before_sessions[0]["energy_wh"]
    assert after_sessions[0]["session_id"] == before_sessions[0]["session_id"]


TEMPO_ROW = {
    "since": date(2026, 2, 1),
    "tempo": {
        "blue": {"hp": 0.1612, "hc": 0.1325},
        "white": {"hp": 0.1871, "hc": 0.1499},
        "red": {"hp": 0.7060, "hc": 0.1575},
    },
}


def store_a_fallback_morning(
    tmp_path: Path, broker: servers.Server, influx: servers.Server
) -> tuple[Path, SiteConfig]:
    """7 kWh charged on 7 December 07:00-08:00 before its colour was known: published blue
    (the fallback), stored by the ingestor."""
    path = site_file(tmp_path, influx.port, broker.port, prices=[TEMPO_ROW], option="tempo")
    site = load(SiteConfig, path)
    charge = Charge("cp1", local(2026, 12, 7, 7, 0), local(2026, 12, 7, 8, 0), 7000.0, "room-7",
                    local(2026, 12, 7, 7, 0))  # fmt: skip
    produced = scripted_messages(site, [charge], local(2026, 12, 7, 6, 30), local(2026, 12, 7, 9))
    topics = Topics("irve", SITE_ID)
    windows: list[EnergyMessage] = []
    with publisher(broker.port, "collector-stand-in") as pub:
        for out, _ in produced:
            message = out.message
            if isinstance(message, EnergyMessage):
                windows.append(message)
                pub.publish(topics.point(out.point or "", "energy"), message.to_json())
            elif isinstance(message, SessionMessage):
                pub.publish(topics.point(out.point or "", "session"), message.to_json())
    assert {(w.period, w.tempo_fallback, w.estimated) for w in windows} == {
        ("TEMPO_BLUE_HP", True, True)
    }
    servers.wait_until(
        lambda: len(stored(influx, "energy")) == len(windows) and len(ended(influx)) == 1,
        20,
        "the ingestor to store the fallback windows and the session",
    )
    assert sum(w["cost_eur"] for w in stored(influx, "energy")) == pytest.approx(7 * 0.1612)
    return path, site


def ended(influx: servers.Server) -> list[dict[str, Any]]:
    return [s for s in stored(influx, "session") if s.get("event") == "end"]


def assert_recoloured_red(influx: servers.Server) -> None:
    servers.wait_until(
        lambda: (
            sum(w["cost_eur"] for w in stored(influx, "energy"))
            == pytest.approx(7 * 0.706, abs=1e-6)
        ),
        20,
        "the re-coloured windows",
    )
    after = stored(influx, "energy")
    by_period: dict[str, float] = {}
    for w in after:
        by_period[w["period"]] = by_period.get(w["period"], 0.0) + w["energy_wh"]
    # The fallback points are emptied, not left beside the red ones: 7 kWh in all.
    assert by_period == pytest.approx({"TEMPO_BLUE_HP": 0.0, "TEMPO_RED_HP": 7000.0})
    assert {w["tempo_fallback"] for w in after} == {False}
    servers.wait_until(
        lambda: ended(influx)[0].get("cost_tempo_red_hp_eur") is not None, 10, "the session"
    )
    session = ended(influx)[0]
    assert session["cost_eur"] == pytest.approx(7 * 0.706)
    assert session["energy_tempo_red_hp_wh"] == pytest.approx(7000.0)
    assert session["energy_tempo_blue_hp_wh"] == 0.0 and session["cost_tempo_blue_hp_eur"] == 0.0


def test_tempo_windows_at_the_fallback_are_recoloured_without_counting_twice(
    tmp_path: Path,
    broker: servers.Server,
    influx: servers.Server,
    ingest: subprocess.Popen[bytes],
) -> None:
    """RTE then says 7 December was red: `irve recompute` moves the energy to red HP in place."""
    path, _ = store_a_fallback_morning(tmp_path, broker, influx)
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / f"tempo-{SITE_ID}.json").write_text('{"2026-12-07": "red"}')
    argv = ["recompute", "-c", str(path), "--from", "2026-12-07", "--to", "2026-12-08"]
    assert main([*argv, "--client-id", "recompute-tempo"]) == 0
    assert_recoloured_red(influx)


def test_the_collector_reprices_through_its_own_link_when_it_learns_a_colour(
    tmp_path: Path,
    broker: servers.Server,
    influx: servers.Server,
    ingest: subprocess.Popen[bytes],
) -> None:
    """The colour of 7 December arrives at 09:00 while the collector runs: its re-pricing
    publishes through the collector's link (a second connection with the collector's
    credentials would replace the collector's on the stack's broker)."""
    path, _ = store_a_fallback_morning(tmp_path, broker, influx)
    site, profiles = load_site(str(path))

    async def body() -> None:
        loop = asyncio.get_running_loop()
        async with open_collector(site, profiles, stages=Stages()) as app:
            with ExitStack() as services:
                cache = ColourCache(cache_path(site))
                nine = local(2026, 12, 7, 9, 0)
                tempo_services(site, cache, services, loop, app, lambda: nine, settle_s=0)
                cache.learn(date(2026, 12, 7), "red")
                deadline = time.monotonic() + 20
                while sum(w["cost_eur"] for w in stored(influx, "energy")) < 4:
                    assert time.monotonic() < deadline, "never re-priced"
                    await asyncio.sleep(0.1)

    asyncio.run(body())
    assert_recoloured_red(influx)


def test_span_widens_to_whole_sessions() -> None:
    s = SessionUse("s", "cp1", None, local(2026, 1, 31, 23, 0, 10), 7200.0, {})
    lo, hi = span(local(2026, 2, 1), local(2026, 2, 2), [s], 60)
    assert (lo, hi) == (local(2026, 1, 31, 23, 0), local(2026, 2, 2))
    late = SessionUse("t", "cp1", None, local(2026, 2, 1, 23, 0), 7200.0, {})
    assert span(local(2026, 2, 1), local(2026, 2, 2), [late], 60)[1] == local(2026, 2, 2, 1, 0)


def test_recompute_bad_range_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = site_file(tmp_path)
    assert main(["recompute", "-c", str(path), "--from", "2026-02-02", "--to", "2026-02-01"]) == 2
    assert "--to: must be after --from" in capsys.readouterr().err


def test_recompute_broker_down_exits_1(
    tmp_path: Path, influx: servers.Server, capsys: pytest.CaptureFixture[str]
) -> None:
    create_database(influx)
    path = site_file(tmp_path, influx.port, servers.free_port())
    assert main(["recompute", "-c", str(path), "--from", "2026-02-01", "--to", "2026-02-02"]) == 1
    assert "irve recompute: MQTT:" in capsys.readouterr().err


@pytest.mark.broker
def test_recompute_publishes_with_a_client_certificate_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker that requires a client certificate: `mqtt.cert_file` alone (no `tls: true`,
    no `ca_file`: the server's CA is a system one) is enough, as for the collector."""
    certs = tmp_path / "certs"
    make_certificates(certs)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=recompute",
            "-keyout", str(certs / "client.key"), "-out", str(certs / "client.csr"))  # fmt: skip
    openssl("x509", "-req", "-in", str(certs / "client.csr"), "-CA", str(certs / "ca.crt"),
            "-CAkey", str(certs / "ca.key"), "-CAcreateserial", "-days", "2",
            "-out", str(certs / "client.crt"))  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.crt"))  # the "system" CAs
    port, tls_port = servers.free_port(), servers.free_port()
    broker = servers.mosquitto(
        tmp_path / "broker",
        f"listener {tls_port} 127.0.0.1\ncafile {certs / 'ca.crt'}\n"
        f"certfile {certs / 'server.crt'}\nkeyfile {certs / 'server.key'}\n"
        # Started as root, mosquitto would read the certificates as its own user.
        f"require_certificate true\nuser {getpass.getuser()}\n",
        port=port,
    )
    broker.start()
    try:
        watcher = Recorder(port)
        try:
            settings = MqttSettings(
                host="localhost",
                port=tls_port,
                cert_file=certs / "client.crt",
                key_file=certs / "client.key",
            )
            publish(settings, [("irve/hotel/cp1/energy", b"re-priced")], "irve-recompute-hotel")
            topic = "irve/hotel/cp1/energy"
            watcher.wait(lambda: watcher.on(topic) == [b"re-priced"], "the re-priced message")
            without = settings.model_copy(update={"cert_file": None, "key_file": None})
            monkeypatch.setattr(recompute, "PUBLISH_TIMEOUT_S", 3.0)
            with pytest.raises((OSError, RuntimeError)):  # refused in the handshake or after
                publish(without, [(topic, b"refused")], "irve-recompute-hotel")
        finally:
            watcher.close()
    finally:
        broker.stop()
