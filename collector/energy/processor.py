"""The energy stage of `irve collect`: windows, index events and sessions for every meter.

State is saved when something was emitted, at the start of the NEXT call (tick or reading),
i.e. once the previous messages are in the MQTT stage's hands (it keeps energy, session and
event messages through broker outages). A crash can therefore only repeat the last window,
never lose it, and a repeated window has the same start and tags, so the ingestor overwrites
it: nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from collector.config import MeterSettings, SiteConfig
from collector.energy.intervals import GUESSED_SPANS_WH, VOLTAGE_MAX_V, PointEnergy
from collector.energy.sessions import SessionTracker
from collector.energy.state import default_path, load_state, save_state
from collector.energy.tariff import Tariff
from collector.meters.profile import Profile
from collector.meters.reading import Reading
from collector.pipeline import Outgoing, Processor
from collector.schema import EventMessage, Message, SessionMessage

log = logging.getLogger(__name__)

SAVE_EVERY_S = 10.0


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
        state_file: Path | None = None,
        profiles: Mapping[str, Profile] | None = None,
    ) -> None:
        self.tariff = Tariff(site.tariff, site.site.tz)
        self.path = (
            state_file or site.energy.state_file or default_path(site.state_dir, site.site.id)
        )
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
        self.sessions = {
            m.id: SessionTracker(m.id, site.sessions) for m in site.meters if m.role == "socket"
        }
        saved = load_state(self.path)
        for point, data in saved.get("energy", {}).items():
            if point in self.points:
                self.points[point].restore(data)
        for point, data in saved.get("sessions", {}).items():
            if point in self.sessions:
                self.sessions[point].restore(data)
        self._dirty = False
        self._saved_at: datetime | None = None

    def charging(self, point: str) -> bool | None:
        """Is a session running on this socket? None for a point that is not a socket."""
        tracker = self.sessions.get(point)
        return None if tracker is None else tracker.charging

    def on_reading(self, reading: Reading) -> Iterable[Outgoing]:
        self._save_if_dirty()
        meter = self.points.get(reading.point)
        if meter is None:
            return []
        step = meter.update(reading.ts, reading.energy_wh, reading.power_w)
        out = [Outgoing("energy", reading.point, w) for w in step.windows]
        out += [Outgoing("event", reading.point, e) for e in step.events]
        tracker = self.sessions.get(reading.point)
        if tracker is not None:
            out += self._wrap(
                reading.point, tracker.update(reading.ts, reading.power_w, step.pieces)
            )
        self._dirty = self._dirty or bool(out)
        return out

    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        self._save_if_dirty()
        tracker = self.sessions.get(point)
        if tracker is None:
            log.warning("badge %r on %s ignored: not a socket of this site", badge, point)
            return []
        out = self._wrap(point, tracker.on_badge(badge, now))
        self._dirty = True
        return out

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        # The open windows' progress is saved every few seconds too, so a restart after a
        # crash or a stop shares little over a gap.
        if self._saved_at is None or (now - self._saved_at).total_seconds() >= SAVE_EVERY_S:
            self._dirty, self._saved_at = True, now
        self._save_if_dirty()
        out: list[Outgoing] = []
        for point, tracker in self.sessions.items():
            out += self._wrap(point, tracker.on_tick(now))
        self._dirty = self._dirty or bool(out)
        return out

    def close(self) -> None:
        """Save the state now (orderly shutdown): nothing since the last window is lost."""
        self.save()

    def save(self) -> None:
        save_state(
            self.path,
            {
                "energy": {p: m.to_dict() for p, m in self.points.items()},
                "sessions": {p: t.to_dict() for p, t in self.sessions.items()},
            },
        )
        self._dirty = False

    def _save_if_dirty(self) -> None:
        if not self._dirty:
            return
        try:
            self.save()
        except OSError as exc:
            log.error("cannot save energy state to %s: %s", self.path, exc)

    @staticmethod
    def _wrap(point: str, messages: list[Message]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for message in messages:
            if isinstance(message, SessionMessage):
                out.append(Outgoing("session", point, message))
            elif isinstance(message, EventMessage):
                out.append(Outgoing("event", point, message))
        return out
