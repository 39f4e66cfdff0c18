"""Messages -> InfluxDB line protocol, per the schema of SPEC.md (pure functions, no I/O).

Decisions the SPEC leaves open, documented in docs/ingest.md:
- Every numeric field is written as a float (`1.0`, never `1i`); booleans become 0.0/1.0.
  A field whose value is null is left out; a point with no field at all is not written.
- Timestamps are integer milliseconds (write precision `ms`).
- `reading.role` comes from the state message's optional `role`; "socket" when absent.
- An empty tag value is left out (line protocol forbids empty tag values), e.g. a session
  without badge has no `badge` tag: `GROUP BY badge` shows it as the empty group.
- Tag values and keys escape `,` `=` and space; newlines become spaces and backslashes `/`
  because InfluxDB 1.x and 2.x do not read an escaped backslash the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from collector.wire.messages import (
    AlertMessage,
    ConnectorMessage,
    EnergyMessage,
    EventMessage,
    LimitMessage,
    SessionMessage,
    StateMessage,
    SubscriptionMessage,
)
from collector.wire.times import EPOCH

_MS = timedelta(milliseconds=1)

_TAG = str.maketrans(
    {
        ",": "\\,",
        "=": "\\=",
        " ": "\\ ",
        "\n": "\\ ",
        "\r": "\\ ",
        "\t": "\\ ",
        "\\": "/",
    }
)
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"})


def escape_tag(text: str) -> str:
    """A tag key, tag value or field key, escaped for line protocol."""
    return text.translate(_TAG)


def string_field(text: str) -> str:
    """A string field value, quoted and escaped."""
    return '"' + text.translate(_STRING) + '"'


# InfluxDB stores nanoseconds in an int64: 1677-09-21 .. 2262-04-11.
_MIN_MS, _MAX_MS = -9_223_372_036_854, 9_223_372_036_854


def epoch_ms(ts: datetime) -> int:
    """Milliseconds since the epoch, computed exactly (no float rounding).

    Raises ValueError for a time InfluxDB cannot store, so it becomes a dead letter rather
    than a rejected batch.
    """
    millis = (ts - EPOCH) // _MS
    if not _MIN_MS < millis < _MAX_MS:
        raise ValueError(f"timestamp {ts.isoformat()} is outside what InfluxDB can store")
    return millis


def _number(value: float) -> str:
    # repr gives the shortest round-trip text and always reads back as a float in line
    # protocol (no `i` suffix), e.g. "230.0", "1e+20".
    return repr(float(value))


def _tags(pairs: tuple[tuple[str, str | None], ...]) -> str:
    return "".join(f",{key}={escape_tag(value)}" for key, value in pairs if value)


def _line(
    measurement: str,
    tags: tuple[tuple[str, str | None], ...],
    fields: list[str],
    ts: datetime | int,
) -> str | None:
    if not fields:
        return None
    millis = ts if isinstance(ts, int) else epoch_ms(ts)
    return f"{measurement}{_tags(tags)} {','.join(fields)} {millis}"


def _numbers(pairs: list[tuple[str, float | bool | None]]) -> list[str]:
    return [f"{key}={_number(value)}" for key, value in pairs if value is not None]


_READING_FIELDS = (
    "power_w",
    "current_a",
    "voltage_v",
    "energy_wh",
    "power_factor",
    "frequency_hz",
    "export_energy_wh",
    "rated_current_a",
    "limit_w",
    "warning_w",
)


def reading(site: str, point: str, msg: StateMessage) -> str | None:
    """`reading` (tags site, point, role): the meter's values at its reading time."""
    # Readings are most of the traffic: built inline, without the helpers' pair lists, and
    # from the model's __dict__ (a third faster than getattr through the pydantic class).
    values = msg.__dict__
    fields = [
        f"{key}={float(value)!r}" for key in _READING_FIELDS if (value := values[key]) is not None
    ]
    if msg.charging is not None:
        fields.append("charging=1.0" if msg.charging else "charging=0.0")
    if msg.currents_a:
        fields += _numbers([(f"current_l{i}_a", v) for i, v in enumerate(msg.currents_a, 1)])
    if msg.voltages_v:
        fields += _numbers([(f"voltage_l{i}_v", v) for i, v in enumerate(msg.voltages_v, 1)])
    if not fields:
        return None
    return (
        f"{_reading_head(site, point, msg.role or 'socket')} {','.join(fields)} {epoch_ms(msg.ts)}"
    )


@lru_cache(maxsize=65536)
def _reading_head(site: str, point: str, role: str) -> str:
    # Readings are most of the traffic and their series are few: escape each series once.
    return "reading" + _tags((("site", site), ("point", point), ("role", role)))


def energy(site: str, point: str, msg: EnergyMessage) -> str | None:
    """`energy` (tags site, point, period) at the interval start."""
    fields = _numbers(
        [
            ("energy_wh", msg.energy_wh),
            ("cost_eur", msg.cost_eur),
            ("price_eur_kwh", msg.price_eur_kwh),
            ("index_start_wh", msg.index_start_wh),
            ("index_end_wh", msg.index_end_wh),
            ("estimated", msg.estimated),
            ("tempo_fallback", msg.tempo_fallback),
        ]
    )
    return _line(
        "energy", (("site", site), ("point", point), ("period", msg.period)), fields, msg.start
    )


def session_start(msg: SessionMessage) -> datetime:
    """When the session began: its `start`, else `ts` for a start event, else `ts - duration`.

    Start and end events of one session thus land on the same point (same series and time),
    and the end event's final totals overwrite the start event's zeros.
    """
    if msg.start is not None:
        return msg.start
    if msg.event == "start":
        return msg.ts
    return msg.ts - timedelta(seconds=msg.duration_s)


def period_energy_field(period: str) -> str:
    """The `session` field of a tariff period's energy, as billing and dashboards read it."""
    return f"energy_{period.lower()}_wh"


def period_cost_field(period: str) -> str:
    """The `session` field of a tariff period's cost."""
    return f"cost_{period.lower()}_eur"


def session(site: str, point: str, msg: SessionMessage) -> str | None:
    """`session` (tags site, point, badge, room) at the session start."""
    pairs: list[tuple[str, float | bool | None]] = [
        ("energy_wh", msg.energy_wh),
        ("cost_eur", msg.cost_eur),
        ("duration_s", msg.duration_s),
        ("max_power_w", msg.max_power_w),
        ("charger_energy_wh", msg.charger_energy_wh),
        ("transaction_id", msg.transaction_id),
    ]
    for period, total in sorted(msg.periods.items()):
        pairs.append((period_energy_field(period), total.energy_wh))
        pairs.append((period_cost_field(period), total.cost_eur))
    fields = _numbers(pairs)
    fields.append(f"session_id={string_field(msg.session_id)}")
    fields.append(f"event={string_field(msg.event)}")
    if msg.source is not None:
        fields.append(f"source={string_field(msg.source)}")
    tags = (("site", site), ("point", point), ("badge", msg.badge), ("room", msg.room))
    return _line("session", tags, fields, session_start(msg))


def alert(site: str, msg: AlertMessage) -> str | None:
    """`alert` (tags site, point, alert) at the event time."""
    fields = [f"state={string_field(msg.state)}"]
    fields += _numbers([("value", msg.value), ("limit", msg.limit)])
    fields.append(f"message={string_field(msg.message)}")
    tags = (("site", site), ("point", msg.point), ("alert", msg.alert))
    return _line("alert", tags, fields, msg.ts)


def subscription(site: str, msg: SubscriptionMessage) -> str | None:
    """`subscription` (tags site, option; fields cost_eur, per_month_eur, kva) at the day's
    local midnight: one point per day, the same again if the day is published twice."""
    fields = _numbers(
        [("cost_eur", msg.cost_eur), ("per_month_eur", msg.per_month_eur), ("kva", msg.kva)]
    )
    return _line("subscription", (("site", site), ("option", msg.option)), fields, msg.ts)


def event(site: str, point: str, msg: EventMessage) -> str | None:
    """`event` (tags site, point, event): the message, and numeric details as floats.

    String details are left out: a detail key that is a number in one event and a string in
    another would be a field type conflict in InfluxDB.
    """
    fields = [f"message={string_field(msg.message)}"]
    for key, value in sorted(msg.details.items()):
        if isinstance(value, bool | int | float) and key != "message":
            fields.append(f"{escape_tag(key)}={_number(value)}")
    tags = (("site", site), ("point", point), ("event", msg.event))
    return _line("event", tags, fields, msg.ts)


def availability(site: str, point: str, online: bool, received_ms: int) -> str | None:
    """`availability` (tags site, point; field online 0/1) at the time it was received:
    the payload is a bare `online`/`offline` without timestamp."""
    fields = [f"online={_number(online)}"]
    return _line("availability", (("site", site), ("point", point)), fields, received_ms)


def connector(site: str, point: str, msg: ConnectorMessage) -> str | None:
    """`connector` (tags site, point, charger, connector; string fields status, error_code)."""
    fields = [f"status={string_field(msg.status)}", f"error_code={string_field(msg.error_code)}"]
    tags = (
        ("site", site),
        ("point", point),
        ("charger", msg.charger),
        ("connector", str(msg.connector)),
    )
    return _line("connector", tags, fields, msg.ts)


def limit(site: str, point: str, msg: LimitMessage) -> str | None:
    """`limit` (tags site, point; fields current_a, left out when there is no limit, and the
    string reason)."""
    fields = [*_numbers([("current_a", msg.current_a)]), f"reason={string_field(msg.reason)}"]
    return _line("limit", (("site", site), ("point", point)), fields, msg.ts)
