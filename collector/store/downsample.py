"""Pre-aggregated readings for dashboards over long ranges (pure: statements and lines only).

A year of 1 s readings is 31 million points per meter; a panel over that range would scan
them all. Two coarser series, in the same database and retention policy as the readings:

- `reading_1m`: one point per minute, series and tag set of `reading` (GROUP BY *);
- `reading_1h`: one point per hour, from `reading_1m`.

Each holds what the panels and alert rules read: means, maxima, last values, the limits the
readings carry and the number of readings (`samples`). A field keeps its raw name when it
holds the aggregate the panels take of it (the mean power is `power_w`, the limits their
maxima), so a panel's statement for a coarse series differs only by its measurement and, for
maxima and last values, by the `_max` / `_last` field.

Energy windows and sessions are never downsampled: billing and the energy panels read them
as they are, to the cent. Raw readings older than `influx.raw_retention_days` are deleted
once these two series hold them (collector.store.prune).

The same SELECT serves InfluxDB 1.x's continuous queries (`continuous_queries`) and the
backfill (`backfill_select`, whose rows `to_lines` turns into line protocol, written with
the ingestor's writer: it works where SELECT INTO does not, on 2.x and 3.x).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from collector.store.influxql import Series, time_literal
from collector.wire.lines import epoch_ms, escape_tag

RAW = "reading"


@dataclass(frozen=True)
class Aggregate:
    field: str  # in the source measurement
    function: str  # InfluxQL aggregate over the raw readings
    name: str  # field of the coarse series


def _mean_max_last(field: str) -> tuple[Aggregate, ...]:
    """What the panels draw of a value: its mean (under the raw name), maximum and last."""
    return (
        Aggregate(field, "mean", field),
        Aggregate(field, "max", f"{field}_max"),
        Aggregate(field, "last", f"{field}_last"),
    )


# Raw readings -> one minute. The hourly series aggregates these again (`ROLLUP`).
AGGREGATES: tuple[Aggregate, ...] = (
    *_mean_max_last("power_w"),
    *_mean_max_last("current_a"),
    Aggregate("voltage_v", "mean", "voltage_v"),
    Aggregate("energy_wh", "last", "energy_wh"),
    Aggregate("rated_current_a", "max", "rated_current_a"),
    Aggregate("limit_w", "max", "limit_w"),
    Aggregate("warning_w", "max", "warning_w"),
    Aggregate("power_w", "count", "samples"),
)
# A coarse value from finer ones: a mean of minute means (exact when every minute has as
# many readings, which a steady poll gives), a count is summed.
ROLLUP = {"mean": "mean", "max": "max", "last": "last", "count": "sum"}


@dataclass(frozen=True)
class Level:
    measurement: str
    step: str  # InfluxQL duration of a bucket
    step_s: int
    source: str  # the measurement it is computed from
    # Continuous query (1.x): how often it runs and how far back it recomputes, so that
    # readings arriving late (an ingestor's backlog of a few minutes) are counted.
    every: str
    recompute: str


MINUTE = Level("reading_1m", "1m", 60, RAW, every="1m", recompute="10m")
HOUR = Level("reading_1h", "1h", 3600, MINUTE.measurement, every="10m", recompute="2h")
LEVELS = (MINUTE, HOUR)


def query_name(level: Level) -> str:
    """The name of `level`'s continuous query (1.x), for creating and dropping it."""
    return f"irve_{level.measurement}"


def _selections(level: Level) -> str:
    if level.source == RAW:
        pairs = [(a.function, a.field, a.name) for a in AGGREGATES]
    else:
        pairs = [(ROLLUP[a.function], a.name, a.name) for a in AGGREGATES]
    return ", ".join(f'{function}("{field}") AS "{name}"' for function, field, name in pairs)


def select(level: Level, where: str = "", into: bool = False) -> str:
    """The aggregating SELECT of `level`; `where`: extra conditions (a time range)."""
    target = f' INTO "{level.measurement}"' if into else ""
    condition = f" WHERE {where}" if where else ""
    return (
        f'SELECT {_selections(level)}{target} FROM "{level.source}"{condition} '
        f"GROUP BY time({level.step}), * fill(none)"
    )


def backfill_select(level: Level, start: datetime, end: datetime) -> str:
    """`level`'s points for [start, end); both must fall on the level's bucket boundaries."""
    return select(level, f"time >= {time_literal(start)} AND time < {time_literal(end)}")


def continuous_queries(database: str) -> list[str]:
    """InfluxDB 1.x: the statements that keep both series up to date as readings arrive."""
    out = []
    for level in LEVELS:
        out.append(
            f'CREATE CONTINUOUS QUERY "{query_name(level)}" ON "{database}" '
            f"RESAMPLE EVERY {level.every} FOR {level.recompute} "
            f"BEGIN {select(level, into=True)} END"
        )
    return out


def to_lines(level: Level, series: list[Series]) -> Iterator[str]:
    """Line protocol for the rows of `backfill_select`: the series' tags, every non-null
    aggregate as a float field, the bucket's start as the time (in ms)."""
    for one in series:
        tags = "".join(
            f",{escape_tag(key)}={escape_tag(value)}"
            for key, value in sorted(one.tags.items())
            if value != ""
        )
        for row in one.rows():
            fields = [
                f"{key}={float(value)!r}"
                for key, value in row.items()
                if key not in one.tags and key != "time" and value is not None
            ]
            if fields:
                yield f"{level.measurement}{tags} {','.join(fields)} {epoch_ms(row['time'])}"


def chunks(start: datetime, end: datetime, size: timedelta) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut in pieces of `size` (the last one shorter)."""
    while start < end:
        stop = min(start + size, end)
        yield start, stop
        start = stop
