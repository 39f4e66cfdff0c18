"""The pruning planner (pure): the cutoff, the chunks, the 2.x delete body and which servers
can be pruned."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from collector.store.retention import cutoff, delete_body, plan, unsupported

NOW = datetime(2026, 12, 6, 21, 37, 12, 345000, tzinfo=UTC)


def test_cutoff_is_on_the_hour_days_before_now() -> None:
    assert cutoff(NOW, 7) == datetime(2026, 11, 29, 21, tzinfo=UTC)
    # Any time zone: the same instant, the same cutoff.
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert cutoff(paris, 7) == datetime(2026, 11, 29, 21, tzinfo=UTC)


def test_nothing_to_prune() -> None:
    assert plan(NOW, 7, None) == []
    assert plan(NOW, 7, cutoff(NOW, 7)) == []  # strictly older only
    assert plan(NOW, 7, NOW - timedelta(days=3)) == []


def test_days_from_the_oldest_hour_the_last_ending_at_the_cutoff() -> None:
    oldest = datetime(2026, 11, 26, 17, 5, 3, tzinfo=UTC)
    assert plan(NOW, 7, oldest) == [
        (datetime(2026, 11, 26, 17, tzinfo=UTC), datetime(2026, 11, 27, 17, tzinfo=UTC)),
        (datetime(2026, 11, 27, 17, tzinfo=UTC), datetime(2026, 11, 28, 17, tzinfo=UTC)),
        (datetime(2026, 11, 28, 17, tzinfo=UTC), datetime(2026, 11, 29, 17, tzinfo=UTC)),
        (datetime(2026, 11, 29, 17, tzinfo=UTC), datetime(2026, 11, 29, 21, tzinfo=UTC)),
    ]


def test_an_hour_later_the_hour_that_passed_the_cutoff() -> None:
    """After a run, the oldest reading is at the cutoff or after it; the next run, an hour
    later, prunes that hour only (not its whole day again)."""
    end = cutoff(NOW, 7)
    assert plan(NOW + timedelta(hours=1), 7, end + timedelta(seconds=1)) == [
        (end, end + timedelta(hours=1))
    ]


def test_a_reading_just_before_the_cutoff_is_pruned() -> None:
    end = cutoff(NOW, 7)
    assert plan(NOW, 7, end - timedelta(milliseconds=1)) == [(end - timedelta(hours=1), end)]


def test_a_year_of_history_is_a_chunk_a_day() -> None:
    chunks = plan(NOW, 30, NOW - timedelta(days=400))
    assert len(chunks) == 370
    assert all(lo < hi <= lo + timedelta(days=1) for lo, hi in chunks)
    assert all(lo.minute == lo.second == lo.microsecond == 0 for lo, _ in chunks)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    assert chunks[-1][1] == cutoff(NOW, 30)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="naive"):
        plan(NOW.replace(tzinfo=None), 7, None)
    with pytest.raises(ValueError, match="naive"):
        plan(NOW, 7, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="retention of 0 days"):
        plan(NOW, 0, None)


def test_delete_body_for_influxdb_2() -> None:
    body = delete_body(datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC))
    assert body == {
        "start": "2026-11-26T00:00:00Z",
        "stop": "2026-11-26T23:59:59.999999999Z",
        "predicate": '_measurement="reading"',
    }


@pytest.mark.parametrize("version", ["1.6.7", "1.8.10", "v2.7.1", "2.7.4", " 1.6.7 "])
def test_influxdb_1_and_2_can_be_pruned(version: str) -> None:
    assert unsupported(version) is None


def test_other_servers_are_named() -> None:
    problem = unsupported(None)
    assert problem is not None and "VictoriaMetrics" in problem and "-retentionPeriod" in problem
    problem = unsupported("3.1.0")
    assert problem is not None and "InfluxDB 3.1.0" in problem
