"""Re-pricing stored windows and sessions once a Tempo colour is known (pure)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from collector.billing.render import to_csv
from collector.billing.reprice import (
    PointWindow,
    repriced_session,
    repriced_window,
    stale_window,
)
from collector.billing.source import StoredWindow
from collector.billing.statement import Policy, SessionUse, Stay, make_statement
from collector.config import TempoColour
from collector.energy.intervals import PointEnergy
from collector.wire.messages import EnergyMessage
from tests.support.tempo_helpers import PARIS, SOCKET_W, feed, local, tempo


def stored(point: str, m: EnergyMessage) -> StoredWindow:
    """A window as the ingestor stores it and billing reads it back."""
    fields = m.model_dump(mode="json")
    return StoredWindow(m.start, point, m.period, m.energy_wh, m.cost_eur, fields)


def test_unknown_colour_priced_at_the_fallback_then_repriced_once_known() -> None:
    colours: dict[date, TempoColour] = {date(2026, 12, 9): "blue"}
    live = PointEnergy("cp1", tempo(colours), 3600, SOCKET_W, 120.0)
    # 05:00-08:00 on 10 December, whose colour is not published yet: 6 kW.
    published = feed(live, local(2026, 12, 10, 5, 0), 180, 6000.0)
    assert [(w.period, w.tempo_fallback) for w in published] == [
        ("TEMPO_BLUE_HC", None),
        ("TEMPO_BLUE_HP", True),
        ("TEMPO_BLUE_HP", True),
    ]
    assert sum(w.cost_eur for w in published) == pytest.approx(6 * 0.1325 + 12 * 0.1612)

    colours[date(2026, 12, 10)] = "red"  # RTE publishes it: 10 December was red
    later = tempo(colours)
    rows = [stored("cp1", w) for w in published]
    again = [repriced_window(w, later, 3600) for w in rows]
    assert [(w.period, w.price_eur_kwh, w.tempo_fallback) for w in again] == [
        ("TEMPO_BLUE_HC", 0.1325, None),  # the night of 9-10 December: blue, known
        ("TEMPO_RED_HP", 0.706, False),
        ("TEMPO_RED_HP", 0.706, False),
    ]
    assert [w.energy_wh for w in again] == [w.energy_wh for w in published]
    assert round(sum(w.cost_eur for w in again), 2) == round(6 * 0.1325 + 12 * 0.706, 2)
    # The fallback points are emptied (their period is a tag: the red windows are new points).
    stale = [stale_window(old, new) for old, new in zip(rows, again, strict=True)]
    assert stale[0] is None
    assert [(s.period, s.energy_wh, s.cost_eur) for s in stale if s] == [
        ("TEMPO_BLUE_HP", 0.0, 0.0),
        ("TEMPO_BLUE_HP", 0.0, 0.0),
    ]

    session = SessionUse(
        "cp1-1",
        "cp1",
        "room-12",
        local(2026, 12, 10, 5, 0),
        3 * 3600.0,
        {"TEMPO_BLUE_HC": (6000.0, 0.795), "TEMPO_BLUE_HP": (12000.0, 1.9344)},
    )
    windows = [PointWindow("cp1", new, old.period) for old, new in zip(rows, again, strict=True)]
    message = repriced_session(session, windows, later, 3600)
    assert {p: (t.energy_wh, t.cost_eur) for p, t in message.periods.items()} == {
        "TEMPO_BLUE_HC": (6000.0, 0.795),
        "TEMPO_RED_HP": (12000.0, 8.472),
        "TEMPO_BLUE_HP": (0.0, 0.0),  # overwrites the stored field: not counted twice
    }
    assert message.cost_eur == pytest.approx(9.267)


def test_still_unknown_stays_at_the_fallback_and_marked() -> None:
    t = tempo({})
    m = EnergyMessage(
        start=local(2026, 12, 10, 9, 0),
        end=local(2026, 12, 10, 10, 0),
        energy_wh=1000.0,
        period="TEMPO_BLUE_HP",
        price_eur_kwh=0.1612,
        cost_eur=0.1612,
        index_start_wh=None,
        index_end_wh=None,
        estimated=True,
        tempo_fallback=True,
    )
    again = repriced_window(stored("cp1", m), t, 3600)
    assert (again.period, again.tempo_fallback, again.estimated) == ("TEMPO_BLUE_HP", True, True)
    assert stale_window(stored("cp1", m), again) is None


def test_non_tempo_windows_are_untouched_by_colours() -> None:
    t = tempo({date(2026, 12, 10): "red"}, option="hphc")
    start = datetime(2026, 12, 10, 12, 0, tzinfo=PARIS)
    m = EnergyMessage(
        start=start,
        end=start + timedelta(hours=1),
        energy_wh=1000.0,
        period="HP",
        price_eur_kwh=0.2065,
        cost_eur=0.2065,
        index_start_wh=None,
        index_end_wh=None,
    )
    again = repriced_window(stored("cp1", m), t, 3600)
    assert again == m
    assert b"tempo_fallback" not in again.to_json()


def test_a_tempo_session_is_billed_per_colour_with_french_labels() -> None:
    """A night charge across 06:00 from a red day into a white one, after re-pricing (the
    emptied fallback period is left out of the statement)."""
    session = SessionUse(
        "s1",
        "cp1",
        "room-12",
        local(2026, 12, 8, 5, 0),
        7200.0,
        {
            "TEMPO_RED_HC": (7000.0, 7 * 0.1575),
            "TEMPO_WHITE_HP": (7000.0, 7 * 0.1871),
            "TEMPO_BLUE_HP": (0.0, 0.0),
        },
    )
    st = make_statement(Stay("12", date(2026, 12, 7), date(2026, 12, 9)), [session], Policy())
    assert [(line.period, line.amount_eur) for line in st.lines] == [
        ("TEMPO_WHITE_HP", Decimal("1.31")),
        ("TEMPO_RED_HC", Decimal("1.10")),
    ]
    rows = to_csv(st, "fr", PARIS).splitlines()
    assert "Tempo blanc HP" in rows[1] and "Tempo rouge HC" in rows[2]
    assert "Tempo white peak" in to_csv(st, "en", PARIS)
