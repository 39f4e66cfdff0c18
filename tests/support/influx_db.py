"""InfluxQL against a test influxd (database `irve`, epoch ms): create it, query it, count."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

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
