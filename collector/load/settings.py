"""The site file's `load_management`, `schedules` and `knx` sections (docs/load-management.md).

collector.config imports this module to build SiteConfig, so nothing here imports collector.config
at module level: the clock-range parser is imported where it is used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from collector.config import MeterSettings, TariffSettings

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)
# IEC 61851-1: a charger signals no less than 6 A to a car; below that it must pause.
IEC_MIN_CURRENT_A = 6.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique_items(values: list[str]) -> list[str]:
    dup = next((v for v in values if values.count(v) > 1), None)
    if dup is not None:
        raise ValueError(f"{dup!r} is listed twice")
    return values


_GROUP_ADDRESS = re.compile(r"^(\d{1,2})/(\d{1,4})(?:/(\d{1,3}))?$")


def _group_address(text: str) -> str:
    """KNX group addresses in 3-level (main/middle/sub) or 2-level (main/sub) notation."""
    match = _GROUP_ADDRESS.match(text.strip())
    if not match:
        raise ValueError(f"{text!r}: expected a KNX group address such as 1/1/1")
    main, second, sub = (int(g) if g is not None else None for g in match.groups())
    assert main is not None and second is not None
    limits_ok = (
        main <= 31 and second <= 7 and sub <= 255
        if sub is not None
        else main <= 31 and second <= 2047
    )
    if not limits_ok:
        raise ValueError(f"{text!r}: out of range (main 0..31, middle 0..7, sub 0..255)")
    if main == second == (sub or 0) == 0:
        raise ValueError(f"{text!r}: 0/0/0 is the broadcast address, not a contactor's")
    return text.strip()


GroupAddressText = Annotated[str, AfterValidator(_group_address)]


class LoadManagementSettings(_Strict):
    enabled: bool = True
    margin_w: Annotated[float, Field(ge=0, le=1_000_000)] = 1000.0
    min_current_a: Annotated[float, Field(ge=IEC_MIN_CURRENT_A, le=80)] = IEC_MIN_CURRENT_A
    # None: min_current_a. 0 pauses every socket while the main meter is silent.
    failsafe_current_a: Annotated[float, Field(ge=0, le=80)] | None = None
    priority: Annotated[list[str], AfterValidator(_unique_items)] = Field(default_factory=list)
    # Limits rise only once the site stayed hysteresis_w under its limit for raise_after_s, and
    # a socket's limit rises at most once per min_change_interval_s: cars and chargers take
    # seconds to settle and some stop charging when their current flaps.
    hysteresis_w: Annotated[float, Field(ge=0, le=1_000_000)] = 500.0
    raise_after_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    min_change_interval_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    failsafe_after_polls: Annotated[int, Field(ge=1, le=1000)] = 3
    # An OCPP charging profile ends this long after it was last sent (renewed at half of it):
    # a collector that died does not leave chargers limited, or paused, for longer.
    profile_validity_s: Annotated[int, Field(ge=10, le=86400)] = 600

    @model_validator(mode="after")
    def _failsafe(self) -> LoadManagementSettings:
        value = self.failsafe_current_a
        if value is not None and 0 < value < self.min_current_a:
            raise ValueError(
                f"failsafe_current_a: {value:g} A is below min_current_a "
                f"({self.min_current_a:g} A): a charger cannot deliver it (0 pauses)"
            )
        return self

    @property
    def failsafe_a(self) -> float:
        return self.min_current_a if self.failsafe_current_a is None else self.failsafe_current_a


class ScheduleSettings(_Strict):
    """Periods when `sockets` may charge: each range belongs to the day it starts on."""

    sockets: Annotated[list[str], Field(min_length=1), AfterValidator(_unique_items)]
    allowed: Annotated[list[str], Field(min_length=1)] | Literal["offpeak"]
    days: Annotated[list[Day], Field(min_length=1), AfterValidator(_unique_items)] = Field(
        default_factory=lambda: list(DAYS)
    )

    @model_validator(mode="after")
    def _ranges(self) -> ScheduleSettings:
        # Checked here rather than per item: an item error inside the union would be reported
        # once per branch, with pydantic's branch names in the path.
        from collector.config import parse_clock_range

        for i, text in enumerate([] if self.allowed == "offpeak" else self.allowed):
            try:
                parse_clock_range(text)
            except ValueError as exc:
                raise ValueError(f"allowed[{i}]: {exc}") from None
        return self


class KnxSettings(_Strict):
    # Tunnelling: the gateway's HOST:PORT. Routing: the multicast group (default 224.0.23.12:3671).
    gateway: str | None = None
    routing: bool = False
    tunnel: Literal["udp", "tcp"] = "udp"
    local_ip: str | None = None  # the interface to use when the host has several
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    # What a clean stop leaves on the contactors: keep (the last state), on or off.
    on_stop: Literal["keep", "on", "off"] = "keep"
    switches: Annotated[dict[str, GroupAddressText], Field(min_length=1)]

    @model_validator(mode="after")
    def _gateway(self) -> KnxSettings:
        if self.gateway is None and not self.routing:
            raise ValueError("gateway: required for tunnelling (HOST:PORT), or set routing: true")
        if self.gateway is not None:
            host, sep, port = self.gateway.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(
                    f"gateway: {self.gateway!r}: expected HOST:PORT (192.168.1.60:3671)"
                )
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        default = "224.0.23.12:3671" if self.routing else ""
        host, _, port = (self.gateway or default).rpartition(":")
        return host, int(port)


def check_references(
    meters: Sequence[MeterSettings],
    tariff: TariffSettings,
    load: LoadManagementSettings | None,
    schedules: Sequence[ScheduleSettings],
    knx: KnxSettings | None,
) -> None:
    """Every socket these sections name is a meter with role socket; `offpeak` has HC ranges."""
    sockets = {m.id for m in meters if m.role == "socket"}

    def known(where: str, point: str) -> None:
        if point not in sockets:
            raise ValueError(f"{where}: no meter with role socket has id {point!r}")

    if load is not None and load.enabled and not any(m.role == "main" for m in meters):
        raise ValueError(
            "load_management: needs a meter with role main (the site's power: without it the "
            "headroom is unknown); enabled: false keeps the schedules only"
        )
    for i, point in enumerate(load.priority if load else []):
        known(f"load_management.priority[{i}]", point)
    for i, schedule in enumerate(schedules):
        for j, point in enumerate(schedule.sockets):
            known(f"schedules[{i}].sockets[{j}]", point)
        if schedule.allowed == "offpeak" and tariff.option == "base":
            raise ValueError(
                f"schedules[{i}].allowed: offpeak follows the tariff's HC ranges, "
                f"but tariff.option is 'base' (not hphc or tempo)"
            )
    for point in knx.switches if knx else {}:
        known(f"knx.switches.{point}", point)
