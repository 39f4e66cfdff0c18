"""Collector throughput and footprint, side by side with modbus4mqtt and Node-RED, on one
simulated site.

Everything real and local, on loopback: the meter simulator (`irve simulate`, its own process)
serves N meters (default 50, unit ids 1..N) of one profile behind one Modbus TCP endpoint, as a
TCP gateway would; a counting TCP proxy (bench.wire_bench.MbapTap, in this process) sits
between the tool and the simulator and counts the Modbus requests on the wire; one mosquitto;
a subscriber in this process counts the readings (one JSON message per meter poll).

Tools, each a separate process measured with psutil, one after the other in the same run:
- `irve collect` (poll interval 1 s, QoS 1, MQTT 5; availability, Home Assistant discovery and
  the energy, session and alert processors on, as in production);
- modbus4mqtt 0.7.1 (PyPI, installed in a temp venv): one process per Modbus device, as its
  config file describes one device, so N processes, their CPU and RSS summed. Its config reads
  the same registers as the profile, in the same types (float32, which it lacks, as raw
  uint32), scale and word order, with update_rate 1 s, one JSON message per meter per poll
  (json_key), retained, published every poll (pub_only_on_change off); scan_batching is chosen
  here as the one that needs the fewest requests per poll among those the meter accepts.

Window: after every meter has published (warm-up), `--seconds` of steady state. Readings/s
and requests per reading over the window; CPU = user+system time of the tool's processes over
the window; peak RSS = VmHWM at the end (whole run, start-up included).

The Node-RED comparison (issue 18) is its own scenario: 10 eastron-sdm630 meters polled every
0.1 s, irve collect and Node-RED (bench.node_red: installed by npm into a cache folder, flow
generated here) alternated in one run, `--runs` times; min / median of CPU per reading and of
their ratio. With `--together` both run at once and are measured over the same windows: on a
shared virtual machine whose speed drifts from one minute to the next, the ratio then compares
the tools under the same conditions.

    python -m bench.collector_bench [--peer modbus4mqtt|node-red] [--meters N] [--seconds S]
        [--profile ID ...] [--no-peer] [--runs N] [--quick] [--together] [--checkout DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from bench import node_red
from bench.wire_bench import MbapTap
from collector.meters.plan import plan_reads
from collector.meters.profile import Profile, load_profiles
from collector.simulator.server import mapped_blocks
from tests.support import servers
from tests.support.sim_helpers import simulate_process, socket_meter, tcp_bus, write_site

REPO = Path(__file__).resolve().parent.parent
# `--checkout DIR`: irve collect is run from DIR's code (a before/after comparison).
CHECKOUT: dict[str, Path] = {}
PEER = "modbus4mqtt==0.7.1"
PEER_PREFIX = "m4m"
PEER_READ_SLEEP_S = 0.05  # modbus4mqtt sleeps this long after every read (DEFAULT_READ_SLEEP_S)
PEER_TYPES = {"u16": "uint16", "s16": "int16", "u32": "uint32", "s32": "int32",
              "u64": "uint64", "s64": "int64", "f32": "uint32", "f64": "uint64"}  # fmt: skip
DEFAULT_PROFILES = ["eastron-sdm120", "carlo-gavazzi-em111"]


# --- the peer's configuration (pure) ----------------------------------------------------------


def peer_requests(profile: Profile, batching: int) -> int | None:
    """Requests per poll modbus4mqtt makes with this scan_batching, None if the meter would
    refuse one of them. It reads `batching` registers from every multiple of `batching` that
    holds a wanted register (modbus_interface.poll)."""
    if batching > profile.max_read:
        return None
    total = 0
    for function in ("holding", "input"):
        wanted = {
            spec.address + i
            for spec in profile.values.values()
            if profile.function_of(spec) == function
            for i in range(spec.count)
        }
        blocks = mapped_blocks(profile, function)
        starts = {address - address % batching for address in wanted}
        for start in starts:
            end = start + batching
            if not any(lo <= start and end <= hi for lo, hi in blocks):
                return None
        total += len(starts)
    return total


def best_batching(profile: Profile) -> tuple[int, int]:
    """(scan_batching, requests per poll): fewest requests, then the shortest reads."""
    options = [(n, peer_requests(profile, n)) for n in range(1, 101)]
    valid = [(requests, n) for n, requests in options if requests is not None]
    requests, n = min(valid)
    return n, requests


def peer_config(profile: Profile, unit: int, port: int, point: str) -> dict[str, Any]:
    word_orders = {profile.word_order_of(spec) for spec in profile.values.values()}
    if len(word_orders) > 1:
        raise ValueError(f"{profile.id}: modbus4mqtt has one word order per device")
    registers = []
    for name, spec in profile.values.items():
        register: dict[str, Any] = {
            "pub_topic": f"{point}/state",
            "json_key": name,
            "table": profile.function_of(spec),
            "address": spec.address,
            "type": PEER_TYPES[spec.type],
            "retain": True,
            "pub_only_on_change": False,
        }
        if spec.type[0] != "f":
            register["scale"] = profile.factor_of(spec)
        registers.append(register)
    return {
        "ip": "127.0.0.1",
        "port": port,
        "device_address": unit,
        "update_rate": 1,
        "word_order": "highlow" if word_orders == {"msw"} else "lowhigh",
        "scan_batching": best_batching(profile)[0],
        "registers": registers,
    }


# --- measuring ----------------------------------------------------------------------------------


class Readings:
    """Counts state messages per topic (paho in this process, its own thread)."""

    def __init__(self, port: int) -> None:
        self.by_topic: dict[str, int] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, client: Any, *_: Any) -> None:
        client.subscribe(
            [
                ("irve/+/+/state", 1),
                (f"{PEER_PREFIX}/+/state", 1),
                (f"{node_red.PREFIX}/+/state", 1),
            ]
        )

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        if not message.retain:
            self.by_topic[message.topic] = self.by_topic.get(message.topic, 0) + 1

    def count(self, prefix: str) -> tuple[int, int]:
        """(messages, distinct topics) under a prefix."""
        mine = [n for topic, n in list(self.by_topic.items()) if topic.startswith(prefix)]
        return sum(mine), len(mine)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def peak_rss_mb(process: psutil.Process) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Result:
    name: str
    meters: int
    seconds: float = 0.0
    readings: int = 0
    requests: int = 0
    wire_bytes: int = 0
    cpu_s: float = 0.0
    rss_mb: list[float] = field(default_factory=list)  # one per process
    note: str = ""

    @property
    def rate(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    @property
    def requests_per_reading(self) -> float:
        return self.requests / self.readings if self.readings else 0.0

    @property
    def per_cpu_s(self) -> float:
        return self.readings / self.cpu_s if self.cpu_s else 0.0

    def row(self) -> str:
        if not self.readings:
            return f"| {self.name} | - | - | - | - | - | - | {self.note} |"
        rss = f"{sum(self.rss_mb):.0f} MB"
        if len(self.rss_mb) > 1:
            rss += f" ({len(self.rss_mb)} x {sum(self.rss_mb) / len(self.rss_mb):.0f} MB)"
        return (
            f"| {self.name} | {self.rate:.1f} | {self.requests_per_reading:.2f} | "
            f"{self.wire_bytes / self.readings:.0f} | {self.cpu_s * 1000 / self.readings:.2f} ms | "
            f"{self.per_cpu_s:,.0f} | {rss} | {self.note} |"
        )


@dataclass
class Rig:
    """What both tools share: simulator, proxy, broker, subscriber, the event loop's clock."""

    tap: MbapTap
    broker: servers.Server
    readings: Readings
    simulator: psutil.Process


@dataclass
class Tool:
    """One tool under measurement: its processes and the topic prefix of its readings."""

    name: str
    prefix: str
    processes: list[subprocess.Popen[bytes]]


async def measure(
    name: str,
    rig: Rig,
    prefix: str,
    processes: list[subprocess.Popen[bytes]],
    meters: int,
    seconds: float,
    warmup_timeout: float,
) -> Result:
    (result,) = await measure_all(rig, [Tool(name, prefix, processes)], meters, seconds,
                                  warmup_timeout)  # fmt: skip
    return result


async def measure_all(
    rig: Rig, tools: list[Tool], meters: int, seconds: float, warmup_timeout: float
) -> list[Result]:
    """The tools' CPU and readings over the same window. Several tools at once share the
    proxy: its requests and bytes are shared out by readings (each tool reads the same)."""
    results = [Result(tool.name, meters) for tool in tools]
    watched = [[psutil.Process(p.pid) for p in tool.processes] for tool in tools]
    deadline = time.monotonic() + warmup_timeout
    while any(rig.readings.count(tool.prefix)[1] < meters for tool in tools):
        dead = any(p.poll() is not None for tool in tools for p in tool.processes)
        if time.monotonic() > deadline or dead:
            for tool, result in zip(tools, results, strict=True):
                seen = rig.readings.count(tool.prefix)[1]
                result.note = (
                    f"only {seen} of {meters} meters published within {warmup_timeout:g} s"
                )
            return results
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # past the start-up (discovery, first connections)
    sim0 = cpu_seconds([rig.simulator])
    here0 = cpu_seconds([psutil.Process()])
    t0, cpu0 = time.monotonic(), [cpu_seconds(w) for w in watched]
    tally0 = (rig.tap.tally.requests, rig.tap.tally.bytes)
    read0 = [rig.readings.count(tool.prefix)[0] for tool in tools]
    await asyncio.sleep(seconds)
    t1, cpu1 = time.monotonic(), [cpu_seconds(w) for w in watched]
    tally1 = (rig.tap.tally.requests, rig.tap.tally.bytes)
    read1 = [rig.readings.count(tool.prefix)[0] for tool in tools]
    readings = [after - before for before, after in zip(read0, read1, strict=True)]
    sim = (cpu_seconds([rig.simulator]) - sim0) / (t1 - t0)
    here = (cpu_seconds([psutil.Process()]) - here0) / (t1 - t0)
    for i, result in enumerate(results):
        share = readings[i] / sum(readings) if sum(readings) else 0.0
        result.seconds = t1 - t0
        result.readings = readings[i]
        result.requests = round((tally1[0] - tally0[0]) * share)
        result.wire_bytes = round((tally1[1] - tally0[1]) * share)
        result.cpu_s = cpu1[i] - cpu0[i]
        result.rss_mb = [peak_rss_mb(p) for p in watched[i]]
        result.note = f"simulator {sim:.0%} CPU, proxy+subscriber {here:.0%}"
    return results


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the tools ----------------------------------------------------------------------------------


def collector_site(
    work: Path, profile: Profile, meters: int, bus_port: int, mqtt_port: int, poll_s: float = 1
) -> Path:
    bus = {**tcp_bus("gw", timeout_s=1.0), "port": bus_port}
    sockets = [socket_meter(f"cp{i}", "gw", i, profile.id) for i in range(1, meters + 1)]
    for meter in sockets:
        meter["socket"]["phases"] = profile.phases
    return write_site(
        work,
        buses=[bus],
        meters=sockets,
        name=f"site-{bus_port}.yaml",
        mqtt={"host": "127.0.0.1", "port": mqtt_port},
        poll_interval_s=poll_s,
        state_dir=str(work / "var"),
    )


def start_collector(
    work: Path, rig: Rig, profile: Profile, meters: int, poll_s: float
) -> subprocess.Popen[bytes]:
    site = collector_site(work, profile, meters, rig.tap.port, rig.broker.port, poll_s)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    env.update(IRVE_LOG_LEVEL="WARNING", PYTHONPATH=str(CHECKOUT.get("irve", REPO)))
    argv = [sys.executable, "-m", "collector", "collect", "-c", str(site)]
    with (work / "collect.log").open("wb") as log:
        return subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=log)


async def run_collector(
    work: Path, rig: Rig, profile: Profile, meters: int, seconds: float, poll_s: float = 1
) -> Result:
    process = start_collector(work, rig, profile, meters, poll_s)
    try:
        return await measure("irve collect", rig, "irve/", [process], meters, seconds, 60)
    finally:
        stop([process])


def install_peer(venv: Path) -> str | None:
    """pip install modbus4mqtt into `venv`; None when done, else why not."""
    if (venv / "bin" / "modbus4mqtt").exists():
        return None
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", PEER],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return None if pip.returncode == 0 else f"pip install failed: {pip.stderr[-300:]}"


async def run_peer(
    work: Path, venv: Path, rig: Rig, profile: Profile, meters: int, seconds: float
) -> Result:
    name = f"{PEER.replace('==', ' ')} ({meters} processes)"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for unit in range(1, meters + 1):
            config = work / f"m4m-{unit}.yaml"
            config.write_text(yaml.safe_dump(peer_config(profile, unit, rig.tap.port, f"cp{unit}")))
            argv = [str(venv / "bin" / "modbus4mqtt"), "--hostname", "127.0.0.1",
                    "--port", str(rig.broker.port), "--mqtt_topic_prefix", PEER_PREFIX,
                    "--config", str(config)]  # fmt: skip
            with (work / f"m4m-{unit}.log").open("wb") as log:
                processes.append(subprocess.Popen(argv, cwd=work, stdout=log, stderr=log))
        return await measure(name, rig, f"{PEER_PREFIX}/", processes, meters, seconds, 120)
    finally:
        stop(processes)


NODE_RED_NAME = f"Node-RED {node_red.NODE_RED} + modbus {node_red.MODBUS_NODES}"


def start_node_red(
    work: Path, folder: Path, rig: Rig, profile: Profile, meters: int, poll_s: float
) -> subprocess.Popen[bytes]:
    argv = node_red.command(
        folder, work, profile, meters, rig.tap.port, rig.broker.port, poll_s, servers.free_port()
    )
    with (work / "node-red.log").open("wb") as log:
        return subprocess.Popen(argv, cwd=work, stdout=log, stderr=log)


async def run_node_red(
    work: Path, folder: Path, rig: Rig, profile: Profile, meters: int, seconds: float, poll_s: float
) -> Result:
    process = start_node_red(work, folder, rig, profile, meters, poll_s)
    try:
        return await measure(
            NODE_RED_NAME, rig, f"{node_red.PREFIX}/", [process], meters, seconds, 120
        )
    finally:
        stop([process])


# --- irve collect and Node-RED at the same work (issue 18) ---------------------------------------

NR_PROFILE = "eastron-sdm630"  # one 76-register FC04 read, float32 values
NR_METERS = 10
NR_POLL_S = 0.1


@dataclass
class Pair:
    """One run: irve collect, then Node-RED, same simulator, proxy and broker."""

    ours: Result
    peer: Result | None

    @property
    def ratio(self) -> float | None:
        """CPU per reading, irve ÷ Node-RED (the issue's target: at most 0.67)."""
        if self.peer is None or not self.peer.readings or not self.ours.readings:
            return None
        ours = self.ours.cpu_s / self.ours.readings
        return ours / (self.peer.cpu_s / self.peer.readings)


async def run_together(
    work: Path, folder: Path, rig: Rig, profile: Profile, seconds: float
) -> Pair:
    """Both tools running at once, measured over the same window: a change of the machine's
    speed during the run (a shared virtual machine's) weighs on both alike."""
    processes = [
        start_collector(work, rig, profile, NR_METERS, NR_POLL_S),
        start_node_red(work, folder, rig, profile, NR_METERS, NR_POLL_S),
    ]
    try:
        tools = [
            Tool("irve collect", "irve/", processes[:1]),
            Tool(NODE_RED_NAME, f"{node_red.PREFIX}/", processes[1:]),
        ]
        ours, peer = await measure_all(rig, tools, NR_METERS, seconds, 120)
        return Pair(ours, peer)
    finally:
        stop(processes)


async def node_red_pairs(
    work: Path,
    folder: Path | None,
    profile: Profile,
    runs: int,
    seconds: float,
    together: bool = False,
) -> list[Pair]:
    sim_port = servers.free_port()
    sim_site = collector_site(work, profile, NR_METERS, sim_port, 1883, NR_POLL_S)
    broker = servers.mosquitto(work / "mosquitto")
    broker.start()
    tap = MbapTap(sim_port)
    await tap.start()
    readings = Readings(broker.port)
    pairs = []
    try:
        with simulate_process(sim_site, "--seed", "1", port=sim_port) as sim_proc:
            rig = Rig(tap, broker, readings, psutil.Process(sim_proc.pid))
            for run in range(1, runs + 1):
                where = work / f"run-{run}"
                where.mkdir()
                if together and folder is not None:
                    print(f"  run {run}/{runs}: irve collect and Node-RED at once...", flush=True)
                    pair = await run_together(where, folder, rig, profile, seconds)
                    for result in (pair.ours, pair.peer):
                        print(result.row() if result else "-", flush=True)
                    pairs.append(pair)
                    continue
                print(f"  run {run}/{runs}: irve collect...", flush=True)
                ours = await run_collector(where, rig, profile, NR_METERS, seconds, NR_POLL_S)
                print(ours.row(), flush=True)
                peer = None
                if folder is not None:
                    print(f"  run {run}/{runs}: Node-RED...", flush=True)
                    peer = await run_node_red(
                        where, folder, rig, profile, NR_METERS, seconds, NR_POLL_S
                    )
                    print(peer.row(), flush=True)
                pairs.append(Pair(ours, peer))
    finally:
        readings.close()
        await tap.stop()
        broker.stop()
    return pairs


def spread(values: list[float], unit: str = "", digits: int = 2) -> str:
    """min / median of repeated runs."""
    if not values:
        return "-"
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f}{unit}"


def report_node_red(pairs: list[Pair], seconds: float) -> None:
    print()
    print(
        f"{NR_METERS} meters {NR_PROFILE}, one Modbus TCP endpoint on loopback, poll interval "
        f"{NR_POLL_S:g} s, {seconds:g} s window, {len(pairs)} run(s); "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print("| run | tool | readings/s | requests / reading | bytes / reading | CPU / reading "
          "| readings / CPU-s | peak RSS | notes |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for run, pair in enumerate(pairs, 1):
        for result in (pair.ours, pair.peer):
            if result is not None:
                print(f"| {run} " + result.row())
    print()
    print("| min / median over runs | irve collect | Node-RED | irve ÷ Node-RED |")
    print("|---|---:|---:|---:|")

    def per_reading(results: list[Result | None]) -> list[float]:
        return [r.cpu_s * 1000 / r.readings for r in results if r is not None and r.readings]

    def rss(results: list[Result | None]) -> list[float]:
        return [sum(r.rss_mb) for r in results if r is not None and r.readings]

    ours, peers = [p.ours for p in pairs], [p.peer for p in pairs]
    ratios = [r for p in pairs if (r := p.ratio) is not None]
    print(f"| CPU / reading | {spread(per_reading(list(ours)), ' ms')} "
          f"| {spread(per_reading(peers), ' ms')} | {spread(ratios)} |")  # fmt: skip
    print(
        f"| peak RSS | {spread(rss(list(ours)), ' MB', 0)} | {spread(rss(peers), ' MB', 0)} | - |"
    )


# --- main ---------------------------------------------------------------------------------------


@dataclass
class Comparison:
    profile: Profile
    ours: Result
    peer: Result | None


async def compare(
    work: Path,
    profile: Profile,
    meters: int,
    seconds: float,
    venv: Path | None,
) -> Comparison:
    sim_port = servers.free_port()
    sim_site = collector_site(work, profile, meters, sim_port, 1883)
    broker = servers.mosquitto(work / "mosquitto")
    broker.start()
    tap = MbapTap(sim_port)
    await tap.start()
    readings = Readings(broker.port)
    try:
        with simulate_process(sim_site, "--seed", "1", port=sim_port) as sim_proc:
            rig = Rig(tap, broker, readings, psutil.Process(sim_proc.pid))
            print(f"  {profile.id}: irve collect...", flush=True)
            ours = await run_collector(work, rig, profile, meters, seconds)
            print(ours.row(), flush=True)
            peer = None
            if venv is not None:
                print(f"  {profile.id}: modbus4mqtt...", flush=True)
                peer = await run_peer(work, venv, rig, profile, meters, seconds)
                print(peer.row(), flush=True)
    finally:
        readings.close()
        await tap.stop()
        broker.stop()
    return Comparison(profile, ours, peer)


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator else "-"


def report(comparisons: list[Comparison], meters: int, seconds: float) -> None:
    print()
    print(
        f"{meters} meters, one Modbus TCP endpoint on loopback, poll interval 1 s, "
        f"{seconds:g} s window; {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )
    print(
        "| profile | tool | readings/s | requests / reading | bytes / reading | CPU / reading "
        "| readings / CPU-s | peak RSS | notes |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for c in comparisons:
        minimum = len(plan_reads(c.profile))
        for result in (c.ours, c.peer):
            if result is not None:
                print(f"| {c.profile.id} (fewest requests: {minimum}) " + result.row())
    print()
    print(
        "| profile | requests / reading, modbus4mqtt ÷ irve | readings / CPU-s, irve ÷ "
        "modbus4mqtt | peak RSS, modbus4mqtt (all) ÷ irve |"
    )
    print("|---|---:|---:|---:|")
    for c in comparisons:
        if c.peer is None or not c.peer.readings or not c.ours.readings:
            print(f"| {c.profile.id} | - | - | - |")
            continue
        print(
            f"| {c.profile.id} "
            f"| {ratio(c.peer.requests_per_reading, c.ours.requests_per_reading)} "
            f"| {ratio(c.ours.per_cpu_s, c.peer.per_cpu_s)} "
            f"| {ratio(sum(c.peer.rss_mb), sum(c.ours.rss_mb))} |"
        )
    for c in comparisons:
        n, requests = best_batching(c.profile)
        print(
            f"- {c.profile.id}: modbus4mqtt scan_batching {n} ({requests} requests per poll, "
            f"+{requests * PEER_READ_SLEEP_S * 1000:.0f} ms of its sleeps per cycle)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.collector_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--peer",
        action="append",
        choices=["modbus4mqtt", "node-red"],
        help="which comparison(s) to run (repeatable; default both)",
    )
    parser.add_argument("--meters", type=int, default=50, help="modbus4mqtt comparison")
    parser.add_argument("--seconds", type=float, default=20, help="measured window per tool")
    parser.add_argument(
        "--profile",
        action="append",
        help=f"meter profile of the modbus4mqtt comparison (default {DEFAULT_PROFILES})",
    )
    parser.add_argument("--no-peer", action="store_true", help="measure irve collect only")
    parser.add_argument("--peer-venv", type=Path, help="reuse (or create) this modbus4mqtt venv")
    parser.add_argument("--runs", type=int, help="Node-RED comparison: runs (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="Node-RED comparison only, 2 runs of 8 s windows"
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        help="run irve collect from this checkout's code (e.g. a worktree of an older commit)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="Node-RED comparison: both tools at once, measured over the same window",
    )
    args = parser.parse_args(argv)
    if args.checkout is not None:
        CHECKOUT["irve"] = args.checkout.resolve()
    peers = args.peer or (["node-red"] if args.quick else ["modbus4mqtt", "node-red"])
    if args.quick:
        args.seconds = 8
    args.runs = args.runs or (2 if args.quick else 5)
    work = Path(tempfile.mkdtemp(prefix="collector-bench-"))
    profiles = load_profiles()
    if "modbus4mqtt" in peers:
        print("=== irve collect and modbus4mqtt", flush=True)
        modbus4mqtt(args, profiles, work / "modbus4mqtt")
    if "node-red" in peers:
        print("=== irve collect and Node-RED", flush=True)
        folder: Path | None = None
        why = None
        if not args.no_peer:
            folder = node_red.cache_folder()
            print(f"installing Node-RED into {folder} (once)...", flush=True)
            why = node_red.install(folder)
            if why:
                folder = None
        where = work / "node-red"
        where.mkdir(parents=True)
        pairs = asyncio.run(
            node_red_pairs(
                where, folder, profiles[NR_PROFILE], args.runs, args.seconds, args.together
            )
        )
        report_node_red(pairs, args.seconds)
        if why:
            print(f"- Node-RED not measured: {why}")


def modbus4mqtt(args: argparse.Namespace, profiles: dict[str, Profile], work: Path) -> None:
    chosen = [profiles[p] for p in (args.profile or DEFAULT_PROFILES)]
    work.mkdir(parents=True)
    venv: Path | None = None
    peer_note = ""
    if not args.no_peer:
        venv = args.peer_venv or work / "m4m-venv"
        print(f"installing {PEER} into {venv}...", flush=True)
        why = install_peer(venv)
        if why:
            peer_note, venv = f"modbus4mqtt not measured: {why}", None
    comparisons = []
    for profile in chosen:
        where = work / profile.id
        where.mkdir()
        comparisons.append(asyncio.run(compare(where, profile, args.meters, args.seconds, venv)))
    report(comparisons, args.meters, args.seconds)
    if peer_note:
        print(f"- {peer_note}")


if __name__ == "__main__":
    main()
