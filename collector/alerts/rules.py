"""Alert rules evaluated at every reading, availability change and clock tick (pure, no I/O).

Each rule is a `Trigger`: it fires once its condition held for a minimum duration and resolves
once the value stayed under the limit minus a hysteresis band for another duration, so a value
hovering around a threshold gives one firing and one resolved, never a storm. Only
transitions come out; nothing repeats while an alert is firing.

- socket_overcurrent: the socket's highest phase current above its rated current;
- site_overload: the main meter's power above the subscribed power;
- site_overload_warning: the same above `warning_share` of it;
- meter_offline: `offline_after_polls` missed polls (availability changes
  are evaluated at once, ticks catch a meter the poller has given up on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from collector.alerts.text import AlertState
from collector.config import AlertSettings, SiteConfig
from collector.meters.reading import Reading
from collector.wire.messages import AlertName


@dataclass(frozen=True)
class AlertEvent:
    ts: datetime
    alert: AlertName
    state: AlertState
    point: str
    value: float | None
    limit: float | None


@dataclass
class Trigger:
    """Minimum durations and hysteresis for one alert on one point."""

    fire_after: timedelta
    resolve_after: timedelta
    firing: bool = False
    _since: datetime | None = field(default=None, repr=False)

    def update(self, over: bool, under: bool, now: datetime) -> AlertState | None:
        """`over`: the firing condition holds; `under`: the resolving condition holds."""
        wanted = under if self.firing else over
        if not wanted:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self._since < (self.resolve_after if self.firing else self.fire_after):
            return None
        self._since = None
        self.firing = not self.firing
        return "firing" if self.firing else "resolved"


@dataclass
class _Limit:
    """A value compared with a limit, and the trigger that debounces the comparison."""

    alert: AlertName
    limit: float
    hysteresis_share: float
    trigger: Trigger

    def update(self, point: str, value: float, now: datetime) -> AlertEvent | None:
        over = value > self.limit
        under = value <= self.limit * (1 - self.hysteresis_share)
        state = self.trigger.update(over, under, now)
        if state is None:
            return None
        return AlertEvent(now, self.alert, state, point, round(value, 3), self.limit)


@dataclass
class _Meter:
    role: str
    limits: list[_Limit]
    last_seen: datetime | None = None
    last_value: Reading | None = None
    offline: bool = False  # the meter_offline alert is firing


class AlertRules:
    """All alert rules of one site; feed it events in time order, get transitions back."""

    def __init__(self, site: SiteConfig) -> None:
        self.settings: AlertSettings = site.alerts
        s = self.settings
        self.subscribed_power_w = site.subscribed_power_w
        self.max_silence = timedelta(seconds=s.offline_after_polls * site.poll_interval_s)
        # A reading is stamped when its poll starts, so consecutive ones are an interval apart
        # give or take the event loop's jitter: a silence of exactly N intervals means the N-th
        # poll is due, not missed. Half an interval of slack makes it N missed polls (with
        # offline_after_polls 1, a poll a few ms late fired and resolved an alert at once).
        self._silent_after = self.max_silence + timedelta(seconds=site.poll_interval_s / 2)
        self.main_point = site.main_meter.id if site.main_meter else None
        self._started: datetime | None = None
        self._meters: dict[str, _Meter] = {}
        for meter in site.meters:
            limits: list[_Limit] = []
            if meter.socket is not None:
                limits.append(
                    self._limit(
                        "socket_overcurrent", meter.socket.rated_current_a, s.overcurrent_for_s
                    )
                )
            if meter.role == "main":
                warning = self.subscribed_power_w * s.warning_share
                limits.append(self._limit("site_overload_warning", warning, s.overload_for_s))
                limits.append(
                    self._limit("site_overload", self.subscribed_power_w, s.overload_for_s)
                )
            self._meters[meter.id] = _Meter(meter.role, limits)

    def _limit(self, alert: AlertName, limit: float, fire_after_s: float) -> _Limit:
        trigger = Trigger(
            timedelta(seconds=fire_after_s), timedelta(seconds=self.settings.resolve_for_s)
        )
        return _Limit(alert, limit, self.settings.hysteresis_share, trigger)

    # Inputs -------------------------------------------------------------------------------

    def reading(self, reading: Reading) -> list[AlertEvent]:
        meter = self._meters.get(reading.point)
        if meter is None:
            return []
        now = reading.ts
        self._start(now)
        events: list[AlertEvent] = []
        if meter.offline:
            silent_since = meter.last_seen or self._started or now
            meter.offline = False
            silence = (now - silent_since).total_seconds()
            events.append(
                AlertEvent(
                    now,
                    "meter_offline",
                    "resolved",
                    reading.point,
                    round(silence, 1),
                    self.max_silence.total_seconds(),
                )
            )
        meter.last_seen = now
        meter.last_value = reading
        events.extend(self._compare(reading.point, meter, now))
        return events

    def availability(self, point: str, online: bool, now: datetime) -> list[AlertEvent]:
        # Going online comes with a reading, which resolves; going offline only matters once
        # the silence is long enough, which `tick` judges the same way.
        return self.tick(now)

    def tick(self, now: datetime) -> list[AlertEvent]:
        self._start(now)
        events: list[AlertEvent] = []
        for point, meter in self._meters.items():
            if self._fresh(meter, now):
                # The last value still stands until the next poll: minimum durations elapse
                # even if a reading is late.
                events.extend(self._compare(point, meter, now))
            elif not meter.offline and self._silence(meter, now) >= self._silent_after:
                meter.offline = True
                events.append(
                    AlertEvent(
                        now,
                        "meter_offline",
                        "firing",
                        point,
                        round(self._silence(meter, now).total_seconds(), 1),
                        self.max_silence.total_seconds(),
                    )
                )
        return events

    # State for the shed policy ------------------------------------------------------------

    def firing(self, alert: AlertName, point: str) -> bool:
        meter = self._meters.get(point)
        if meter is None:
            return False
        if alert == "meter_offline":
            return meter.offline
        return any(lim.trigger.firing for lim in meter.limits if lim.alert == alert)

    def main_failed(self, now: datetime) -> bool:
        """Main meter offline or its data stale (no reading for offline_after_polls polls)."""
        if self.main_point is None:
            return False
        meter = self._meters[self.main_point]
        return meter.offline or self._silence(meter, now) >= self._silent_after

    def main_power_w(self) -> float | None:
        if self.main_point is None:
            return None
        last = self._meters[self.main_point].last_value
        return last.power_w if last is not None else None

    def has_main_reading(self) -> bool:
        return self.main_point is not None and self._meters[self.main_point].last_seen is not None

    def socket_power_w(self) -> float:
        """What the sockets drew at their last readings: the load a controller can shed."""
        total = 0.0
        for meter in self._meters.values():
            if meter.role == "socket" and meter.last_value is not None:
                total += max(0.0, meter.last_value.power_w or 0.0)
        return total

    # What survives a restart ---------------------------------------------------------------

    def firing_alerts(self) -> list[tuple[AlertName, str]]:
        """The alerts firing now, as (alert, point)."""
        out: list[tuple[AlertName, str]] = []
        for point, meter in self._meters.items():
            out += [(lim.alert, point) for lim in meter.limits if lim.trigger.firing]
            if meter.offline:
                out.append(("meter_offline", point))
        return out

    def restore(self, firing: list[tuple[str, str]]) -> None:
        """Alerts that were firing when the previous run stopped fire still: no second
        `firing`, and one `resolved` once their condition has cleared (a meter_offline one:
        at the meter's first reading). Alerts or points the site no longer has are ignored."""
        for alert, point in firing:
            meter = self._meters.get(point)
            if meter is None:
                continue
            if alert == "meter_offline":
                meter.offline = True
            for lim in meter.limits:
                if lim.alert == alert:
                    lim.trigger.firing = True

    # Internals ----------------------------------------------------------------------------

    def _start(self, now: datetime) -> None:
        if self._started is None:
            self._started = now

    def _silence(self, meter: _Meter, now: datetime) -> timedelta:
        since = meter.last_seen or self._started or now
        return now - since

    def _fresh(self, meter: _Meter, now: datetime) -> bool:
        return meter.last_seen is not None and now - meter.last_seen < self._silent_after

    def _compare(self, point: str, meter: _Meter, now: datetime) -> list[AlertEvent]:
        reading = meter.last_value
        if reading is None:
            return []
        events = []
        for lim in meter.limits:
            value = reading.current_a if lim.alert == "socket_overcurrent" else reading.power_w
            if value is None:
                continue
            event = lim.update(point, value, now)
            if event is not None:
                events.append(event)
        return events
