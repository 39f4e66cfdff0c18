"""The retained load-shedding request for building systems (pure, no I/O).

`excess_w` tells a KNX gateway or a charger controller how many watts to take off the site:
the main meter's power above the target, where target = subscribed power x (1 -
shed_margin_share). With the default margin of 0 this is exactly how far the site is over its
subscribed power. The request is active while `site_overload` is firing, and (fail-safe,
`stale_main_is_overload`) while the main meter is offline or its data is stale: then the
power is unknown, so the request asks for everything the sockets were drawing
(`reason: main_meter_offline`).

A request is published when it changes (active, reason, or excess moved by `shed_step_w`) and
refreshed every `shed_refresh_s`, so a subscriber that missed one still converges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.config import AlertSettings
from collector.wire.messages import ShedMessage

REASON_OVERLOAD = "site_overload"
REASON_MAIN_OFFLINE = "main_meter_offline"
REASON_NORMAL = "normal"
REASON_NO_MAIN = "no_main_meter"


@dataclass(frozen=True)
class ShedRequest:
    active: bool
    excess_w: float
    reason: str


def decide(
    settings: AlertSettings,
    subscribed_power_w: float,
    overload_firing: bool,
    main_power_w: float | None,
    main_failed: bool,
    socket_power_w: float,
) -> ShedRequest:
    if main_failed and settings.stale_main_is_overload:
        return ShedRequest(True, round(socket_power_w), REASON_MAIN_OFFLINE)
    if overload_firing:
        target = subscribed_power_w * (1 - settings.shed_margin_share)
        excess = max(0.0, (main_power_w or 0.0) - target)
        # Once shed below the target the request holds (excess 0) until the alert resolves,
        # so controllers do not give the load back while the site is still near its limit.
        return ShedRequest(True, round(excess), REASON_OVERLOAD)
    return ShedRequest(False, 0.0, REASON_NORMAL)


class ShedPublisher:
    """Turns successive requests into the messages worth publishing."""

    def __init__(self, settings: AlertSettings) -> None:
        self._step_w = settings.shed_step_w
        self._refresh = timedelta(seconds=settings.shed_refresh_s)
        self._last: ShedRequest | None = None
        self._last_at: datetime | None = None

    def update(self, request: ShedRequest, now: datetime) -> ShedMessage | None:
        if not self._worth_publishing(request, now):
            return None
        self._last, self._last_at = request, now
        return ShedMessage(
            ts=now, active=request.active, excess_w=request.excess_w, reason=request.reason
        )

    def _worth_publishing(self, request: ShedRequest, now: datetime) -> bool:
        last, last_at = self._last, self._last_at
        if last is None or last_at is None:
            return True
        if (request.active, request.reason) != (last.active, last.reason):
            return True
        if (request.excess_w == 0) != (last.excess_w == 0):
            return True
        if abs(request.excess_w - last.excess_w) >= self._step_w:
            return True
        return now - last_at >= self._refresh
