"""The retained `irve/{site}/badges` list: the badges of the stays in force, each with its
room and the end of its validity. Sent at start, after every change of a stay, and when the
clock makes a stay start or end (checked every CHECK_S): the chargers' central system always
holds the whole list, never a stale one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from collector.desk.stays import badges_in_force
from collector.desk.storage import Storage, StorageUnavailable
from collector.mqtt.client import MqttLink
from collector.wire.kinds import KINDS, Envelope
from collector.wire.messages import BadgesMessage

log = logging.getLogger(__name__)

CHECK_S = 30.0


class BadgePublisher:
    def __init__(
        self,
        storage: Storage,
        link: MqttLink,
        topic: str,
        grace: timedelta,
        on_change: Callable[[dict[str, str]], None] = lambda rooms: None,
    ) -> None:
        self.storage = storage
        self.link = link
        self.topic = topic
        self.grace = grace
        self.on_change = on_change
        self.published: list[dict[str, str]] | None = None

    def refresh(self, force: bool = False) -> bool:
        """Publish the list if it changed (or `force`); True when it was sent."""
        now = datetime.now(UTC)
        badges = badges_in_force(self.storage.stays("closed IS NULL"), now, self.grace)
        if badges == self.published and not force:
            return False
        message = BadgesMessage.model_validate({"ts": now, "badges": badges})
        # Critical in the catalogue: an outbox that fills while the broker is away must not
        # drop the list.
        kind = KINDS["badges"]
        self.link.send(
            Envelope(self.topic, message.to_json(), kind.retained, kind.name, kind.critical)
        )
        self.published = badges
        self.on_change({b["badge"]: b["room"] for b in badges})
        log.info("badges: %d in force published on %s", len(badges), self.topic)
        return True

    async def run(self) -> None:
        """Republish whenever a stay starts or ends with the clock."""
        while True:
            await asyncio.sleep(CHECK_S)
            try:
                self.refresh()
            except StorageUnavailable as exc:
                log.warning("badges: database unavailable (%s); retried in %.0f s", exc, CHECK_S)
