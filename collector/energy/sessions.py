"""Charging sessions per socket, detected from power; energy and cost from the index pieces.

A session starts when power stays at or above `start_power_w` for `start_after_s`; its start
time is the reading before the first high one, so the ramp-up is inside. It ends when power
stays below `stop_power_w` for `end_after_s`; its end is the first low reading, so shorter
pauses (battery balancing, scheduled pause) do not split it and standby after the end is not
billed. Energy and cost come from the same index pieces as the energy windows, so a session
spanning a period or price change is costed with each price.

Badges (`irve/{site}/{point}/badge`): a badge attaches to the session running on that socket
(the latest badge wins), or is kept for the next session starting on that socket within
`badge_window_s`. A badge never rewrites a session that already ended: a badge shown after
the end waits for the next session and, if none starts in time, is reported as an
`badge_unmatched` event (the front desk then bills with `irve bill --point`). The same badge
shown again on a running session changes nothing and sends nothing; at most
MAX_WAITING_BADGES wait per socket (the oldest is dropped, logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from collector.config import SessionSettings
from collector.energy.intervals import Piece
from collector.wire.messages import EventMessage, Message, Period, PeriodTotal, SessionMessage

log = logging.getLogger(__name__)

# Only the latest waiting badge is used; a few older ones are kept for the logs' sake, never
# an unbounded list (a flood of badges must not grow the state saved on every change).
MAX_WAITING_BADGES = 10


@dataclass
class Totals:
    """Energy (Wh) and unrounded cost (EUR) per period."""

    by_period: dict[str, list[float]] = field(default_factory=dict)

    def add(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            slot = self.by_period.setdefault(piece.period, [0.0, 0.0])
            slot[0] += piece.energy_wh
            slot[1] += piece.cost_eur

    def merge(self, other: Totals) -> None:
        for period, (energy, cost) in other.by_period.items():
            slot = self.by_period.setdefault(period, [0.0, 0.0])
            slot[0] += energy
            slot[1] += cost

    @property
    def energy_wh(self) -> float:
        return sum(e for e, _ in self.by_period.values())

    @property
    def cost_eur(self) -> float:
        return sum(c for _, c in self.by_period.values())

    def periods(self) -> dict[Period, PeriodTotal]:
        return {
            p: PeriodTotal(energy_wh=round(e, 6), cost_eur=round(c, 6))  # type: ignore[misc]
            for p, (e, c) in sorted(self.by_period.items())
        }


@dataclass
class Session:
    session_id: str
    start: datetime
    badge: str | None = None
    max_power_w: float = 0.0
    totals: Totals = field(default_factory=Totals)

    def message(self, event: str, ts: datetime) -> SessionMessage:
        return SessionMessage(
            event=event,
            session_id=self.session_id,
            ts=ts if event == "end" else self.start,
            badge=self.badge,
            energy_wh=round(self.totals.energy_wh, 6),
            cost_eur=round(self.totals.cost_eur, 6),
            duration_s=(ts - self.start).total_seconds(),
            max_power_w=self.max_power_w,
            start=self.start,
            periods=self.totals.periods(),
        )


class SessionTracker:
    """One socket's state machine: idle -> starting -> active (-> pausing) -> idle."""

    def __init__(self, point: str, settings: SessionSettings) -> None:
        self.point = point
        self.settings = settings
        self.last_ts: datetime | None = None
        self.candidate_since: datetime | None = None  # first high reading of a possible start
        self.pending: Session | None = None  # a start not yet confirmed
        self.session: Session | None = None
        self.low_since: datetime | None = None  # first low reading during a session
        self.tail = Totals()  # energy after low_since; the session's if power comes back
        self.badges: list[tuple[str, datetime]] = []  # waiting for the next session

    @property
    def charging(self) -> bool:
        return self.session is not None and self.low_since is None

    def update(self, ts: datetime, power_w: float | None, pieces: list[Piece]) -> list[Message]:
        out: list[Message] = []
        previous, self.last_ts = self.last_ts, ts
        s = self.settings
        if self.session is not None:
            if self.low_since is None or (power_w is not None and power_w >= s.stop_power_w):
                self.session.totals.add(pieces)
            else:
                self.tail.add(pieces)
            if power_w is None:
                return out
            self.session.max_power_w = max(self.session.max_power_w, power_w)
            if power_w >= s.stop_power_w:
                if self.low_since is not None:  # a pause, not an end
                    self.session.totals.merge(self.tail)
                    self.low_since, self.tail = None, Totals()
            elif self.low_since is None:
                self.low_since = ts
            elif (ts - self.low_since).total_seconds() >= s.end_after_s:
                out.append(self._end())
            return out
        if power_w is None:
            return out
        if self.pending is None:
            if power_w < s.start_power_w:
                return out
            start = previous or ts
            self.pending = Session(f"{self.point}-{start:%Y%m%dT%H%M%S}Z", start)
            self.candidate_since = ts
        elif power_w < s.start_power_w:
            self.pending, self.candidate_since = None, None
            return out
        self.pending.totals.add(pieces)
        self.pending.max_power_w = max(self.pending.max_power_w, power_w)
        assert self.candidate_since is not None
        if (ts - self.candidate_since).total_seconds() >= s.start_after_s:
            out.extend(self._confirm(ts))
        return out

    def on_badge(self, badge: str, now: datetime) -> list[Message]:
        if self.session is not None:
            if self.session.badge == badge:
                return []  # shown again: nothing to announce
            if self.session.badge is not None:
                log.info("%s: badge %r replaces %r", self.point, badge, self.session.badge)
            self.session.badge = badge
            # Re-announce so the running session carries its badge before it ends.
            return [self.session.message("start", now)]
        self.badges.append((badge, now))
        if len(self.badges) > MAX_WAITING_BADGES:
            dropped, _ = self.badges.pop(0)
            log.warning(
                "%s: more than %d badges waiting for a session: the oldest (%r) is dropped",
                self.point,
                MAX_WAITING_BADGES,
                dropped,
            )
        return []

    def on_tick(self, now: datetime) -> list[Message]:
        out: list[Message] = []
        s = self.settings
        if (
            self.session is not None
            and self.low_since is not None
            and (now - self.low_since).total_seconds() >= s.end_after_s
        ):
            out.append(self._end())
        if self.pending is None:
            out.extend(self._expire_badges(now))
        return out

    def _confirm(self, ts: datetime) -> list[Message]:
        session, self.pending, self.candidate_since = self.pending, None, None
        assert session is not None
        out: list[Message] = []
        window = timedelta(seconds=self.settings.badge_window_s)
        usable = [b for b, at in self.badges if session.start - at <= window]
        out.extend(self._expire_badges(session.start))
        if usable:
            session.badge = usable[-1]
        self.badges = []
        self.session, self.low_since, self.tail = session, None, Totals()
        log.info("%s: session %s started (badge %r)", self.point, session.session_id, session.badge)
        out.append(session.message("start", ts))
        return out

    def _end(self) -> SessionMessage:
        session, end = self.session, self.low_since
        assert session is not None and end is not None
        self.session, self.low_since, self.tail = None, None, Totals()
        log.info(
            "%s: session %s ended, %.0f Wh",
            self.point,
            session.session_id,
            session.totals.energy_wh,
        )
        return session.message("end", end)

    def _expire_badges(self, now: datetime) -> list[Message]:
        window = timedelta(seconds=self.settings.badge_window_s)
        expired = [(b, at) for b, at in self.badges if now - at > window]
        self.badges = [(b, at) for b, at in self.badges if now - at <= window]
        out: list[Message] = []
        for badge, at in expired:
            log.warning("%s: badge %r matched no session", self.point, badge)
            out.append(
                EventMessage(
                    ts=now,
                    event="badge_unmatched",
                    message=f"badge {badge} shown at {at.isoformat()} matched no session "
                    f"starting within {self.settings.badge_window_s:g} s",
                    details={"badge": badge, "badge_ts": at.isoformat()},
                )
            )
        return out

    # ---- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_ts": _iso(self.last_ts),
            "candidate_since": _iso(self.candidate_since),
            "pending": _session_dict(self.pending),
            "session": _session_dict(self.session),
            "low_since": _iso(self.low_since),
            "tail": self.tail.by_period,
            "badges": [[b, at.isoformat()] for b, at in self.badges],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.last_ts = _dt(data.get("last_ts"))
        self.candidate_since = _dt(data.get("candidate_since"))
        self.pending = _session_from(data.get("pending"))
        self.session = _session_from(data.get("session"))
        self.low_since = _dt(data.get("low_since"))
        self.tail = Totals({k: list(v) for k, v in (data.get("tail") or {}).items()})
        self.badges = [(b, datetime.fromisoformat(at)) for b, at in data.get("badges", [])]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _session_dict(session: Session | None) -> dict[str, Any] | None:
    if session is None:
        return None
    return {
        "session_id": session.session_id,
        "start": session.start.isoformat(),
        "badge": session.badge,
        "max_power_w": session.max_power_w,
        "totals": session.totals.by_period,
    }


def _session_from(data: dict[str, Any] | None) -> Session | None:
    if data is None:
        return None
    return Session(
        session_id=data["session_id"],
        start=datetime.fromisoformat(data["start"]),
        badge=data.get("badge"),
        max_power_w=float(data.get("max_power_w", 0.0)),
        totals=Totals({k: list(v) for k, v in data.get("totals", {}).items()}),
    )
