"""Meter simulator: a seeded model of a hotel and the Modbus servers that expose it."""
