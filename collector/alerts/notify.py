"""Phone notifications straight from the collector, through apprise (ntfy, Telegram, Pushover,
e-mail, ...), so an overload reaches the owner even when InfluxDB and Grafana are down.

The app hands every alert message to `Notifier.submit` (non-blocking). Each configured URL has
its own queue (collector.alerts.notify_queue: deduplication, rate limit, flap cancelling) and
its own worker thread, so a slow or unreachable service delays neither polling nor the other
services. A failed send is retried with exponential backoff (tenacity) until it is delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import apprise
from tenacity import Retrying, retry_if_result, stop_when_event_set, wait_exponential

from collector.alerts.notify_queue import NotifyQueue, Pending
from collector.alerts.text import title
from collector.config import NotifySettings, SiteConfig
from collector.wire.kinds import Outgoing
from collector.wire.messages import AlertMessage

log = logging.getLogger(__name__)

Send = Callable[[AlertMessage], bool]


def _notify_type(message: AlertMessage) -> apprise.NotifyType:
    if message.state == "resolved":
        return apprise.NotifyType.SUCCESS
    if message.alert in ("socket_overcurrent", "site_overload"):
        return apprise.NotifyType.FAILURE
    return apprise.NotifyType.WARNING


def check_url(url: str) -> str:
    """A URL apprise understands, or ValueError. Returns the URL with secrets masked."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        raise ValueError("not an apprise URL apprise can use (see docs/alerts.md)")
    masked = plugin.url(privacy=True)  # type: ignore[no-untyped-call]  # untyped in apprise
    return str(masked).split("?", 1)[0]


def apprise_sender(url: str, site_name: str, settings: NotifySettings) -> Send:
    def send(message: AlertMessage) -> bool:
        # A fresh apprise object per attempt: apprise throttles each service object to one
        # request per 5.5 s, which would hold back a retry or a resolved right after its
        # firing. Our own queue already limits how much reaches the service.
        notifier = apprise.Apprise()
        if not notifier.add(url):
            return False
        return bool(
            notifier.notify(
                body=message.message,
                title=title(message.state, site_name, settings.language),
                notify_type=_notify_type(message),
                timeout=settings.timeout_s,
            )
        )

    return send


class Channel:
    """One notification URL: its queue and the worker thread that empties it."""

    def __init__(self, name: str, send: Send, settings: NotifySettings) -> None:
        self.name = name
        self._send = send
        self._settings = settings
        self.queue = NotifyQueue(settings.min_interval_s, settings.queue_max)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failures = 0

    def submit(self, message: AlertMessage) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"notify {self.name}", daemon=True
                )
                self._thread.start()
            self.queue.add(message, time.monotonic())
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        left = len(self.queue.pending) + (self.queue.in_flight is not None)
        if left:
            log.warning("notifications to %s: %d not delivered at shutdown", self.name, left)

    def _next(self) -> Pending | None:
        with self._cond:
            while not self._stop.is_set():
                now = time.monotonic()
                item = self.queue.take(now)
                if item is not None:
                    return item
                self._cond.wait(self.queue.wait_s(now))
        return None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            if self._deliver(item.message):
                with self._cond:
                    self.queue.delivered(item, time.monotonic())
                self.sent += 1

    def _deliver(self, message: AlertMessage) -> bool:
        attempts = Retrying(
            retry=retry_if_result(lambda ok: not ok),
            wait=wait_exponential(
                multiplier=self._settings.retry_initial_s,
                min=self._settings.retry_initial_s,
                max=self._settings.retry_max_s,
            ),
            stop=stop_when_event_set(self._stop),
            sleep=self._sleep,
            before_sleep=self._log_failure,
            retry_error_callback=lambda state: False,
            reraise=False,
        )
        return bool(attempts(self._attempt, message))

    def _sleep(self, seconds: float) -> None:
        # Woken early by close(), so shutdown never waits out a long backoff.
        self._stop.wait(seconds)

    def _attempt(self, message: AlertMessage) -> bool:
        try:
            return self._send(message)
        except Exception:
            log.exception("notification to %s raised", self.name)
            return False

    def _log_failure(self, state: object) -> None:
        self.failures += 1
        attempt = getattr(state, "attempt_number", 0)
        log.warning("notification to %s failed (attempt %d); retrying", self.name, attempt)


class Notifier:
    """Every configured notification URL; `submit` never blocks the caller."""

    def __init__(self, channels: list[Channel]) -> None:
        self.channels = channels

    @classmethod
    def from_site(cls, site: SiteConfig) -> Notifier:
        settings = site.notify
        channels = []
        for i, secret in enumerate(settings.urls):
            url = secret.get_secret_value()
            try:
                name = check_url(url)
            except ValueError as exc:
                # The collector keeps protecting the site with the URLs that work.
                log.error("notify.urls[%d]: %s", i, exc)
                continue
            channels.append(Channel(name, apprise_sender(url, site.site.name, settings), settings))
        return cls(channels)

    def submit(self, message: AlertMessage) -> None:
        for channel in self.channels:
            channel.submit(message)

    def observe(self, outgoing: Outgoing) -> None:
        """The app's observer hook: every published message passes here; alerts go out."""
        if outgoing.kind == "alert" and isinstance(outgoing.message, AlertMessage):
            self.submit(outgoing.message)

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        for channel in self.channels:
            channel.close(timeout)
