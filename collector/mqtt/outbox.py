"""Messages waiting for the broker: bounded, ordered, and never losing a critical message.

Pure (no I/O, no threads): the MQTT link (collector.mqtt.client) puts every message here and
takes them out in order while the broker accepts them. When the bound is reached, the OLDEST
`state` reading is dropped first (a later reading of the same meter supersedes it), then the
oldest other non-critical message (availability, status, discovery). Critical messages (energy,
session, event, alert, shed: money, energy or safety) are never dropped: if only critical
messages are left, the bound is exceeded and `over_limit` counts by how much.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from collector.wire.kinds import Envelope


@dataclass
class OutboxStats:
    dropped_state: int = 0
    dropped_other: int = 0
    over_limit: int = 0  # critical messages kept beyond the bound
    high_water: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_state + self.dropped_other


@dataclass
class Outbox:
    max_messages: int
    stats: OutboxStats = field(default_factory=OutboxStats)
    _entries: OrderedDict[int, Envelope] = field(default_factory=OrderedDict)
    # Sequence numbers of droppable entries, oldest first; exactly those still in _entries.
    _states: deque[int] = field(default_factory=deque)
    _others: deque[int] = field(default_factory=deque)
    _next_seq: int = 0

    def __post_init__(self) -> None:
        if self.max_messages < 1:
            raise ValueError("max_messages must be >= 1")

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def envelopes(self) -> Iterator[Envelope]:
        """The waiting messages, oldest first (read-only view)."""
        return iter(self._entries.values())

    def put(self, envelope: Envelope) -> None:
        """Queue a message; make room by the drop policy when the bound is reached."""
        if len(self._entries) >= self.max_messages and not self._make_room(envelope):
            return
        seq = self._next_seq
        self._next_seq += 1
        self._entries[seq] = envelope
        if envelope.droppable:
            self._lane(envelope).append(seq)
        elif len(self._entries) > self.max_messages:
            self.stats.over_limit += 1
        self.stats.high_water = max(self.stats.high_water, len(self._entries))

    def put_front(self, envelope: Envelope) -> None:
        """Give a message back (the link could not hand it over); it keeps its place first."""
        seq = self._first_seq() - 1
        self._entries[seq] = envelope
        self._entries.move_to_end(seq, last=False)
        if envelope.droppable:
            self._lane(envelope).appendleft(seq)

    def pop(self) -> Envelope:
        """The oldest message (IndexError when empty)."""
        if not self._entries:
            raise IndexError("outbox is empty")
        seq, envelope = self._entries.popitem(last=False)
        if envelope.droppable:
            lane = self._lane(envelope)
            # FIFO: the oldest entry is also the oldest of its lane.
            assert lane[0] == seq
            lane.popleft()
        return envelope

    def _make_room(self, incoming: Envelope) -> bool:
        """Drop by policy; False if the incoming message itself is the one to drop."""
        if self._states:
            del self._entries[self._states.popleft()]
            self.stats.dropped_state += 1
            return True
        if not incoming.droppable:
            if self._others:
                del self._entries[self._others.popleft()]
                self.stats.dropped_other += 1
            return True
        if incoming.kind == "state":
            self.stats.dropped_state += 1
            return False
        if self._others:
            del self._entries[self._others.popleft()]
            self.stats.dropped_other += 1
            return True
        self.stats.dropped_other += 1
        return False

    def _lane(self, envelope: Envelope) -> deque[int]:
        return self._states if envelope.kind == "state" else self._others

    def _first_seq(self) -> int:
        return next(iter(self._entries)) if self._entries else self._next_seq
