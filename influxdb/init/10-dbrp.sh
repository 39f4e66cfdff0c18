#!/bin/sh
# Runs once, when the influxdb:2.7 container initialises an empty volume (setup mode), after
# the org, bucket and admin token of the DOCKER_INFLUXDB_INIT_* variables exist; the influx
# CLI is already configured with that token.
#
# Grafana's dashboards query with InfluxQL (SPEC.md), which InfluxDB 2.x answers through its
# v1 compatibility API: it needs a DBRP mapping from database `irve` (retention policy
# `autogen`) to the bucket. Without it every panel says "database not found".
set -eu

db="${IRVE_INFLUXQL_DATABASE:-$DOCKER_INFLUXDB_INIT_BUCKET}"
echo "irve: mapping InfluxQL database '$db' (rp autogen) to bucket '$DOCKER_INFLUXDB_INIT_BUCKET'"
influx v1 dbrp create \
    --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --bucket-id "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
    --db "$db" \
    --rp autogen \
    --default
