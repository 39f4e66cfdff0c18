"""The live view's state, kept from the broker: the desk subscribes to the site's retained
`state`, `availability`, `shed`, `status` (and `limit`, `connector` where load management or
chargers publish them) and to the `session`, `energy` and `alert` events. Nothing here reads
the database: the page shows what the collector says now.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.config import SiteConfig
from collector.desk.storage import parse_iso

log = logging.getLogger(__name__)

POINT_KINDS = ("state", "availability", "session", "energy", "limit", "connector")
SITE_KINDS = ("alert", "shed", "status")
PAUSED_CONNECTOR = ("SuspendedEVSE",)


def subscriptions(base: str) -> list[str]:
    return [f"{base}/+/{kind}" for kind in POINT_KINDS] + [f"{base}/{k}" for k in SITE_KINDS]


@dataclass
class _Running:
    session_id: str
    start: datetime
    badge: str | None
    room: str | None
    energy_wh: float
    cost_eur: float
    index_base_wh: float | None  # meter index at which the session's energy was zero


@dataclass
class LiveState:
    site: SiteConfig
    base: str  # `irve/<site>`
    rooms: dict[str, str] = field(default_factory=dict)  # badge -> room, from the badge list
    _state: dict[str, dict[str, Any]] = field(default_factory=dict)
    _availability: dict[str, str] = field(default_factory=dict)
    _limit: dict[str, dict[str, Any]] = field(default_factory=dict)
    _connector: dict[str, dict[str, Any]] = field(default_factory=dict)
    _running: dict[str, _Running] = field(default_factory=dict)
    _window_cost: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    _alerts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _shed: dict[str, Any] = field(default_factory=dict)
    _status: str = "unknown"

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        # Retained or live, a message is the latest word on its topic: both update the view.
        if not topic.startswith(self.base + "/"):
            return
        parts = topic[len(self.base) + 1 :].split("/")
        # `status` and `availability` are the bare words online / offline, not JSON.
        if len(parts) == 1 and parts[0] == "status":
            self._status = payload.decode("utf-8", "replace").strip() or "unknown"
            return
        if len(parts) == 2 and parts[1] == "availability":
            self._availability[parts[0]] = payload.decode("utf-8", "replace").strip()
            return
        try:
            data = json.loads(payload) if payload else {}
        except ValueError:
            log.warning("live view: %s is not JSON; ignored", topic)
            return
        if not isinstance(data, dict):
            return
        if len(parts) == 1:
            self._site_message(parts[0], data)
        elif len(parts) == 2:
            self._point_message(parts[0], parts[1], data)

    def _site_message(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "shed":
            self._shed = data
        elif kind == "alert":
            key = (str(data.get("alert")), str(data.get("point")))
            if data.get("state") == "firing":
                self._alerts[key] = data
            else:
                self._alerts.pop(key, None)

    def _point_message(self, point: str, kind: str, data: dict[str, Any]) -> None:
        if kind == "state":
            self._state[point] = data
        elif kind == "limit":
            self._limit[point] = data
        elif kind == "connector":
            self._connector[point] = data
        elif kind == "energy":
            running = self._running.get(point)
            if running and data.get("end") and parse_iso(str(data["end"])) > running.start:
                running.cost_eur += float(data.get("cost_eur") or 0.0)
        elif kind == "session":
            self._session(point, data)

    def _session(self, point: str, data: dict[str, Any]) -> None:
        if data.get("event") == "end":
            self._running.pop(point, None)
            return
        if data.get("event") != "start":
            return
        start = parse_iso(str(data.get("start") or data.get("ts")))
        energy = float(data.get("energy_wh") or 0.0)
        index = (self._state.get(point) or {}).get("energy_wh")
        self._running[point] = _Running(
            str(data.get("session_id")),
            start,
            data.get("badge"),
            data.get("room"),
            energy,
            float(data.get("cost_eur") or 0.0),
            float(index) - energy if isinstance(index, int | float) else None,
        )

    def snapshot(self) -> dict[str, Any]:
        sockets = []
        for meter in self.site.meters:
            if meter.socket is None:
                continue
            sockets.append(self._socket(meter.id, meter.socket.label))
        site_alerts = [
            a["message"]
            for (name, point), a in sorted(self._alerts.items())
            if point not in {s["point"] for s in sockets}
        ]
        return {
            "collector": self._status,
            "shed": bool(self._shed.get("active")),
            "shed_w": self._shed.get("excess_w"),
            "alerts": site_alerts,
            "sockets": sockets,
        }

    def _socket(self, point: str, label: str) -> dict[str, Any]:
        state = self._state.get(point)
        running = self._running.get(point)
        limit = self._limit.get(point) or {}
        connector = self._connector.get(point) or {}
        if state is None or self._availability.get(point) == "offline" or self._status == "offline":
            status = "offline"
        elif _paused_by_load_management(limit) or connector.get("status") in PAUSED_CONNECTOR:
            status = "paused"
        elif running is not None or state.get("charging"):
            status = "charging"
        else:
            status = "free"
        energy_wh = cost = None
        room = badge = None
        if running is not None:
            index = (state or {}).get("energy_wh")
            energy_wh = running.energy_wh
            if running.index_base_wh is None and isinstance(index, int | float):
                running.index_base_wh = float(index) - running.energy_wh
            if running.index_base_wh is not None and isinstance(index, int | float):
                energy_wh = max(running.energy_wh, float(index) - running.index_base_wh)
            cost = running.cost_eur
            badge = running.badge
            room = running.room or (self.rooms.get(badge) if badge else None)
        return {
            "point": point,
            "label": label,
            "status": status,
            "power_w": (state or {}).get("power_w"),
            "room": room,
            "badge": badge,
            "since": running.start.isoformat() if running else None,
            "energy_kwh": round(energy_wh / 1000, 3) if energy_wh is not None else None,
            "cost_eur": round(cost, 2) if cost is not None else None,
            "alerts": [a["message"] for (_, p), a in sorted(self._alerts.items()) if p == point],
        }


def _paused_by_load_management(limit: dict[str, Any]) -> bool:
    """The retained `limit` (SPEC "Load management"): 0 A for a reason; `none` is no limit."""
    return limit.get("reason", "none") != "none" and limit.get("current_a") == 0
