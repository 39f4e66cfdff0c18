"""The ingestor's housekeeping (`influx.raw_retention_days`): real mosquitto, influxd 1.6.7
and victoria-metrics. It prunes old raw readings shortly after start and again at every
interval (short here) while live messages keep being written and acknowledged; on
VictoriaMetrics it says once that the key is ignored; a failed run is logged without secret
and retried."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from collector.config import InfluxSettings, IngestorConfig
from collector.ingest.housekeeping import Housekeeping
from collector.ingest.metrics import PruneStats
from collector.ingest.service import Ingestor
from tests.support import servers
from tests.support.influx_db import count, create_database, rows, write_lines
from tests.support.ingest_helpers import SITE, config, iso, publisher, state

RETENTION = 7


def with_retention(cfg: IngestorConfig) -> IngestorConfig:
    influx = cfg.influx.model_copy(update={"raw_retention_days": RETENTION})
    return cfg.model_copy(update={"influx": influx})


@contextmanager
def ingesting(cfg: IngestorConfig) -> Iterator[Ingestor]:
    ingestor = Ingestor(cfg, housekeeping_delay_s=0.5, housekeeping_every_s=1.0)
    ingestor.start()
    try:
        servers.wait_until(lambda: ingestor.metrics.broker_connected, 10, "ingestor connected")
        time.sleep(0.2)  # the SUBACK before anything is published
        yield ingestor
    finally:
        ingestor.stop()


def old_history(cfg: IngestorConfig, now: datetime) -> int:
    """Two days of cp9 readings every 10 s, ending 8 days ago; how many."""
    first = int((now - timedelta(days=10)).timestamp()) // 60 * 60  # whole minutes
    lines = [
        f"reading,point=cp9,role=socket,site={SITE} power_w={float(i % 50)},energy_wh={float(i)} "
        f"{(first + 10 * i) * 1000}"
        for i in range(2 * 8640)
    ]
    write_lines(cfg.influx, lines)
    return len(lines)


@pytest.mark.broker
@pytest.mark.influx
def test_housekeeping_prunes_while_messages_are_ingested(
    broker: servers.Server, influx: servers.Server
) -> None:
    create_database(influx)
    cfg = with_retention(config(broker, influx, "1", flush_interval_s=0.1))
    now = datetime.now(UTC)
    history = old_history(cfg, now)
    assert count(influx) == history
    live = 600
    now_ms = int(now.timestamp() * 1000)
    with ingesting(cfg) as ingestor, publisher(broker.port) as pub:
        housekeeping = ingestor.housekeeping
        assert housekeeping is not None
        # Published from before the first run until after the second.
        for i in range(live):
            pub.publish(f"irve/{SITE}/cp1/state", state(i, ts=iso(now_ms + i)))
            time.sleep(0.005)
        servers.wait_until(lambda: housekeeping.stats.runs >= 2, 30, "two housekeeping runs")
        servers.wait_until(lambda: ingestor.metrics.acked >= live, 15, "live messages written")
        # From the hour 10 days ago to the cutoff, 7 days ago on the hour: 72 hours (73 if the
        # hour turned between the history's writing and the first run).
        assert housekeeping.stats.hours_pruned in (72, 73)
        text = ingestor.metrics_text()
        assert f"irve_ingest_pruned_hours_total {housekeeping.stats.hours_pruned}\n" in text
        assert "irve_ingest_prune_failures_total 0\n" in text

    assert count(influx) == live  # the old history is gone, every live reading is there
    (minutes,) = rows(influx, 'SELECT count("samples"), sum("samples") FROM "reading_1m"')
    assert (minutes["count"], minutes["sum"]) == (2 * 1440, history)
    (hours,) = rows(influx, 'SELECT sum("samples") FROM "reading_1h"')
    assert hours["sum"] == history


@pytest.mark.broker
@pytest.mark.influx
def test_victoria_metrics_ignores_the_key_once(
    broker: servers.Server, victoria: servers.Server, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = with_retention(config(broker, victoria, "2", flush_interval_s=0.1))
    caplog.set_level(logging.INFO)
    with ingesting(cfg) as ingestor, publisher(broker.port) as pub:
        housekeeping = ingestor.housekeeping
        assert housekeeping is not None
        servers.wait_until(lambda: housekeeping.stats.runs >= 1, 15, "a housekeeping run")
        pub.publish(f"irve/{SITE}/cp1/state", state(0, ts=iso(int(time.time() * 1000))))
        servers.wait_until(lambda: ingestor.metrics.acked >= 1, 15, "the message written")
        time.sleep(1.5)  # an interval: no second run
        assert housekeeping.stats.runs == 1
    ignored = [r.getMessage() for r in caplog.records if "raw_retention_days" in r.getMessage()]
    assert ignored == [
        "influx.raw_retention_days is ignored: the server at influx.url is not InfluxDB 1.x or "
        "2.x (no X-Influxdb-Version on /ping; VictoriaMetrics keeps data for its own "
        "-retentionPeriod)"
    ]


def test_no_housekeeping_without_the_key(broker_free_config: IngestorConfig) -> None:
    ingestor = Ingestor(broker_free_config)
    try:
        assert ingestor.housekeeping is None
        assert "irve_ingest_prune" not in ingestor.metrics_text()
    finally:  # never started: what its constructor opened
        ingestor.http.stop()
        ingestor.writer.backend.close()


@pytest.fixture
def broker_free_config() -> IngestorConfig:
    return IngestorConfig(mqtt={"host": "127.0.0.1", "port": 9}, ingest={"http_port": 0})


def test_a_failed_run_is_logged_without_secret_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = InfluxSettings(url="http://irve:s3cret-pw@127.0.0.1:9", api_version="1")
    housekeeping = Housekeeping(settings, RETENTION)
    assert housekeeping.run_once() is True  # the thread goes on: the next run may succeed
    assert housekeeping.stats == PruneStats(runs=1, failures=1, hours_pruned=0)
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "pruning raw readings failed, retried in 3600 s" in record.getMessage()
    assert "127.0.0.1:9/ping: cannot connect" in record.getMessage()
    assert "s3cret" not in caplog.text
