"""Sessions and energy windows read back from InfluxDB (SPEC schema) with InfluxQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from collector.billing.statement import SessionUse
from collector.store.influxql import InfluxQL, quote_string, time_literal
from collector.wire.lines import period_cost_field, period_energy_field
from collector.wire.messages import PERIODS
from collector.wire.times import window_start


def _where(site: str, start: datetime, end: datetime) -> str:
    return (
        f"site = {quote_string(site)} AND time >= {time_literal(start)} "
        f"AND time < {time_literal(end)}"
    )


def _rows(client: InfluxQL, statement: str) -> list[dict[str, Any]]:
    return [row for series in client.query(statement) for row in series.rows()]


def _periods(row: dict[str, Any]) -> dict[str, tuple[float, float]]:
    periods: dict[str, tuple[float, float]] = {
        p: (float(row[period_energy_field(p)]), float(row.get(period_cost_field(p)) or 0.0))
        for p in PERIODS
        if row.get(period_energy_field(p)) is not None
    }
    if not periods and row.get("energy_wh") is not None:
        # A session written without per-period fields: one line with its own average price.
        periods = {"BASE": (float(row["energy_wh"]), float(row.get("cost_eur") or 0.0))}
    return periods


def load_sessions(
    client: InfluxQL,
    site: str,
    start: datetime,
    end: datetime,
    badges: list[str] | None = None,
    point: str | None = None,
    rooms: list[str] | None = None,
) -> tuple[list[SessionUse], list[str]]:
    """Ended sessions that STARTED in [start, end), for any of `badges` or `rooms` (the `room`
    tag sessions of OCPP chargers carry) and/or on `point`.

    The start and end events of a session share a time; if a badge came during the session
    they sit in two series (with and without the badge tag): the one whose event is `end`
    wins. Sessions still running are left out and reported in the returned warnings.
    """
    where = _where(site, start, end)
    whose = [f"badge = {quote_string(b)}" for b in badges or ()]
    whose += [f"room = {quote_string(r)}" for r in rooms or ()]
    if whose:
        where += " AND (" + " OR ".join(whose) + ")"
    if point:
        where += f" AND point = {quote_string(point)}"
    best: dict[str, dict[str, Any]] = {}
    for row in _rows(client, f"SELECT * FROM session WHERE {where}"):
        sid = row.get("session_id")
        if not sid:
            continue
        if sid not in best or row.get("event") == "end":
            best[sid] = row
    sessions, warnings = [], []
    for sid, row in sorted(best.items(), key=lambda item: item[1]["time"]):
        if row.get("event") != "end":
            warnings.append(f"session {sid} is still running: not billed")
            continue
        sessions.append(
            SessionUse(
                session_id=sid,
                point=row.get("point") or "",
                badge=row.get("badge") or None,
                start=row["time"],
                duration_s=float(row.get("duration_s") or 0.0),
                periods=_periods(row),
                max_power_w=float(row.get("max_power_w") or 0.0),
                room=row.get("room") or None,
            )
        )
    return sessions, warnings


def meter_wh(client: InfluxQL, site: str, sessions: list[SessionUse], window_s: int) -> float:
    """Energy of the index-based windows covering the sessions: the reconciliation figure."""
    total = 0.0
    for s in sessions:
        start = window_start(s.start, window_s)
        end = s.start + timedelta(seconds=s.duration_s)
        where = _where(site, start, end) + f" AND point = {quote_string(s.point)}"
        for row in _rows(client, f"SELECT sum(energy_wh) AS wh FROM energy WHERE {where}"):
            total += float(row.get("wh") or 0.0)
    return total


@dataclass(frozen=True)
class StoredWindow:
    start: datetime
    point: str
    period: str
    energy_wh: float
    cost_eur: float
    fields: dict[str, Any]


def load_windows(
    client: InfluxQL, site: str, start: datetime, end: datetime, point: str | None = None
) -> list[StoredWindow]:
    where = _where(site, start, end)
    if point:
        where += f" AND point = {quote_string(point)}"
    out = []
    for row in _rows(client, f"SELECT * FROM energy WHERE {where}"):
        if row.get("energy_wh") is None or not row.get("point") or not row.get("period"):
            continue
        out.append(
            StoredWindow(
                start=row["time"],
                point=row["point"],
                period=row["period"],
                energy_wh=float(row["energy_wh"]),
                cost_eur=float(row.get("cost_eur") or 0.0),
                fields=row,
            )
        )
    return sorted(out, key=lambda w: (w.start, w.point))


def covered_days(
    client: InfluxQL,
    site: str,
    start: datetime,
    end: datetime,
    tz: ZoneInfo,
    point: str | None = None,
) -> set[date]:
    """The local days of [start, end) with at least one stored reading: when the collector ran.

    Counted per hour, so a day is the site's local day whatever its UTC offset."""
    where = _where(site, start, end)
    if point:
        where += f" AND point = {quote_string(point)}"
    statement = f"SELECT count(power_w) AS n FROM reading WHERE {where} GROUP BY time(1h)"
    return {row["time"].astimezone(tz).date() for row in _rows(client, statement) if row.get("n")}


def main_demand(
    client: InfluxQL, site: str, start: datetime, end: datetime, main: str
) -> list[tuple[datetime, float]]:
    """The main meter's highest power of each minute of [start, end) that has readings: what
    `irve compare --kva` checks a subscribed power against."""
    where = _where(site, start, end) + f" AND point = {quote_string(main)}"
    statement = f"SELECT max(power_w) AS w FROM reading WHERE {where} GROUP BY time(1m) fill(none)"
    return [
        (row["time"], float(row["w"]))
        for row in _rows(client, statement)
        if row.get("w") is not None
    ]
