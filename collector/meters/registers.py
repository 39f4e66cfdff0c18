"""Modbus register types and sizes, the number helpers the request decoder (plan.py) uses, and
the simulator's encoder. Pure functions."""

from __future__ import annotations

import functools
import math
import struct
from typing import Literal

DataType = Literal["u16", "s16", "u32", "s32", "u64", "s64", "f32", "f64"]
WordOrder = Literal["msw", "lsw"]

REGISTERS: dict[DataType, int] = {
    "u16": 1, "s16": 1, "u32": 2, "s32": 2, "u64": 4, "s64": 4, "f32": 2, "f64": 4,
}  # fmt: skip
STRUCT_CODES: dict[DataType, str] = {
    "u16": "H", "s16": "h", "u32": "I", "s32": "i", "u64": "Q", "s64": "q", "f32": "f", "f64": "d",
}  # fmt: skip
_STRUCT = {dtype: ">" + code for dtype, code in STRUCT_CODES.items()}


def shortest_f32(value: float, data: bytes) -> float:
    """The shortest decimal that is this float32, as the meter's display shows it (0.99, not
    0.9900000095367432)."""
    if not math.isfinite(value):
        return value
    for form in _SHORTEST_FORMS:
        candidate = float(form % value)
        if _PACK_F32(candidate) == data:
            return candidate
    return value


# 6 significant digits always survive a float32, 9 always identify one. Made once: this runs
# for every float value of every reading.
_SHORTEST_FORMS = tuple(f"%.{digits}g" for digits in range(6, 10))
_PACK_F32 = struct.Struct(">f").pack


def decimals(text: str) -> int:
    """Digits after the decimal point of a number written out by `repr` or `g` formatting
    ("0.01" -> 2, "1.5e-05" -> 6, "1e+20" -> 0). Read from the text, not with Decimal: the
    poller asks it for every scaled float value of every reading."""
    mantissa, _, exponent = text.partition("e")
    places = len(mantissa.partition(".")[2]) - (int(exponent) if exponent else 0)
    return max(0, places)


@functools.cache
def scale_decimals(scale: float) -> int:
    """A profile has a handful of scales: worked out once each."""
    return decimals(repr(scale))


def encode(
    value: float, dtype: DataType, word_order: WordOrder = "msw", scale: float = 1.0
) -> list[int]:
    """The registers a meter would hold for `value` (the simulator's side of
    `plan.RequestDecoder`)."""
    raw_value: float | int = value / scale
    if dtype[0] in "us":
        raw_value = round(raw_value)
    data = struct.pack(_STRUCT[dtype], raw_value)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return words if word_order == "msw" else list(reversed(words))
