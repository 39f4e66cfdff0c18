"""OCPP central system under load: 50 chargers x 2 connectors against the real `irve collect`.

Everything real and local, on loopback: one mosquitto; `irve simulate` (its own process) serves
one Modbus meter per charger (cp1..cp50, one TCP endpoint, as behind a gateway) that `irve
collect` polls every second; the collector's central system (`authorize: list`, a retained list
of 200 badges with rooms) takes 50 charge points played in this process with the `ocpp`
library's charge-point side, one websocket each, connectors 1 and 2 of charger k both on meter
cp(k+1) (a Type 2 and a domestic socket, as the reference station). The site file wants each
meter served by one charger, so the 10 polled meters of the brief are 50 here: all are watched.

Each charger presents a badge every 3 to 7 s (Authorize; 10 % unknown badges) on one of its
connectors; an accepted badge on a charger without a car starts a transaction (one car per
meter: StartTransaction, StatusNotification Charging) that stops 20 to 60 s later
(StopTransaction, Available); a running transaction sends MeterValues (energy index, power,
current) every 10 s.

Two phases in one run, the collector's process measured with psutil:
- baseline: the chargers not connected, `--baseline-s` of polling only;
- load: the 50 chargers connected (after their boot and first statuses), `--seconds` of traffic.
Figures: Authorize round trip seen by the charger (p50, p99, max); OCPP calls per second;
collector CPU (user+system) per phase, and per OCPP call = (load CPU - baseline CPU rate x
load time) / calls; peak RSS (VmHWM, whole run); polling: each meter's state message carries
its poll time, consecutive ones should be 1 s apart: a gap over 1.5 s is a late poll, and
round(gap) - 1 polls are missed.

    python -m bench.ocpp_bench [--chargers 50] [--seconds 60] [--baseline-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import connect

from bench.collector_bench import cpu_seconds, peak_rss_mb, stop
from tests.support import servers
from tests.support.sim_helpers import simulate_process, socket_meter, tcp_bus, write_site

REPO = Path(__file__).resolve().parent.parent
SITE = "test-site"
POLL_S = 1.0
LATE_GAP_S = 1.5 * POLL_S
BADGES = 200
METER_VALUES_S = 10.0
PASSWORD = "bench-charger-pass"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the site ---------------------------------------------------------------------------------


def connectors_of(k: int) -> dict[int, str]:
    return {1: f"cp{k + 1}", 2: f"cp{k + 1}"}


def site_files(work: Path, chargers: int, bus_port: int, mqtt_port: int, ocpp_port: int) -> Path:
    """The collector's site file (with the chargers); the simulator's is the same without."""
    common: dict[str, Any] = {
        "buses": [{**tcp_bus("gw", timeout_s=1.0), "port": bus_port}],
        "meters": [socket_meter(f"cp{i}", "gw", i) for i in range(1, chargers + 1)],
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "poll_interval_s": POLL_S,
        "state_dir": str(work / "var"),
    }
    write_site(work, name="simulator.yaml", **common)
    return write_site(
        work,
        name="collector.yaml",
        ocpp={"listen": f"127.0.0.1:{ocpp_port}", "authorize": "list"},
        chargers=[
            {"id": f"b{k:02d}", "password": PASSWORD, "connectors": connectors_of(k)}
            for k in range(chargers)
        ],
        **common,
    )


def badge_ids() -> list[str]:
    return [f"04{n:06X}" for n in range(BADGES)]


# --- MQTT: the badge list, and the poll times of the meters --------------------------------------


class Polls:
    """Every state message's poll time, per meter."""

    def __init__(self, port: int) -> None:
        self.times: dict[str, list[datetime]] = defaultdict(list)
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *_: c.subscribe(f"irve/{SITE}/+/state", 0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError, KeyError):
            ts = datetime.fromisoformat(json.loads(message.payload)["ts"])
            with self.lock:
                self.times[message.topic.split("/")[2]].append(ts)

    def publish_badges(self) -> None:
        now = datetime.now(UTC)
        until = iso(now + timedelta(days=2))
        badges = [
            {"badge": badge, "room": str(100 + n), "until": until}
            for n, badge in enumerate(badge_ids())
        ]
        payload = json.dumps({"ts": iso(now), "badges": badges})
        info = self.client.publish(f"irve/{SITE}/badges", payload, qos=1, retain=True)
        info.wait_for_publish(10)

    def meters_seen(self) -> int:
        with self.lock:
            return len(self.times)

    def gaps(self, start: datetime, end: datetime) -> list[float]:
        with self.lock:
            series = [list(times) for times in self.times.values()]
        gaps: list[float] = []
        for times in series:
            inside = [t for t in times if start <= t <= end]
            gaps += [(b - a).total_seconds() for a, b in itertools.pairwise(inside)]
        return gaps

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class PollFigures:
    polls: int
    late: int
    missed: int
    worst_gap_s: float

    @classmethod
    def of(cls, gaps: list[float]) -> PollFigures:
        late = [g for g in gaps if g > LATE_GAP_S]
        missed = sum(max(0, round(g / POLL_S) - 1) for g in late)
        return cls(len(gaps), len(late), missed, max(gaps, default=0.0))

    def row(self) -> str:
        return f"{self.polls} | {self.late} | {self.missed} | {self.worst_gap_s:.2f} s"


# --- the chargers -------------------------------------------------------------------------------


@dataclass
class Tally:
    calls: int = 0
    authorize_ms: list[float] = field(default_factory=list)
    accepted: int = 0
    transactions: int = 0
    errors: list[str] = field(default_factory=list)
    measuring: bool = False


class BenchCharger(ChargePoint):
    def __init__(self, charger_id: str, ws: Any, tally: Tally, rng: random.Random) -> None:
        super().__init__(charger_id, ws, response_timeout=30)
        self.tally = tally
        self.rng = rng
        self.index = rng.randrange(10**6, 10**7)  # Wh, a lifetime index
        self.running: dict[int, tuple[int, float, float]] = {}  # connector -> tx, stop, next MV

    async def send(self, payload: Any) -> Any:
        answer = await self.call(payload)
        if self.tally.measuring:
            self.tally.calls += 1
        return answer

    @on(Action.get_configuration)
    def configuration(self, **p: Any) -> call_result.GetConfiguration:
        key = {"key": "LocalAuthListEnabled", "readonly": True, "value": "true"}
        return call_result.GetConfiguration(configuration_key=[key])

    @on(Action.send_local_list)
    def local_list(self, **p: Any) -> call_result.SendLocalList:
        return call_result.SendLocalList(status="Accepted")

    async def status(self, connector: int, status: str) -> None:
        await self.send(
            call.StatusNotification(connector_id=connector, error_code="NoError", status=status)
        )

    async def boot(self) -> None:
        await self.send(
            call.BootNotification(charge_point_vendor="bench", charge_point_model="2 sockets")
        )
        for connector in (1, 2):
            await self.status(connector, "Available")

    async def play(self, loop_time: Any) -> None:
        badges = badge_ids()
        next_badge = loop_time() + self.rng.uniform(0, 5)
        while True:
            now = loop_time()
            for connector, (tx, stop_at, next_mv) in list(self.running.items()):
                if now >= stop_at:
                    del self.running[connector]
                    await self.send(
                        call.StopTransaction(
                            transaction_id=tx, meter_stop=self.index, timestamp=iso(_utc())
                        )
                    )
                    await self.status(connector, "Available")
                elif now >= next_mv:
                    self.running[connector] = (tx, stop_at, next_mv + METER_VALUES_S)
                    await self.meter_values(connector, tx)
            if now >= next_badge:
                next_badge = now + self.rng.uniform(3, 7)
                await self.badge(self.rng.choice((1, 2)), badges, loop_time)
            await asyncio.sleep(0.2)

    async def badge(self, connector: int, badges: list[str], loop_time: Any) -> None:
        known = self.rng.random() >= 0.1
        badge = self.rng.choice(badges) if known else f"FF{self.rng.randrange(16**6):06X}"
        sent = time.perf_counter()
        answer = await self.send(call.Authorize(id_tag=badge))
        if self.tally.measuring:
            self.tally.authorize_ms.append((time.perf_counter() - sent) * 1000)
        if answer.id_tag_info["status"] != "Accepted" or self.running:
            return
        self.tally.accepted += 1
        started = await self.send(
            call.StartTransaction(
                connector_id=connector, id_tag=badge, meter_start=self.index, timestamp=iso(_utc())
            )
        )
        self.tally.transactions += 1
        await self.status(connector, "Charging")
        now = loop_time()
        stop_at = now + self.rng.uniform(20, 60)
        self.running[connector] = (started.transaction_id, stop_at, now + METER_VALUES_S)

    async def meter_values(self, connector: int, tx: int) -> None:
        self.index += self.rng.randrange(10, 25)
        samples = [
            ("Energy.Active.Import.Register", "Wh", str(self.index)),
            ("Power.Active.Import", "W", f"{self.rng.uniform(3500, 7400):.0f}"),
            ("Current.Import", "A", f"{self.rng.uniform(16, 32):.1f}"),
        ]
        await self.send(
            call.MeterValues(
                connector_id=connector,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": iso(_utc()),
                        "sampled_value": [
                            {"value": v, "measurand": m, "unit": u, "context": "Sample.Periodic"}
                            for m, u, v in samples
                        ],
                    }
                ],
            )
        )


def _utc() -> datetime:
    return datetime.now(UTC)


async def run_charger(
    k: int, port: int, tally: Tally, booted: asyncio.Event, all_booted: list[int], chargers: int
) -> None:
    charger_id = f"b{k:02d}"
    url = f"ws://{charger_id}:{PASSWORD}@127.0.0.1:{port}/{charger_id}"
    loop = asyncio.get_running_loop()
    try:
        async with connect(url, subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
            cp = BenchCharger(charger_id, ws, tally, random.Random(k))
            listener = asyncio.create_task(cp.start())
            try:
                await cp.boot()
                all_booted.append(k)
                if len(all_booted) == chargers:
                    booted.set()
                await cp.play(loop.time)
            finally:
                listener.cancel()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        tally.errors.append(f"{charger_id}: {type(exc).__name__}: {exc}")


# --- the run ----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def run(
    chargers: int, seconds: float, baseline_s: float, work: Path, profile: Path | None
) -> list[str]:
    broker = servers.mosquitto(work / "mosquitto")
    broker.start()
    bus_port, ocpp_port = servers.free_port(), servers.free_port()
    collector_site = site_files(work, chargers, bus_port, broker.port, ocpp_port)
    polls = Polls(broker.port)
    polls.publish_badges()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    env.update(IRVE_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
    tally = Tally()
    try:
        with simulate_process(work / "simulator.yaml", "--seed", "1", port=bus_port):
            # --profile: the collector under cProfile (its main thread: the event loop).
            profiling = ["-m", "cProfile", "-o", str(profile)] if profile else []
            argv = [
                sys.executable,
                *profiling,
                "-m",
                "collector",
                "collect",
                "-c",
                str(collector_site),
            ]
            with (work / "collect.log").open("wb") as log:
                process = subprocess.Popen(argv, cwd=work, env=env, stdout=log, stderr=log)
            collector = psutil.Process(process.pid)
            try:
                servers.wait_until(
                    lambda: polls.meters_seen() == chargers and servers.port_open(ocpp_port),
                    timeout=60,
                    what="the collector polling and listening",
                )
                await asyncio.sleep(3)
                t0, c0 = _utc(), cpu_seconds([collector])
                await asyncio.sleep(baseline_s)
                t1, c1 = _utc(), cpu_seconds([collector])
                base = PollFigures.of(polls.gaps(t0, t1))
                base_rate = (c1 - c0) / (t1 - t0).total_seconds()

                booted, done = asyncio.Event(), list[int]()
                tasks = [
                    asyncio.create_task(run_charger(k, ocpp_port, tally, booted, done, chargers))
                    for k in range(chargers)
                ]
                await asyncio.wait_for(booted.wait(), 120)
                await asyncio.sleep(5)  # local lists pushed, first badges
                here0 = cpu_seconds([psutil.Process()])
                tally.measuring = True
                t2, c2 = _utc(), cpu_seconds([collector])
                await asyncio.sleep(seconds)
                t3, c3 = _utc(), cpu_seconds([collector])
                tally.measuring = False
                here = cpu_seconds([psutil.Process()]) - here0
                load = PollFigures.of(polls.gaps(t2, t3))
                rss_now = collector.memory_info().rss / 2**20
                rss_peak = peak_rss_mb(collector)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                stop([process])
    finally:
        polls.close()
        broker.stop()
    load_s = (t3 - t2).total_seconds()
    load_cpu = c3 - c2
    per_call_ms = (load_cpu - base_rate * load_s) / tally.calls * 1000 if tally.calls else 0.0
    auth = tally.authorize_ms
    return [
        f"{chargers} chargers x 2 connectors, {chargers} meters polled every {POLL_S:g} s; "
        f"baseline {baseline_s:g} s, load {load_s:.0f} s; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}",
        "",
        "| phase | OCPP calls/s | collector CPU | polls | late (> 1.5 s) | missed | worst gap |",
        "|---|---|---|---|---|---|---|",
        f"| baseline | 0 | {base_rate:.1%} | {base.row()} |",
        f"| load | {tally.calls / load_s:.1f} | {load_cpu / load_s:.1%} | {load.row()} |",
        "",
        f"Authorize round trip ({len(auth)}): p50 {percentile(auth, 0.5):.1f} ms, "
        f"p99 {percentile(auth, 0.99):.1f} ms, max {max(auth, default=0):.1f} ms "
        f"(mean {statistics.fmean(auth) if auth else 0:.1f} ms)",
        f"CPU per OCPP call: {per_call_ms:.2f} ms (collector, above its baseline)",
        f"collector RSS: {rss_now:.0f} MB at the end, peak {rss_peak:.0f} MB",
        f"transactions started: {tally.transactions}; the chargers' process: "
        f"{here / load_s:.0%} CPU",
        *([f"errors: {'; '.join(tally.errors[:5])}"] if tally.errors else []),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ocpp_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--chargers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline-s", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, help="work folder to keep (logs, state)")
    parser.add_argument("--profile", type=Path, help="write the collector's cProfile stats here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocpp-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        lines = asyncio.run(run(args.chargers, args.seconds, args.baseline_s, work, args.profile))
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
