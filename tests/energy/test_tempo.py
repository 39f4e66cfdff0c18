"""Tempo in the pure tariff core: the 06:00 day, HC 22:00-06:00, colours known or not, DST days,
and the money property shared by every option (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import TariffSettings, TempoColour
from collector.energy.intervals import PointEnergy
from collector.energy.tariff import Tariff, tempo_day
from tests.support.tempo_helpers import PARIS, ROWS, SOCKET_W, feed, local, tempo


def test_the_tempo_day_starts_at_06_00_local() -> None:
    assert tempo_day(local(2026, 12, 7, 5, 59), PARIS) == date(2026, 12, 6)
    assert tempo_day(local(2026, 12, 7, 6, 0), PARIS) == date(2026, 12, 7)
    assert tempo_day(local(2026, 12, 7, 23, 0), PARIS) == date(2026, 12, 7)


def test_charge_across_06_00_changes_colour_and_hours_at_the_boundary() -> None:
    t = tempo({date(2026, 12, 6): "red", date(2026, 12, 7): "white"})
    m = PointEnergy("cp1", t, 3600, SOCKET_W, 120.0)
    windows = feed(m, local(2026, 12, 7, 5, 30), 90, 6000.0)
    got = [
        (w.start.astimezone(PARIS).strftime("%H:%M"), w.period, w.price_eur_kwh) for w in windows
    ]
    # The night of 6-7 December belongs to the red day 6 December; white starts at 06:00.
    assert got == [("05:30", "TEMPO_RED_HC", 0.1575), ("06:00", "TEMPO_WHITE_HP", 0.1871)]
    assert [w.energy_wh for w in windows] == pytest.approx([3000.0, 6000.0])
    assert not any(w.estimated for w in windows)
    assert all(w.tempo_fallback is None for w in windows)


def test_a_red_day_is_16_hours_of_red_hp_then_8_of_red_hc() -> None:
    red = date(2026, 12, 8)
    t = tempo({red: "red", red - timedelta(days=1): "blue", red + timedelta(days=1): "blue"})
    m = PointEnergy("cp1", t, 3600, SOCKET_W, 120.0)
    windows = feed(m, local(2026, 12, 8, 6, 0), 24 * 60, 6000.0)
    by_period: dict[str, float] = {}
    cost = 0.0
    for w in windows:
        by_period[w.period] = by_period.get(w.period, 0.0) + w.energy_wh
        cost += w.cost_eur
    assert by_period == pytest.approx({"TEMPO_RED_HP": 96_000.0, "TEMPO_RED_HC": 48_000.0})
    assert round(cost, 2) == round(96 * 0.7060 + 48 * 0.1575, 2) == 75.34


def test_unknown_colour_is_priced_at_the_fallback_and_marked() -> None:
    colours: dict[date, TempoColour] = {date(2026, 12, 9): "blue"}
    t = tempo(colours)
    m = PointEnergy("cp1", t, 3600, SOCKET_W, 120.0)
    windows = feed(m, local(2026, 12, 10, 5, 0), 120, 6000.0)  # 05:00-07:00
    assert [(w.period, w.estimated, w.tempo_fallback) for w in windows] == [
        ("TEMPO_BLUE_HC", False, None),
        ("TEMPO_BLUE_HP", True, True),  # 10 December's colour is not known yet
    ]
    assert b'"tempo_fallback":true' in windows[1].to_json()
    assert b"tempo_fallback" not in windows[0].to_json()
    colours[date(2026, 12, 10)] = "red"  # published: later windows take it
    assert t.period_at(local(2026, 12, 10, 8, 0)) == "TEMPO_RED_HP"
    assert not t.fallback_at(local(2026, 12, 10, 8, 0))


def test_fallback_mark_survives_a_restart_from_saved_state() -> None:
    t = tempo({})
    m = PointEnergy("cp1", t, 3600, SOCKET_W, 120.0)
    m.update(local(2026, 12, 10, 7, 0), 1000.0, 6000.0)
    resumed = PointEnergy("cp1", t, 3600, SOCKET_W, 120.0)
    resumed.restore(m.to_dict())
    assert resumed.window is not None and resumed.window.tempo_fallback


def hours_per_period(t: Tariff, day: date) -> dict[str, float]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=PARIS).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=PARIS)
    totals: dict[str, float] = {}
    t0 = start
    while t0 < end:
        t1 = min(t.next_boundary(t0), end)
        totals[t.period_at(t0)] = totals.get(t.period_at(t0), 0.0) + (t1 - t0).seconds / 3600
        t0 = t1
    return totals


@pytest.mark.parametrize(
    ("day", "night_hours"),
    [(date(2026, 3, 29), 5.0), (date(2026, 10, 25), 7.0)],  # 23 h and 25 h days
)
def test_dst_days_keep_06_00_and_22_00_on_the_wall_clock(day: date, night_hours: float) -> None:
    t = tempo({day - timedelta(days=1): "white", day: "red"})
    assert hours_per_period(t, day) == {
        "TEMPO_WHITE_HC": night_hours,  # 00:00-06:00 belongs to the previous Tempo day
        "TEMPO_RED_HP": 16.0,
        "TEMPO_RED_HC": 2.0,
    }


def test_table_prices_fill_the_six_tempo_periods() -> None:
    settings = TariffSettings.model_validate(
        {"supplier": "edf-tarif-bleu", "option": "tempo", "kva": 9}
    )
    t = Tariff(settings, PARIS, {date(2025, 12, 1): "red"})
    # EDF Tempo from 1 August 2025, 9 kVA (the bundled table's row).
    assert t.rate_at(local(2025, 12, 1, 12, 0)) == ("TEMPO_RED_HP", Decimal("0.6468"))
    assert t.rate_at(local(2025, 12, 2, 3, 0)) == ("TEMPO_RED_HC", Decimal("0.1460"))


def test_tempo_needs_tempo_prices_in_every_row() -> None:
    with pytest.raises(ValueError, match=r"prices\.0\.tempo|prices\[0\]\.tempo"):
        TariffSettings.model_validate(
            {"option": "tempo", "prices": [{"since": "2026-02-01", "base": 0.19}]}
        )


# ---- the money property -------------------------------------------------------------------


def price_in_force(option: str, instant: datetime, colours: dict[date, TempoColour]) -> float:
    """The price from first principles: price row by local date, HC 22-06 on the wall clock,
    the Tempo day's colour (or blue, the fallback) by the local date six hours earlier."""
    wall = instant.astimezone(PARIS)
    row = ROWS[1] if wall.date() >= ROWS[1]["since"] else ROWS[0]
    off = wall.hour >= 22 or wall.hour < 6
    if option == "base":
        return float(row["base"])
    if option == "hphc":
        return float(row["hc" if off else "hp"])
    colour = colours.get((wall.replace(tzinfo=None) - timedelta(hours=6)).date(), "blue")
    return float(row["tempo"][colour]["hc" if off else "hp"])


STARTS = [
    local(2026, 1, 31, 21, 0),  # HC start, then the 1 February price row at midnight
    local(2026, 3, 29, 1, 0),  # spring DST
    local(2026, 10, 25, 1, 0),  # autumn DST
    local(2026, 12, 7, 4, 30),  # a Tempo 06:00 boundary
]


@settings(max_examples=60, deadline=None)
@given(
    option=st.sampled_from(["base", "hphc", "tempo"]),
    start=st.sampled_from(STARTS),
    offset_s=st.integers(0, 3599),
    steps=st.lists(st.tuples(st.integers(1, 1200), st.floats(0, 7000)), min_size=1, max_size=40),
    picks=st.lists(st.sampled_from(["blue", "white", "red", None]), min_size=4, max_size=4),
    window_s=st.sampled_from([60, 900, 3600]),
)
def test_property_window_costs_are_energy_times_the_price_in_force(
    option: str,
    start: datetime,
    offset_s: int,
    steps: list[tuple[int, float]],
    picks: list[TempoColour | None],
    window_s: int,
) -> None:
    # Readings carry UTC times, as the poller's do.
    ts = (start + timedelta(seconds=offset_s)).astimezone(UTC)
    first_day = tempo_day(ts, PARIS) - timedelta(days=1)
    colours: dict[date, TempoColour] = {
        first_day + timedelta(days=n): c for n, c in enumerate(picks) if c is not None
    }
    m = PointEnergy("cp1", tempo(colours, option), window_s, SOCKET_W, 3600.0)
    index = 5_000_000.0
    m.update(ts, index, None)
    costs = 0.0
    expected = 0.0
    for seconds, power in steps:
        end = ts + timedelta(seconds=seconds)
        energy = power * seconds / 3600
        # Each second's share of the step at the price in force then (all boundaries are on
        # whole seconds).
        for s in range(seconds):
            instant = ts + timedelta(seconds=s)
            expected += energy / seconds / 1000 * price_in_force(option, instant, colours)
        index += energy
        costs += sum(w.cost_eur for w in m.update(end, index, power).windows)
        ts = end
    assert m.window is not None
    costs += m.window.message(None).cost_eur
    assert costs == pytest.approx(expected, abs=1e-6)
