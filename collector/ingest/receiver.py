"""The ingestor's MQTT client: paho, driven for a stream of QoS 1 PUBLISHes (network I/O).

Why not paho as it comes: a profile of `irve ingest` draining a backlog spent two thirds of
its time in paho's handling of each incoming packet (docs/benchmarks.md, "Ingestor"):
- paho reads each packet with three `recv` calls (command byte, length byte, the rest) and
  one `select` call, so four system calls per message. `StreamClient` is a
  `collector.mqtt.buffered.BufferedClient`: it reads the socket 64 KiB at a time;
- for each PUBLISH paho builds an MQTTMessage, parses MQTT 5 properties into a Properties
  object, formats a debug log line and matches the topic against per-topic callbacks. The
  ingestor needs topic, payload and packet id: `StreamClient` reads those three from the
  packet and calls `on_stream_message` (properties are skipped; the ingestor uses none);
- one PUBACK per message means one `send` per message: `ack_many` queues a batch's
  PUBACKs as one write.

Anything else (other packets, QoS 0 or 2, a packet it cannot read) goes through paho's own
code, as do connecting, keepalive, reconnects and TLS. Relies on paho 2.x's internals
(`_sock_recv`, `_in_packet`, `_packet_queue`); tests/ingest/test_receiver.py checks them
against a real broker.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from collector.mqtt.buffered import BufferedClient

StreamHandler = Callable[[str, bytes, int], None]  # (topic, payload, packet id) of a QoS 1

_PUBLISH, _PUBACK = 0x30, 0x40
_PUBACK_PACKET = struct.Struct("!BBH")  # MQTT 3.1.1 and 5: remaining length 2 = success
_U16 = struct.Struct("!H")


class StreamClient(BufferedClient):
    """paho's Client with buffered reads, a lean QoS 1 PUBLISH path and batched PUBACKs.

    Set `on_stream_message` to receive QoS 1 messages as (topic, payload, packet id), called
    under paho's callback lock like any paho callback; with manual acknowledgement on, each
    must be acknowledged with `ack_many` (or paho's `ack`).
    """

    on_stream_message: StreamHandler | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_stream_message
        command = self._in_packet["command"]
        if handler is None or (command & 0x06) != 0x02:  # not QoS 1: paho's own way
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            (topic_len,) = _U16.unpack_from(packet, 0)
            topic = packet[2 : 2 + topic_len].decode("utf-8")
            pos = 2 + topic_len
            (mid,) = _U16.unpack_from(packet, pos)
            pos += 2
            if self._protocol == mqtt.MQTTv5:
                properties_len, shift = 0, 0
                while True:  # a variable byte integer: 7 bits a byte, high bit = more
                    byte = packet[pos]
                    pos += 1
                    properties_len |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80 or shift > 21:
                        break
                pos += properties_len
            if pos > len(packet):
                raise ValueError("properties longer than the packet")
        except (struct.error, UnicodeDecodeError, IndexError, ValueError):
            return super()._handle_publish()  # paho reports what is wrong with it
        payload = bytes(packet[pos:])
        with self._in_callback_mutex:
            handler(topic, payload, mid)
        if self._manual_ack:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._send_puback(mid)

    def ack_many(self, mids: Iterable[int]) -> None:
        """Acknowledge QoS 1 messages by packet id, their PUBACKs sent in one write.

        From another thread, hold paho's callback lock (as the ingestor does) so that the
        network thread sends it rather than this thread racing it on the socket.
        """
        packet = b"".join([_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(_PUBACK, packet, 0, 0)
