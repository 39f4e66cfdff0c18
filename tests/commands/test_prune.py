"""Pruning raw readings on a real influxd 1.6.7 (collector.store.prune, `irve downsample
--prune`): ten days of readings written with the ingestor's writer, a retention of 7 days;
the raw readings before the cutoff are gone and the ones after all there, `reading_1m` and
`reading_1h` hold the pruned days with the values computed here from what was written,
energy and sessions are untouched, a second run does nothing, a refused backfill deletes
nothing, and VictoriaMetrics is refused."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from collector.cli import main
from collector.config import InfluxSettings
from collector.store.influxql import InfluxQL
from collector.store.prune import PruneError, Unsupported, prune
from collector.store.retention import cutoff
from tests.support import servers
from tests.support.influx_db import by_point, check_minutes, site_file, write_lines

START = datetime(2026, 11, 20, 5, 17, tzinfo=UTC)  # not on the hour: a partial first hour
DAYS = 10
STEP_S = 20
NOW = START + timedelta(days=DAYS, minutes=40)
RETENTION = 7
CUTOFF = cutoff(NOW, RETENTION)  # 2026-11-23T05:00Z

Reading = tuple[int, float, float]  # epoch s, power W, current A


def readings() -> dict[str, list[Reading]]:
    """cp1 every 20 s; cp2 misses the first reading of every even minute (uneven minutes)."""
    found: dict[str, list[Reading]] = defaultdict(list)
    t0 = int(START.timestamp())
    for i in range(DAYS * 86400 // STEP_S):
        ts = t0 + i * STEP_S
        found["cp1"].append((ts, float(i % 97) * 70, float(i % 13)))
        if (ts // 60) % 2 == 1 or ts % 60 != 0:
            found["cp2"].append((ts, 3000.0 + i % 7, 13.0))
    return found


def settings(db: servers.Server) -> InfluxSettings:
    return InfluxSettings(url=f"http://127.0.0.1:{db.port}", api_version="1", database="irve")


def write(db: servers.Server, lines: list[str]) -> None:
    write_lines(settings(db), lines)


def reading_lines(found: dict[str, list[Reading]]) -> list[str]:
    return [
        f"reading,point={point},role=socket,site=hotel-vda current_a={c},energy_wh={float(ts)},"
        f"power_w={p},rated_current_a=32.0,voltage_v=230.0 {ts * 1000}"
        for point, rows in found.items()
        for ts, p, c in rows
    ]


def billing_lines() -> list[str]:
    """An energy window and a session end every 6 hours, on both sides of the cutoff."""
    out = []
    for k in range(DAYS * 4):
        ms = int((START + timedelta(hours=6 * k)).timestamp()) * 1000
        out.append(
            f"energy,period=HC,point=cp1,site=hotel-vda cost_eur=0.04,energy_wh=250.0,"
            f"price_eur_kwh=0.16 {ms}"
        )
        out.append(
            f'session,point=cp1,site=hotel-vda badge="room {k}",energy_wh=5000.0,'
            f'session_id="s-{k}" {ms + 1}'
        )
    return out


def with_retention(site: Path) -> Path:
    data = yaml.safe_load(site.read_text(encoding="utf-8"))
    data["influx"]["raw_retention_days"] = RETENTION
    site.write_text(yaml.safe_dump(data), encoding="utf-8")
    return site


def count(client: InfluxQL, statement: str) -> int:
    found = client.query(statement)
    return int(found[0].values[0][1]) if found else 0


def raw_count(client: InfluxQL, where: str) -> int:
    return count(client, f'SELECT count("power_w") FROM "reading" WHERE {where}')


def billing_counts(client: InfluxQL) -> tuple[int, int]:
    return (
        count(client, 'SELECT count("energy_wh") FROM "energy"'),
        count(client, 'SELECT count("energy_wh") FROM "session"'),
    )


@pytest.mark.influx
def test_prune_backfills_then_deletes_old_raw_readings(influx: servers.Server) -> None:
    client = InfluxQL(f"http://127.0.0.1:{influx.port}", "irve")
    client.execute("CREATE DATABASE irve")
    found = readings()
    write(influx, reading_lines(found) + billing_lines())
    billing = billing_counts(client)
    assert billing == (40, 40)
    cut = int(CUTOFF.timestamp())
    kept = sum(1 for rows in found.values() for ts, _, _ in rows if ts >= cut)

    # A day at a time from the oldest reading's hour: 20 November 05:00 to 23 November 05:00.
    assert prune(client, settings(influx), NOW, RETENTION) == 3 * 24

    literal = CUTOFF.strftime("'%Y-%m-%dT%H:%M:%SZ'")
    assert raw_count(client, f"time < {literal}") == 0
    assert raw_count(client, f"time >= {literal}") == kept
    assert billing_counts(client) == billing

    where = f'WHERE time < {literal} GROUP BY "point"'
    minutes = by_point(client.query(f'SELECT * FROM "reading_1m" {where}'))
    hours = by_point(client.query(f'SELECT * FROM "reading_1h" {where}'))
    for point, rows in found.items():
        buckets: dict[int, list[Reading]] = defaultdict(list)
        for row in rows:
            if row[0] < cut:
                buckets[row[0] - row[0] % 60].append(row)
        check_minutes(minutes[point], buckets)
        hour_starts = sorted({m - m % 3600 for m in buckets})
        assert sorted(hours[point]) == hour_starts
        for hour, got in hours[point].items():
            inside = [m for m in buckets if hour <= m < hour + 3600]
            assert got["samples"] == sum(len(buckets[m]) for m in inside)
            mean_of_means = sum(minutes[point][m]["power_w"] for m in inside) / len(inside)
            assert got["power_w"] == pytest.approx(mean_of_means)
            assert got["power_w_max"] == max(p for m in inside for _, p, _ in buckets[m])
    assert minutes["cp2"][int(START.timestamp()) + 60]["samples"] == 2  # 05:18, an even minute

    # Again: nothing older than the cutoff is left, nothing is written or deleted.
    coarse = 'SELECT count("samples") FROM "reading_1m"'
    before = count(client, coarse)
    assert prune(client, settings(influx), NOW, RETENTION) == 0
    assert count(client, coarse) == before
    assert raw_count(client, f"time >= {literal}") == kept
    assert billing_counts(client) == billing


@pytest.mark.influx
def test_a_refused_backfill_deletes_nothing(
    influx: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = InfluxQL(f"http://127.0.0.1:{influx.port}", "irve")
    client.execute("CREATE DATABASE irve")
    now = datetime.now(UTC)
    # All in one hour, so in one shard (weekly, from Monday 00:00 UTC): minutes just before
    # `now - 9 days` straddled a shard's start on a Wednesday shortly after 00:00 UTC.
    hour = (now - timedelta(days=9)).replace(minute=0, second=0, microsecond=0)
    minutes = [hour + timedelta(minutes=10 + k) for k in range(5)]
    write(influx, reading_lines({"cp1": [(int(m.timestamp()), 7.0, 1.0) for m in minutes]}))
    # `reading_1m`'s power_w is a string in that shard: the minutes of that day are refused.
    ms = int(minutes[0].timestamp()) * 1000
    write(influx, [f'reading_1m,point=cp0,site=hotel-vda power_w="oops" {ms}'])
    with pytest.raises(PruneError, match="reading_1m: the database refused 5 of 5 points"):
        prune(client, settings(influx), now, RETENTION)
    assert raw_count(client, "time > 0") == 5

    site = with_retention(site_file(tmp_path, f"http://127.0.0.1:{influx.port}"))
    assert main(["downsample", "-c", str(site), "--prune"]) == 1
    assert "reading_1m: the database refused" in capsys.readouterr().err
    assert raw_count(client, "time > 0") == 5


@pytest.mark.influx
def test_the_command_prunes_once(
    influx: servers.Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = InfluxQL(f"http://127.0.0.1:{influx.port}", "irve")
    client.execute("CREATE DATABASE irve")
    now = datetime.now(UTC)
    # Far from the cutoff on both sides, so that the hour the command runs in does not matter.
    found = {
        "cp1": [
            (int((now - timedelta(days=days)).timestamp()), 7.0, 1.0) for days in (9, 8.5, 1, 0.5)
        ]
    }
    write(influx, reading_lines(found))
    site = site_file(tmp_path, f"http://127.0.0.1:{influx.port}")
    assert main(["downsample", "-c", str(site), "--prune"]) == 2
    assert "--prune: influx.raw_retention_days is not set" in capsys.readouterr().err

    with_retention(site)
    assert main(["downsample", "-c", str(site), "--prune"]) == 0
    assert "hours pruned" in capsys.readouterr().out
    assert raw_count(client, "time > 0") == 2
    assert count(client, 'SELECT count("samples") FROM "reading_1m"') == 2


@pytest.mark.influx
def test_victoria_metrics_is_refused(victoria: servers.Server) -> None:
    config = InfluxSettings(url=f"http://127.0.0.1:{victoria.port}", token="unused")
    client = InfluxQL.from_settings(config)
    with pytest.raises(
        Unsupported, match="VictoriaMetrics keeps data for its own -retentionPeriod"
    ):
        prune(client, config, datetime.now(UTC), RETENTION)


def test_an_unreachable_database_is_named() -> None:
    config = InfluxSettings(url="http://127.0.0.1:9", api_version="1")
    with pytest.raises(PruneError, match=r"127.0.0.1:9/ping: cannot connect"):
        prune(InfluxQL.from_settings(config), config, datetime.now(UTC), RETENTION)
