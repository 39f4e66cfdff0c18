"""Node-RED as a peer of `irve collect` in bench.collector_bench: installed from npm into a
cache folder, and a flow generated from a meter profile.

The flow is what an integrator would draw for the same work: one modbus-client (Modbus TCP)
per meter, a modbus-read node per meter polling the profile's one read at the poll interval,
one function node decoding the values from the answer's bytes into an object, one mqtt out
node (one broker connection) publishing it as JSON on the read's topic. Nothing of Node-RED is
committed: `install` runs npm into the cache folder once and reuses it after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from collector.meters.plan import plan_reads
from collector.meters.profile import Profile

NODE_RED = "4.1.8"
MODBUS_NODES = "5.60.2"
# node-red-contrib-modbus 5.60.2 depends on @openp4nr/modbus-serial as a tarball URL on a
# private registry (not on npm): the npm `overrides` field points it at the npm package it
# forks, modbus-serial, whose API it uses.
OVERRIDES = {"@openp4nr/modbus-serial": "npm:modbus-serial@8.0.25"}
PREFIX = "nr"  # topics {PREFIX}/{point}/state
# Buffer readers for the profile's types (word order msw: the big-endian readers are exact).
_READERS = {"u16": "readUInt16BE", "s16": "readInt16BE", "u32": "readUInt32BE",
            "s32": "readInt32BE", "f32": "readFloatBE", "f64": "readDoubleBE"}  # fmt: skip


def cache_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "irve-bench" / f"node-red-{NODE_RED}-modbus-{MODBUS_NODES}"


def red_js(folder: Path) -> Path:
    return folder / "node_modules" / "node-red" / "red.js"


def package_json() -> dict[str, Any]:
    return {
        "name": "irve-bench-node-red",
        "private": True,
        "description": "Node-RED for bench.collector_bench (installed by the bench, not committed)",
        "dependencies": {"node-red": NODE_RED, "node-red-contrib-modbus": MODBUS_NODES},
        "overrides": OVERRIDES,
    }


def install(folder: Path) -> str | None:
    """npm install Node-RED and the Modbus nodes into `folder`; None when done, else why not."""
    if red_js(folder).exists() and (folder / "node_modules" / "node-red-contrib-modbus").exists():
        return None
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return "node and npm are not installed (Debian: apt-get install nodejs npm)"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps(package_json(), indent=2) + "\n")
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error"],
        cwd=folder, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if done.returncode != 0 or not red_js(folder).exists():
        return f"npm install failed: {done.stderr[-300:]}"
    return None


def decoder(profile: Profile) -> str:
    """The function node's body: the profile's values from the answer's bytes (one read)."""
    (request,) = plan_reads(profile)
    fields = []
    for slot in request.slots:
        spec = profile.values[slot.name]
        if profile.word_order_of(spec) != "msw":
            raise ValueError(f"{profile.id}: the bench's Node-RED flow reads msw word order only")
        value = f"b.{_READERS[spec.type]}({2 * slot.offset})"
        factor = profile.factor_of(spec)
        if factor != 1.0:
            value = f"{value} * {factor!r}"
        fields.append(f"    {slot.name}: {value},")
    return "\n".join(
        ["const b = msg.responseBuffer.buffer;", "msg.payload = {", *fields, "};", "return msg;"]
    )


def flow(
    profile: Profile, meters: int, modbus_port: int, mqtt_port: int, poll_s: float
) -> list[dict[str, Any]]:
    """The flow file: meters 1..N (unit ids 1..N, points cp1..cpN) behind one gateway."""
    plan = plan_reads(profile)
    if len(plan) != 1 or plan[0].function != "input":
        raise ValueError(f"{profile.id}: the bench's Node-RED flow needs one input-register read")
    (request,) = plan
    tab = {"id": "tab", "type": "tab", "label": "irve bench", "disabled": False}
    broker = {
        "id": "broker", "type": "mqtt-broker", "name": "mosquitto", "broker": "127.0.0.1",
        "port": str(mqtt_port), "clientid": "", "autoConnect": True, "usetls": False,
        "protocolVersion": "4", "keepalive": "60", "cleansession": True, "autoUnsubscribe": True,
        "birthTopic": "", "closeTopic": "", "willTopic": "",
    }  # fmt: skip
    decode = {
        "id": "decode", "type": "function", "z": "tab", "name": "decode", "func": decoder(profile),
        "outputs": 1, "noerr": 0, "initialize": "", "finalize": "", "libs": [],
        "wires": [["publish"]], "x": 300, "y": 40,
    }  # fmt: skip
    publish = {
        "id": "publish", "type": "mqtt out", "z": "tab", "name": "", "topic": "", "qos": "0",
        "retain": "false", "broker": "broker", "wires": [], "x": 500, "y": 40,
    }  # fmt: skip
    # Node-RED tells flow nodes (x, y: drawn in the editor) from config nodes (no position).
    nodes: list[dict[str, Any]] = [tab, broker, decode, publish]
    for unit in range(1, meters + 1):
        nodes.append(
            {
                "id": f"client{unit}", "type": "modbus-client", "name": f"meter {unit}",
                "clienttype": "tcp", "bufferCommands": True, "stateLogEnabled": False,
                "queueLogEnabled": False, "failureLogEnabled": True,
                "tcpHost": "127.0.0.1", "tcpPort": str(modbus_port), "tcpType": "DEFAULT",
                "serialPort": "/dev/ttyUSB", "serialType": "RTU-BUFFERD",
                "serialBaudrate": "9600", "serialDatabits": "8", "serialStopbits": "1",
                "serialParity": "none", "serialConnectionDelay": "100",
                "serialAsciiResponseStartDelimiter": "0x3A",
                "unit_id": str(unit), "commandDelay": "1", "clientTimeout": "1000",
                "reconnectOnTimeout": True, "reconnectTimeout": "2000",
                "parallelUnitIdsAllowed": True, "showErrors": False, "showWarnings": True,
                "showLogs": False,
            }
        )  # fmt: skip
        nodes.append(
            {
                "id": f"read{unit}", "type": "modbus-read", "z": "tab", "name": f"cp{unit}",
                "topic": f"{PREFIX}/cp{unit}/state", "showStatusActivities": False,
                "logIOActivities": False, "showErrors": False, "showWarnings": True,
                "unitid": str(unit), "dataType": "InputRegister", "adr": str(request.address),
                "quantity": str(request.count), "rate": f"{round(poll_s * 1000)}",
                "rateUnit": "ms", "delayOnStart": False, "enableDeformedMessages": False,
                "startDelayTime": "", "server": f"client{unit}", "useIOFile": False,
                "ioFile": "", "useIOForPayload": False, "emptyMsgOnFail": False,
                "wires": [["decode"], []], "x": 100, "y": 40 * unit,
            }
        )  # fmt: skip
    return nodes


SETTINGS = """\
// Written by bench.collector_bench: no editor, no HTTP nodes, warnings only.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %d,
    httpAdminRoot: false,
    httpNodeRoot: false,
    credentialSecret: false,
    flowFilePretty: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
};
"""


def command(
    folder: Path,
    work: Path,
    profile: Profile,
    meters: int,
    modbus_port: int,
    mqtt_port: int,
    poll_s: float,
    ui_port: int,
) -> list[str]:
    """Write the user folder (settings, flow) under `work`; the argv that runs Node-RED."""
    user = work / "node-red"
    user.mkdir(parents=True, exist_ok=True)
    (user / "settings.js").write_text(SETTINGS % ui_port)
    nodes = flow(profile, meters, modbus_port, mqtt_port, poll_s)
    (user / "flows.json").write_text(json.dumps(nodes, indent=1) + "\n")
    node = shutil.which("node") or "node"
    return [node, str(red_js(folder)), "--userDir", str(user),
            "--settings", str(user / "settings.js"), str(user / "flows.json")]  # fmt: skip
