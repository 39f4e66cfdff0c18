"""The subscription prorated per day, typed or from the table, and its daily message (pure)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import SiteConfig, TariffSettings
from collector.state import FileStateStore
from collector.tariffs.subscription import SubscriptionProcessor, day_share, total
from collector.wire.kinds import envelope
from collector.wire.messages import SubscriptionMessage
from collector.wire.topics import Topics

PRICES = [{"since": "2025-08-01", "base": 0.1952, "hp": 0.2081, "hc": 0.1635}]


def settings(**kw: Any) -> TariffSettings:
    data: dict[str, Any] = {"option": "hphc", "offpeak": ["22:00-06:00"], "prices": PRICES}
    data.update(kw)
    return TariffSettings.model_validate(data)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def test_a_typed_subscription_is_shared_by_the_days_of_each_month() -> None:
    s = settings(
        subscription=[
            {"since": "2026-01-01", "per_month": "30.00"},
            {"since": "2027-02-01", "per_year": 630.48},
        ]
    )
    jan = day_share(s, date(2026, 1, 15))
    assert (jan.per_month, jan.source) == (Decimal("30.00"), "site file")
    assert jan.cost_eur == Decimal("30.00") / 31
    # A whole month adds up to its subscription; February 2027 has 28 days, a twelfth of the
    # year each month.
    for first, last, monthly in [
        (date(2026, 1, 1), date(2026, 1, 31), Decimal("30.00")),
        (date(2026, 2, 1), date(2026, 2, 28), Decimal("30.00")),
        (date(2027, 2, 1), date(2027, 2, 28), Decimal("52.54")),
    ]:
        month = total(s, days(first, last))
        assert month.cost_eur.quantize(Decimal("0.000001")) == monthly
        assert (month.known_days, month.missing) == ((last - first).days + 1, ())
    assert day_share(s, date(2025, 6, 1)).per_month == Decimal("30.00")  # the first row covers


def test_the_tables_subscription_and_what_it_lacks() -> None:
    s = settings(supplier="edf-tarif-bleu", kva=36, prices=[])
    march = day_share(s, date(2026, 3, 10))
    assert (march.per_month, march.source, march.kva) == (
        Decimal("52.54"),
        "edf-grid-2026-02-hphc",
        36,
    )
    # No cited source gives the subscriptions of 1 August 2026: said, never the previous one.
    september = day_share(s, date(2026, 9, 10))
    assert september.cost_eur is None
    assert "no hphc subscription for 36 kVA from 2026-08-01" in (september.problem or "")
    both = total(s, days(date(2026, 7, 30), date(2026, 8, 2)))
    assert both.known_days == 2
    assert both.problems == [
        "from 2026-08-01: no hphc subscription for 36 kVA from 2026-08-01 in the table (no "
        "cited source gives it)"
    ]
    # Another power from the table, for irve compare --kva.
    assert day_share(s, date(2026, 3, 10), kva=24).per_month == Decimal("38.24")


def test_without_a_supplier_or_typed_rows_the_subscription_is_unknown() -> None:
    share = day_share(settings(), date(2026, 3, 10))
    assert share.cost_eur is None
    assert share.problem == "no subscription: type tariff.subscription rows"


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([{"since": "2026-01-01"}], "exactly one of per_month, per_year"),
        ([{"since": "2026-01-01", "per_month": 10, "per_year": 120}], "exactly one"),
        (
            [{"since": "2026-02-01", "per_month": 10}, {"since": "2026-01-01", "per_month": 9}],
            "strictly increasing",
        ),
        ([{"since": "2026-01-01", "per_month": -1}], "greater than or equal to 0"),
    ],
)
def test_bad_subscription_rows_are_refused(rows: list[dict[str, Any]], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        settings(subscription=rows)


def site(**tariff: Any) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": {"id": "h", "subscribed_power_kva": 36, "timezone": "Europe/Paris"},
            "tariff": {"option": "hphc", "offpeak": ["22:00-06:00"], "prices": PRICES, **tariff},
            "buses": [{"id": "b", "type": "tcp", "host": "127.0.0.1"}],
            "meters": [
                {"id": "main", "bus": "b", "unit": 1, "profile": "eastron-sdm630", "role": "main"}
            ],
        }
    )


def test_each_day_is_published_once_and_missed_days_after_a_stop(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "subscription-h.json", background=False)
    p = SubscriptionProcessor(site(subscription=[{"since": "2026-01-01", "per_month": 31}]), store)
    out = list(p.on_tick(datetime(2026, 12, 6, 9, 0, tzinfo=UTC)))
    assert len(out) == 1
    msg = out[0].message
    assert isinstance(msg, SubscriptionMessage)
    assert (msg.day, msg.cost_eur, msg.per_month_eur, msg.option) == (
        date(2026, 12, 6),
        1.0,
        31.0,
        "hphc",
    )
    assert msg.ts == datetime(2026, 12, 5, 23, 0, tzinfo=UTC)  # the day's local midnight
    env = envelope(Topics("irve", "h"), out[0])
    assert (env.topic, env.retain) == ("irve/h/subscription", True)
    assert list(p.on_tick(datetime(2026, 12, 6, 22, 59, tzinfo=UTC))) == []
    # 23:00 UTC is midnight in Paris: the 7th begins.
    assert [o.message.day for o in p.on_tick(datetime(2026, 12, 6, 23, 0, tzinfo=UTC))] == [  # type: ignore[attr-defined]
        date(2026, 12, 7)
    ]
    # Restarted three days later with the saved state: the days missed, no day twice.
    p.close()
    store = FileStateStore(tmp_path / "subscription-h.json", background=False)
    again = SubscriptionProcessor(
        site(subscription=[{"since": "2026-01-01", "per_month": 31}]), store
    )
    later = again.on_tick(datetime(2026, 12, 10, 8, 0, tzinfo=UTC))
    assert [o.message.day for o in later] == [  # type: ignore[attr-defined]
        date(2026, 12, 8),
        date(2026, 12, 9),
        date(2026, 12, 10),
    ]


def test_a_day_without_a_figure_is_not_published_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p = SubscriptionProcessor(site(supplier="edf-tarif-bleu", kva=36, prices=[]))
    with caplog.at_level(logging.WARNING):
        assert list(p.on_tick(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))) == []
        assert list(p.on_tick(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))) == []
    said = [r.getMessage() for r in caplog.records if "subscription" in r.getMessage()]
    assert len(said) == 1
    assert "no hphc subscription for 36 kVA from 2026-08-01" in said[0]


def test_irve_check_shows_the_typed_subscription() -> None:
    from collector.commands.check import summary
    from collector.meters.profile import load_profiles

    typed = [
        {"since": "2026-01-01", "per_month": "52.54"},
        {"since": "2027-01-01", "per_year": 650},
    ]
    text = summary(site(subscription=typed), load_profiles())
    assert "  subscription from 2026-01-01: 52.54 EUR/month (apart from the kWh prices)" in text
    assert "  subscription from 2027-01-01: 650 EUR/year (apart from the kWh prices)" in text


def test_irve_tariffs_with_a_site_shows_its_typed_subscription(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from collector.cli import main

    data = site(
        supplier="edf-tarif-bleu",
        kva=36,
        prices=[],
        subscription=[{"since": "2026-08-01", "per_month": "53.10"}],
    ).model_dump(mode="json", exclude_defaults=True)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({k: data[k] for k in ("site", "tariff", "buses", "meters")}))
    assert main(["tariffs", "-c", str(path), "--at", "2026-09-15"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "  subscription 53.10 EUR/month, typed in the site file, from 2026-08-01"
