"""Input stage: readings and register decoding (pure); profiles, bus, Modbus links (`modbus_tcp`,
`rtu`) and poller (I/O)."""
