#!/bin/sh
# Runs once, after 10-dbrp.sh, when the influxdb:2.7 container initialises an empty volume.
#
# The per-minute and per-hour readings (`reading_1m`, `reading_1h`) that the dashboards read
# over long ranges (docs/grafana.md#long-ranges-downsampled-readings). InfluxDB 2.x has no
# continuous queries: two tasks write them into the same bucket, with the fields and
# aggregates of the 1.x continuous queries (collector/store/downsample.py; `irve downsample
# --setup` creates those on 1.x). Readings older than a task's window (an existing database,
# a demo history, an ingestor's long backlog) are backfilled with
# `irve downsample --from ... --to ...`, which works on 2.x too.
#
# Each window starts on a bucket boundary, so no run overwrites a complete minute or hour
# with a partial one; the current bucket is rewritten at every run until it is complete.
# Not run by the test suite (no InfluxDB 2 there): see docs/grafana.md.
set -eu

bucket="$DOCKER_INFLUXDB_INIT_BUCKET"

# $1 task name, $2 how often, $3 source measurement, $4 destination, $5 bucket width,
# $6 how far back each run recomputes, $7 the function that combines counts (count on raw
# readings, sum on minutes), $8/$9/$10 the source fields of maxima, last values and counts.
task() {
    cat <<FLUX
import "date"

option task = {name: "$1", every: $2, offset: 5s}

data =
    from(bucket: "$bucket")
        |> range(start: date.truncate(t: -$6, unit: $5))
        |> filter(fn: (r) => r._measurement == "$3")

aggregate = (tables=<-, fn, rename) =>
    tables
        |> aggregateWindow(every: $5, fn: fn, createEmpty: false, timeSrc: "_start")
        |> map(fn: (r) => ({r with _measurement: "$4", _field: rename(f: r._field)}))

keep = (f) => f

union(
    tables: [
        data
            |> filter(fn: (r) => contains(value: r._field, set: ["power_w", "current_a", "voltage_v"]))
            |> aggregate(fn: mean, rename: keep),
        data
            |> filter(fn: (r) => contains(value: r._field, set: $8))
            |> aggregate(fn: max, rename: (f) => if f == "power_w_max" or f == "current_a_max" then f else f + "_max"),
        data
            |> filter(fn: (r) => contains(value: r._field, set: ["rated_current_a", "limit_w", "warning_w"]))
            |> aggregate(fn: max, rename: keep),
        data
            |> filter(fn: (r) => contains(value: r._field, set: $9))
            |> aggregate(fn: last, rename: (f) => if f == "power_w_last" or f == "current_a_last" then f else f + "_last"),
        data
            |> filter(fn: (r) => r._field == "energy_wh")
            |> aggregate(fn: last, rename: keep),
        data
            |> filter(fn: (r) => r._field == "$10")
            |> aggregate(fn: $7, rename: (f) => "samples")
            |> map(fn: (r) => ({r with _value: float(v: r._value)})),
    ],
)
    |> to(bucket: "$bucket")
FLUX
}

echo "irve: tasks irve_reading_1m and irve_reading_1h in bucket '$bucket'"
influx task create --org "$DOCKER_INFLUXDB_INIT_ORG" "$(task irve_reading_1m 1m reading \
    reading_1m 1m 10m count '["power_w", "current_a"]' '["power_w", "current_a"]' power_w)"
influx task create --org "$DOCKER_INFLUXDB_INIT_ORG" "$(task irve_reading_1h 10m reading_1m \
    reading_1h 1h 2h sum '["power_w_max", "current_a_max"]' '["power_w_last", "current_a_last"]' \
    samples)"
