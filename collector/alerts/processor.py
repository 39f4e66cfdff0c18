"""The alert stage of the collector pipeline: alert rules and the shed request together."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from collector.alerts import shed
from collector.alerts.rules import AlertEvent, AlertRules
from collector.alerts.text import describe
from collector.config import SiteConfig
from collector.language import Lang
from collector.meters.reading import Reading
from collector.pipeline import MemoryStateStore, Processor, StateStore
from collector.wire.kinds import Outgoing
from collector.wire.messages import AlertMessage

log = logging.getLogger(__name__)

CLOSE_SAVE_S = 5.0


def point_label(site: SiteConfig, point: str, language: Lang) -> str:
    """How people name a point: the socket's label, or the main meter."""
    meter = next((m for m in site.meters if m.id == point), None)
    if meter is not None and meter.socket is not None:
        return meter.socket.label
    if meter is not None and meter.role == "main":
        return "général" if language == "fr" else "main"
    return point


def alert_message(site: SiteConfig, event: AlertEvent) -> AlertMessage:
    language = site.notify.language
    text = describe(
        event.alert,
        event.state,
        point_label(site, event.point, language),
        event.value,
        event.limit,
        language,
    )
    return AlertMessage(
        ts=event.ts,
        alert=event.alert,
        state=event.state,
        point=event.point,
        value=event.value,
        limit=event.limit,
        message=text,
    )


class AlertProcessor(Processor):
    """Outputs `alert` (site level, point in the payload) and the retained `shed` request."""

    def __init__(self, site: SiteConfig, store: StateStore | None = None) -> None:
        """`store`: where the firing alerts survive a restart (the collector gives the alert
        state file; by default, nothing survives)."""
        self.site = site
        self.rules = AlertRules(site)
        self.shed = shed.ShedPublisher(site.alerts)
        self.store: StateStore = store if store is not None else MemoryStateStore()
        # Alerts decided outside the rules (the OCPP bridge's charger_offline), saved with
        # theirs so that one state file says everything that was firing.
        self._held: set[tuple[str, str]] = set()
        self._restored: list[tuple[str, str]] = []
        saved = self.store.load().get("firing", [])
        try:
            self._restored = [(str(e["alert"]), str(e["point"])) for e in saved]
        except (KeyError, TypeError) as exc:
            log.error("alert state %s unreadable (%s): no alert firing", self.store.where, exc)
        self.rules.restore(self._restored)

    def restored(self, alert: str) -> set[str]:
        """The points this alert was firing on when the previous run stopped."""
        return {point for name, point in self._restored if name == alert}

    def hold(self, alert: str, points: Iterable[str]) -> None:
        """The points an alert decided elsewhere fires on now (all of them: the others have
        resolved); saved with the rules' firing alerts."""
        held = {(a, p) for a, p in self._held if a != alert} | {(alert, p) for p in points}
        if held != self._held:
            self._held = held
            self._save()

    def _save(self) -> None:
        firing = [*self.rules.firing_alerts(), *sorted(self._held)]
        self.store.submit({"firing": [{"alert": a, "point": p} for a, p in firing]})

    def on_reading(self, reading: Reading) -> Iterable[Outgoing]:
        return self._out(self.rules.reading(reading), reading.ts)

    def on_availability(self, point: str, online: bool, now: datetime) -> Iterable[Outgoing]:
        return self._out(self.rules.availability(point, online, now), now)

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        return self._out(self.rules.tick(now), now)

    def _out(self, events: list[AlertEvent], now: datetime) -> list[Outgoing]:
        out: list[Outgoing] = []
        for event in events:
            alert = alert_message(self.site, event)
            # The log tells what happened even where nobody subscribes to `alert`.
            log.log(
                logging.WARNING if event.state == "firing" else logging.INFO,
                "alert %s %s on %s: %s",
                event.alert,
                event.state,
                event.point,
                alert.message,
            )
            out.append(Outgoing(None, alert))
        if events:
            self._save()
        request = self._shed_request(now)
        if request is not None:
            message = self.shed.update(request, now)
            if message is not None:
                out.append(Outgoing(None, message))
        return out

    def close(self) -> None:
        if not self.store.close(CLOSE_SAVE_S):
            log.error(
                "cannot save alert state to %s on stopping (%s)",
                self.store.where,
                self.store.failure or "timed out",
            )

    def _shed_request(self, now: datetime) -> shed.ShedRequest | None:
        rules = self.rules
        if rules.main_point is None:
            return shed.ShedRequest(False, 0.0, shed.REASON_NO_MAIN)
        main_failed = rules.main_failed(now)
        if not rules.has_main_reading() and not main_failed:
            # Nothing known yet: leave the retained request of the previous run in place
            # rather than lift it blindly.
            return None
        return shed.decide(
            self.site.alerts,
            rules.subscribed_power_w,
            rules.firing("site_overload", rules.main_point),
            rules.main_power_w(),
            main_failed,
            rules.socket_power_w(),
        )
