"""KNXnet/IP routing (multicast) against a real knxd router. Multicast does not leave a process
on the loopback interface, so the two ends live in two network namespaces joined by a veth
pair: the collector's switches (`knx.routing: true`) in one, knxd as a routing server with its
own group monitor (`knxtool groupsocketlisten`) in the other. Needs root (`ip netns`): skipped
otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import require

pytestmark = [pytest.mark.knx]

REPO = Path(__file__).resolve().parents[2]
SENDER = textwrap.dedent(
    """
    import asyncio
    from collector.knx.switches import KnxSwitches
    from collector.load.settings import KnxSettings

    async def main() -> None:
        settings = KnxSettings.model_validate(
            {"routing": True, "local_ip": "10.77.0.1", "switches": {"cp1": "1/1/1"}}
        )
        async with KnxSwitches(settings) as knx:
            assert await knx.wait_connected(10)
            print((await knx.switch("cp1", False)).status, flush=True)
            await asyncio.sleep(0.3)
            print((await knx.switch("cp1", True)).status, flush=True)
            await asyncio.sleep(0.3)

    asyncio.run(main())
    """
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = str(os.getpid())[-5:]
    a, b = f"irve-a{tag}", f"irve-b{tag}"
    va, vb = f"irva{tag}", f"irvb{tag}"
    try:
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", va, "type", "veth", "peer", "name", vb)
        for ns, dev, addr in ((a, va, "10.77.0.1/24"), (b, vb, "10.77.0.2/24")):
            ip("link", "set", dev, "netns", ns)
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up", "multicast", "on")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
    except subprocess.CalledProcessError as exc:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        pytest.skip(f"cannot make network namespaces: {exc.stderr.decode().strip()}")
    try:
        yield a, b, vb
    finally:
        for ns in (a, b):  # deleting a namespace deletes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_routing_switches_reach_a_knxd_router_in_another_namespace(
    tmp_path: Path, namespaces: tuple[str, str, str]
) -> None:
    collector_ns, router_ns, router_dev = namespaces
    sock = tmp_path / "knxd.sock"
    knxd = subprocess.Popen(
        ["ip", "netns", "exec", router_ns, require("knxd"), "--eibaddr=0.0.1",
         "--client-addrs=0.0.2:8", "--no-timestamp", f"--listen-local={sock}", "--Routing",
         f"--Interface={router_dev}", "--Server=224.0.23.12:3671",
         "--layer2=dummy:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    monitor = None
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert knxd.poll() is None and time.monotonic() < deadline, "knxd did not start"
            time.sleep(0.05)
        monitor = subprocess.Popen(
            ["ip", "netns", "exec", router_ns, "knxtool", "groupsocketlisten", f"local:{sock}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(0.5)  # the monitor is listening
        sender = subprocess.run(
            ["ip", "netns", "exec", collector_ns, sys.executable, "-c", SENDER],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sender.returncode == 0, sender.stderr
        assert sender.stdout.split() == ["sent", "sent"]
        time.sleep(0.3)
    finally:
        if monitor is not None:
            monitor.terminate()
        knxd.terminate()
        knxd.wait(timeout=10)
    assert monitor is not None
    heard = [line for line in monitor.communicate(timeout=10)[0].splitlines() if "1/1/1" in line]
    assert [line.rsplit(":", 1)[1].strip() for line in heard] == ["00", "01"]
