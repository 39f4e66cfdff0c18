"""IRVE telemetry: Modbus energy meters of EV charge points to MQTT, InfluxDB and Grafana."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One source of truth, pyproject.toml, as installed (pip, pipx, the Docker image).
    __version__ = version("irve-telemetry")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
