"""The central system's events as catalogue messages (pure): the retained charger description,
connector statuses, the `charger_offline` alert and the chargers' answers to commands.

Transactions are not here: they are sessions, which the energy stage makes (collector.collect
hands them to it), so that their energy and cost are the MID meter's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from collector.alerts.text import describe
from collector.language import Lang
from collector.ocpp.events import (
    ChargerBooted,
    ChargerOffline,
    ChargerOnline,
    CommandResult,
    ConnectorStatus,
    Event,
)
from collector.wire.kinds import Outgoing
from collector.wire.messages import AlertMessage, ChargerMessage, ConnectorMessage, EventMessage

log = logging.getLogger(__name__)


class OcppBridge:
    def __init__(self, language: Lang = "fr", offline: Iterable[str] = ()) -> None:
        """`offline`: the chargers whose charger_offline alert was firing when the previous run
        stopped (the alert state file): still firing, not fired again if they stay silent,
        resolved when they talk."""
        self.language = language  # of the alerts' sentences, as the phone notifications
        # The last description of each charger: an online/offline change keeps what its boot said.
        self.chargers: dict[str, ChargerMessage] = {}
        self.offline: set[str] = set(offline)  # chargers whose charger_offline alert is firing

    def messages(self, event: Event) -> list[Outgoing]:
        if isinstance(event, ChargerBooted):
            return [
                self._describe(
                    event.charger,
                    ChargerMessage(
                        ts=event.ts,
                        online=True,
                        vendor=event.vendor,
                        model=event.model,
                        serial=event.serial,
                        firmware=event.firmware,
                        last_seen=event.ts,
                    ),
                )
            ]
        if isinstance(event, ChargerOnline):
            out = [self._describe(event.charger, self._changed(event.charger, event.ts, True))]
            if event.charger in self.offline:
                self.offline.discard(event.charger)
                out.append(self._alert(event.charger, event.ts, "resolved", None))
            return out
        if isinstance(event, ChargerOffline):
            described = self._changed(event.charger, event.ts, False, event.last_seen)
            out = [self._describe(event.charger, described)]
            if event.charger not in self.offline:  # firing already (before a restart): once
                self.offline.add(event.charger)
                silent_s = (event.ts - event.last_seen).total_seconds()
                out.append(self._alert(event.charger, event.ts, "firing", silent_s))
            return out
        if isinstance(event, ConnectorStatus):
            return self._connector(event)
        if isinstance(event, CommandResult):
            return [self._answer(event)] if event.point is not None else []
        return []  # warnings: the central system logs them

    def remember(self, charger: str, payload: bytes) -> None:
        """A description published before a restart: kept until the charger says more."""
        if charger in self.chargers or not payload:
            return
        try:
            self.chargers[charger] = ChargerMessage.from_payload(payload)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            log.warning("charger %s: former description unreadable (%s)", charger, exc)

    def _describe(self, charger: str, message: ChargerMessage) -> Outgoing:
        self.chargers[charger] = message
        return Outgoing(charger, message)

    def _changed(
        self, charger: str, ts: datetime, online: bool, last_seen: datetime | None = None
    ) -> ChargerMessage:
        known = self.chargers.get(charger)
        seen = last_seen if last_seen is not None else ts
        if known is None:
            return ChargerMessage(ts=ts, online=online, last_seen=seen)
        return known.model_copy(update={"ts": ts, "online": online, "last_seen": seen})

    def _alert(
        self,
        charger: str,
        ts: datetime,
        state: Literal["firing", "resolved"],
        silent_s: float | None,
    ) -> Outgoing:
        message = AlertMessage(
            ts=ts,
            alert="charger_offline",
            state=state,
            point=charger,
            value=silent_s,
            limit=None,
            message=describe("charger_offline", state, charger, silent_s, None, self.language),
        )
        return Outgoing(None, message)

    @staticmethod
    def _connector(event: ConnectorStatus) -> list[Outgoing]:
        if event.point is None:  # connector 0 is the charger itself; unmapped ones were warned
            return []
        try:
            message = ConnectorMessage(
                ts=event.ts,
                charger=event.charger,
                connector=event.connector,
                status=event.status,
                error_code=event.error_code,
                info=event.info,
            )
        except ValidationError as exc:
            log.warning("charger %s: status %r not published: %s", event.charger, event, exc)
            return []
        return [Outgoing(event.point, message)]

    @staticmethod
    def _answer(event: CommandResult) -> Outgoing:
        detail = f" ({event.detail})" if event.detail else ""
        message = EventMessage(
            ts=event.ts,
            event=f"command_{event.action}",
            message=f"{event.action} on charger {event.charger} connector {event.connector}: "
            f"{event.status}{detail}",
            details={
                "action": event.action,
                "status": event.status,
                "charger": event.charger,
                "connector": event.connector,
                "detail": event.detail,
            },
        )
        return Outgoing(event.point, message)
