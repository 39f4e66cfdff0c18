"""Settings machinery (I/O): the site file (YAML) and the environment, read into the models of
collector.config by `load`, which binds a schema model to the pydantic-settings root `_Root`.

Every key of the YAML site file can be overridden by an environment variable (`IRVE_` prefix,
nested keys joined by `__`), and `IRVE_..._FILE` reads a secret from a file (Docker secrets).
Errors name the offending path (`meters[1].unit: must be 1..247`). Loading does not touch
logging: the command applies the level it reads (`apply_log_level`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from collector import redact

if TYPE_CHECKING:
    from collections.abc import Iterator
    from importlib.resources.abc import Traversable

ENV_PREFIX = "IRVE_"
ENV_DELIMITER = "__"


class ConfigError(Exception):
    """Invalid configuration; `problems` holds one `path: message` line per error."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _annotation(model: type[BaseModel], keys: list[str]) -> str | None:
    """The type of the field at this key path, as text; None when there is no such field. A
    digit after a list of models is an item of it (`chargers.0.password`)."""
    node: Any = model
    for key in keys:
        if key.isdigit() and get_origin(node) is list:
            node = get_args(node)[0]
            continue
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        info = node.model_fields.get(key)
        if info is None:
            return None
        node = info.annotation
    return str(node)


def _is_secret(model: type[BaseModel], keys: list[str]) -> bool:
    """Does this key path lead to a SecretStr field (the only keys `_FILE` can fill)?"""
    return "SecretStr" in (_annotation(model, keys) or "")


def _secret_files(model: type[BaseModel]) -> Iterator[tuple[str, list[str], Any]]:
    """`IRVE_MQTT__PASSWORD_FILE=/run/secrets/x` -> ("IRVE_MQTT__PASSWORD_FILE",
    ["mqtt", "password"], <file content>), for each variable that names a secret's file."""
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
        # A list of secrets (notify.urls) takes one per line; a single secret, the whole text.
        yield (
            name,
            keys,
            [line.strip() for line in text.splitlines() if line.strip()]
            if (_annotation(model, keys) or "").startswith("list[")
            else text.rstrip("\r\n"),
        )


def _file_secrets(model: type[BaseModel]) -> dict[str, Any]:
    """The secret files outside lists: {"mqtt": {"password": <file content>}}."""
    values: dict[str, Any] = {}
    for _, keys, value in _secret_files(model):
        if any(key.isdigit() for key in keys):
            continue  # an item of a list: applied over the file's list by _YamlSource
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return values


def _list_item_overrides(model: type[BaseModel]) -> list[tuple[str, list[str], Any]]:
    """`IRVE_METERS__1__UNIT=5` -> ("IRVE_METERS__1__UNIT", ["meters", "1", "unit"], "5"): the
    variables that reach into an item of a list, applied over the site file's list (the
    environment source alone would replace the whole list by a dict); secret files too
    (`IRVE_CHARGERS__0__PASSWORD_FILE`)."""
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
    # Applied last: a secret's file wins over its plain variable, as outside lists.
    found += [item for item in _secret_files(model) if any(key.isdigit() for key in item[1])]
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
        _apply_list_items(data, _list_item_overrides(self.settings_cls))
        return data

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        return read_site_file(Path(str(file_path)))


def error_lines(exc: ValidationError) -> list[str]:
    """pydantic errors as `meters[1].unit: must be 1..247` lines; a value that came from the
    environment is named by its variable (`IRVE_MQTT__PORT: must be 1..65535`)."""
    lines = []
    for err in exc.errors():
        path = ""
        for part in err["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in (
                "tcp",
                "rtu",
                "rtu_over_tcp",
                "function-after",
                "offpeak-ranges",
                "offpeak-dated",
            ):
                continue  # union branch names pydantic adds; not part of the user's path
            else:
                path += f".{part}" if path else str(part)
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required"
        elif isinstance(value, str) and _DECIMAL_COMMA.match(value.strip()):
            message = f"decimal comma: write {value.strip().replace(',', '.')}"
        elif err["type"].startswith("date"):
            message = f"{value!r} is not a date: {message.split(', ', 1)[-1]}"
        # Cross-field checks already name their own path.
        own = re.match(r"^([a-z_]+(\[\d+\])?[.\[][^:]*|[a-z_]+(\[\d+\])?):\s*(.*)$", message)
        if own:
            path = f"{path}.{own.group(1)}" if path else own.group(1)
            message = own.group(4)
        lines.append(_name_the_source(path, message))
    return lines


def _name_the_source(path: str, message: str) -> str:
    """`path: message`, with the environment variable instead of the path when the value came
    from one (the file does not hold the value the installer has to fix)."""
    if not path:
        return message
    keys = re.findall(r"[^.\[\]]+", path)
    variables = {name.upper(): value for name, value in os.environ.items()}
    for depth in range(len(keys), 0, -1):
        name = ENV_PREFIX + ENV_DELIMITER.join(keys[:depth]).upper()
        for variable in (name, f"{name}_FILE"):
            if variable not in variables:
                continue
            if depth == len(keys):
                return f"{variable}: {message}"
            if _json_holds(variables[variable], keys[depth:]):
                return f"{variable}: {path}: {message}"
    return f"{path}: {message}"


def _json_holds(text: str, keys: list[str]) -> bool:
    """Does this variable's JSON value reach down to these keys (`IRVE_BUSES='[{...}]'`)?"""
    try:
        node: Any = json.loads(text)
    except ValueError:
        return False
    for key in keys:
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return False
    return True


class _SiteLoader(yaml.SafeLoader):
    """Safe YAML that refuses what would silently change a site file's meaning."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if node.flow_style:
            _join_decimal_commas(node)
        first: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in first:
                # PyYAML keeps the last value without a word: a second `base:` would win.
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            first[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:  # 2026-02-30: left as text, refused by the field that wants a date
            return self.construct_scalar(node)


_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL_COMMA = re.compile(r"^-?\d+,\d+$")


_SiteLoader.add_constructor("tag:yaml.org,2002:timestamp", _SiteLoader.construct_yaml_timestamp)


def _join_decimal_commas(node: yaml.MappingNode) -> None:
    """`{base: 0,1927}` parses as {base: 0, 1927: null}: give `base` the text "0,1927" back, so
    that the field refuses it as a decimal comma instead of the file gaining a key `1927`."""
    pairs = node.value
    i = 1
    while i < len(pairs):
        key, value = pairs[i]
        before = pairs[i - 1][1]
        if (
            isinstance(key, yaml.ScalarNode)
            and key.style is None
            and key.value.isdigit()
            and isinstance(value, yaml.ScalarNode)
            and value.value == ""
            and isinstance(before, yaml.ScalarNode)
            and before.style is None
            and _INTEGER.match(before.value)
        ):
            text = f"{before.value},{key.value}"
            joined = yaml.ScalarNode("tag:yaml.org,2002:str", text, before.start_mark, key.end_mark)
            pairs[i - 1] = (pairs[i - 1][0], joined)
            del pairs[i]
        else:
            i += 1


def read_text(path: Path) -> str:
    """A UTF-8 text file the installer wrote; ConfigError naming the file and what is wrong."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8-sig")  # Notepad may start a UTF-8 file with a BOM
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [
                f"{path}: line {line}: byte {raw[exc.start]:#04x} is not UTF-8 "
                f"(saved as Latin-1 or Windows-1252?): save the file as UTF-8"
            ]
        ) from None
    return text


def read_site_file(path: Path) -> dict[str, Any]:
    """The site file's top-level mapping; ConfigError naming the file and what is wrong."""
    text = read_text(path)
    try:
        data = yaml.load(text, Loader=_SiteLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f" ({exc.context})" if exc.context else ""
        raise ConfigError([f"{path}: not valid YAML: {where}{exc.problem}{context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if data is None:
        raise ConfigError([f"{path}: the file is empty"])
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"the value {data!r}"
        raise ConfigError(
            [f"{path}: expected a mapping at the top level (site:, tariff:, ...), not {kind}"]
        )
    return data


class _Root(BaseSettings):
    """Where a configuration's values come from, highest first: arguments, `IRVE_..._FILE`
    secret files, `IRVE_` variables, the site file (list-item variables applied over its lists)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
    )

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
        elif overrides := _list_item_overrides(settings_cls):
            name = overrides[0][0]
            raise ConfigError([f"{name}: a list item can only be overridden over a site file"])
        return tuple(sources)


RootT = TypeVar("RootT", bound=BaseModel)


def load(cls: type[RootT], path: Path | str | None) -> RootT:
    """Build `cls` (SiteConfig, IngestorConfig) from the YAML file (if any) and the environment;
    raise ConfigError. The result is an instance of `cls`."""
    yaml_path = Path(path) if path is not None else None
    if yaml_path is not None:
        read_site_file(yaml_path)  # pydantic-settings would skip a missing file without a word
    # The schema's own rules (extra keys refused or ignored) win over the root's defaults.
    namespace = {
        "model_config": {**_Root.model_config, **cls.model_config},
        "_yaml_path": yaml_path,
    }
    bound = type(cls.__name__, (cls, _Root), namespace)
    try:
        config: RootT = bound()
    except ValidationError as exc:
        raise ConfigError(error_lines(exc)) from None
    redact.register_settings(config)
    return config


def apply_log_level(config: BaseModel) -> None:
    """The root logger's level from the configuration, when it sets one (`--log-level` reaches
    here as IRVE_LOG_LEVEL): what a command does once it has loaded its configuration."""
    level = getattr(config, "log_level", None)
    if level is not None and "log_level" in config.model_fields_set:
        logging.getLogger().setLevel(level)
