"""The collector's pipeline contract: meters -> processors -> MQTT.

The input stage (collector.meters.poller) turns registers into `Reading`s. Processors (energy,
sessions, alerts) are pure: they get readings, availability changes, badges and clock ticks,
and return the messages to publish as `Outgoing(point, message)`; the catalogue
(collector.wire.kinds) says where and how each goes. The output stage (collector.mqtt) sends
them. The wiring is collector.collect.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from collector.meters.reading import Reading
from collector.wire.kinds import Outgoing


class Processor:
    """A stage between the meters and MQTT. Time is passed in, so processors test without I/O."""

    def on_reading(self, reading: Reading) -> Iterable[Outgoing]:
        return ()

    def on_availability(self, point: str, online: bool, now: datetime) -> Iterable[Outgoing]:
        return ()

    def on_badge(self, point: str, badge: str, now: datetime) -> Iterable[Outgoing]:
        return ()

    def on_tick(self, now: datetime) -> Iterable[Outgoing]:
        return ()

    def close(self) -> None:
        """An orderly stop: save what must survive the restart."""
