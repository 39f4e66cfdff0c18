"""A hotel's electrical life, step by step: the simulator's pure, seeded model.

The model knows nothing of Modbus or wall clocks. It advances in fixed simulated steps, so a
seed and a start time give the same values whatever the speed or the moments it is asked.
- main meter: hotel base load with a daily shape (breakfast and dinner peaks), plus every
  charge point on its phase;
- charge points: EV arrivals (evening peak), charging at the socket's rated current with a
  taper above 80 % state of charge, then parked until departure (next morning for evening
  arrivals);
- energy indexes integrate power and never go down; voltage ~230 V, frequency ~50 Hz.
Scenario hooks (forced current or power, silent meter, exception codes, short or garbled
answers, a smaller largest read) are plain data the server consults.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.config import MeterSettings, SiteConfig
from collector.meters.reading import PHASES
from collector.simulator.profiles import draws_a

STEP_S = 5.0
NOMINAL_V = 230.0
# Hotel base load as a share of the subscribed power, per local hour (kitchen, laundry, rooms).
_BASE_SHAPE = (
    0.10, 0.09, 0.09, 0.09, 0.09, 0.10, 0.15, 0.24, 0.27, 0.22, 0.18, 0.20,
    0.24, 0.20, 0.16, 0.15, 0.16, 0.20, 0.26, 0.30, 0.28, 0.22, 0.16, 0.12,
)  # fmt: skip
# EV arrivals per socket per hour, per local hour: guests arrive in the evening.
_ARRIVALS = (
    0.01, 0.01, 0.0, 0.0, 0.0, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06,
    0.06, 0.06, 0.08, 0.12, 0.20, 0.35, 0.50, 0.50, 0.35, 0.20, 0.08, 0.03,
)  # fmt: skip
TAPER_FROM_SOC = 0.8
CHARGING_PF = 0.99


@dataclass
class MeterFaults:
    """How a meter misbehaves on the wire (the server reads these on every request)."""

    silent: bool = False  # no answer at all
    exception_code: int | None = None  # answer every read with this exception code
    short: bool = False  # well-formed answer with fewer registers than asked
    garbled: bool = False  # frame cut short on the wire: unusable, like a noisy line
    max_read: int | None = None  # longer reads get "illegal data value", like older firmware


@dataclass
class Car:
    capacity_wh: float
    stored_wh: float
    target_soc: float
    departs: datetime

    @property
    def soc(self) -> float:
        return self.stored_wh / self.capacity_wh


@dataclass
class PhaseState:
    voltage_v: float = NOMINAL_V
    current_a: float = 0.0
    power_factor: float = 1.0
    import_wh: float = 0.0
    export_wh: float = 0.0

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a * self.power_factor


@dataclass
class MeterState:
    settings: MeterSettings
    phases: list[PhaseState]  # the phases the meter measures (1 or 3)
    wiring: tuple[int, ...]  # site phase index of each measured phase
    faults: MeterFaults = field(default_factory=MeterFaults)
    car: Car | None = None
    forced_current_a: float | None = None
    forced_power_w: float | None = None
    # Set by the simulated charger serving the socket: the car draws only during a
    # transaction, and no more than the charging profiles allow (profiles.draws_a).
    energized: bool = True
    limit_a: float | None = None

    @property
    def power_w(self) -> float:
        return sum(p.power_w for p in self.phases)

    @property
    def import_wh(self) -> float:
        return sum(p.import_wh for p in self.phases)


class MeterControl:
    """Scenario hooks for one meter (tests, the alert helper, `irve simulate --scenario`)."""

    def __init__(self, model: SiteModel, state: MeterState) -> None:
        self._model = model
        self._state = state

    @property
    def faults(self) -> MeterFaults:
        return self._state.faults

    @property
    def state(self) -> MeterState:
        return self._state

    def force_current(self, amps: float | None) -> None:
        """Per-phase current on a socket; None gives the socket back to the model."""
        self._state.forced_current_a = amps
        self._model.refresh()

    def force_power(self, watts: float | None) -> None:
        """Total active power (the main meter: site overload); None releases it."""
        self._state.forced_power_w = watts
        self._model.refresh()

    def silent(self, on: bool = True) -> None:
        self._state.faults.silent = on

    def exception(self, code: int | None = 4) -> None:
        self._state.faults.exception_code = code

    def short(self, on: bool = True) -> None:
        self._state.faults.short = on

    def garbled(self, on: bool = True) -> None:
        self._state.faults.garbled = on

    def max_read(self, registers: int | None) -> None:
        self._state.faults.max_read = registers

    def plug(self, stays: timedelta, capacity_wh: float = 60e3, soc: float = 0.2) -> Car:
        """A car plugged now that wants charging (to 95 %) and leaves after `stays`."""
        car = Car(capacity_wh, capacity_wh * soc, 0.95, self._model.now + stays)
        self._state.car = car
        self._model.refresh()
        return car

    def clear(self) -> None:
        self._state.faults = MeterFaults()
        self._state.forced_current_a = None
        self._state.forced_power_w = None
        self._model.refresh()


def _meter_phases(profile_phases: int) -> list[PhaseState]:
    return [PhaseState() for _ in range(profile_phases)]


class SiteModel:
    def __init__(
        self,
        site: SiteConfig,
        phases_of: Mapping[str, int],
        seed: int = 0,
        start: datetime | None = None,
        step_s: float = STEP_S,
    ) -> None:
        """`phases_of`: meter id -> phases its profile measures (1 or 3). `step_s`: simulated
        seconds per step (longer steps simulate weeks quickly, with coarser curves)."""
        self.site = site
        self.step_s = step_s
        self.tz = ZoneInfo(site.site.timezone)
        self.rng = random.Random(seed)
        begin = (start or datetime.now(UTC)).astimezone(UTC)
        self.now = begin.replace(microsecond=0)
        self.voltages = [NOMINAL_V + self.rng.uniform(-2, 3) for _ in PHASES]
        self.frequency_hz = 50.0
        self.base_w = self._base_target()
        # The hotel's load apart from the sockets, held (scenario `base:W`): the main meter then
        # reads it plus what the cars draw, so a limit they obey shows on it.
        self.forced_base_w: float | None = None
        self.meters: dict[str, MeterState] = {}
        next_phase = 0
        for meter in site.meters:
            measured = phases_of[meter.id]
            # Single-phase charge points are spread over the site's phases in file order.
            wiring: tuple[int, ...] = (0, 1, 2)
            if measured == 1:
                wiring = (next_phase % 3,)
                next_phase += 1
            state = MeterState(meter, _meter_phases(measured), wiring)
            # Meters arrive with some history: indexes start somewhere realistic.
            for phase in state.phases:
                span = 40e6 if meter.role == "main" else 2e6
                phase.import_wh = round(self.rng.uniform(0.05, 1.0) * span / measured)
            self.meters[meter.id] = state
        self._update_electrical(0.0)

    def control(self, meter_id: str) -> MeterControl:
        return MeterControl(self, self.meters[meter_id])

    def refresh(self) -> None:
        """Recompute the electrical state now (after a scenario hook), without moving time."""
        self._update_electrical(0.0)

    def advance_to(self, when: datetime) -> None:
        """Run whole steps until `when` (later calls resume where this one stopped)."""
        while self.now + timedelta(seconds=self.step_s) <= when:
            self.step()

    def step(self) -> None:
        self.now += timedelta(seconds=self.step_s)
        self.voltages = [
            min(245.0, max(218.0, v + self.rng.gauss(0, 0.25) + 0.02 * (231.0 - v)))
            for v in self.voltages
        ]
        self.frequency_hz = 50.0 + max(-0.1, min(0.1, self.rng.gauss(0, 0.02)))
        for state in self.meters.values():
            if state.settings.role == "socket":
                self._socket_events(state)
        self._update_electrical(self.step_s)

    # ---- charge points ------------------------------------------------------------------

    def _base_target(self) -> float:
        shape = _BASE_SHAPE[int(self._local_hour()) % 24]
        return shape * self.site.site.subscribed_power_kva * 1000

    def _local_hour(self) -> float:
        local = self.now.astimezone(self.tz)
        return local.hour + local.minute / 60

    def _socket_events(self, state: MeterState) -> None:
        car = state.car
        if car is not None and self.now >= car.departs:
            state.car = None
            return
        if car is None:
            rate = _ARRIVALS[int(self._local_hour())]
            if self.rng.random() < rate * self.step_s / 3600:
                state.car = self._arrival()

    def _arrival(self) -> Car:
        capacity = self.rng.choice((40e3, 52e3, 60e3, 77e3))
        soc = self.rng.uniform(0.15, 0.6)
        local = self.now.astimezone(self.tz)
        if local.hour >= 14:
            morning = (local + timedelta(days=1)).replace(hour=7, minute=0, second=0)
            departs = morning + timedelta(minutes=self.rng.uniform(0, 210))
        else:
            departs = local + timedelta(hours=self.rng.uniform(1.5, 6))
        return Car(capacity, capacity * soc, self.rng.uniform(0.9, 1.0), departs.astimezone(UTC))

    def _charging_current(self, state: MeterState) -> float:
        car, socket = state.car, state.settings.socket
        if car is None or socket is None or car.soc >= car.target_soc or not state.energized:
            return 0.0
        taper = 1.0
        if car.soc > TAPER_FROM_SOC:
            taper = max(0.1, (1.0 - car.soc) / (1.0 - TAPER_FROM_SOC))
        return draws_a(socket.rated_current_a * taper, state.limit_a)

    # ---- electrical quantities ----------------------------------------------------------

    def _update_electrical(self, dt_s: float) -> None:
        site_phase_w = [0.0, 0.0, 0.0]
        for state in self.meters.values():
            if state.settings.role != "socket":
                continue
            current = self._charging_current(state)
            if state.forced_current_a is not None:
                current = state.forced_current_a
            pf = CHARGING_PF if current > 0 else 1.0
            # A single-phase socket behind a three-phase meter loads its first phase only.
            wired = 3 if state.settings.socket and state.settings.socket.phases == 3 else 1
            currents = [current if i < wired else 0.0 for i in range(len(state.phases))]
            self._set_phases(state, currents, pf)
            if state.forced_power_w is not None:
                self._set_power(state, state.forced_power_w, CHARGING_PF)
            for phase, site_index in zip(state.phases, state.wiring, strict=True):
                site_phase_w[site_index] += phase.power_w
            if state.car is not None and dt_s:
                state.car.stored_wh = min(
                    state.car.capacity_wh, state.car.stored_wh + 0.92 * state.power_w * dt_s / 3600
                )
        if self.forced_base_w is not None:
            self.base_w = self.forced_base_w
        elif dt_s:
            target = self._base_target()
            self.base_w = max(500.0, 0.9 * self.base_w + 0.1 * target + self.rng.gauss(0, 60))
        for state in self.meters.values():
            if state.settings.role == "main":
                self._main(state, site_phase_w)
        for state in self.meters.values():
            for phase in state.phases:
                phase.import_wh += max(0.0, phase.power_w) * dt_s / 3600

    def _main(self, state: MeterState, socket_w: list[float]) -> None:
        imbalance = (0.38, 0.33, 0.29)
        pf = 0.93
        if len(state.phases) == 1:
            self._set_power(state, self.base_w + sum(socket_w), pf)
        else:
            for i, phase in enumerate(state.phases):
                phase.voltage_v = self.voltages[i]
                phase.power_factor = pf
                watts = self.base_w * imbalance[i] + socket_w[i]
                phase.current_a = watts / (phase.voltage_v * pf)
        if state.forced_power_w is not None:
            self._set_power(state, state.forced_power_w, pf)

    def _set_phases(self, state: MeterState, currents: list[float], pf: float) -> None:
        for phase, site_index, current in zip(state.phases, state.wiring, currents, strict=True):
            phase.voltage_v = self.voltages[site_index] - 0.02 * current  # cable drop
            phase.current_a = current
            phase.power_factor = pf

    def _set_power(self, state: MeterState, watts: float, pf: float) -> None:
        share = watts / len(state.phases)
        for phase, site_index in zip(state.phases, state.wiring, strict=True):
            phase.voltage_v = self.voltages[site_index]
            phase.power_factor = pf
            phase.current_a = share / (phase.voltage_v * pf)

    def values(self, meter_id: str) -> dict[str, float]:
        """Every quantity a profile may ask for, in public units (W, A, V, Wh, Hz)."""
        state = self.meters[meter_id]
        phases = state.phases
        out: dict[str, float] = {
            "power_w": state.power_w,
            "current_a": max(p.current_a for p in phases),
            "voltage_v": sum(p.voltage_v for p in phases) / len(phases),
            "power_factor": _mean_pf(phases),
            "frequency_hz": self.frequency_hz,
            "energy_wh": state.import_wh,
            "export_energy_wh": sum(p.export_wh for p in phases),
            "current_n_a": abs(_neutral(phases)),
        }
        for name, phase in zip(PHASES, phases, strict=False):
            out[f"power_{name}_w"] = phase.power_w
            out[f"current_{name}_a"] = phase.current_a
            out[f"voltage_{name}_v"] = phase.voltage_v
            out[f"power_factor_{name}"] = phase.power_factor
            out[f"energy_{name}_wh"] = phase.import_wh
            out[f"export_energy_{name}_wh"] = phase.export_wh
        if len(phases) == 3:
            for a, b in ((0, 1), (1, 2), (2, 0)):
                line = f"voltage_l{a + 1}{b + 1}_v"
                out[line] = math.sqrt(3) * (phases[a].voltage_v + phases[b].voltage_v) / 2
        return out


def _mean_pf(phases: list[PhaseState]) -> float:
    apparent = sum(p.voltage_v * p.current_a for p in phases)
    if apparent <= 0:
        return 1.0
    return sum(p.power_w for p in phases) / apparent


def _neutral(phases: list[PhaseState]) -> float:
    """Magnitude of the vector sum of the phase currents (120 degrees apart)."""
    if len(phases) == 1:
        return phases[0].current_a
    re = sum(p.current_a * math.cos(2 * math.pi * i / 3) for i, p in enumerate(phases))
    im = sum(p.current_a * math.sin(2 * math.pi * i / 3) for i, p in enumerate(phases))
    return math.hypot(re, im)


def apply_scenario(model: SiteModel, text: str) -> None:
    """`overcurrent:cp1[:A]`, `overload[:W]`, `base:W` (the hotel's load apart from the sockets,
    held), `silent:ID`, `exception:ID[:CODE]`, `short:ID`,
    `garbled:ID`, `max-read:ID:N`, `plug:ID[:MINUTES]` (a car that needs charging, plugged
    now for MINUTES of simulated time, 60 by default). Raises ValueError naming what is
    wrong."""
    name, *args = text.split(":")
    try:
        if name == "base":
            watts = float(args[0])
            if not 0 <= watts <= 10 * model.site.subscribed_power_w:
                raise ValueError(f"{text}: W must be between 0 and 10 x the subscribed power")
            model.forced_base_w = watts
            model.refresh()
            return
        if name == "overload":
            main = model.site.main_meter
            if main is None:
                raise ValueError("overload: the site has no main meter")
            watts = float(args[0]) if args else 1.2 * model.site.subscribed_power_w
            model.control(main.id).force_power(watts)
            return
        if not args or args[0] not in model.meters:
            raise ValueError(f"{text}: expected {name}:METER_ID with a meter of the site file")
        control, extra = model.control(args[0]), args[1:]
        socket = control.state.settings.socket
        if name == "overcurrent":
            if socket is None:
                raise ValueError(f"{text}: {args[0]} is not a socket")
            control.force_current(float(extra[0]) if extra else 1.25 * socket.rated_current_a)
        elif name == "silent":
            control.silent()
        elif name == "exception":
            control.exception(int(extra[0]) if extra else 4)
        elif name == "short":
            control.short()
        elif name == "garbled":
            control.garbled()
        elif name == "max-read":
            control.max_read(int(extra[0]))
        elif name == "plug":
            if socket is None:
                raise ValueError(f"{text}: {args[0]} is not a socket")
            minutes = float(extra[0]) if extra else 60.0
            if minutes <= 0:
                raise ValueError(f"{text}: minutes must be > 0")
            control.plug(timedelta(minutes=minutes))
        else:
            raise ValueError(f"{text}: unknown scenario {name!r}")
    except (IndexError, TypeError) as exc:
        raise ValueError(f"{text}: missing or bad argument ({exc})") from None
