"""The languages of the human texts (alerts, statements, the front desk, reports) and the rule
they share for numbers: a decimal comma in French, a point in English."""

from __future__ import annotations

from typing import Literal

Lang = Literal["fr", "en"]


def decimal_mark(text: str, lang: Lang) -> str:
    """`text`, a number written with a point, with the language's decimal mark."""
    return text.replace(".", ",") if lang == "fr" else text
