"""paho's client reading the socket 64 KiB at a time (network I/O).

paho reads each packet with three `recv` calls (command byte, length byte, the rest), so with
its `select` four system calls per packet. This client reads up to 64 KiB at once and hands
paho's packet reader slices of that buffer, then lets paho go on while the buffer holds
packets. The ingestor receives its stream of PUBLISHes through it (collector.ingest.receiver)
and the collector its PUBACKs (collector.mqtt.client). Relies on paho 2.x's `_sock_recv`;
tests/ingest/test_receiver.py and the MQTT link's tests check it against a real broker.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

RECV_BYTES = 65536
# Packets read from the buffer before the network loop gets a turn to send (PUBACKs, pings).
MAX_PACKETS_PER_READ = 2000


class BufferedClient(mqtt.Client):
    """paho's Client with buffered socket reads."""

    _buffer: bytes = b""
    _buffer_pos: int = 0

    def reconnect(self) -> MQTTErrorCode:
        # Bytes left from the previous connection belong to no packet of the next one.
        self._buffer, self._buffer_pos = b"", 0
        return super().reconnect()

    def _sock_recv(self, bufsize: int) -> bytes:
        pos, size = self._buffer_pos, len(self._buffer)
        if pos < size:
            end = min(pos + bufsize, size)  # paho asks again for the rest of a packet
            self._buffer_pos = end
            return self._buffer[pos:end]
        data = super()._sock_recv(max(bufsize, RECV_BYTES))
        if len(data) <= bufsize:
            return data  # b"" (closed) included
        self._buffer, self._buffer_pos = data, bufsize
        return data[:bufsize]

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not taken yet."""
        return len(self._buffer) - self._buffer_pos

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        # paho handles one packet per `select`; go on while the buffer holds more.
        rc = super().loop_read(max_packets)
        for _ in range(MAX_PACKETS_PER_READ):
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self.buffered() == 0 or self._sock is None:
                break
            rc = super().loop_read(max_packets)
        return rc

    def _loop(self, timeout: float = 1.0) -> MQTTErrorCode:
        # `select` cannot see what is already in the buffer: read that first, and if some is
        # still left, only give the loop a turn without waiting.
        if self.buffered():
            rc = self.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
            if self.buffered():
                timeout = 0.0
        return super()._loop(timeout)
