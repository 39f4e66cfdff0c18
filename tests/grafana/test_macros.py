"""Grafana's macro and variable substitution as tests/support/grafana_queries.py reproduces it (the
query tests rely on it): intervals rounded and formatted like Grafana's backend (gtime), the
datasource's minimum interval, time filters in epoch milliseconds, variables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support import grafana_queries as gq

END = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
QUERY = 'SELECT mean("power_w") FROM "reading" WHERE $timeFilter GROUP BY time($__interval)'


@pytest.mark.parametrize(
    ("range_", "points", "expected"),
    [
        (timedelta(minutes=2), 1000, "10s"),  # 120 ms: below the datasource's 10 s minimum
        (timedelta(hours=3), 1000, "10s"),  # 10.8 s
        (timedelta(hours=3), 700, "15s"),  # 15.4 s: a narrower panel
        (timedelta(days=7), 1000, "10m"),  # 604.8 s
        (timedelta(days=30), 1000, "30m"),  # 2592 s
        (timedelta(days=30), 300, "2h"),  # 8640 s
    ],
)
def test_interval_like_grafana(range_: timedelta, points: int, expected: str) -> None:
    text = gq.render(QUERY, END - range_, END, max_data_points=points)
    assert text.endswith(f"GROUP BY time({expected})")


def test_time_filter_in_epoch_milliseconds() -> None:
    text = gq.render(QUERY, END - timedelta(hours=3), END)
    stop = int(END.timestamp() * 1000)
    assert f"WHERE time >= {stop - 3 * 3_600_000}ms and time <= {stop}ms GROUP" in text


def test_format_interval_truncates_to_the_largest_unit() -> None:
    assert gq.format_interval(604_800_000) == "7d"
    assert gq.format_interval(5_400_000) == "1h"
    assert gq.format_interval(1_500) == "1s"
    assert gq.format_interval(200) == "200ms"


def test_variables() -> None:
    query = 'WHERE "site" = \'$site\' AND "point" =~ /^$socket$/ AND ${site} [[site]]'
    chosen = {"site": gq.Variable("hotel-vda"), "socket": gq.Variable(["cp.1", "a/b"], True)}
    text = gq.render(query, END - timedelta(hours=1), END, chosen)
    assert text == (
        'WHERE "site" = \'hotel-vda\' AND "point" =~ /^(cp\\.1|a\\/b)$/ AND hotel-vda hotel-vda'
    )
    one = gq.render(
        query, END - timedelta(hours=1), END, {**chosen, "socket": gq.Variable("cp1", True)}
    )
    assert "/^cp1$/" in one
    with pytest.raises(KeyError):
        gq.render("$nothing", END - timedelta(hours=1), END)
