"""The live table of `make demo`: what the broker says now (readings, alerts, the shed
request, the chargers' connectors, the guests' sessions and the load management's limits),
what the database holds today.

Pure: `Board` is fed MQTT messages (topic, payload) and InfluxDB totals; `render` turns it into
text. scripts/demo.py does the I/O.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from collector.config import SiteConfig
from collector.store.influxql import Series, quote_string, time_literal
from collector.wire.messages import (
    AlertMessage,
    ConnectorMessage,
    LimitMessage,
    SessionMessage,
    ShedMessage,
)
from collector.wire.topics import parse_topic


@dataclass
class Point:
    meter_id: str
    label: str
    role: str
    available: str | None = None
    state: dict[str, Any] = field(default_factory=dict)
    connector: str | None = None  # the OCPP status of its charger's connector
    energy_today_wh: float = 0.0
    cost_today_eur: float = 0.0
    readings_stored: int = 0


# Unit of an alert's value and limit (docs/mqtt.md, `alert`).
ALERT_UNITS = {
    "socket_overcurrent": "A",
    "site_overload": "W",
    "site_overload_warning": "W",
    "meter_offline": "s",
}
SHOWN_ALERTS = 6
SHOWN_SESSIONS = 6


class Board:
    """Latest state of every meter of the site, the alerts and the shed request; safe to feed
    from paho's thread."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.prefix = site.mqtt.topic_prefix
        self.points = {
            meter.id: Point(meter.id, meter.socket.label if meter.socket else "", meter.role)
            for meter in site.meters
        }
        self.collector_status: str | None = None
        self.messages = 0
        self.alerts: list[AlertMessage] = []  # the latest events, oldest first
        self.firing: dict[tuple[str, str], AlertMessage] = {}  # (alert, point)
        self.shed: ShedMessage | None = None
        self.limits: dict[str, LimitMessage] = {}  # per socket, with load management
        # The latest message of each session (start, then end), by session id, oldest first.
        self.sessions: dict[str, tuple[str, SessionMessage]] = {}
        self.lock = threading.Lock()

    def on_message(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(self.prefix, topic)
        if parsed is None or parsed.site != self.site.site.id:
            return
        with self.lock:
            self.messages += 1
            if parsed.kind == "status":
                self.collector_status = payload.decode(errors="replace")
                return
            if parsed.kind == "alert":
                self._on_alert(payload)
                return
            if parsed.kind == "shed":
                with contextlib.suppress(ValueError):
                    self.shed = ShedMessage.from_payload(payload)
                return
            point = self.points.get(parsed.point or "")
            if point is None:
                return
            if parsed.kind == "limit":
                with contextlib.suppress(ValueError):
                    self.limits[point.meter_id] = LimitMessage.from_payload(payload)
            elif parsed.kind == "session":
                self._on_session(point.meter_id, payload)
            elif parsed.kind == "connector":
                with contextlib.suppress(ValueError):
                    point.connector = ConnectorMessage.from_payload(payload).status
            elif parsed.kind == "availability":
                point.available = payload.decode(errors="replace")
            elif parsed.kind == "state":
                try:
                    body = json.loads(payload)
                except ValueError:
                    return
                if isinstance(body, dict):
                    point.state = body

    def _on_alert(self, payload: bytes) -> None:
        try:
            alert: AlertMessage = AlertMessage.from_payload(payload)
        except ValueError:
            return
        self.alerts = [*self.alerts, alert][-SHOWN_ALERTS:]
        key = (alert.alert, alert.point)
        if alert.state == "firing":
            self.firing[key] = alert
        else:
            self.firing.pop(key, None)

    def _on_session(self, point: str, payload: bytes) -> None:
        try:
            session: SessionMessage = SessionMessage.from_payload(payload)
        except ValueError:
            return
        start = self.sessions.pop(session.session_id, None)
        if session.event == "end" or start is None:
            self.sessions[session.session_id] = (point, session)
        else:  # a start again (retained, or the collector restarted): the first one stays
            self.sessions[session.session_id] = start
        while len(self.sessions) > SHOWN_SESSIONS:
            del self.sessions[next(iter(self.sessions))]

    def on_totals(self, energy: list[Series], readings: list[Series]) -> None:
        """Results of `totals_queries` (energy and cost today, readings stored per point)."""
        with self.lock:
            for series in energy:
                point = self.points.get(series.tags.get("point", ""))
                for row in series.rows():
                    if point is not None:
                        point.energy_today_wh = float(row.get("energy_wh") or 0.0)
                        point.cost_today_eur = float(row.get("cost_eur") or 0.0)
            for series in readings:
                point = self.points.get(series.tags.get("point", ""))
                for row in series.rows():
                    if point is not None:
                        point.readings_stored = int(row.get("n") or 0)


def local_midnight(now: datetime, timezone: str) -> datetime:
    """Start of the site's local day holding `now`, in UTC."""
    zone = ZoneInfo(timezone)
    return datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone).astimezone(UTC)


def totals_queries(site: SiteConfig, now: datetime) -> tuple[str, str]:
    """InfluxQL: energy and cost of today's closed intervals, and readings stored, per point."""
    where_site = f'"site" = {quote_string(site.site.id)}'
    since = time_literal(local_midnight(now, site.site.timezone))
    energy = (
        'SELECT sum("energy_wh") AS "energy_wh", sum("cost_eur") AS "cost_eur" FROM "energy" '
        f'WHERE {where_site} AND time >= {since} GROUP BY "point"'
    )
    readings = f'SELECT count("power_w") AS "n" FROM "reading" WHERE {where_site} GROUP BY "point"'
    return energy, readings


def _number(value: Any, digits: int) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}".replace(",", " ")


def _state(point: Point) -> str:
    if point.available == "offline":
        return "offline"
    if not point.state:
        return "waiting"
    charging = point.state.get("charging")
    if charging is None:
        return "online"
    return "charging" if charging else "idle"


HEADER = (
    "meter",
    "label",
    "state",
    "alert",
    "power W",
    "current A",
    "today kWh",
    "today EUR",
    "stored",
)
LEFT_COLUMNS = 4  # text columns, left-aligned; numbers are right-aligned


def _firing(board: Board, point: str) -> str:
    return ", ".join(sorted(a.alert for a in board.firing.values() if a.point == point)) or "-"


def rows(board: Board) -> list[tuple[str, ...]]:
    with board.lock:
        return [
            (
                point.meter_id,
                point.label or ("(site)" if point.role == "main" else ""),
                _state(point),
                _firing(board, point.meter_id),
                _number(point.state.get("power_w"), 0),
                _number(point.state.get("current_a"), 1),
                _number(point.energy_today_wh / 1000, 3),
                _number(point.cost_today_eur, 2),
                str(point.readings_stored),
            )
            for point in board.points.values()
        ]


def render(board: Board, now: datetime, footer: list[str]) -> str:
    """The whole frame: title, one row per meter, the footer lines."""
    zone = ZoneInfo(board.site.site.timezone)
    local = now.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
    title = (
        f"{board.site.site.name or board.site.site.id} ({board.site.site.id})  {local} "
        f"{board.site.site.timezone}  collector {board.collector_status or '?'}"
    )
    table = [HEADER, *rows(board)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = [title, ""]
    for row in table:
        cells = [
            cell.ljust(width) if i < LEFT_COLUMNS else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines += alert_lines(board, zone)
    lines += session_lines(board, zone)
    lines.append("")
    lines.append(
        "today kWh / EUR: closed energy intervals stored in InfluxDB (one a minute per meter); "
        "stored: readings in InfluxDB"
    )
    return "\n".join([*lines, *footer])


def _measure(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{_number(value, 0 if unit == 'W' else 1)} {unit}"


def alert_lines(board: Board, zone: ZoneInfo) -> list[str]:
    """The shed request, each socket's limit (with load management), and the latest alert
    events with their time, value and limit."""
    with board.lock:
        shed, alerts, limits = board.shed, list(board.alerts), dict(board.limits)
    if shed is None:
        lines = ["shed    no request yet"]
    elif shed.active and shed.excess_w == 0:
        # Back under the limit, the alert not resolved yet: controllers hold (docs/mqtt.md).
        lines = [f"shed    ACTIVE: hold the reduction ({shed.reason})"]
    elif shed.active:
        lines = [f"shed    ACTIVE: take {_number(shed.excess_w, 0)} W off ({shed.reason})"]
    else:
        lines = [f"shed    none ({shed.reason})"]
    for i, (point, limit) in enumerate(sorted(limits.items())):
        amps = {None: "no limit", 0.0: "paused"}.get(limit.current_a, f"{limit.current_a:g} A")
        done = ", ".join(f"{name} {outcome}" for name, outcome in limit.actuators.items())
        lines.append(
            ("limits  " if i == 0 else "        ") + f"{point}  {amps}  {limit.reason}  ({done})"
        )
    if not alerts:
        return [*lines, "alerts  none yet"]
    width = max(len(name) for name in ALERT_UNITS)
    for i, alert in enumerate(reversed(alerts)):
        unit = ALERT_UNITS.get(alert.alert, "")
        lines.append(
            ("alerts  " if i == 0 else "        ")
            + f"{alert.ts.astimezone(zone):%H:%M:%S}  {alert.state:<8}  {alert.alert:<{width}}  "
            f"{alert.point}  {_measure(alert.value, unit)} (limit {_measure(alert.limit, unit)})"
        )
    return lines


def session_lines(board: Board, zone: ZoneInfo) -> list[str]:
    """The connectors of the chargers, then the latest sessions (newest first): who (badge,
    room), from what (OCPP transaction or the meter's power), and for an ended one the MID
    meter's energy and cost."""
    with board.lock:
        connectors = [(p.meter_id, p.connector) for p in board.points.values() if p.connector]
        sessions = list(board.sessions.values())
    lines: list[str] = []
    if connectors:
        lines.append("chargers " + ", ".join(f"{point} {status}" for point, status in connectors))
    if not sessions:
        return [*lines, "sessions none yet"]
    for i, (point, s) in enumerate(reversed(sessions)):
        begun = s.start if s.event == "end" and s.start is not None else s.ts
        origin = f"OCPP tx {s.transaction_id}" if s.source == "ocpp" else (s.source or "meter")
        if s.event == "end":
            state = (
                f"ended {s.ts.astimezone(zone):%H:%M:%S}  {_number(s.energy_wh / 1000, 3)} kWh  "
                f"{_number(s.cost_eur, 2)} EUR"
            )
        else:
            state = "charging"
        lines.append(
            ("sessions " if i == 0 else "         ")
            + f"{begun.astimezone(zone):%H:%M:%S}  {point}  badge {s.badge or '-'}  "
            f"room {s.room or '-'}  {origin}  {state}"
        )
    return lines
