"""Sharing the site's headroom among the sockets that want to charge (pure).

Every socket kept charging gets at least the minimum current; the ones that cannot are paused
from the end of the priority order, so the first in that order resume first when headroom
returns. What is left above the minimums goes to the kept sockets either as an equal current
(fair share, capped by each socket's rating) or in priority order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Nominal voltage of the French LV network (NF C 15-100): watts to amps per phase.
NOMINAL_V = 230.0


@dataclass(frozen=True)
class SocketSpec:
    id: str
    rated_current_a: float
    phases: int = 1

    @property
    def watts_per_amp(self) -> float:
        return NOMINAL_V * self.phases


def allocate(
    headroom_w: float, candidates: Sequence[SocketSpec], min_a: float, fair: bool
) -> dict[str, float | None]:
    """Current per candidate (candidates highest priority first): None when its rating fits (no
    limit needed), 0 when paused, else min_a..rating rounded down to 0.1 A."""
    kept: list[SocketSpec] = []
    needed = 0.0
    for socket in candidates:
        # Strict order: a lower-priority socket never charges while a higher one is paused.
        if needed + min_a * socket.watts_per_amp > headroom_w:
            break
        kept.append(socket)
        needed += min_a * socket.watts_per_amp
    shares = _fair(headroom_w, kept) if fair else _ordered(headroom_w - needed, kept, min_a)
    result: dict[str, float | None] = {socket.id: 0.0 for socket in candidates}
    for socket in kept:
        amps = shares[socket.id]
        # Rounded down so that the limits obeyed together never exceed the headroom.
        result[socket.id] = None if amps >= socket.rated_current_a else math.floor(amps * 10) / 10
    return result


def _fair(budget_w: float, kept: Sequence[SocketSpec]) -> dict[str, float]:
    """Water filling: the same current for all, except sockets whose rating is below it."""
    shares: dict[str, float] = {}
    left = sorted(kept, key=lambda s: s.rated_current_a)
    while left:
        level = budget_w / sum(s.watts_per_amp for s in left)
        smallest = left[0]
        if level < smallest.rated_current_a:
            shares.update((s.id, level) for s in left)
            break
        shares[smallest.id] = smallest.rated_current_a
        budget_w -= smallest.rated_current_a * smallest.watts_per_amp
        left.pop(0)
    return shares


def _ordered(spare_w: float, kept: Sequence[SocketSpec], min_a: float) -> dict[str, float]:
    shares: dict[str, float] = {}
    for socket in kept:
        extra = max(0.0, min(socket.rated_current_a - min_a, spare_w / socket.watts_per_amp))
        shares[socket.id] = min_a + extra
        spare_w -= extra * socket.watts_per_amp
    return shares
