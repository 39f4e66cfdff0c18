"""`irve ingest`, MQTT -> InfluxDB: payloads and checks (pure); service and writer (I/O)."""
