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

A socket served by an OCPP charger (`explicit`) is never started or ended by power: its
sessions are the charger's transactions, begun and stopped at the charger's times (`begin`,
`stop`). Their energy and cost are still the MID meter's pieces over that interval, the pieces
on either side of a boundary shared out in proportion of time. A transaction the charger queued
while its link was down starts in the past: the pieces of the last RECENT_S are kept (in
memory) for it. A session closed at a time the meter has not reached yet ends at the first
reading past it (or END_WAIT_S later if the meter stays silent). A meter serves one session at a
time: a second transaction on the same meter while one runs is counted in the first (logged).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from collector.config import ZERO, SessionSettings
from collector.energy.intervals import Piece
from collector.wire.messages import EventMessage, Message, Period, PeriodTotal, SessionMessage

log = logging.getLogger(__name__)

# Only the latest waiting badge is used; a few older ones are kept for the logs' sake, never
# an unbounded list (a flood of badges must not grow the state saved on every change).
MAX_WAITING_BADGES = 10
# The MID pieces kept for a charger's transaction that starts or ends in the past (queued while
# its link was down), at most RECENT_PIECES of them (an hour of 1 s polls).
RECENT_S = 3600.0
RECENT_PIECES = 3600
END_WAIT_S = 120.0
# The charger's own count may differ from the MID meter's by this much before it is reported.
MISMATCH_RATIO = 0.02
MISMATCH_WH = 100.0


@dataclass
class Totals:
    """Energy (Wh) and unrounded cost (EUR) per period. Costs are Decimal sums of each piece's
    kWh x price: a session of thousands of pieces adds up exactly, never with a float running
    sum's drift."""

    wh: dict[str, float] = field(default_factory=dict)
    eur: dict[str, Decimal] = field(default_factory=dict)

    def add(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            self.wh[piece.period] = self.wh.get(piece.period, 0.0) + piece.energy_wh
            self.eur[piece.period] = self.eur.get(piece.period, ZERO) + piece.cost_eur

    def subtract(self, pieces: list[Piece]) -> None:
        for piece in pieces:
            self.wh[piece.period] = max(0.0, self.wh.get(piece.period, 0.0) - piece.energy_wh)
            self.eur[piece.period] = max(ZERO, self.eur.get(piece.period, ZERO) - piece.cost_eur)

    def merge(self, other: Totals) -> None:
        for period, energy in other.wh.items():
            self.wh[period] = self.wh.get(period, 0.0) + energy
        for period, cost in other.eur.items():
            self.eur[period] = self.eur.get(period, ZERO) + cost

    @property
    def energy_wh(self) -> float:
        return sum(self.wh.values())

    @property
    def cost_eur(self) -> Decimal:
        return sum(self.eur.values(), ZERO)

    def periods(self) -> dict[Period, PeriodTotal]:
        return {
            p: PeriodTotal(energy_wh=round(e, 6), cost_eur=_eur6(self.eur.get(p, ZERO)))  # type: ignore[misc]
            for p, e in sorted(self.wh.items())
        }

    def to_dict(self) -> dict[str, list[float | str]]:
        """Period -> [Wh, EUR as exact decimal text] (the state file is JSON)."""
        return {p: [e, str(self.eur.get(p, ZERO))] for p, e in self.wh.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        # Older state files hold the cost as a float: its shortest text is taken.
        return cls(
            {p: float(e) for p, (e, _) in data.items()},
            {p: Decimal(str(c)) for p, (_, c) in data.items()},
        )


def _eur6(value: Decimal) -> float:
    """A message's cost: six decimals, as the float JSON carries."""
    return float(round(value, 6))


@dataclass
class Session:
    session_id: str
    start: datetime
    badge: str | None = None
    max_power_w: float = 0.0
    totals: Totals = field(default_factory=Totals)
    # A charger's transaction (explicit sessions only).
    room: str | None = None
    transaction_id: int | None = None
    end: datetime | None = None  # closed by the charger, waiting for the meter to reach it
    charger_energy_wh: float | None = None

    def message(self, event: str, ts: datetime) -> SessionMessage:
        explicit = self.transaction_id is not None
        return SessionMessage(
            event=event,
            session_id=self.session_id,
            ts=ts if event == "end" else self.start,
            badge=self.badge,
            energy_wh=round(self.totals.energy_wh, 6),
            cost_eur=_eur6(self.totals.cost_eur),
            duration_s=(ts - self.start).total_seconds(),
            max_power_w=self.max_power_w,
            start=self.start,
            periods=self.totals.periods(),
            room=self.room,
            source="ocpp" if explicit else None,
            transaction_id=self.transaction_id,
            charger_energy_wh=self.charger_energy_wh if event == "end" else None,
        )


class SessionTracker:
    """One socket's state machine: idle -> starting -> active (-> pausing) -> idle."""

    def __init__(self, point: str, settings: SessionSettings, explicit: bool = False) -> None:
        self.point = point
        self.settings = settings
        self.explicit = explicit
        self.recent: deque[Piece] = deque(maxlen=RECENT_PIECES)
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
        if self.explicit:
            return self._follow(ts, power_w, pieces)
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

    # ---- explicit sessions (a charger's transactions) ------------------------------------

    def begin(
        self,
        session_id: str,
        start: datetime,
        badge: str | None,
        room: str | None,
        transaction_id: int,
    ) -> list[Message]:
        if self.session is not None:
            log.warning(
                "%s: transaction %d starts while session %s runs on the same meter: its energy "
                "is counted in that session",
                self.point,
                transaction_id,
                self.session.session_id,
            )
            return []
        session = Session(session_id, start, badge, room=room, transaction_id=transaction_id)
        session.totals.add(_within(list(self.recent), start, None))
        self.session = session
        log.info("%s: session %s started (badge %r)", self.point, session_id, badge)
        return [session.message("start", start)]

    def stop(
        self, transaction_id: int, end: datetime, charger_energy_wh: float | None
    ) -> list[Message]:
        session = self.session
        if session is None or session.transaction_id != transaction_id:
            return []
        session.end, session.charger_energy_wh = max(end, session.start), charger_energy_wh
        if self.last_ts is not None and self.last_ts >= session.end:
            if not self.recent or self.recent[0].start > session.end:
                log.warning(
                    "%s: transaction %d ended at %s, before the meter readings kept in memory: "
                    "the session keeps the energy counted since",
                    self.point,
                    transaction_id,
                    session.end.isoformat(),
                )
            # The meter is past the end already: what it counted after it is taken back.
            session.totals.subtract(_within(list(self.recent), session.end, None))
            return self._finish()
        return []

    def _follow(self, ts: datetime, power_w: float | None, pieces: list[Piece]) -> list[Message]:
        self.last_ts = ts
        self.recent.extend(pieces)
        while self.recent and (ts - self.recent[0].end).total_seconds() > RECENT_S:
            self.recent.popleft()
        session = self.session
        if session is None:
            return []
        session.totals.add(_within(pieces, session.start, session.end))
        if power_w is not None and (session.end is None or ts <= session.end):
            session.max_power_w = max(session.max_power_w, power_w)
        if session.end is not None and ts >= session.end:
            return self._finish()
        return []

    def _finish(self) -> list[Message]:
        session = self.session
        assert session is not None and session.end is not None
        self.session = None
        mid = session.totals.energy_wh
        log.info("%s: session %s ended, %.0f Wh", self.point, session.session_id, mid)
        out: list[Message] = [session.message("end", session.end)]
        charger = session.charger_energy_wh
        if charger is not None and abs(charger - mid) > max(MISMATCH_RATIO * mid, MISMATCH_WH):
            out.append(
                EventMessage(
                    ts=session.end,
                    event="charger_energy_mismatch",
                    message=f"transaction {session.transaction_id}: the charger counted "
                    f"{charger:.0f} Wh, the MID meter {mid:.0f} Wh (the meter is billed)",
                    details={
                        "transaction_id": session.transaction_id,
                        "charger_energy_wh": charger,
                        "mid_energy_wh": round(mid, 6),
                    },
                )
            )
        return out

    def on_tick(self, now: datetime) -> list[Message]:
        out: list[Message] = []
        s = self.settings
        if self.explicit:
            session = self.session
            if session and session.end and (now - session.end).total_seconds() >= END_WAIT_S:
                log.warning("%s: no reading past the session's end: ended as it is", self.point)
                out.extend(self._finish())
            return out
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
            "tail": self.tail.to_dict(),
            "badges": [[b, at.isoformat()] for b, at in self.badges],
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.last_ts = _dt(data.get("last_ts"))
        self.candidate_since = _dt(data.get("candidate_since"))
        self.pending = _session_from(data.get("pending"))
        self.session = _session_from(data.get("session"))
        self.low_since = _dt(data.get("low_since"))
        self.tail = Totals.from_dict(data.get("tail") or {})
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
        "totals": session.totals.to_dict(),
        "room": session.room,
        "transaction_id": session.transaction_id,
        "end": _iso(session.end),
        "charger_energy_wh": session.charger_energy_wh,
    }


def _session_from(data: dict[str, Any] | None) -> Session | None:
    if data is None:
        return None
    return Session(
        session_id=data["session_id"],
        start=datetime.fromisoformat(data["start"]),
        badge=data.get("badge"),
        max_power_w=float(data.get("max_power_w", 0.0)),
        totals=Totals.from_dict(data.get("totals", {})),
        room=data.get("room"),
        transaction_id=data.get("transaction_id"),
        end=_dt(data.get("end")),
        charger_energy_wh=data.get("charger_energy_wh"),
    )


def _within(pieces: list[Piece], start: datetime, end: datetime | None) -> list[Piece]:
    """The part of each piece inside [start, end), its energy in proportion of time."""
    out = []
    for piece in pieces:
        lo, hi = max(piece.start, start), piece.end if end is None else min(piece.end, end)
        span = (piece.end - piece.start).total_seconds()
        if span <= 0:  # an instant: inside or not
            if start <= piece.start and (end is None or piece.start < end):
                out.append(piece)
        elif hi > lo:
            share = (hi - lo).total_seconds() / span
            out.append(replace(piece, start=lo, end=hi, energy_wh=piece.energy_wh * share))
    return out
