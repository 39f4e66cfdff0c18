"""The one MQTT client factory of the product (collector, ingestor, `irve recompute`, the
healthcheck, the demo viewer): credentials, TLS, client id and protocol version from the site
file, the same for every client."""

from __future__ import annotations

from typing import Literal, TypeVar, overload

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.config import MqttSettings

ClientT = TypeVar("ClientT", bound=mqtt.Client)


Protocol = Literal["5", "3.1.1"]


@overload
def new_client(
    settings: MqttSettings, client_id: str, protocol: Protocol | None = None
) -> mqtt.Client: ...


@overload
def new_client(
    settings: MqttSettings,
    client_id: str,
    protocol: Protocol | None = None,
    *,
    client_class: type[ClientT],
) -> ClientT: ...


def new_client(
    settings: MqttSettings,
    client_id: str,
    protocol: Protocol | None = None,
    *,
    client_class: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A paho client (callback API 2) with the settings' credentials and TLS; MQTT 5 or 3.1.1
    as `protocol` says, else as the settings say. Not connected."""
    v5 = (protocol or settings.protocol) == "5"
    client = client_class(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        # MQTT 5 has no clean session flag (its session expiry says it); 3.1.1 starts clean.
        clean_session=None if v5 else True,
    )
    _apply_credentials(client, settings)
    return client


def _apply_credentials(client: mqtt.Client, settings: MqttSettings) -> None:
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
