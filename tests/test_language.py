"""The decimal mark every human text shares (alerts, statements, front desk, reports)."""

from __future__ import annotations

from collector.language import decimal_mark


def test_french_writes_a_decimal_comma_english_a_point() -> None:
    assert decimal_mark("35.2", "fr") == "35,2"
    assert decimal_mark("35.2", "en") == "35.2"
    assert decimal_mark("-0.05", "fr") == "-0,05"
    assert decimal_mark("1234", "fr") == "1234"
