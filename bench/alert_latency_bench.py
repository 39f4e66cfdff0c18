"""Alert latency: from the overload to the MQTT alert and to the phone notification request.

Everything real and local: the meter simulator (Modbus TCP), the collector app and poller as
`irve collect` runs them, mosquitto, a subscriber, and an HTTP endpoint speaking the ntfy
protocol (apprise `ntfy://`). Each trial forces a socket above its rating at a random moment
of the poll cycle, waits for the alert and the notification, then brings the current back and
waits for both resolved messages.

Measured per trial (wall clock, one machine):
- poll -> MQTT: from the poll that saw the over-current (the reading's timestamp, taken when
  the poll starts) to the alert's arrival at the subscriber. Target <= poll interval + 100 ms.
- poll -> ntfy: from that poll to the notification request at the ntfy endpoint. Target <= 2 s.
- overload -> MQTT: from the moment the simulator's current changes, so including the wait
  for the next poll (at most one interval).
Minimum durations are set to 0 here: a configured `overcurrent_for_s` adds exactly its value.
The notification rate limit (`min_interval_s`) is 0 too, or the trials would be held by it.

    python -m bench.alert_latency_bench [--trials N] [--poll-interval S]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.collect import Collector
from collector.meters.reading import Reading
from collector.mqtt.client import MqttLink
from collector.simulator.server import SimulatedSite
from tests.support import servers
from tests.support.alert_helpers import Subscriber, overload_site, run_collector, until
from tests.support.ntfy_server import NtfyServer

RATED_A = 32.0
OVER_A = 36.0
NORMAL_A = 16.0


@dataclass
class Trial:
    forced_at: float  # time.time() when the simulator's current went over the rating
    poll_at: float  # timestamp of the first poll that read it over
    mqtt_at: float  # arrival of the firing alert at the subscriber
    ntfy_at: float  # arrival of the notification request at the ntfy endpoint


class TimingSink:
    """The poller's sink: notes when the first over-rating reading of a trial was polled."""

    def __init__(self, app: Collector[MqttLink]) -> None:
        self.app = app
        self.first_over: float | None = None

    def reading(self, reading: Reading) -> None:
        current = reading.current_a
        if (
            reading.point == "cp1"
            and current is not None
            and current > RATED_A
            and self.first_over is None
        ):
            self.first_over = reading.ts.timestamp()
        self.app.reading(reading)

    def availability(self, point: str, online: bool, reason: str | None) -> None:
        self.app.availability(point, online, reason)


async def run_trials(
    tmp: Path, broker: servers.Server, ntfy: NtfyServer, trials: int, interval: float
) -> list[Trial]:
    site, profiles = overload_site(tmp, broker.port, ntfy.url, poll_interval_s=interval)
    sub = Subscriber(broker.port)
    results: list[Trial] = []
    sink: TimingSink | None = None

    def make_sink(app: Collector[MqttLink]) -> TimingSink:
        nonlocal sink
        sink = TimingSink(app)
        return sink

    def count_above(count: Callable[[], int], floor: int) -> Callable[[], bool]:
        return lambda: count() > floor

    def alerts() -> int:
        return len(sub.arrivals("alert"))

    def notes() -> int:
        return len(ntfy.received())

    async with SimulatedSite(site, profiles, seed=11) as sim:
        sim.meter("main").force_power(15_000)
        sim.meter("cp2").force_current(0.0)
        cp1 = sim.meter("cp1")
        cp1.force_current(NORMAL_A)

        async def body(app: Collector[MqttLink]) -> None:
            assert sink is not None
            await until(lambda: sub.payloads("shed") != [], "collector running", 20)
            for n in range(trials):
                # A random phase of the poll cycle, so the wait for the next poll is sampled.
                await asyncio.sleep(random.uniform(0.5, 1.5) * interval)
                alerts_before, notes_before = alerts(), notes()
                sink.first_over = None
                forced_at = time.time()
                cp1.force_current(OVER_A)
                await until(count_above(alerts, alerts_before), f"alert {n}")
                await until(count_above(notes, notes_before), f"notification {n}")
                alert, mqtt_at = sub.arrivals("alert")[alerts_before]
                assert alert["state"] == "firing", alert
                assert sink.first_over is not None
                ntfy_at = ntfy.received()[notes_before].received_wall
                results.append(Trial(forced_at, sink.first_over, mqtt_at, ntfy_at))
                cp1.force_current(NORMAL_A)
                await until(count_above(alerts, alerts_before + 1), f"resolved {n}")
                await until(count_above(notes, notes_before + 1), f"resolved note {n}")

        try:
            await run_collector(site, profiles, body, poller_sink=make_sink)
        finally:
            sub.close()
    return results


def _stats(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
    }


def report(results: list[Trial], interval: float) -> str:
    rows: list[tuple[str, list[float], float]] = [
        (
            "poll -> MQTT alert",
            [(t.mqtt_at - t.poll_at) * 1000 for t in results],
            interval * 1000 + 100,
        ),
        ("poll -> ntfy request", [(t.ntfy_at - t.poll_at) * 1000 for t in results], 2000),
        (
            "overload -> MQTT alert",
            [(t.mqtt_at - t.forced_at) * 1000 for t in results],
            interval * 1000 + 100,
        ),
        (
            "overload -> ntfy request",
            [(t.ntfy_at - t.forced_at) * 1000 for t in results],
            float("nan"),
        ),
    ]
    lines = [
        f"poll interval {interval:g} s, {len(results)} trials, "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}",
        "",
        "| path | min ms | median ms | p95 ms | max ms | target ms | within target |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values, target in rows:
        s = _stats(values)
        within = "-" if target != target else f"{sum(v <= target for v in values)}/{len(values)}"
        target_text = "-" if target != target else f"{target:.0f}"
        lines.append(
            f"| {name} | {s['min']:.1f} | {s['median']:.1f} | {s['p95']:.1f} | {s['max']:.1f} "
            f"| {target_text} | {within} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args: Any = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="alert-bench-") as name:
        tmp = Path(name)
        broker = servers.mosquitto(tmp / "mosquitto")
        broker.start()
        ntfy = NtfyServer()
        ntfy.start()
        try:
            results = asyncio.run(run_trials(tmp, broker, ntfy, args.trials, args.poll_interval))
        finally:
            ntfy.stop()
            broker.stop()
    print("## Alert latency")
    print(report(results, args.poll_interval))


if __name__ == "__main__":
    main()
