"""The ingestor process: MQTT 5 in, InfluxDB out, acknowledgement only once written.

Threads:
- the network thread runs paho's `loop_forever` (reconnects included) and `_on_message`:
  decode (pure), hand the line to the Batcher, or dead-letter the message (republish with the
  reason, acknowledge at once);
- the writer thread takes batches (by size or age), writes them, dead-letters the messages
  whose lines the database refused, then acknowledges the batch's messages with `client.ack`
  (paho's manual acknowledgement);
- the HTTP thread serves /healthz and /metrics;
- with `influx.raw_retention_days`, the housekeeping thread prunes old raw readings every
  hour (collector.ingest.housekeeping), with its own connections: never in the way of the
  writer.

At least once: a message is acknowledged only after its batch is in the database, so a crash
or SIGKILL leaves it with the broker, which redelivers it to the persistent session (clean
start off, session expiry configured). Points are idempotent (same series and time overwrite),
so a redelivered message written twice is stored once.

Throughput is not capped by the acknowledgement scheme: we ask for a Receive Maximum (the
broker's in-flight window towards us) of min(max_pending, 65535) and cut batches at half of
it, so the broker keeps streaming into the next batch while one is being written. The window
also bounds memory: the broker sends nothing beyond it until we acknowledge.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.config import IngestorConfig
from collector.ingest import housekeeping
from collector.ingest.batch import AckToken, Batch, Batcher
from collector.ingest.http import StatusServer
from collector.ingest.metrics import IngestMetrics, render
from collector.ingest.payloads import Rejected, decode, site_of, subscriptions, topic_kind
from collector.ingest.receiver import StreamClient
from collector.ingest.writer import Backend, Dropped, WriteAborted, Writer, backend_for
from collector.mqtt.auth import default_client_id, new_client
from collector.redact import redact, redact_url
from collector.settings import ConfigError
from collector.wire.messages import format_ts

log = logging.getLogger(__name__)

MAX_RECEIVE_MAXIMUM = 65535  # MQTT 5: a two-byte integer
DEAD_LETTER_PAYLOAD_CHARS = 1024
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
NETWORK_TICK_S = 0.05  # longest wait before queued acknowledgements go out
# Python's default (700, 10, 10) runs the cyclic collector every few dozen messages; the
# ingestor makes next to no cycles (refcounting frees its garbage), so collect far less often.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    """For a process that is an ingestor (docs/ingest.md: a quarter more messages/s)."""
    gc.freeze()  # what exists at start lives for ever: never walk it again
    gc.set_threshold(*GC_THRESHOLDS)


class Ingestor:
    def __init__(
        self,
        config: IngestorConfig,
        backend: Backend | None = None,
        *,
        housekeeping_delay_s: float = housekeeping.DELAY_S,
        housekeeping_every_s: float = housekeeping.EVERY_S,
    ) -> None:
        self.config = config
        self.prefix = config.mqtt.topic_prefix
        self.metrics = IngestMetrics()
        self.stopping = threading.Event()
        self.writer = Writer(backend or backend_for(config.influx), self.stopping)
        self.window = min(config.ingest.max_pending, MAX_RECEIVE_MAXIMUM)
        self.batcher = Batcher(
            max_lines=max(1, min(config.ingest.batch_size, self.window // 2)),
            max_age_s=config.ingest.flush_interval_s,
        )
        self._generation = 0
        self._closing = False
        self.client = self._make_client()
        self._writer_thread = threading.Thread(target=self._write_loop, name="ingest-writer")
        self._network_thread = threading.Thread(target=self._network_loop, name="ingest-mqtt")
        self.http = StatusServer(
            config.ingest.http_host, config.ingest.http_port, self.health, self.metrics_text
        )
        days = config.influx.raw_retention_days
        self.housekeeping = (
            None
            if days is None
            else housekeeping.Housekeeping(
                config.influx, days, delay_s=housekeeping_delay_s, every_s=housekeeping_every_s
            )
        )
        if self.housekeeping is not None:
            self.metrics.prune = self.housekeeping.stats

    # --- MQTT -----------------------------------------------------------------------------

    def _make_client(self) -> StreamClient:
        settings = self.config.mqtt
        client = new_client(
            settings,
            default_client_id(self.config.ingest.client_id, settings.username, "irve-ingest"),
            protocol="5",
            client_class=StreamClient,
        )
        client.manual_ack_set(True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_stream_message = self._receive  # QoS 1: what the ingestor subscribes with
        client.on_message = self._on_message  # anything else the broker sends
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.ingest.session_expiry_s
        props.ReceiveMaximum = self.window
        return props

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self.metrics.broker_connected = True
        self.metrics.connects += 1
        log.info(
            "connected to %s:%d (session present: %s)",
            self.config.mqtt.host,
            self.config.mqtt.port,
            flags.session_present,
        )
        # Subscribing again on a resumed session is harmless and covers an expired one.
        options = SubscribeOptions(qos=1)
        client.subscribe(
            [
                (topic, options)
                for topic in subscriptions(self.prefix, self.config.ingest.share_group)
            ]
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # Packet ids of this connection mean nothing on the next one unless the session is
        # resumed: acknowledge none of them. The broker redelivers what we did not acknowledge.
        self._generation += 1  # under paho's callback lock, like `_acknowledge`
        self.metrics.broker_connected = False
        if not self._closing:
            log.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._receive(msg.topic, msg.payload, msg.mid, msg.qos)

    def _receive(self, topic: str, payload: bytes | bytearray, mid: int, qos: int = 1) -> None:
        """On the network thread, under paho's callback lock: one message."""
        if self._closing:
            return  # not acknowledged: the broker redelivers it to the next run
        try:
            decoded = decode(self.prefix, topic, payload, time.time_ns() // 1_000_000)
        except Rejected as exc:
            self._dead_letter(topic, payload, mid, qos, exc)
            return
        except Exception as exc:  # a bug of ours must not stop the stream; the letter keeps it
            log.exception("could not decode %r", topic)
            site, kind = site_of(self.prefix, topic), topic_kind(self.prefix, topic)
            self._dead_letter(
                topic, payload, mid, qos, Rejected(site, kind, f"internal error: {exc!r}")
            )
            return
        self.metrics.messages[decoded.kind] += 1
        self.metrics.received += 1
        self.batcher.add(decoded.line, (topic, payload), (self._generation, mid, qos))

    def _dead_letter(
        self, topic: str, payload: bytes | bytearray, mid: int, qos: int, exc: Rejected
    ) -> None:
        """On the network thread: republish with the reason, acknowledge at once."""
        log.warning("dead letter from %r: %r", topic, exc.reason)
        self._publish_letter(topic, payload, exc.site, exc.kind, exc.reason)
        self.client.ack(mid, qos)

    def _publish_letter(
        self, topic: str, payload: bytes | bytearray, site: str, kind: str, reason: str
    ) -> None:
        """Under paho's callback lock (a callback, or `_paho_callback_lock`)."""
        self.metrics.dead_letters[kind] += 1
        letter = {
            "topic": topic,
            "reason": reason,
            "received": format_ts(datetime.now(UTC)),
            "payload_bytes": len(payload),
            "payload": payload[:DEAD_LETTER_PAYLOAD_CHARS].decode("utf-8", "replace"),
        }
        self.client.publish(
            f"{self.prefix}/{site}/deadletter", json.dumps(letter), qos=1, retain=False
        )

    def _refused(self, batch: Batch, dropped: list[Dropped]) -> None:
        """Dead letters for the lines the database refused; their messages are acknowledged
        with the rest of the batch, after these letters are queued."""
        with self._paho_callback_lock():
            for item in dropped:
                topic, payload = batch.origins[item.index]
                reason = f"refused by the database: {item.reason}"
                site, kind = site_of(self.prefix, topic), topic_kind(self.prefix, topic)
                self._publish_letter(topic, payload, site, kind, reason)

    # --- writing --------------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            batch = self.batcher.take(timeout=0.25)
            if batch is None:
                if self._closing:
                    return
                continue
            started = time.monotonic()
            try:
                if batch.lines:
                    dropped = self.writer.write(batch.lines)
                    if dropped:
                        self._refused(batch, dropped)
            except WriteAborted as exc:
                log.warning(
                    "stopping: %d messages not written (%s); the broker keeps them",
                    len(batch.tokens),
                    exc,
                )
                self.metrics.settled += len(batch.tokens)
                return
            self.metrics.batch_latency.observe(time.monotonic() - started)
            self._acknowledge(batch.tokens)

    def _acknowledge(self, tokens: list[AckToken]) -> None:
        with self._paho_callback_lock():
            current = self._generation
            live = [(mid, qos) for generation, mid, qos in tokens if generation == current]
            self.client.ack_many([mid for mid, qos in live if qos == 1])  # one write for all
            for mid, qos in live:
                if qos == 2:  # PUBCOMP, one by one (the ingestor subscribes with QoS 1)
                    self.client.ack(mid, qos)
        self.metrics.acked += len(live)
        self.metrics.settled += len(tokens)

    def _paho_callback_lock(self) -> threading.Lock:
        """The lock paho holds while it runs our callbacks.

        Why: we run `loop_forever` in our own thread rather than `loop_start`, which wakes the
        network thread through a socket pair for every outgoing packet (one PUBACK per
        message) and cost a third more CPU per message here (docs/ingest.md). Without
        `loop_start`, paho would write a packet queued from another thread straight to the
        socket, racing the network thread; holding this lock makes it queue the PUBACKs
        instead, and the network thread sends them on its next turn (within NETWORK_TICK_S).
        It also orders `_acknowledge` against `_on_disconnect`'s generation change.
        """
        lock: threading.Lock = self.client._in_callback_mutex
        return lock

    def _network_loop(self) -> None:
        self.client.loop_forever(timeout=NETWORK_TICK_S, retry_first_connection=True)

    # --- status ---------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        broker = self.metrics.broker_connected
        database = self.writer.backend.ping()
        detail: dict[str, Any] = {
            "status": "ok" if broker and database else "unavailable",
            "broker": broker,
            "database": database,
            "backlog": self.metrics.received - self.metrics.settled,
        }
        if self.writer.stats.last_error and not self.writer.stats.database_up:
            detail["last_error"] = redact(self.writer.stats.last_error)
        return broker and database, detail

    def metrics_text(self) -> str:
        return render(self.metrics, self.writer.stats)

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.http.start()
        settings = self.config.mqtt
        self.client.connect_async(
            settings.host,
            settings.port,
            keepalive=settings.keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._network_thread.start()
        self._writer_thread.start()
        if self.housekeeping is not None:
            self.housekeeping.start()
        log.info(
            "ingesting %s/# into %s (API %s); batches of %d or every %g s; window %d; "
            "status on http://%s:%d/healthz",
            self.prefix,
            redact_url(self.config.influx.url),
            self.config.influx.api_version,
            self.batcher.max_lines,
            self.batcher.max_age_s,
            self.window,
            self.config.ingest.http_host,
            self.http.port,
        )

    def stop(self) -> None:
        """Graceful: write what was received, acknowledge it, disconnect.

        Messages that arrive meanwhile are left unacknowledged for the next run. If the
        database is down, the open batches are not written and the broker keeps them.
        """
        self._closing = True
        self.stopping.set()  # no more retries: a write that fails now is given up
        self.batcher.flush()
        if self._writer_thread.is_alive():
            self._writer_thread.join(timeout=self.config.influx.timeout_s + 5)
        if self.housekeeping is not None:  # after the writer: its last batch first
            self.housekeeping.stop(timeout_s=2 * self.config.influx.timeout_s + 5)
        self.client.disconnect()  # queued after the PUBACKs, so those go out first
        self._network_thread.join(timeout=10)
        self.writer.backend.close()
        self.http.stop()
        log.info(
            "stopped: %d messages acknowledged, %d points written",
            self.metrics.acked,
            self.writer.stats.points_written,
        )

    def check(self) -> None:
        """Raise ConfigError for a database setup that retrying could never fix."""
        problem = self.writer.backend.problem()
        if problem is not None:
            raise ConfigError([problem])

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; ConfigError at once for a setup error `check` finds."""
        try:
            self.check()
        except ConfigError:
            self.http.stop()
            self.writer.backend.close()
            raise
        tune_gc()
        self.start()
        stop.wait()
        self.stop()
