"""Running sums of money are exact: prices stay Decimal from the site file or the table, and a
year of windows or a long session adds up as the exact sum of kWh x price (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from collector.billing.compare import compare
from collector.billing.source import StoredWindow
from collector.billing.statement import money
from collector.config import TariffSettings
from collector.energy.intervals import Piece
from collector.energy.sessions import Totals
from collector.energy.tariff import Tariff

PARIS = ZoneInfo("Europe/Paris")
PRICES = [
    {"since": "2025-08-01", "base": 0.1952, "hp": 0.2081, "hc": 0.1635},
    {"since": "2026-02-01", "base": 0.1927, "hp": 0.2065, "hc": 0.1579},
    {"since": "2026-08-01", "base": 0.1985, "hp": 0.2142, "hc": 0.1589},
]


def hphc() -> Tariff:
    settings = TariffSettings.model_validate(
        {"option": "hphc", "offpeak": ["22:00-06:00"], "prices": PRICES}
    )
    return Tariff(settings, PARIS)


def exact_price(t: Tariff, instant: datetime) -> Fraction:
    # The price's decimal text, as typed: what a float would have lost.
    return Fraction(str(t.rate_at(instant)[1]))


def test_prices_stay_the_decimals_typed() -> None:
    t = hphc()
    assert t.rate_at(datetime(2026, 3, 1, 12, tzinfo=PARIS)) == ("HP", Decimal("0.2065"))
    assert isinstance(t.settings.prices[0].hc, Decimal)


def test_a_year_of_windows_adds_up_exactly_where_a_float_sum_drifts() -> None:
    """A year of hourly windows across two price movements, HC changes and both DST days."""
    t = hphc()
    start = datetime(2026, 1, 1, tzinfo=PARIS).astimezone(UTC)
    windows: list[StoredWindow] = []
    exact = Fraction(0)
    float_sum = 0.0
    instant = start
    for n in range(365 * 24):
        # Energies with binary noise, as the index differences are (0.1 Wh resolution).
        wh = 3000.0 + (n % 97) * 0.1 + 0.01 * (n % 7)
        windows.append(StoredWindow(instant, "cp1", "HP", wh, 0.0, {}))
        price = exact_price(t, instant)
        exact += Fraction(wh) / 1000 * price
        float_sum += wh / 1000 * float(price)
        instant += timedelta(hours=1)
    result = compare(windows, t, 3600)
    # Decimal's 28 digits: exact far below the micro-euro.
    assert abs(Fraction(result.in_force.cost_eur) - exact) < Fraction(1, 10**18)
    assert Fraction(float_sum) != exact  # the float running sum is not the sum
    cents = exact * 100
    assert money(result.in_force.cost_eur) == Decimal(int(cents + Fraction(1, 2))) / 100
    # Both price movements and the HC ranges were used.
    assert set(result.in_force.by_period) == {"HP", "HC"}


def test_a_sessions_totals_are_the_exact_sum_of_its_pieces() -> None:
    totals = Totals()
    price = Decimal("0.2081")
    exact = Fraction(0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pieces = []
    for n in range(100_000):
        wh = 0.1 * (n % 13) + 1.7
        exact += Fraction(wh) / 1000 * Fraction("0.2081")
        at = start + timedelta(seconds=n)
        pieces.append(Piece(at, at + timedelta(seconds=1), wh, "HP", price, False))
    totals.add(pieces)
    assert abs(Fraction(totals.cost_eur) - exact) < Fraction(1, 10**18)
    float_sum = 0.0
    for piece in pieces:
        float_sum += piece.energy_wh / 1000 * 0.2081
    assert Fraction(float_sum) != exact
    # Saved and restored through the state file's JSON, the sum is the same to the last digit.
    again = Totals.from_dict(totals.to_dict())
    assert again.cost_eur == totals.cost_eur
