"""What goes to a phone, and when (pure, no I/O): one queue per notification URL.

Rules, per alert key (alert name + point):
- a firing is sent at once, unless the previous firing of that key was sent less than
  `min_interval_s` ago: then it is held until the interval has passed;
- a resolved that arrives while its firing is still held cancels both (a flap the phone never
  needs to hear about); otherwise it follows its firing, in order;
- duplicates (firing while already firing, resolved while nothing is firing) are dropped, and
  a firing that arrives while a resolved is queued cancels that resolved (still firing);
- when the queue is full, the oldest firing + resolved pair of one key is dropped first (the
  phone ends in the right state), then the oldest message.
One message at a time is in flight (the sender retries it until it is delivered).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from collector.wire.messages import AlertMessage

Key = tuple[str, str]


def key_of(message: AlertMessage) -> Key:
    return (message.alert, message.point)


@dataclass
class Pending:
    message: AlertMessage
    not_before: float  # monotonic seconds
    seq: int = 0

    @property
    def key(self) -> Key:
        return key_of(self.message)

    @property
    def firing(self) -> bool:
        return self.message.state == "firing"


@dataclass
class NotifyQueue:
    min_interval_s: float
    capacity: int
    pending: list[Pending] = field(default_factory=list)
    in_flight: Pending | None = None
    dropped: int = 0  # lost to a full queue
    coalesced: int = 0  # duplicates and cancelled flaps
    _delivered_state: dict[Key, str] = field(default_factory=dict)
    _last_firing_sent: dict[Key, float] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, message: AlertMessage, now: float) -> None:
        key = key_of(message)
        queued = [p for p in self.pending if p.key == key]
        if message.state == "firing":
            self._add_firing(message, key, queued, now)
        else:
            self._add_resolved(message, key, queued, now)
        self._bound()

    def _add_firing(
        self, message: AlertMessage, key: Key, queued: list[Pending], now: float
    ) -> None:
        if queued:
            # Queued firing: a duplicate. Queued resolved: the alert never stopped, as far as
            # the phone will know.
            last = queued[-1]
            if not last.firing:
                self.pending.remove(last)
            self.coalesced += 1
            return
        if self._known_state(key) == "firing":
            self.coalesced += 1
            return
        previous = self._last_firing_sent.get(key)
        not_before = now if previous is None else max(now, previous + self.min_interval_s)
        self.pending.append(Pending(message, not_before, next(self._seq)))

    def _add_resolved(
        self, message: AlertMessage, key: Key, queued: list[Pending], now: float
    ) -> None:
        if queued and queued[-1].firing and queued[-1].not_before > now:
            self.pending.remove(queued[-1])
            self.coalesced += 2
            return
        firing_known = (queued and queued[-1].firing) or (
            not queued and self._known_state(key) == "firing"
        )
        if not firing_known:
            self.coalesced += 1
            return
        self.pending.append(Pending(message, now, next(self._seq)))

    def _known_state(self, key: Key) -> str | None:
        """The state the phone has, or will have once the message in flight is delivered."""
        if self.in_flight is not None and self.in_flight.key == key:
            return self.in_flight.message.state
        return self._delivered_state.get(key)

    def _bound(self) -> None:
        while len(self.pending) > self.capacity:
            pair = self._oldest_pair()
            if pair is not None:
                for item in pair:
                    self.pending.remove(item)
                self.dropped += 2
            else:
                self.pending.pop(0)
                self.dropped += 1

    def _oldest_pair(self) -> tuple[Pending, Pending] | None:
        for i, first in enumerate(self.pending):
            if not first.firing:
                continue
            for second in self.pending[i + 1 :]:
                if second.key == first.key:
                    if not second.firing:
                        return first, second
                    break
        return None

    def take(self, now: float) -> Pending | None:
        """The next message to send now (it is then in flight), or None."""
        if self.in_flight is not None:
            return None
        blocked: set[Key] = set()
        for item in self.pending:
            if item.key not in blocked and item.not_before <= now:
                self.pending.remove(item)
                self.in_flight = item
                return item
            blocked.add(item.key)  # keep each key's messages in order
        return None

    def wait_s(self, now: float) -> float | None:
        """How long until a held message is due; None when nothing is queued."""
        if not self.pending:
            return None
        return max(0.0, min(p.not_before for p in self.pending) - now)

    def delivered(self, item: Pending, now: float) -> None:
        self.in_flight = None
        self._delivered_state[item.key] = item.message.state
        if item.firing:
            self._last_firing_sent[item.key] = now
