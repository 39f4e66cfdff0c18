"""MQTT topic names (SPEC.md) and their parsing, shared by every stage.

Which kinds live under a point and which under the site is the catalogue's (collector.wire.kinds);
the `PointKind` and `SiteKind` types name the same kinds for the type checker
(tests/wire/test_kinds.py checks that they agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from collector.wire.kinds import KINDS

PointKind = Literal[
    "state", "availability", "energy", "session", "event", "badge", "connector", "command", "limit"
]
SiteKind = Literal["status", "alert", "shed", "badges", "deadletter", "tempo", "subscription"]
CHARGERS = "chargers"  # `{site}/chargers/{charger}`: the `charger` kind
POINT_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.scope == "point")
SITE_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS.values() if k.scope == "site")


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

    def charger(self, charger: str) -> str:
        return f"{self.base}/{CHARGERS}/{charger}"


@dataclass(frozen=True)
class ParsedTopic:
    site: str
    kind: str
    point: str | None = None  # the charger's id for a `charger` message


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
    if len(rest) == 3 and rest[1] == CHARGERS and rest[0] and rest[2]:
        return ParsedTopic(site=rest[0], kind="charger", point=rest[2])
    if len(rest) == 3 and rest[2] in POINT_KINDS and rest[0] and rest[1]:
        return ParsedTopic(site=rest[0], kind=rest[2], point=rest[1])
    return None
