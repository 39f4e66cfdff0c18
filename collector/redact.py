"""Secrets out of every log line, error message and /healthz: the one place that masks them.

Three layers, because a secret can reach a message by several roads:
- `redact_url` / `redact` mask what a URL carries by its shape: the password of
  `scheme://user:password@host` and the values of token-like query parameters (`?token=`,
  `&p=` ...). Every place that prints a URL goes through them.
- `register` records the configured secrets (every SecretStr of the settings, and the
  token-bearing parts of secret URLs such as apprise's `tgram://<bot token>/<chat>`), which
  `redact` then masks wherever they appear, whatever printed them (a library's exception
  text, a traceback).
- `install` puts a formatter that applies `redact` on the root handlers, and caps the
  loggers of libraries that print credentials at DEBUG (apprise logs request payloads with
  Pushover tokens and Telegram URLs with the bot token) at WARNING.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Iterable
from types import TracebackType

from pydantic import BaseModel, SecretStr

MASK = "***"
# Shorter registered values would mask ordinary words; real secrets are longer. The parts of a
# secret URL other than its password (a topic, a host, a path) must be longer still, so that
# an ntfy topic such as `alerts` does not mask the word in every logger name.
MIN_SECRET_LEN = 6
MIN_URL_PART_LEN = 10
# Libraries that write credentials into their own DEBUG/INFO lines.
NOISY_LOGGERS = ("apprise",)

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):(?P<password>[^\s/@]+)@")
_QUERY = re.compile(
    r"(?P<key>[?&;](?:[A-Za-z_]*token|key|api_?key|apikey|secret|password|passwd|pass|pwd|p|"
    r"auth|authorization|sig|signature)=)(?P<value>[^&;#\s'\"]+)",
    re.IGNORECASE,
)
_secrets: set[str] = set()
_lock = threading.Lock()


def register(values: Iterable[str | None]) -> None:
    """Mask these values (and the secret parts of those that are URLs) from now on."""
    found: set[str] = set()
    for value in values:
        if value:
            found.add(value)
            found.update(_url_parts(value))
    with _lock:
        _secrets.update(v for v in found if len(v) >= MIN_SECRET_LEN)


def register_settings(model: BaseModel) -> None:
    """Register every SecretStr of a settings tree (nested models and lists included)."""
    register(_secret_values(model))


def _secret_values(value: object) -> Iterable[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, str) and "://" in value and "@" in value:
        yield from _url_parts(value)  # a password in a plain URL setting (influx.url)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_values(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_values(item)


def _url_parts(value: str) -> set[str]:
    """The parts of a secret URL that may be a credential on their own: user and password,
    a host without a dot (apprise puts tokens there: tgram://<token>/...), path segments and
    query values."""
    if "://" not in value:
        return set()
    try:
        parsed = urllib.parse.urlsplit(value)
    except ValueError:
        return set()
    parts = {parsed.username or ""}
    host = parsed.netloc.rpartition("@")[2]
    if "." not in host:
        parts.add(host)
    parts.update(urllib.parse.unquote(seg) for seg in parsed.path.split("/"))
    parts.update(v for _, v in urllib.parse.parse_qsl(parsed.query))
    found = {part for part in parts if len(part) >= MIN_URL_PART_LEN}
    if parsed.password:
        found.add(urllib.parse.unquote(parsed.password))
    return found


def redact_url(url: str) -> str:
    """`url` fit to print: password and token-like query values masked."""
    return redact(url)


def redact(text: str) -> str:
    """`text` with registered secrets, URL passwords and token-like query values masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
    return _QUERY.sub(rf"\g<key>{MASK}", text)


class RedactingFormatter(logging.Formatter):
    """The whole formatted record (message, arguments, traceback) passes through `redact`."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, tb))))


def install(level: int) -> None:
    """Redact on every root handler and in uncaught tracebacks; libraries that print
    credentials log WARNING and up."""
    sys.excepthook = _excepthook
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        handler.setFormatter(
            RedactingFormatter(
                current._fmt if current else None,
                current.datefmt if current else None,
            )
        )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
