"""`/healthz` and `/metrics` over HTTP: a small asyncio server in a daemon thread.

Connections cost no thread: one event loop serves them all, and `health()` (which pings the
database, up to 2 s) runs on a pool of two threads. Exposed to a network, the server holds:
- at most `max_connections` connections at once; the next ones get a 503 and are closed
  (in a flood of more than MAX_REFUSING at once, reset without an answer);
- a connection that has not sent its whole request `timeout_s` after connecting is closed
  (and one that does not read its answer within `timeout_s` too), so idle or slow clients
  free their place on their own.
One request per connection (`Connection: close`), GET and HEAD.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]

MAX_CONNECTIONS = 100
TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 8192
# After a 503 for too many connections: how long its request may take to arrive and be
# discarded (closing with unread data would reset the connection and lose the 503) ...
REFUSED_DRAIN_S = 1.0
# ... and how many such may wait at once; beyond, a connection is reset without an answer.
MAX_REFUSING = 4 * MAX_CONNECTIONS
REFUSAL_LOG_EVERY_S = 60.0  # one warning a minute while refusing, not one per connection
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class StatusServer:
    """Serves `health()` on /healthz (200 or 503, JSON) and `metrics()` on /metrics."""

    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        metrics: Callable[[], str],
        *,
        max_connections: int = MAX_CONNECTIONS,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self._health = health
        self._metrics = metrics
        self.max_connections = max_connections
        self.timeout_s = timeout_s
        self.connections = 0  # being served now (event loop thread only)
        self._refusing = 0  # being refused now
        self._refusal_logged = -REFUSAL_LOG_EVERY_S
        # Bound here, so that a port in use fails the start rather than a background thread.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family)
        self._loop = asyncio.new_event_loop()
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-http-work")
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._socket.close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, sock=self._socket, limit=MAX_HEAD_BYTES)
        )
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections:
            await self._refuse(reader, writer)
            return
        self.connections += 1
        answered = False
        try:
            status, content_type, body, head_only = await self._answer(reader)
            writer.write(_response(status, content_type, body, head_only))
            await asyncio.wait_for(writer.drain(), self.timeout_s)
            writer.close()
            answered = True
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass  # idle, slow or gone
        finally:
            self.connections -= 1
            if not answered:
                writer.transport.abort()  # free the place at once (also when stopping)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, str, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout_s)
        except asyncio.LimitOverrunError:
            return 400, "text/plain", "request head too large\n", False
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, "text/plain", "bad request line\n", False
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", "only GET and HEAD\n", False
        path = target.split("?", 1)[0]
        head_only = method == "HEAD"
        if path == "/healthz":
            ok, detail = await self._loop.run_in_executor(self._workers, self._health)
            return 200 if ok else 503, "application/json", json.dumps(detail), head_only
        if path == "/metrics":
            text = self._metrics()
            return 200, "text/plain; version=0.0.4; charset=utf-8", text, head_only
        return 404, "text/plain", "not found: try /healthz or /metrics\n", head_only

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing >= MAX_REFUSING:
            writer.transport.abort()  # a flood: not even an answer
            return
        self._refusing += 1
        now = time.monotonic()
        if now - self._refusal_logged >= REFUSAL_LOG_EVERY_S:
            self._refusal_logged = now
            log.warning(
                "http: %d connections open (the most allowed): answering 503 to new ones",
                self.connections,
            )
        closed = False
        try:
            writer.write(_response(503, "text/plain", "too many connections\n", False))
            writer.write_eof()
            # Read (and discard) the request while the answer goes out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(MAX_HEAD_BYTES), REFUSED_DRAIN_S)
            writer.close()
            closed = True
        except OSError:
            pass
        finally:
            self._refusing -= 1
            if not closed:
                writer.transport.abort()


def _response(status: int, content_type: str, body: str, head_only: bool) -> bytes:
    data = body.encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head if head_only else head + data
