"""A billed hotel for the billing tests: its site file, guests' charges played through the live
energy/session code, and the ingestor's line protocol for what that code produced."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from collector.config import SiteConfig
from collector.energy.processor import EnergyProcessor
from collector.meters.reading import Reading
from collector.pipeline import MemoryStateStore
from collector.wire.kinds import Outgoing, kind_of

PARIS = ZoneInfo("Europe/Paris")
SITE_ID = "hotel-bill"
# The guide's December 2023 figures (tariffs.md 2.7).
GUIDE_PRICES = {"since": "2023-08-01", "base": 0.2276, "hp": 0.2426, "hc": 0.1828}
STEP = timedelta(seconds=30)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[arg-type,misc]


def site_file(
    tmp_path: Path,
    influx_port: int = 1,
    mqtt_port: int = 1883,
    prices: list[dict[str, Any]] | None = None,
    option: str = "hphc",
    name: str = "site.yaml",
    hotel: dict[str, Any] | None = None,
) -> Path:
    """A hotel with two 32 A sockets, HC 22:00-06:00, InfluxDB 1.x at `influx_port`."""
    meters = [
        {
            "id": f"cp{i}",
            "bus": "board",
            "unit": i,
            "profile": "eastron-sdm120",
            "role": "socket",
            "socket": {"label": f"Borne {i}", "rated_current_a": 32, "phases": 1},
        }
        for i in (1, 2)
    ]
    data = {
        "site": {"id": SITE_ID, "name": "Hôtel <Test>", "subscribed_power_kva": 36},
        "tariff": {
            "option": option,
            "offpeak": ["22:00-06:00"],
            "prices": prices or [GUIDE_PRICES],
        },
        "buses": [{"id": "board", "type": "tcp", "host": "127.0.0.1", "port": 1502}],
        "meters": meters,
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port},
        "influx": {"url": f"http://127.0.0.1:{influx_port}", "api_version": "1"},
        "state_dir": str(tmp_path / "state"),
    }
    if hotel is not None:
        data["hotel"] = hotel
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Charge:
    """A car drawing `power_w` on `point` over [start, end); a badge shown at `badge_at`."""

    point: str
    start: datetime
    end: datetime
    power_w: float
    badge: str | None = None
    badge_at: datetime | None = None


def scripted_messages(
    site: SiteConfig, charges: list[Charge], start: datetime, end: datetime
) -> Iterator[tuple[Outgoing, Reading | None]]:
    """Readings every 30 s on every socket through the live energy stage (without its state
    file, as for demo history), index = integral of power; yields what it produces, and each
    reading (as a `state` item) so callers can store the index too."""
    energy = EnergyProcessor(site, store=MemoryStateStore())
    index = dict.fromkeys((m.id for m in site.meters), 1_000_000.0)
    badges = sorted((c.badge_at, c.point, c.badge) for c in charges if c.badge and c.badge_at)
    t = start.astimezone(UTC)
    while t <= end:
        while badges and badges[0][0] <= t:
            _, point, badge = badges.pop(0)
            for out in energy.on_badge(point, badge, t):
                yield out, None
        for meter in site.meters:
            power = sum(c.power_w for c in charges if c.point == meter.id and c.start <= t < c.end)
            reading = Reading(meter.id, t, {"power_w": power, "energy_wh": index[meter.id]})
            for out in energy.on_reading(reading):
                yield out, None
            yield Outgoing(meter.id, reading.to_state()), reading
            index[meter.id] += power * STEP.total_seconds() / 3600
        for out in energy.on_tick(t):
            yield out, None
        t += STEP


def to_lines(produced: Iterator[tuple[Outgoing, Reading | None]]) -> list[str]:
    """The ingestor's line mapping for readings, energy windows and sessions."""
    out = []
    for item, _ in produced:
        if item.kind in ("state", "energy", "session"):
            to_line = kind_of(item.message).to_line
            assert to_line is not None
            line = to_line(SITE_ID, item.point or "", item.message, 0)
            if line is not None:
                out.append(line)
    return out


# Room 12: 21 kWh across 22:00 (badge before plug-in), then 7 kWh across 06:00 on the other
# socket (badge during the charge). Room 14 charges on cp1 at noon (not room 12's bill).
GUEST_CHARGES = [
    Charge(
        "cp1",
        local(2026, 1, 10, 20, 30),
        local(2026, 1, 10, 23, 30),
        7000.0,
        "room-12",
        local(2026, 1, 10, 20, 25),
    ),
    Charge(
        "cp2",
        local(2026, 1, 11, 5, 0),
        local(2026, 1, 11, 7, 0),
        3500.0,
        "12",
        local(2026, 1, 11, 5, 30),
    ),
    Charge(
        "cp1",
        local(2026, 1, 11, 12, 0),
        local(2026, 1, 11, 13, 0),
        7000.0,
        "chambre-14",
        local(2026, 1, 11, 12, 10),
    ),
]


HOTEL_BLOCK = {
    "address": "12 rue de la Gare\n59650 Villeneuve-d'Ascq",
    "siret": "732 829 320 00074",
    "vat_number": "FR 12 732829320",
}
