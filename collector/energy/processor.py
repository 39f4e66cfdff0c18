"""The energy stage of `irve collect`: windows, index events and sessions for every meter.

Every message it emits (energy window, session start or end, event) is held back until the
state that records it as emitted is saved (collector.state: a saver thread, so the
polling loop never waits for the disk). A crash therefore restarts from a state that either
never emitted the message (it is computed again from the next readings, and was never
published) or emitted it: such a state also lists it under `unsent` until it is in the MQTT
stage's hands (its journal), and a restart sends those again, byte for byte. A window once
published is thus never published again with different numbers. While the state cannot be
saved (full or read-only disk), the messages wait in memory, an ERROR says so every
FAILURE_LOG_EVERY_S, and they go out as soon as a save succeeds.

Badges, and the open windows' progress every SAVE_EVERY_S, only mark the state for the next
snapshot: snapshots are coalesced, never one write per badge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from collector.config import MeterSettings, SiteConfig, TempoColour
from collector.energy.intervals import GUESSED_SPANS_WH, VOLTAGE_MAX_V, PointEnergy
from collector.energy.sessions import SessionTracker
from collector.energy.tariff import Tariff
from collector.meters.reading import Reading
from collector.pipeline import RETRY_S, MemoryStateStore, Processor, StateStore
from collector.wire.kinds import KINDS, Outgoing
from collector.wire.messages import Message

if TYPE_CHECKING:
    from collector.meters.profile import Profile

log = logging.getLogger(__name__)

SAVE_EVERY_S = 10.0
FAILURE_LOG_EVERY_S = 30.0
CLOSE_SAVE_S = 5.0


def max_power_w(meter: MeterSettings, site: SiteConfig) -> float:
    """The most a point can physically draw: the socket's rating, or the site's subscription."""
    if meter.socket is not None:
        return meter.socket.rated_current_a * VOLTAGE_MAX_V * meter.socket.phases
    return site.site.subscribed_power_kva * 1000


def _counter_spans(profile: Profile | None) -> tuple[float, ...]:
    """From the energy register's type and scale; guessed when unknown."""
    spans = profile.counter_spans_wh() if profile is not None else None
    return GUESSED_SPANS_WH if spans is None else spans


class EnergyProcessor(Processor):
    def __init__(
        self,
        site: SiteConfig,
        profiles: Mapping[str, Profile] | None = None,
        store: StateStore | None = None,
        colours: Mapping[date, TempoColour] | None = None,
    ) -> None:
        """`store`: where the state survives a restart (the collector gives the state file;
        by default, nothing survives). `colours`: the Tempo colours known so far, which the
        collector's colour source keeps adding to."""
        self.tariff = Tariff(site.tariff, site.site.tz, colours if colours is not None else {})
        self.store: StateStore = store if store is not None else MemoryStateStore()
        gap_s = max(float(site.energy.window_s), 5 * site.poll_interval_s)
        self.points = {
            m.id: PointEnergy(
                m.id,
                self.tariff,
                site.energy.window_s,
                max_power_w(m, site),
                gap_s,
                _counter_spans(profiles.get(m.profile) if profiles else None),
            )
            for m in site.meters
        }
        # Sockets served by an OCPP charger: their sessions are the charger's transactions.
        self.explicit = {point for c in site.chargers for point in c.connectors.values()}
        self.sessions = {
            m.id: SessionTracker(m.id, site.sessions, explicit=m.id in self.explicit)
            for m in site.meters
            if m.role == "socket"
        }
        saved = self.store.load()
        for point, data in saved.get("energy", {}).items():
            if point in self.points:
                self.points[point].restore(data)
        for point, data in saved.get("sessions", {}).items():
            if point in self.sessions:
                self.sessions[point].restore(data)
        # Emitted, each with the snapshot that records it: out once that one is durable. Those
        # of the state just loaded are durable already (snapshot 0).
        self._held: list[tuple[int, Outgoing]] = [(0, o) for o in _unsent(saved)]
        self._dirty = False
        self._saved_at: datetime | None = None
        self._failure_logged_at: datetime | None = None
        self._retried_at: datetime | None = None

    def charging(self, point: str) -> bool | None:
        """Is a session running on this socket? None for a point that is not a socket."""
        tracker = self.sessions.get(point)
        return None if tracker is None else tracker.charging

    def on_reading(self, reading: Reading) -> Iterable[Outgoing]:
        meter = self.points.get(reading.point)
        if meter is None:
            return self._release()
        step = meter.update(reading.ts, reading.energy_wh, reading.power_w)
        out = [Outgoing(reading.point, m) for m in [*step.windows, *step.events]]
        tracker = self.sessions.get(reading.point)
        if tracker is not None:
            out += self._wrap(
                reading.point, tracker.update(reading.ts, reading.power_w, step.pieces)
            )
        return self._emit(out, reading.ts)

    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        tracker = self.sessions.get(point)
        if tracker is None:
            log.warning("badge %r on %s ignored: not a socket of this site", badge, point)
            return []
        out = self._wrap(point, tracker.on_badge(badge, now))
        # A waiting badge is saved with the next snapshot (coalesced), not one write each.
        self._dirty = True
        if out:
            self._hold(out)
        return self._release()

    def open_session(
        self,
        point: str,
        start: datetime,
        badge: str | None,
        room: str | None,
        transaction_id: int,
        now: datetime,
    ) -> list[Outgoing]:
        """A charger's transaction starts on `point` at `start` (the charger's time)."""
        tracker = self._explicit(point)
        if tracker is None:
            return self._release()
        session_id = f"{point}-tx{transaction_id}"
        out = self._wrap(point, tracker.begin(session_id, start, badge, room, transaction_id))
        return self._emit(out, now) if out else self._mark(now)

    def close_session(
        self,
        point: str,
        transaction_id: int,
        end: datetime,
        charger_energy_wh: float | None,
        now: datetime,
    ) -> list[Outgoing]:
        """A charger's transaction ends at `end`: the session ends once the meter reaches it."""
        tracker = self._explicit(point)
        if tracker is None:
            return self._release()
        out = self._wrap(point, tracker.stop(transaction_id, end, charger_energy_wh))
        return self._emit(out, now) if out else self._mark(now)

    def _explicit(self, point: str) -> SessionTracker | None:
        tracker = self.sessions.get(point)
        if tracker is None or not tracker.explicit:
            log.warning("transaction on %s ignored: not a socket served by a charger", point)
            return None
        return tracker

    def _mark(self, now: datetime) -> list[Outgoing]:
        # A change without a message (a pending end) is saved with the next snapshot.
        self._dirty = True
        return self._emit([], now)

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        # The open windows' progress is saved every few seconds too, so a restart after a
        # crash or a stop shares little over a gap.
        if self._saved_at is None or (now - self._saved_at).total_seconds() >= SAVE_EVERY_S:
            self._dirty, self._saved_at = True, now
        out: list[Outgoing] = []
        for point, tracker in self.sessions.items():
            out += self._wrap(point, tracker.on_tick(now))
        return self._emit(out, now)

    def close(self) -> None:
        """Save the state now (orderly shutdown): nothing since the last window is lost. What
        is still held is saved as `unsent` and goes out at the next start."""
        self.store.submit(self._snapshot())
        if not self.store.close(CLOSE_SAVE_S):
            log.error(
                "cannot save energy state to %s on stopping (%s): the next start resumes "
                "from the last state saved",
                self.store.where,
                self.store.failure or "timed out",
            )

    @property
    def held(self) -> int:
        """Messages emitted and waiting for their state to be saved."""
        return len(self._held)

    def _emit(self, out: list[Outgoing], now: datetime) -> list[Outgoing]:
        failure = self.store.failure
        if out:
            self._hold(out)
        elif self._dirty or (failure is not None and self._retry_due(now)):
            # (A failing store is given the newest state to try again, at most every RETRY_S.)
            self._dirty = False
            self.store.submit(self._snapshot())
        self._report(failure, now)
        return self._release()

    def _hold(self, out: list[Outgoing]) -> None:
        self._dirty = False
        # The snapshot lists these as unsent: it must be taken once they are in _held.
        self._held += [(-1, o) for o in out]
        generation = self.store.submit(self._snapshot())
        self._held = [(generation if g < 0 else g, o) for g, o in self._held]

    def _retry_due(self, now: datetime) -> bool:
        if self._retried_at is not None and (now - self._retried_at).total_seconds() < RETRY_S:
            return False
        self._retried_at = now
        return True

    def _release(self) -> list[Outgoing]:
        if not self._held:
            return []
        durable = self.store.durable
        ready = [o for g, o in self._held if g <= durable]
        if ready:
            self._held = [(g, o) for g, o in self._held if g > durable]
            # The next snapshot no longer lists them as unsent.
            self._dirty = True
        return ready

    def _report(self, failure: str | None, now: datetime) -> None:
        """An ERROR while the state cannot be saved (at most every FAILURE_LOG_EVERY_S), and a
        line when it can again."""
        if failure is None:
            if self._failure_logged_at is not None:
                self._failure_logged_at = None
                log.warning("energy state %s saved again: held messages go out", self.store.where)
            return
        if (
            self._failure_logged_at is None
            or (now - self._failure_logged_at).total_seconds() >= FAILURE_LOG_EVERY_S
        ):
            self._failure_logged_at = now
            log.error(
                "cannot save energy state to %s (%s): %d energy/session message(s) held back "
                "until it can be saved",
                self.store.where,
                failure,
                len(self._held),
            )

    def _snapshot(self) -> dict[str, Any]:
        return {
            "energy": {p: m.to_dict() for p, m in self.points.items()},
            "sessions": {p: t.to_dict() for p, t in self.sessions.items()},
            "unsent": [
                {"kind": o.kind, "point": o.point, "message": o.message.to_json().decode()}
                for _, o in self._held
            ],
        }

    @staticmethod
    def _wrap(point: str, messages: list[Message]) -> list[Outgoing]:
        return [Outgoing(point, message) for message in messages]


def _unsent(saved: dict[str, Any]) -> list[Outgoing]:
    out: list[Outgoing] = []
    for entry in saved.get("unsent", []):
        try:
            kind = KINDS[entry["kind"]]
            if kind.model is None or not kind.critical:
                raise ValueError(f"{kind.name!r} is not a kind this stage holds")
            out.append(Outgoing(entry["point"], kind.model.model_validate_json(entry["message"])))
        except (KeyError, TypeError, ValueError) as exc:
            log.error("energy state: an unsent message cannot be read back (%s)", exc)
    return out
