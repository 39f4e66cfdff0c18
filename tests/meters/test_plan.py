"""The compiled decoder of a request gives what a plain decoder of each value on its own gives."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.meters.plan import Request, RequestDecoder, plan_reads
from collector.meters.profile import Profile, load_profiles
from collector.meters.registers import (
    REGISTERS,
    STRUCT_CODES,
    DataType,
    WordOrder,
    decimals,
    scale_decimals,
    shortest_f32,
)

PROFILES = load_profiles()
REQUESTS = [
    pytest.param(profile, request, id=f"{profile.id}-{request.address}")
    for profile in PROFILES.values()
    for request in plan_reads(profile)
]
# Random words, with the profiles' "not available" markers and float specials mixed in.
SPECIAL = [0x0000, 0xFFFF, 0x8000, 0x7FFF, 0x7F80, 0xFF80, 0x7FC0, 0x4366, 0x3F7D]
WORD = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(SPECIAL))


def decode(
    words: Sequence[int],
    dtype: DataType,
    word_order: WordOrder,
    scale: float,
    not_available: Sequence[int],
) -> float | None:
    """One value, step by step as a register map reads: the oracle of the compiled decoder."""
    assert len(words) == REGISTERS[dtype]
    ordered = words if word_order == "msw" else list(reversed(words))
    raw = 0
    for word in ordered:
        raw = (raw << 16) | word
    if raw in not_available:
        return None
    data = raw.to_bytes(2 * len(words), "big")
    (value,) = struct.unpack(">" + STRUCT_CODES[dtype], data)
    digits = 0  # decimals of the raw value: none for an integer register
    if dtype == "f32":
        value = shortest_f32(value, data)
        digits = decimals(repr(value))
    result = float(value) * scale
    if not math.isfinite(result):
        return None
    if scale != 1.0 and dtype != "f64":
        result = round(result, digits + scale_decimals(scale))
    return result


def one_by_one(profile: Profile, request: Request, words: list[int]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for slot in request.slots:
        spec = profile.values[slot.name]
        values[slot.name] = decode(
            words[slot.offset : slot.offset + slot.count],
            spec.type,
            profile.word_order_of(spec),
            profile.factor_of(spec),
            profile.na_of(spec),
        )
    return values


@pytest.mark.parametrize(("profile", "request_"), REQUESTS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_compiled_decoder_matches_decode(
    profile: Profile, request_: Request, data: st.DataObject
) -> None:
    words = data.draw(st.lists(WORD, min_size=request_.count, max_size=request_.count))
    compiled = RequestDecoder(profile, request_)(words)
    expected = one_by_one(profile, request_, words)
    assert compiled.keys() == expected.keys()
    for name, value in expected.items():
        got = compiled[name]
        # Same float, same sign (a -0.0 printed as 0.0 would change the payload).
        assert got == value and repr(got) == repr(value), name


def test_word_outside_16_bits_is_named() -> None:
    profile = PROFILES["eastron-sdm630"]
    request = plan_reads(profile)[0]
    words = [0] * request.count
    words[3] = 70000
    with pytest.raises(ValueError, match="register value 70000 is not 16-bit"):
        RequestDecoder(profile, request)(words)


def test_short_answer_is_named() -> None:
    profile = PROFILES["eastron-sdm630"]
    request = plan_reads(profile)[0]
    with pytest.raises(ValueError, match="short answer: 10 of 76 registers"):
        RequestDecoder(profile, request)([0] * 10)
