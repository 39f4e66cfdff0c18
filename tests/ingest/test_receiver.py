"""StreamClient against a real mosquitto: what paho would deliver, read its faster way.

The lean PUBLISH path skips MQTT 5 properties and reads 64 KiB at a time, so these tests send
what could trip it: properties of every shape, payloads larger than the read buffer, empty
ones, thousands of small messages in one burst; and check that only what `ack_many`
acknowledged is gone from the broker after a reconnect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.ingest.receiver import StreamClient
from collector.mqtt.buffered import RECV_BYTES
from tests.support import servers
from tests.support.collect_helpers import SITE
from tests.support.tls import USERS, tls_stack_broker

pytestmark = pytest.mark.broker

Received = tuple[str, bytes, int]


@contextmanager
def stream_client(
    broker: servers.Server, client_id: str, topic: str = "t/#", *, manual_ack: bool = True
) -> Iterator[tuple[StreamClient, list[Received], list[mqtt.MQTTMessage]]]:
    """A connected StreamClient with a persistent session subscribed to `topic` at QoS 1."""
    client = StreamClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.manual_ack_set(manual_ack)
    streamed: list[Received] = []
    others: list[mqtt.MQTTMessage] = []
    lock = threading.Lock()

    def on_stream(topic: str, payload: bytes, mid: int) -> None:
        with lock:
            streamed.append((topic, payload, mid))

    client.on_stream_message = on_stream
    client.on_message = lambda _c, _u, msg: others.append(msg)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 600
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert subscribed.wait(10), "no SUBACK"
        yield client, streamed, others
    finally:
        client.disconnect()
        client.loop_stop()


def settled(client: StreamClient) -> None:
    """The PUBACKs written, and read by the broker before the DISCONNECT closes the socket."""
    servers.wait_until(lambda: not client.want_write(), 10, "PUBACKs written")
    time.sleep(0.2)


def publisher(broker: servers.Server) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def test_properties_large_and_empty_payloads_arrive_as_sent(broker: servers.Server) -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [("source", "test"), ("x" * 300, "y" * 300)]  # a 2-byte length
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    props.CorrelationData = b"\x00\x80\xff"
    big = bytes(range(256)) * (3 * RECV_BYTES // 256 + 7)  # spans several reads
    sent = [
        ("t/plain", b'{"power_w": 1.0}', None),
        ("t/props", b"with properties", props),
        ("t/big", big, props),
        ("t/empty", b"", None),
        ("t/\u00e9t\u00e9", "caf\u00e9".encode(), None),  # UTF-8 in the topic
    ]
    with stream_client(broker, "props") as (_client, streamed, others):
        pub = publisher(broker)
        for topic, payload, properties in sent:
            pub.publish(topic, payload, qos=1, properties=properties).wait_for_publish(10)
        pub.publish("t/qos0", b"at most once", qos=0).wait_for_publish(10)
        servers.wait_until(lambda: len(streamed) == len(sent) and bool(others), 10, "messages")
        pub.disconnect()
        pub.loop_stop()
    assert [(topic, payload) for topic, payload, _mid in streamed] == [
        (topic, payload) for topic, payload, _props in sent
    ]
    assert len({mid for _t, _p, mid in streamed}) == len(sent)
    # QoS 0 is not the stream's: paho's own path and callback, as before.
    assert [(m.topic, m.payload, m.qos) for m in others] == [("t/qos0", b"at most once", 0)]


def test_a_burst_arrives_whole_and_in_order(broker: servers.Server) -> None:
    n = 5000  # more than the broker's in-flight window: acknowledged as they arrive
    with stream_client(broker, "burst", manual_ack=False) as (_client, streamed, _others):
        pub = publisher(broker)
        infos = [pub.publish(f"t/{i % 7}", f"message {i}".encode(), qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        servers.wait_until(lambda: len(streamed) >= n, 30, "the burst")
        pub.disconnect()
        pub.loop_stop()
    assert [payload for _t, payload, _m in streamed] == [f"message {i}".encode() for i in range(n)]


def test_only_what_ack_many_acknowledged_is_gone_after_a_reconnect(
    broker: servers.Server,
) -> None:
    n = 300
    with stream_client(broker, "acks") as (client, streamed, _others):
        pub = publisher(broker)
        for i in range(n):
            pub.publish("t/x", str(i).encode(), qos=1).wait_for_publish(10)
        servers.wait_until(lambda: len(streamed) == n, 10, "first delivery")
        pub.disconnect()
        pub.loop_stop()
        # Even payloads acknowledged in one write; the odd ones never.
        client.ack_many(mid for _t, payload, mid in streamed if int(payload) % 2 == 0)
        settled(client)
    # The same session again: the broker redelivers exactly the unacknowledged ones.
    with stream_client(broker, "acks") as (client, again, _others):
        servers.wait_until(lambda: len(again) >= n // 2, 10, "redelivery")
        client.ack_many(mid for _t, _p, mid in again)
        settled(client)
    assert sorted(int(payload) for _t, payload, _m in again) == list(range(1, n, 2))
    with stream_client(broker, "acks") as (_client, third, _others):
        pub = publisher(broker)
        pub.publish("t/x", b"last", qos=1).wait_for_publish(10)
        servers.wait_until(lambda: bool(third), 10, "a new message")
        pub.disconnect()
        pub.loop_stop()
    assert [payload for _t, payload, _m in third] == [b"last"]  # nothing left from before


def test_without_manual_ack_paho_acknowledges_as_usual(broker: servers.Server) -> None:
    with stream_client(broker, "auto", manual_ack=False) as (_client, streamed, _others):
        pub = publisher(broker)
        pub.publish("t/a", b"one", qos=1).wait_for_publish(10)
        servers.wait_until(lambda: bool(streamed), 10, "the message")
        pub.disconnect()
        pub.loop_stop()
    with stream_client(broker, "auto", manual_ack=False) as (_client, again, _others):
        pub = publisher(broker)
        pub.publish("t/a", b"two", qos=1).wait_for_publish(10)
        servers.wait_until(lambda: bool(again), 10, "the next message")
        pub.disconnect()
        pub.loop_stop()
    assert [payload for _t, payload, _m in again] == [b"two"]


def test_over_tls_a_burst_and_a_payload_larger_than_a_tls_record(tmp_path: Path) -> None:
    """Over TLS a read returns at most one TLS record (16 KiB) and more may wait inside the SSL
    object, where `select` cannot see it: what paho checks with `pending()`."""
    site_topic = f"irve/{SITE}/cp1/state"
    with tls_stack_broker(tmp_path) as (port, tls_port):
        client = StreamClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set("ingestor", USERS["ingestor"])
        client.tls_set(ca_certs=str(tmp_path / "certs" / "ca.crt"))
        streamed: list[bytes] = []
        client.on_stream_message = lambda _t, payload, _mid: streamed.append(payload)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_connect = lambda c, *_: c.subscribe(site_topic, qos=1)
        client.connect("localhost", tls_port)  # the name in the server certificate
        client.loop_start()
        try:
            assert subscribed.wait(10), "no SUBACK"
            pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            pub.username_pw_set(SITE, USERS[SITE])
            pub.max_inflight_messages_set(1000)
            pub.max_queued_messages_set(0)
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            sent = [f"reading {i}".encode() for i in range(3000)]
            sent.insert(1500, b"x" * (5 * RECV_BYTES))
            for info in [pub.publish(site_topic, payload, qos=1) for payload in sent]:
                info.wait_for_publish(30)
            servers.wait_until(lambda: len(streamed) >= len(sent), 30, "every message")
            pub.disconnect()
            pub.loop_stop()
        finally:
            client.disconnect()
            client.loop_stop()
    assert streamed == sent
