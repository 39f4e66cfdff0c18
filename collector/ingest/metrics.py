"""The ingestor's counters and their Prometheus text exposition (format 0.0.4), hand-rolled.

Counters are bumped by one thread each (the MQTT thread or the writer thread) and read by the
HTTP thread; a slightly stale read is fine for monitoring.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from collector.ingest.writer import WriteStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1


@dataclass
class PruneStats:
    """The housekeeping's runs (collector.ingest.housekeeping), bumped by its thread only."""

    runs: int = 0  # finished, failed or not
    failures: int = 0
    hours_pruned: int = 0  # of raw readings


@dataclass
class IngestMetrics:
    messages: Counter[str] = field(default_factory=Counter)  # valid messages in, by kind
    dead_letters: Counter[str] = field(default_factory=Counter)  # by kind ("unknown" topic)
    received: int = 0  # valid messages handed to the batcher (MQTT thread)
    settled: int = 0  # of those, acknowledged or given back to the broker (writer thread)
    acked: int = 0
    batch_latency: Histogram = field(default_factory=Histogram)
    broker_connected: bool = False
    connects: int = 0
    prune: PruneStats | None = None  # with influx.raw_retention_days only


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(metrics: IngestMetrics, writes: WriteStats) -> str:
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("irve_ingest_messages_total", "counter", "Valid messages received, by kind.")
    for kind, count in sorted(metrics.messages.items()):
        out.append(f'irve_ingest_messages_total{{kind="{_escape(kind)}"}} {count}')
    family("irve_ingest_dead_letters_total", "counter", "Messages refused, by kind.")
    for kind, count in sorted(metrics.dead_letters.items()):
        out.append(f'irve_ingest_dead_letters_total{{kind="{_escape(kind)}"}} {count}')
    with writes.lock:
        simple = [
            ("irve_ingest_points_written_total", "counter", "Points the database accepted.", writes.points_written),
            ("irve_ingest_points_dropped_total", "counter", "Points the database refused (4xx), dropped.", writes.points_dropped),
            ("irve_ingest_write_requests_total", "counter", "Write requests sent.", writes.requests),
            ("irve_ingest_write_errors_total", "counter", "Write requests that failed.", writes.write_errors),
            ("irve_ingest_write_retries_total", "counter", "Write retries after an outage or 5xx.", writes.retries),
            ("irve_ingest_database_up", "gauge", "1 if the last write reached the database.", int(writes.database_up)),
        ]  # fmt: skip
    simple += [
        ("irve_ingest_acked_total", "counter", "Messages acknowledged to the broker.", metrics.acked),
        ("irve_ingest_backlog", "gauge", "Messages received, not yet written and acknowledged.", metrics.received - metrics.settled),
        ("irve_ingest_broker_connected", "gauge", "1 while connected to the broker.", int(metrics.broker_connected)),
        ("irve_ingest_broker_connects_total", "counter", "Connections to the broker.", metrics.connects),
    ]  # fmt: skip
    if metrics.prune is not None:
        simple += [
            ("irve_ingest_prune_runs_total", "counter", "Runs of the raw readings' pruning.", metrics.prune.runs),
            ("irve_ingest_prune_failures_total", "counter", "Pruning runs that failed (retried the next hour).", metrics.prune.failures),
            ("irve_ingest_pruned_hours_total", "counter", "Hours of raw readings pruned, after their backfill.", metrics.prune.hours_pruned),
        ]  # fmt: skip
    for name, kind, help_text, value in simple:
        family(name, kind, help_text)
        out.append(f"{name} {value}")
    hist = metrics.batch_latency
    family("irve_ingest_batch_seconds", "histogram", "Time to write one batch, retries included.")
    cumulative = 0
    for bound, count in zip(hist.buckets, hist.counts, strict=True):
        cumulative += count
        out.append(f'irve_ingest_batch_seconds_bucket{{le="{bound:g}"}} {cumulative}')
    out.append(f'irve_ingest_batch_seconds_bucket{{le="+Inf"}} {hist.count}')
    out.append(f"irve_ingest_batch_seconds_sum {hist.total:.6f}")
    out.append(f"irve_ingest_batch_seconds_count {hist.count}")
    return "\n".join(out) + "\n"
