"""One decoded poll of one meter, and its public form (the `state` message)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from collector.config import MeterSettings, SiteConfig
from collector.wire.messages import StateMessage

PHASES = ("l1", "l2", "l3")


@dataclass(frozen=True)
class Reading:
    """Derived values are cached: the processors and the state message ask for them several
    times per reading (values are not changed once polled)."""

    point: str
    ts: datetime
    values: dict[str, float | None] = field(default_factory=dict)

    def _phases(self, template: str) -> list[float | None] | None:
        found = [self.values.get(template.format(p)) for p in PHASES]
        return found if any(v is not None for v in found) else None

    @cached_property
    def currents_a(self) -> list[float | None] | None:
        return self._phases("current_{}_a")

    @cached_property
    def voltages_v(self) -> list[float | None] | None:
        return self._phases("voltage_{}_v")

    @cached_property
    def current_a(self) -> float | None:
        """The highest phase current: what a breaker or a socket rating is compared with."""
        phases = [v for v in self.currents_a or [] if v is not None]
        if phases:
            return max(phases)
        return self.values.get("current_a")

    @cached_property
    def voltage_v(self) -> float | None:
        """Single-phase voltage, or the mean of the phase-to-neutral voltages."""
        phases = [v for v in self.voltages_v or [] if v is not None]
        if phases:
            return round(sum(phases) / len(phases), 3)
        return self.values.get("voltage_v")

    @cached_property
    def power_w(self) -> float | None:
        total = self.values.get("power_w")
        if total is not None:
            return total
        phases = [self.values.get(f"power_{p}_w") for p in PHASES]
        if any(v is not None for v in phases):
            return sum(v for v in phases if v is not None)
        return None

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
