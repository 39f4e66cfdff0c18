"""`irve ingest`: MQTT -> InfluxDB, at least once (decode, batch, write, acknowledge)."""
