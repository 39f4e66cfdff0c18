"""Guest statements and re-pricing: statement arithmetic (pure); InfluxDB, rendering (I/O)."""
