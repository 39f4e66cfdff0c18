"""The site file's schema: one pydantic model per section, `SiteConfig` and `IngestorConfig` at
the top. Pure: importing or building these models reads no file and no environment; reading
the site file and the environment into them is collector.settings (`load`).
"""

from __future__ import annotations

import contextlib
import re
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)

from collector.language import Lang
from collector.load.settings import (
    KnxSettings,
    LoadManagementSettings,
    ScheduleSettings,
    check_references,
)
from collector.tariffs import regulated

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


def _between(lo: float, hi: float) -> AfterValidator:
    def check(value: float) -> float:
        if not lo <= value <= hi:
            raise ValueError(f"must be {lo:g}..{hi:g}")
        return value

    return AfterValidator(check)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


Port = Annotated[int, _between(1, 65535)]
UnitId = Annotated[int, _between(1, 247)]
Positive = Annotated[float, AfterValidator(_positive)]
Share = Annotated[float, _between(0.01, 1.0)]
Ident = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=48)]

_CLOCK = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_clock_range(text: str) -> tuple[time, time]:
    """`"22:00-06:00"` -> (22:00, 06:00). End may be before start (wraps midnight)."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2 != 0):
        raise ValueError(f"{text!r}: not a time of day")
    if (h1, m1) == (h2 % 24, m2):
        raise ValueError(f"{text!r}: empty range")
    return time(h1, m1), time(h2 % 24, m2)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteInfo(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9-]+$", max_length=48)]
    name: str = ""
    timezone: str = "Europe/Paris"
    subscribed_power_kva: Positive

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MqttSettings(Strict):
    host: str = "localhost"
    port: Port = 1883
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: Annotated[str, Field(pattern=r"^[^#+\s]+$")] = "irve"
    protocol: Literal["5", "3.1.1"] = "5"
    client_id: str | None = None
    keepalive_s: Annotated[int, _between(5, 3600)] = 30
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    # Messages kept while the broker is unreachable; state readings are dropped first.
    buffer_max_messages: Annotated[int, _between(100, 10_000_000)] = 100_000
    discovery: bool = True
    discovery_prefix: str = "homeassistant"


# Decimal, as typed (a YAML 0.1952 reads as its shortest text, Decimal("0.1952")) or as the
# table prints it: a price is never a binary float in the tariff core.
Price = Annotated[Decimal, Field(ge=0, le=10)]
TempoColour = Literal["blue", "white", "red"]
TEMPO_COLOURS: tuple[TempoColour, ...] = ("blue", "white", "red")
# RTE's public day-colour service (no account needed): today's and, once published,
# tomorrow's colour, `{"values": {"2026-12-06": "RED", "2026-12-06-fallback": "false", ...}}`.
RTE_TEMPO_URL = "https://www.services-rte.com/cms/open_data/v1/tempoLight"


class HpHcPrices(Strict):
    hp: Price
    hc: Price


class TempoPrices(Strict):
    blue: HpHcPrices
    white: HpHcPrices
    red: HpHcPrices


class PriceRow(Strict):
    since: date
    base: Price | None = None
    hp: Price | None = None
    hc: Price | None = None
    tempo: TempoPrices | None = None

    def figures(self) -> dict[str, Decimal]:
        """The row's prices by period name (BASE, HP, HC, then TEMPO_BLUE_HP ... TEMPO_RED_HC)."""
        out = {
            key.upper(): value
            for key in ("base", "hp", "hc")
            if (value := getattr(self, key)) is not None
        }
        if self.tempo is not None:
            for colour in TEMPO_COLOURS:
                hours = getattr(self.tempo, colour)
                out[f"TEMPO_{colour.upper()}_HP"] = hours.hp
                out[f"TEMPO_{colour.upper()}_HC"] = hours.hc
        return out


class TempoSettings(Strict):
    """Where a Tempo day's colour comes from, and the colour used while it is unknown."""

    source: Literal["rte", "mqtt"] = "rte"
    fallback: TempoColour = "blue"
    url: Annotated[str, Field(pattern=r"^https?://")] = RTE_TEMPO_URL
    timeout_s: Annotated[float, _between(1, 120)] = 20.0


def _minute_spans(text: str) -> list[tuple[int, int]]:
    """A clock range as [start, end) minute spans of one day (two when it wraps midnight)."""
    start, end = (t.hour * 60 + t.minute for t in parse_clock_range(text))
    if start < end:
        return [(start, end)]
    return [(start, 24 * 60)] + ([(0, end)] if end else [])


def _clock_ranges(values: list[str]) -> list[str]:
    # Overlapping ranges are a typo: HC hours would be counted once while the installer meant more.
    seen: list[tuple[str, list[tuple[int, int]]]] = []
    for value in values:
        spans = _minute_spans(value)
        for other, other_spans in seen:
            if any(a < d and c < b for a, b in spans for c, d in other_spans):
                raise ValueError(f"{other!r} and {value!r} overlap")
        seen.append((value, spans))
    return values


def _day_of_year(value: str) -> str:
    month, day = (int(part) for part in value.split("-"))
    try:
        date(2024, month, day)  # a leap year: 02-29 is a day of some years
    except ValueError:
        raise ValueError(f"{value!r} is not a day of the year") from None
    return value


def season_contains(start: str, end: str, month_day: str) -> bool:
    """Is this MM-DD in the inclusive span start..end (which wraps the new year if end < start)?"""
    if start <= end:
        return start <= month_day <= end
    return month_day >= start or month_day <= end


ClockRanges = Annotated[list[str], AfterValidator(_clock_ranges)]
MonthDay = Annotated[
    str,
    Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"),
    AfterValidator(_day_of_year),
]


class OffpeakSeason(Strict):
    """HC schedule for part of the year (Enedis 2025-2027 reform: summer 1 April - 31 October)."""

    name: str
    start: MonthDay  # MM-DD, inclusive
    end: MonthDay  # MM-DD, inclusive; may be before start (wraps the new year)
    offpeak: ClockRanges


class OffpeakEntry(Strict):
    """The HC schedule in force from a date (local midnight) until the next entry's: Enedis moves
    a meter's HC on a date the supplier announces (the 2025-2027 reform)."""

    since: date
    offpeak: ClockRanges = Field(default_factory=list)
    seasons: list[OffpeakSeason] = Field(default_factory=list)

    @model_validator(mode="after")
    def _some_hours(self) -> OffpeakEntry:
        if not self.offpeak and not self.seasons:
            raise ValueError("offpeak or seasons: an entry needs HC ranges")
        _no_hidden_season(self.seasons)
        return self


def _offpeak_form(value: Any) -> str:
    """Today's form (a list of "HH:MM-HH:MM") or the dated one (a list of entries)."""
    return (
        "offpeak-dated"
        if isinstance(value, list) and value and isinstance(value[0], dict)
        else "offpeak-ranges"
    )


Offpeak = Annotated[
    Annotated[ClockRanges, Tag("offpeak-ranges")]
    | Annotated[list[OffpeakEntry], Tag("offpeak-dated")],
    Discriminator(_offpeak_form),
]


class WeekendSettings(Strict):
    """Offers such as EDF's Option Week-End: the HC price all day on Saturday and Sunday, and
    on one weekday the customer picks."""

    extra_day: Literal["mon", "tue", "wed", "thu", "fri"] | None = None

    @property
    def days(self) -> frozenset[int]:
        """The days priced HC all day, as date.weekday() (Monday 0)."""
        extra = [] if self.extra_day is None else [WEEKDAYS.index(self.extra_day)]
        return frozenset([5, 6, *extra])


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SubscriptionRow(Strict):
    """The monthly subscription (abonnement) incl. tax from a date, as the bill prints it."""

    since: date
    per_month: Annotated[Decimal, Field(ge=0, le=10_000)] | None = None
    per_year: Annotated[Decimal, Field(ge=0, le=120_000)] | None = None

    @model_validator(mode="after")
    def _one_figure(self) -> SubscriptionRow:
        if (self.per_month is None) == (self.per_year is None):
            raise ValueError("give exactly one of per_month, per_year")
        return self

    @property
    def monthly(self) -> Decimal:
        """EUR a month: as given, or the year / 12."""
        return self.per_month if self.per_month is not None else (self.per_year or ZERO) / 12


ZERO = Decimal(0)


class TariffSettings(Strict):
    # With a supplier, the price rows come from its bundled dated table (own rows override).
    supplier: Literal["edf-tarif-bleu"] | None = None
    option: Literal["base", "hphc", "tempo"] = "base"
    kva: int | None = None  # the subscribed power of the supplier's table (SiteConfig defaults it)
    # Today's form: HC ranges for every day (with `seasons`); or dated entries, each with its own.
    offpeak: Offpeak = Field(default_factory=list)
    seasons: list[OffpeakSeason] = Field(default_factory=list)
    weekend: WeekendSettings | None = None
    # Typed subscription rows (override the supplier's table); else the table's, with supplier.
    subscription: list[SubscriptionRow] = Field(default_factory=list)
    prices: list[PriceRow] = Field(default_factory=list)
    tempo: TempoSettings = Field(default_factory=TempoSettings)
    currency: str = "EUR"

    @model_validator(mode="after")
    def _coherent(self) -> TariffSettings:
        _increasing("prices: rows", [row.since for row in self.prices])
        if self.supplier is not None:
            # Frozen model: the rows are filled once, here, before anything reads them.
            object.__setattr__(self, "prices", self._with_table_rows())
        if not self.prices:
            raise ValueError("prices: required (at least one row) unless `supplier` is set")
        needed = {"base": ("base",), "hphc": ("hp", "hc"), "tempo": ("tempo",)}[self.option]
        for i, row in enumerate(self.prices):
            for key in needed:
                if getattr(row, key) is None:
                    raise ValueError(f"prices[{i}].{key}: required with option {self.option}")
        if self.option == "hphc" and not self.offpeak and not self.seasons and not self.weekend:
            raise ValueError("offpeak: option hphc needs at least one HC range")
        if self.weekend is not None and self.option != "hphc":
            raise ValueError("weekend: the HC price all weekend needs option hphc (HP and HC)")
        entries = self.offpeak_entries()
        if self.seasons and entries and entries[0].since != date.min:
            raise ValueError("seasons: with dated offpeak entries, give seasons inside each entry")
        _increasing("offpeak: entries", [entry.since for entry in entries])
        _increasing("subscription: rows", [row.since for row in self.subscription])
        _no_hidden_season(self.seasons)
        return self

    def offpeak_entries(self) -> list[OffpeakEntry]:
        """The HC schedules by date; today's form is one entry from the beginning of time."""
        if self.offpeak and isinstance(self.offpeak[0], OffpeakEntry):
            return [e for e in self.offpeak if isinstance(e, OffpeakEntry)]
        ranges = [r for r in self.offpeak if isinstance(r, str)]
        if not ranges and not self.seasons:
            return []
        return [OffpeakEntry.model_construct(since=date.min, offpeak=ranges, seasons=self.seasons)]

    @property
    def has_offpeak(self) -> bool:
        """Are HC ranges given (HP/HC can be costed)?"""
        return bool(self.offpeak_entries())

    def _with_table_rows(self) -> list[PriceRow]:
        if self.kva is None:
            raise ValueError(f"kva: required with supplier {self.supplier}")
        own = {row.since: row for row in self.prices}
        try:
            entries = regulated.history(self.option, self.kva, frozenset(own))
        except regulated.RegulatedError as exc:
            raise ValueError(f"kva: {exc}") from None
        rows = dict(own)
        for entry in entries:
            figures = dict(entry.prices)
            for other in regulated.OPTIONS:
                if other != self.option:
                    with contextlib.suppress(regulated.RegulatedError):  # `irve compare` uses them
                        figures |= regulated.prices_at(other, self.kva, entry.since).prices
            rows.setdefault(entry.since, _table_row(entry.since, figures))
        return [rows[since] for since in sorted(rows)]


def _increasing(what: str, dates: list[date]) -> None:
    """Dated rows are looked up as "the last one since": their dates must strictly increase."""
    if dates != sorted(dates) or len(set(dates)) != len(dates):
        raise ValueError(f"{what} must be in strictly increasing `since` order")


def _no_hidden_season(seasons: list[OffpeakSeason]) -> None:
    """The first season containing a day wins: one whose days all fall in earlier seasons
    would never apply, which is never what the installer meant."""
    year = [(date(2024, 1, 1) + timedelta(days=n)).strftime("%m-%d") for n in range(366)]
    taken: set[str] = set()
    for i, season in enumerate(seasons):
        days = {day for day in year if season_contains(season.start, season.end, day)}
        if days <= taken:
            raise ValueError(
                f"seasons[{i}]: never applies: every day from {season.start} to "
                f"{season.end} is in an earlier season"
            )
        taken |= days


def _table_row(since: date, figures: dict[str, Decimal]) -> PriceRow:
    """A price row from the table's figures by period name (BASE, HP, TEMPO_RED_HC, ...)."""
    plain = {p.lower(): figures[p] for p in ("BASE", "HP", "HC") if p in figures}
    tempo = None
    if all(f"TEMPO_{c.upper()}_{h}" in figures for c in TEMPO_COLOURS for h in ("HP", "HC")):
        tempo = TempoPrices.model_validate(
            {
                c: {h.lower(): figures[f"TEMPO_{c.upper()}_{h}"] for h in ("HP", "HC")}
                for c in TEMPO_COLOURS
            }
        )
    return PriceRow(since=since, tempo=tempo, **plain)


class TcpBus(Strict):
    id: Ident
    type: Literal["tcp", "rtu_over_tcp"]
    host: str
    port: Port = 502
    timeout_s: Annotated[float, _between(0.05, 30)] = 1.0


class RtuBus(Strict):
    id: Ident
    type: Literal["rtu"]
    device: str
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    timeout_s: Annotated[float, _between(0.05, 30)] = 1.0


Bus = Annotated[TcpBus | RtuBus, Field(discriminator="type")]


class SocketInfo(Strict):
    label: str
    rated_current_a: Annotated[float, _between(1, 125)]
    phases: Literal[1, 3] = 1
    kind: Literal["t2s", "domestic", "wallbox", "other"] = "t2s"


class MeterSettings(Strict):
    id: Ident
    bus: str
    unit: UnitId
    profile: str
    role: Literal["main", "socket"] = "socket"
    socket: SocketInfo | None = None

    @model_validator(mode="after")
    def _socket_fields(self) -> MeterSettings:
        if self.role == "socket" and self.socket is None:
            raise ValueError("socket: required when role is socket (label, rated_current_a)")
        if self.role == "main" and self.socket is not None:
            raise ValueError("socket: only meters with role socket have one")
        return self


class EnergySettings(Strict):
    window_s: Annotated[int, _between(10, 3600)] = 60
    state_file: Path | None = None  # default: <state_dir>/energy-<site>.json


class SessionSettings(Strict):
    start_power_w: Positive = 300.0
    start_after_s: Annotated[float, _between(0, 600)] = 10.0
    stop_power_w: Positive = 100.0
    # A car balancing its battery or a scheduled pause does not split a session.
    end_after_s: Annotated[float, _between(1, 86400)] = 900.0
    badge_window_s: Annotated[float, _between(0, 86400)] = 600.0


class AlertSettings(Strict):
    overcurrent_for_s: Annotated[float, _between(0, 3600)] = 5.0
    overload_for_s: Annotated[float, _between(0, 3600)] = 2.0
    warning_share: Share = 0.9
    hysteresis_share: Annotated[float, _between(0, 0.5)] = 0.05
    offline_after_polls: Annotated[int, _between(1, 1000)] = 3
    stale_main_is_overload: bool = True
    power_factor: Annotated[float, _between(0.5, 1.0)] = 1.0  # kVA -> W for the subscribed power
    # An alert resolves once its value stayed below limit x (1 - hysteresis_share) this long.
    resolve_for_s: Annotated[float, _between(0, 3600)] = 5.0
    # shed.excess_w is counted above subscribed power x (1 - shed_margin_share).
    shed_margin_share: Annotated[float, _between(0, 0.5)] = 0.0
    shed_step_w: Annotated[float, _between(1, 1_000_000)] = 100.0  # republish when excess moves
    shed_refresh_s: Annotated[float, _between(1, 86400)] = 60.0


class NotifySettings(Strict):
    urls: list[SecretStr] = Field(default_factory=list)  # apprise URLs
    language: Lang = "fr"
    min_interval_s: Annotated[float, _between(0, 86400)] = 300.0
    retry_initial_s: Annotated[float, _between(0.01, 3600)] = 1.0
    retry_max_s: Annotated[float, _between(0.01, 86400)] = 60.0
    queue_max: Annotated[int, _between(2, 100_000)] = 100  # per URL
    timeout_s: Annotated[float, _between(0.5, 120)] = 10.0


class InfluxSettings(Strict):
    url: str = "http://localhost:8086"
    api_version: Literal["1", "2"] = "2"
    token: SecretStr | None = None
    org: str = "irve"
    bucket: str = "irve"
    database: str = "irve"
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: Annotated[float, _between(0.1, 300)] = 10.0
    # Raw readings older than this many days are pruned once `reading_1m` and `reading_1h`
    # hold them (collector.store.retention); None keeps them forever. At least a week, so that
    # a week's panels and the continuous queries' late readings always find them. Empty is
    # None: the Docker stack passes `${RAW_RETENTION_DAYS:-}`, empty when it is not set.
    raw_retention_days: Annotated[
        Annotated[int, _between(7, 100_000)] | None,
        BeforeValidator(lambda v: None if v == "" else v),
    ] = None

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_url(cls, data: Any) -> Any:
        """`http://user:password@host:8086` is taken apart: the user and password go where the
        clients send them from (`username`, `password`), the URL keeps only the server. No
        client then carries a password in a URL it may print, and an HTTP library that would
        not send URL credentials (urllib, urllib3) is never given any."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        parts = urlsplit(data["url"])
        if parts.username is None and parts.password is None:
            return data
        host = parts.netloc.rpartition("@")[2]
        taken = {"url": urlunsplit(parts._replace(netloc=host))}
        # `username` and `password` keys, when given too, win (as before URLs carried them).
        if data.get("username") is None and parts.username is not None:
            taken["username"] = unquote(parts.username)
        if data.get("password") is None and parts.password is not None:
            taken["password"] = unquote(parts.password)
        return {**data, **taken}


class IngestSettings(Strict):
    # None: the MQTT username, else irve-ingest (collector.mqtt.auth.default_client_id).
    client_id: str | None = None
    # Off by default: mosquitto 2.0 restores a persistent session's plain subscriptions after a
    # restart but not its $share ones, so a lone ingestor on a shared subscription loses what is
    # published before it resubscribes (docs/ingest.md). Set a group to run several ingestors.
    share_group: str | None = None
    session_expiry_s: Annotated[int, _between(0, 2**32 - 1)] = 7 * 86400
    batch_size: Annotated[int, _between(1, 100_000)] = 5000
    flush_interval_s: Annotated[float, _between(0.01, 60)] = 1.0
    max_pending: Annotated[int, _between(100, 10_000_000)] = 200_000
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, _between(0, 65535)] = 9108


class _Common(Strict):
    """What every command's configuration has: the site file's keys outside the site itself."""

    log_level: Annotated[
        LogLevel,
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"
    state_dir: Path = Path("var")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)


class OcppTls(Strict):
    cert_file: Path
    key_file: Path


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: expected HOST:PORT (0.0.0.0:9000)")
    return value


class OcppSettings(Strict):
    """The OCPP 1.6J central system chargers connect to (docs/ocpp.md)."""

    listen: Annotated[str, AfterValidator(_host_port)] = "0.0.0.0:9000"
    authorize: Literal["list", "any", "free"] = "list"
    tls: OcppTls | None = None
    heartbeat_s: Annotated[int, _between(10, 86400)] = 300
    # A charger that missed this many heartbeats is offline (as offline_after_polls for meters).
    offline_after_heartbeats: Annotated[int, _between(1, 100)] = 3

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class ChargerSettings(Strict):
    # The charge point identity: the last segment of the URL it connects to.
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", max_length=48)]
    password: SecretStr  # HTTP Basic, security profile 1
    connectors: Annotated[dict[Annotated[int, _between(1, 99)], Ident], Field(min_length=1)]


class HotelSettings(Strict):
    """Who issues the guest statements (printed on them)."""

    address: str = ""
    siret: str | None = None
    vat_number: str | None = None
    vat_rate: Annotated[float, _between(0, 1)] = 0.20

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str | None) -> str | None:
        # Printed as given (spaces help reading); checked on its digits, with the Luhn key
        # every SIRET carries, so a mistyped number is caught before it reaches a guest.
        if value is None:
            return None
        digits = value.replace(" ", "")
        if not re.fullmatch(r"\d{14}", digits):
            raise ValueError(f"{value!r}: a SIRET is 14 digits")
        if _luhn(digits) % 10:
            raise ValueError(f"{value!r}: not a valid SIRET (check digit)")
        return value

    @field_validator("vat_number")
    @classmethod
    def _vat_number(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(
            r"[A-Z]{2}[0-9A-Z]{2,13}", value.replace(" ", "")
        ):
            raise ValueError(f"{value!r}: expected a country code and 2..13 letters or digits")
        return value


_LISTEN = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^:\s]+):(?P<port>\d{1,5})$")


class DeskTls(Strict):
    cert_file: Path
    key_file: Path


class DeskSettings(Strict):
    """`irve desk`: the front desk's web application (docs/desk.md)."""

    listen: str = "127.0.0.1:8080"
    database: Path | None = None  # default: <state_dir>/desk.sqlite3
    grace_h: Annotated[float, _between(0, 72)] = 4.0  # badges stay valid after departure
    # The billing policy a new stay gets (reception may change it per stay).
    policy: Literal["at_cost", "flat", "allowance"] = "at_cost"
    fee_eur: Annotated[float, _between(0, 1000)] = 0.0
    kwh_per_night: Annotated[float, _between(0, 1000)] = 8.0
    language: Lang = "fr"  # of the pages, and of the statements by default
    # The `owner` account's password (`make up` writes it to .env): set at every start.
    owner_password: SecretStr | None = None
    tls: DeskTls | None = None  # served over HTTPS itself (else behind a TLS proxy, or plain)
    session_hours: Annotated[float, _between(0.1, 720)] = 12.0

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        match = _LISTEN.match(value.strip())
        if not match or not 1 <= int(match.group("port")) <= 65535:
            raise ValueError(f"{value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        return value.strip()

    @property
    def host(self) -> str:
        match = _LISTEN.match(self.listen)
        assert match is not None  # checked by the validator
        return match.group("host").strip("[]")

    @property
    def port(self) -> int:
        match = _LISTEN.match(self.listen)
        assert match is not None
        return int(match.group("port"))


def _luhn(digits: str) -> int:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total


class SiteConfig(_Common):
    """Everything `irve collect`, `simulate`, `read`, `check` and `bill` need."""

    site: SiteInfo
    tariff: TariffSettings
    buses: list[Bus] = Field(min_length=1)
    meters: list[MeterSettings] = Field(min_length=1)
    poll_interval_s: Annotated[float, _between(0.1, 3600)] = 1.0
    profiles_dir: list[Path] = Field(default_factory=list)
    energy: EnergySettings = Field(default_factory=EnergySettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    hotel: HotelSettings = Field(default_factory=HotelSettings)
    ocpp: OcppSettings | None = None
    chargers: list[ChargerSettings] = Field(default_factory=list)
    load_management: LoadManagementSettings | None = None
    schedules: list[ScheduleSettings] = Field(default_factory=list)
    knx: KnxSettings | None = None
    desk: DeskSettings = Field(default_factory=DeskSettings)

    @model_validator(mode="before")
    @classmethod
    def _supplier_kva(cls, data: Any) -> Any:
        """`tariff.kva` defaults to the regulated step that holds `site.subscribed_power_kva`."""
        tariff, site = (
            data.get(key) if isinstance(data, dict) else None for key in ("tariff", "site")
        )
        if not isinstance(tariff, dict) or not tariff.get("supplier") or "kva" in tariff:
            return data
        value = site.get("subscribed_power_kva") if isinstance(site, dict) else None
        try:
            power = float(value)  # type: ignore[arg-type]  # None or text: caught just below
        except (TypeError, ValueError):
            return data  # refused by site.subscribed_power_kva itself
        if not power > 0 or power == float("inf"):
            return data
        try:
            kva = regulated.regulated_kva(power)
        except regulated.RegulatedError as exc:
            raise ValueError(f"tariff.kva: site.subscribed_power_kva: {exc}") from None
        return {**data, "tariff": {**tariff, "kva": kva}}

    @model_validator(mode="after")
    def _references(self) -> SiteConfig:
        _unique("buses", [bus.id for bus in self.buses])
        _unique("meters", [meter.id for meter in self.meters])
        bus_ids = {bus.id for bus in self.buses}
        for i, meter in enumerate(self.meters):
            if meter.bus not in bus_ids:
                raise ValueError(f"meters[{i}].bus: no bus with id {meter.bus!r}")
        mains = [i for i, meter in enumerate(self.meters) if meter.role == "main"]
        if len(mains) > 1:
            raise ValueError(f"meters[{mains[1]}].role: at most one meter may be main")
        for bus in self.buses:
            units = [m.unit for m in self.meters if m.bus == bus.id]
            dup = next((u for u in units if units.count(u) > 1), None)
            if dup is not None:
                raise ValueError(f"buses: unit {dup} used twice on bus {bus.id!r}")
        self._chargers()
        check_references(self.meters, self.tariff, self.load_management, self.schedules, self.knx)
        return self

    def _chargers(self) -> None:
        if self.chargers and self.ocpp is None:
            raise ValueError("ocpp: required when chargers are listed (listen, authorize)")
        if self.ocpp is not None and not self.chargers:
            raise ValueError("chargers: ocpp needs at least one charger (id, password, connectors)")
        _unique("chargers", [charger.id for charger in self.chargers])
        sockets = {m.id for m in self.meters if m.role == "socket"}
        served: dict[str, str] = {}
        for i, charger in enumerate(self.chargers):
            for connector, point in charger.connectors.items():
                where = f"chargers[{i}].connectors.{connector}"
                if point not in sockets:
                    raise ValueError(f"{where}: no meter with role socket has id {point!r}")
                owner = served.setdefault(point, charger.id)
                if owner != charger.id:
                    raise ValueError(f"{where}: {point!r} is already served by charger {owner!r}")

    def bus(self, bus_id: str) -> TcpBus | RtuBus:
        return next(bus for bus in self.buses if bus.id == bus_id)

    @property
    def main_meter(self) -> MeterSettings | None:
        return next((m for m in self.meters if m.role == "main"), None)

    @property
    def subscribed_power_w(self) -> float:
        return self.site.subscribed_power_kva * 1000 * self.alerts.power_factor


class IngestorConfig(_Common):
    """`irve ingest`: environment first; a site file may be given but only these keys count."""

    model_config = ConfigDict(extra="ignore")


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            raise ValueError(f"{what}[{i}].id: duplicate id {ident!r}")
        seen.add(ident)
