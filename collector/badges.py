"""Badges refused at input (see `schema.badge_problem`): said on the point's `event` topic so
the front desk or the reader's installer sees it, at most once per point every REPORT_EVERY_S.
Events are critical messages (journaled on disk): a flood of bad badges must not become a
flood of them."""

from __future__ import annotations

from datetime import datetime

from collector.wire.messages import EventMessage

REPORT_EVERY_S = 60.0


class BadgeRefusals:
    def __init__(self, every_s: float = REPORT_EVERY_S) -> None:
        self.every_s = every_s
        self._reported: dict[str, datetime] = {}  # point -> last event
        self._unreported: dict[str, int] = {}  # point -> refusals since

    def refused(self, point: str, reason: str, now: datetime) -> EventMessage | None:
        """The event to publish for this refusal, or None while the last one is recent."""
        last = self._reported.get(point)
        if last is not None and (now - last).total_seconds() < self.every_s:
            self._unreported[point] = self._unreported.get(point, 0) + 1
            return None
        self._reported[point] = now
        earlier = self._unreported.pop(point, 0)
        return EventMessage(
            ts=now,
            event="badge_refused",
            message=f"badge refused: {reason}",
            details={"reason": reason, "refused_before_unreported": earlier},
        )
