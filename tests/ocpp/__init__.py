"""Tests of collector/ocpp."""
