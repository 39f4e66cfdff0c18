"""Ingest throughput: a broker backlog of state messages drained into InfluxDB.

Everything real and local, each consumer a separate process measured with psutil:
- `null`: a paho-mqtt consumer that does nothing (MQTT 5, Receive Maximum 65535, paho's
  automatic acknowledgement): the ceiling for a Python MQTT client on this machine;
- `irve ingest` into influxd 1.6.7 (API 1, /write) and into victoria-metrics (API 2 through
  influxdb-client), with its at-least-once manual acknowledgement;
- the databases' raw line-protocol write rate (pre-built lines, batches of 5,000, one client);
- peers: Node-RED + node-red-contrib-influxdb (npm, installed once into a cache folder) and
  mqtt2influxdb (PyPI, in a temp venv), when they install and run here; what happened is
  reported either way;
- head to head: `irve ingest` and Node-RED's batch flow (`join` + `influxdb batch`) into
  influxd, alternately, `--repeat` rounds of their own backlog copies; the ratio of their
  points per CPU-second per round and its median.

Method: one mosquitto (persistence off: we measure the consumers, not the broker's disk);
each consumer's persistent session is created first, then N messages are published once,
so every consumer drains the same backlog of N queued messages. Rate = N / (time of the last
point stored - time of the first message taken), polled every 20 ms; CPU = user+system time
of the consumer process over that span; peak RSS = VmHWM of the process at the end.

    python -m bench.ingest_bench [--quick] [--repeat R] [--messages N] [--no-peers]
        [--peer-timeout S] [--node-red-dir DIR]

`--quick`: 50,000 messages, the ceiling and the head-to-head rounds only (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import paho.mqtt.client as mqtt
import psutil
import urllib3
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.ingest.service import tune_gc
from tests.support import servers

REPO = Path(__file__).resolve().parent.parent
SITES, POINTS = 100, 10  # topics irve/site-NNN/cpN/state
PEER_SAMPLE = 5000  # messages for a peer that cannot drain a persistent backlog
PAIR = ["ingest-share-a", "ingest-share-b"]


@dataclass
class Result:
    name: str
    points: int
    seconds: float
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return self.points / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_point(self) -> float | None:
        return self.cpu_s / self.points if self.cpu_s and self.points else None

    def row(self, ceiling: Result | None) -> str:
        """A table row; `ceiling` (the do-nothing consumer) for the shares of it."""
        cpu = f"{self.cpu_per_point * 1e6:.0f} ms" if self.cpu_per_point else "-"
        rss = f"{self.peak_rss_mb:.0f} MB" if self.peak_rss_mb else "-"
        share = cpu_share = "-"
        if ceiling is not None and self.points:
            share = f"{self.rate / ceiling.rate:.0%}"
            if self.cpu_per_point and ceiling.cpu_per_point:
                cpu_share = f"{ceiling.cpu_per_point / self.cpu_per_point:.0%}"
        rate = f"{self.rate:,.0f}" if self.points else "0"
        return f"| {self.name} | {rate} | {share} | {cpu} | {cpu_share} | {rss} | {self.note} |"


HEADER = (
    "| consumer | points/s | of ceiling | CPU per 1,000 points | of ceiling, by CPU | peak RSS "
    "| notes |\n|---|---:|---:|---:|---:|---:|---|"
)


def mosquitto(workdir: Path) -> servers.Server:
    port = servers.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
        "log_type error\nlog_type warning\n"
    )
    return servers.mosquitto_on(conf, port, workdir)


def payload(i: int, base_ms: int) -> bytes:
    millis = base_ms + i
    seconds, ms = divmod(millis, 1000)
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
    body = {
        "ts": ts,
        "power_w": 7000.0 + i % 400,
        "current_a": 30.5,
        "voltage_v": 230.1,
        "energy_wh": 1_000_000.0 + i,
        "charging": True,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def topic(i: int) -> str:
    return f"irve/site-{i % SITES:03d}/cp{(i // SITES) % POINTS}/state"


# --- MQTT helpers (paho in this process) ----------------------------------------------------


def create_session(client_id: str, port: int, share_group: str = "") -> None:
    """A persistent session subscribed to every state topic, so the broker queues for it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_start()
    servers.wait_until(client.is_connected, 10, "session client")
    share = f"$share/{share_group}/" if share_group else ""
    client.subscribe(f"{share}irve/+/+/state", qos=1)
    time.sleep(0.3)  # the SUBACK
    client.disconnect()
    client.loop_stop()


def publish_backlog(port: int, n: int, base_ms: int) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    started = time.monotonic()
    for i in range(n):
        # paho's packet ids wrap at 65535: never have that many messages outstanding.
        while i - acked[0] >= 20_000:
            time.sleep(0.005)
        client.publish(topic(i), payload(i, base_ms), qos=1)
    servers.wait_until(lambda: acked[0] >= n, 600, "backlog published")
    elapsed = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def null_consumer(port: int, client_id: str, n: int) -> None:
    """Run as a subprocess: count messages, print the time of the first and the n-th."""
    tune_gc()  # the same collector settings as `irve ingest`, so the ceiling stays fair
    count = [0]

    def on_message(_c: object, _u: object, _m: object) -> None:
        count[0] += 1
        if count[0] == 1:
            print(f"first {time.time()}", flush=True)
        if count[0] == n:
            print(f"done {time.time()}", flush=True)

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    client.loop_forever()


# --- measuring a consumer process -----------------------------------------------------------


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of the process and its children (Node-RED runs in one node process)."""
    times = proc.cpu_times()
    total = times.user + times.system
    for child in proc.children(recursive=True):
        try:
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
        except psutil.Error:
            pass
    return float(total)


def measure(
    name: str,
    procs: list[subprocess.Popen[bytes]],
    started: Callable[[], bool],
    done: Callable[[], int],
    n: int,
    timeout: float,
    poll_s: float = 0.02,
) -> Result:
    """Poll until the first message is taken, then until `done()` reaches n (or timeout).
    Several processes (one consumer scaled out): CPU added up, the largest peak RSS."""
    ps = [psutil.Process(proc.pid) for proc in procs]

    def cpu() -> float:
        return sum(cpu_seconds(p) for p in ps)

    def exited() -> bool:
        return any(proc.poll() is not None for proc in procs)

    deadline = time.monotonic() + timeout
    while not started():
        if exited() or time.monotonic() > deadline:
            codes = [proc.poll() for proc in procs]
            return Result(name, 0, 0, note=f"never started (exit {codes})")
        time.sleep(0.02)
    t0, cpu0 = time.monotonic(), cpu()
    stored = 0
    while True:
        stored = done()
        if stored >= n or exited() or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    t1, cpu1 = time.monotonic(), cpu()
    rss = max((peak_rss_mb(proc.pid) or 0.0) for proc in procs) or None
    note = "" if stored >= n else f"stopped at {stored:,} of {n:,} after {t1 - t0:.0f} s"
    return Result(name, stored, t1 - t0, cpu1 - cpu0, rss, note)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- databases --------------------------------------------------------------------------------


def influx_count(db: servers.Server, measurement: str = "reading") -> int:
    url = f"http://127.0.0.1:{db.port}/query?" + urllib.parse.urlencode(
        {"db": "irve", "q": f'SELECT COUNT("power_w") FROM "{measurement}"'}
    )
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            series = json.load(response)["results"][0].get("series")
    except OSError:
        return 0
    return int(series[0]["values"][0][1]) if series else 0


def influx_query(db: servers.Server, query: str) -> None:
    url = f"http://127.0.0.1:{db.port}/query?" + urllib.parse.urlencode({"db": "irve", "q": query})
    urllib.request.urlopen(url, data=b"", timeout=30).close()


def vm_count(db: servers.Server, measurement: str = "reading") -> int:
    query = f"sum(count_over_time({measurement}_power_w[2d]))"
    url = f"http://127.0.0.1:{db.port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            result = json.load(response)["data"]["result"]
    except OSError:
        return 0
    return int(float(result[0]["value"][1])) if result else 0


def raw_write_rate(url: str, n: int, base_ms: int) -> Result:
    """The database alone: pre-built lines, batches of 5,000, one HTTP client, no MQTT."""
    lines = [
        f"raw,site=site-{i % SITES:03d},point=cp{(i // SITES) % POINTS},role=socket "
        f"power_w={7000.0 + i % 400},current_a=30.5,voltage_v=230.1,"
        f"energy_wh={1_000_000.0 + i},charging=1.0 {base_ms + i}"
        for i in range(n)
    ]
    pool = urllib3.PoolManager()
    started = time.monotonic()
    for i in range(0, n, 5000):
        response = pool.request("POST", url, body="\n".join(lines[i : i + 5000]).encode())
        if response.status >= 300:
            raise RuntimeError(f"raw write failed: {response.status} {response.data[:200]!r}")
    return Result("", n, time.monotonic() - started)


# --- the consumers ----------------------------------------------------------------------------


def run_null(broker: servers.Server, client_id: str, n: int, timeout: float) -> Result:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.ingest_bench", "--null", str(broker.port), client_id, str(n)],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    marks: dict[str, float] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, value = line.decode().split()
            marks[word] = float(value)

    threading.Thread(target=read, daemon=True).start()
    result = measure(
        f"paho consumer doing nothing ({client_id})",
        [proc],
        lambda: "first" in marks,
        lambda: n if "done" in marks else 0,
        n,
        timeout,
    )
    stop(proc)
    if "done" in marks:  # the process's own clock is more precise than our 20 ms polling
        result.seconds = marks["done"] - marks["first"]
    return result


def metric(url: str, name: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def run_ingest(
    name: str,
    broker: servers.Server,
    db: servers.Server,
    api: str,
    n: int,
    timeout: float,
    client_ids: list[str],
    share_group: str = "",
) -> Result:
    """`irve ingest`, one process per client id (several: on the shared subscription)."""
    procs, urls = [], []
    for client_id in client_ids:
        http_port = servers.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
        env.update(
            IRVE_MQTT__HOST="127.0.0.1",
            IRVE_MQTT__PORT=str(broker.port),
            IRVE_INFLUX__URL=f"http://127.0.0.1:{db.port}",
            IRVE_INFLUX__API_VERSION=api,
            IRVE_INFLUX__TOKEN="bench",
            IRVE_INGEST__CLIENT_ID=client_id,
            IRVE_INGEST__SHARE_GROUP=share_group,
            IRVE_INGEST__HTTP_HOST="127.0.0.1",
            IRVE_INGEST__HTTP_PORT=str(http_port),
            IRVE_LOG_LEVEL="WARNING",
            PYTHONPATH=str(REPO),
        )
        command = [sys.executable, "-m", "collector", "ingest"]
        procs.append(subprocess.Popen(command, cwd=REPO, env=env))
        urls.append(f"http://127.0.0.1:{http_port}/metrics")
    result = measure(
        name,
        procs,
        lambda: any(metric(url, "irve_ingest_messages_total") > 0 for url in urls),
        lambda: int(sum(metric(url, "irve_ingest_points_written_total") for url in urls)),
        n,
        timeout,
        poll_s=0.1,  # rendering /metrics costs the ingestor CPU: 0.5 % of a 20 s run
    )
    for proc in procs:
        stop(proc)
    return result


NODE_RED_FUNCTION = """
const p = msg.payload, parts = msg.topic.split("/");
const fields = {};
for (const k of ["power_w", "current_a", "voltage_v", "energy_wh"]) {
  if (p[k] !== null && p[k] !== undefined) fields[k] = p[k];
}
if (p.charging !== undefined) fields.charging = p.charging ? 1.0 : 0.0;
const tags = {site: parts[1], point: parts[2], role: "socket"};
if (BATCHED) {
  msg.payload = {measurement: "MEASUREMENT", fields, tags, timestamp: new Date(p.ts)};
} else {
  fields.time = new Date(p.ts);
  msg.payload = [fields, tags];
}
return msg;
"""


def node_red_flow(
    broker_port: int, db: servers.Server, api: str, batched: bool, round_: int = 0
) -> list[dict[str, object]]:
    """mqtt in -> function -> influxdb out (one write per message, as the node works), or
    with `batched`: mqtt in -> function -> join (5,000 messages or 1 s) -> influxdb batch."""
    # Ids differ from every property value: Node-RED takes a value equal to a config node's id
    # for a reference to it ("Circular config node dependency").
    influx: dict[str, object] = {"id": "cfg-db", "type": "influxdb", "database": "irve"}
    out: dict[str, object] = {
        "id": "out", "type": "influxdb batch" if batched else "influxdb out", "z": "tab",
        "influxdb": "cfg-db", "measurement": "nodered", "wires": [],
    }  # fmt: skip
    if api == "1":
        influx.update(hostname="127.0.0.1", port=str(db.port), influxdbVersion="1.x")
        out.update(precision="ms", retentionPolicy="")
    else:
        influx.update(url=f"http://127.0.0.1:{db.port}", influxdbVersion="2.0", timeout="10")
        out.update(org="irve", bucket="irve", precisionV18FluxV20="ms")
    func = NODE_RED_FUNCTION.replace("BATCHED", "true" if batched else "false").replace(
        "MEASUREMENT", node_red_measurement(batched, round_)
    )
    join = {
        "id": "batcher", "type": "join", "z": "tab", "mode": "custom", "build": "array",
        "property": "payload", "propertyType": "msg", "useparts": False, "accumulate": False,
        "count": "5000", "timeout": "1", "wires": [["out"]],
    }  # fmt: skip
    return [
        {"id": "tab", "type": "tab", "label": "bench"},
        {
            "id": "cfg-mqtt", "type": "mqtt-broker", "broker": "127.0.0.1",
            "port": str(broker_port), "clientid": node_red_client(api, batched, round_),
            "autoConnect": True,
            "usetls": False, "protocolVersion": "5", "keepalive": "60", "cleansession": False,
            "sessionExpiry": "3600",
        },
        {
            "id": "in", "type": "mqtt in", "z": "tab", "topic": "irve/+/+/state", "qos": "1",
            "datatype": "json", "broker": "cfg-mqtt", "nl": False, "rap": False, "inputs": 0,
            "wires": [["fn"]],
        },
        {"id": "fn", "type": "function", "z": "tab", "func": func, "outputs": 1,
         "wires": [["batcher" if batched else "out"]]},
        *([join] if batched else []),
        influx,
        out,
    ]  # fmt: skip


def node_red_client(api: str, batched: bool, round_: int = 0) -> str:
    return f"nodered-{api}{'-batch' if batched else ''}{f'-r{round_}' if round_ else ''}"


def node_red_measurement(batched: bool, round_: int = 0) -> str:
    """Each round its own measurement: the same backlog rewritten would already count n."""
    return f"nodered{'_batch' if batched else ''}{f'_r{round_}' if round_ else ''}"


NODE_RED_VARIANTS = [("1", False), ("2", False), ("1", True), ("2", True)]


def default_node_red_dir() -> Path:
    """Where the bench keeps its npm install between runs (a few hundred MB, made once)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    # Named after what `install_node_red` installs, so that changing it installs afresh.
    return Path(cache) / "irve-bench" / "node-red-4-influxdb-0.7"


def install_node_red(where: Path) -> str | None:
    """npm install into `where` unless already there; None when done, else why not."""
    if (where / "node_modules" / "node-red-contrib-influxdb").exists():
        return None
    if shutil.which("npm") is None:
        return "npm is not installed"
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
         "node-red@4", "node-red-contrib-influxdb@0.7"],
        cwd=where, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return None if proc.returncode == 0 else f"npm install failed: {proc.stderr[-300:]}"


def run_node_red(
    where: Path,
    broker: servers.Server,
    db: servers.Server,
    api: str,
    batched: bool,
    n: int,
    timeout: float,
    round_: int = 0,
) -> Result:
    flow = "join + influxdb batch" if batched else "influxdb out"
    name = f"Node-RED 4 + node-red-contrib-influxdb 0.7 ({flow}), API {api}"
    user_dir = Path(tempfile.mkdtemp(prefix="nodered-user-"))
    (user_dir / "node_modules").symlink_to(where / "node_modules")
    flows = node_red_flow(broker.port, db, api, batched, round_)
    (user_dir / "flows.json").write_text(json.dumps(flows))
    (user_dir / "flows_cred.json").write_text(json.dumps({"cfg-db": {"token": "bench"}}))
    (user_dir / "settings.js").write_text(
        f"module.exports = {{uiPort: {servers.free_port()}, uiHost: '127.0.0.1',"
        " credentialSecret: false, flowFile: 'flows.json',"
        " logging: {console: {level: 'info'}}};"
    )
    log = (user_dir / "node-red.log").open("wb")
    proc = subprocess.Popen(
        ["node", str(where / "node_modules" / "node-red" / "red.js"),
         "--userDir", str(user_dir), "--settings", str(user_dir / "settings.js")],
        cwd=where, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    measurement = node_red_measurement(batched, round_)
    counter = (
        (lambda: influx_count(db, measurement))
        if api == "1"
        else (lambda: vm_count(db, measurement))
    )
    log_path = user_dir / "node-red.log"
    # Started = connected to the broker (flows deployed); the database cannot tell: VM makes
    # points searchable only about a second after they arrive.
    result = measure(
        name,
        [proc],
        lambda: "Connected to broker" in log_path.read_text(),
        counter,
        n,
        timeout,
        poll_s=0.25,  # a count query is not free for the database
    )
    stop(proc)
    errors = [
        re.sub(r"^\d+ \w+ [\d:]+ - ", "", line)[:160]  # without Node-RED's time stamp
        for line in log_path.read_text(errors="replace").splitlines()
        if "[error]" in line or "WARN" in line
    ]
    if errors:
        common, times = Counter(errors).most_common(1)[0]
        said = f"{len(errors):,} errors logged, e.g. {times:,}x `{common}`"
        result.note = f"{result.note}; {said}" if result.note else said
    if not result.points:
        result.note += " log: " + log_path.read_text()[-300:].replace("\n", " ")
    return result


def run_mqtt2influxdb(broker: servers.Server, vm: servers.Server, base_ms: int) -> Result:
    """mqtt2influxdb connects with a random client id and a clean session, so it cannot drain
    a backlog: it gets a live stream of PEER_SAMPLE messages instead."""
    name = "mqtt2influxdb 2.0.6 (PyPI), into victoria-metrics"
    venv = Path(tempfile.mkdtemp(prefix="m2i-"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "mqtt2influxdb==2.0.6"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if pip.returncode != 0:
        return Result(name, 0, 0, note=f"pip install failed: {pip.stderr[-200:]}")
    fields = {key: {"value": f"$.payload.{key}", "type": "float"} for key in
              ("power_w", "current_a", "voltage_v", "energy_wh")}  # fmt: skip
    config = {
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "influxdb": {"host": "http://127.0.0.1", "port": vm.port, "token": "bench",
                     "org": "irve", "bucket": "irve"},
        "points": [{"measurement": "m2i", "topic": "irve/+/+/state", "qos": 1,
                    "fields": fields, "tags": {"site": "$.topic[1]", "point": "$.topic[2]"}}],
    }  # fmt: skip
    conf = venv / "config.json"  # JSON is YAML
    conf.write_text(json.dumps(config))
    log = venv / "m2i.log"
    proc = subprocess.Popen(
        [str(venv / "bin" / "mqtt2influxdb"), "-c", str(conf)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    time.sleep(3)
    if proc.poll() is not None:
        return Result(name, 0, 0, note="exited: " + log.read_text()[-300:].replace("\n", " "))
    ps = psutil.Process(proc.pid)
    started, cpu0 = time.monotonic(), cpu_seconds(ps)
    publish_backlog(broker.port, PEER_SAMPLE, base_ms)
    deadline = started + 120
    stored = 0
    while time.monotonic() < deadline and (stored := vm_count(vm, "m2i")) < PEER_SAMPLE:
        time.sleep(0.5)
        if time.monotonic() - started > 30 and stored == 0:
            break
    # Before stopping it: it does not exit on SIGTERM (it reconnects) and is killed after 15 s.
    elapsed, cpu = time.monotonic() - started, cpu_seconds(ps) - cpu0
    rss = peak_rss_mb(proc.pid)
    stop(proc)
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line or "WARN" in line]
    note = f"live stream of {PEER_SAMPLE:,}"
    if stored < PEER_SAMPLE:
        note += f"; stored {stored:,}. First error: {errors[0][-220:] if errors else 'none'}"
    return Result(name, stored, elapsed, cpu, rss, note)


# --- main -------------------------------------------------------------------------------------


def head_to_head(
    broker: servers.Server,
    influx: servers.Server,
    node_red_dir: Path,
    n: int,
    rounds: int,
    timeout: float,
) -> list[tuple[Result, Result]]:
    """`irve ingest` and Node-RED's batch flow into influxd (API 1), one after the other,
    `rounds` times, the order swapped every round so that a drift in the machine's load
    favours neither; each drains its own copy of the backlog."""
    pairs = []
    for round_ in range(1, rounds + 1):

        def ingest(round_: int = round_) -> Result:
            name = f"irve ingest, API 1 (influxd 1.6.7), round {round_}"
            return run_ingest(name, broker, influx, "1", n, timeout, [f"ingest-1-r{round_}"])

        def node_red(round_: int = round_) -> Result:
            result = run_node_red(node_red_dir, broker, influx, "1", True, n, timeout, round_)
            result.name += f", round {round_}"
            return result

        if round_ % 2:
            ours = ingest()
            theirs = node_red()
        else:
            theirs = node_red()
            ours = ingest()
        print(ours.row(None), flush=True)
        print(theirs.row(None), flush=True)
        pairs.append((ours, theirs))
    return pairs


def points_per_cpu_s(result: Result) -> float:
    return result.points / result.cpu_s if result.cpu_s else 0.0


def ratio_lines(pairs: list[tuple[Result, Result]]) -> list[str]:
    """Points per CPU-second of `irve ingest` over Node-RED's, per round and their median."""
    lines, ratios = [], []
    for ours, theirs in pairs:
        if not (ours.points and theirs.points and ours.cpu_s and theirs.cpu_s):
            lines.append(f"- round: not comparable ({ours.note or theirs.note or 'no CPU'})")
            continue
        ratio = points_per_cpu_s(ours) / points_per_cpu_s(theirs)
        ratios.append(ratio)
        lines.append(
            f"- {ours.name.rsplit(', ', 1)[1]}: irve ingest {points_per_cpu_s(ours):,.0f} points "
            f"per CPU-second, Node-RED batch flow {points_per_cpu_s(theirs):,.0f}: "
            f"ratio {ratio:.2f} (by rate {ours.rate / theirs.rate:.2f})"
        )
    if ratios:
        lines.append(f"- median ratio by CPU over {len(ratios)} rounds: {median(ratios):.2f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_bench")
    parser.add_argument("--messages", type=int, help="backlog size (200,000; 50,000 --quick)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the ceiling and the rounds against Node-RED's batch flow, into influxd",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of irve ingest against Node-RED's batch flow (0: none)",
    )
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peer-timeout", type=float, default=240)
    parser.add_argument(
        "--node-red-dir",
        type=Path,
        default=default_node_red_dir(),
        help="where Node-RED is installed from npm, once (default: %(default)s)",
    )
    parser.add_argument("--null", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.null:
        null_consumer(int(args.null[0]), args.null[1], int(args.null[2]))
        return
    n = args.messages or (50_000 if args.quick else 200_000)
    full = not args.quick
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    broker, influx, vm, vm_pair = (
        mosquitto(work / "mqtt"),
        servers.influxd(work / "influxd"),
        servers.victoria_metrics(work / "vm"),
        servers.victoria_metrics(work / "vm-pair"),  # its own count for the shared run
    )
    used = [broker, influx, vm, vm_pair] if full else [broker, influx]
    results: list[Result] = []
    pairs: list[tuple[Result, Result]] = []
    notes: list[str] = []
    node_red_dir: Path = args.node_red_dir
    try:
        for server in used:
            server.start()
        influx_query(influx, "CREATE DATABASE irve")
        base_ms = int(time.time() * 1000) - n - 60_000
        # The ceiling is measured before and after irve ingest: other load on the machine
        # moves both, and the faster of the two is taken (the conservative choice).
        consumers = (
            ["null-before", "ingest-1", "ingest-2", "null-after"] if full else ["null-before"]
        )
        node_red = False
        if not args.no_peers:
            why = install_node_red(node_red_dir)
            if why:
                notes.append(f"Node-RED not measured: {why}")
            else:
                node_red = True
                if full:
                    consumers += [node_red_client(a, b) for a, b in NODE_RED_VARIANTS]
        rounds = args.repeat if node_red else 0
        for round_ in range(1, rounds + 1):
            consumers += [f"ingest-1-r{round_}", node_red_client("1", True, round_)]
        for client_id in consumers:
            create_session(client_id, broker.port)
        if full:  # scaled out: two processes on one shared subscription, half the backlog each
            for client_id in PAIR:
                create_session(client_id, broker.port, share_group="bench")
        print(f"publishing a backlog of {n:,} state messages...", flush=True)
        published_s = publish_backlog(broker.port, n, base_ms)
        notes.append(f"backlog published in {published_s:.1f} s ({n / published_s:,.0f}/s)")

        before = run_null(broker, "null-before", n, 600)
        print(before.row(None), flush=True)
        ceiling = before
        results.append(before)
        if full:
            ceiling = measure_full(broker, influx, vm, vm_pair, n, base_ms, before, results)
            if node_red:
                for api, batched in NODE_RED_VARIANTS:
                    db = influx if api == "1" else vm
                    result = run_node_red(
                        node_red_dir, broker, db, api, batched, n, args.peer_timeout
                    )
                    results.append(result)
                    print(result.row(ceiling), flush=True)
            if not args.no_peers:
                # Into the quieter database: Node-RED's failed writes can leave `vm` busy.
                result = run_mqtt2influxdb(broker, vm_pair, base_ms)
                results.append(result)
                print(result.row(ceiling), flush=True)
        if rounds:
            pairs = head_to_head(broker, influx, node_red_dir, n, rounds, args.peer_timeout)
    finally:
        for server in used:
            server.stop()
    print()
    print(f"{n:,} state messages, {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.platform()}, "
          f"load average {os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print(f"ceiling: {ceiling.name}")
    print(HEADER)
    for result in [*results, *(r for pair in pairs for r in pair)]:
        is_reference = result.name.startswith(("paho", "raw"))
        print(result.row(None if is_reference else ceiling))
    for note in notes:
        print(f"- {note}")
    if pairs:
        print("\nirve ingest against Node-RED's batch flow (join + influxdb batch), API 1:")
        for line in ratio_lines(pairs):
            print(line)


def measure_full(
    broker: servers.Server,
    influx: servers.Server,
    vm: servers.Server,
    vm_pair: servers.Server,
    n: int,
    base_ms: int,
    before: Result,
    results: list[Result],
) -> Result:
    """irve ingest with either API, scaled out, the ceiling again, the databases alone;
    appended to `results`. Returns the ceiling (the faster do-nothing run)."""
    ingests: list[Result] = []
    for api, db, count in (("1", influx, influx_count), ("2", vm, vm_count)):
        name = f"irve ingest, API {api} ({'influxd 1.6.7' if api == '1' else 'victoria-metrics'})"
        result = run_ingest(name, broker, db, api, n, 600, [f"ingest-{api}"])
        searchable_by = time.monotonic() + 60  # VM indexes new points within seconds
        while count(db) < n and time.monotonic() < searchable_by:
            time.sleep(0.5)
        result.note = (result.note + f" {count(db):,} points in the database").strip()
        ingests.append(result)
        print(result.row(before), flush=True)
    pair = run_ingest(
        "irve ingest x 2 processes, shared subscription, API 2 (victoria-metrics)",
        broker, vm_pair, "2", n, 600, PAIR, share_group="bench",
    )  # fmt: skip
    searchable_by = time.monotonic() + 60
    while vm_count(vm_pair) < n and time.monotonic() < searchable_by:
        time.sleep(0.5)
    pair.note = f"{vm_count(vm_pair):,} points in the database; CPU of both, RSS of each"
    ingests.append(pair)
    print(pair.row(before), flush=True)
    after = run_null(broker, "null-after", n, 600)
    print(after.row(None), flush=True)
    results += [after, *ingests]
    for api, db in (("1", influx), ("2", vm)):
        url = (
            f"http://127.0.0.1:{db.port}/write?db=irve&precision=ms"
            if api == "1"
            else f"http://127.0.0.1:{db.port}/api/v2/write?bucket=irve&precision=ms"
        )
        raw = raw_write_rate(url, n, base_ms)
        target = "influxd 1.6.7 /write" if api == "1" else "victoria-metrics /api/v2/write"
        raw.name = f"raw line protocol into {target}"
        raw.note = "database alone, batches of 5,000"
        results.append(raw)
        print(raw.row(None), flush=True)
    return max(before, after, key=lambda r: r.rate)


if __name__ == "__main__":
    main()
