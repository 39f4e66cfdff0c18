"""`irve downsample` on a real influxd: the backfill's minutes and hours against values
computed here from the raw readings, a second run that changes nothing, the continuous
queries of `--setup`, and usage errors."""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.cli import main
from collector.commands.downsample import hour_span
from collector.store.downsample import MINUTE, to_lines
from collector.store.influxql import InfluxQL, Series
from tests.support import servers
from tests.support.influx_db import by_point, check_minutes, site_file

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SECONDS = 7200


def raw_readings() -> dict[str, list[tuple[int, float, float]]]:
    """point -> (epoch s, power W, current A): one reading a second for two hours; cp2 is
    silent for the first 30 s of every even minute (uneven minutes)."""
    found: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for i in range(SECONDS):
        ts = int(START.timestamp()) + i
        found["cp1"].append((ts, float(i % 97) * 70, float(i % 13)))
        if (i // 60) % 2 == 1 or i % 60 >= 30:
            found["cp2"].append((ts, 3000.0 + i % 7, 13.0))
    return found


def write(url: str, readings: dict[str, list[tuple[int, float, float]]]) -> None:
    lines = [
        f"reading,site=hotel-vda,point={point},role=socket power_w={p},current_a={c},"
        f"voltage_v=230.0,energy_wh={float(ts)},rated_current_a=32.0 {ts}"
        for point, rows in readings.items()
        for ts, p, c in rows
    ]
    for i in range(0, len(lines), 5000):
        body = "\n".join(lines[i : i + 5000]).encode()
        request = urllib.request.Request(f"{url}/write?db=irve&precision=s", data=body)
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204


@pytest.mark.influx
def test_backfill_and_setup(influx: servers.Server, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{influx.port}"
    client = InfluxQL(url, "irve")
    client.execute("CREATE DATABASE irve")
    readings = raw_readings()
    write(url, readings)
    site = site_file(tmp_path, url)
    span = ["--from", "2026-11-23T10:20+00:00", "--to", "2026-11-23T11:59+00:00"]
    assert main(["downsample", "-c", str(site), "--setup", *span]) == 0

    minutes = by_point(client.query('SELECT * FROM "reading_1m" GROUP BY "point"'))
    hours = by_point(client.query('SELECT * FROM "reading_1h" GROUP BY "point"'))
    for point, rows in readings.items():
        buckets: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
        for row in rows:
            buckets[row[0] - row[0] % 60].append(row)
        # The range was widened to whole hours: every minute of both hours is there.
        check_minutes(minutes[point], buckets)
        assert all(got["rated_current_a"] == 32.0 for got in minutes[point].values())
        for hour, got in hours[point].items():
            inside = [m for m in minutes[point] if hour <= m < hour + 3600]
            assert got["samples"] == sum(len(buckets[m]) for m in inside)
            # A mean of minute means: cp2's half-empty minutes weigh as much as full ones.
            mean_of_means = sum(minutes[point][m]["power_w"] for m in inside) / len(inside)
            assert got["power_w"] == pytest.approx(mean_of_means)
            assert got["power_w_max"] == max(minutes[point][m]["power_w_max"] for m in inside)
    assert sorted(hours["cp1"]) == [int(START.timestamp()), int(START.timestamp()) + 3600]
    assert minutes["cp2"][int(START.timestamp())]["samples"] == 30

    # Again: the same points, none added.
    count = 'SELECT count("samples") FROM "reading_1m"'
    before = client.query(count)[0].values
    assert main(["downsample", "-c", str(site), *span]) == 0
    assert client.query(count)[0].values == before

    stored = {
        row["name"]: row["query"]
        for series in client.query("SHOW CONTINUOUS QUERIES")
        if series.name == "irve"
        for row in series.rows()
    }
    assert sorted(stored) == ["irve_reading_1h", "irve_reading_1m"]
    assert "INTO irve.autogen.reading_1m FROM irve.autogen.reading " in stored["irve_reading_1m"]
    assert "sum(samples) AS samples" in stored["irve_reading_1h"]
    # --setup again replaces them rather than failing on the existing names.
    assert main(["downsample", "-c", str(site), "--setup"]) == 0


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = site_file(tmp_path, "http://127.0.0.1:9")
    assert main(["downsample", "-c", str(site)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["downsample", "-c", str(site), "--from", "2026-11-01"]) == 2
    assert "give both" in capsys.readouterr().err
    assert main(["downsample", "-c", str(site), "--from", "2026-11-02", "--to", "2026-11-01"]) == 2
    assert "--to: must be after --from" in capsys.readouterr().err
    # A database that does not answer: runtime failure, said once.
    assert main(["downsample", "-c", str(site), "--setup"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_hour_span_and_lines() -> None:
    at = datetime(2026, 11, 23, 10, 20, 5, tzinfo=UTC)
    assert hour_span(at, at + timedelta(minutes=5)) == (
        datetime(2026, 11, 23, 10, tzinfo=UTC),
        datetime(2026, 11, 23, 11, tzinfo=UTC),
    )
    whole = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert hour_span(whole, whole + timedelta(hours=1))[1] == whole + timedelta(hours=1)
    series = Series(
        "reading",
        {"site": "hôtel a", "point": "cp1", "role": "socket", "demo": ""},
        ["time", "power_w", "limit_w", "samples"],
        [[1795428000000, 1234.5, None, 60]],
    )
    assert list(to_lines(MINUTE, [series])) == [
        "reading_1m,point=cp1,role=socket,site=hôtel\\ a power_w=1234.5,samples=60.0 1795428000000"
    ]
