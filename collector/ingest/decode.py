"""One MQTT message -> the line protocol it becomes, or the reason it is a dead letter (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pydantic import ValidationError

from collector.ingest import checks, lines
from collector.schema import (
    MAX_PAYLOAD_BYTES,
    AlertMessage,
    EnergyMessage,
    EventMessage,
    SessionMessage,
    StateMessage,
)
from collector.topics import ParsedTopic, parse_topic

# What the ingestor subscribes to, under `{prefix}/+/...`.
POINT_KINDS = ("state", "availability", "energy", "session", "event")
SITE_KINDS = ("alert",)
_KINDS = frozenset(POINT_KINDS + SITE_KINDS)


def subscriptions(prefix: str, share_group: str | None) -> list[str]:
    """Topic filters, each through `$share/{group}/` when the load is shared."""
    filters = [f"{prefix}/+/+/{kind}" for kind in POINT_KINDS]
    filters += [f"{prefix}/+/{kind}" for kind in SITE_KINDS]
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


def kind_of(prefix: str, topic: str) -> str:
    """The message kind a topic carries; "unknown" for a topic the ingestor does not read."""
    parsed = _route(prefix, topic)
    return parsed.kind if parsed is not None and parsed.kind in _KINDS else "unknown"


@lru_cache(maxsize=16384)
def _route(prefix: str, topic: str) -> ParsedTopic | None:
    # Each topic comes back at every reading: parse it once (16,384 topics: a few MB at most).
    return parse_topic(prefix, topic)


def decode(prefix: str, topic: str, payload: bytes | bytearray, received_ms: int) -> Decoded:
    """Validate `payload` with the shared message model of its topic and map it to a line.

    Raises Rejected for anything that is not a valid message of a known topic.
    """
    parsed = _route(prefix, topic)
    if parsed is None or parsed.kind not in _KINDS:
        raise Rejected(site_of(prefix, topic), "unknown", f"unknown topic shape: {topic!r}")
    site, kind, point = parsed.site, parsed.kind, parsed.point or ""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected(site, kind, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        if kind == "state":
            reading = StateMessage.model_validate_json(payload)
            checks.state(reading)
            line = lines.reading(site, point, reading)
        elif kind == "energy":
            energy = EnergyMessage.model_validate_json(payload)
            checks.energy(energy)
            line = lines.energy(site, point, energy)
        elif kind == "session":
            session = SessionMessage.model_validate_json(payload)
            checks.session(session)
            line = lines.session(site, point, session)
        elif kind == "event":
            event = EventMessage.model_validate_json(payload)
            checks.event(event)
            line = lines.event(site, point, event)
        elif kind == "alert":
            alert = AlertMessage.model_validate_json(payload)
            checks.alert(alert)
            line = lines.alert(site, alert)
        else:
            line = lines.availability(site, point, _online(payload), received_ms)
    except ValidationError as exc:
        raise Rejected(site, kind, _validation_reason(exc)) from None
    except ValueError as exc:
        raise Rejected(site, kind, str(exc)) from None
    return Decoded(kind, site, line)


def _online(payload: bytes | bytearray) -> bool:
    text = payload.strip()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    raise ValueError(f"availability must be 'online' or 'offline', not {payload[:40]!r}")
