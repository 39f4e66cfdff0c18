"""The collector's pipeline: meters -> processors -> MQTT.

The input stage (collector.meters.poller) turns registers into `Reading`s. Processors (energy,
sessions, alerts) are pure: they get readings, availability changes, badges and clock ticks,
and return the messages to publish. The output stage (collector.mqtt) sends them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from collector.meters.reading import Reading
from collector.schema import Message

OutKind = Literal["state", "availability", "energy", "session", "event", "alert", "shed", "status"]

# Never dropped while the broker is away: they carry money, energy or safety.
CRITICAL_KINDS: frozenset[str] = frozenset({"energy", "session", "event", "alert", "shed"})
RETAINED_KINDS: frozenset[str] = frozenset({"state", "availability", "shed", "status"})


@dataclass(frozen=True)
class Outgoing:
    kind: OutKind
    point: str | None  # None for site-level topics (alert, shed, status)
    message: Message | str  # str for availability and status ("online"/"offline")

    @property
    def critical(self) -> bool:
        return self.kind in CRITICAL_KINDS

    @property
    def retain(self) -> bool:
        return self.kind in RETAINED_KINDS


class Processor:
    """A stage between the meters and MQTT. Time is passed in, so processors test without I/O."""

    def on_reading(self, reading: Reading) -> Iterable[Outgoing]:
        return ()

    def on_availability(self, point: str, online: bool, now: datetime) -> Iterable[Outgoing]:
        return ()

    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        return ()

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        return ()

    def close(self) -> None:
        """An orderly stop: save what must survive the restart."""
