"""Grafana's sessions dashboard links to the front desk (issue 16): a link to a page the desk
serves, at the address the compose stack publishes it on by default."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from starlette.routing import Route

from collector.config import SiteConfig
from collector.desk.app import Desk, create_app
from collector.desk.live import LiveState
from collector.desk.stays import Defaults
from collector.desk.storage import Storage
from collector.settings import load
from collector.store.influxql import InfluxQL
from tests.support.billing_helpers import site_file
from tests.support.paths import REPO

SESSIONS = REPO / "grafana" / "dashboards" / "sessions.json"


def desk_paths(tmp_path: Path) -> set[str]:
    site = load(SiteConfig, site_file(tmp_path))
    app = create_app(
        Desk(
            site,
            Storage(tmp_path / "unused.sqlite3"),
            None,
            LiveState(site, "irve/x"),
            None,
            InfluxQL.from_settings(site.influx),
            Defaults("at_cost", Decimal(0), Decimal(8), timedelta(hours=4)),
        )
    )
    return {r.path for r in app.routes if isinstance(r, Route)}


def test_the_sessions_dashboard_links_to_the_desks_sessions_page(tmp_path: Path) -> None:
    dashboard: dict[str, Any] = json.loads(SESSIONS.read_text(encoding="utf-8"))
    desk_links = [link for link in dashboard["links"] if link.get("url", "").startswith("${desk}")]
    assert [link["url"] for link in desk_links] == ["${desk}/sessions"]
    assert desk_links[0]["targetBlank"] is True
    assert "/sessions" in desk_paths(tmp_path)
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "desk")
    # The address the compose stack publishes the desk on (DESK_PORT, 8080 by default).
    assert variable["query"] == variable["current"]["value"] == "http://localhost:8080"
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert "${DESK_PORT:-8080}:8080" in compose
