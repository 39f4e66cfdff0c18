"""Meter profiles: one YAML file per meter model, describing where each quantity lives.

Profiles are data (like evcc's templates): a user adds a meter by dropping a YAML file in a
directory listed in `profiles_dir`. Each value declares the unit its register counts in; loading
converts it to the public unit of its quantity (W, A, V, Wh, Hz), so a kW register and a Wh
register both come out in SPEC units.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from collector.meters.registers import REGISTERS, DataType, WordOrder
from collector.settings import read_text

Function = Literal["holding", "input"]
Confidence = Literal["confirmed", "partial", "unverified"]

# Quantity names: the reading's keys. Per-phase names carry _l1/_l2/_l3.
_QUANTITY = re.compile(
    r"^(power_w|current_a|voltage_v|power_factor|frequency_hz|energy_wh|export_energy_wh"
    r"|power_l[123]_w|current_l[123]_a|voltage_l[123]_v|power_factor_l[123]"
    r"|voltage_l12_v|voltage_l23_v|voltage_l31_v|current_n_a"
    r"|energy_l[123]_wh|export_energy_l[123]_wh)$"
)
# Unit a register counts in -> (public unit, factor to it).
UNITS: dict[str, tuple[str, float]] = {
    "W": ("W", 1.0),
    "kW": ("W", 1000.0),
    "A": ("A", 1.0),
    "mA": ("A", 0.001),
    "V": ("V", 1.0),
    "mV": ("V", 0.001),
    "Wh": ("Wh", 1.0),
    "kWh": ("Wh", 1000.0),
    "MWh": ("Wh", 1_000_000.0),
    "Hz": ("Hz", 1.0),
    "": ("", 1.0),
}


def public_unit(quantity: str) -> str:
    if quantity.startswith("power_factor"):
        return ""
    if quantity.endswith("_wh"):
        return "Wh"
    return {"_w": "W", "_a": "A", "_v": "V", "hz": "Hz"}[quantity[-2:]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueSpec(_Strict):
    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    type: DataType
    unit: str = ""
    scale: float = 1.0
    function: Function | None = None  # default: the profile's
    word_order: WordOrder | None = None  # default: the profile's
    na: list[int] = Field(default_factory=list)  # raw values meaning "not available"

    @property
    def count(self) -> int:
        return REGISTERS[self.type]


class SerialDefaults(_Strict):
    baudrate: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit: int = 1


class Profile(_Strict):
    id: str
    manufacturer: str
    model: str
    phases: Literal[1, 3]
    confidence: Confidence
    sources: list[str] = Field(min_length=1)
    notes: str = ""
    function: Function = "holding"
    word_order: WordOrder = "msw"
    max_read: Annotated[int, Field(ge=1, le=125)] = 50  # registers per request
    max_gap: Annotated[int, Field(ge=0, le=124)] = 8  # unused registers one request may span
    delay_ms: Annotated[int, Field(ge=0, le=5000)] = 0  # between two requests to this meter
    serial: SerialDefaults = Field(default_factory=SerialDefaults)
    na: dict[DataType, list[int]] = Field(default_factory=dict)  # per-type markers, all values
    values: dict[str, ValueSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Profile:
        for name, spec in self.values.items():
            if not _QUANTITY.match(name):
                raise ValueError(f"values.{name}: unknown quantity")
            if spec.unit not in UNITS:
                raise ValueError(f"values.{name}.unit: unknown unit {spec.unit!r}")
            if UNITS[spec.unit][0] != public_unit(name):
                raise ValueError(
                    f"values.{name}.unit: {spec.unit!r} cannot express {public_unit(name)!r}"
                )
            if spec.count > self.max_read:
                raise ValueError(f"values.{name}: wider than max_read")
            if spec.address + spec.count > 0x10000:
                raise ValueError(f"values.{name}.address: runs past register 0xFFFF")
        self._check_overlaps()
        if "energy_wh" not in self.values and "power_w" not in self.values:
            raise ValueError("values: a profile needs at least power_w or energy_wh")
        return self

    def _check_overlaps(self) -> None:
        """Two values sharing a register is a typo in the map, never a real meter's layout."""
        taken: dict[tuple[Function, int], str] = {}
        for name, spec in self.values.items():
            for register in range(spec.address, spec.address + spec.count):
                key = (self.function_of(spec), register)
                if key in taken:
                    raise ValueError(
                        f"values.{name}.address: register {register:#06x} is also "
                        f"used by {taken[key]}"
                    )
                taken[key] = name

    def function_of(self, spec: ValueSpec) -> Function:
        return spec.function or self.function

    def word_order_of(self, spec: ValueSpec) -> WordOrder:
        return spec.word_order or self.word_order

    def factor_of(self, spec: ValueSpec) -> float:
        """Raw value x factor = value in the quantity's public unit."""
        return spec.scale * UNITS[spec.unit][1]

    def counter_spans_wh(self) -> tuple[float, ...] | None:
        """Where the energy index wraps back to 0, in Wh: () for a float register, which does
        not wrap; None when the profile has no energy index."""
        spec = self.values.get("energy_wh")
        if spec is None:
            return None
        if spec.type in ("f32", "f64"):
            return ()
        return (2 ** (16 * spec.count) * self.factor_of(spec),)

    def na_of(self, spec: ValueSpec) -> list[int]:
        return spec.na + self.na.get(spec.type, [])


class ProfileError(Exception):
    pass


BUNDLED = resources.files("collector") / "profiles"


def _parse(text: str, origin: str) -> Profile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{origin}: expected a mapping")
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        # Whole-profile checks name their own field (`values.power_w.unit: ...`).
        message = first["msg"].removeprefix("Value error, ")
        text = f"{origin}: {where}: {message}" if where else f"{origin}: {message}"
        raise ProfileError(text) from None


@cache
def _bundled() -> dict[str, Profile]:
    profiles = {}
    for entry in BUNDLED.iterdir():
        if entry.name.endswith(".yaml"):
            profile = _parse(entry.read_text(encoding="utf-8"), f"bundled {entry.name}")
            profiles[profile.id] = profile
    return profiles


def load_profiles(extra_dirs: Iterable[Path] = ()) -> dict[str, Profile]:
    """Bundled profiles, then users' directories (a user's file may replace a bundled one)."""
    profiles = dict(_bundled())
    for directory in extra_dirs:
        if not directory.is_dir():
            raise ProfileError(f"{directory}: profiles directory not found")
        for path in sorted(directory.glob("*.yaml")):
            profile = _parse(read_text(path), str(path))
            profiles[profile.id] = profile
    return profiles
