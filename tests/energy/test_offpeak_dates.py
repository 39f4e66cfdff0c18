"""HC windows that change on a date (the Enedis reform), summer and winter HC, the reform's
warnings, and the weekend option (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import SessionSettings, TariffSettings
from collector.energy.intervals import PointEnergy
from collector.energy.sessions import SessionTracker
from collector.energy.tariff import Tariff, offpeak_warnings, schedule_warnings
from collector.settings import ConfigError
from collector.site import load_site
from collector.wire.messages import EnergyMessage, Message, SessionMessage

PARIS = ZoneInfo("Europe/Paris")
SOCKET_W = 32 * 253.0
PRICES = [{"since": "2025-08-01", "base": 0.1952, "hp": 0.2081, "hc": 0.1635}]
# Before the reform reaches the meter: 22:00-06:00. From 1 December 2026 (the date the supplier
# announced): winter 23:00-07:00, summer 02:00-07:00 and 11:00-14:00 (the reform's afternoon HC).
REFORM = [
    {"since": "2025-01-01", "offpeak": ["22:00-06:00"]},
    {
        "since": "2026-12-01",
        "seasons": [
            {
                "name": "summer",
                "start": "04-01",
                "end": "10-31",
                "offpeak": ["02:00-07:00", "11:00-14:00"],
            },
            {"name": "winter", "start": "11-01", "end": "03-31", "offpeak": ["23:00-07:00"]},
        ],
    },
]


def tariff(**kw: Any) -> Tariff:
    data: dict[str, Any] = {"option": "hphc", "offpeak": REFORM, "prices": PRICES}
    data.update(kw)
    return Tariff(TariffSettings.model_validate(data), PARIS)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[arg-type,misc]


def hours_per_period(t: Tariff, day: date) -> dict[str, float]:
    """Walk a local day boundary to boundary, as the interval code does."""
    start = datetime.combine(day, time(0), tzinfo=PARIS).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=PARIS).astimezone(UTC)
    totals: dict[str, float] = {}
    t0 = start
    while t0 < end:
        t1 = min(t.next_boundary(t0), end)
        period = t.period_at(t0)
        totals[period] = totals.get(period, 0.0) + (t1 - t0).total_seconds() / 3600
        t0 = t1
    return totals


def feed(m: PointEnergy, start: datetime, minutes: int, power_w: float) -> list[EnergyMessage]:
    out: list[EnergyMessage] = []
    for minute in range(minutes + 1):
        ts = (start + timedelta(minutes=minute)).astimezone(UTC)
        out += m.update(ts, 1_000_000 + power_w * minute / 60, power_w).windows
    return out


def test_a_charge_across_the_date_of_an_hc_change_is_split_by_each_schedule() -> None:
    m = PointEnergy("cp1", tariff(), 3600, SOCKET_W, 120.0)
    # 30 November 21:00 -> 1 December 08:00 at 7 kW.
    windows = feed(m, local(2026, 11, 30, 21, 0), 11 * 60, 7000.0)
    by_period: dict[str, float] = {}
    for w in windows:
        by_period[w.period] = by_period.get(w.period, 0.0) + w.energy_wh
    # Old schedule until midnight: 21-22 HP, 22-24 HC. New winter one after: 00-07 HC (06-07
    # was HP under the old one), 07-08 HP.
    assert by_period == pytest.approx({"HP": 14_000.0, "HC": 63_000.0})
    hc_06 = [w for w in windows if w.start == local(2026, 12, 1, 6, 0)]
    assert [w.period for w in hc_06] == ["HC"]
    assert sum(w.cost_eur for w in windows) == pytest.approx(14 * 0.2081 + 63 * 0.1635, abs=1e-6)


def test_a_session_across_the_date_of_an_hc_change_is_costed_with_each_schedule() -> None:
    m = PointEnergy("cp1", tariff(), 60, SOCKET_W, 120.0)
    tracker = SessionTracker("cp1", SessionSettings(end_after_s=300))
    out: list[Message] = []
    start = local(2026, 11, 30, 21, 0)
    for second in range(0, 11 * 3600 + 600 + 1, 10):
        ts = (start + timedelta(seconds=second)).astimezone(UTC)
        power = 7000.0 if second <= 11 * 3600 else 0.0
        drawn = 7000.0 * min(second, 11 * 3600) / 3600
        step = m.update(ts, 1_000_000 + drawn, power)
        out += tracker.update(ts, power, step.pieces)
    (end,) = [x for x in out if isinstance(x, SessionMessage) and x.event == "end"]
    assert {p: t.energy_wh for p, t in end.periods.items()} == pytest.approx(
        {"HP": 14_000.0, "HC": 63_000.0}, abs=1e-3
    )
    assert end.cost_eur == pytest.approx(14 * 0.2081 + 63 * 0.1635, abs=1e-6)


def test_the_change_takes_effect_at_local_midnight_of_its_date() -> None:
    t = tariff()
    assert t.period_at(local(2026, 11, 30, 6, 30)) == "HP"
    assert t.period_at(local(2026, 12, 1, 6, 30)) == "HC"
    assert t.next_boundary(local(2026, 11, 30, 23, 0)) == local(2026, 12, 1, 7, 0)
    assert t.period_at(local(2024, 6, 1, 23, 0)) == "HC"  # the first entry covers the past


def test_the_reforms_summer_hc_between_11_and_17() -> None:
    t = tariff()
    assert t.period_at(local(2027, 7, 15, 12, 0)) == "HC"
    assert t.period_at(local(2027, 7, 15, 14, 0)) == "HP"
    assert t.period_at(local(2027, 7, 15, 23, 30)) == "HP"
    assert t.period_at(local(2026, 12, 15, 12, 0)) == "HP"  # winter: no afternoon HC
    assert t.period_at(local(2026, 7, 15, 12, 0)) == "HP"  # summer before the change
    assert hours_per_period(t, date(2027, 7, 15)) == {"HC": 8.0, "HP": 16.0}
    # Summer ends with 31 October, winter starts on 1 November at local midnight.
    assert t.period_at(local(2027, 11, 1, 12, 0)) == "HP"
    assert t.period_at(local(2027, 10, 31, 12, 0)) == "HC"


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2027, 3, 28), {"HC": 7.0, "HP": 16.0}),  # spring, winter HC 23-07: 02-03 skipped
        (date(2027, 10, 31), {"HC": 9.0, "HP": 16.0}),  # autumn, summer HC 02-07: 02-03 twice
        (date(2026, 10, 25), {"HC": 9.0, "HP": 16.0}),  # before the change: 22-06
    ],
)
def test_dst_days_with_dated_schedules(day: date, expected: dict[str, float]) -> None:
    assert hours_per_period(tariff(), day) == expected


def test_half_hour_boundaries() -> None:
    t = tariff(offpeak=[{"since": "2026-12-01", "offpeak": ["23:30-07:30"]}])
    assert t.period_at(local(2026, 12, 2, 23, 29)) == "HP"
    assert t.period_at(local(2026, 12, 2, 23, 30)) == "HC"
    assert t.period_at(local(2026, 12, 3, 7, 29)) == "HC"
    assert t.next_boundary(local(2026, 12, 3, 1, 0)) == local(2026, 12, 3, 7, 30)


@pytest.mark.parametrize(
    ("offpeak", "problem"),
    [
        (
            [
                {"since": "2026-12-01", "offpeak": ["23:00-07:00"]},
                {"since": "2026-01-01", "offpeak": ["22:00-06:00"]},
            ],
            "strictly increasing",
        ),
        ([{"since": "2026-12-01"}], "an entry needs HC ranges"),
        (["22:00-06:00", {"since": "2026-12-01"}], "valid string"),
        ([{"since": "2026-12-01", "offpeak": ["23:00-07:00", "06:00-08:00"]}], "overlap"),
        ([{"since": "2026-12-01", "offpeak": ["23:00-07:00"], "hours": 8}], "unknown key"),
    ],
)
def test_bad_dated_entries_are_named(tmp_path: Path, offpeak: list[Any], problem: str) -> None:
    site = site_file(tmp_path, {"option": "hphc", "offpeak": offpeak, "prices": PRICES})
    with pytest.raises(ConfigError) as caught:
        load_site(str(site))
    assert any(p.startswith("tariff.offpeak") and problem in p for p in caught.value.problems), (
        caught.value.problems
    )


def test_top_level_seasons_beside_dated_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="seasons: with dated offpeak entries"):
        tariff(
            seasons=[{"name": "s", "start": "04-01", "end": "10-31", "offpeak": ["11:00-14:00"]}]
        )


def ranges(*texts: str) -> tuple[tuple[time, time], ...]:
    out = []
    for text in texts:
        a, b = text.split("-")
        out.append((time.fromisoformat(a), time.fromisoformat(b) if b != "24:00" else time(0)))
    return tuple(out)


@pytest.mark.parametrize(
    ("day", "problems"),
    [
        (ranges("23:00-07:00"), []),
        (ranges("02:00-07:00", "11:00-14:00"), []),
        (ranges("00:00-05:00", "12:00-15:00"), []),
        (ranges("23:00-06:00"), ["7 h of HC a day"]),
        (ranges("00:15-05:15", "11:00-14:00"), ["boundary 00:15"]),
        (
            ranges("00:00-04:00", "11:00-15:00"),
            ["4 h of consecutive HC", "4 h of HC between 11:00"],
        ),
        (ranges("22:00-06:00"), ["HC between 17:00 and 23:00"]),
        (ranges("00:00-05:00", "08:00-09:00", "14:00-16:00"), ["HC between 07:00 and 11:00"]),
    ],
)
def test_the_reforms_shape_is_checked(
    day: tuple[tuple[time, time], ...], problems: list[str]
) -> None:
    found = schedule_warnings(day, reform=True)
    assert len(found) == len(problems), found
    for got, expected in zip(found, problems, strict=True):
        assert expected in got


def test_warnings_name_the_entry_and_spare_schedules_from_before_the_reform() -> None:
    settings = TariffSettings.model_validate(
        {
            "option": "hphc",
            "prices": PRICES,
            "offpeak": [
                {"since": "2025-01-01", "offpeak": ["22:00-06:00"]},
                {
                    "since": "2026-12-01",
                    "seasons": [
                        {
                            "name": "summer",
                            "start": "04-01",
                            "end": "10-31",
                            "offpeak": ["01:00-05:00", "11:00-15:00"],
                        },
                        {
                            "name": "winter",
                            "start": "11-01",
                            "end": "03-31",
                            "offpeak": ["23:00-07:00"],
                        },
                    ],
                },
            ],
        }
    )
    assert offpeak_warnings(settings) == [
        "tariff.offpeak[1].seasons[0] (summer): 4 h of consecutive HC between 23:00 and 07:00, "
        "where the reform gives at least 5 h",
        "tariff.offpeak[1].seasons[0] (summer): 4 h of HC between 11:00 and 17:00, where the "
        "reform allows 3 h",
    ]
    undated = TariffSettings.model_validate(
        {"option": "hphc", "prices": PRICES, "offpeak": ["22:00-05:00"]}
    )
    assert offpeak_warnings(undated) == ["tariff.offpeak: 7 h of HC a day, where Enedis gives 8 h"]


def test_irve_check_shows_the_dated_schedules_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.cli import main

    offpeak = [
        {"since": "2025-01-01", "offpeak": ["22:00-06:00"]},
        {"since": "2026-12-01", "offpeak": ["23:00-06:00"]},
    ]
    site = site_file(tmp_path, {"option": "hphc", "offpeak": offpeak, "prices": PRICES})
    assert main(["check", "-c", str(site)]) == 0
    out, err = capsys.readouterr()
    assert (
        "  HC from 2025-01-01:\n    HC 22:00-06:00\n  HC from 2026-12-01:\n    HC 23:00-06:00\n"
        in out
    )
    assert "warning: tariff.offpeak[1] (since 2026-12-01): 7 h of HC a day" in err


# ---- weekend option ---------------------------------------------------------------------------


def test_weekend_days_are_hc_all_day_and_the_extra_day_too() -> None:
    t = tariff(offpeak=["22:00-06:00"], weekend={"extra_day": "wed"})
    # Week of Monday 7 December 2026.
    assert hours_per_period(t, date(2026, 12, 12)) == {"HC": 24.0}  # Saturday
    assert hours_per_period(t, date(2026, 12, 13)) == {"HC": 24.0}  # Sunday
    assert hours_per_period(t, date(2026, 12, 9)) == {"HC": 24.0}  # Wednesday, the extra day
    assert hours_per_period(t, date(2026, 12, 10)) == {"HC": 8.0, "HP": 16.0}
    assert t.period_at(local(2026, 12, 14, 5, 0)) == "HC"  # Monday morning: the night's HC
    assert t.period_at(local(2026, 12, 14, 6, 0)) == "HP"
    # Friday 22:00 to Monday 06:00 in one HC stretch.
    assert t.next_boundary(local(2026, 12, 11, 22, 0)) == local(2026, 12, 14, 6, 0)
    assert hours_per_period(t, date(2026, 10, 25)) == {"HC": 25.0}  # a Sunday of 25 hours


def test_weekend_without_weekday_hc_is_two_prices_by_day() -> None:
    t = tariff(offpeak=[], weekend={})
    assert hours_per_period(t, date(2026, 12, 11)) == {"HP": 24.0}
    assert hours_per_period(t, date(2026, 12, 12)) == {"HC": 24.0}
    m = PointEnergy("cp1", t, 3600, SOCKET_W, 120.0)
    windows = feed(m, local(2026, 12, 11, 23, 0), 120, 7000.0)  # Friday 23:00 -> Saturday 01:00
    assert [(w.period, w.price_eur_kwh) for w in windows] == [("HP", 0.2081), ("HC", 0.1635)]


@pytest.mark.parametrize(
    ("tariff_data", "problem"),
    [
        (
            {"option": "base", "weekend": {}},
            "tariff.weekend: the HC price all weekend needs option hphc",
        ),
        ({"option": "hphc", "weekend": {"extra_day": "sat"}}, "tariff.weekend.extra_day"),
    ],
)
def test_bad_weekend_settings_are_named(
    tmp_path: Path, tariff_data: dict[str, Any], problem: str
) -> None:
    site = site_file(tmp_path, {"prices": PRICES, **tariff_data})
    with pytest.raises(ConfigError) as caught:
        load_site(str(site))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def site_file(tmp_path: Path, tariff_data: dict[str, Any]) -> Path:
    path = tmp_path / "site.yaml"
    data = {
        "site": {"id": "t", "subscribed_power_kva": 36},
        "tariff": tariff_data,
        "buses": [{"id": "b", "type": "tcp", "host": "127.0.0.1"}],
        "meters": [
            {
                "id": "cp1",
                "bus": "b",
                "unit": 1,
                "profile": "eastron-sdm120",
                "socket": {"label": "B1", "rated_current_a": 32},
            },
        ],
    }
    path.write_text(yaml.safe_dump(data, default_flow_style=False), encoding="utf-8")
    return path


# ---- the money property with dated HC and the weekend option ---------------------------------

PROPERTY_OFFPEAK = [
    {"since": "2025-01-01", "offpeak": ["22:00-06:00"]},
    {
        "since": "2026-03-02",
        "seasons": [
            {
                "name": "summer",
                "start": "04-01",
                "end": "10-31",
                "offpeak": ["02:00-07:00", "11:00-14:00"],
            },
            {"name": "winter", "start": "11-01", "end": "03-31", "offpeak": ["23:30-07:30"]},
        ],
    },
]
PROPERTY_PRICES: list[dict[str, Any]] = [
    {"since": "2025-08-01", "hp": 0.2081, "hc": 0.1635},
    {"since": "2026-08-01", "hp": 0.2142, "hc": 0.1589},
]


def hc_from_first_principles(instant: datetime) -> bool:
    """HC or not, by reading the wall clock: weekend days and Wednesday all day; else the
    schedule of the local date (before 2 March 2026: 22-06; after: summer or winter)."""
    wall = instant.astimezone(PARIS)
    if wall.weekday() in (2, 5, 6):
        return True
    minutes = wall.hour * 60 + wall.minute
    if wall.date() < date(2026, 3, 2):
        return minutes >= 22 * 60 or minutes < 6 * 60
    if date(wall.year, 4, 1) <= wall.date() <= date(wall.year, 10, 31):
        return 2 * 60 <= minutes < 7 * 60 or 11 * 60 <= minutes < 14 * 60
    return minutes >= 23 * 60 + 30 or minutes < 7 * 60 + 30


def price_from_first_principles(instant: datetime) -> float:
    wall = instant.astimezone(PARIS)
    row = PROPERTY_PRICES[1] if wall.date() >= date(2026, 8, 1) else PROPERTY_PRICES[0]
    return float(row["hc"] if hc_from_first_principles(instant) else row["hp"])


@settings(max_examples=40, deadline=None)
@given(
    start=st.sampled_from(
        [
            local(2026, 3, 1, 21, 0),  # Sunday night into the new schedule on Monday 2 March
            local(2026, 3, 29, 1, 0),  # spring DST, a Sunday
            local(2026, 10, 25, 1, 0),  # autumn DST, a Sunday
            local(2026, 3, 31, 22, 0),  # winter -> summer at midnight (a Tuesday -> Wednesday)
            local(2026, 7, 31, 22, 0),  # the 1 August price movement, a Friday night
            local(2026, 4, 7, 10, 30),  # a Tuesday's afternoon HC
            local(2026, 4, 8, 7, 30),  # Wednesday, the extra day: HC all day
        ]
    ),
    offset_s=st.integers(0, 3599),
    steps=st.lists(st.tuples(st.integers(1, 1200), st.floats(0, 7000)), min_size=1, max_size=40),
    window_s=st.sampled_from([60, 900, 3600]),
)
def test_property_costs_with_dated_hc_and_weekend(
    start: datetime, offset_s: int, steps: list[tuple[int, float]], window_s: int
) -> None:
    t = Tariff(
        TariffSettings.model_validate(
            {
                "option": "hphc",
                "offpeak": PROPERTY_OFFPEAK,
                "weekend": {"extra_day": "wed"},
                "prices": PROPERTY_PRICES,
            }
        ),
        PARIS,
    )
    ts = (start + timedelta(seconds=offset_s)).astimezone(UTC)
    m = PointEnergy("cp1", t, window_s, SOCKET_W, 3600.0)
    index = 5_000_000.0
    m.update(ts, index, None)
    costs = 0.0
    expected = 0.0
    for seconds, power in steps:
        energy = power * seconds / 3600
        for s in range(seconds):  # every boundary is on a whole second
            expected += (
                energy / seconds / 1000 * price_from_first_principles(ts + timedelta(seconds=s))
            )
        index += energy
        ts += timedelta(seconds=seconds)
        costs += sum(w.cost_eur for w in m.update(ts, index, power).windows)
    assert m.window is not None
    costs += m.window.message(None).cost_eur
    assert costs == pytest.approx(expected, abs=1e-6)
