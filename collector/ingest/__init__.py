"""`irve ingest`, MQTT -> InfluxDB: payloads and checks (pure); service, receiver and writer (I/O)."""
