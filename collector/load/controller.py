"""One `Limit` per socket at every poll (pure: readings and time are passed in).

Reasons, strongest first: `schedule` (outside the socket's allowed periods: paused), `failsafe`
(the main meter has been silent for `failsafe_after_polls` polls: every socket is capped at
`failsafe_current_a`), `overload` (a limit from sharing the headroom, including one still
waiting for the conditions to rise), `none` (no limit).

Decreases apply at once. An increase (a higher limit, a resume, or no limit at all) waits until
the site has stayed `hysteresis_w` under its limit for `raise_after_s`, and until
`min_change_interval_s` has passed since the socket's limit last changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from collector.config import SiteConfig
from collector.load.allocate import SocketSpec, allocate
from collector.load.schedule import Schedules
from collector.load.settings import LoadManagementSettings

Reason = Literal["none", "overload", "schedule", "failsafe"]


@dataclass(frozen=True)
class Limit:
    current_a: float | None  # None: no limit; 0: paused
    reason: Reason


@dataclass(frozen=True)
class Poll:
    at: datetime
    main_w: float | None  # None: no valid reading of the main meter at this poll
    sockets_w: Mapping[str, float | None]


@dataclass(frozen=True)
class Decision:
    at: datetime
    limits: dict[str, Limit]
    site_limit_w: float
    headroom_w: float | None  # None while the main meter's power is unknown
    failsafe: bool


@dataclass
class _State:
    limit: Limit = field(default_factory=lambda: Limit(None, "none"))
    changed_at: datetime | None = None


def _amps(limit: float | None) -> float:
    return float("inf") if limit is None else limit


class LoadController:
    def __init__(
        self,
        settings: LoadManagementSettings,
        subscribed_power_w: float,
        sockets: Sequence[SocketSpec],
        schedules: Schedules | None = None,
        charging_w: float = 300.0,
    ) -> None:
        self.settings = settings
        self.site_limit_w = subscribed_power_w - settings.margin_w
        self._charging_w = charging_w  # a socket drawing this much has a car charging
        self._schedules = schedules
        order = {point: i for i, point in enumerate(settings.priority)}
        # Sockets missing from `priority` follow it in the site file's order.
        self._sockets = sorted(sockets, key=lambda s: order.get(s.id, len(order)))
        self._state = {socket.id: _State() for socket in sockets}
        self._silent_polls = 0
        self._under_since: datetime | None = None

    def decide(self, poll: Poll) -> Decision:
        s = self.settings
        self._silent_polls = 0 if poll.main_w is not None else self._silent_polls + 1
        # With load management disabled only the schedules act.
        failsafe = s.enabled and self._silent_polls >= s.failsafe_after_polls
        if poll.main_w is not None and poll.main_w <= self.site_limit_w - s.hysteresis_w:
            self._under_since = self._under_since or poll.at
        else:
            self._under_since = None
        allowed = [
            socket
            for socket in self._sockets
            if self._schedules is None or self._schedules.allowed(socket.id, poll.at)
        ]
        headroom: float | None = None
        targets: dict[str, Limit] = {}
        if failsafe:
            cap = s.failsafe_a
            targets = {
                socket.id: Limit(
                    min(_amps(self._state[socket.id].limit.current_a), cap), "failsafe"
                )
                for socket in allowed
            }
        elif not s.enabled:
            targets = {socket.id: Limit(None, "none") for socket in allowed}
        elif poll.main_w is not None:
            base_w = poll.main_w - sum(w for w in poll.sockets_w.values() if w is not None)
            headroom = self.site_limit_w - base_w
            targets = self._share(headroom, allowed, poll)
        # Otherwise the main meter missed a poll or two: limits stay as they are.
        for socket in self._sockets:
            if socket not in allowed:
                self._apply(socket.id, Limit(0.0, "schedule"), poll.at)
            elif socket.id in targets:
                self._apply(socket.id, targets[socket.id], poll.at)
        return Decision(
            poll.at,
            {point: state.limit for point, state in self._state.items()},
            self.site_limit_w,
            headroom,
            failsafe,
        )

    def _share(self, headroom_w: float, allowed: list[SocketSpec], poll: Poll) -> dict[str, Limit]:
        targets = self._allocate(headroom_w, allowed, poll)
        # A rise that must wait keeps its socket where it is: the others share what is left
        # rather than giving up current now for a rise that has not happened yet.
        held = [
            socket
            for socket in allowed
            if _amps(targets[socket.id].current_a) > _amps(self._limit(socket))
            and not self._may_raise(self._state[socket.id], poll.at)
        ]
        if not held:
            return targets
        kept_w = sum(_amps(self._limit(socket)) * socket.watts_per_amp for socket in held)
        rest = [socket for socket in allowed if socket not in held]
        return self._allocate(headroom_w - kept_w, rest, poll) | {
            socket.id: Limit(self._limit(socket), "overload") for socket in held
        }

    def _allocate(
        self, headroom_w: float, allowed: list[SocketSpec], poll: Poll
    ) -> dict[str, Limit]:
        # A socket we paused stays a candidate: its car may be waiting, and it resumes first.
        candidates = [
            socket
            for socket in allowed
            if (poll.sockets_w.get(socket.id) or 0.0) >= self._charging_w
            or self._limit(socket) == 0
        ]
        shares = allocate(
            headroom_w, candidates, self.settings.min_current_a, fair=not self.settings.priority
        )
        return {
            socket.id: Limit(amps, "none" if amps is None else "overload")
            for socket in allowed
            for amps in [shares.get(socket.id)]
        }

    def _limit(self, socket: SocketSpec) -> float | None:
        return self._state[socket.id].limit.current_a

    def _apply(self, point: str, target: Limit, at: datetime) -> None:
        state = self._state[point]
        before = state.limit.current_a
        if _amps(target.current_a) > _amps(before) and not self._may_raise(state, at):
            # Held: the socket keeps its limit until the site allows it to rise.
            if state.limit.reason in ("schedule", "failsafe"):
                state.limit = Limit(before, "overload")
            return
        if target.current_a != before:
            state.changed_at = at
        state.limit = target

    def _may_raise(self, state: _State, at: datetime) -> bool:
        s = self.settings
        if not s.enabled:
            return True
        if self._under_since is None or at - self._under_since < timedelta(seconds=s.raise_after_s):
            return False
        return state.changed_at is None or at - state.changed_at >= timedelta(
            seconds=s.min_change_interval_s
        )


def manages_load(config: SiteConfig) -> bool:
    """The site has a controller (load management or schedules): its sockets get limits."""
    return config.load_management is not None or bool(config.schedules)


def from_config(config: SiteConfig) -> LoadController | None:
    """The site's controller; None when it has neither load management nor schedules."""
    if not manages_load(config):
        return None
    settings = config.load_management or LoadManagementSettings(enabled=False)
    sockets = [
        SocketSpec(m.id, m.socket.rated_current_a, m.socket.phases)
        for m in config.meters
        if m.socket is not None
    ]
    schedules = Schedules(config.schedules, config.tariff, config.site.tz)
    # A socket drawing what starts a session has a car charging.
    charging_w = config.sessions.start_power_w
    return LoadController(
        settings, config.site.subscribed_power_kva * 1000, sockets, schedules, charging_w
    )
