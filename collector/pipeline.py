"""The collector's pipeline contract: meters -> processors -> MQTT.

The input stage (collector.meters.poller) turns registers into `Reading`s. Processors (energy,
sessions, alerts) are pure: they get readings, availability changes, badges and clock ticks,
and return the messages to publish as `Outgoing(point, message)`; the catalogue
(collector.wire.kinds) says where and how each goes. The output stage (collector.mqtt) sends
them. The wiring is collector.collect.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from collector.meters.reading import Reading
from collector.wire.kinds import Outgoing

RETRY_S = 1.0  # a state that could not be saved (full or read-only disk) is tried again this often


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


class StateStore(Protocol):
    """Where a processor keeps its state so that it survives a restart: a file in the collector
    (collector.state.FileStateStore), memory in batch computations and tests.

    Each snapshot gets a number (its generation); `durable` is the newest one known to be
    saved, which is how a processor knows when the messages a snapshot records as emitted
    may go out."""

    @property
    def where(self) -> str:
        """Where the state is kept, for log lines."""
        ...

    def load(self) -> dict[str, Any]: ...

    def submit(self, data: dict[str, Any]) -> int:
        """Hand over a snapshot (encoded at once: `data` may change afterwards); its number."""
        ...

    @property
    def durable(self) -> int:
        """The newest snapshot known to be saved (0: none yet, or the state loaded at start)."""
        ...

    @property
    def failure(self) -> str | None:
        """Why the last write failed, while saving fails."""
        ...

    def close(self, timeout: float) -> bool:
        """Save the last snapshot submitted (within `timeout`) and stop; False if it is not."""
        ...


class MemoryStateStore:
    """No file: for a batch computation that has nothing to resume (every snapshot counts as
    saved at once, nothing is loaded)."""

    def __init__(self) -> None:
        self._generation = 0

    @property
    def where(self) -> str:
        return "memory"

    @property
    def durable(self) -> int:
        return self._generation

    @property
    def failure(self) -> str | None:
        return None

    def load(self) -> dict[str, Any]:
        return {}

    def submit(self, data: dict[str, Any]) -> int:
        self._generation += 1
        return self._generation

    def close(self, timeout: float) -> bool:
        return True
