"""A local HTTP endpoint speaking the ntfy publish protocol, recording what it receives.

ntfy accepts a message two ways (https://docs.ntfy.sh/publish/): `POST /<topic>` with the text
as body and `Title`/`Priority`/`Tags` headers (or their `X-` forms), and `POST /` with a JSON
object `{"topic", "message", "title", "priority", "tags"}` (what apprise's ntfy plugin sends,
with X-Priority/X-Tags headers). Both are recorded as `NtfyMessage`. It answers like ntfy: 200
with the message event as JSON. Used by the notification tests and the alert latency bench;
stop() and start() again on the same port simulate the service going down and coming back.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.servers import free_port


@dataclass(frozen=True)
class NtfyMessage:
    topic: str
    message: str
    title: str | None
    priority: str | None
    tags: list[str]
    received: float = field(compare=False)  # time.monotonic() at arrival
    received_wall: float = field(default=0.0, compare=False)  # time.time() at arrival


class NtfyServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.messages: list[NtfyMessage] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The apprise URL for topic `irve` (`ntfy://` is plain HTTP, `ntfys://` HTTPS)."""
        return f"ntfy://127.0.0.1:{self.port}/irve"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    message = owner._parse(self.path, dict(self.headers.items()), body)
                except ValueError as exc:
                    self._answer(400, {"code": 40000, "http": 400, "error": str(exc)})
                    return
                owner._record(message)
                self._answer(
                    200,
                    {
                        "id": f"m{owner.requests}",
                        "time": int(time.time()),
                        "event": "message",
                        "topic": message.topic,
                        "message": message.message,
                    },
                )

            def do_PUT(self) -> None:
                self.do_POST()

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _record(self, message: NtfyMessage) -> None:
        with self._lock:
            self.requests += 1
            self.messages.append(message)

    @staticmethod
    def _parse(path: str, headers: dict[str, str], body: bytes) -> NtfyMessage:
        lower = {k.lower(): v for k, v in headers.items()}

        def header(name: str) -> str | None:
            return lower.get(name) or lower.get(f"x-{name}")

        topic = path.strip("/").split("?", 1)[0]
        now, wall = time.monotonic(), time.time()
        if not topic:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict) or not data.get("topic"):
                raise ValueError("JSON publish needs a topic")
            tags = data.get("tags") or (header("tags") or "").split(",")
            priority = data.get("priority") or header("priority")
            return NtfyMessage(
                topic=str(data["topic"]),
                message=str(data.get("message", "")),
                title=data.get("title") or header("title"),
                priority=None if priority is None else str(priority),
                tags=[t for t in tags if t],
                received=now,
                received_wall=wall,
            )
        return NtfyMessage(
            topic=topic,
            message=body.decode("utf-8"),
            title=header("title") or header("t"),
            priority=header("priority") or header("p"),
            tags=[t for t in (header("tags") or header("ta") or "").split(",") if t],
            received=now,
            received_wall=wall,
        )

    def received(self) -> list[NtfyMessage]:
        with self._lock:
            return list(self.messages)
