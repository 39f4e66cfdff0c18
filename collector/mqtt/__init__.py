"""Output stage: the MQTT link (paho-mqtt), its outbox and Home Assistant discovery."""
