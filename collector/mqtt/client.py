"""The MQTT link: paho-mqtt 2.x driven by the asyncio event loop, without paho's thread.

Who owns buffering (the policy docs/mqtt.md documents):
- The OUTBOX (collector.mqtt.outbox) owns every message paho has not been given yet: bounded,
  oldest state readings dropped first, critical messages never dropped.
- PAHO owns a message from the moment `publish()` returns it a message id, whatever the return
  code: with QoS 1 it keeps the message until the broker's PUBACK and re-sends it (DUP) after a
  reconnect, including when `publish()` said MQTT_ERR_NO_CONN or the socket died after paho
  thought it was connected. At most `window` messages are with paho at a time (the broker's
  Receive Maximum, capped), so paho's own unbounded queue never grows.
- Order across a reconnect: paho re-sends what it holds first; new messages are handed over
  only once all of those are acknowledged.

The event loop drives paho (`loop_read` when the socket is readable, `loop_write` right after
a publish, `loop_misc` every second for the keepalive), so a message costs no thread switch
and no wake-up write: paho's network thread cost about 0.14 ms of CPU per reading (issue 18,
docs/benchmarks.md). Only connecting (TCP, TLS handshake, CONNECT) runs in a worker thread, as
it blocks; nothing else touches paho meanwhile. Reads go 64 KiB at a time
(`collector.mqtt.buffered`). paho's callbacks run inside its own calls, under its locks:
they only queue events, replayed with `loop.call_soon`.

Reconnect: exponential, RECONNECT_MIN_S .. RECONNECT_MAX_S as paho's `loop_forever` would,
also for the first connection. Every failed attempt is logged with its reason (refused, name
resolution, TLS, authentication); the same reason again only every FAILURE_SUMMARY_S, with the
number of attempts, so an outage of hours stays readable.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.config import MqttSettings
from collector.mqtt.auth import new_client
from collector.mqtt.buffered import BufferedClient
from collector.mqtt.outbox import Outbox
from collector.mqtt.spool import Spool
from collector.settings import ConfigError
from collector.wire.kinds import Envelope
from collector.wire.messages import StatusMessage

log = logging.getLogger(__name__)

QOS = 1
MISC_S = 1.0  # how often paho's keepalive is checked, as paho's own loop does
WINDOW = 64  # messages with paho at once, lowered to the broker's Receive Maximum
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
# MQTT 5: the broker keeps our session (and the badges sent to us) over a short outage.
SESSION_EXPIRY_S = 300
STOP_FLUSH_S = 5.0  # on stopping, how long the outbox may take to flush
FAILURE_SUMMARY_S = 300  # an unchanged connection failure is logged again at most this often
# CONNACK reasons that mean the credentials: the fix is in the site file or the password file.
AUTH_REASONS = ("Bad user name or password", "Not authorized")

# topic, payload, retained (a message the broker kept, sent because we (re)subscribed)
MessageHandler = Callable[[str, bytes, bool], None]


@dataclass
class LinkStats:
    published: int = 0  # handed to paho
    acked: int = 0  # PUBACK received
    refused: int = 0  # PUBACK with a failure reason code (e.g. not authorised)
    connects: int = 0
    disconnects: int = 0


def tls_problems(settings: MqttSettings) -> list[str]:
    """Missing certificate files, named by their key (checked before connecting)."""
    problems = []
    for key in ("ca_file", "cert_file", "key_file"):
        path = getattr(settings, key)
        if path is not None and not path.is_file():
            problems.append(f"mqtt.{key}: no such file {path}")
    if settings.key_file is not None and settings.cert_file is None:
        problems.append("mqtt.key_file: needs mqtt.cert_file")
    return problems


def connect_failure(exc: OSError | None, host: str, port: int, tls: bool) -> str:
    """Why a connection attempt failed, as an installer would look for it."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r} ({exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host}:{port} (no broker listening on that port?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted: {exc.verify_message} (mqtt.ca_file)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if tls and isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return f"TLS handshake failed ({exc.strerror}; is {host}:{port} a TLS listener?)"
    if isinstance(exc, TimeoutError):
        return f"no answer from {host}:{port} (timed out)"
    if exc is None:
        return "connection failed"
    return exc.strerror or str(exc) or type(exc).__name__


_MID = struct.Struct("!H")
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
_SUCCESSES: dict[int, ReasonCode] = {}


def _success(code: int) -> ReasonCode:
    """One shared ReasonCode per success code (below 0x80: at most 128)."""
    reason = _SUCCESSES.get(code)
    if reason is None:
        reason = _SUCCESSES[code] = ReasonCode(PacketTypes.PUBACK, identifier=code)
    return reason


class _Client(BufferedClient):
    """paho's client, remembering why the last connection attempt failed."""

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        # A successful PUBACK without properties (packet id alone, or with a success reason
        # such as mosquitto's 0x10 "no matching subscribers"): paho would build a ReasonCode
        # and a Properties object for each, one per reading; shared ones say the same.
        # Anything else (a failure, properties, a malformed packet) goes through paho.
        packet = self._in_packet["packet"]
        size = len(packet)
        # The packet id, then a success reason, then an empty property length.
        plain = size == 2 or (size in (3, 4) and packet[2] < 0x80 and (size == 3 or not packet[3]))
        if cmd != "PUBACK" or not plain:
            return super()._handle_pubackcomp(cmd)
        (mid,) = _MID.unpack_from(packet)
        with self._out_message_mutex:
            if mid in self._out_messages:
                code = packet[2] if size > 2 else 0
                return self._do_on_publish(mid, _success(code), _NO_PROPERTIES)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    connect_error: OSError | None = None

    def reconnect(self) -> MQTTErrorCode:
        self.connect_error = None
        try:
            return super().reconnect()
        except OSError as exc:
            self.connect_error = exc
            raise


class MqttLink:
    """Publishes envelopes in order with QoS 1, keeps them while the broker is away."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        status_topic: str,
        subscriptions: list[str],
        window: int = WINDOW,
        spool: Spool | None = None,
    ) -> None:
        problems = tls_problems(settings)
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.status_topic = status_topic
        self.subscriptions = subscriptions
        self.outbox = Outbox(settings.buffer_max_messages)
        self.spool = spool
        self.stats = LinkStats()
        self.on_message: MessageHandler = lambda topic, payload, retained: None
        self.on_connected: Callable[[], None] = lambda: None
        self._max_window = window
        self._window = window
        self._inflight: dict[int, Envelope] = {}
        # Acknowledgements paho reported, handled once its read is over.
        self._acks: deque[tuple[int, bool, str]] = deque()
        self._acks_posted = False
        self._connected = False
        self._closing = False
        self._resuming = False  # waiting for paho to re-send what it held before a reconnect
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_pending = False  # a _deferred_drain is scheduled
        self._loop_thread = 0
        self._runner: asyncio.Task[None] | None = None
        self._socket: Any = None  # the socket the event loop watches for paho
        self._socket_closed = asyncio.Event()
        self._writing = False  # a writer callback is registered: paho has bytes left to send
        self._reconnect_delay: float | None = None
        # Failed connection attempts since the last connection, and what was last logged.
        self._failures = 0
        self._failing_since = 0.0
        self._failure_logged: tuple[str, float] | None = None
        # Messages waiting when the link came back, and the acknowledgement count then.
        self._backlog: tuple[int, int] | None = None
        self._client = self._build_client(client_id)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing unacknowledged."""
        return not self.outbox and not self._inflight

    @property
    def pending(self) -> int:
        return len(self.outbox) + len(self._inflight)

    def _build_client(self, client_id: str) -> _Client:
        client = new_client(self.settings, client_id, client_class=_Client)
        client.will_set(self.status_topic, "offline", qos=QOS, retain=True)
        client.max_inflight_messages_set(self._max_window)
        client.on_connect = self._paho_connect
        client.on_socket_close = self._paho_socket_close
        client.on_disconnect = self._paho_disconnect
        client.on_publish = self._paho_publish
        client.on_message = self._paho_message
        return client

    # -- lifecycle (asyncio thread) ------------------------------------------------------

    def attach(self, on_message: MessageHandler, on_connected: Callable[[], None]) -> None:
        """Who gets the messages received, and who is told of each (re)connection."""
        self.on_message = on_message
        self.on_connected = on_connected

    async def __aenter__(self) -> MqttLink:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close(STOP_FLUSH_S)

    def start(self) -> None:
        """Connect in the background; messages queue in the outbox until the broker answers."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for envelope in self.spool.recover() if self.spool else ():
            self.outbox.put(envelope)
        s = self.settings
        if s.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            # Not clean even on the first connection: badges published while the collector
            # restarts wait in its broker session. (3.1.1 sessions stay clean.)
            self._client.connect_async(
                s.host, s.port, s.keepalive_s, clean_start=False, properties=properties
            )
        else:
            self._client.connect_async(s.host, s.port, s.keepalive_s)
        self._runner = asyncio.create_task(self._run(), name="mqtt-link")
        log.info("MQTT: connecting to %s:%s (MQTT %s)", s.host, s.port, s.protocol)

    def send(self, envelope: Envelope) -> None:
        if envelope.critical and self.spool is not None:
            self.outbox.put(self.spool.add(envelope))
            if self._loop is not None and not self._loop.is_closed():
                # The pipeline sends a burst in one turn of the loop (an energy window closing
                # on every socket): it goes out in the next turn, after one fsync for all.
                if not self._drain_pending:
                    self._drain_pending = True
                    self._loop.call_soon(self._deferred_drain)
                return
        else:
            self.outbox.put(envelope)
        self._drain()

    def _deferred_drain(self) -> None:
        self._drain_pending = False
        self._drain()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.idle:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Say `offline`, flush what can be flushed within `timeout`, disconnect."""
        self._closing = True
        self.send(
            Envelope(
                self.status_topic, StatusMessage(online=False).to_json(), retain=True, kind="status"
            )
        )
        if not await self.wait_idle(timeout):
            undelivered = [*self._inflight.values(), *self.outbox.envelopes()]
            log.error(
                "MQTT: stopping with %d message(s) not delivered (%d critical)",
                len(undelivered),
                sum(e.critical for e in undelivered),
            )
        if self._socket is not None:
            self._client.disconnect()  # written at once; paho then closes the socket
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        self._forget_socket()
        if self.spool is not None:
            self.spool.close()

    # -- hand-over to paho (asyncio thread) ----------------------------------------------

    def _drain(self) -> None:
        if self.spool is not None:
            self.spool.sync()  # a journaled message reaches the broker only once on disk
        while (
            self._connected
            and not self._resuming
            and self.outbox
            and len(self._inflight) < self._window
        ):
            envelope = self.outbox.pop()
            if not self._hand_over(envelope):
                self.outbox.put_front(envelope)
                return

    def _hand_over(self, envelope: Envelope) -> bool:
        try:
            info = self._client.publish(
                envelope.topic, envelope.payload, qos=QOS, retain=envelope.retain
            )
        except ValueError as exc:  # a topic or payload MQTT cannot carry: never retried
            log.error("MQTT: cannot publish on %s: %s", envelope.topic, exc)
            return True
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("MQTT: paho refused a message (%s); kept in the outbox", info.rc)
            return False
        # Even with NO_CONN paho holds the message and sends it after reconnecting.
        self._inflight[info.mid] = envelope
        self.stats.published += 1
        self._flush()
        return True

    # -- paho driven by the event loop (asyncio thread) ----------------------------------

    async def _run(self) -> None:
        """Connect, watch the socket, keep alive; reconnect with backoff when it closes."""
        loop = asyncio.get_running_loop()
        first = True
        while not self._closing:
            if not first:
                await asyncio.sleep(self._next_delay())
            first = False
            try:
                # Connecting blocks (name resolution, TCP, TLS handshake): in a thread, the
                # only time paho runs outside this one; nothing else calls it meanwhile.
                await asyncio.to_thread(self._client.reconnect)
            except OSError:
                s = self.settings
                why = connect_failure(self._client.connect_error, s.host, s.port, s.tls)
                self._attempt_failed(why)
                continue
            sock = self._client.socket()
            if sock is None:  # CONNECT could not be written: paho reported the disconnect
                continue
            self._socket = sock
            self._socket_closed.clear()
            loop.add_reader(sock, self._readable)
            self._flush()
            while self._socket is not None:
                try:
                    await asyncio.wait_for(self._socket_closed.wait(), MISC_S)
                except TimeoutError:
                    self._client.loop_misc()
                    self._flush()

    def _next_delay(self) -> float:
        # As paho's loop_forever: the minimum after a connection, then doubling to the maximum.
        delay = self._reconnect_delay
        delay = RECONNECT_MIN_S if delay is None else min(delay * 2, RECONNECT_MAX_S)
        self._reconnect_delay = delay
        return delay

    def _readable(self) -> None:
        self._acks_posted = True  # acknowledgements read now are handled below, not posted
        try:
            self._client.loop_read()
        finally:
            self._acks_posted = False
        if self._acks:
            self._acks_event()
        if self._socket is None:
            return
        # Bytes already read (our buffer) or decrypted (TLS) do not make the socket readable.
        pending = isinstance(self._socket, ssl.SSLSocket) and self._socket.pending()
        if self._client.buffered() or pending:
            asyncio.get_running_loop().call_soon(self._readable)
        self._flush()

    def _flush(self) -> None:
        """Write what paho holds (PUBACKs, pings, messages queued inside its callbacks); what
        the socket does not take now is written when it becomes writable."""
        if self._socket is None or not self._client.want_write():
            return
        self._client.loop_write()
        if self._socket is None:
            return
        if self._client.want_write() and not self._writing:
            asyncio.get_running_loop().add_writer(self._socket, self._writable)
            self._writing = True

    def _writable(self) -> None:
        self._client.loop_write()
        if self._socket is not None and not self._client.want_write():
            asyncio.get_running_loop().remove_writer(self._socket)
            self._writing = False

    def _paho_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # Called before paho closes it: the event loop must stop watching it first, or a new
        # socket given the same descriptor would inherit a stale registration.
        if threading.get_ident() == self._loop_thread and sock is self._socket:
            self._forget_socket()

    def _forget_socket(self) -> None:
        if self._socket is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._socket)
            self._loop.remove_writer(self._socket)
        self._socket = None
        self._writing = False
        self._socket_closed.set()

    # -- events from paho's callbacks, replayed once paho's call returns ------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(callback, *args)
        else:  # a disconnect reported while connecting, in the worker thread
            self._loop.call_soon_threadsafe(callback, *args)

    def _paho_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            why = f"the broker refused the connection: {reason}"
            if str(reason) in AUTH_REASONS:
                why += " (check mqtt.username and its password)"
            self._post(self._attempt_failed, why)
            return
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        for topic in self.subscriptions:
            client.subscribe(topic, qos=QOS)
        self._post(self._connected_event, receive_max)

    def _paho_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._post(self._disconnected_event, str(reason))

    def _paho_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # One replay per burst of acknowledgements (a 64 KiB read may hold hundreds), not one
        # event loop callback per message.
        failed = reason.is_failure
        self._acks.append((mid, failed, str(reason) if failed else ""))
        if not self._acks_posted:
            self._acks_posted = True
            self._post(self._acks_event)

    def _paho_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._post(self._message_event, message.topic, bytes(message.payload), bool(message.retain))

    def _attempt_failed(self, reason: str) -> None:
        now = time.monotonic()
        if not self._failures:
            self._failing_since = now
        self._failures += 1
        where = f"{self.settings.host}:{self.settings.port}"
        last = self._failure_logged
        if last is not None and last[0] == reason and now - last[1] < FAILURE_SUMMARY_S:
            log.debug("MQTT: cannot connect to %s: %s", where, reason)
            return
        if last is not None and last[0] == reason:
            log.warning(
                "MQTT: still cannot connect to %s: %s (%d failed attempts in %.0f s); "
                "%d message(s) waiting",
                where,
                reason,
                self._failures,
                now - self._failing_since,
                self.pending,
            )
        else:
            log.warning(
                "MQTT: cannot connect to %s: %s; retrying with backoff (%d to %d s)",
                where,
                reason,
                RECONNECT_MIN_S,
                RECONNECT_MAX_S,
            )
        self._failure_logged = (reason, now)

    def _connected_event(self, receive_max: int | None) -> None:
        self._connected = True
        self._reconnect_delay = None
        self.stats.connects += 1
        self._window = min(self._max_window, receive_max or self._max_window)
        self._resuming = bool(self._inflight)
        waiting = len(self._inflight) + len(self.outbox)
        if self._failures:
            log.info(
                "MQTT: connected to %s:%s after %d failed attempt(s) over %.0f s; "
                "%d message(s) waiting to be sent",
                self.settings.host,
                self.settings.port,
                self._failures,
                time.monotonic() - self._failing_since,
                waiting,
            )
        self._failures, self._failure_logged = 0, None
        # The status message below is acknowledged with them.
        self._backlog = (waiting + 1, self.stats.acked) if waiting else None
        log.info(
            "MQTT: connected (window %d, %d to re-send, %d queued)",
            self._window,
            len(self._inflight),
            len(self.outbox),
        )
        # The status goes first: it replaces what the last will may have said.
        online = Envelope(
            self.status_topic, StatusMessage(online=True).to_json(), retain=True, kind="status"
        )
        if not self._hand_over(online):
            self.outbox.put_front(online)
        self.on_connected()
        self._drain()

    def _disconnected_event(self, reason: str) -> None:
        self._backlog = None
        if self._connected:
            self.stats.disconnects += 1
            (log.info if self._closing else log.warning)(
                "MQTT: disconnected (%s); %d message(s) pending", reason, self.pending
            )
        self._connected = False

    def _acks_event(self) -> None:
        # Cleared before reading: an ack appended after this line posts a new event.
        self._acks_posted = False
        while self._acks:
            self._acked(*self._acks.popleft())
        if self._backlog is not None and self.stats.acked - self._backlog[1] >= self._backlog[0]:
            log.info("MQTT: the %d message(s) queued while away are sent", self._backlog[0] - 1)
            self._backlog = None
        self._drain()

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        envelope = self._inflight.pop(mid, None)
        if envelope is None:
            return
        self.stats.acked += 1
        if envelope.spool_id is not None and self.spool is not None:
            self.spool.done(envelope.spool_id)
        if failed:
            self.stats.refused += 1
            log.error("MQTT: broker refused %s: %s", envelope.topic, reason)
        if self._resuming and not self._inflight:
            self._resuming = False

    def _message_event(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            self.on_message(topic, payload, retained)
        except Exception:
            log.exception("MQTT: handling a message on %r failed", topic)
