"""Tempo colours reaching the collector (retained MQTT topic on a real broker; RTE's service
played by a local server) and the re-pricing they trigger."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector.commands.collect import open_collector
from collector.config import SiteConfig, TempoColour
from collector.energy.tariff import Tariff
from collector.site import load_site
from collector.tariffs.repricing import Repricer
from collector.tariffs.tempo import known_colours
from tests.support.rte_server import RteServer
from tests.support.servers import Server
from tests.support.sim_helpers import socket_meter, tcp_bus, write_site

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=PARIS)
TEMPO_ROW = {
    "since": "2026-02-01",
    "tempo": {
        "blue": {"hp": 0.1612, "hc": 0.1325},
        "white": {"hp": 0.1871, "hc": 0.1499},
        "red": {"hp": 0.7060, "hc": 0.1575},
    },
}


def tempo_site(tmp_path: Path, port: int, **tempo: Any) -> SiteConfig:
    path = write_site(
        tmp_path,
        [tcp_bus("board")],
        [socket_meter("cp1", "board", 1)],
        mqtt={"host": "127.0.0.1", "port": port, "discovery": False},
        state_dir=str(tmp_path / "state"),
        tariff={"option": "tempo", "tempo": tempo, "prices": [TEMPO_ROW]},
    )
    site, _ = load_site(str(path))
    return site


class Calls:
    def __init__(self, answer: int = 0) -> None:
        self.calls: list[tuple[datetime, datetime, str]] = []
        self.answer = answer

    def __call__(self, site: SiteConfig, tariff: Tariff, start: datetime, end: datetime) -> int:
        self.calls.append((start, end, tariff.period_at(start)))
        return self.answer


def wait(check: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_colour_learned_for_today_reprices_its_day_so_far(tmp_path: Path) -> None:
    site = tempo_site(tmp_path, 1883)
    calls = Calls()
    colours: dict[date, TempoColour] = {date(2026, 12, 7): "red"}
    with Repricer(site, colours, calls, clock=lambda: NOW, settle_s=0) as repricer:
        repricer.learned(date(2026, 12, 8), "white")  # tomorrow: nothing priced yet
        repricer.learned(date(2026, 12, 7), "red")
        wait(lambda: calls.calls, "the re-pricing")
    start = datetime(2026, 12, 7, 6, 0, tzinfo=PARIS)
    end = datetime(2026, 12, 7, 9, 31, tzinfo=PARIS)  # learned at 09:30, plus one 60 s window
    assert calls.calls == [(start, end, "TEMPO_RED_HP")]


def test_a_failed_repricing_names_the_command_to_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = tempo_site(tmp_path, 1883)
    calls = Calls(answer=1)
    repricer = Repricer(site, {}, calls, clock=lambda: NOW, settle_s=0)
    with caplog.at_level(logging.ERROR), repricer:
        repricer.learned(date(2026, 12, 7), "blue")
        wait(lambda: calls.calls, "the attempt")
        wait(lambda: "recompute" in caplog.text, "the log line")
    assert "run `irve recompute -c SITE.yaml --from 2026-12-07T06:00 --to 2026-12-07T09:31`" in (
        caplog.text
    )


@pytest.mark.broker
def test_retained_mqtt_colour_reaches_the_tariff_and_bad_ones_are_logged(
    tmp_path: Path, broker: Server, caplog: pytest.LogCaptureFixture
) -> None:
    site = tempo_site(tmp_path, broker.port, source="mqtt")
    topic = f"irve/{site.site.id}/tempo"
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    sender.publish(
        topic, b'{"date": "2026-12-07", "colour": "red"}', qos=1, retain=True
    ).wait_for_publish(5)

    async def body() -> None:
        async with open_collector(site, {}, clock=lambda: NOW) as app:
            assert app.stages.energy is not None
            tariff = app.stages.energy.tariff
            deadline = time.monotonic() + 10
            while tariff.period_at(NOW) != "TEMPO_RED_HP":
                assert time.monotonic() < deadline, "the retained colour never arrived"
                await asyncio.sleep(0.05)
            sender.publish(topic, b'{"date": "2026-12-08", "colour": "purple"}', qos=1)
            sender.publish(topic, b'{"date": "2026-12-08", "colour": "white"}', qos=1)
            while date(2026, 12, 8) not in tariff.colours:
                assert time.monotonic() < deadline, "the second colour never arrived"
                await asyncio.sleep(0.05)

    with caplog.at_level(logging.INFO):
        asyncio.run(body())
    sender.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    sender.loop_stop()
    sender.disconnect()
    assert f"bad Tempo colour on '{topic}': colour: Input should be 'blue'" in caplog.text
    assert known_colours(site) == {date(2026, 12, 7): "red", date(2026, 12, 8): "white"}
    # Today's colour was learned while running: its re-pricing was queued (and, the collector
    # stopping before it settled, the command to run is logged).
    assert "stopping before the Tempo re-pricing: run `irve recompute" in caplog.text


@pytest.mark.broker
def test_rte_source_feeds_the_collector(tmp_path: Path, broker: Server) -> None:
    with RteServer() as rte:
        rte.colours = {date(2026, 12, 7): "white"}
        site = tempo_site(tmp_path, broker.port, source="rte", url=rte.url)

        async def body() -> None:
            stages_colours: dict[date, TempoColour] = {}
            async with open_collector(site, {}, clock=lambda: NOW) as app:
                assert app.stages.tempo is not None
                stages_colours = app.stages.tempo.colours
                deadline = time.monotonic() + 10
                while not stages_colours:
                    assert time.monotonic() < deadline, "RTE was never asked"
                    await asyncio.sleep(0.05)
            assert stages_colours == {date(2026, 12, 7): "white"}

        asyncio.run(body())
        assert rte.requests == ["/cms/open_data/v1/tempoLight"]
