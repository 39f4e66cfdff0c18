"""Golden files: what the product writes and publishes, byte for byte, for fixed inputs.

They pin the behaviour across refactors: the line protocol `irve demo-history` computes for a
fixed seed over 7 days, the MQTT messages (topic, payload, retain, critical) the collector
publishes over a simulated day with an injected clock, and the line protocol of every JSON
example in docs/mqtt.md.

A change that is meant to alter them regenerates them on purpose:
`IRVE_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py`, then review `git diff
tests/golden/` (the gzipped files: `zdiff`) and commit them with the change that explains why.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.alerts.processor import AlertProcessor
from collector.collect import Collector, Stages
from collector.config import SiteConfig
from collector.energy.processor import EnergyProcessor
from collector.ingest.payloads import decode
from collector.meters.profile import Profile
from collector.meters.reading import Reading
from collector.pipeline import MemoryStateStore
from collector.simulator.history import history_lines
from collector.simulator.model import SiteModel, apply_scenario
from collector.site import load_site
from collector.wire.kinds import Envelope
from tests.support.links import RecordingLink

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
SITE_FILE = REPO / "config" / "examples" / "hotel-vda.yaml"
REGENERATE = os.environ.get("IRVE_REGENERATE_GOLDEN") == "1"

HISTORY_START = datetime(2026, 11, 16, tzinfo=UTC)
HISTORY_DAYS = 7
HISTORY_SEED = 7
DAY_START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
DAY_STEP_S = 15.0
DAY_SEED = 3


def compare(name: str, actual: str) -> None:
    """`actual` equals the golden file `name` (gzipped when it ends in .gz); on a difference,
    the first differing line is shown."""
    path = GOLDEN / name
    if REGENERATE:
        data = actual.encode()
        path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    raw = path.read_bytes()
    expected = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
    if actual == expected:
        return
    got, want = actual.splitlines(), expected.splitlines()
    for number, (a, b) in enumerate(zip(got, want, strict=False), 1):
        if a != b:
            pytest.fail(f"{name}: line {number} differs:\n  got:  {a}\n  want: {b}")
    pytest.fail(f"{name}: {len(got)} lines, {len(want)} expected (or line ends differ)")


def reference_site() -> SiteConfig:
    site, _ = load_site(str(SITE_FILE))
    return site


def polled_site() -> tuple[SiteConfig, dict[str, Profile]]:
    """The reference site polled every DAY_STEP_S, so its alert timers see real silences."""
    site, profiles = load_site(str(SITE_FILE))
    return site.model_copy(update={"poll_interval_s": DAY_STEP_S}), profiles


def phases() -> dict[str, int]:
    site, profiles = load_site(str(SITE_FILE))
    return {m.id: profiles[m.profile].phases for m in site.meters}


@pytest.mark.slow
def test_demo_history_line_protocol_is_unchanged() -> None:
    lines = history_lines(
        reference_site(),
        phases(),
        HISTORY_START,
        HISTORY_START + timedelta(days=HISTORY_DAYS),
        seed=HISTORY_SEED,
    )
    compare("demo-history.lp.gz", "".join(line + "\n" for line in lines))


# (seconds into the day, scenario or event): overloads, an overcurrent, a silent meter,
# badges before and during sessions, a refused badge.
DAY_SCRIPT: dict[int, list[str]] = {
    6 * 3600: ["badge:cp1:room-12"],
    8 * 3600: ["overload:42000"],
    8 * 3600 + 120: ["clear:main"],
    9 * 3600: ["overcurrent:cp2:45"],
    9 * 3600 + 60: ["clear:cp2"],
    12 * 3600: ["offline:cp2"],
    12 * 3600 + 300: ["online:cp2"],
    14 * 3600: ["badge:cp2:chambre-104", "badge:cp1:\\bad"],
    17 * 3600 + 30: ["overload:34000"],
    17 * 3600 + 600: ["clear:main"],
    19 * 3600: ["badge:cp1:room-7", "badge:cp2:room-8"],
    21 * 3600: ["offline:main"],
    21 * 3600 + 900: ["online:main"],
}


def collector_day() -> Iterator[Envelope]:
    site, profiles = polled_site()
    model = SiteModel(site, phases(), seed=DAY_SEED, start=DAY_START, step_s=DAY_STEP_S)
    now = [DAY_START]
    energy = EnergyProcessor(site, profiles=profiles, store=MemoryStateStore())
    stages = Stages(alerts=AlertProcessor(site), energy=energy)
    recorder = RecordingLink()
    collector = Collector(site, profiles, recorder, stages, clock=lambda: now[0])
    offline: set[str] = set()
    for meter in site.meters:
        collector.availability(meter.id, True, None)
    steps = int(86400 / DAY_STEP_S)
    for _ in range(steps):
        model.step()
        now[0] = model.now
        second = int((model.now - DAY_START).total_seconds())
        for action in DAY_SCRIPT.get(second, []):
            name, point, *rest = action.split(":", 2)
            if name == "badge":
                payload = json.dumps({"badge": rest[0]}).encode()
                recorder.receive(f"irve/{site.site.id}/{point}/badge", payload)
            elif name == "offline":
                offline.add(point)
                collector.availability(point, False, "no answer")
            elif name == "online":
                offline.discard(point)
                collector.availability(point, True, None)
            elif name == "clear":
                model.control(point).clear()
            else:
                apply_scenario(model, action)
        for meter in site.meters:
            if meter.id not in offline:
                collector.reading(Reading(meter.id, model.now, dict(model.values(meter.id))))
        collector.tick(model.now)
        yield from recorder.sent
        recorder.sent.clear()
    for processor in stages.processors:
        processor.close()


@pytest.mark.slow
def test_collector_messages_over_a_day_are_unchanged() -> None:
    rows = [
        json.dumps([e.topic, e.payload.decode(), e.retain, e.critical], ensure_ascii=False)
        for e in collector_day()
    ]
    compare("collector-day.jsonl.gz", "".join(row + "\n" for row in rows))


_EXAMPLE = re.compile(r"<!-- model: (\w+) -->\n```json\n(.*?)\n```", re.S)
_TOPIC_OF = {
    "StateMessage": "irve/hotel-vda/cp1/state",
    "EnergyMessage": "irve/hotel-vda/cp1/energy",
    "SessionMessage": "irve/hotel-vda/cp1/session",
    "EventMessage": "irve/hotel-vda/cp1/event",
    "AlertMessage": "irve/hotel-vda/alert",
    "SubscriptionMessage": "irve/hotel-vda/subscription",
    "LimitMessage": "irve/hotel-vda/cp1/limit",
}


def test_docs_examples_line_protocol_is_unchanged() -> None:
    """Each JSON example of docs/mqtt.md, as the ingestor writes it (or why it writes none)."""
    text = (REPO / "docs" / "mqtt.md").read_text(encoding="utf-8")
    out = []
    for model, example in _EXAMPLE.findall(text):
        topic = _TOPIC_OF.get(model)
        if topic is None:
            out.append(f"# {model}: not written to InfluxDB")
            continue
        decoded = decode("irve", topic, example.encode(), 0)
        out.append(f"# {model}\n{decoded.line}")
    assert len(out) >= 8
    compare("docs-mqtt-examples.lp", "".join(row + "\n" for row in out))
