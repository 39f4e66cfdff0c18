"""One decoded poll of one meter, and its public form (the `state` message)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.config import MeterSettings, SiteConfig
from collector.wire.messages import StateMessage

PHASES = ("l1", "l2", "l3")
_CURRENTS = tuple(f"current_{p}_a" for p in PHASES)
_VOLTAGES = tuple(f"voltage_{p}_v" for p in PHASES)
_POWERS = tuple(f"power_{p}_w" for p in PHASES)


def _phases(values: Mapping[str, float | None], keys: tuple[str, ...]) -> list[float | None] | None:
    found = [values.get(key) for key in keys]
    return found if any(v is not None for v in found) else None


@dataclass(frozen=True)
class Reading:
    """Derived values are worked out once, when the reading is made: the processors and the
    state message ask for them several times per reading, and values are not changed once
    polled. (Eagerly rather than with functools.cached_property, which takes a lock on every
    access in Python 3.11.)"""

    point: str
    ts: datetime
    values: dict[str, float | None] = field(default_factory=dict)
    currents_a: list[float | None] | None = field(init=False, repr=False, compare=False)
    voltages_v: list[float | None] | None = field(init=False, repr=False, compare=False)
    # The highest phase current: what a breaker or a socket rating is compared with.
    current_a: float | None = field(init=False, repr=False, compare=False)
    # Single-phase voltage, or the mean of the phase-to-neutral voltages.
    voltage_v: float | None = field(init=False, repr=False, compare=False)
    # The total, or the sum of the phases'.
    power_w: float | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = self.values
        currents = _phases(values, _CURRENTS)
        voltages = _phases(values, _VOLTAGES)
        phase_currents = [v for v in currents or () if v is not None]
        current = max(phase_currents) if phase_currents else values.get("current_a")
        phase_voltages = [v for v in voltages or () if v is not None]
        voltage = (
            round(sum(phase_voltages) / len(phase_voltages), 3)
            if phase_voltages
            else values.get("voltage_v")
        )
        power = values.get("power_w")
        if power is None:
            powers = [v for key in _POWERS if (v := values.get(key)) is not None]
            power = sum(powers) if powers else None
        derived = {
            "currents_a": currents,
            "voltages_v": voltages,
            "current_a": current,
            "voltage_v": voltage,
            "power_w": power,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def energy_wh(self) -> float | None:
        return self.values.get("energy_wh")

    def to_state(
        self, charging: bool | None = None, keys: Mapping[str, object] | None = None
    ) -> StateMessage:
        """The `state` message: the reading, whether a session is running, and the meter's
        `state_keys`. Built without validation, once per reading: the values are the
        decoder's floats (finite or None), the keys come from the validated site file, and
        `to_json` refuses a non-finite number."""
        fields: dict[str, Any] = {
            "ts": self.ts,
            "power_w": self.power_w,
            "current_a": self.current_a,
            "voltage_v": self.voltage_v,
            "energy_wh": self.energy_wh,
            "currents_a": self.currents_a,
            "voltages_v": self.voltages_v,
            "power_factor": self.values.get("power_factor"),
            "frequency_hz": self.values.get("frequency_hz"),
            "export_energy_wh": self.values.get("export_energy_wh"),
            "charging": charging,
        }
        if keys:
            fields.update(keys)
        return StateMessage.model_construct(**fields)


def state_keys(site: SiteConfig, meter: MeterSettings) -> dict[str, object]:
    """What each `state` message of this meter carries besides the reading: its role and the
    limits the collector's alerts use, for dashboards and Grafana rules of any site."""
    keys: dict[str, object] = {"role": meter.role}
    if meter.socket is not None:
        keys["rated_current_a"] = meter.socket.rated_current_a
    if meter.role == "main":
        keys["limit_w"] = site.subscribed_power_w
        keys["warning_w"] = site.subscribed_power_w * site.alerts.warning_share
    return keys
