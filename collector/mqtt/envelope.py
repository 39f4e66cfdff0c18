"""An Outgoing (what processors produce) as an MQTT message: topic, payload bytes, flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from collector.pipeline import Outgoing
from collector.schema import Message
from collector.topics import POINT_KINDS, SITE_KINDS, PointKind, SiteKind, Topics


@dataclass(frozen=True)
class Envelope:
    """One MQTT message ready to go out (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool
    kind: str  # an OutKind ("state", "energy", ...) or "discovery"
    critical: bool = False
    spool_id: int | None = None  # its entry in the on-disk journal (collector.mqtt.spool)


def envelope_for(topics: Topics, outgoing: Outgoing) -> Envelope:
    """Topic per SPEC: point kinds under the point, alert/shed/status under the site."""
    if outgoing.kind in POINT_KINDS:
        if outgoing.point is None:
            raise ValueError(f"{outgoing.kind} message without a point")
        topic = topics.point(outgoing.point, cast(PointKind, outgoing.kind))
    elif outgoing.kind in SITE_KINDS:
        topic = topics.site_topic(cast(SiteKind, outgoing.kind))
    else:
        raise ValueError(f"no topic for message kind {outgoing.kind!r}")
    message = outgoing.message
    payload = message.to_json() if isinstance(message, Message) else message.encode()
    return Envelope(topic, payload, outgoing.retain, outgoing.kind, outgoing.critical)
