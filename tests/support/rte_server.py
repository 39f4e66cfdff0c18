"""A local HTTP endpoint playing RTE's public Tempo day-colour service (`tempoLight`).

It answers `GET /cms/open_data/v1/tempoLight` as RTE does: `{"values": {"2026-12-06": "RED",
"2026-12-06-fallback": "false", ...}}`, with the colours the test gives it (a day marked
fallback is RTE's placeholder before publication). `fail_next` makes the next requests
answer 503; `delay_s` makes every answer that slow; `garbage` answers HTML. Each request's
path is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.servers import free_port

PATH = "/cms/open_data/v1/tempoLight"


class RteServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.colours: dict[date, str] = {}
        self.placeholders: dict[date, str] = {}  # published with fallback "true"
        self.fail_next = 0
        self.delay_s = 0.0
        self.garbage = False
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def body(self) -> bytes:
        values: dict[str, str] = {}
        for day, colour in self.placeholders.items():
            values[day.isoformat()] = colour.upper()
            values[f"{day.isoformat()}-fallback"] = "true"
        for day, colour in self.colours.items():
            values[day.isoformat()] = colour.upper()
            values[f"{day.isoformat()}-fallback"] = "false"
        return json.dumps({"values": values}).encode()

    def __enter__(self) -> RteServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.requests.append(self.path)
                    failing = owner.fail_next > 0
                    owner.fail_next -= 1 if failing else 0
                time.sleep(owner.delay_s)
                if self.path != PATH:
                    self._answer(404, b"not found", "text/plain")
                elif failing:
                    self._answer(503, b"<html>maintenance</html>", "text/html")
                elif owner.garbage:
                    self._answer(200, b"<html>not json</html>", "text/html")
                else:
                    self._answer(200, owner.body(), "application/json")

            def _answer(self, status: int, payload: bytes, kind: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (its timeout)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
