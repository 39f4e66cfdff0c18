"""MQTT topic names (SPEC.md) and their parsing, shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PointKind = Literal["state", "availability", "energy", "session", "event", "badge"]
SiteKind = Literal["status", "alert", "shed", "deadletter"]
POINT_KINDS: tuple[PointKind, ...] = (
    "state",
    "availability",
    "energy",
    "session",
    "event",
    "badge",
)
SITE_KINDS: tuple[SiteKind, ...] = ("status", "alert", "shed", "deadletter")


@dataclass(frozen=True)
class Topics:
    prefix: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    def point(self, point: str, kind: PointKind) -> str:
        return f"{self.base}/{point}/{kind}"

    def site_topic(self, kind: SiteKind) -> str:
        return f"{self.base}/{kind}"


@dataclass(frozen=True)
class ParsedTopic:
    site: str
    kind: str
    point: str | None = None


def parse_topic(prefix: str, topic: str) -> ParsedTopic | None:
    """`irve/hotel/cp1/state` -> ParsedTopic(site='hotel', kind='state', point='cp1').

    Returns None for a topic that is not one of ours, so callers can report it.
    """
    parts = topic.split("/")
    head = prefix.split("/")
    if parts[: len(head)] != head:
        return None
    rest = parts[len(head) :]
    if len(rest) == 2 and rest[1] in SITE_KINDS and rest[0]:
        return ParsedTopic(site=rest[0], kind=rest[1])
    if len(rest) == 3 and rest[2] in POINT_KINDS and rest[0] and rest[1]:
        return ParsedTopic(site=rest[0], kind=rest[2], point=rest[1])
    return None
