"""Tempo colour sources against a local server playing RTE's service (its failures and
slowness included), the cache in the state folder, and the retained MQTT payloads."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.config import TempoColour, TempoSettings
from collector.tariffs.tempo import ColourCache, RtePoller, parse_message, parse_rte
from tests.support.rte_server import RteServer

PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2026, 12, 7)
TOMORROW = date(2026, 12, 8)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[arg-type,misc]


@pytest.fixture
def rte() -> Iterator[RteServer]:
    with RteServer() as server:
        yield server


def poller(rte: RteServer, tmp_path: Path, timeout_s: float = 5.0) -> RtePoller:
    settings = TempoSettings(source="rte", url=rte.url, timeout_s=timeout_s)
    return RtePoller(settings, ColourCache(tmp_path / "tempo-hotel.json"), PARIS)


def test_parse_rte_leaves_out_placeholders_and_unknown_keys() -> None:
    body = json.dumps(
        {
            "values": {
                "2026-12-07": "RED",
                "2026-12-07-fallback": "false",
                "2026-12-08": "BLUE",
                "2026-12-08-fallback": "true",
                "2026-12-09": "PURPLE",
                "season": "2026-2027",
            }
        }
    ).encode()
    assert parse_rte(body) == {TODAY: "red"}
    with pytest.raises(ValueError, match="values"):
        parse_rte(b'{"error": "quota"}')


def test_morning_start_asks_once_for_today_then_waits_for_11_00(
    rte: RteServer, tmp_path: Path
) -> None:
    rte.colours = {TODAY: "white"}
    p = poller(rte, tmp_path)
    assert p.poll_once(local(2026, 12, 7, 8, 0)) == timedelta(hours=3)
    assert p.cache.colours == {TODAY: "white"}
    assert p.poll_once(local(2026, 12, 7, 9, 0)) == timedelta(hours=2)  # nothing wanted
    assert len(rte.requests) == 1


def test_tomorrow_is_asked_for_every_30_minutes_after_11_00_until_published(
    rte: RteServer, tmp_path: Path
) -> None:
    rte.colours = {TODAY: "white"}
    rte.placeholders = {TOMORROW: "blue"}  # RTE's placeholder is not the colour
    p = poller(rte, tmp_path)
    assert p.poll_once(local(2026, 12, 7, 11, 0)) == timedelta(minutes=30)
    assert TOMORROW not in p.cache.colours
    rte.colours[TOMORROW] = "red"
    assert p.poll_once(local(2026, 12, 7, 11, 30)) == timedelta(hours=23, minutes=30)
    assert p.cache.colours[TOMORROW] == "red"
    # Before 06:00 the Tempo day is still yesterday's; both colours are known: no request.
    assert p.poll_once(local(2026, 12, 8, 5, 0)) == timedelta(hours=6)
    assert len(rte.requests) == 2


def test_failures_back_off_then_recover(
    rte: RteServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rte.colours = {TODAY: "blue"}
    rte.fail_next = 2
    p = poller(rte, tmp_path)
    now = local(2026, 12, 7, 8, 0)
    with caplog.at_level(logging.WARNING):
        assert p.poll_once(now) == timedelta(minutes=1)
        assert p.poll_once(now) == timedelta(minutes=2)
    assert "HTTP 503 (failure 2, next try in 120 s)" in caplog.text
    assert p.poll_once(now) == timedelta(hours=3)
    assert p.cache.colours == {TODAY: "blue"} and p.failures == 0
    p.failures = 30
    rte.garbage = True
    p.cache.colours.clear()
    assert p.poll_once(now) == timedelta(hours=1)  # at most an hour between tries
    assert "not a Tempo colour answer" in caplog.text


@pytest.mark.timing
def test_a_slow_service_times_out_and_is_retried(rte: RteServer, tmp_path: Path) -> None:
    rte.colours = {TODAY: "blue"}
    rte.delay_s = 3.0
    p = poller(rte, tmp_path, timeout_s=1.0)
    began = time.monotonic()
    assert p.poll_once(local(2026, 12, 7, 8, 0)) == timedelta(minutes=1)
    assert time.monotonic() - began < 2.5
    assert not p.cache.colours


def test_colours_survive_a_restart_and_a_known_colour_is_not_asked_again(
    rte: RteServer, tmp_path: Path
) -> None:
    rte.colours = {TODAY: "red", TOMORROW: "white"}
    first = poller(rte, tmp_path)
    first.poll_once(local(2026, 12, 7, 12, 0))
    again = poller(rte, tmp_path)
    assert again.cache.colours == {TODAY: "red", TOMORROW: "white"}
    again.poll_once(local(2026, 12, 7, 13, 0))
    assert len(rte.requests) == 1
    (tmp_path / "tempo-hotel.json").write_text("{not json")
    assert ColourCache(tmp_path / "tempo-hotel.json").colours == {}


def test_the_thread_polls_and_stops(rte: RteServer, tmp_path: Path) -> None:
    rte.colours = {TODAY: "red"}
    learned: list[tuple[date, TempoColour]] = []
    settings = TempoSettings(url=rte.url)
    cache = ColourCache(tmp_path / "tempo.json", lambda d, c: learned.append((d, c)))
    with RtePoller(settings, cache, PARIS, clock=lambda: local(2026, 12, 7, 9, 0)):
        deadline = time.monotonic() + 5
        while not learned and time.monotonic() < deadline:
            time.sleep(0.02)
    assert learned == [(TODAY, "red")]
    assert not cache.learn(TODAY, "red")  # known already: no second hook call
    assert learned == [(TODAY, "red")]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b'{"date": "2026-12-06", "colour": "purple"}', "colour: Input should be 'blue'"),
        (b'{"date": "6/12/2026", "colour": "red"}', "date: Input should be a valid date"),
        (b'{"colour": "red"}', "date: Field required"),
        (b"red", "payload: Invalid JSON"),
    ],
)
def test_bad_mqtt_payloads_are_named(payload: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_message(payload)


def test_good_mqtt_payload() -> None:
    assert parse_message(b'{"date": "2026-12-06", "colour": "red"}') == (date(2026, 12, 6), "red")


def test_a_day_added_to_the_file_by_hand_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "tempo-hotel.json"
    cache = ColourCache(path)
    path.write_text('{"2026-12-01": "red"}')  # the owner, while the collector runs
    cache.learn(TODAY, "blue")
    assert ColourCache(path).colours == {date(2026, 12, 1): "red", TODAY: "blue"}
