"""Meter simulator (I/O): a seeded model of a hotel, the Modbus servers, demo history."""
