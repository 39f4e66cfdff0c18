"""Front desk: the statement and the live page with a year of a 4-socket hotel in InfluxDB.

Everything real and local: influxd 1.6.7 holding `--days` of simulated history of a hotel
with four 32 A sockets and a main meter (through the collector's live energy and session
code, `collector.simulator.history`, one reading per `--step` seconds), mosquitto, and
`irve desk` as a separate process. A stay of the last week, with one of the badges the
simulated guests used, is registered through the desk's own form; then, over HTTP as a
browser asks for them:
- the statement as a page and as a PDF (the first PDF is reported apart: it loads WeasyPrint
  and Pango), `--repeat` times each; targets: under 1 s;
- the live page `/` and its `/live.json`, `--repeat` times each; target: under 300 ms;
- `--logins` logins at once (each its own client, as a reception with several tablets), then
  the statements and live page again;
- the resident memory of `irve desk` at the end (VmRSS) and its peak (VmHWM) over all of
  that; target: 120 MB.

    python -m bench.desk_bench [--days N] [--step S] [--repeat N] [--logins N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from collector.ingest.writer import HttpV1Backend
from collector.simulator.history import HistoryCounts, history_lines
from collector.site import load_site
from tests.support import servers
from tests.support.desk import Client, add_user, desk_process
from tests.support.influx_db import create_database
from tests.support.sim_helpers import main_meter, socket_meter, tcp_bus, write_site

PASSWORD = "bench-password-1"
BATCH = 5000


def hotel(tmp: Path, broker: servers.Server, influx: servers.Server) -> Path:
    return write_site(
        tmp,
        buses=[tcp_bus("board")],
        meters=[
            main_meter("main", "board", 10),
            *(socket_meter(f"cp{i}", "board", i) for i in range(1, 5)),
        ],
        tariff={
            "option": "hphc",
            "offpeak": ["22:00-06:00"],
            "prices": [{"since": "2020-01-01", "base": 0.1927, "hp": 0.2065, "hc": 0.1579}],
        },
        mqtt={"host": "127.0.0.1", "port": broker.port},
        influx={"url": f"http://127.0.0.1:{influx.port}", "api_version": "1"},
        state_dir=str(tmp / "state"),
        hotel={"address": "12 rue de la Gare\n59650 Villeneuve-d'Ascq"},
        desk={"listen": f"127.0.0.1:{servers.free_port()}"},
    )


def fill(site_file: Path, days: int, step_s: float) -> tuple[HistoryCounts, float, str]:
    """The history written; returns the counts, the seconds it took, and a badge used in the
    last week."""
    site, profiles = load_site(str(site_file))
    phases = {m.id: profiles[m.profile].phases for m in site.meters}
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    counts = HistoryCounts()
    backend = HttpV1Backend(site.influx)
    started = time.monotonic()
    batch: list[str] = []
    recent: dict[str, int] = {}
    since = end - timedelta(days=7)
    for line in history_lines(
        site, phases, end - timedelta(days=days), end, step_s=step_s, counts=counts
    ):
        batch.append(line)
        if line.startswith("session,") and "badge=" in line:
            stamp = int(line.rsplit(" ", 1)[1])
            if stamp >= since.timestamp() * 1000:  # line protocol in milliseconds
                badge = line.split("badge=", 1)[1].split(",", 1)[0].split(" ", 1)[0]
                recent[badge] = recent.get(badge, 0) + 1
        if len(batch) >= BATCH:
            backend.write("\n".join(batch))
            batch = []
    if batch:
        backend.write("\n".join(batch))
    backend.close()
    if not recent:
        raise SystemExit("no badged session in the last week: use more --days or a smaller --step")
    return counts, time.monotonic() - started, max(recent, key=lambda b: recent[b])


def cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def timed(
    client: Client, path: str, repeat: int, desk: psutil.Process
) -> tuple[list[float], float]:
    """Wall time of each request, and the desk's CPU time per request (the machine is shared:
    the CPU time is what the desk itself spent)."""
    out = []
    cpu = cpu_s(desk)
    for _ in range(repeat):
        started = time.perf_counter()
        reply = client.get(path)
        out.append(time.perf_counter() - started)
        if reply.status != 200:
            raise SystemExit(f"{path}: HTTP {reply.status}")
    return out, (cpu_s(desk) - cpu) / repeat


def row(name: str, measured: tuple[list[float], float], target_s: float) -> str:
    times, cpu = measured
    worst = max(times)
    verdict = "ok" if worst < target_s else "OVER"
    return (
        f"| {name} | {statistics.median(times) * 1000:.0f} ms | {worst * 1000:.0f} ms | "
        f"{cpu * 1000:.0f} ms | < {target_s * 1000:.0f} ms {verdict} |"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--step", type=float, default=60.0, help="seconds between readings")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--logins", type=int, default=8, help="logins at once")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        broker = servers.mosquitto(tmp / "mosquitto")
        influx = servers.influxd(tmp / "influxd")
        broker.start()
        influx.start()
        try:
            create_database(influx)
            site = hotel(tmp, broker, influx)
            counts, took, badge = fill(site, args.days, args.step)
            print(
                f"history: {args.days} days, {counts.readings} readings, {counts.energy} "
                f"energy windows, {counts.sessions} session events in {took:.0f} s",
                flush=True,
            )
            assert add_user(site, "bench", "reception", PASSWORD).returncode == 0
            with desk_process(site, tmp / "desk.log") as url:
                desk = next(
                    p
                    for p in psutil.process_iter(["cmdline"])
                    if "desk" in (p.info["cmdline"] or []) and str(site) in p.info["cmdline"]
                )
                client = Client(url)
                assert client.login("bench", PASSWORD).status == 303
                now = datetime.now(UTC)
                stay = client.submit(
                    "/stays/new",
                    {
                        "room": "12",
                        "arrival": (now - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
                        "departure": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
                        "badges": badge,
                        "policy": "at_cost",
                        "fee_eur": "0",
                        "kwh_per_night": "8",
                    },
                ).location
                if not stay.startswith("/stays/"):
                    raise SystemExit("the stay was not created")
                first_pdf, _ = timed(client, f"{stay}/statement.pdf", 1, desk)
                pages = [
                    ("statement page", f"{stay}/statement", 1.0),
                    ("statement PDF", f"{stay}/statement.pdf", 1.0),
                    ("statement CSV", f"{stay}/statement.csv", 1.0),
                    ("stay page", stay, 1.0),
                    ("live page /", "/", 0.3),
                    ("/live.json", "/live.json", 0.3),
                ]
                results = [
                    row(name, timed(client, path, args.repeat, desk), target)
                    for name, path, target in pages
                ]
                with ThreadPoolExecutor(args.logins) as pool:
                    started = time.perf_counter()
                    statuses = list(
                        pool.map(
                            lambda _: Client(url).login("bench", PASSWORD).status,
                            range(args.logins),
                        )
                    )
                    logins_s = time.perf_counter() - started
                if statuses != [303] * args.logins:
                    raise SystemExit(f"logins at once: {statuses}")
                for _, path, _ in pages:
                    timed(client, path, args.repeat, desk)
                memory = desk.memory_full_info()
                peak = _vm_hwm(desk.pid)
        finally:
            influx.stop()
            broker.stop()
    print(f"\n{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}")
    print(f"stay of 7 nights, badge {badge}; first PDF (loads WeasyPrint): {first_pdf[0]:.2f} s")
    print(f"{args.logins} logins at once: all in {logins_s:.2f} s\n")
    print("| request | median | worst | desk CPU | target |\n|---|---|---|---|---|")
    print("\n".join(results))
    print(f"| RSS of irve desk | {memory.rss / 2**20:.0f} MB | peak {peak:.0f} MB | | < 120 MB |")
    return 0


def _vm_hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
