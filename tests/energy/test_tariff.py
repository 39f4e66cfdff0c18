"""Tariff periods, seasons, DST days and price rows (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.config import TariffSettings
from collector.energy.tariff import Tariff, TariffError

PARIS = ZoneInfo("Europe/Paris")


def tariff(**kw: Any) -> Tariff:
    data: dict[str, Any] = {
        "option": "hphc",
        "offpeak": ["22:00-06:00"],
        "prices": [{"since": "2025-08-01", "base": 0.1952, "hp": 0.2081, "hc": 0.1635}],
    }
    data.update(kw)
    return Tariff(TariffSettings.model_validate(data), PARIS)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[arg-type,misc]


def hours_per_period(t: Tariff, day: date) -> dict[str, float]:
    """Walk a local day boundary to boundary, as the interval code does."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=PARIS).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=PARIS).astimezone(
        UTC
    )
    totals: dict[str, float] = {}
    t0 = start
    while t0 < end:
        t1 = min(t.next_boundary(t0), end)
        period = t.period_at(t0)
        totals[period] = totals.get(period, 0.0) + (t1 - t0).total_seconds() / 3600
        t0 = t1
    return dict(totals)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 3, 28), {"HC": 8.0, "HP": 16.0}),
        (date(2026, 3, 29), {"HC": 7.0, "HP": 16.0}),  # 23 h day: 02:00-03:00 does not exist
        (date(2026, 10, 25), {"HC": 9.0, "HP": 16.0}),  # 25 h day: 02:00-03:00 happens twice
        (date(2026, 10, 26), {"HC": 8.0, "HP": 16.0}),
    ],
)
def test_dst_days_hours_per_period_are_exact(day: date, expected: dict[str, float]) -> None:
    assert hours_per_period(tariff(), day) == expected


def test_dst_day_with_range_inside_the_skipped_hour() -> None:
    t = tariff(offpeak=["01:30-02:30", "12:00-13:00"])
    assert hours_per_period(t, date(2026, 3, 29)) == {"HC": 1.5, "HP": 21.5}
    # 01:30 CET -> the clock jumps at 02:00 CET to 03:00 CEST, when HC ends.
    assert t.next_boundary(local(2026, 3, 29, 1, 45)) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # 25 October: 02:00-02:30 happens twice, so the range holds 1.5 h.
    assert hours_per_period(t, date(2026, 10, 25)) == {"HC": 2.5, "HP": 22.5}


def test_wrapping_and_split_ranges() -> None:
    t = tariff(offpeak=["23:30-07:30", "13:00-15:00"])
    assert t.period_at(local(2026, 1, 5, 23, 30)) == "HC"
    assert t.period_at(local(2026, 1, 5, 7, 29)) == "HC"
    assert t.period_at(local(2026, 1, 5, 7, 30)) == "HP"
    assert t.period_at(local(2026, 1, 5, 14, 0)) == "HC"
    assert t.period_at(local(2026, 1, 5, 15, 0)) == "HP"
    assert t.next_boundary(local(2026, 1, 5, 8, 0)) == local(2026, 1, 5, 13, 0)
    assert t.next_boundary(local(2026, 1, 5, 13, 0)) == local(2026, 1, 5, 15, 0)
    assert hours_per_period(t, date(2026, 1, 5)) == {"HC": 10.0, "HP": 14.0}


def test_seasonal_schedules_summer_and_winter() -> None:
    t = tariff(
        offpeak=["23:00-07:00"],
        seasons=[
            {
                "name": "summer",
                "start": "04-01",
                "end": "10-31",
                "offpeak": ["02:00-07:00", "11:00-14:00"],
            },
            {
                "name": "winter",
                "start": "11-01",
                "end": "03-31",
                "offpeak": ["01:00-06:00", "14:00-17:00"],
            },
        ],
    )
    assert t.period_at(local(2026, 7, 1, 12, 0)) == "HC"
    assert t.period_at(local(2026, 7, 1, 15, 0)) == "HP"
    assert t.period_at(local(2026, 12, 1, 15, 0)) == "HC"
    assert t.period_at(local(2026, 12, 1, 12, 0)) == "HP"
    assert t.period_at(local(2027, 1, 1, 1, 30)) == "HC"  # winter season wraps the new year
    # Season change at local midnight between 31 Oct and 1 Nov.
    assert t.period_at(local(2026, 10, 31, 12, 0)) == "HC"
    assert t.period_at(local(2026, 11, 1, 12, 0)) == "HP"
    assert hours_per_period(t, date(2026, 7, 1)) == {"HC": 8.0, "HP": 16.0}


def test_price_rows_apply_from_local_midnight() -> None:
    t = tariff(
        option="base",
        prices=[
            {"since": "2025-08-01", "base": 0.1952},
            {"since": "2026-02-01", "base": 0.1927},
        ],
    )
    midnight = local(2026, 2, 1, 0, 0)  # 23:00 UTC on 31 January
    # Typed YAML numbers become the Decimal the installer wrote, never a binary float.
    assert t.rate_at(midnight - timedelta(seconds=1)) == ("BASE", Decimal("0.1952"))
    assert t.rate_at(midnight) == ("BASE", Decimal("0.1927"))
    assert t.next_boundary(local(2026, 1, 31, 12, 0)) == midnight
    assert t.rate_at(local(2024, 1, 1)) == (
        "BASE",
        Decimal("0.1952"),
    )  # earliest row covers the past


def test_base_option_has_one_period_and_missing_price_is_named() -> None:
    t = tariff(option="base", prices=[{"since": "2025-08-01", "base": 0.2}])
    assert t.period_at(local(2026, 1, 1, 23, 0)) == "BASE"
    hphc = Tariff.with_option(t, "hphc")
    with pytest.raises(TariffError, match=r"prices\[0\]\.hc"):
        hphc.price(local(2026, 1, 1, 23, 0), "HC")
