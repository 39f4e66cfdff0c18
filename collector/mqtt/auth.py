"""Credentials, client ids and TLS from the site file, the same for every MQTT client of the
product (collector, ingestor, healthcheck)."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from collector.config import MqttSettings


def apply_credentials(client: mqtt.Client, settings: MqttSettings) -> None:
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password is not None else None
        client.username_pw_set(settings.username, password)
    if settings.tls or settings.ca_file is not None or settings.cert_file is not None:
        client.tls_set(
            ca_certs=str(settings.ca_file) if settings.ca_file else None,
            certfile=str(settings.cert_file) if settings.cert_file else None,
            keyfile=str(settings.key_file) if settings.key_file else None,
        )
        # As mosquitto_pub --insecure: the certificate is still verified, not the host name.
        client.tls_insecure_set(settings.tls_insecure)


def default_client_id(explicit: str | None, username: str | None, fallback: str) -> str:
    """`explicit` when configured, else the username, else `fallback`.

    The username first because a broker that binds client ids to users (the stack's
    mosquitto: use_username_as_clientid) gives every connection its username as client id
    anyway: the product then names its persistent session as the broker does, and two
    programs sharing a user are visibly one client."""
    return explicit or username or fallback
