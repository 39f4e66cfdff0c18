#!/usr/bin/env python3
"""Container healthcheck of the irve image: exit 0 when the container's service is healthy.

`irve-healthcheck` (no argument) looks at the container's main process (/proc/1/cmdline) and
checks what that service promises:
- `irve ingest`:   GET http://127.0.0.1:<IRVE_INGEST__HTTP_PORT or 9108>/healthz is 200
                   (broker connected and database reachable);
- `irve collect`:  the retained `<prefix>/<site>/status` on the broker is `online` (the
                   collector is connected; its last will turns it `offline`), read with the
                   collector's own settings (its site file and IRVE_MQTT__* environment),
                   as the user HEALTHCHECK_MQTT_USERNAME/_PASSWORD when set (the stack);
- `irve simulate`: every TCP bus of the site file accepts connections.
Explicit checks: `irve-healthcheck http URL`, `irve-healthcheck tcp HOST PORT`,
`irve-healthcheck mqtt-status SITE_FILE`.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

TIMEOUT_S = 5.0


CHECKED = ("ingest", "collect", "simulate")


def subcommand(cmdline: bytes) -> str | None:
    """The checked `irve` subcommand in a NUL-separated command line, if any."""
    args = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    runs_irve = any(
        os.path.basename(arg) == "irve" or (arg == "-m" and args[i + 1 : i + 2] == ["collector"])
        for i, arg in enumerate(args)
    )
    return next((arg for arg in args if arg in CHECKED), None) if runs_irve else None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return True
    except OSError:
        return False


def retained_status_online(site_file: str) -> bool:
    """Is the retained status of the site `online`? Same settings (file + env) as the collector."""
    import paho.mqtt.client as mqtt
    from pydantic import SecretStr

    from collector.config import SiteConfig
    from collector.mqtt.auth import new_client
    from collector.settings import load

    site = load(SiteConfig, site_file)
    settings = site.mqtt
    topic = f"{settings.topic_prefix}/{site.site.id}/status"
    result: list[bytes] = []
    done = threading.Event()
    # A broker that binds client ids to usernames (the stack's) gives a connection with the
    # collector's user the collector's id: it would disconnect the collector. The stack gives
    # the healthcheck a user of its own; elsewhere a random client id is enough.
    username = os.environ.get("HEALTHCHECK_MQTT_USERNAME")
    if username:
        password = os.environ.get("HEALTHCHECK_MQTT_PASSWORD")
        settings = settings.model_copy(
            update={"username": username, "password": SecretStr(password) if password else None}
        )
    client = new_client(settings, username or "", protocol="3.1.1")

    def on_connect(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        if reason == 0:
            c.subscribe(topic, qos=1)
        else:
            done.set()

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        result.append(bytes(msg.payload))
        done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(settings.host, settings.port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    done.wait(TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
    return result == [b"online"]


def simulator_ok(site_file: str) -> bool:
    from collector.config import SiteConfig, TcpBus
    from collector.settings import load

    site = load(SiteConfig, site_file)
    buses = [bus for bus in site.buses if isinstance(bus, TcpBus)]
    return all(tcp_open(bus.host, bus.port) for bus in buses)


def config_argument(cmdline: bytes) -> str | None:
    args = [arg.decode(errors="replace") for arg in cmdline.split(b"\0") if arg]
    for flag in ("-c", "--config"):
        if flag in args[:-1]:
            return args[args.index(flag) + 1]
    return None


def auto() -> bool:
    with open("/proc/1/cmdline", "rb") as handle:
        cmdline = handle.read()
    command = subcommand(cmdline)
    if command == "ingest":
        port = os.environ.get("IRVE_INGEST__HTTP_PORT", "9108")
        return http_ok(f"http://127.0.0.1:{port}/healthz")
    site_file = config_argument(cmdline)
    if command == "collect" and site_file is not None:
        return retained_status_online(site_file)
    if command == "simulate" and site_file is not None:
        return simulator_ok(site_file)
    print(f"irve-healthcheck: nothing to check for {cmdline!r}", file=sys.stderr)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        healthy = auto()
    elif args[0] == "http" and len(args) == 2:
        healthy = http_ok(args[1])
    elif args[0] == "tcp" and len(args) == 3:
        healthy = tcp_open(args[1], int(args[2]))
    elif args[0] == "mqtt-status" and len(args) == 2:
        healthy = retained_status_online(args[1])
    else:
        print(
            "usage: irve-healthcheck [http URL | tcp HOST PORT | mqtt-status SITE_FILE]",
            file=sys.stderr,
        )
        return 2
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
