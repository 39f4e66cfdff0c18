"""Input stage: readings and register decoding (pure); profiles, bus and poller (I/O)."""
