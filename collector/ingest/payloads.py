"""One MQTT message -> the line protocol it becomes, or the reason it is a dead letter (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError

from collector.ingest import checks
from collector.wire.kinds import KINDS, Kind
from collector.wire.messages import MAX_PAYLOAD_BYTES
from collector.wire.topics import CHARGERS, ParsedTopic, parse_topic

# What the ingestor subscribes to, under `{prefix}/+/...`: every kind written to InfluxDB.
_STORED: dict[str, Kind] = {k.name: k for k in KINDS.values() if k.to_line is not None}
POINT_KINDS = tuple(k.name for k in _STORED.values() if k.scope == "point")
SITE_KINDS = tuple(k.name for k in _STORED.values() if k.scope == "site")


def subscriptions(prefix: str, share_group: str | None) -> list[str]:
    """Topic filters, each through `$share/{group}/` when the load is shared."""
    filters = [f"{prefix}/+/+/{kind}" for kind in POINT_KINDS]
    filters += [f"{prefix}/+/{kind}" for kind in SITE_KINDS]
    if any(k.scope == "charger" for k in _STORED.values()):
        filters.append(f"{prefix}/+/{CHARGERS}/+")
    if share_group:
        filters = [f"$share/{share_group}/{topic}" for topic in filters]
    return filters


@dataclass(frozen=True, slots=True)
class Decoded:
    kind: str
    site: str
    line: str | None  # None: valid but nothing to store (a reading with every value null)


class Rejected(Exception):
    """A dead letter: `reason` says what is wrong; `site` is where to republish it."""

    def __init__(self, site: str, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.site = site
        self.kind = kind
        self.reason = reason


def site_of(prefix: str, topic: str) -> str:
    """The site level of a topic, even a malformed one, so a dead letter finds its site."""
    rest = topic[len(prefix) + 1 :].split("/") if topic.startswith(prefix + "/") else []
    return rest[0] if rest and rest[0] else "unknown"


def _validation_reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def topic_kind(prefix: str, topic: str) -> str:
    """The message kind a topic carries; "unknown" for a topic the ingestor does not read."""
    parsed = _route(prefix, topic)
    return parsed.kind if parsed is not None and parsed.kind in _STORED else "unknown"


@lru_cache(maxsize=16384)
def _route(prefix: str, topic: str) -> ParsedTopic | None:
    # Each topic comes back at every reading: parse it once (16,384 topics: a few MB at most).
    return parse_topic(prefix, topic)


def decode(prefix: str, topic: str, payload: bytes | bytearray, received_ms: int) -> Decoded:
    """Validate `payload` with the shared message model of its topic and map it to a line.

    Raises Rejected for anything that is not a valid message of a known topic.
    """
    parsed = _route(prefix, topic)
    kind = _STORED.get(parsed.kind) if parsed is not None else None
    if parsed is None or kind is None or kind.model is None or kind.to_line is None:
        raise Rejected(site_of(prefix, topic), "unknown", f"unknown topic shape: {topic!r}")
    site, point = parsed.site, parsed.point or ""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(
            site, kind.name, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
        )
    try:
        message = kind.model.from_payload(payload)
        check = checks.BY_KIND.get(kind.name)
        if check is not None:
            check(message)
        line = kind.to_line(site, point, message, received_ms)
    except ValidationError as exc:
        raise Rejected(site, kind.name, _validation_reason(exc)) from None
    except ValueError as exc:
        raise Rejected(site, kind.name, str(exc)) from None
    return Decoded(kind.name, site, line)
