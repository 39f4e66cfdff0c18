"""Tempo tariffs for the tests: the regulated price rows of 2025-08 and 2026-02, a Tempo tariff
with chosen day colours, and a point fed minute by minute at a constant power."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from collector.config import TariffSettings, TempoColour
from collector.energy.intervals import PointEnergy
from collector.energy.tariff import Tariff
from collector.wire.messages import EnergyMessage

PARIS = ZoneInfo("Europe/Paris")
SOCKET_W = 32 * 253.0
TEMPO_2025_08 = {
    "blue": {"hp": 0.1494, "hc": 0.1232},
    "white": {"hp": 0.1730, "hc": 0.1391},
    "red": {"hp": 0.6468, "hc": 0.1460},
}
TEMPO_2026_02 = {
    "blue": {"hp": 0.1612, "hc": 0.1325},
    "white": {"hp": 0.1871, "hc": 0.1499},
    "red": {"hp": 0.7060, "hc": 0.1575},
}
ROWS: list[dict[str, Any]] = [
    {"since": date(2025, 8, 1), "base": 0.1952, "hp": 0.2081, "hc": 0.1635, "tempo": TEMPO_2025_08},
    {"since": date(2026, 2, 1), "base": 0.1927, "hp": 0.2065, "hc": 0.1579, "tempo": TEMPO_2026_02},
]


def tempo(colours: dict[date, TempoColour] | None = None, option: str = "tempo") -> Tariff:
    settings = TariffSettings.model_validate(
        {
            "option": option,
            "offpeak": ["22:00-06:00"],
            "tempo": {"source": "mqtt", "fallback": "blue"},
            "prices": ROWS,
        }
    )
    return Tariff(settings, PARIS, colours if colours is not None else {})


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[arg-type,misc]


def feed(m: PointEnergy, start: datetime, minutes: int, power_w: float) -> list[EnergyMessage]:
    out: list[EnergyMessage] = []
    for minute in range(minutes + 1):
        ts = start + timedelta(minutes=minute)
        out += m.update(ts, 1_000_000 + power_w * minute / 60, power_w).windows
    return out
