"""The input stage: poll every meter of the site on a fixed-rate schedule, one queue per bus.

Buses run concurrently; on one bus the meters are polled one after the other. A meter that
fails costs at most its bus timeout and is then retried with exponential backoff, so the
others keep their rate. A meter refusing a read (illegal address, read too long) makes us
split the read and remember the smaller reads it accepts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tenacity import wait_exponential

from collector.config import MeterSettings, SiteConfig
from collector.meters.bus import (
    Bus,
    BusError,
    ExceptionAnswer,
    Framing,
    WireStats,
    backoff_delay,
    read_cost,
)
from collector.meters.plan import Request, RequestDecoder, Slot, plan_reads
from collector.meters.profile import Profile
from collector.meters.reading import Reading
from collector.wire.times import utc_now

log = logging.getLogger(__name__)


class PollSink(Protocol):
    def reading(self, reading: Reading) -> None: ...

    def availability(self, point: str, online: bool, reason: str | None) -> None: ...


@dataclass(frozen=True)
class PollStats:
    requests: int  # Modbus requests sent
    bytes: int  # ADU bytes on the wire, both directions
    errors: int  # requests without a usable answer
    overruns: int  # cycles that took longer than poll_interval_s
    cycles: int  # poll cycles completed, summed over buses
    readings: int  # successful meter polls


def _sub_request(request: Request, slots: tuple[Slot, ...]) -> Request:
    """The smallest read covering some of a request's values."""
    start = request.address + min(s.offset for s in slots)
    end = request.address + max(s.offset + s.count for s in slots)
    moved = tuple(Slot(s.name, request.address + s.offset - start, s.count) for s in slots)
    return Request(request.function, start, end - start, moved)


class MeterReader:
    """One meter: its read plan (learnt from its refusals) and its retry state."""

    def __init__(self, meter: MeterSettings, profile: Profile, bus: Bus) -> None:
        self.meter = meter
        self.profile = profile
        self.bus = bus
        self.plan = plan_reads(profile)
        # Compiled once per request (the plan changes only when the meter refuses a read).
        self._decoders: dict[Request, RequestDecoder] = {}
        self.refused: set[str] = set()  # values whose own registers the meter refuses
        self.failures = 0
        self.next_try = 0.0  # loop time before which the meter is left alone
        self.online: bool | None = None

    @property
    def label(self) -> str:
        return f"meter {self.meter.id} (bus {self.bus.id}, unit {self.meter.unit})"

    async def read(self) -> dict[str, float | None]:
        """All the profile's values, in public units; raises BusError on a failed poll."""
        values: dict[str, float | None] = dict.fromkeys(self.refused)
        accepted: list[Request] = []
        for request in self.plan:
            values.update(await self._read(request, accepted))
        if accepted != self.plan:
            self._learn(accepted)
        return values

    async def _read(self, request: Request, accepted: list[Request]) -> dict[str, float | None]:
        try:
            words = await self.bus.read(
                self.meter.unit,
                request.function,
                request.address,
                request.count,
                self.profile.delay_ms / 1000,
            )
        except ExceptionAnswer as exc:
            if not exc.refuses_range:
                raise
            if len(request.slots) == 1:
                return self._refuse(request, exc)
            half = len(request.slots) // 2
            first = await self._read(_sub_request(request, request.slots[:half]), accepted)
            second = await self._read(_sub_request(request, request.slots[half:]), accepted)
            return {**first, **second}
        decoder = self._decoders.get(request)
        if decoder is None:
            decoder = self._decoders[request] = RequestDecoder(self.profile, request)
        try:
            values = decoder(words)
        except ValueError as exc:
            raise BusError(
                f"{self.label}: cannot decode {request.function} {request.address}+"
                f"{request.count}: {exc}"
            ) from None
        accepted.append(request)
        return values

    def _refuse(self, request: Request, exc: ExceptionAnswer) -> dict[str, float | None]:
        name = request.slots[0].name
        self.refused.add(name)
        log.warning(
            "%s refuses register %d (%s): exception code %d; reported as null from now on",
            self.label,
            request.address,
            name,
            exc.code,
        )
        return {name: None}

    def _learn(self, accepted: list[Request]) -> None:
        """Keep the reads the meter answered: asking the refused ones again wastes the bus."""
        self.plan = accepted
        largest = max((r.count for r in accepted), default=0)
        log.warning(
            "%s refused reads its profile allows (max_read %d); now reads at most %d registers "
            "per request, %d requests per poll",
            self.label,
            self.profile.max_read,
            largest,
            len(accepted),
        )


def minimum_per_cycle(site: SiteConfig, profiles: dict[str, Profile]) -> tuple[int, int]:
    """Requests and ADU bytes one poll cycle of the whole site needs at least: what the
    profiles allow (benchmarks divide `stats()` by this)."""
    requests = wire_bytes = 0
    for meter in site.meters:
        framing: Framing = "tcp" if site.bus(meter.bus).type == "tcp" else "rtu"
        for request in plan_reads(profiles[meter.profile]):
            requests += 1
            wire_bytes += read_cost(framing, request.count)
    return requests, wire_bytes


def _readers(
    site: SiteConfig, profiles: dict[str, Profile], buses: dict[str, Bus], meters: list[str] | None
) -> dict[str, list[MeterReader]]:
    if meters is not None:
        unknown = sorted(set(meters) - {m.id for m in site.meters})
        if unknown:
            raise ValueError(f"no meter with id {', '.join(unknown)} in the site file")
    by_bus: dict[str, list[MeterReader]] = {bus_id: [] for bus_id in buses}
    for meter in site.meters:
        if meters is None or meter.id in meters:
            by_bus[meter.bus].append(MeterReader(meter, profiles[meter.profile], buses[meter.bus]))
    return {bus_id: readers for bus_id, readers in by_bus.items() if readers}


class Poller:
    def __init__(
        self,
        site: SiteConfig,
        profiles: dict[str, Profile],
        sink: PollSink,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._site = site
        self._sink = sink
        self._clock = clock
        self._wire = WireStats()
        self._buses = {bus.id: Bus(bus, self._wire) for bus in site.buses}
        self._readers = _readers(site, profiles, self._buses, None)
        interval = site.poll_interval_s
        # First failure: retry next cycle; then 2, 4, 8 .. cycles later, at most a minute.
        self._retry_wait = wait_exponential(multiplier=interval, max=max(60.0, interval))
        self._overruns = 0
        self._cycles = 0
        self._readings = 0

    def stats(self) -> PollStats:
        return PollStats(
            requests=self._wire.requests,
            bytes=self._wire.bytes,
            errors=self._wire.errors,
            overruns=self._overruns,
            cycles=self._cycles,
            readings=self._readings,
        )

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for bus_id, readers in self._readers.items():
                    group.create_task(self._run_bus(self._buses[bus_id], readers))
        finally:
            for bus in self._buses.values():
                bus.close()

    async def _run_bus(self, bus: Bus, readers: list[MeterReader]) -> None:
        loop = asyncio.get_running_loop()
        interval = self._site.poll_interval_s
        tick = loop.time()
        task = asyncio.current_task()
        while True:
            for reader in readers:
                if tick >= reader.next_try:
                    await self._poll(reader, tick)
                    # Python 3.11's asyncio.wait_for (inside pymodbus) drops a cancellation that
                    # arrives with the meter's answer: honour it here, or a stop would hang.
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError
            self._cycles += 1
            tick += interval
            late = loop.time() - tick
            if late > 0:
                # Fixed rate: skip the ticks we missed rather than stacking cycles.
                skipped = math.ceil(late / interval)
                self._overruns += 1
                log.warning(
                    "bus %s: poll cycle overran poll_interval_s %.3g s by %.3f s; "
                    "skipping %d tick(s)",
                    bus.id,
                    interval,
                    late,
                    skipped,
                )
                tick += skipped * interval
            await asyncio.sleep(tick - loop.time())

    async def _poll(self, reader: MeterReader, tick: float) -> None:
        ts = self._clock()
        try:
            values = await reader.read()
        except BusError as exc:
            self._failed(reader, tick, str(exc))
            return
        except Exception as exc:  # a bug decoding one meter must not stop the others
            log.exception("%s: poll failed", reader.label)
            self._failed(reader, tick, f"{reader.label}: {exc}")
            return
        if reader.online is not True:
            if reader.failures:
                log.info("%s answers again after %d failed polls", reader.label, reader.failures)
            reader.online = True
            self._deliver(self._sink.availability, reader.meter.id, True, None)
        reader.failures = 0
        reader.next_try = 0.0
        self._readings += 1
        self._deliver(self._sink.reading, Reading(reader.meter.id, ts, values))

    def _deliver(self, method: Callable[..., None], *args: object) -> None:
        # The stage downstream failing on one message must not stop the polling of the site.
        try:
            method(*args)
        except Exception:
            log.exception("poll sink failed on %s%r", method.__name__, args)

    def _failed(self, reader: MeterReader, tick: float, reason: str) -> None:
        reader.failures += 1
        delay = backoff_delay(self._retry_wait, reader.failures)
        # Half an interval of slack so a retry due "at" a tick is not missed by jitter.
        reader.next_try = tick + delay - self._site.poll_interval_s / 2
        if reader.online is not False:
            log.warning("%s: offline: %s", reader.label, reason)
            reader.online = False
            self._deliver(self._sink.availability, reader.meter.id, False, reason)
        else:
            log.debug("%s: still offline (retry in %.1f s): %s", reader.label, delay, reason)


async def read_once(
    site: SiteConfig, profiles: dict[str, Profile], meter_ids: list[str] | None = None
) -> dict[str, Reading | Exception]:
    """Poll the chosen meters (all by default) once: `irve read` and tests."""
    buses = {bus.id: Bus(bus) for bus in site.buses}
    readers = _readers(site, profiles, buses, meter_ids)
    results: dict[str, Reading | Exception] = {}

    async def one_bus(bus_readers: list[MeterReader]) -> None:
        for reader in bus_readers:
            ts = utc_now()
            try:
                results[reader.meter.id] = Reading(reader.meter.id, ts, await reader.read())
            except BusError as exc:
                results[reader.meter.id] = exc

    try:
        await asyncio.gather(*(one_bus(r) for r in readers.values()))
    finally:
        for bus in buses.values():
            bus.close()
    order = [m.id for m in site.meters if m.id in results]
    return {point: results[point] for point in order}
