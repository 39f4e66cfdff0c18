"""Output stage (I/O): the MQTT link (paho), its client factory and journal; outbox (pure)."""
