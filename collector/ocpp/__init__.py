"""OCPP 1.6J central system: the site's chargers connect to the collector (docs/ocpp.md).

`core` decides (no I/O, time passed in), `server` speaks websockets and OCPP, `events` is what
the rest of the collector is told.
"""
