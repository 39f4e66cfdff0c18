"""The OCPP 1.6J central system's I/O: the websocket server chargers connect to, the state file,
the calls to chargers. Decisions are the core's (collector.ocpp.core).

One task per charger connection; every call to a charger has a timeout, so a charger that
stops answering delays only its own commands.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote
from uuid import uuid4

from ocpp.charge_point import snake_to_camel_case
from ocpp.exceptions import (
    InternalError,
    OCPPError,
    PropertyConstraintViolationError,
    ProtocolError,
    TypeConstraintViolationError,
    UnknownCallErrorCodeError,
)
from ocpp.messages import Call, CallError, MessageType, get_validator, unpack, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHeader, NegotiationError
from websockets.headers import build_www_authenticate_basic, parse_authorization_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from collector.config import ChargerSettings, OcppSettings
from collector.ocpp.core import Badge, CentralCore, Outgoing, Transaction, format_ts
from collector.ocpp.events import ChargerWarning, CommandResult, Event, TransactionStarted
from collector.state import encode_state, write_state
from collector.wire.times import utc_now

log = logging.getLogger(__name__)
wire_log = logging.getLogger("collector.ocpp.wire")
ws_log = logging.getLogger("collector.ocpp.websockets")


class _HideCredentials(logging.Filter):
    """websockets logs the handshake's headers at DEBUG: never the charger's password."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() == "authorization":
            record.args = (args[0], "[hidden]")
        return True


ws_log.addFilter(_HideCredentials())


class _WireLog:
    """The logger the ocpp library is given: every frame both ways at DEBUG (the library says
    them at INFO, too chatty for a site's log), arguments cut short (a 1 MB frame is not
    logged whole), handler errors as one line (they are answered with a CALLERROR)."""

    @staticmethod
    def _short(args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a[:500] if isinstance(a, str | bytes) else a for a in args)

    def info(self, msg: str, *args: Any) -> None:
        wire_log.debug(msg, *self._short(args))

    def warning(self, msg: str, *args: Any) -> None:
        wire_log.warning(msg, *self._short(args))

    def error(self, msg: str, *args: Any) -> None:
        wire_log.error(msg, *self._short(args))

    def exception(self, msg: str, *args: Any) -> None:
        wire_log.warning(msg, *self._short(args))


SUBPROTOCOL = "ocpp1.6"
# A charger's queued StopTransaction carries the whole session's meter values: a long session
# sampled every minute is a few hundred kB. Larger frames close the connection (1009).
MAX_FRAME = 4 * 2**20
# OCPP 1.6 spells these error codes its own way; the library uses the 2.0 names.
_ERROR_CODES_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
_SCHEMA_FAILURE = re.compile(
    r" is not valid: (?P<what>.*?)\n\nFailed validating '(?P<rule>\w+)'", re.S
)
_ACTIONS = {action.value for action in Action}
_VALUE_RULES = {"enum", "pattern", "minimum", "maximum", "multipleOf", "format"}
REFUSAL_LOG_S = 600.0
_UNIQUE_ID = re.compile(r'^\s*\[\s*\d+\s*,\s*"([^"\\]{1,64})"')

EventSink = Callable[[Event], None]
Clock = Callable[[], datetime]


def state_path(state_dir: Path, site_id: str) -> Path:
    return state_dir / f"ocpp-{site_id}.json"


class StartError(Exception):
    """The central system cannot start; the message names the key to fix."""


def load_ocpp_state(path: Path, now: datetime) -> dict[str, Any]:
    """The saved core state. Unreadable, ids restart from the clock (seconds since 1970), above
    any counter this site can have reached, so that no transaction id is ever reused; an open
    transaction that cannot be read is left out (its stop is then reported without a start)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("next_transaction_id"), int):
            raise ValueError("not an OCPP state")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        fresh = int(now.timestamp())
        log.error(
            "OCPP state %s unreadable (%s): open transactions forgotten, ids continue from %d",
            path,
            exc,
            fresh,
        )
        return {"next_transaction_id": fresh}
    kept = []
    for entry in data.get("transactions") or []:
        try:
            Transaction.from_json(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("OCPP state %s: transaction %r unreadable (%s): left out", path, entry, exc)
            continue
        kept.append(entry)
    return {**data, "transactions": kept}


class CentralSystem:
    """Chargers connect to ws(s)://listen/<charger id>; `on_event` gets the domain events."""

    def __init__(
        self,
        settings: OcppSettings,
        chargers: Sequence[ChargerSettings],
        state_file: Path,
        on_event: EventSink,
        *,
        call_timeout_s: float = 15.0,
        tick_s: float = 5.0,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.chargers = {c.id: c for c in chargers}
        self.state_file = state_file
        self.on_event = on_event
        self.call_timeout_s = call_timeout_s
        self.tick_s = tick_s
        self.clock = clock
        self.core = CentralCore(
            {c.id: c.connectors for c in chargers},
            settings.authorize,
            settings.heartbeat_s,
            settings.offline_after_heartbeats,
            clock(),
            load_ocpp_state(state_file, clock()),
        )
        self.links: dict[str, Link] = {}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._save_lock = asyncio.Lock()
        self._refusals: dict[tuple[str, str, str], float] = {}
        self._local_list: tuple[tuple[int, int], dict[str, Any]] | None = None

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; StartError naming `ocpp.tls` or `ocpp.listen` when it cannot."""
        tls = None
        if self.settings.tls is not None:
            cert, key = self.settings.tls.cert_file, self.settings.tls.key_file
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                tls.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise StartError(f"ocpp.tls: cannot use {cert} and {key}: {exc}") from None
        try:
            self._server = await self._serve(tls)
        except OSError as exc:
            raise StartError(
                f"ocpp.listen: cannot listen on {self.settings.listen}: {exc}"
            ) from None
        self._spawn(self._ticker())
        scheme = "wss" if tls else "ws"
        log.info("OCPP central system on %s://%s/<charger id>", scheme, self.settings.listen)

    async def _serve(self, tls: ssl.SSLContext | None) -> Server:
        return await serve(
            self._connection,
            self.settings.host,
            self.settings.port,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            select_subprotocol=_select_subprotocol,
            process_request=self._handshake,
            max_size=MAX_FRAME,
            ping_interval=60,
            ping_timeout=60,
            ssl=tls,
            logger=ws_log,
        )

    async def stop(self) -> None:
        """Close the listener and every charger's connection, save the state; again: nothing."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        await self.save()

    async def __aenter__(self) -> CentralSystem:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the internal API (MQTT wiring, load management) ------------------------------------

    def set_badges(self, badges: Sequence[Badge]) -> None:
        """A new badge list: the next Authorize uses it; chargers get it as their local list."""
        if not self.core.set_badges(badges):
            return
        self._spawn(self.save())
        for link in self.links.values():
            link.schedule_local_list()

    async def command(
        self, point: str, action: str, badge: str | None = None, connector: int | None = None
    ) -> list[CommandResult]:
        """start / stop / unlock / disable / enable on a point; CommandError when impossible."""
        return await self._send_all(
            self.core.command(point, action, self.clock(), badge, connector)
        )

    async def set_limit(
        self,
        point: str,
        current_a: float,
        duration_s: int | None = None,
        connector: int | None = None,
    ) -> list[CommandResult]:
        outgoing = self.core.set_limit(point, current_a, self.clock(), duration_s, connector)
        return await self._send_all(outgoing)

    async def clear_limit(self, point: str, connector: int | None = None) -> list[CommandResult]:
        return await self._send_all(self.core.clear_limit(point, connector))

    def local_list_payload(self) -> dict[str, Any]:
        """SendLocalList's payload in its wire form, made once for every charger per list
        version and set of badges valid now (within a version that set only shrinks, as
        badges expire: its size tells it)."""
        now = self.clock()
        valid = sum(1 for b in self.core.badges.values() if b.until is None or b.until > now)
        key = (self.core.local_list_version, valid)
        if self._local_list is None or self._local_list[0] != key:
            # The library's own conversion: the entries as its `call` would send them.
            payload = {
                "listVersion": key[0],
                "updateType": "Full",
                "localAuthorizationList": snake_to_camel_case(self.core.local_list(now)),
            }
            self._local_list = (key, payload)
        return self._local_list[1]

    async def _send_all(self, outgoing: list[Outgoing]) -> list[CommandResult]:
        # One point is one charger, which takes one call at a time anyway: in order.
        results = []
        for one in outgoing:
            results.append(await self._send_one(one))
            self.emit(results[-1:])
        return results

    async def _send_one(self, outgoing: Outgoing) -> CommandResult:
        link = self.links.get(outgoing.charger)
        if link is None:
            return self.core.command_result(outgoing, self.clock(), "Offline", "not connected")
        status, detail = await link.request(outgoing.request)
        return self.core.command_result(outgoing, self.clock(), status, detail)

    # -- plumbing ------------------------------------------------------------------------------

    def emit(self, events: Sequence[Event]) -> None:
        for event in events:
            if isinstance(event, ChargerWarning):
                log.warning("charger %s: %s", event.charger, event.text)
            try:
                self.on_event(event)
            except Exception:
                log.exception("OCPP event %r not handled", event)

    async def save(self) -> bool:
        """Store the core's state (transaction counter first of all) before answering; False
        when it could not be written (logged)."""
        async with self._save_lock:
            if not self.core.dirty:
                return True
            self.core.dirty = False
            # The snapshot is taken on the loop (consistent, and cheap: core.state copies what
            # changes); encoded and written in a thread, the loop keeps answering chargers.
            snapshot = self.core.state()
            try:
                await asyncio.to_thread(_write, self.state_file, snapshot)
            except OSError as exc:
                self.core.dirty = True
                log.error("OCPP state %s not written: %s", self.state_file, exc)
                return False
            return True

    def _spawn(self, coro: Any) -> None:
        self.track(asyncio.create_task(coro))

    def track(self, task: asyncio.Task[Any]) -> None:
        """Kept until done, cancelled by stop()."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.emit(self.core.tick(self.clock()))

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        """Security profile 1: the charger's id is the URL's last segment, its password HTTP
        Basic. Refused here, before any OCPP frame: unknown ids (404) and bad passwords (401)."""
        charger_id = unquote(request.path.split("?", 1)[0].rstrip("/").rpartition("/")[2])
        settings = self.chargers.get(charger_id)
        if settings is None:
            self._refused(connection, charger_id, "unknown id")
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charge point\n")
        problem = _check_password(request.headers, charger_id, settings)
        if problem is not None:
            self._refused(connection, charger_id, problem)
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
            response.headers["WWW-Authenticate"] = build_www_authenticate_basic("OCPP")
            return response
        connection.username = charger_id
        return None

    def _refused(self, connection: ServerConnection, charger_id: str, why: str) -> None:
        """Logged once per charger, address and reason every REFUSAL_LOG_S (a charger retries
        its refused connection every few seconds)."""
        peer = _peer(connection)
        key = (charger_id[:64], peer.rpartition(":")[0], why)
        now = time.monotonic()
        if now - self._refusals.get(key, -REFUSAL_LOG_S) < REFUSAL_LOG_S:
            log.debug("charger %r from %s refused again: %s", charger_id, peer, why)
            return
        if len(self._refusals) > 1000:  # a scanner trying many ids: forget, never grow
            self._refusals.clear()
        self._refusals[key] = now
        log.warning("charger %r from %s refused: %s", charger_id, peer, why)

    async def _connection(self, connection: ServerConnection) -> None:
        charger_id = connection.username
        link = Link(charger_id, connection, self)
        previous = self.links.get(charger_id)
        self.links[charger_id] = link
        if previous is not None:  # the charger reconnected before its old link timed out
            self._spawn(previous.close())  # in the background: a dead peer takes seconds
        log.info("charger %s connected from %s", charger_id, _peer(connection))
        try:
            await link.start()
        except ConnectionClosed as exc:
            log.info("charger %s disconnected (%s)", charger_id, exc)
        finally:
            if self.links.get(charger_id) is link:
                del self.links[charger_id]


def _write(path: Path, snapshot: dict[str, Any]) -> None:
    write_state(path, encode_state(snapshot))


def _peer(connection: ServerConnection) -> str:
    address = connection.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


def _check_password(headers: Headers, charger_id: str, settings: ChargerSettings) -> str | None:
    """What is wrong with the credentials (never the password itself), or None."""
    header = headers.get("Authorization")
    if header is None:
        return "no password (HTTP Basic) given"
    try:
        _, password = parse_authorization_basic(header)
    except InvalidHeader:
        return "credentials not HTTP Basic"
    # The user name should be the charger id; some firmwares send another: the password,
    # which is the charger's own, is what counts.
    expected = settings.password.get_secret_value()
    if not hmac.compare_digest(password.encode(), expected.encode()):
        return "wrong password"
    return None


def _select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    # Some firmwares do not offer a subprotocol at all: they speak 1.6 anyway.
    if SUBPROTOCOL in offered or not offered:
        return Subprotocol(SUBPROTOCOL) if offered else None
    raise NegotiationError(f"offered {', '.join(offered)}; this central system speaks ocpp1.6")


def _as_16(error: OCPPError) -> OCPPError:
    """The error as OCPP 1.6 names it, its cause short and without the frame echoed: the
    library reports every schema failure but types and lengths as a format violation, where
    a value out of its enum or range is a PropertyConstraintViolation."""
    details = {k: v for k, v in (error.details or {}).items() if k != "ocpp_message"}
    cause = str(details.get("cause", ""))
    match = _SCHEMA_FAILURE.search(cause)
    if match:
        cause = match["what"]
        if match["rule"] in _VALUE_RULES:
            error = PropertyConstraintViolationError()
    details["cause"] = cause[:300]
    refused = type(error)(description=error.description, details=details)
    refused.code = _ERROR_CODES_16.get(error.code, error.code)
    return refused


def _call_error(unique_id: str, error: OCPPError) -> str:
    return str(CallError(unique_id, error.code, error.description, error.details).to_json())


_LENIENT: dict[str, list[tuple[str, type, bool]]] = {
    # Read without the schema, which refuses `mesurand` and unknown measurands: the rest of
    # what the schema would check (name, type, required).
    Action.meter_values: [
        ("connectorId", int, True),
        ("meterValue", list, True),
        ("transactionId", int, False),
    ],
    Action.stop_transaction: [
        ("transactionId", int, True),
        ("meterStop", int, True),
        ("timestamp", str, True),
        ("reason", str, False),
        ("idTag", str, False),
        ("transactionData", list, False),
    ],
}


def _drop_unknown_fields(action: object, payload: object) -> list[str]:
    """Fields a charger adds to a request that OCPP 1.6 does not have (the schema would refuse
    the whole request): removed, so that the rest is understood."""
    if not isinstance(action, str) or not isinstance(payload, dict) or action not in _ACTIONS:
        return []
    schema = get_validator(MessageType.Call, action, "1.6").schema
    extra = [key for key in payload if key not in schema.get("properties", {})]
    for key in extra:
        del payload[key]
    return [str(key)[:40] for key in extra]


def _check_lenient(action: str, payload: Any) -> None:
    fields = _LENIENT.get(action)
    if fields is None:
        return
    if not isinstance(payload, dict):
        raise TypeConstraintViolationError(details={"cause": "the payload is not an object"})
    for name, kind, required in fields:
        value = payload.get(name)
        if value is None:
            if required:
                raise ProtocolError(details={"cause": f"{name} is required"})
        elif not isinstance(value, kind) or isinstance(value, bool):
            raise TypeConstraintViolationError(details={"cause": f"{name}: wrong type"})
    if len(payload.get("idTag") or "") > 20:
        raise TypeConstraintViolationError(details={"cause": "idTag: over 20 characters"})


class Link(ChargePoint):
    """One charger's connection: OCPP handlers that hand over to the core."""

    def __init__(self, charger_id: str, connection: ServerConnection, system: CentralSystem):
        super().__init__(charger_id, connection, system.call_timeout_s, _WireLog())
        self.system = system
        self.core = system.core
        self.list_version_sent: int | None = None
        self.local_list_supported = True
        self._push_task: asyncio.Task[None] | None = None
        self._push_again = False
        self._push_force = False

    def schedule_local_list(self, force: bool = False) -> None:
        """Push the local list soon: one push at a time per charger, and one more after it
        when the list changed meanwhile (a charger talking while a push waits for its answer
        does not pile up tasks)."""
        self._push_force |= force
        self._push_again = True
        if self._push_task is None or self._push_task.done():
            self._push_task = asyncio.create_task(self._push_loop())
            self.system.track(self._push_task)

    async def _push_loop(self) -> None:
        while self._push_again:
            self._push_again = False
            force, self._push_force = self._push_force, False
            await self.push_local_list(force)

    async def close(self) -> None:
        await self._connection.close()

    async def route_message(self, raw_msg: str | bytes) -> None:
        """The library's routing, answering every malformed frame with a CALLERROR (it logs
        some and answers nothing) and keeping the connection up."""
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:
            text = raw_msg if isinstance(raw_msg, str) else raw_msg.decode("utf-8", "replace")
            match = _UNIQUE_ID.match(text[:200])
            self.system.emit(
                self.core.malformed(
                    self.id, self._now(), "frame", f"not an OCPP frame ({len(text)} characters)"
                )
            )
            await self._send(_call_error(match.group(1) if match else "-1", _as_16(error)))
            return
        if msg.message_type_id == MessageType.Call:
            extra = _drop_unknown_fields(msg.action, msg.payload)
            if extra:
                text = f"{msg.action}: unknown field(s) {', '.join(extra)} ignored"
                self.system.emit(
                    self.core.malformed(
                        self.id, self._now(), f"{msg.action} extra"[:80], text[:300]
                    )
                )
            try:
                _check_lenient(msg.action, msg.payload)
                await self._handle_call(msg)
            except OCPPError as error:
                refused = _as_16(error)
                self.system.emit(
                    self.core.malformed(
                        self.id,
                        self._now(),
                        f"{msg.action} {refused.code}"[:80],
                        f"{msg.action}"[:40]
                        + f" refused, {refused.code}: {refused.details['cause']}",
                    )
                )
                await self._send(_call_error(str(msg.unique_id)[:64], refused))
            if (
                msg.action != Action.boot_notification  # pushed after the boot is accepted
                and self.list_version_sent != self.core.local_list_version
            ):
                self.schedule_local_list()
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            self._response_queue.put_nowait(msg)

    async def request(self, payload: Any) -> tuple[str, str | None]:
        """Call the charger: (its status, detail); Timeout / CallError / Offline otherwise."""
        return await self._answered(payload, self.call(payload, suppress=False))

    async def _call_prepared(self, action: str, payload: dict[str, Any]) -> Any:
        """The library's `call` for a payload already in its wire form (camelCase, valid), without
        the conversions `call` makes each time: for the local list, 200 badges cost ~20 ms of
        loop per charger there, a second for 50 chargers at each change of the list."""
        message = Call(unique_id=str(uuid4()), action=action, payload=payload)
        async with self._call_lock:
            await self._send(message.to_json())
            response = await self._get_specific_response(message.unique_id, self._response_timeout)
        if response.message_type_id == MessageType.CallError:
            raise response.to_exception()
        # Checked as the library's `call` checks an answer: one without a valid status must not
        # pass for Accepted (the list would be taken as sent and never sent again).
        response.action = action
        await validate_payload(response, self._ocpp_version)
        return SimpleNamespace(status=response.payload["status"])

    async def _answered(self, payload: Any, pending: Any) -> tuple[str, str | None]:
        """The charger's answer to the call `pending` makes: (its status, detail)."""
        try:
            response = await pending
        except TimeoutError:
            return "Timeout", f"no answer within {self.system.call_timeout_s:g} s"
        except OCPPError as error:
            # The charger's error, or its answer failing the schema: the cause names the field.
            cause = error.details.get("cause") if isinstance(error.details, dict) else None
            detail = f"{error.code}: {error.description}" + (f" ({cause})" if cause else "")
            return "CallError", detail[:200]
        except UnknownCallErrorCodeError as error:
            return "CallError", str(error)[:200]
        except ConnectionClosed:
            return "Offline", "connection closed"
        except Exception as error:  # an answer the library cannot read: said, not raised
            log.warning("charger %s: %s answer not understood: %r", self.id, payload, error)
            return "Error", str(error)[:200]
        return str(getattr(response, "status", "Accepted")), None

    async def push_local_list(self, force: bool = False) -> None:
        """The full badge list, as the charger's local list (a guest can start while the link
        is down), when it has local lists enabled."""
        if self.core.authorize_mode != "list":
            return
        version = self.core.local_list_version
        if version == 0 or not self.local_list_supported:
            return
        if not force and self.list_version_sent == version:
            return
        if self.list_version_sent is None and not await self._local_list_enabled():
            self.local_list_supported = False
            return
        wire = self.system.local_list_payload()
        version = wire["listVersion"]
        payload = call.SendLocalList(list_version=version, update_type="Full")  # for the event
        status, detail = await self._answered(payload, self._call_prepared("SendLocalList", wire))
        outgoing = Outgoing(self.id, 0, None, "local_list", payload)
        self.system.emit([self.core.command_result(outgoing, self.system.clock(), status, detail)])
        if status == "Accepted":
            self.list_version_sent = version
        elif status == "NotSupported":
            self.local_list_supported = False

    async def _local_list_enabled(self) -> bool:
        try:
            response = await self.call(call.GetConfiguration(key=["LocalAuthListEnabled"]))
        except (TimeoutError, ConnectionClosed, OCPPError, UnknownCallErrorCodeError, TypeError):
            return True  # try the list itself; its answer says
        keys = {
            k.get("key"): k.get("value") for k in getattr(response, "configuration_key", None) or []
        }
        value = str(keys.get("LocalAuthListEnabled", "true")).lower()
        if value != "true":
            log.info(
                "charger %s: LocalAuthListEnabled is %s: no local badge list pushed", self.id, value
            )
        return value == "true"

    # -- handlers --------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.system.clock()

    @on(Action.boot_notification)
    async def on_boot(self, **payload: Any) -> call_result.BootNotification:
        reply, events = self.core.boot(
            self.id,
            self._now(),
            payload["charge_point_vendor"],
            payload["charge_point_model"],
            payload.get("charge_point_serial_number") or payload.get("charge_box_serial_number"),
            payload.get("firmware_version"),
        )
        self.system.emit(events)
        return call_result.BootNotification(**reply)

    @after(Action.boot_notification)
    def after_boot(self, **payload: Any) -> None:
        self.schedule_local_list(force=True)

    @on(Action.heartbeat)
    def on_heartbeat(self, **payload: Any) -> call_result.Heartbeat:
        now = self._now()
        self.system.emit(self.core.heard(self.id, now))
        return call_result.Heartbeat(current_time=format_ts(now))

    @on(Action.status_notification)
    def on_status(self, **payload: Any) -> call_result.StatusNotification:
        self.system.emit(
            self.core.status(
                self.id,
                self._now(),
                payload["connector_id"],
                payload["status"],
                payload["error_code"],
                payload.get("info"),
                payload.get("timestamp"),
            )
        )
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, **payload: Any) -> call_result.Authorize:
        authorization, events = self.core.authorize(self.id, self._now(), payload["id_tag"])
        self.system.emit(events)
        return call_result.Authorize(id_tag_info=authorization.id_tag_info())

    @on(Action.start_transaction)
    async def on_start(self, **payload: Any) -> call_result.StartTransaction:
        transaction_id, authorization, events = self.core.start_transaction(
            self.id,
            self._now(),
            payload["connector_id"],
            payload["id_tag"],
            payload["meter_start"],
            payload["timestamp"],
        )
        if not await self.system.save():
            # The id is stored before the charger has it, or not given: the charger retries.
            if any(isinstance(e, TransactionStarted) for e in events):  # not a start sent again
                self.core.cancel_start(transaction_id)
            raise InternalError(details={"cause": "the central system cannot store the id"})
        self.system.emit(events)
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info=authorization.id_tag_info()
        )

    @on(Action.meter_values, skip_schema_validation=True)
    async def on_meter_values(self, **payload: Any) -> call_result.MeterValues:
        events = self.core.meter_values(
            self.id,
            self._now(),
            payload["connector_id"],
            payload.get("transaction_id"),
            payload["meter_value"],
        )
        await self.system.save()
        self.system.emit(events)
        return call_result.MeterValues()

    @on(Action.stop_transaction, skip_schema_validation=True)
    async def on_stop(self, **payload: Any) -> call_result.StopTransaction:
        authorization, events = self.core.stop_transaction(
            self.id,
            self._now(),
            payload["transaction_id"],
            payload["meter_stop"],
            payload["timestamp"],
            payload.get("reason"),
            payload.get("id_tag"),
            payload.get("transaction_data"),
        )
        await self.system.save()
        self.system.emit(events)
        info = authorization.id_tag_info() if authorization else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.data_transfer)
    def on_data_transfer(self, **payload: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status(self, **payload: Any) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status(self, **payload: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()
