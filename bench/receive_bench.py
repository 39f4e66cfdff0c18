"""MQTT receive paths alone: CPU per 1,000 messages to drain one backlog, no decoding.

What the ingestor's network thread pays before any message is decoded, for each way of
receiving evaluated for it (docs/benchmarks.md, "Ingestor"): paho as it comes, `StreamClient`
change by change, and gmqtt with the PUBACK sent on receipt or held until a (simulated) batch
write, when gmqtt is installed (`pip install gmqtt`; it is not a dependency).

Method: one mosquitto (persistence off, unlimited queues and in-flight window); a persistent
session per client, then N state messages published once, so each client drains the same
queued backlog, one after the other, all in this process. Each acknowledges its messages in
batches of 5,000 (as the ingestor does after a write), except gmqtt's optimistic variant,
which acknowledges each on receipt. CPU = this process's time from the first message to the
last; the garbage collector is tuned as in `irve ingest`.

    python -m bench.receive_bench [--messages N] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.ingest_bench import create_session, mosquitto, publish_backlog
from collector.ingest.receiver import StreamClient
from collector.ingest.service import tune_gc

BATCH = 5000
TIMEOUT_S = 600
Measured = tuple[float, float]  # messages per second, ms of CPU per 1,000 messages


def drain_paho(
    port: int, client_id: str, n: int, *, stream: bool, lean: bool, many: bool
) -> Measured:
    """paho's Client (`stream` False) or StreamClient with its changes switched on one by one:
    `lean` the in-place QoS 1 PUBLISH path, `many` one write for a batch's PUBACKs."""
    client: mqtt.Client = (StreamClient if stream else mqtt.Client)(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.manual_ack_set(True)
    mids: list[int] = []
    started: list[Measured] = []
    done = threading.Event()

    def acknowledge(batch: list[int]) -> None:
        if many and isinstance(client, StreamClient):
            client.ack_many(batch)
        else:
            for mid in batch:
                client.ack(mid, 1)

    def receive(_topic: str, _payload: bytes | bytearray, mid: int) -> None:
        if not started:
            started.append((time.monotonic(), time.process_time()))
        mids.append(mid)
        if len(mids) % BATCH == 0 or len(mids) == n:
            acknowledge(mids[-BATCH:])
        if len(mids) == n:
            done.set()

    if isinstance(client, StreamClient) and lean:
        client.on_stream_message = receive
    else:
        client.on_message = lambda _c, _u, msg: receive(msg.topic, msg.payload, msg.mid)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 65535
    client.connect("127.0.0.1", port, clean_start=False, properties=props)
    thread = threading.Thread(target=client.loop_forever, daemon=True)
    thread.start()
    if not done.wait(TIMEOUT_S):
        raise TimeoutError(f"{client_id}: {len(mids):,} of {n:,} messages")
    wall, cpu = time.monotonic(), time.process_time()
    client.disconnect()
    thread.join(10)
    return n / (wall - started[0][0]), (cpu - started[0][1]) / n * 1e6


def drain_gmqtt(port: int, client_id: str, n: int, *, hold: bool) -> Measured:
    """gmqtt: PUBACK on receipt, or (`hold`) once `on_message`, a coroutine awaiting the
    write of its batch, returns (`optimistic_acknowledgement=False`)."""
    gmqtt: Any = importlib.import_module("gmqtt")

    async def run() -> Measured:
        loop = asyncio.get_running_loop()
        count = 0
        written: asyncio.Future[None] = loop.create_future()  # the open batch's write
        finished: asyncio.Future[None] = loop.create_future()
        started: list[Measured] = []

        def receive() -> asyncio.Future[None]:
            nonlocal count, written
            if not started:
                started.append((time.monotonic(), time.process_time()))
            count += 1
            batch = written
            if count % BATCH == 0 or count == n:
                written = loop.create_future()
                batch.set_result(None)
                if count == n:
                    finished.set_result(None)
            return batch

        async def held(*_: object) -> int:
            await receive()
            return 0  # PUBACK reason: success

        def optimistic(*_: object) -> int:
            receive()
            return 0

        client = gmqtt.Client(
            client_id,
            clean_session=False,
            optimistic_acknowledgement=not hold,
            receive_maximum=65535,
            session_expiry_interval=3600,
        )
        client.on_message = held if hold else optimistic
        await client.connect("127.0.0.1", port)
        await asyncio.wait_for(finished, TIMEOUT_S)
        wall, cpu = time.monotonic(), time.process_time()
        await asyncio.sleep(0.5)  # the last PUBACKs out before the DISCONNECT
        await client.disconnect()
        return n / (wall - started[0][0]), (cpu - started[0][1]) / n * 1e6

    return asyncio.run(run())


CLIENTS: dict[str, tuple[str, Callable[[int, str, int], Measured]]] = {
    "paho": (
        "paho 2.x as it comes, manual_ack, one ack per message",
        lambda p, c, n: drain_paho(p, c, n, stream=False, lean=False, many=False),
    ),
    "stream-reads": (
        "StreamClient's 64 KiB reads only (paho's PUBLISH handling, one ack per message)",
        lambda p, c, n: drain_paho(p, c, n, stream=True, lean=False, many=False),
    ),
    "stream-lean": (
        "+ QoS 1 PUBLISH read in place (one ack per message)",
        lambda p, c, n: drain_paho(p, c, n, stream=True, lean=True, many=False),
    ),
    "stream": (
        "StreamClient: + a batch's PUBACKs in one write",
        lambda p, c, n: drain_paho(p, c, n, stream=True, lean=True, many=True),
    ),
    "gmqtt-optimistic": (
        "gmqtt, PUBACK on receipt (at most once)",
        lambda p, c, n: drain_gmqtt(p, c, n, hold=False),
    ),
    "gmqtt-held": (
        "gmqtt, PUBACK once the batch is written (at least once)",
        lambda p, c, n: drain_gmqtt(p, c, n, hold=True),
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receive_bench")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(CLIENTS)}")
    args = parser.parse_args(argv)
    n = args.messages
    names = args.only.split(",") if args.only else list(CLIENTS)
    if importlib.util.find_spec("gmqtt") is None:
        skipped = [name for name in names if name.startswith("gmqtt")]
        names = [name for name in names if name not in skipped]
        if skipped:
            print(f"gmqtt is not installed: {', '.join(skipped)} not measured")
    tune_gc()
    broker = mosquitto(Path(tempfile.mkdtemp(prefix="receive-bench-")) / "mqtt")
    broker.start()
    try:
        for name in names:
            create_session(f"receive-{name}", broker.port)
        publish_backlog(broker.port, n, int(time.time() * 1000) - n)
        print(f"{n:,} queued state messages, drained by each client in turn")
        print("| client | messages/s | CPU per 1,000 messages |\n|---|---:|---:|")
        for name in names:
            label, drain = CLIENTS[name]
            rate, cpu_ms = drain(broker.port, f"receive-{name}", n)
            print(f"| {label} | {rate:,.0f} | {cpu_ms:.1f} ms |", flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
