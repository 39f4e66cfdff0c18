"""Serve a site's meters over Modbus from the live model: TCP, RTU over TCP, RTU on a serial port.

Register images are encoded from the same profiles the collector decodes with, so any profile
can be simulated. pymodbus 3.16's datastore classes are deprecated; a minimal server context
answers FC03/FC04 straight from the model and refuses reads outside the mapped registers with
an illegal-address exception, as a real meter does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from collector.config import RtuBus, SiteConfig
from collector.meters.bus import quiet_pymodbus
from collector.meters.profile import Function, Profile, ValueSpec
from collector.meters.registers import REGISTERS, encode
from collector.settings import ConfigError
from collector.simulator.model import MeterControl, SiteModel, apply_scenario

log = logging.getLogger(__name__)

FUNCTION_CODES: dict[int, Function] = {3: "holding", 4: "input"}


def _clamped(profile: Profile, spec: ValueSpec, value: float) -> list[int]:
    """Registers for a value, saturated to what the register type can hold."""
    factor = profile.factor_of(spec)
    raw = value / factor
    if spec.type[0] in "us":
        bits = 16 * REGISTERS[spec.type]
        lo, hi = (
            (0, 2**bits - 1) if spec.type[0] == "u" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        )
        raw = min(max(round(raw), lo), hi)
    return encode(raw * factor, spec.type, profile.word_order_of(spec), factor)


def mapped_blocks(profile: Profile, function: Function) -> list[tuple[int, int]]:
    """[start, end) ranges a meter answers: its values, gaps up to max_gap included."""
    spans = sorted(
        (spec.address, spec.address + spec.count)
        for spec in profile.values.values()
        if profile.function_of(spec) == function
    )
    blocks: list[tuple[int, int]] = []
    for start, end in spans:
        if blocks and start - blocks[-1][1] <= profile.max_gap:
            blocks[-1] = (blocks[-1][0], max(blocks[-1][1], end))
        else:
            blocks.append((start, end))
    return blocks


class SimulatedMeter:
    """One unit id: answers reads from the model's current values, or misbehaves on request."""

    def __init__(self, meter_id: str, profile: Profile, model: SiteModel) -> None:
        self.meter_id = meter_id
        self.profile = profile
        self.model = model
        self.blocks = {f: mapped_blocks(profile, f) for f in ("holding", "input")}

    def image(self, function: Function) -> dict[int, int]:
        values = self.model.values(self.meter_id)
        registers: dict[int, int] = {}
        for name, spec in self.profile.values.items():
            if self.profile.function_of(spec) != function:
                continue
            words = _clamped(self.profile, spec, values.get(name, 0.0))
            for offset, word in enumerate(words):
                registers[spec.address + offset] = word
        return registers

    def read(self, function_code: int, address: int, count: int) -> list[int] | ExcCodes:
        faults = self.model.meters[self.meter_id].faults
        if faults.silent:
            raise NoSuchIdException(f"{self.meter_id} is silent")  # the server stays quiet
        if faults.exception_code is not None:
            return ExcCodes(faults.exception_code)
        function = FUNCTION_CODES.get(function_code)
        if function is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if faults.max_read is not None and count > faults.max_read:
            return ExcCodes.ILLEGAL_VALUE
        end = address + count
        if not any(start <= address and end <= stop for start, stop in self.blocks[function]):
            return ExcCodes.ILLEGAL_ADDRESS
        image = self.image(function)
        words = [image.get(a, 0) for a in range(address, end)]
        if faults.short:
            return words[: max(1, count // 2)] if count > 1 else []
        return words


class BusContext(ModbusServerContext):
    """The server context pymodbus calls for every request on one bus endpoint.

    Deliberately skips the deprecated base initialiser: only the request path is used.
    """

    def __init__(self, meters: Mapping[int, SimulatedMeter], sync: SimClock) -> None:
        self.old_simulator = True  # tells the pymodbus server to call this context directly
        self.simdevices = []
        self.meters = dict(meters)
        self.clock = sync

    def device_ids(self) -> list[int]:
        return list(self.meters)

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        meter = self.meters.get(device_id)
        if meter is None:
            raise NoSuchIdException(f"no meter with unit {device_id}")
        self.clock.advance()
        return meter.read(func_code, address, count)

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_FUNCTION  # meters here are read-only


class SimClock:
    """Simulated time = start + wall time elapsed x speed; advances the model on demand."""

    def __init__(self, model: SiteModel, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.model = model
        self.speed = speed
        self.start = model.now
        self.t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.t0) * self.speed)

    def advance(self) -> None:
        self.model.advance_to(self.now())


def _garbler(
    framing: FramerType, meters: Mapping[int, SimulatedMeter]
) -> Callable[[bool, bytes], bytes]:
    """trace_packet hook: cut the answers of `garbled` meters short on the wire."""
    unit_at = 6 if framing == FramerType.SOCKET else 0

    def trace(sending: bool, data: bytes) -> bytes:
        if sending and len(data) > unit_at:
            meter = meters.get(data[unit_at])
            if meter is not None and meter.model.meters[meter.meter_id].faults.garbled:
                return data[:-3]
        return data

    return trace


class SimulatedSite:
    """Every meter of a site file served over Modbus; `async with` starts and stops it."""

    def __init__(
        self,
        site: SiteConfig,
        profiles: dict[str, Profile],
        seed: int = 0,
        speed: float = 1.0,
        serial: Mapping[str, str] | None = None,
        start: datetime | None = None,
        scenarios: Sequence[str] = (),
    ) -> None:
        self.site = site
        phases = {m.id: profiles[m.profile].phases for m in site.meters}
        self.model = SiteModel(site, phases, seed=seed, start=start)
        self.clock = SimClock(self.model, speed)
        for scenario in scenarios:
            apply_scenario(self.model, scenario)
        self._serial = dict(serial or {})
        unknown = sorted(set(self._serial) - {b.id for b in site.buses})
        if unknown:
            raise ConfigError([f"--serial {u}: no bus with that id" for u in unknown])
        missing = [
            f"buses: rtu bus {b.id!r} needs --serial {b.id}=DEVICE to be simulated"
            for b in site.buses
            if isinstance(b, RtuBus) and b.id not in self._serial
        ]
        if missing:
            raise ConfigError(missing)
        self._meters = {
            m.id: SimulatedMeter(m.id, profiles[m.profile], self.model) for m in site.meters
        }
        self._servers: list[ModbusTcpServer | ModbusSerialServer] = []
        quiet_pymodbus()

    def endpoint(self, bus_id: str) -> str:
        """Where a bus is served: host:port, or the serial device given for an rtu bus."""
        bus = self.site.bus(bus_id)
        return self._serial[bus.id] if isinstance(bus, RtuBus) else f"{bus.host}:{bus.port}"

    def meter(self, meter_id: str) -> MeterControl:
        return self.model.control(meter_id)

    def _server(self, bus_id: str) -> ModbusTcpServer | ModbusSerialServer:
        bus = self.site.bus(bus_id)
        units = {m.unit: self._meters[m.id] for m in self.site.meters if m.bus == bus_id}
        framer = FramerType.SOCKET if bus.type == "tcp" else FramerType.RTU
        context = BusContext(units, self.clock)
        trace = _garbler(framer, units)
        if isinstance(bus, RtuBus):
            return ModbusSerialServer(
                context,
                framer=framer,
                port=self._serial[bus.id],
                baudrate=bus.baudrate,
                bytesize=bus.bytesize,
                parity=bus.parity,
                stopbits=bus.stopbits,
                ignore_missing_devices=True,
                trace_packet=trace,
            )
        return ModbusTcpServer(
            context,
            framer=framer,
            address=(bus.host, bus.port),
            ignore_missing_devices=True,
            trace_packet=trace,
        )

    async def start(self) -> None:
        for bus in self.site.buses:
            if not any(m.bus == bus.id for m in self.site.meters):
                continue
            server = self._server(bus.id)
            try:
                await server.serve_forever(background=True)
            except RuntimeError as exc:  # pymodbus: "Could not start listen"
                where = self.endpoint(bus.id)
                await self.stop()
                raise OSError(f"bus {bus.id} ({where}): {exc}") from None
            self._servers.append(server)
            log.info("simulating bus %s (%s)", bus.id, bus.type)

    async def stop(self) -> None:
        for server in self._servers:
            await server.shutdown()  # type: ignore[no-untyped-call]
        self._servers.clear()

    async def __aenter__(self) -> SimulatedSite:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        async with self:
            await asyncio.Event().wait()
