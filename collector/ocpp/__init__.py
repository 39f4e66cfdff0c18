"""OCPP 1.6J central system: core, events and bridge (pure), server (I/O: websockets)
(docs/ocpp.md).

`core` decides (no I/O, time passed in), `server` speaks websockets and OCPP, `events` is what
the rest of the collector is told, `bridge` turns those events into catalogue messages.
"""
