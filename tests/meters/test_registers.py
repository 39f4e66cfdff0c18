"""Decode vectors written by hand from the makers' register maps (shared/reference/meters.md).

Every expectation below was worked out from the documents (raw register words -> value in SPEC
units: W, A, V, Wh, Hz), never produced by `encode()`; the hex in comments shows the arithmetic.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.meters.plan import RequestDecoder, plan_reads
from collector.meters.profile import Profile, ValueSpec, load_profiles
from collector.meters.registers import DataType, WordOrder, decimals

ALL_ONES_64 = 0xFFFF_FFFF_FFFF_FFFF
PROFILES = load_profiles()


def decode(
    words: list[int],
    dtype: DataType,
    word_order: WordOrder = "msw",
    scale: float = 1.0,
    not_available: Sequence[int] = (),
) -> float | None:
    """One value decoded as the poller decodes it: a one-value profile, planned and compiled."""
    spec = ValueSpec(
        address=0, type=dtype, unit="W", scale=scale, word_order=word_order, na=list(not_available)
    )
    profile = Profile(
        id="one", manufacturer="test", model="test", phases=1, confidence="confirmed",
        sources=["test"], values={"power_w": spec},
    )  # fmt: skip
    (request,) = plan_reads(profile)
    return RequestDecoder(profile, request)(words)["power_w"]


@pytest.mark.parametrize(
    ("words", "dtype", "order", "factor", "expected"),
    [
        # Hager V1-N, U16 in V/100: 0x5A0A = 23050 -> 230.50 V
        pytest.param([0x5A0A], "u16", "msw", 0.01, 230.50, id="u16-hager-volts"),
        # ABB frequency, U16 in 0.01 Hz: 0x138A = 5002 -> 50.02 Hz
        pytest.param([0x138A], "u16", "msw", 0.01, 50.02, id="u16-abb-hz"),
        # u16 is unsigned: 0xFFFE is 65534, not -2
        pytest.param([0xFFFE], "u16", "msw", 1.0, 65534.0, id="u16-top"),
        # Carlo Gavazzi PF, INT16 x0.001: 0x03E8 = 1000 -> 1.000
        pytest.param([0x03E8], "s16", "msw", 0.001, 1.0, id="s16-cg-pf"),
        # 0xFC18 = 64536 - 65536 = -1000 -> -1.000
        pytest.param([0xFC18], "s16", "msw", 0.001, -1.0, id="s16-negative"),
        # Carlo Gavazzi Hz, INT16 x0.1: 0x01F4 = 500 -> 50.0 Hz
        pytest.param([0x01F4], "s16", "lsw", 0.1, 50.0, id="s16-word-order-irrelevant"),
        pytest.param([0x8000], "s16", "msw", 1.0, -32768.0, id="s16-min"),
        # ABB V1-N, U32 x0.1 V, high word first: 0x000008FD = 2301 -> 230.1 V
        pytest.param([0x0000, 0x08FD], "u32", "msw", 0.1, 230.1, id="u32-abb-volts"),
        # Legrand V1-N in mV: 0x00038301 = 3 x 65536 + 33537 = 230145 mV -> 230.145 V
        pytest.param([0x0003, 0x8301], "u32", "msw", 0.001, 230.145, id="u32-legrand-mV"),
        pytest.param([0x8301, 0x0003], "u32", "lsw", 0.001, 230.145, id="u32-lsw-mV"),
        # Legrand I1 in mA: 0x3E80 = 16000 mA -> 16 A
        pytest.param([0x0000, 0x3E80], "u32", "msw", 0.001, 16.0, id="u32-legrand-mA"),
        # Carlo Gavazzi V1-N, INT32 low word first, x0.1 V: 2301 -> [0x08FD, 0x0000]
        pytest.param([0x08FD, 0x0000], "s32", "lsw", 0.1, 230.1, id="s32-cg-volts-swapped"),
        # CG power 74000 x0.1 W = 7400 W: 0x00012110 low word first -> [0x2110, 0x0001]
        pytest.param([0x2110, 0x0001], "s32", "lsw", 0.1, 7400.0, id="s32-cg-power-swapped"),
        # CG power -1500 x0.1 W: 2^32 - 1500 = 0xFFFFFA24 low word first
        pytest.param([0xFA24, 0xFFFF], "s32", "lsw", 0.1, -150.0, id="s32-cg-negative"),
        # Hager sum P, S32 in kW/100 (= 10 W): 0x02E4 = 740 -> 7.40 kW = 7400 W
        pytest.param([0x0000, 0x02E4], "s32", "msw", 10.0, 7400.0, id="s32-hager-kW/100"),
        # Socomec sum P, S32 kW/100: 0xFFFFFF85 = -123 -> -1.23 kW = -1230 W
        pytest.param([0xFFFF, 0xFF85], "s32", "msw", 10.0, -1230.0, id="s32-socomec-negative"),
        # ABB import, U64 in 0.01 kWh (10 Wh): 0x075BCD15 = 123456789 -> 1234567890 Wh
        pytest.param([0, 0, 0x075B, 0xCD15], "u64", "msw", 10.0, 1234567890.0, id="u64-abb"),
        pytest.param([0xCD15, 0x075B, 0, 0], "u64", "lsw", 10.0, 1234567890.0, id="u64-lsw"),
        # Schneider import, INT64 Wh: 0xBC614E = 12345678 Wh
        pytest.param([0, 0, 0x00BC, 0x614E], "s64", "msw", 1.0, 12345678.0, id="s64-schneider"),
        # Above 32 bits: 0x0000_0001_0000_04D2 = 4294967296 + 1234 Wh
        pytest.param([0, 1, 0, 0x04D2], "s64", "msw", 1.0, 4294968530.0, id="s64-over-32-bits"),
        pytest.param([0xFFFF] * 4, "s64", "msw", 1.0, -1.0, id="s64-negative"),
        # IEEE-754 230.0 = 1.796875 x 2^7: sign 0, exponent 0x86, mantissa 0x660000 -> 0x43660000
        pytest.param([0x4366, 0x0000], "f32", "msw", 1.0, 230.0, id="f32-eastron-volts"),
        pytest.param([0x0000, 0x4366], "f32", "lsw", 1.0, 230.0, id="f32-lsw"),
        pytest.param([0xC366, 0x0000], "f32", "msw", 1.0, -230.0, id="f32-negative"),
        # Schneider total P in kW: 3.5 = 1.75 x 2^1 -> 0x40600000 -> 3500 W
        pytest.param([0x4060, 0x0000], "f32", "msw", 1000.0, 3500.0, id="f32-schneider-kW"),
        # ORNO OR-WE-516 P in kW: 7.4 -> 0x40ECCCCD (nearest float) -> 7400 W
        pytest.param([0x40EC, 0xCCCD], "f32", "msw", 1000.0, 7400.0, id="f32-orno-kW"),
        # Eastron import kWh: 1234.5 = 1.00110100101b x 2^10 -> 0x449A5000 -> 1234500 Wh
        pytest.param([0x449A, 0x5000], "f32", "msw", 1000.0, 1234500.0, id="f32-eastron-kWh"),
        # IEEE-754 double 50.0 = 1.5625 x 2^5: exponent 0x404 -> 0x4049000000000000
        pytest.param([0x4049, 0, 0, 0], "f64", "msw", 1.0, 50.0, id="f64-hz"),
        pytest.param([0, 0, 0, 0x4049], "f64", "lsw", 1.0, 50.0, id="f64-lsw"),
        # 1.0 = 0x3FF0000000000000 kWh -> 1000 Wh
        pytest.param([0x3FF0, 0, 0, 0], "f64", "msw", 1000.0, 1000.0, id="f64-kWh"),
    ],
)
def test_vector(
    words: list[int], dtype: DataType, order: WordOrder, factor: float, expected: float
) -> None:
    assert decode(words, dtype, order, factor) == pytest.approx(expected, rel=1e-7)


def test_word_order_matters_for_carlo_gavazzi() -> None:
    # evcc's cg-emt1xx reads these high word first; 7400 W would come out as 55 MW.
    swapped = [0x2110, 0x0001]
    assert decode(swapped, "s32", "msw", 0.1) == pytest.approx(0x21100001 * 0.1)
    assert decode(swapped, "s32", "lsw", 0.1) == pytest.approx(7400.0)


@pytest.mark.parametrize(
    ("words", "dtype"),
    [
        pytest.param([0x7FC0, 0x0000], "f32", id="f32-quiet-nan"),
        pytest.param([0xFFC0, 0x0000], "f32", id="f32-schneider-nan"),
        pytest.param([0x7F80, 0x0000], "f32", id="f32-plus-inf"),
        pytest.param([0xFF80, 0x0000], "f32", id="f32-minus-inf"),
        pytest.param([0x7FF8, 0, 0, 0], "f64", id="f64-nan"),
        pytest.param([0x7FF0, 0, 0, 0], "f64", id="f64-inf"),
    ],
)
def test_non_finite_floats_are_none(words: list[int], dtype: DataType) -> None:
    assert decode(words, dtype) is None
    assert decode(words, dtype, "msw", 1000.0) is None


def test_value_that_overflows_once_scaled_is_none() -> None:
    # The largest double (0x7FEFFFFFFFFFFFFF, 1.8e308) read in kW is infinite in W.
    assert decode([0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF], "f64", "msw", 1000.0) is None


@pytest.mark.parametrize(
    ("words", "dtype", "order", "markers"),
    [
        pytest.param([0xFFFF, 0xFFFF], "u32", "msw", [0xFFFF_FFFF], id="abb-u32-all-ones"),
        pytest.param([0x7FFF, 0xFFFF], "s32", "msw", [0x7FFF_FFFF], id="abb-s32-7fff"),
        pytest.param([0xFFFF], "u16", "msw", [0xFFFF], id="abb-hager-u16-all-ones"),
        pytest.param([0x7FFF], "s16", "msw", [0x7FFF], id="abb-s16-7fff"),
        pytest.param([0xFFFF] * 4, "u64", "msw", [ALL_ONES_64], id="abb-u64-all-ones"),
        # Carlo Gavazzi overflow 0x7FFFFFFF, stored low word first
        pytest.param([0xFFFF, 0x7FFF], "s32", "lsw", [0x7FFF_FFFF], id="cg-overflow-swapped"),
    ],
)
def test_not_available_markers_are_none(
    words: list[int], dtype: DataType, order: WordOrder, markers: list[int]
) -> None:
    assert decode(words, dtype, order, 1.0) is not None  # a number without the marker...
    assert decode(words, dtype, order, 1.0, markers) is None  # ...null with it


def test_marker_is_compared_after_word_order() -> None:
    # Low word first [0x7FFF, 0xFFFF] is 0xFFFF7FFF = -32769, a real value, not the marker.
    assert decode([0x7FFF, 0xFFFF], "s32", "lsw", 0.1, [0x7FFF_FFFF]) == pytest.approx(-3276.9)


@pytest.mark.parametrize(("words", "dtype"), [([0x4366], "f32"), ([], "u16"), ([1, 2, 3], "u64")])
def test_too_few_registers_are_rejected(words: list[int], dtype: DataType) -> None:
    with pytest.raises(ValueError, match="short answer"):
        decode(words, dtype)


def test_register_outside_16_bits_is_rejected() -> None:
    with pytest.raises(ValueError, match="register value 65536 is not 16-bit"):
        decode([0x1_0000], "u16")
    with pytest.raises(ValueError, match="register value -1 is not 16-bit"):
        decode([-1], "s16")


def test_short_answer_to_a_request_is_rejected() -> None:
    profile = PROFILES["eastron-sdm630"]
    (request,) = plan_reads(profile, ["voltage_l1_v", "current_l1_a"])
    assert request.count == 8
    with pytest.raises(ValueError, match="short answer: 7 of 8"):
        RequestDecoder(profile, request)([0] * 7)


# --- Through the bundled profiles: plan, raw words per request, decoded reading values --------


def read(profile: Profile, image: dict[int, Sequence[int]]) -> dict[str, float | None]:
    """Poll the values whose registers `image` holds ({address: words}), as the poller would."""
    registers = {a + i: w for a, words in image.items() for i, w in enumerate(words)}
    names = [n for n, spec in profile.values.items() if spec.address in image]
    values: dict[str, float | None] = {}
    for request in plan_reads(profile, names):
        words = [registers.get(request.address + i, 0) for i in range(request.count)]
        values.update(RequestDecoder(profile, request)(words))
    return values


def check(actual: dict[str, float | None], expected: dict[str, float | None]) -> None:
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        if value is None:
            assert actual[name] is None, name
        else:
            assert actual[name] == pytest.approx(value, rel=1e-6), name


def test_carlo_gavazzi_em340_word_swapped() -> None:
    values = read(
        PROFILES["carlo-gavazzi-em340"],
        {
            0x0000: [0x08FD, 0x0000],  # V1 2301 x0.1 V
            0x000C: [0x3E80, 0x0000],  # I1 16000 x0.001 A
            0x0028: [0x2110, 0x0001],  # sum P 74000 x0.1 W
            0x0031: [0x03CA],  # PF 970 x0.001
            0x0033: [0x01F4],  # 500 x0.1 Hz
            0x0034: [0xD687, 0x0012],  # import 0x12D687 = 1234567 x0.1 kWh
            0x004E: [0xFFFF, 0x7FFF],  # export overflow 0x7FFFFFFF
        },
    )
    check(
        values,
        {
            "voltage_l1_v": 230.1,
            "current_l1_a": 16.0,
            "power_w": 7400.0,
            "power_factor": 0.97,
            "frequency_hz": 50.0,
            "energy_wh": 123_456_700.0,
            "export_energy_wh": None,
        },
    )


def test_carlo_gavazzi_em111_word_swapped() -> None:
    values = read(
        PROFILES["carlo-gavazzi-em111"],
        {
            0x0004: [0x8FC0, 0x0000],  # P 36800 x0.1 W, low word first
            0x0010: [0xD687, 0x0012],  # import 1234567 x0.1 kWh
        },
    )
    check(values, {"power_w": 3680.0, "energy_wh": 123_456_700.0})


def test_schneider_iem3155_kw_and_int64_wh() -> None:
    values = read(
        PROFILES["schneider-iem3155"],
        {
            0x0BD3: [0x4366, 0x0000],  # V1-N 230.0 V (register 3028)
            0x0BED: [0x40EC, 0xCCCD],  # P1 7.4 kW (register 3054)
            0x0BF3: [0x4060, 0x0000],  # total P 3.5 kW (register 3060)
            0x0C25: [0xFFC0, 0x0000],  # frequency NaN (not available)
            0x0C83: [0, 0, 0x00BC, 0x614E],  # import 12345678 Wh (register 3204)
            0x0C87: [0, 1, 0, 0x04D2],  # export 4294968530 Wh (register 3208)
        },
    )
    check(
        values,
        {
            "voltage_l1_v": 230.0,
            "power_l1_w": 7400.0,
            "power_w": 3500.0,
            "frequency_hz": None,
            "energy_wh": 12_345_678.0,
            "export_energy_wh": 4_294_968_530.0,
        },
    )


def test_abb_b23_hundredths_and_markers() -> None:
    values = read(
        PROFILES["abb-b23"],
        {
            0x5B00: [0x0000, 0x08FD],  # V1 2301 x0.1 V
            0x5B0C: [0x0000, 0x0640],  # I1 1600 x0.01 A
            0x5B14: [0x0005, 0x9D80],  # sum P 0x59D80 = 368000 x0.01 W
            0x5B2C: [0x1388],  # 5000 x0.01 Hz
            0x5B3B: [0x7FFF],  # PF L1 not available on this device
            0x5000: [0, 0, 0x075B, 0xCD15],  # import 123456789 x0.01 kWh
            0x5004: [0xFFFF] * 4,  # export not available
        },
    )
    check(
        values,
        {
            "voltage_l1_v": 230.1,
            "current_l1_a": 16.0,
            "power_w": 3680.0,
            "frequency_hz": 50.0,
            "power_factor_l1": None,
            "energy_wh": 1_234_567_890.0,
            "export_energy_wh": None,
        },
    )


def test_hager_ecr_single_phase_model() -> None:
    values = read(
        PROFILES["hager-ecr"],
        {
            0xB000: [0x5A0A],  # V1 23050 V/100
            0xB001: [0xFFFF],  # V2 on a single-phase ECR140D: all ones
            0xB009: [0x0000, 0x3E80],  # I1 16000 mA
            0xB011: [0x0000, 0x016F],  # sum P 367 kW/100
            0xB060: [0x0000, 0x3039],  # Ea+ 12345 kWh
        },
    )
    check(
        values,
        {
            "voltage_l1_v": 230.5,
            "voltage_l2_v": None,
            "current_l1_a": 16.0,
            "power_w": 3670.0,
            "energy_wh": 12_345_000.0,
        },
    )


def test_orno_or_we_516_kw_float() -> None:
    values = read(
        PROFILES["orno-or-we-516"],
        {
            0x000E: [0x4366, 0x0000],  # V1 230.0 V
            0x001C: [0x40EC, 0xCCCD],  # total P 7.4 kW
            0x0108: [0x449A, 0x5000],  # forward energy 1234.5 kWh
        },
    )
    check(values, {"voltage_l1_v": 230.0, "power_w": 7400.0, "energy_wh": 1_234_500.0})


def test_orno_or_we_514_scaled_integers() -> None:
    values = read(
        PROFILES["orno-or-we-514"],
        {
            0x0130: [0x1388],  # 5000 x0.01 Hz
            0x0131: [0x59D8],  # 23000 x0.01 V
            0x0139: [0x0000, 0x3E80],  # 16000 x0.001 A
            0x0140: [0x0000, 0x0E60],  # 3680 W
            0xA000: [0x0001, 0xE240],  # 0x1E240 = 123456 x0.01 kWh
        },
    )
    check(
        values,
        {
            "frequency_hz": 50.0,
            "voltage_v": 230.0,
            "current_a": 16.0,
            "power_w": 3680.0,
            "energy_wh": 1_234_560.0,
        },
    )


def test_legrand_emdx3_millivolts_and_milliamps() -> None:
    values = read(
        PROFILES["legrand-emdx3-412045"],
        {
            4096: [0x0003, 0x8301],  # V1 230145 mV
            4102: [0x0000, 0x3E80],  # I1 16000 mA
            4116: [0x0005, 0x9D80],  # sum P 368000 x 0.01 W
            4124: [0x0012, 0xD687],  # import 1234567 x 10 Wh
            4132: [0x0062],  # PF 98 x0.01
            4134: [0x01F4],  # 500 x0.1 Hz
        },
    )
    check(
        values,
        {
            "voltage_l1_v": 230.145,
            "current_l1_a": 16.0,
            "power_w": 3680.0,
            "energy_wh": 12_345_670.0,
            "power_factor": 0.98,
            "frequency_hz": 50.0,
        },
    )


def test_socomec_countis_e_hundredths_of_kw() -> None:
    values = read(
        PROFILES["socomec-countis-e"],
        {
            0xC558: [0x0000, 0x59D8],  # V1 23000 V/100
            0xC560: [0x0000, 0x3E80],  # I1 16000 mA
            0xC568: [0xFFFF, 0xFF85],  # sum P -123 kW/100
            0xC652: [0x0000, 0x3039],  # Ea+ 12345 kWh
        },
    )
    check(
        values,
        {
            "voltage_l1_v": 230.0,
            "current_l1_a": 16.0,
            "power_w": -1230.0,
            "energy_wh": 12_345_000.0,
        },
    )


def test_eastron_sdm630_floats() -> None:
    values = read(
        PROFILES["eastron-sdm630"],
        {
            0x0000: [0x4366, 0x0000],  # V1 230.0 V
            0x0034: [0x4566, 0x0000],  # total P 3680.0 W (230 x 16: exponent 0x86 + 4)
            0x0046: [0x4248, 0x0000],  # 50.0 Hz
            0x0048: [0x449A, 0x5000],  # import 1234.5 kWh
        },
    )
    check(
        values,
        {"voltage_l1_v": 230.0, "power_w": 3680.0, "frequency_hz": 50.0, "energy_wh": 1_234_500.0},
    )


def test_finder_7m24_energy_in_wh() -> None:
    values = read(
        PROFILES["finder-7m24"],
        {2536: [0x4566, 0x0000], 2752: [0x449A, 0x5000]},  # 3680.0 W, counter n1 1234.5 Wh
    )
    check(values, {"power_w": 3680.0, "energy_wh": 1234.5})


def test_published_numbers_have_the_digits_the_meter_has() -> None:
    """No binary noise in payloads: a float32 reads as its shortest decimal, a scaled integer
    keeps the digits of its scale (exact equality on purpose)."""
    assert repr(decode([0x3F7D, 0x70A4], "f32")) == "0.99"  # float32 nearest to 0.99
    assert repr(decode([0x4365, 0xDEB8], "f32")) == "229.87"
    assert repr(decode([2300], "u16", scale=0.1)) == "230.0"
    assert repr(decode([0x0003, 0x8301], "u32", scale=0.001)) == "230.145"
    assert repr(decode([0x3F9D, 0xF3B6], "f32", scale=1000)) == "1234.0"  # 1.234 kW


def decimal_places(text: str) -> int:
    """The reference: what Decimal says of the same text."""
    exponent = decimal.Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 17))
def test_decimals_read_from_the_text_are_decimals_places(value: float, digits: int) -> None:
    for text in (repr(value), f"{value:.{digits}g}"):
        assert decimals(text) == decimal_places(text), text


def test_decimals_of_specials_are_zero() -> None:
    assert [decimals(t) for t in ("inf", "-inf", "nan", "1e+20", "0.0")] == [0, 0, 0, 0, 1]
