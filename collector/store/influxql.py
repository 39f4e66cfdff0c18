"""A small InfluxQL client over HTTP `/query`: InfluxDB 1.x, 2.x (1.x compatibility API, bucket
mapped to a database) and 3.x (v1 query API).

Authentication: a token goes in `Authorization: Token ...` (2.x, 3.x); a username and password
go in the `u`/`p` parameters (1.x). Times come back as epoch milliseconds (`epoch=ms`) and are
turned into aware UTC datetimes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.config import InfluxSettings
from collector.redact import redact
from collector.wire.times import EPOCH


class InfluxQLError(RuntimeError):
    """The server could not be reached or refused the query (the message says which)."""


@dataclass(frozen=True)
class Series:
    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        """Each row as a dict; `time` as an aware datetime; the series' tags included."""
        out = []
        for values in self.values:
            row = dict(self.tags)
            row.update(zip(self.columns, values, strict=False))
            stamp = row.get("time")
            if isinstance(stamp, int | float):
                row["time"] = EPOCH + timedelta(milliseconds=stamp)
            out.append(row)
        return out


def quote_string(value: str) -> str:
    """An InfluxQL string literal: `'room 12'`."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def time_literal(ts: datetime) -> str:
    """An RFC 3339 UTC time literal for WHERE clauses."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: times must be timezone-aware")
    return "'" + ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


class InfluxQL:
    def __init__(
        self,
        url: str,
        database: str,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.token = token
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: InfluxSettings) -> InfluxQL:
        """API version 1: `database` with username/password; otherwise `bucket` with the token,
        or username/password without one."""
        if settings.api_version == "1":
            return cls(
                settings.url,
                settings.database,
                token=settings.token.get_secret_value() if settings.token else None,
                username=settings.username,
                password=settings.password.get_secret_value() if settings.password else None,
                timeout_s=settings.timeout_s,
            )
        return cls(
            settings.url,
            settings.bucket,
            token=settings.token.get_secret_value() if settings.token else None,
            # InfluxDB 2's 1.x-compatibility /query also takes a v1 authorization's u and p
            # (from influx.username/password or the URL's user and password).
            username=settings.username if not settings.token else None,
            password=(
                settings.password.get_secret_value()
                if settings.password and not settings.token
                else None
            ),
            timeout_s=settings.timeout_s,
        )

    def query(self, statement: str) -> list[Series]:
        """Run one statement; the series it returns (empty when nothing matches)."""
        return self._send(statement, "GET")

    def execute(self, statement: str) -> list[Series]:
        """Run a statement that changes the database (CREATE, DROP, SELECT INTO): InfluxDB
        1.x refuses those on GET."""
        return self._send(statement, "POST")

    def _send(self, statement: str, method: str) -> list[Series]:
        params = {"db": self.database, "q": statement, "epoch": "ms"}
        if self.username:
            params["u"] = self.username
        if self.password:
            params["p"] = self.password
        request = urllib.request.Request(
            f"{self.url}/query?{urllib.parse.urlencode(params)}", method=method
        )
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise InfluxQLError(redact(f"{self.url}/query: HTTP {exc.code}: {detail}")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise InfluxQLError(redact(f"{self.url}/query: cannot connect: {exc}")) from None
        except ValueError as exc:
            raise InfluxQLError(redact(f"{self.url}/query: not JSON: {exc}")) from None
        return _series(body, statement)


def _series(body: Any, statement: str) -> list[Series]:
    if not isinstance(body, dict):
        raise InfluxQLError(f"unexpected answer to {statement!r}")
    if "error" in body:
        raise InfluxQLError(f"{body['error']} (query: {statement})")
    out: list[Series] = []
    for result in body.get("results", []):
        if "error" in result:
            raise InfluxQLError(f"{result['error']} (query: {statement})")
        for raw in result.get("series", []):
            out.append(
                Series(
                    name=raw.get("name", ""),
                    tags=dict(raw.get("tags") or {}),
                    columns=list(raw.get("columns", [])),
                    values=[list(v) for v in raw.get("values", [])],
                )
            )
    return out
