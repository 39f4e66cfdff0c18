"""The catalogue of message kinds: for each, everything the stages need to know about it.

A kind is named after the last level of its topic. Its record says which model carries it,
whether it lives under a point or the site, whether the broker retains it, whether it is
critical (money, energy or safety: never dropped while the broker is away, journalled on disk)
and how the ingestor writes it to InfluxDB. Processors return `Outgoing(point, message)`; the
kind follows from the message's model, and `envelope` turns it into topic, payload and flags.

A new kind is one model in collector.wire.messages, one `Kind` here, one row in docs/mqtt.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from collector.wire import lines
from collector.wire.messages import (
    AlertMessage,
    AvailabilityMessage,
    BadgeMessage,
    BadgesMessage,
    ChargerMessage,
    CommandMessage,
    ConnectorMessage,
    EnergyMessage,
    EventMessage,
    LimitMessage,
    Message,
    SessionMessage,
    ShedMessage,
    StateMessage,
    StatusMessage,
    SubscriptionMessage,
    TempoMessage,
)

if TYPE_CHECKING:
    from collector.wire.topics import Topics

# "charger": under `{site}/chargers/{charger}`, the charger's id in `Outgoing.point`.
Scope = Literal["point", "site", "charger", "discovery"]
# (site, point, message, received_ms) -> one line of line protocol, or None: nothing to store.
ToLine = Callable[[str, str, Any, int], str | None]


@dataclass(frozen=True)
class Kind:
    name: str
    model: type[Message] | None  # None: a payload no model describes (dead letters, discovery)
    scope: Scope
    retained: bool
    critical: bool
    measurement: str | None = None  # None: not written to InfluxDB
    to_line: ToLine | None = None
    inbound: bool = False  # read by the collector, never published by it

    @property
    def droppable(self) -> bool:
        """Whether the outbox may drop it when the broker is away too long: what is not critical."""
        return not self.critical


def _state(site: str, point: str, msg: StateMessage, _received_ms: int) -> str | None:
    return lines.reading(site, point, msg)


def _availability(site: str, point: str, msg: AvailabilityMessage, received_ms: int) -> str | None:
    return lines.availability(site, point, msg.online, received_ms)


def _energy(site: str, point: str, msg: EnergyMessage, _received_ms: int) -> str | None:
    return lines.energy(site, point, msg)


def _session(site: str, point: str, msg: SessionMessage, _received_ms: int) -> str | None:
    return lines.session(site, point, msg)


def _event(site: str, point: str, msg: EventMessage, _received_ms: int) -> str | None:
    return lines.event(site, point, msg)


def _connector(site: str, point: str, msg: ConnectorMessage, _received_ms: int) -> str | None:
    return lines.connector(site, point, msg)


def _subscr(site: str, _point: str, msg: SubscriptionMessage, _received_ms: int) -> str | None:
    return lines.subscription(site, msg)


def _limit(site: str, point: str, msg: LimitMessage, _received_ms: int) -> str | None:
    return lines.limit(site, point, msg)


def _nothing(_site: str, _point: str, _msg: Message, _received_ms: int) -> str | None:
    return None


def _alert(site: str, _point: str, msg: AlertMessage, _received_ms: int) -> str | None:
    return lines.alert(site, msg)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("state", StateMessage, "point", True, False, "reading", _state),
        Kind(
            "availability", AvailabilityMessage, "point", True, False, "availability", _availability
        ),
        Kind("energy", EnergyMessage, "point", False, True, "energy", _energy),
        Kind("session", SessionMessage, "point", False, True, "session", _session),
        Kind("event", EventMessage, "point", False, True, "event", _event),
        Kind("badge", BadgeMessage, "point", False, False, inbound=True),
        Kind("connector", ConnectorMessage, "point", True, False, "connector", _connector),
        Kind("command", CommandMessage, "point", False, False, inbound=True),
        # Safety: what the chargers and contactors were told, never dropped.
        Kind("limit", LimitMessage, "point", True, True, "limit", _limit),
        # The ingestor reads charger messages to refuse malformed ones; nothing is stored.
        Kind("charger", ChargerMessage, "charger", True, False, None, _nothing),
        Kind("badges", BadgesMessage, "site", True, True, inbound=True),
        Kind("status", StatusMessage, "site", True, False),
        Kind("alert", AlertMessage, "site", False, True, "alert", _alert),
        Kind("shed", ShedMessage, "site", True, True),
        Kind("tempo", TempoMessage, "site", True, False, inbound=True),
        Kind("subscription", SubscriptionMessage, "site", True, True, "subscription", _subscr),
        # Published by the ingestor: a message it could not store, with the reason.
        Kind("deadletter", None, "site", False, False),
        # Home Assistant's configs, under its own prefix (collector.mqtt.discovery).
        Kind("discovery", None, "discovery", True, False),
    )
}

_BY_MODEL: dict[type[Message], Kind] = {k.model: k for k in KINDS.values() if k.model is not None}


def kind_of(message: Message) -> Kind:
    """The kind a message is published as (KeyError for a model that is no kind's)."""
    return _BY_MODEL[type(message)]


@dataclass(frozen=True)
class Outgoing:
    """A message to publish, about `point` (None for a site-level kind)."""

    point: str | None
    message: Message

    @property
    def kind(self) -> str:
        return kind_of(self.message).name

    @property
    def critical(self) -> bool:
        return kind_of(self.message).critical

    @property
    def retain(self) -> bool:
        return kind_of(self.message).retained


@dataclass(frozen=True)
class Envelope:
    """One MQTT message ready to go out (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool
    kind: str  # a name of KINDS
    critical: bool = False
    spool_id: int | None = None  # its entry in the on-disk journal (collector.mqtt.spool)

    @property
    def droppable(self) -> bool:
        return not self.critical


def envelope(topics: Topics, outgoing: Outgoing) -> Envelope:
    """Topic and flags from the catalogue: point kinds under the point, the others under the site."""
    kind = kind_of(outgoing.message)
    if kind.scope == "point":
        if outgoing.point is None:
            raise ValueError(f"{kind.name} message without a point")
        topic = f"{topics.base}/{outgoing.point}/{kind.name}"
    elif kind.scope == "site":
        topic = f"{topics.base}/{kind.name}"
    elif kind.scope == "charger":
        if outgoing.point is None:
            raise ValueError(f"{kind.name} message without a charger")
        topic = topics.charger(outgoing.point)
    else:
        raise ValueError(f"no topic for message kind {kind.name!r}")
    return Envelope(topic, outgoing.message.to_json(), kind.retained, kind.name, kind.critical)
