"""IRVE telemetry: Modbus energy meters of EV charge points to MQTT, InfluxDB and Grafana."""

__version__ = "0.1.0"
