"""`/healthz` and `/metrics` over HTTP (stdlib server in a daemon thread)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Health = Callable[[], tuple[bool, dict[str, Any]]]


class StatusServer:
    """Serves `health()` on /healthz (200 or 503, JSON) and `metrics()` on /metrics."""

    def __init__(self, host: str, port: int, health: Health, metrics: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ok, detail = health()
                    self._reply(200 if ok else 503, "application/json", json.dumps(detail))
                elif path == "/metrics":
                    self._reply(200, "text/plain; version=0.0.4; charset=utf-8", metrics())
                else:
                    self._reply(404, "text/plain", "not found: try /healthz or /metrics\n")

            def _reply(self, status: int, content_type: str, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ingest-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
