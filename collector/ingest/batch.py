"""Batching between the MQTT thread (adds) and the writer thread (takes), by size or age.

A batch holds the line of every message in it, where each line came from (topic and payload,
for a dead letter if the database refuses the line) and the acknowledgement token of each
message; the service acknowledges a batch's messages only once its lines are in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# What the broker needs to release one message: (connection generation, packet id, QoS).
# A plain tuple: one is made per message, and a dataclass instance costs ten times more.
AckToken = tuple[int, int, int]
Origin = tuple[str, bytes | bytearray]  # (topic, payload) of the message a line was made of


@dataclass
class Batch:
    lines: list[str] = field(default_factory=list)
    origins: list[Origin] = field(default_factory=list)  # one per line
    tokens: list[AckToken] = field(default_factory=list)
    opened: float = 0.0  # monotonic time of its first message


class Batcher:
    """Thread-safe. `take` hands out the open batch once it has `max_lines` messages, once its
    first message is `max_age_s` old, or at once after `flush()`."""

    def __init__(
        self, max_lines: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_lines = max_lines
        self.max_age_s = max_age_s
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())  # the default RLock is slower
        self._open = Batch()
        self._flush = False

    def add(self, line: str | None, origin: Origin, token: AckToken) -> None:
        with self._cond:
            batch = self._open
            if not batch.tokens:
                batch.opened = self._clock()
            if line is not None:
                batch.lines.append(line)
                batch.origins.append(origin)
            batch.tokens.append(token)
            if len(batch.tokens) >= self.max_lines:
                self._cond.notify()

    def flush(self) -> None:
        """Hand out whatever is open without waiting (shutdown)."""
        with self._cond:
            self._flush = True
            self._cond.notify_all()

    def take(self, timeout: float) -> Batch | None:
        """The next batch due, waiting at most `timeout` seconds; None if none is due."""
        deadline = self._clock() + timeout
        with self._cond:
            while True:
                batch = self._open
                now = self._clock()
                if batch.tokens and (
                    self._flush
                    or len(batch.tokens) >= self.max_lines
                    or now - batch.opened >= self.max_age_s
                ):
                    self._open = Batch()
                    return batch
                if self._flush or now >= deadline:
                    return None
                wake = deadline
                if batch.tokens:
                    wake = min(wake, batch.opened + self.max_age_s)
                self._cond.wait(max(wake - now, 0.001))

    def __len__(self) -> int:
        with self._cond:
            return len(self._open.tokens)
