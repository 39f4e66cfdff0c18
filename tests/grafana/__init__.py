"""Tests of the Grafana dashboards and alert rules (grafana/)."""
