"""Which raw readings to prune, and when a server can be pruned at all (pure).

With `influx.raw_retention_days` set, raw readings (`reading`) are kept for that many days;
older ones are deleted once `reading_1m` and `reading_1h` hold them (the I/O is
collector.store.prune). Energy windows, sessions and alerts share the retention policy
(bucket) and are never deleted, which is why a retention policy cannot do this.

Everything is in UTC, on whole hours: the hourly series' buckets, so that no hour is pruned
half-way and computed again from what is left of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DAY = timedelta(days=1)
# The only measurement pruning ever deletes from.
PRUNED = "reading"
# The fields every reading has one of (collector.wire.messages.StateMessage's four core
# keys): the oldest raw reading is the oldest of their first values.
CORE_FIELDS = ("power_w", "current_a", "voltage_v", "energy_wh")


def floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def cutoff(now: datetime, days: int) -> datetime:
    """Raw readings strictly older than this are pruned: `days` before `now`, on the hour."""
    return floor_hour(now - timedelta(days=days))


def plan(now: datetime, days: int, oldest: datetime | None) -> list[tuple[datetime, datetime]]:
    """The chunks [start, end) to prune, oldest first: days from the hour holding `oldest`
    (the oldest raw reading, None when there is none), the last one ending at the cutoff,
    all on whole UTC hours. A day at a time keeps a first run over a year of history bounded
    in memory (a day is read back to backfill it) and lets it make progress if it is
    interrupted; the hourly runs after it prune the hour that just passed the cutoff."""
    if now.tzinfo is None or (oldest is not None and oldest.tzinfo is None):
        raise ValueError("naive datetime: times must be timezone-aware")
    if days < 1:
        raise ValueError(f"retention of {days} days: must be at least 1")
    end = cutoff(now, days)
    if oldest is None or oldest >= end:
        return []
    start = floor_hour(oldest)
    out = []
    while start < end:
        stop = min(start + DAY, end)
        out.append((start, stop))
        start = stop
    return out


def rfc3339(ts: datetime) -> str:
    """`2026-11-23T10:00:00Z`: the times of /api/v2/delete (whole hours: no fraction)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def delete_body(start: datetime, end: datetime) -> dict[str, str]:
    """InfluxDB 2.x `/api/v2/delete` for the raw readings of [start, end) (whole hours). It
    stops a nanosecond before `end`, the server's precision: right whether it takes `stop`
    as inclusive or not, the first reading of the next, kept, hour stays."""
    last = (end - timedelta(seconds=1)).astimezone(UTC)
    return {
        "start": rfc3339(start),
        "stop": f"{last:%Y-%m-%dT%H:%M:%S}.999999999Z",
        "predicate": f'_measurement="{PRUNED}"',
    }


def major_version(version: str) -> str:
    """`1` for `1.6.7`, `2` for `v2.7.1`."""
    return version.strip().removeprefix("v").split(".", 1)[0]


def unsupported(version: str | None) -> str | None:
    """Why a server cannot be pruned, from its /ping's `X-Influxdb-Version` header (None: it
    can). InfluxDB 1.x answers `1.6.7`, 2.x `v2.7.1` or `2.7.1`; VictoriaMetrics sends no such
    header on /ping (its /query answers any statement with a list of databases, so asking it
    would go wrong silently); InfluxDB 3.x cannot delete by time range."""
    if version is None:
        return (
            "the server at influx.url is not InfluxDB 1.x or 2.x (no X-Influxdb-Version on "
            "/ping; VictoriaMetrics keeps data for its own -retentionPeriod)"
        )
    if major_version(version) in ("1", "2"):
        return None
    return (
        f"the server at influx.url is InfluxDB {version.strip()}, not 1.x or 2.x "
        "(InfluxDB 3.x keeps data for its database's own retention period)"
    )
