"""Site file and environment: one validated model per process.

Every key of the YAML site file can be overridden by an environment variable (`IRVE_` prefix,
nested keys joined by `__`), and `IRVE_..._FILE` reads a secret from a file (Docker secrets).
Errors name the offending path (`meters[1].unit: must be 1..247`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "IRVE_"
ENV_DELIMITER = "__"


class ConfigError(Exception):
    """Invalid configuration; `problems` holds one `path: message` line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


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


class PriceRow(Strict):
    since: date
    base: Annotated[float, Field(ge=0, le=10)] | None = None
    hp: Annotated[float, Field(ge=0, le=10)] | None = None
    hc: Annotated[float, Field(ge=0, le=10)] | None = None


def _clock_ranges(values: list[str]) -> list[str]:
    for value in values:
        parse_clock_range(value)
    return values


ClockRanges = Annotated[list[str], AfterValidator(_clock_ranges)]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")]


class OffpeakSeason(Strict):
    """HC schedule for part of the year (Enedis 2025-2027 reform: summer 1 April - 31 October)."""

    name: str
    start: MonthDay  # MM-DD, inclusive
    end: MonthDay  # MM-DD, inclusive; may be before start (wraps the new year)
    offpeak: ClockRanges


class TariffSettings(Strict):
    option: Literal["base", "hphc"] = "base"
    offpeak: ClockRanges = Field(default_factory=list)
    seasons: list[OffpeakSeason] = Field(default_factory=list)
    prices: list[PriceRow] = Field(min_length=1)
    currency: str = "EUR"

    @model_validator(mode="after")
    def _coherent(self) -> TariffSettings:
        dates = [row.since for row in self.prices]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            raise ValueError("prices: rows must be in strictly increasing `since` order")
        needed = ("base",) if self.option == "base" else ("hp", "hc")
        for i, row in enumerate(self.prices):
            for key in needed:
                if getattr(row, key) is None:
                    raise ValueError(f"prices[{i}].{key}: required with option {self.option}")
        if self.option == "hphc" and not self.offpeak and not self.seasons:
            raise ValueError("offpeak: option hphc needs at least one HC range")
        return self


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
    language: Literal["fr", "en"] = "fr"
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


class IngestSettings(Strict):
    client_id: str = "irve-ingest"
    # Off by default: mosquitto 2.0 restores a persistent session's plain subscriptions after a
    # restart but not its $share ones, so a lone ingestor on a shared subscription loses what is
    # published before it resubscribes (docs/ingest.md). Set a group to run several ingestors.
    share_group: str | None = None
    session_expiry_s: Annotated[int, _between(0, 2**32 - 1)] = 7 * 86400
    batch_size: Annotated[int, _between(1, 100_000)] = 5000
    flush_interval_s: Annotated[float, _between(0.01, 60)] = 1.0
    max_pending: Annotated[int, _between(100, 10_000_000)] = 200_000
    http_host: str = "0.0.0.0"
    http_port: Annotated[int, _between(0, 65535)] = 9108


def _annotation(model: type[BaseModel], keys: list[str]) -> str | None:
    """The type of the field at this key path, as text; None when there is no such field."""
    for key in keys[:-1]:
        info = model.model_fields.get(key)
        nested = info.annotation if info is not None else None
        if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
            return None
        model = nested
    info = model.model_fields.get(keys[-1])
    return None if info is None else str(info.annotation)


def _is_secret(model: type[BaseModel], keys: list[str]) -> bool:
    """Does this key path lead to a SecretStr field (the only keys `_FILE` can fill)?"""
    return "SecretStr" in (_annotation(model, keys) or "")


def _file_secrets(model: type[BaseModel]) -> dict[str, Any]:
    """`IRVE_MQTT__PASSWORD_FILE=/run/secrets/x` -> {"mqtt": {"password": <file content>}}."""
    values: dict[str, Any] = {}
    for name, path in os.environ.items():
        if not (name.startswith(ENV_PREFIX) and name.endswith("_FILE")) or not path:
            continue
        keys = name[len(ENV_PREFIX) : -len("_FILE")].lower().split(ENV_DELIMITER)
        if not _is_secret(model, keys):
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{name}: cannot read {path}: {exc.strerror}"]) from None
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        # A list of secrets (notify.urls) takes one per line; a single secret, the whole text.
        node[keys[-1]] = (
            [line.strip() for line in text.splitlines() if line.strip()]
            if (_annotation(model, keys) or "").startswith("list[")
            else text.rstrip("\r\n")
        )
    return values


def _list_item_overrides() -> list[tuple[str, list[str], Any]]:
    """`IRVE_METERS__1__UNIT=5` -> ("IRVE_METERS__1__UNIT", ["meters", "1", "unit"], "5"): the
    variables that reach into an item of a list, applied over the site file's list (the
    environment source alone would replace the whole list by a dict)."""
    found = []
    for name, value in os.environ.items():
        if not name.startswith(ENV_PREFIX) or name.endswith("_FILE"):
            continue
        keys = name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
        if any(key.isdigit() for key in keys):
            try:
                parsed = json.loads(value) if value.lstrip()[:1] in ("{", "[") else value
            except ValueError as exc:
                raise ConfigError([f"{name}: not valid JSON: {exc}"]) from None
            found.append((name, keys, parsed))
    return found


def _apply_list_items(data: dict[str, Any], overrides: list[tuple[str, list[str], Any]]) -> None:
    for name, keys, value in overrides:
        node: Any = data
        for depth, key in enumerate(keys[:-1]):
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    where = ".".join(keys[:depth]) or "the file"
                    raise ConfigError([f"{name}: {where} has no item {key} ({len(node)} items)"])
                node = node[int(key)]
            elif isinstance(node, dict):
                node = node.setdefault(key, {})
            else:
                raise ConfigError([f"{name}: {'.'.join(keys[:depth])} is not a list or mapping"])
        last = keys[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError([f"{name}: no item {last} ({len(node)} items)"])
            node[int(last)] = value
        else:
            node[last] = value


class _FileSecretsSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _file_secrets(self.settings_cls)


class _EnvSource(EnvSettingsSource):
    """Environment without the `..._FILE` variables that name secret files."""

    def __call__(self) -> dict[str, Any]:
        return self._drop_secret_files(super().__call__(), [])

    def _drop_secret_files(self, data: dict[str, Any], path: list[str]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, value in data.items():
            if key.endswith("_file") and _is_secret(self.settings_cls, [*path, key[:-5]]):
                continue
            if isinstance(value, dict) and value and all(k.isdigit() for k in value):
                continue  # list items: applied over the file's list by _YamlSource
            kept[key] = (
                self._drop_secret_files(value, [*path, key]) if isinstance(value, dict) else value
            )
        return kept


class _YamlSource(YamlConfigSettingsSource):
    """The site file, with the environment's list-item overrides applied to its lists."""

    def __call__(self) -> dict[str, Any]:
        data = copy.deepcopy(super().__call__())
        _apply_list_items(data, _list_item_overrides())
        return data


class _Root(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "INFO"
    state_dir: Path = Path("var")
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    # Filled in by `load`; a class attribute because pydantic-settings builds sources per class.
    _yaml_path: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _FileSecretsSource(settings_cls),
            _EnvSource(settings_cls),
        ]
        if cls._yaml_path is not None:
            sources.append(_YamlSource(settings_cls, yaml_file=cls._yaml_path))
        elif overrides := _list_item_overrides():
            name = overrides[0][0]
            raise ConfigError([f"{name}: a list item can only be overridden over a site file"])
        return tuple(sources)


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
    language: Literal["fr", "en"] = "fr"  # of the statements
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


class SiteConfig(_Root):
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
    desk: DeskSettings = Field(default_factory=DeskSettings)

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
        return self

    def bus(self, bus_id: str) -> TcpBus | RtuBus:
        return next(bus for bus in self.buses if bus.id == bus_id)

    @property
    def main_meter(self) -> MeterSettings | None:
        return next((m for m in self.meters if m.role == "main"), None)

    @property
    def subscribed_power_w(self) -> float:
        return self.site.subscribed_power_kva * 1000 * self.alerts.power_factor


class IngestorConfig(_Root):
    """`irve ingest`: environment first; a site file may be given but only these keys count."""

    model_config = SettingsConfigDict(extra="ignore")


def _unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            raise ValueError(f"{what}[{i}].id: duplicate id {ident!r}")
        seen.add(ident)


def error_lines(exc: ValidationError) -> list[str]:
    """pydantic errors as `meters[1].unit: must be 1..247` lines."""
    lines = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in ("tcp", "rtu", "rtu_over_tcp", "function-after"):
                continue  # union branch names pydantic adds; not part of the user's path
            else:
                path += f".{part}" if path else str(part)
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required"
        # Cross-field checks already name their own path.
        if re.match(r"^[a-z_]+(\[\d+\])?[.:\[]", message):
            lines.append(message if not path else f"{path}.{message}")
        else:
            lines.append(f"{path}: {message}" if path else message)
    return lines


def _read_yaml(path: Path) -> None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping at the top level"])


RootT = TypeVar("RootT", bound=_Root)


def load(cls: type[RootT], path: Path | str | None) -> RootT:
    """Build `cls` from the YAML file (if any) and the environment; raise ConfigError."""
    yaml_path = Path(path) if path is not None else None
    if yaml_path is not None:
        _read_yaml(yaml_path)
    bound = type(cls.__name__, (cls,), {"_yaml_path": yaml_path})
    try:
        config: RootT = bound()
    except ValidationError as exc:
        raise ConfigError(error_lines(exc)) from None
    if "log_level" in config.model_fields_set:  # `--log-level` reaches here as IRVE_LOG_LEVEL
        logging.getLogger().setLevel(config.log_level)
    return config
