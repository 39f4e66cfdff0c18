"""`python -m scripts.watch -p PORT -u USER -P PASSWORD [-t TOPIC]... [-C COUNT]`: print every
message on the topics as `topic payload`, one a line, like `mosquitto_sub -v`, with the venv's
paho: `make demo` suggests it, so watching its broker needs no mosquitto-clients package.
"""

from __future__ import annotations

import argparse
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.watch", description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=1883)
    parser.add_argument("-u", "--username")
    parser.add_argument("-P", "--password")
    parser.add_argument("-t", "--topic", action="append", help="repeatable (default irve/#)")
    parser.add_argument("-C", "--count", type=int, help="exit after this many messages")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    topics = args.topic or ["irve/#"]
    done = threading.Event()
    received = 0
    failure: list[str] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if args.username:
        client.username_pw_set(args.username, args.password)

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: object
    ) -> None:
        if reason.is_failure:
            failure.append(f"{args.host}:{args.port}: {reason}")
            done.set()
            return
        client.subscribe([(topic, 1) for topic in topics])

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        print(msg.topic, bytes(msg.payload).decode(errors="replace"), flush=True)
        received += 1
        if args.count is not None and received >= args.count:
            done.set()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(args.host, args.port)
    except OSError as exc:
        print(f"watch: {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        print(f"watch: {failure[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
