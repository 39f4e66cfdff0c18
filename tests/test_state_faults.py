"""The energy state folder full, then `irve collect` SIGKILLed and restarted: what reached the
broker is never contradicted (a real collector process, the simulator, real mosquitto, a real
full filesystem)."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from collector.site import load_site
from tests.support.alert_helpers import Subscriber
from tests.support.collect_helpers import collect_process
from tests.support.disk import TinyDisk
from tests.support.servers import Server, wait_until
from tests.support.sim_helpers import (
    main_meter,
    running_simulator,
    socket_meter,
    tcp_bus,
    write_site,
)

pytestmark = [pytest.mark.broker]


HELD = "held back until it can be saved"


def windows(sub: Subscriber) -> list[dict[str, Any]]:
    return sub.payloads("cp1/energy")


def test_windows_held_on_a_full_disk_are_never_published_with_other_numbers(
    tmp_path: Path, broker: Server, tiny_disk: TinyDisk
) -> None:
    """While the state cannot be saved the windows are held back (ERROR); the collector is
    killed, the disk freed, the collector restarted: every window start on the broker carries
    one set of numbers, and the windows still cover the whole time, without a hole."""
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[main_meter("main", "board", 10), socket_meter("cp1", "board", 1)],
        mqtt={"host": "127.0.0.1", "port": broker.port, "discovery": False},
        poll_interval_s=0.2,
        energy={"window_s": 10},
        state_dir=str(tiny_disk.path),
    )
    site, profiles = load_site(str(path))
    sub = Subscriber(broker.port)
    with running_simulator(site, profiles, seed=3) as sim:
        cp1 = sim.meter("cp1")
        cp1.force_current(16.0)
        sim.meter("main").force_power(10_000)
        output = tmp_path / "collect.log"
        first = collect_process(path, output)
        try:
            wait_until(lambda: len(windows(sub)) >= 1, 40, "a first window")
            tiny_disk.fill()
            published = len(windows(sub))
            # Until a window is held back (a fixed time was slow, or too short on a loaded
            # machine), the energy changing every 2 s: a held window published later with
            # other numbers would show.
            amps = itertools.cycle((30.0, 8.0, 24.0))
            deadline = time.monotonic() + 40
            while HELD not in output.read_text(errors="replace"):
                assert time.monotonic() < deadline, "no window held back on the full disk"
                cp1.force_current(next(amps))
                time.sleep(2)
            held_back = len(windows(sub)) - published
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        log = output.read_text(errors="replace")
        tiny_disk.free()
        killed_at = time.time()
        second = collect_process(path)
        try:
            wait_until(
                lambda: any(w["start"] > _iso(killed_at) for w in windows(sub)),
                40,
                "a window after the restart",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
    sub.close()
    seen: dict[str, set[str]] = defaultdict(set)
    for window in windows(sub):
        seen[window["start"]].add(json.dumps(window, sort_keys=True))
    assert all(len(v) == 1 for v in seen.values()), [sorted(v) for v in seen.values() if len(v) > 1]
    ordered = sorted((json.loads(next(iter(v))) for v in seen.values()), key=lambda w: w["start"])
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(ordered))

    assert held_back <= 1  # at most a window whose state was saved just before
    assert HELD in log, log[-3000:]


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
