"""InfluxQL against a test influxd (database `irve`, epoch ms): create it, query it, count."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import InfluxSettings
from collector.ingest.writer import Writer, backend_for
from collector.store.influxql import Series
from tests.support import servers
from tests.support.paths import EXAMPLES


def influx_query(db: servers.Server, query: str) -> list[dict[str, Any]]:
    """InfluxQL over /query (epoch ms); the statement's series, [] when none."""
    url = f"http://127.0.0.1:{db.port}/query?" + urllib.parse.urlencode(
        {"db": "irve", "q": query, "epoch": "ms"}
    )
    with urllib.request.urlopen(url, data=b"", timeout=5) as response:
        result = json.load(response)["results"][0]
    if "error" in result:
        raise AssertionError(result["error"])
    return list(result.get("series", []))


def create_database(db: servers.Server) -> None:
    influx_query(db, "CREATE DATABASE irve")


def rows(db: servers.Server, query: str) -> list[dict[str, Any]]:
    """Each returned row as a dict of column -> value (tags of GROUP BY included)."""
    out = []
    for series in influx_query(db, query):
        for values in series["values"]:
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags", {}))
            out.append(row)
    return out


def count(db: servers.Server, measurement: str = "reading", field: str = "power_w") -> int:
    try:
        found = rows(db, f'SELECT COUNT("{field}") FROM "{measurement}"')
    except OSError:
        return -1  # influxd is down or restarting
    return int(found[0]["count"]) if found else 0


def site_file(tmp_path: Path, url: str) -> Path:
    """The example hotel's site file writing to the influxd at `url` (1.x API, database irve)."""
    site = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text(encoding="utf-8"))
    site["influx"] = {"url": url, "api_version": "1", "database": "irve"}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site), encoding="utf-8")
    return path


def by_point(series: list[Series]) -> dict[str, dict[int, dict[str, float]]]:
    """point -> epoch s -> field -> value, from series grouped by point (epoch ms)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for one in series:
        rows = {}
        for values in one.values:
            row = dict(zip(one.columns, values, strict=True))
            rows[int(row.pop("time")) // 1000] = row
        out[one.tags["point"]] = rows
    return out


def write_lines(settings: InfluxSettings, lines: list[str]) -> None:
    """Line protocol written with the ingestor's own writer (ms timestamps), in its batches."""
    backend = backend_for(settings)
    try:
        writer = Writer(backend, threading.Event())
        for i in range(0, len(lines), 5000):
            assert writer.write(lines[i : i + 5000]) == []
    finally:
        backend.close()


Raw = tuple[int, float, float]  # epoch s, power W, current A (energy Wh = epoch s)


def check_minutes(got: dict[int, dict[str, float]], minutes: dict[int, list[Raw]]) -> None:
    """The `reading_1m` points of one meter against the raw readings of each minute."""
    assert sorted(got) == sorted(minutes)
    for minute, row in got.items():
        want = minutes[minute]
        assert row["power_w"] == pytest.approx(sum(p for _, p, _ in want) / len(want))
        assert row["power_w_max"] == max(p for _, p, _ in want)
        assert row["power_w_last"] == want[-1][1]
        assert row["current_a_max"] == max(c for _, _, c in want)
        assert row["energy_wh"] == float(want[-1][0])
        assert row["samples"] == len(want)
