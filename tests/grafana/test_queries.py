"""Every InfluxQL query of every provisioned panel, template variable and alert rule, run on a
real InfluxDB (influxd 1.6.7) against data that went through the product's real path, with
numbers checked. `test_every_query_has_a_numeric_check` fails when a query is added to the
provisioning without a test here that checks its numbers.

Data (built once for the module):
- LIVE, the real chain: simulator (Modbus TCP) -> collector app -> mosquitto -> ingestor ->
  influxd (/write, API 1), for three sites: `hotel-vda` (a normal evening), `hotel-test`
  (socket cp1 forced to 40 A, main meter forced to 40 kW, cp2 silenced after a while) and
  `hotel-pre` (main meter at 34 kW: above the 90 % pre-alarm, below the subscribed 36 kW);
  and `gite-test`, the same site with a gîte's ratings (sockets rated 16 A, 9 kVA subscribed:
  pre-alarm at 8,100 W) with cp1 forced to 20 A and the main meter to 8.5 kW: over its own
  limits, far under the hotel's. Every limit the dashboards and rules use comes from the data.
  `hotel-test` runs the load management (no actuator: its limits are advisory), so its `limit`
  points are the collector's own.
  To keep the test short the chain runs on the simulator's clock at SPEED x real time, and
  that clock starts far enough in the past for every reading to be older than the wall clock
  (InfluxDB bounds some queries with now()). The bus timeout is scaled down by SPEED too, so a
  silent meter costs the other meters one simulated second per poll, as it does for real.
- HISTORY, `irve demo-history` (the same energy, tariff and session code as the collector,
  written with the ingestor's line protocol and writer): three days of `hotel-vda` ending
  shortly before the live window, for the energy, cost and session panels.

Expected numbers are computed in Python from the raw points (or from the history generator
itself), never with the panel's own query: means and sums per time bucket, local day, week,
period, badge; the cost of a day equals the sum of that day's energy intervals; the session
table lists the generated sessions.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import yaml

from collector.config import IngestorConfig, SiteConfig
from collector.ingest.service import Ingestor
from collector.load.controller import from_config
from collector.load.service import LoadService
from collector.meters.poller import Poller
from collector.simulator.history import history_lines
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from collector.store.influxql import InfluxQL, Series
from collector.tariffs.subscription import day_share
from tests.support import grafana_queries as gq
from tests.support import servers
from tests.support.app import make_app

pytestmark = [pytest.mark.broker, pytest.mark.influx]


PARIS = ZoneInfo("Europe/Paris")
SPEED = 10.0  # simulated seconds per wall second
LIVE_WALL_S = 10.0  # 100 simulated seconds: over-current held well beyond the rule's 1 min
SILENCE_AFTER_WALL_S = 3.0
HISTORY_DAYS = 3
NORMAL, OVERLOAD, PRE, GITE = "hotel-vda", "hotel-test", "hotel-pre", "gite-test"
SCENARIOS = {
    NORMAL: [],
    OVERLOAD: ["overcurrent:cp1:40", "overload:40000"],
    PRE: ["overload:34000"],
    GITE: ["overcurrent:cp1:20", "overload:8500"],
}
# A gîte's ratings: every socket rated 16 A, 9 kVA subscribed (the hotel: 32 A, 36 kVA).
GITE_RATED_A, GITE_KVA = 16.0, 9.0
LM_MARGIN_W = 1000.0
SILENCED = {OVERLOAD: "cp2"}
# EUR a month: a 36 kVA hotel's, and a 9 kVA gîte's.
SUBSCRIPTION = {NORMAL: 52.54, OVERLOAD: 52.54, PRE: 52.54, GITE: 19.56}
DB = "irve"
# The 40 A socket draws about 9 kW for the 100 simulated seconds, but only the energy windows
# closed during the run are published (the open one is saved at shutdown): the last minute
# boundary the run crosses is 40 to 100 s in, less the collector's start on a loaded machine
# (a wall second is 10 simulated ones). At least 20 s at 9 kW:
LIVE_CLOSED_KWH = 0.05
STEP_MS = 10_000  # $__interval of every live range here: the datasource's minimum interval

# ---------------------------------------------------------------------------------------------
# Which test checks the numbers of which query (see test_every_query_has_a_numeric_check)

CHECKED: dict[str, set[str]] = defaultdict(set)
F = TypeVar("F", bound=Callable[..., None])


def checks(*keys: str) -> Callable[[F], F]:
    def mark(test: F) -> F:
        for key in keys:
            CHECKED[key].add(test.__name__)
        return test

    return mark


def live(title: str, ref: str = "A") -> str:
    return f"irve-live / {title} / {ref}"


def energy(title: str, ref: str = "A") -> str:
    return f"irve-energy / {title} / {ref}"


def sessions(title: str) -> str:
    return f"irve-sessions / {title} / A"


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class Data:
    client: InfluxQL
    live_start: datetime
    live_end: datetime
    history_start: datetime
    history_end: datetime
    history: list[str]  # line protocol the history generator produced
    sites: dict[str, SiteConfig]  # the site file of each live site
    empty: InfluxQL  # a database nothing was written to: a new installation

    def run(self, text: str) -> list[Series]:
        return self.client.query(text)

    def limits(self, site: str) -> tuple[float, float, float]:
        """(rated current of cp1 in A, subscribed power in W, pre-alarm threshold in W) as the
        site file of `site` sets them."""
        config = self.sites[site]
        socket = next(m.socket for m in config.meters if m.id == "cp1")
        assert socket is not None
        limit_w = config.subscribed_power_w
        return socket.rated_current_a, limit_w, limit_w * config.alerts.warning_share


def distinct_free_ports(count: int) -> list[int]:
    """Free ports, none twice (the kernel may hand the same free port to consecutive asks)."""
    found: list[int] = []
    while len(found) < count:
        port = servers.free_port()
        if port not in found:
            found.append(port)
    return found


def site_yaml(tmp: Path, site_id: str, broker_port: int, bus_port: int) -> Path:
    data = yaml.safe_load((gq.REPO / "config" / "examples" / "hotel-vda.yaml").read_text())
    data["site"]["id"] = site_id
    if site_id == GITE:
        data["site"]["subscribed_power_kva"] = GITE_KVA
        for meter in data["meters"]:
            if meter.get("socket"):
                meter["socket"]["rated_current_a"] = GITE_RATED_A
    data["mqtt"] = {"host": "127.0.0.1", "port": broker_port, "client_id": f"collect-{site_id}"}
    data["buses"][0].update(host="127.0.0.1", port=bus_port, timeout_s=1.0 / SPEED)
    data["poll_interval_s"] = 1.0 / SPEED
    data["state_dir"] = str(tmp / f"state-{site_id}")
    # Each site's own subscription (the collector publishes the day's share of it).
    data["tariff"]["subscription"] = [{"since": "2025-01-01", "per_month": SUBSCRIPTION[site_id]}]
    if site_id == OVERLOAD:
        # A loaded machine stalls the poller (0.1 s per poll here) for a few polls: the
        # fail-safe, tested elsewhere, would cap the limits meanwhile.
        data["load_management"] = {"margin_w": LM_MARGIN_W, "failsafe_after_polls": 1000}
    path = tmp / f"{site_id}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


async def run_site(path: Path, site_id: str, start: datetime) -> None:
    site, profiles = load_site(str(path))
    async with SimulatedSite(
        site, profiles, seed=7, speed=SPEED, start=start, scenarios=SCENARIOS[site_id]
    ) as sim:
        app = make_app(site, profiles, clock=sim.clock.now)
        poller = Poller(site, profiles, app, clock=sim.clock.now)
        done = asyncio.Event()
        controller = from_config(site)
        async with AsyncExitStack() as services:
            await services.enter_async_context(app.link)
            if controller is not None:
                load = LoadService(site, controller, app.publish_all)
                app.attach_load(await services.enter_async_context(load))
            task = asyncio.create_task(app.run(poller, done))
            began = time.monotonic()
            while time.monotonic() - began < LIVE_WALL_S:
                if site_id in SILENCED and time.monotonic() - began >= SILENCE_AFTER_WALL_S:
                    sim.meter(SILENCED[site_id]).silent()
                await asyncio.sleep(0.1)
            done.set()
            await finish(task)


async def finish(task: asyncio.Task[None], timeout_s: float = 15.0) -> None:
    """Wait for the collector to stop, cancelling again a bus loop whose cancellation was lost.

    Python 3.11's asyncio.wait_for (pymodbus awaits each answer with it) returns the answer and
    drops the cancellation when both happen in the same loop iteration; the poller's bus loop
    then polls on, in state "cancelling", and the collector never stops (seen here about once
    in ten runs on a loaded machine; reported, the fix belongs in the poller)."""
    deadline = time.monotonic() + timeout_s
    while not task.done():
        if time.monotonic() > deadline:
            raise TimeoutError("the collector did not stop")
        await asyncio.wait([task], timeout=1.0)
        for other in asyncio.all_tasks():
            coro = other.get_coro()
            name = getattr(coro, "__qualname__", "")
            if other.cancelling() and not other.done() and name == "Poller._run_bus":
                other.cancel()
    task.result()


async def run_sites(paths: dict[str, Path], start: datetime) -> None:
    await asyncio.gather(*(run_site(path, site_id, start) for site_id, path in paths.items()))


def wait_stable(client: InfluxQL, timeout: float = 20.0) -> None:
    """Until the number of stored readings stops moving (the ingestor has caught up)."""
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        found = client.query('SELECT count("power_w") FROM "reading"')
        count = found[0].values[0][1] if found else 0
        if count == last and count > 0:
            return
        last = count
        time.sleep(0.7)
    raise TimeoutError("the ingestor did not catch up")


def irve(site_file: Path, url: str, *args: str) -> None:
    env = {
        **os.environ,
        "IRVE_INFLUX__URL": url,
        "IRVE_INFLUX__API_VERSION": "1",
        "IRVE_INFLUX__DATABASE": DB,
    }
    command = [sys.executable, "-m", "collector", args[0], "-c", str(site_file), *args[1:]]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def demo_history(site_file: Path, url: str, end: datetime) -> None:
    irve(
        site_file,
        url,
        "demo-history",
        "--days",
        str(HISTORY_DAYS),
        "--end",
        end.isoformat(),
        "--seed",
        "3",
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    tmp = tmp_path_factory.mktemp("grafana")
    influx, broker = servers.influxd(tmp / "influxd"), servers.mosquitto(tmp / "mosquitto")
    influx.start()
    broker.start()
    url = f"http://127.0.0.1:{influx.port}"
    client = InfluxQL(url, DB)
    try:
        client.query(f"CREATE DATABASE {DB}")  # 1.6 still takes it on GET
        empty = InfluxQL(url, "irve_vide")
        empty.query("CREATE DATABASE irve_vide")
        # The simulated run ends LIVE_WALL_S * SPEED later: still before the wall clock.
        live_start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=200)
        history_end = live_start - timedelta(minutes=5)
        history_start = history_end - timedelta(days=HISTORY_DAYS)
        history_site = site_yaml(tmp, NORMAL, broker.port, 502)  # no bus needed for history
        demo_history(history_site, url, history_end)
        site, profiles = load_site(str(history_site))
        phases = {m.id: profiles[m.profile].phases for m in site.meters}
        history = list(history_lines(site, phases, history_start, history_end, seed=3))

        config = IngestorConfig(
            mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": "ingest-grafana"},
            influx={"url": url, "api_version": "1", "database": DB},
            ingest={"http_port": 0, "flush_interval_s": 0.2, "share_group": None},
        )
        ingestor = Ingestor(config)
        ingestor.start()
        try:
            # Ports taken last: any connection made meanwhile may be given a port found free.
            ports = dict(zip(SCENARIOS, distinct_free_ports(len(SCENARIOS)), strict=True))
            paths = {s: site_yaml(tmp, s, broker.port, port) for s, port in ports.items()}
            asyncio.run(run_sites(paths, live_start))
            wait_stable(client)
        finally:
            ingestor.stop()
        last = client.query('SELECT last("power_w") FROM "reading"')
        live_end = datetime.fromtimestamp(last[0].values[0][0] / 1000, UTC)
        assert live_end < datetime.now(UTC)
        # The per-minute and per-hour series of everything written, as after `irve downsample`
        # on an existing database (influxd's continuous queries are off here).
        span = (history_start.isoformat(), (live_end + timedelta(seconds=1)).isoformat())
        irve(history_site, url, "downsample", "--from", span[0], "--to", span[1])
        sites = {site_id: load_site(str(path))[0] for site_id, path in paths.items()}
        yield Data(client, live_start, live_end, history_start, history_end, history, sites, empty)
    finally:
        broker.stop()
        influx.stop()


# ---------------------------------------------------------------------------------------------
# helpers


def variables(
    data: Data, dashboard: str, site: str, sockets: list[str] | None = None
) -> dict[str, gq.Variable]:
    """The dashboard's variables as Grafana resolves them: site chosen, socket = All (every
    value its own SHOW TAG VALUES query returns) unless given, text boxes at their defaults."""
    found = {"site": gq.Variable(site)}
    for uid, name, query in gq.variable_queries():
        if uid == dashboard and name == "socket":
            text = gq.render(query, data.live_start, data.live_end, found)
            options = [row[1] for s in data.run(text) for row in s.values]
            found["socket"] = gq.Variable(sockets or options, multi=True)
    for name, value in gq.variable_defaults(dashboard).items():
        found[name] = gq.Variable(value)
    return found


def panel(
    data: Data,
    dashboard: str,
    title: str,
    site: str,
    start: datetime,
    end: datetime,
    ref: str = "A",
    sockets: list[str] | None = None,
) -> list[Series]:
    query = gq.panel_query(dashboard, title, ref)
    start, end = gq.panel_range(query, start, end, PARIS)
    text = gq.render(query.query, start, end, variables(data, dashboard, site, sockets))
    return data.run(text)


def live_panel(data: Data, title: str, site: str, ref: str = "A") -> list[Series]:
    return panel(data, "irve-live", title, site, data.live_start, data.live_end, ref)


def by_tag(series: list[Series], tag: str) -> dict[str, Series]:
    return {s.tags[tag]: s for s in series}


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def raw_buckets(
    data: Data, site: str, field: str, role: str | None = None
) -> dict[str, dict[int, list[float]]]:
    """point -> live bucket start (epoch ms) -> the raw values of `field` in that bucket."""
    role_filter = f" AND \"role\" = '{role}'" if role else ""
    text = (
        f'SELECT "{field}" FROM "reading" WHERE "site" = \'{site}\'{role_filter}'
        f' AND time >= {ms(data.live_start)}ms AND time <= {ms(data.live_end)}ms GROUP BY "point"'
    )
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in data.run(text):
        for ts, value in s.values:
            found[s.tags["point"]][ts - ts % STEP_MS].append(value)
    return found


def non_null(series: Series) -> dict[int, float]:
    return {ts: value for ts, value in series.values if value is not None}


def raw_energy(data: Data, site: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    text = (
        'SELECT "energy_wh", "cost_eur" FROM "energy" WHERE "site" = '
        f"'{site}' AND time >= {ms(start)}ms AND time <= {ms(end)}ms"
        ' GROUP BY "point", "period"'
    )
    rows = []
    for s in data.run(text):
        for ts, energy_wh, cost in s.values:
            rows.append({"ts": ts, **s.tags, "energy_wh": energy_wh, "cost_eur": cost})
    return [r for r in rows if r["point"] != "main"]


def live_cp1_kwh(data: Data) -> float:
    """The energy of the intervals the 40 A socket closed during the live run."""
    rows = raw_energy(data, OVERLOAD, data.live_start, data.live_end)
    return sum(float(r["energy_wh"]) for r in rows if r["point"] == "cp1") / 1000


def local_day(stamp_ms: int) -> date:
    return datetime.fromtimestamp(stamp_ms / 1000, UTC).astimezone(PARIS).date()


def approx_dict(actual: dict[Any, float], expected: dict[Any, float]) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ---------------------------------------------------------------------------------------------
# every query runs, and every query's numbers are checked by some test below


def test_every_query_has_a_numeric_check() -> None:
    keys = gq.query_keys()
    rules = gq.alert_rules()
    count = len(gq.dashboard_queries()) + len(gq.variable_queries())
    count += len(rules) + sum(len(rule.value_refs) for rule in rules)
    assert len(keys) == count  # one key per query: none hidden behind another's name
    assert sorted(keys - set(CHECKED)) == [], "queries no test checks"
    assert sorted(set(CHECKED) - keys) == [], "checks of queries that no longer exist"


def test_every_panel_query_runs_and_returns_data(data: Data) -> None:
    empty = []
    for query in gq.dashboard_queries():
        long_range = query.dashboard != "irve-live"
        start = data.history_start if long_range else data.live_start
        end = data.history_end if long_range else data.live_end
        if query.time_from:  # "today" / "this month": up to the end of the data
            end = data.live_end
        series = panel(data, query.dashboard, query.title, NORMAL, start, end, query.ref_id)
        if not series:
            empty.append(query.key)
    # The normal site's sockets are idle in the live run: today's (or this month's) energy
    # comes from the history, where no guest may have charged yet today (or this month, on the
    # 1st): zero-energy intervals are not stored. The 40 A site covers those panels then.
    # The normal site runs no load management: its limits panel is empty (the 40 kW site's is
    # checked by test_live_limits_per_socket).
    allowed = {live("Limitation de charge par borne")}
    for time_from, since in (("now/d", gq.start_of_day), ("now/M", gq.start_of_month)):
        if not raw_energy(data, NORMAL, since(data.live_end, PARIS), data.live_end):
            allowed |= {q.key for q in gq.dashboard_queries() if q.time_from == time_from}
    assert set(empty) <= allowed


@checks(*(gq.variable_key(uid, name) for uid, name, _ in gq.variable_queries()))
def test_every_variable_query(data: Data) -> None:
    for uid, name, query in gq.variable_queries():
        text = gq.render(query, data.live_start, data.live_end, {"site": gq.Variable(NORMAL)})
        values = sorted(row[1] for s in data.run(text) for row in s.values)
        if name == "site":
            assert values == sorted(SCENARIOS), uid
        else:
            assert values == ["cp1", "cp2"], uid  # sockets only, not the main meter


def test_multi_value_socket_variable_forms(data: Data) -> None:
    start, end = data.live_start, data.live_end
    title = "Courant par borne"
    one = panel(data, "irve-live", title, OVERLOAD, start, end, sockets=["cp1"])
    assert set(by_tag(one, "point")) == {"cp1"}
    both = panel(data, "irve-live", title, OVERLOAD, start, end, sockets=["cp1", "cp2"])
    assert set(by_tag(both, "point")) == {"cp1", "cp2"}
    chosen = {
        "site": gq.Variable(OVERLOAD),
        "socket": gq.Variable(["cp1", "cp2"], multi=True),
    }
    text = gq.render(gq.panel_query("irve-live", title).query, start, end, chosen)
    assert '"point" =~ /^(cp1|cp2)$/' in text and "\"site\" = 'hotel-test'" in text


# ---------------------------------------------------------------------------------------------
# "Bornes en direct" on live data


@checks(live("Puissance par borne"), live("Courant par borne"), live("Tension"))
def test_live_power_current_voltage_per_bucket(data: Data) -> None:
    for site in (NORMAL, OVERLOAD):
        power = by_tag(live_panel(data, "Puissance par borne", site), "point")
        raw = raw_buckets(data, site, "power_w", role="socket")
        assert set(power) == set(raw) == {"cp1", "cp2"}  # sockets only, not the main meter
        for point, series in power.items():
            approx_dict(non_null(series), {t: mean(v) for t, v in raw[point].items()})
        current = by_tag(live_panel(data, "Courant par borne", site), "point")
        raw = raw_buckets(data, site, "current_a", role="socket")
        for point, series in current.items():
            approx_dict(non_null(series), {t: max(v) for t, v in raw[point].items()})
        voltage = by_tag(live_panel(data, "Tension", site), "point")
        raw = raw_buckets(data, site, "voltage_v")
        assert set(voltage) == {"main", "cp1", "cp2"}
        for point, series in voltage.items():
            approx_dict(non_null(series), {t: mean(v) for t, v in raw[point].items()})
            assert all(215 < v < 250 for v in non_null(series).values())
    # The forced scenario shows: 40 A on cp1, about 40 A x 230 V x 0.99 of power.
    current = by_tag(live_panel(data, "Courant par borne", OVERLOAD), "point")
    assert max(non_null(current["cp1"]).values()) == pytest.approx(40)
    power = by_tag(live_panel(data, "Puissance par borne", OVERLOAD), "point")
    assert all(8500 < v < 10000 for v in non_null(power["cp1"]).values())


@checks(live("Courant / courant assigné"))
def test_live_current_share_of_rated(data: Data) -> None:
    """Each socket's last current in % of its own rating: 40 A of 32 A, 20 A of 16 A."""
    assert data.limits(OVERLOAD)[0] == 32 and data.limits(GITE)[0] == 16
    for site, forced in ((OVERLOAD, 40.0), (GITE, 20.0)):
        share = by_tag(live_panel(data, "Courant / courant assigné", site), "point")
        assert share["cp1"].values[0][1] == pytest.approx(forced / data.limits(site)[0] * 100)
    normal = by_tag(live_panel(data, "Courant / courant assigné", NORMAL), "point")
    raw = raw_buckets(data, NORMAL, "current_a", role="socket")
    for point, series in normal.items():
        last_bucket = raw[point][max(raw[point])]
        assert series.values[0][1] == pytest.approx(last_bucket[-1] / 32 * 100)
        assert series.values[0][1] <= 100


@checks(
    live("Courant par borne", "B"),
    live("Puissance du site / puissance souscrite", "C"),
    live("Puissance du site / puissance souscrite", "D"),
)
def test_live_limit_lines_are_each_sites_own(data: Data) -> None:
    """The dashed limit lines: each socket's rating, the site's subscribed power and pre-alarm
    threshold, in every bucket that has a reading, from the readings themselves."""
    assert data.limits(NORMAL) == (32, 36000, pytest.approx(32400))
    assert data.limits(GITE) == (16, 9000, pytest.approx(8100))
    for site in (NORMAL, GITE):
        rated, limit_w, warning_w = data.limits(site)
        lines = by_tag(live_panel(data, "Courant par borne", site, "B"), "point")
        raw = raw_buckets(data, site, "current_a", role="socket")
        assert set(lines) == set(raw) == {"cp1", "cp2"}
        for point, series in lines.items():
            assert non_null(series) == {t: rated for t in raw[point]}
        main = raw_buckets(data, site, "power_w", role="main")["main"]
        for ref, limit in (("C", limit_w), ("D", warning_w)):
            (line,) = live_panel(data, "Puissance du site / puissance souscrite", site, ref)
            approx_dict(non_null(line), {t: limit for t in main})


@checks(live("État des bornes"))
def test_live_socket_state_mapping(data: Data) -> None:
    """Each bucket shows the state of its last reading, "Hors ligne" when it has none (from the
    socket's first reading on: before it the collector was starting)."""
    dashboard = next(d for d in gq.load_dashboards().values() if d["uid"] == "irve-live")
    state_panel = next(p for p in dashboard["panels"] if p["title"] == "État des bornes")
    mappings = state_panel["fieldConfig"]["defaults"]["mappings"]

    def state(value: float | None) -> str:
        for m in mappings:
            o = m["options"]
            if m["type"] == "special" and value is None and o["match"] == "null":
                return str(o["result"]["text"])
            if m["type"] == "range" and value is not None and o["from"] <= value <= o["to"]:
                return str(o["result"]["text"])
        raise AssertionError(f"no mapping for {value}")

    shown: dict[tuple[str, str], list[str]] = {}
    for site in (NORMAL, OVERLOAD):
        series = by_tag(live_panel(data, "État des bornes", site), "point")
        raw = raw_buckets(data, site, "power_w", role="socket")
        assert set(series) == set(raw)
        for point, s in series.items():
            buckets = raw[point]
            rows = [(t, v) for t, v in s.values if t >= min(buckets)]
            assert [state(v) for _, v in rows] == [
                state(buckets[t][-1] if t in buckets else None) for t, _ in rows
            ]
            shown[site, point] = [state(v) for _, v in rows]
    # A bucket may have no reading, "Hors ligne" rightly (as checked above), when the loaded
    # test machine stalls the loop running the simulated clock for a wall second (ten
    # simulated ones), or at the end, when this site's collector stopped a wall second before
    # another site's: most buckets of a socket that answers have one.
    cp1 = shown[OVERLOAD, "cp1"]  # forced to 40 A all along
    assert "Au repos" not in cp1 and cp1.count("En charge") >= 0.8 * len(cp1)
    cp2 = shown[OVERLOAD, "cp2"]  # idle, then silenced for the last 70 simulated seconds
    assert "Au repos" in cp2[:3] and "En charge" not in cp2
    assert cp2[-5:] == ["Hors ligne"] * 5
    for point in ("cp1", "cp2"):
        assert shown[NORMAL, point].count("Hors ligne") <= 0.2 * len(shown[NORMAL, point])


@checks(live("Limitation de charge par borne"))
def test_live_limits_per_socket(data: Data) -> None:
    """The 40 kW site with cp1 charging at 40 A: cp1 is limited to the headroom (site limit
    minus what the site draws apart from its sockets) at every decision, with reason overload;
    cp2, idle, is never limited. Each row is a limit message, its current and reason."""
    series = by_tag(live_panel(data, "Limitation de charge par borne", OVERLOAD), "point")
    assert series["cp1"].columns == ["time", "motif", "limite"]
    rows = {p: {t: (reason, amps) for t, reason, amps in s.values} for p, s in series.items()}
    assert {reason for reason, _ in rows["cp1"].values()} <= {"none", "overload"}
    limited = {t: amps for t, (reason, amps) in rows["cp1"].items() if amps is not None}
    assert limited and all(rows["cp1"][t][0] == "overload" for t in limited)
    assert {amps for _, amps in rows.get("cp2", {}).values()} <= {None}
    # What each decision saw: the main meter at that instant, the sockets read after it in the
    # same poll cycle.
    main = raw_points(data, OVERLOAD, "main")
    sockets = {p: raw_points(data, OVERLOAD, p) for p in ("cp1", "cp2")}
    limit_w = data.sites[OVERLOAD].subscribed_power_w - LM_MARGIN_W
    for t, amps in limited.items():
        drawn = sum(next_reading(points, t) for points in sockets.values())
        headroom_w = limit_w - (main[t] - drawn)
        # Rounded down to 0.1 A; the socket's power moves a little between two readings.
        assert amps == pytest.approx(headroom_w / 230, abs=0.3), t


def raw_points(data: Data, site: str, point: str) -> dict[int, float]:
    text = (
        f'SELECT "power_w" FROM "reading" WHERE "site" = \'{site}\' AND "point" = \'{point}\''
        f" AND time >= {ms(data.live_start)}ms AND time <= {ms(data.live_end)}ms"
    )
    return {t: v for s in data.run(text) for t, v in s.values if v is not None}


def next_reading(points: dict[int, float], t: int) -> float:
    later = [ts for ts in points if ts >= t]
    return points[min(later)] if later else 0.0


@checks(live("Puissance du site / puissance souscrite", "A"), live("Charge du site"))
def test_live_site_power_and_load(data: Data) -> None:
    """The gauge: the last main meter power in % of the site's own subscribed power."""
    for site, forced in ((OVERLOAD, 40000), (PRE, 34000), (GITE, 8500)):
        main = live_panel(data, "Puissance du site / puissance souscrite", site, "A")
        values = non_null(main[0]).values()
        assert values and all(v == pytest.approx(forced, rel=1e-6) for v in values)
        gauge = live_panel(data, "Charge du site", site)
        load = forced / data.limits(site)[1] * 100
        assert gauge[0].values[0][1] == pytest.approx(load, rel=1e-6)
    main = live_panel(data, "Puissance du site / puissance souscrite", NORMAL, "A")
    raw = raw_buckets(data, NORMAL, "power_w", role="main")
    approx_dict(non_null(main[0]), {t: mean(v) for t, v in raw["main"].items()})


@checks(live("Puissance du site / puissance souscrite", "B"))
def test_live_sockets_total(data: Data) -> None:
    """Per bucket, the sum over sockets of each socket's mean power, on the dashboard's range
    only (the outer query has its own time filter: without it InfluxDB fills to now())."""
    for site in (NORMAL, OVERLOAD):
        total = live_panel(data, "Puissance du site / puissance souscrite", site, "B")
        raw = raw_buckets(data, site, "power_w", role="socket")
        expected: dict[int, float] = defaultdict(float)
        for buckets in raw.values():
            for t, values in buckets.items():
                expected[t] += mean(values)
        approx_dict(non_null(total[0]), dict(expected))
        first, last = total[0].values[0][0], total[0].values[-1][0]
        assert first == ms(data.live_start) - ms(data.live_start) % STEP_MS
        assert last == ms(data.live_end) - ms(data.live_end) % STEP_MS


# Over long ranges the panels read the per-minute or per-hour series: of the three subqueries
# of a panel's statement, the one whose $__interval_ms condition holds answers, and its series
# carry its measurement's name. (max data points, the series that must answer): 3 days over
# 1,000 points is 5-minute buckets, over 40 is 2 hours.
LONG_RANGES = [(1000, "reading_1m"), (40, "reading_1h")]
# (title, ref, aggregate of the raw readings the panel shows, raw field)
DOWNSAMPLED_PANELS: list[tuple[str, str, Callable[[list[float]], float], str]] = [
    ("Puissance par borne", "A", mean, "power_w"),
    ("Courant par borne", "A", max, "current_a"),
    ("État des bornes", "A", lambda values: values[-1], "power_w"),
]


@pytest.mark.parametrize(("max_points", "measurement"), LONG_RANGES)
def test_long_ranges_read_the_downsampled_series(
    data: Data, max_points: int, measurement: str
) -> None:
    """The same numbers as the raw readings, bucket by bucket. The history has one reading a
    minute, so a mean of minute means is the raw mean exactly (with an uneven number of
    readings per minute it is not: docs/grafana.md states it); maxima and last values always
    are. The first and last buckets are left out: the range cuts them inside a minute or an
    hour, and the coarse point of a cut bucket holds readings outside the range."""
    start, end = data.history_start, data.history_end
    step = gq.interval_ms(start, end, max_points, STEP_MS)
    chosen = variables(data, "irve-live", NORMAL)
    for title, ref, aggregate, field in DOWNSAMPLED_PANELS:
        query = gq.panel_query("irve-live", title, ref).query
        text = gq.render(query, start, end, chosen, max_data_points=max_points)
        assert {s.name for s in data.run(text)} == {measurement}, title
        shown = by_tag(data.run(text), "point")
        raw = (
            f'SELECT "{field}" FROM "reading" WHERE "site" = \'{NORMAL}\' AND "role" = '
            f"'socket' AND time >= {ms(start)}ms AND time <= {ms(end)}ms GROUP BY \"point\""
        )
        assert set(shown) == {"cp1", "cp2"}, title
        for series in data.run(raw):
            buckets: dict[int, list[float]] = defaultdict(list)
            for ts, value in series.values:
                buckets[ts - ts % step].append(value)
            inner = sorted(buckets)[1:-1]
            got = non_null(shown[series.tags["point"]])
            assert len(inner) > 20, title
            approx_dict({t: got[t] for t in inner}, {t: aggregate(buckets[t]) for t in inner})


@checks(live("Énergie aujourd'hui par borne"), live("Coût aujourd'hui par borne"))
def test_live_energy_today_equals_sum_of_intervals(data: Data) -> None:
    """Since local midnight: history and live intervals of the normal site (possibly none),
    and the 40 A socket's intervals the collector closed during the live run."""
    midnight = gq.start_of_day(data.live_end, PARIS)
    start, end = data.history_start, data.live_end  # the panels override it with "now/d"
    for site in (NORMAL, OVERLOAD):
        expected_kwh: dict[str, float] = defaultdict(float)
        expected_eur: dict[str, float] = defaultdict(float)
        for row in raw_energy(data, site, midnight, data.live_end):
            expected_kwh[row["point"]] += row["energy_wh"] / 1000
            expected_eur[row["point"]] += row["cost_eur"]
        kwh = by_tag(
            panel(data, "irve-live", "Énergie aujourd'hui par borne", site, start, end), "point"
        )
        eur = by_tag(
            panel(data, "irve-live", "Coût aujourd'hui par borne", site, start, end), "point"
        )
        approx_dict({p: s.values[0][1] for p, s in kwh.items()}, dict(expected_kwh))
        approx_dict({p: s.values[0][1] for p, s in eur.items()}, dict(expected_eur))
    assert live_cp1_kwh(data) > LIVE_CLOSED_KWH
    if data.live_start >= midnight:  # else the run crossed midnight: part of it is yesterday's
        assert expected_kwh["cp1"] > LIVE_CLOSED_KWH


# ---------------------------------------------------------------------------------------------
# "Énergie et coûts" on the history


@checks(
    energy("Énergie par jour, par borne et par période"), energy("Coût par jour et par période")
)
def test_energy_and_cost_per_local_day_and_period(data: Data) -> None:
    start, end = data.history_start, data.history_end
    rows = raw_energy(data, NORMAL, start, end)
    assert {r["period"] for r in rows} == {"HP", "HC"}
    kwh: dict[tuple[date, str, str], float] = defaultdict(float)
    eur: dict[tuple[date, str], float] = defaultdict(float)
    for r in rows:
        kwh[local_day(r["ts"]), r["point"], r["period"]] += r["energy_wh"] / 1000
        eur[local_day(r["ts"]), r["period"]] += r["cost_eur"]
    title = "Énergie par jour, par borne et par période"
    actual: dict[tuple[date, str, str], float] = {}
    for s in panel(data, "irve-energy", title, NORMAL, start, end):
        for ts, value in s.values:
            midnight = datetime.fromtimestamp(ts / 1000, UTC).astimezone(PARIS)
            assert (midnight.hour, midnight.minute) == (0, 0)  # days cut at Paris midnight
            actual[midnight.date(), s.tags["point"], s.tags["period"]] = value
    approx_dict(actual, dict(kwh))
    costs = panel(data, "irve-energy", "Coût par jour et par période", NORMAL, start, end)
    actual_eur = {(local_day(ts), s.tags["period"]): v for s in costs for ts, v in s.values}
    approx_dict(actual_eur, dict(eur))
    assert sum(actual_eur.values()) > 1  # euros, not cents: three days of hotel charging


WEEKLY = "Énergie par semaine, par borne et par période"


@checks(energy(WEEKLY))
def test_energy_per_week_starts_on_monday(data: Data) -> None:
    start, end = data.history_start, data.history_end
    weeks: dict[tuple[date, str, str], float] = defaultdict(float)
    for r in raw_energy(data, NORMAL, start, end):
        day = local_day(r["ts"])
        monday = day - timedelta(days=day.weekday())
        weeks[monday, r["point"], r["period"]] += r["energy_wh"] / 1000
    actual = {
        (local_day(ts), s.tags["point"], s.tags["period"]): v
        for s in panel(data, "irve-energy", WEEKLY, NORMAL, start, end)
        for ts, v in s.values
    }
    assert all(monday.weekday() == 0 for monday, _, _ in actual)
    approx_dict(actual, dict(weeks))


@pytest.mark.parametrize("change", [date(2026, 3, 29), date(2026, 10, 25)])
def test_weeks_start_on_monday_across_a_dst_change(data: Data, change: date) -> None:
    """1 Wh every hour for the three weeks around a DST change, in a database of its own: each
    week runs from Monday to Monday at Paris midnight, 167 or 169 hours across the change.
    (With `time(1w, 4d)` InfluxDB 1.x took the UTC offset of 4 days earlier: the week after
    the change started an hour off, Sunday 23:00 in October; the 3 days of history ending
    now ran into it for a week after each change.)"""
    database = f"irve_dst_{change.month}"
    client = InfluxQL(data.client.url, database)
    client.query(f"CREATE DATABASE {database}")
    monday = change - timedelta(days=change.weekday() + 7)
    mondays = [
        datetime(monday.year, monday.month, monday.day, tzinfo=PARIS) + timedelta(weeks=w)
        for w in range(4)
    ]  # wall-clock weeks: Monday 00:00 local each
    hours = [int(m.timestamp()) for m in mondays]
    stamps = range(hours[0], hours[-1], 3600)
    lines = [f"energy,site={NORMAL},point=cp1,period=HP energy_wh=1 {t}" for t in stamps]
    request = urllib.request.Request(
        f"{data.client.url}/write?db={database}&precision=s", data="\n".join(lines).encode()
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 204
    chosen = {"site": gq.Variable(NORMAL), "socket": gq.Variable(["cp1"], multi=True)}
    query = gq.panel_query("irve-energy", WEEKLY).query
    end = mondays[-1] - timedelta(seconds=1)
    (series,) = client.query(gq.render(query, mondays[0], end, chosen))
    shown = {datetime.fromtimestamp(t / 1000, UTC): v for t, v in series.values}
    weeks = zip(mondays[:-1], hours[:-1], hours[1:], strict=True)
    expected = {m: (b - a) / 3600 / 1000 for m, a, b in weeks}
    assert list(expected.values()).count(0.167 if change.month == 3 else 0.169) == 1
    approx_dict(shown, expected)


@checks(
    energy("Coût ce mois-ci"),
    energy("Énergie ce mois-ci"),
    energy("Coût ce mois-ci par période"),
    energy("Énergie et coût par mois (heure de Paris)"),
)
def test_month_totals(data: Data) -> None:
    end = data.live_end
    month = data.history_start  # ignored: these panels override the range with now/M
    for site in (NORMAL, OVERLOAD):
        kwh: dict[str, float] = defaultdict(float)
        eur: dict[str, float] = defaultdict(float)
        rows: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in raw_energy(data, site, gq.start_of_month(end, PARIS), end):
            kwh[r["period"]] += r["energy_wh"] / 1000
            eur[r["period"]] += r["cost_eur"]
            rows[r["point"], r["period"]][0] += r["energy_wh"] / 1000
            rows[r["point"], r["period"]][1] += r["cost_eur"]

        def month_panel(title: str, site: str = site) -> list[Series]:
            return panel(data, "irve-energy", title, site, month, end)

        def total(title: str) -> float:
            found = month_panel(title)
            return float(found[0].values[0][1]) if found else 0.0

        assert total("Coût ce mois-ci") == pytest.approx(sum(eur.values()))
        assert total("Énergie ce mois-ci") == pytest.approx(sum(kwh.values()))
        per_period = by_tag(month_panel("Coût ce mois-ci par période"), "period")
        approx_dict({p: s.values[0][1] for p, s in per_period.items()}, dict(eur))
        table = month_panel("Énergie et coût par mois (heure de Paris)")  # socket x period
        assert all(s.columns == ["time", "kWh", "Coût"] for s in table)
        got = {(s.tags["point"], s.tags["period"]): s.values[0][1:] for s in table}
        approx_dict({k: v[0] for k, v in got.items()}, {k: v[0] for k, v in rows.items()})
        approx_dict({k: v[1] for k, v in got.items()}, {k: v[1] for k, v in rows.items()})
    assert live_cp1_kwh(data) > LIVE_CLOSED_KWH
    if data.live_start >= gq.start_of_month(end, PARIS):  # else the run began last month
        assert sum(kwh.values()) > LIVE_CLOSED_KWH  # the 40 A site (last checked): its charge


@checks(energy("Abonnement ce mois-ci"))
def test_subscription_this_month_is_the_share_of_each_day_published(data: Data) -> None:
    """The live run published the share of its day (two if it crossed local midnight): the
    panel sums them, apart from every energy cost; the gîte has its own figure."""
    end = data.live_end
    for site in (NORMAL, GITE):
        raw = data.run(
            f"SELECT cost_eur, per_month_eur FROM \"subscription\" WHERE site = '{site}'"
        )
        days = {
            datetime.fromtimestamp(ts / 1000, UTC).astimezone(PARIS).date(): (cost, monthly)
            for series in raw
            for ts, cost, monthly in series.values
        }
        assert end.astimezone(PARIS).date() in days
        this_month = [d for d in days if d >= gq.start_of_month(end, PARIS).date()]
        shares = {d: day_share(data.sites[site].tariff, d) for d in this_month}
        for d in this_month:  # each stored day is the site file's month / its days
            assert days[d] == (
                pytest.approx(float(shares[d].cost_eur or 0)),
                SUBSCRIPTION[site],
            )
        found = panel(data, "irve-energy", "Abonnement ce mois-ci", site, data.history_start, end)
        expected = sum(float(shares[d].cost_eur or 0) for d in this_month)
        assert float(found[0].values[0][1]) == pytest.approx(expected)


@checks(
    energy("Prix moyen du kWh par période"),
    energy("Répartition de l'énergie par période"),
)
def test_average_price_and_period_split(data: Data) -> None:
    """Over the dashboard range: the price actually paid per period, from the stored costs
    (no price written in the dashboard), and the energy per period."""
    start, end = data.history_start, data.history_end
    rows = raw_energy(data, NORMAL, start, end)
    kwh: dict[str, float] = defaultdict(float)
    eur: dict[str, float] = defaultdict(float)
    for r in rows:
        kwh[r["period"]] += r["energy_wh"] / 1000
        eur[r["period"]] += r["cost_eur"]
    title = "Prix moyen du kWh par période"
    price = by_tag(panel(data, "irve-energy", title, NORMAL, start, end), "period")
    approx_dict({p: s.values[0][1] for p, s in price.items()}, {p: eur[p] / kwh[p] for p in kwh})
    # One price row in force over the history: the mean is that row's price of the period.
    in_force = data.sites[NORMAL].tariff.prices[-1]
    assert price["HP"].values[0][1] == pytest.approx(float(in_force.hp or 0))
    assert price["HC"].values[0][1] == pytest.approx(float(in_force.hc or 0))
    pie = panel(data, "irve-energy", "Répartition de l'énergie par période", NORMAL, start, end)
    approx_dict({p: s.values[0][1] for p, s in by_tag(pie, "period").items()}, dict(kwh))


# ---------------------------------------------------------------------------------------------
# "Sessions de recharge" on the history


def generated_sessions(data: Data) -> dict[str, dict[str, Any]]:
    """Ended sessions as the history generator produced them (parsed from its lines)."""
    found = {}
    for line in data.history:
        if not line.startswith("session,") or 'event="end"' not in line:
            continue
        head, fields, ts = line.rsplit(" ", 2)
        tags = dict(part.split("=", 1) for part in head.split(",")[1:])
        values = dict(part.split("=", 1) for part in fields.split(","))
        found[values["session_id"].strip('"')] = {
            "start": int(ts),
            "point": tags["point"],
            "badge": tags.get("badge", ""),
            "kwh": float(values["energy_wh"]) / 1000,
            "eur": float(values["cost_eur"]),
            "duration_s": float(values["duration_s"]),
        }
    return found


@checks(sessions("Sessions de recharge"))
def test_session_table_lists_the_generated_sessions(data: Data) -> None:
    """One row per ended session: the start event (stored before the guest badged, so
    without badge, in another series) is not listed a second time."""
    expected = generated_sessions(data)
    assert len(expected) >= 2  # 4 to 9 over three days, depending on the hour it ends
    start, end = data.history_start, data.history_end
    table = panel(data, "irve-sessions", "Sessions de recharge", NORMAL, start, end)
    rows = [{**s.tags, **dict(zip(s.columns, row, strict=True))} for s in table for row in s.values]
    assert sorted(r["session_id"] for r in rows) == sorted(expected)
    for got in rows:
        want = expected[got["session_id"]]
        assert (got["point"], got["badge"]) == (want["point"], want["badge"])
        assert got["badge"].startswith("chambre-")
        assert got["time"] == want["start"]
        assert got["kWh"] == pytest.approx(want["kwh"])
        assert got["Coût"] == pytest.approx(want["eur"])
        assert got["kW max"] > 3  # a car charging at 32 A
        # Grafana's "Fin" column: Time + fin_ms (calculateField transformation).
        assert got["time"] + got["fin_ms"] == want["start"] + want["duration_s"] * 1000


@checks(
    sessions("Sessions par jour"),
    sessions("Énergie par chambre (badge)"),
    sessions("Coût par chambre (badge)"),
)
def test_sessions_per_day_and_per_room(data: Data) -> None:
    expected = generated_sessions(data)
    per_day: dict[date, int] = defaultdict(int)
    per_room: dict[str, float] = defaultdict(float)
    cost_room: dict[str, float] = defaultdict(float)
    for s in expected.values():
        per_day[local_day(s["start"])] += 1
        per_room[s["badge"]] += s["kwh"]
        cost_room[s["badge"]] += s["eur"]
    start, end = data.history_start, data.history_end
    days = panel(data, "irve-sessions", "Sessions par jour", NORMAL, start, end)
    actual = {local_day(ts): n for ts, n in days[0].values if n}
    assert actual == dict(per_day)
    rooms = panel(data, "irve-sessions", "Énergie par chambre (badge)", NORMAL, start, end)
    approx_dict({b: s.values[0][1] for b, s in by_tag(rooms, "badge").items()}, dict(per_room))
    costs = panel(data, "irve-sessions", "Coût par chambre (badge)", NORMAL, start, end)
    approx_dict({b: s.values[0][1] for b, s in by_tag(costs, "badge").items()}, dict(cost_room))


# ---------------------------------------------------------------------------------------------
# alert rules: fire on the overload scenarios, quiet on the normal site

RULES = {rule.uid: rule for rule in gq.alert_rules()}
OVERCURRENT = "irve-socket-overcurrent"
OVERLOADED = "irve-site-overload"
WARNING = "irve-site-overload-warning"
METER_OFFLINE = "irve-meter-offline"
COLLECTOR_OFFLINE = "irve-collector-offline"


def instances(found: set[gq.Labels]) -> set[tuple[str, ...]]:
    return {tuple(v for _, v in labels) for labels in found}


def fired(data: Data, uid: str, at: datetime) -> set[tuple[str, ...]]:
    """Label values of the instances in state Alerting at `at`, evaluated every 10 s before."""
    rule = RULES[uid]
    return instances(gq.firing(rule, gq.evaluation_times(at, rule), data.run))


def summary(data: Data, uid: str, at: datetime, **labels: str) -> str:
    """The rule's summary for the instance with these labels, as evaluated at `at`: each
    `$values.REF.Value` is that reduce step over its own query."""
    rule = RULES[uid]
    values = {}
    for ref, step in rule.reduced.items():
        text = gq.render(step.query, at - timedelta(seconds=step.range_s), at)
        series = next(s for s in data.run(text) if s.tags == labels)
        value = gq.reduce(gq.column(series, series.columns[1]), step.reducer)
        assert value is not None
        values[ref] = value
    return gq.render_summary(rule.annotations["summary"], labels, values)


@checks(
    *(
        gq.rule_key(uid, ref)
        for uid in (OVERCURRENT, OVERLOADED, WARNING)
        for ref in [None, *RULES[uid].value_refs]
    )
)
def test_overload_alerts_fire_for_each_site_at_its_own_limits(data: Data) -> None:
    """Four sites in one database, two sets of ratings: the hotel's (32 A, 36 kVA) and the
    gîte's (16 A, 9 kVA). 20 A and 8.5 kW are alarms at the gîte only."""
    at = data.live_end
    # 40 A of 32 A and 20 A of 16 A (labels point, site); nobody else.
    assert fired(data, OVERCURRENT, at) == {("cp1", OVERLOAD), ("cp1", GITE)}
    # 40 kW of 36 kVA; not the gîte's 8.5 kW of 9 kVA, nor the hotel's 34 kW.
    assert fired(data, OVERLOADED, at) == {(OVERLOAD,)}
    # Above 90 %: 40 kW and 34 kW of 36 kVA, 8.5 kW of 9 kVA (8,100 W).
    assert fired(data, WARNING, at) == {(OVERLOAD,), (PRE,), (GITE,)}
    # The condition held for less than `for` at the start of the run: pending, not firing.
    early = data.live_start + timedelta(seconds=40)
    assert fired(data, OVERCURRENT, early) == set()
    assert fired(data, OVERLOADED, data.live_start + timedelta(seconds=20)) == set()
    # What the phone reads: the measured value and the site's own limit.
    assert summary(data, OVERCURRENT, at, site=OVERLOAD, point="cp1") == (
        "Surintensité sur la borne cp1 (hotel-test) : 40.0 A pour 32 A autorisés depuis plus"
        " d'une minute."
    )
    assert summary(data, OVERCURRENT, at, site=GITE, point="cp1") == (
        "Surintensité sur la borne cp1 (gite-test) : 20.0 A pour 16 A autorisés depuis plus"
        " d'une minute."
    )
    assert summary(data, OVERLOADED, at, site=OVERLOAD) == (
        "Puissance souscrite dépassée sur le site hotel-test : 40000 W pour 36000 W souscrits"
        " depuis plus de 30 s."
    )
    assert summary(data, WARNING, at, site=PRE) == (
        "Pré-alarme sur le site hotel-pre : 34000 W, au-delà du seuil de pré-alarme de 32400 W"
        " depuis plus de 30 s."
    )
    assert summary(data, WARNING, at, site=GITE) == (
        "Pré-alarme sur le site gite-test : 8500 W, au-delà du seuil de pré-alarme de 8100 W"
        " depuis plus de 30 s."
    )


@checks(gq.rule_key(METER_OFFLINE), gq.rule_key(COLLECTOR_OFFLINE))
def test_offline_alerts(data: Data) -> None:
    end = data.live_end
    # Right after the run: cp2 silent for ~70 s, everything else fresh: quiet.
    assert fired(data, METER_OFFLINE, end) == set()
    assert fired(data, COLLECTOR_OFFLINE, end) == set()
    # 90 s later without new data: only the silenced meter has been quiet for 2 minutes.
    later = end + timedelta(seconds=90)
    assert fired(data, METER_OFFLINE, later) == {("cp2", OVERLOAD)}
    assert fired(data, COLLECTOR_OFFLINE, later) == set()
    # Collectors stopped for 3 minutes: every site's collector is reported offline.
    stopped = end + timedelta(seconds=180)
    assert fired(data, COLLECTOR_OFFLINE, stopped) == {(site,) for site in SCENARIOS}


def test_offline_alerts_keep_firing_however_long_the_silence(data: Data) -> None:
    """An hour, 7 hours (the old rules' 6 h range had dropped the series by then: Grafana
    resolved the alert while the meters were still dead), 2 days and 300 days after the last
    reading: every meter and every site is still reported, never resolved."""
    meters = {(m.id, site) for site, config in data.sites.items() for m in config.meters}
    for silence in (timedelta(hours=1), timedelta(hours=7), timedelta(hours=48)):
        at = data.live_end + silence
        assert fired(data, METER_OFFLINE, at) == meters, silence
        assert fired(data, COLLECTOR_OFFLINE, at) == {(site,) for site in SCENARIOS}, silence
    at = data.live_end + timedelta(days=300)
    assert fired(data, COLLECTOR_OFFLINE, at) == {(site,) for site in SCENARIOS}


def test_offline_alerts_quiet_on_a_new_installation(data: Data) -> None:
    """An empty database (nothing collected yet) is NoData, which these rules treat as OK."""
    now = datetime.now(UTC)
    for uid in (METER_OFFLINE, COLLECTOR_OFFLINE):
        rule = RULES[uid]
        assert rule.no_data_state == "OK"
        assert gq.run_rule(rule, now, data.empty.query) == {}
        assert gq.firing(rule, gq.evaluation_times(now, rule), data.empty.query) == set()


def test_alerts_quiet_on_a_normal_day(data: Data) -> None:
    """A busy day of the normal site (history: guests charging at 32 A, evening peaks) never
    trips the over-current or overload rules, evaluated every 10 minutes over its last day."""
    end = data.history_end
    times = [end - timedelta(minutes=10 * i) for i in range(144)]
    for uid in (OVERCURRENT, OVERLOADED, WARNING):
        rule = RULES[uid]
        evaluated = 0
        for at in times:
            met = gq.run_rule(rule, at, data.run)
            mine = [ok for labels, ok in met.items() if ("site", NORMAL) in labels]
            assert not any(mine), uid
            evaluated += len(mine)
        assert evaluated >= len(times), uid  # the history's readings carry the site's limits
    peak = data.run(
        f'SELECT max("power_w") FROM "reading" WHERE "site" = \'{NORMAL}\' AND "role" = \'main\''
    )
    assert 15000 < peak[0].values[0][1] < 32400  # a real evening peak, below the pre-alarm
