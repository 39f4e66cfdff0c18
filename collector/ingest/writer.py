"""Line protocol batches -> InfluxDB, with retries for outages and surgery for bad points.

Two backends speak to the database:
- `ClientV2Backend`: influxdb-client's synchronous WriteApi (/api/v2/write: token, org,
  bucket) for InfluxDB 1.8+, 2.x, 3.x and VictoriaMetrics;
- `HttpV1Backend`: plain HTTP POST /write (database, username/password) for InfluxDB 1.x
  servers without /api/v2/write.

`Writer.write` never loses a batch silently:
- connection errors, timeouts, 5xx, 408, 429 and the configuration errors 401/403/404 (bad
  token, database missing, no /api/v2/write on InfluxDB 1.x before 1.8) are retried with exponential backoff until they succeed or the
  ingestor stops (then `WriteAborted`: the caller must not acknowledge the batch);
- a 400/413/422 is about some points of the batch (field type conflict, bad value, too large):
  the batch is split in halves until the offending lines are alone; those are returned to the
  caller (which dead-letters their messages), every other line is written. Re-sending lines
  that a 1.x server already stored from a "partial write" is harmless: a point with the same
  series and time overwrites itself.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Protocol

import urllib3
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from collector.config import InfluxSettings

log = logging.getLogger(__name__)

# Statuses that say "these points are wrong", as opposed to "the server or setup is wrong".
POINT_ERRORS = frozenset({400, 413, 422})
V1_HINT = "set IRVE_INFLUX__API_VERSION=1 for InfluxDB 1.x"


class PointsRejected(Exception):
    """The database refused (some of) the points: status and its error text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class Unavailable(Exception):
    """The database cannot take the batch now (down, 5xx, auth or database missing): retry."""


class WriteAborted(Exception):
    """The ingestor is stopping while the database is unavailable: the batch is not written."""


class Backend(Protocol):
    def write(self, body: str) -> None:
        """Write line protocol with ms timestamps; raise PointsRejected or Unavailable."""

    def ping(self) -> bool: ...

    def problem(self) -> str | None:
        """A setup error the server shows at once, that no retry can fix; None when there is
        none or when the server cannot be reached (it may start later)."""

    def close(self) -> None: ...


def _short(data: bytes | str | None, limit: int = 300) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
    return text.strip()[:limit]


def _no_v2_api(status: int, text: str) -> bool:
    """A 404 from the server's router (`404 page not found`): no /api/v2/write at all, as on
    InfluxDB 1.x before 1.8. A missing bucket or database is a 404 with a JSON error."""
    return status == 404 and not text.startswith("{")


def _raise_for(status: int, text: str) -> None:
    if 200 <= status < 300:
        return
    if status in POINT_ERRORS:
        raise PointsRejected(status, text)
    raise Unavailable(f"HTTP {status}: {text}")


class _Pinger:
    def __init__(self, settings: InfluxSettings, pool: urllib3.PoolManager) -> None:
        self._url = settings.url.rstrip("/") + "/ping"
        self._pool = pool

    def ping(self) -> bool:
        try:
            response = self._pool.request(
                "GET", self._url, timeout=urllib3.Timeout(2.0), retries=False
            )
        except (urllib3.exceptions.HTTPError, OSError):
            return False
        return bool(200 <= response.status < 300)


class HttpV1Backend:
    """POST {url}/write?db=...&precision=ms (InfluxDB 1.x)."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._pool = urllib3.PoolManager(maxsize=2)
        self._url = settings.url.rstrip("/") + "/write"
        self._fields = {"db": settings.database, "precision": "ms"}
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            self._headers.update(urllib3.make_headers(basic_auth=f"{settings.username}:{password}"))
        self._timeout = urllib3.Timeout(settings.timeout_s)
        self._pinger = _Pinger(settings, self._pool)

    def write(self, body: str) -> None:
        query = "&".join(f"{key}={value}" for key, value in self._fields.items())
        try:
            response = self._pool.request(
                "POST",
                f"{self._url}?{query}",
                body=body.encode(),
                headers=self._headers,
                timeout=self._timeout,
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(str(exc)) from exc
        _raise_for(response.status, _short(response.data))

    def ping(self) -> bool:
        return self._pinger.ping()

    def problem(self) -> str | None:
        return None

    def close(self) -> None:
        self._pool.clear()


class ClientV2Backend:
    """influxdb-client's synchronous WriteApi (/api/v2/write), our own batching and retries."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        token = settings.token.get_secret_value() if settings.token else ""
        if not token and settings.username:
            # InfluxDB 1.8's v2 compatibility API takes "user:password" as the token.
            password = settings.password.get_secret_value() if settings.password else ""
            token = f"{settings.username}:{password}"
        self._client = InfluxDBClient(
            url=settings.url,
            token=token,
            org=settings.org,
            timeout=int(settings.timeout_s * 1000),
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = settings.bucket
        self._org = settings.org
        # The library annotates the parameter as its enum class but the values are strings.
        self._precision: Any = WritePrecision.MS
        self._pool = urllib3.PoolManager(maxsize=1)
        self._pinger = _Pinger(settings, self._pool)
        query = urllib.parse.urlencode({"org": self._org, "bucket": self._bucket})
        self._write_url = f"{settings.url.rstrip('/')}/api/v2/write?{query}&precision=ms"
        self._auth = {"Authorization": f"Token {token}"}

    def write(self, body: str) -> None:
        from influxdb_client.rest import ApiException

        try:
            self._api.write(
                bucket=self._bucket, org=self._org, record=body, write_precision=self._precision
            )
        except ApiException as exc:
            status, text = int(exc.status or 0), _short(exc.body)
            if _no_v2_api(status, text):
                raise Unavailable(f"HTTP 404 {text!r} on /api/v2/write: {V1_HINT}") from exc
            _raise_for(status, text)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unavailable(str(exc)) from exc

    def ping(self) -> bool:
        return self._pinger.ping()

    def problem(self) -> str | None:
        # An empty write: the server answers from its router before reading any point.
        try:
            response = self._pool.request(
                "POST",
                self._write_url,
                body=b"",
                headers=self._auth,
                timeout=urllib3.Timeout(5.0),
                retries=False,
            )
        except (urllib3.exceptions.HTTPError, OSError):
            return None
        if _no_v2_api(response.status, _short(response.data)):
            return (
                "influx.api_version: 2, but the server at influx.url has no /api/v2/write "
                f"(HTTP 404, as InfluxDB 1.x before 1.8): {V1_HINT}"
            )
        return None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def backend_for(settings: InfluxSettings) -> Backend:
    if settings.api_version == "1":
        return HttpV1Backend(settings)
    return ClientV2Backend(settings)


@dataclass
class WriteStats:
    """Counters the metrics endpoint shows; updated by the writer thread only."""

    points_written: int = 0
    points_dropped: int = 0
    requests: int = 0
    write_errors: int = 0
    retries: int = 0
    last_error: str = ""
    database_up: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class Dropped:
    index: int  # in the batch given to `Writer.write`
    line: str
    reason: str


class Writer:
    """Writes one batch at a time; see the module docstring for what happens on errors."""

    def __init__(
        self,
        backend: Backend,
        stopping: threading.Event,
        *,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.backend = backend
        self.stats = WriteStats()
        self._stopping = stopping
        self._max_backoff_s = max_backoff_s

    def write(self, batch: list[str]) -> list[Dropped]:
        """Write `batch`; return the lines the database refused (not written), in order.

        Raises WriteAborted if the ingestor stops before the database takes the batch.
        """
        dropped: list[Dropped] = []
        self._write_part(batch, 0, len(batch), dropped)
        for item in dropped:
            log.error("the database refused a point (%r): %r", item.reason, item.line)
        with self.stats.lock:
            self.stats.points_written += len(batch) - len(dropped)
            self.stats.points_dropped += len(dropped)
        return dropped

    def _write_part(self, batch: list[str], start: int, end: int, dropped: list[Dropped]) -> None:
        try:
            self._send("\n".join(batch[start:end]))
        except PointsRejected as exc:
            if end - start == 1:
                dropped.append(Dropped(start, batch[start], str(exc)))
                return
            middle = (start + end) // 2
            self._write_part(batch, start, middle, dropped)
            self._write_part(batch, middle, end, dropped)

    def _send(self, body: str) -> None:
        retrying = Retrying(
            retry=retry_if_exception_type(Unavailable),
            wait=wait_exponential(multiplier=0.1, max=self._max_backoff_s),
            stop=lambda _state: self._stopping.is_set(),
            sleep=self._sleep,
            before_sleep=self._before_retry,
            reraise=True,
        )
        try:
            retrying(self._send_once, body)
        except Unavailable as exc:
            raise WriteAborted(str(exc)) from exc

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # a stop cuts the backoff short

    def _send_once(self, body: str) -> None:
        with self.stats.lock:
            self.stats.requests += 1
        try:
            self.backend.write(body)
        except Unavailable as exc:
            with self.stats.lock:
                self.stats.write_errors += 1
                self.stats.last_error = str(exc)
                self.stats.database_up = False
            raise
        except PointsRejected:
            with self.stats.lock:
                self.stats.write_errors += 1
            raise
        with self.stats.lock:
            self.stats.database_up = True

    def _before_retry(self, state: RetryCallState) -> None:
        with self.stats.lock:
            self.stats.retries += 1
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "database unavailable (%s); retry %d in %.1f s",
            state.outcome.exception() if state.outcome else "?",
            state.attempt_number,
            wait,
        )
