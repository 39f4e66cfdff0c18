"""Dashboards over a long history: every panel, variable and alert-rule query of the
provisioned dashboards and rules, timed on influxd 1.6.7 holding up to a year of 1 s readings.

Data: the reference hotel (`config/examples/hotel-vda.yaml`: main meter, sockets cp1 and cp2),
one reading per meter per second with the fields the ingestor writes, generated directly as
line protocol (a deterministic day pattern: the hotel's base load, evening charging on the
sockets), not polled; energy windows and sessions from `irve demo-history`'s generator (the
collector's energy, tariff and session code, a reading a minute) with its readings left out.
Then `irve downsample`'s backfill writes `reading_1m` and `reading_1h` for the last 30 days
(timed); the older days get copies of the coarse points of the backfilled days of the same
parity (the pattern alternates), which is what the backfill would have written, without the
half hour a year's backfill takes on this shared machine.

Queries: rendered as Grafana would (tests/support/grafana_queries.py: `$timeFilter`,
`$__interval` over 1,000 data points, variables: the site, every socket) for ranges of 1 h,
24 h, 30 days and 1 year ending at the last reading; panels with a time override (today,
this month) keep it; alert rules use their own range. Each query runs `REPEAT` times; we
report the median wall time and influxd's CPU time per run (user + system, psutil). `before`:
the same panel with only its raw statement (what the dashboards ran before downsampling).

    python -m bench.dashboard_bench [--days N | --quick] [--backfill-days N] [--keep DIR]

Disk: about 1.4 GB for a year in a temporary folder, deleted at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil

from collector.commands.downsample import backfill
from collector.config import InfluxSettings
from collector.simulator.history import history_lines
from collector.site import load_site
from collector.store.downsample import LEVELS, to_lines
from collector.store.influxql import InfluxQL, Series, time_literal
from tests.support import grafana_queries as gq
from tests.support import servers

REPO = Path(__file__).resolve().parent.parent
SITE_FILE = REPO / "config" / "examples" / "hotel-vda.yaml"
DB = "irve"
PARIS = ZoneInfo("Europe/Paris")
RANGES = {"1 h": timedelta(hours=1), "24 h": timedelta(days=1), "30 d": timedelta(days=30)}
RANGES["1 year"] = timedelta(days=365)
REPEAT = 3
BATCH = 20_000  # lines per write request
# demo-history's simulation step: energy windows and sessions as the collector makes them, in
# a few minutes for a year (its readings are left out: the 1 s ones are generated here).
HISTORY_STEP_S = 300.0


def day_template(even: bool) -> list[tuple[str, float, str, float, str, float]]:
    """For each second of a day: (line head, energy since midnight) of cp1, cp2, main. cp1
    charges 18:00-22:00 UTC every day, cp2 20:00-23:30 on even days; the hotel draws 9-15 kW
    on a daily wave plus the sockets. Only the fields the dashboards, rules and
    `irve downsample` read are written (the ingestor writes a few more, never read here)."""
    out = []
    energy = {"cp1": 0.0, "cp2": 0.0, "main": 0.0}
    for second in range(86400):
        hour = second / 3600
        on = {"cp1": 18 <= hour < 22, "cp2": even and 20 <= hour < 23.5}
        heads = []
        sockets = 0.0
        for point in ("cp1", "cp2"):
            power = 7300.0 + 40.0 * math.sin(second / 60.0) if on[point] else 0.0
            sockets += power
            energy[point] += power / 3600
            heads.append(
                f"reading,point={point},role=socket,site=hotel-vda power_w={power:.1f},"
                f"current_a={power / 229.0 / 0.99:.3f},voltage_v={229.0 + math.sin(second):.2f},"
                f"rated_current_a=32.0,charging={1.0 if on[point] else 0.0},energy_wh="
            )
        power = 12000.0 + 3000.0 * math.sin(2 * math.pi * hour / 24) + sockets
        energy["main"] += power / 3600
        heads.append(
            f"reading,point=main,role=main,site=hotel-vda power_w={power:.1f},"
            f"current_a={power / 690.0:.3f},voltage_v={230.0 + math.sin(second / 7):.2f},"
            "limit_w=36000.0,warning_w=32400.0,energy_wh="
        )
        out.append((heads[0], energy["cp1"], heads[1], energy["cp2"], heads[2], energy["main"]))
    return out


def readings(start: int, days: int) -> Iterator[list[str]]:
    """A day of lines at a time from `start` (epoch s, midnight UTC), indexes increasing."""
    templates = {parity: day_template(parity) for parity in (True, False)}
    index = {"cp1": 0.0, "cp2": 0.0, "main": 0.0}
    for day in range(days):
        base = start + day * 86400
        template = templates[(base // 86400) % 2 == 0]
        e1, e2, e3 = index["cp1"], index["cp2"], index["main"]
        lines = []
        for second, (h1, d1, h2, d2, h3, d3) in enumerate(template):
            ts = base + second
            lines.append(f"{h1}{e1 + d1:.1f} {ts}")
            lines.append(f"{h2}{e2 + d2:.1f} {ts}")
            lines.append(f"{h3}{e3 + d3:.1f} {ts}")
        last = template[-1]
        index = {"cp1": e1 + last[1], "cp2": e2 + last[3], "main": e3 + last[5]}
        yield lines


def post(url: str, lines: list[str], precision: str) -> None:
    request = urllib.request.Request(
        f"{url}/write?db={DB}&precision={precision}",
        data="\n".join(lines).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()


def write_all(url: str, lines: Iterator[str], precision: str) -> int:
    count, batch = 0, []
    for line in lines:
        batch.append(line)
        if len(batch) >= BATCH:
            post(url, batch, precision)
            count += len(batch)
            batch = []
    if batch:
        post(url, batch, precision)
        count += len(batch)
    return count


@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    rows: int


def timed(client: InfluxQL, server: psutil.Process, text: str, repeat: int = REPEAT) -> Timed:
    walls, cpus, rows = [], [], 0
    for _ in range(repeat):
        before = server.cpu_times()
        started = time.perf_counter()
        series = client.query(text)
        walls.append(time.perf_counter() - started)
        after = server.cpu_times()
        cpus.append(max(0.0, after.user + after.system - before.user - before.system))
        rows = sum(len(s.values) for s in series)
    return Timed(statistics.median(walls), statistics.median(cpus), rows)


def raw_only(query: str) -> str | None:
    """What a downsampling panel ran before (its raw subquery alone, without the interval
    condition; the sockets' total keeps its outer sum), or None for a query that has no
    coarse alternative."""
    if "reading_1m" not in query:
        return None
    head = query[: query.index("), (SELECT")]
    tail = query[query.rindex(") WHERE $timeFilter GROUP BY") + 1 :]
    if head.startswith('SELECT sum("p") FROM ('):
        old = head + ")" + tail
    else:
        old = head[head.index("(SELECT") + 1 :].replace(' AS "v"', "")
    return old.replace(" AND $__interval_ms < 60000", "")


def variables(dashboard: str) -> dict[str, gq.Variable]:
    found = {
        "site": gq.Variable("hotel-vda"),
        "socket": gq.Variable(["cp1", "cp2"], multi=True),
    }
    for name, value in gq.variable_defaults(dashboard).items():
        found[name] = gq.Variable(value)
    return found


def run_queries(client: InfluxQL, server: psutil.Process, end: datetime, days: float) -> None:
    ranges = {name: span for name, span in RANGES.items() if span <= timedelta(days=days)}
    print(f"\n{'query':58} {'range':>7} {'wall s':>8} {'CPU s':>7} {'rows':>6}  before")
    worst: dict[str, float] = {}
    for query in gq.dashboard_queries():
        for name, span in ranges.items():
            start, stop = gq.panel_range(query, end - span, end, PARIS)
            if query.time_from and name != "1 h":
                continue  # a fixed "today" / "this month": once is enough
            chosen = variables(query.dashboard)
            result = timed(client, server, gq.render(query.query, start, stop, chosen))
            label = f"{query.dashboard} / {query.title} / {query.ref_id}"
            if query.time_from:
                name = query.time_from
            old = raw_only(query.query)
            before = ""
            if old is not None and span >= timedelta(days=1):
                # Once: over a year these take seconds each.
                was = timed(client, server, gq.render(old, start, stop, chosen), repeat=1)
                before = f"{was.wall_s:.3f} s wall, {was.cpu_s:.3f} s CPU"
            print(
                f"{label[:58]:58} {name:>7} {result.wall_s:8.3f} {result.cpu_s:7.3f} "
                f"{result.rows:6}  {before}",
                flush=True,
            )
            worst[name] = max(worst.get(name, 0.0), result.wall_s)
    for uid, var, text in gq.variable_queries():
        result = timed(client, server, gq.render(text, end - RANGES["1 h"], end, variables(uid)))
        print(f"{uid + ' / $' + var:58} {'-':>7} {result.wall_s:8.3f} {result.cpu_s:7.3f}")
    for rule in gq.alert_rules():
        steps = {"": (rule.query, rule.range_s)}
        steps |= {ref: (r.query, r.range_s) for ref, r in rule.reduced.items() if ref != "B"}
        for ref, (text, range_s) in steps.items():
            rendered = gq.render(text, end - timedelta(seconds=range_s), end)
            result = timed(client, server, rendered)
            label = f"alert {rule.uid}" + (f" / {ref}" if ref else "")
            print(f"{label:58} {range_s:>6}s {result.wall_s:8.3f} {result.cpu_s:7.3f}")
            worst["alerts"] = max(worst.get("alerts", 0.0), result.wall_s)
    print("\nslowest per range (wall s): " + ", ".join(f"{k} {v:.3f}" for k, v in worst.items()))


def copy_coarse(url: str, client: InfluxQL, first: datetime, days: int) -> int:
    """Write the coarse points of the `days` days before `first` (a backfilled midnight UTC)
    as copies of the first two backfilled days (one of each parity: the charging pattern
    alternates), moved back by whole multiples of two days."""
    count = 0
    for level in LEVELS:
        stored = client.query(
            f'SELECT * FROM "{level.measurement}" WHERE time >= {time_literal(first)} '
            f"AND time < {time_literal(first + timedelta(days=2))} GROUP BY *"
        )
        for back in range(2, days + 2, 2):
            shift = back * 86_400_000
            moved = [
                Series(s.name, s.tags, s.columns, [[v[0] - shift, *v[1:]] for v in s.values])
                for s in stored
            ]
            count += write_all(url, to_lines(level, moved), "ms")
    return count


def load(
    url: str,
    client: InfluxQL,
    server: psutil.Process,
    start: datetime,
    end: datetime,
    days: int,
    backfill_days: int,
) -> None:
    """Write the readings, energy windows and sessions, then backfill the coarse series."""
    start_s = int(start.timestamp())
    print(f"{days:g} days of 1 s readings, 3 meters: {start:%Y-%m-%d} .. {end:%Y-%m-%d}")

    cpu0, wall0 = server.cpu_times(), time.perf_counter()
    count = 0
    for day, lines in enumerate(readings(start_s, days), 1):
        count += write_all(url, iter(lines), "s")
        if day % 30 == 0:
            print(f"  {day} days written, {time.perf_counter() - wall0:.0f} s", flush=True)
    cpu1 = server.cpu_times()
    took = time.perf_counter() - wall0
    print(
        f"readings: {count} lines in {took:.0f} s ({count / took:.0f}/s), "
        f"influxd CPU {cpu1.user + cpu1.system - cpu0.user - cpu0.system:.0f} s"
    )
    # Every coarse step is a gap in the energy code's eyes, which it logs; the energy is
    # still shared over it in proportion to time.
    logging.getLogger("collector.energy").setLevel(logging.ERROR)
    site, profiles = load_site(str(SITE_FILE))
    phases = {m.id: profiles[m.profile].phases for m in site.meters}
    history = (
        line
        for line in history_lines(site, phases, start, end, seed=1, step_s=HISTORY_STEP_S)
        if not line.startswith("reading,")
    )
    print(f"energy windows and sessions: {write_all(url, history, 'ms')} lines")

    # `irve downsample` over the last `backfill_days` (timed); the older days' coarse points are
    # those of a backfilled day of the same parity, moved in time: a year's backfill would
    # take longer than this shared machine gives a benchmark, and its rate is what we want.
    settings = InfluxSettings(url=url, api_version="1", database=DB, timeout_s=300)
    backfilled = min(days, backfill_days)
    cpu0, wall0 = server.cpu_times(), time.perf_counter()
    proc = psutil.Process()
    me0 = proc.cpu_times()
    written = backfill(client, settings, end - timedelta(days=backfilled), end)
    cpu1, me1 = server.cpu_times(), proc.cpu_times()
    print(
        f"irve downsample backfill of {backfilled} days: {written} points in "
        f"{time.perf_counter() - wall0:.0f} s, influxd CPU "
        f"{cpu1.user + cpu1.system - cpu0.user - cpu0.system:.0f} s, irve CPU "
        f"{me1.user + me1.system - me0.user - me0.system:.0f} s"
    )
    if days > backfilled:
        copied = copy_coarse(url, client, end - timedelta(days=backfilled), days - backfilled)
        print(f"coarse points of the {days - backfilled} older days, copied: {copied}")
    # Let influxd compact what was just written (a real site's history long is) before
    # timing reads.
    time.sleep(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_bench")
    parser.add_argument("--days", type=int, default=365, help="history length (365)")
    parser.add_argument("--quick", action="store_true", help="7 days instead")
    parser.add_argument(
        "--keep",
        type=Path,
        help="folder for the database, kept afterwards; given again, its data is reused and "
        "only the queries run",
    )
    parser.add_argument(
        "--backfill-days",
        type=int,
        default=30,
        help="days irve downsample backfills (30); older days get copies of their points",
    )
    args = parser.parse_args(argv)
    days: int = 7 if args.quick else args.days
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="irve-dashbench-"))
    influx = servers.influxd(workdir / "influxd")
    influx.start()
    try:
        url = f"http://127.0.0.1:{influx.port}"
        client = InfluxQL(url, DB, timeout_s=300)
        client.execute(f"CREATE DATABASE {DB}")
        assert influx.process is not None
        server = psutil.Process(influx.process.pid)
        # Whole UTC days ending last midnight (the clock's now() is later: InfluxDB bounds
        # some rule queries with it, and `end` stands for it in every rendered query).
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = end - timedelta(days=days)
        marker = workdir / "loaded"
        if marker.exists():
            end = datetime.fromisoformat(marker.read_text().strip())
            start = end - timedelta(days=days)
            print(f"reusing {workdir}: {days} days ending {end:%Y-%m-%d %H:%M} UTC")
        else:
            load(url, client, server, start, end, days, args.backfill_days)
            marker.write_text(end.isoformat())
        du = sum(f.stat().st_size for f in (workdir / "influxd").rglob("*") if f.is_file())
        print(f"database on disk: {du / 1e9:.2f} GB")
        run_queries(client, server, end, days)
    finally:
        influx.stop()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
