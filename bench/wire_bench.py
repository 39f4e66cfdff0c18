"""Modbus traffic per poll cycle, counted on the wire, against the minimum the profiles allow.

Two sites, each polled by the collector's real Poller (bus queue, coalescing, pymodbus) against
the meter simulator:
- the reference hotel (config/examples/hotel-vda.yaml: a Legrand main meter and two SDM120 on
  one Modbus TCP gateway). A counting TCP proxy sits between the poller and the simulator: it
  splits the client's stream into MBAP frames (requests) and counts bytes both ways.
- a 32-meter RS-485 bus, RTU over a socat pty pair (a null-modem cable): `socat -x` dumps every
  byte crossing the "cable", both directions; every FC03/FC04 request is 8 bytes in RTU. The
  meters cycle through the bundled single-phase profiles, so coalescing meets several maps.

Minimum = `minimum_per_cycle`: each meter's values read in the fewest requests its profile
allows (largest read, gap it may read across), bytes = ADU sizes of those reads. Ratio =
counted on the wire / minimum; 1.00 means no wasted request or byte. The poller's own counters
are shown beside the wire's as a cross-check.

    python -m bench.wire_bench [--cycles N] [--meters N] [--baudrate B]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from collector.config import SiteConfig
from collector.meters.poller import Poller, PollStats, minimum_per_cycle
from collector.meters.profile import Profile, load_profiles
from collector.meters.reading import Reading
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from tests.support.servers import free_port, wait_until
from tests.support.sim_helpers import rtu_bus, socket_meter, write_site

REPO = Path(__file__).resolve().parent.parent
HOTEL = REPO / "config" / "examples" / "hotel-vda.yaml"
RTU_REQUEST_BYTES = 8  # unit, function, address, count, CRC


@dataclass
class Tally:
    requests: int = 0
    bytes: int = 0


class MbapTap:
    """A TCP proxy to a Modbus TCP server that counts requests (MBAP frames from the client)
    and bytes in both directions."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.tally = Tally()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._sessions: list[asyncio.Task[object]] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await asyncio.wait_for(asyncio.gather(*self._sessions), 5)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        session = asyncio.current_task()
        if session is not None:
            self._sessions.append(session)
        await asyncio.gather(
            self._pipe(reader, up_writer, requests=True),
            self._pipe(up_reader, writer, requests=False),
            return_exceptions=True,
        )

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, requests: bool
    ) -> None:
        pending = b""
        try:
            while data := await src.read(65536):  # closing either end ends both pipes
                self.tally.bytes += len(data)
                if requests:
                    pending += data
                    # MBAP: transaction, protocol, length (of what follows the length field).
                    while len(pending) >= 6:
                        size = 6 + int.from_bytes(pending[4:6], "big")
                        if len(pending) < size:
                            break
                        self.tally.requests += 1
                        pending = pending[size:]
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()


@contextlib.contextmanager
def tapped_pty_pair(workdir: Path) -> Iterator[tuple[str, str, Path]]:
    """A socat pty pair with a hex dump of the traffic: (client end, server end, dump file).
    tests/sim_helpers.socat_pair has no dump; this one needs `-x`."""
    client, server, dump = workdir / "ttyClient", workdir / "ttyServer", workdir / "socat.dump"
    with dump.open("wb") as err:
        process = subprocess.Popen(
            ["socat", "-x", f"pty,raw,echo=0,link={client}", f"pty,raw,echo=0,link={server}"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until(lambda: client.exists() and server.exists(), 10, "socat ptys")
        yield str(client), str(server), dump
    finally:
        process.terminate()
        process.wait(timeout=5)


DUMP_LINE = re.compile(rb"^([<>]) \S+ \S+\s+length=(\d+)", re.MULTILINE)


def count_dump(dump: bytes) -> Tally:
    """'>' lines: client to meters (requests), '<' lines: meters to client."""
    to_meters = to_client = 0
    for direction, length in DUMP_LINE.findall(dump):
        if direction == b">":
            to_meters += int(length)
        else:
            to_client += int(length)
    return Tally(to_meters // RTU_REQUEST_BYTES, to_meters + to_client)


class CountingSink:
    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.readings = 0
        self.done = asyncio.Event()

    def reading(self, reading: Reading) -> None:
        self.readings += 1
        if self.readings >= self.wanted:
            self.done.set()

    def availability(self, point: str, online: bool, reason: str | None) -> None:
        pass


async def poll_cycles(site: SiteConfig, profiles: dict[str, Profile], cycles: int) -> PollStats:
    """Run the real Poller until every meter was read `cycles` times; it stops between cycles."""
    sink = CountingSink(cycles * len(site.meters))
    poller = Poller(site, profiles, sink)
    task = asyncio.create_task(poller.run())
    try:
        timeout = cycles * (site.poll_interval_s + 5) + 10
        await asyncio.wait_for(sink.done.wait(), timeout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return poller.stats()


@dataclass
class Row:
    name: str
    link: str
    meters: int
    cycles: int
    wire: Tally
    minimum: tuple[int, int]
    per_value: int  # requests if every value were read on its own, for scale
    poller: PollStats

    def cells(self) -> str:
        req = self.wire.requests / self.cycles
        byt = self.wire.bytes / self.cycles
        own = f"{self.poller.requests / self.cycles:g} / {self.poller.bytes / self.cycles:g}"
        return (
            f"| {self.name} | {self.link} | {self.meters} | {self.cycles} | {req:g} | "
            f"{self.minimum[0]} | {req / self.minimum[0]:.2f} | {byt:,.0f} | "
            f"{self.minimum[1]:,} | {byt / self.minimum[1]:.2f} | {own} | {self.per_value} |"
        )


def values_per_cycle(site: SiteConfig, profiles: dict[str, Profile]) -> int:
    return sum(len(profiles[meter.profile].values) for meter in site.meters)


def with_bus_port(source: Path, port: int, dest: Path) -> Path:
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["buses"][0]["port"] = port
    data["state_dir"] = str(dest.parent / "var")
    dest.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return dest


async def hotel(work: Path, cycles: int) -> Row:
    sim_port = free_port()
    sim_site, profiles = load_site(str(with_bus_port(HOTEL, sim_port, work / "sim.yaml")))
    tap = MbapTap(sim_port)
    site, _ = load_site(str(with_bus_port(HOTEL, tap.port, work / "hotel.yaml")))
    await tap.start()
    try:
        async with SimulatedSite(sim_site, profiles, seed=1):
            stats = await poll_cycles(site, profiles, cycles)
    finally:
        await tap.stop()
    link = "Modbus TCP (counting proxy)"
    return Row(
        "reference hotel (hotel-vda.yaml)",
        link,
        len(site.meters),
        cycles,
        tap.tally,
        minimum_per_cycle(site, profiles),
        values_per_cycle(site, profiles),
        stats,
    )


def single_phase_profiles() -> list[str]:
    return sorted(p.id for p in load_profiles().values() if p.phases == 1)


async def rs485(work: Path, meters: int, cycles: int, baudrate: int) -> Row:
    chosen = single_phase_profiles()
    with tapped_pty_pair(work) as (client_end, server_end, dump):
        path = write_site(
            work,
            buses=[rtu_bus("rs485", client_end, timeout_s=0.5, baudrate=baudrate)],
            meters=[
                socket_meter(f"cp{i}", "rs485", i, chosen[(i - 1) % len(chosen)])
                for i in range(1, meters + 1)
            ],
            name="rs485.yaml",
            poll_interval_s=1,
            state_dir=str(work / "var"),
        )
        site, profiles = load_site(str(path))
        async with SimulatedSite(site, profiles, seed=1, serial={"rs485": server_end}):
            stats = await poll_cycles(site, profiles, cycles)
        await asyncio.sleep(0.5)  # socat writes its dump as the bytes pass; let it finish
        wire = count_dump(dump.read_bytes())
    return Row(
        f"{meters}-meter RS-485 bus ({len(chosen)} single-phase profiles in turn)",
        f"RTU {baudrate} baud over a socat pty pair (socat -x)",
        meters,
        cycles,
        wire,
        minimum_per_cycle(site, profiles),
        values_per_cycle(site, profiles),
        stats,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wire_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cycles", type=int, default=10, help="poll cycles per site")
    parser.add_argument("--meters", type=int, default=32, help="meters on the RS-485 bus")
    parser.add_argument("--baudrate", type=int, default=9600)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="wire-bench-"))
    (work / "hotel").mkdir()
    (work / "rs485").mkdir()
    rows = [
        asyncio.run(hotel(work / "hotel", args.cycles)),
        asyncio.run(rs485(work / "rs485", args.meters, args.cycles, args.baudrate)),
    ]
    print()
    print(
        "| site | link | meters | cycles | requests / cycle | minimum | ratio | bytes / cycle "
        "| minimum | ratio | poller's own count (req / bytes per cycle) | one read per value |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row.cells())


if __name__ == "__main__":
    main()
