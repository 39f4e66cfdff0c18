"""Meter profiles as data: bundled files, `irve profiles`, users' directories, plans, units."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.cli import main
from collector.meters.plan import RequestDecoder, plan_reads
from collector.meters.profile import BUNDLED, UNITS, Profile, load_profiles
from collector.meters.registers import encode
from collector.site import load_site
from tests.support.paths import EXAMPLES

BUNDLED_FILES = sorted(e.name for e in BUNDLED.iterdir() if e.name.endswith(".yaml"))
REQUIRED = {
    "eastron-sdm120",
    "eastron-sdm630",
    "eastron-sdm72d-m",
    "carlo-gavazzi-em111",
    "carlo-gavazzi-em340",
    "carlo-gavazzi-em24",
    "schneider-iem3155",
    "abb-b21",
    "abb-b23",
    "hager-ecr",
    "socomec-countis-e",
    "finder-7m24",
    "finder-7m38",
    "orno-or-we-514",
    "orno-or-we-516",
    "legrand-emdx3-412045",
}


def profile_data(**changes: Any) -> dict[str, Any]:
    """A small valid user profile: a kW float power register and a Wh integer counter."""
    data: dict[str, Any] = {
        "id": "acme-x1",
        "manufacturer": "Acme",
        "model": "X1 test meter",
        "phases": 1,
        "confidence": "unverified",
        "sources": ["written for this test"],
        "function": "holding",
        "max_read": 30,
        "max_gap": 16,
        "values": {
            "voltage_v": {"address": 0, "type": "f32", "unit": "V"},
            "power_w": {"address": 12, "type": "f32", "unit": "kW"},
            "energy_wh": {"address": 20, "type": "u32", "unit": "Wh"},
        },
    }
    data.update(changes)
    return data


def write_profile(directory: Path, data: dict[str, Any], name: str = "acme-x1.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- Bundled profiles -------------------------------------------------------------------------


def test_every_required_meter_is_shipped() -> None:
    assert set(load_profiles()) >= REQUIRED


@pytest.mark.parametrize("filename", BUNDLED_FILES)
def test_bundled_profile_is_valid(filename: str) -> None:
    profile = load_profiles()[filename.removesuffix(".yaml")]  # the file is named after its id
    assert profile.sources and profile.model
    if profile.confidence != "confirmed":
        assert profile.notes, "a profile that is not confirmed must say why"
    phase_names = [n for n in profile.values if "_l2" in n or "_l3" in n]
    assert (profile.phases == 3) or not phase_names, "single-phase profile with L2/L3 values"
    requests = plan_reads(profile)
    planned = [slot.name for r in requests for slot in r.slots]
    assert sorted(planned) == sorted(profile.values)
    for request in requests:
        assert request.count <= profile.max_read
        assert request.address + request.count <= 0x10000
        for slot in request.slots:
            spec = profile.values[slot.name]
            assert profile.function_of(spec) == request.function
            assert request.address + slot.offset == spec.address


def test_irve_profiles_lists_every_bundled_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0] for line in lines}
    assert listed == set(load_profiles())
    legrand = next(line for line in lines if line.startswith("legrand-emdx3-412045"))
    assert "unverified" in legrand and "3ph" in legrand


# --- Users' profiles --------------------------------------------------------------------------


def test_user_profile_directory_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_profile(tmp_path / "mine", profile_data())
    assert main(["profiles", "-d", str(tmp_path / "mine")]) == 0
    out = capsys.readouterr().out
    assert "acme-x1" in out and "Acme X1 test meter" in out
    assert "eastron-sdm630" in out  # bundled ones are still there


def test_user_profile_is_usable_from_a_site_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_profile(tmp_path / "mine", profile_data())
    site: dict[str, Any] = yaml.safe_load((EXAMPLES / "gite-one-socket.yaml").read_text())
    site["profiles_dir"] = [str(tmp_path / "mine")]
    site["meters"][0]["profile"] = "acme-x1"
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site, allow_unicode=True))

    assert main(["check", "-c", str(path)]) == 0
    assert "Acme X1 test meter" in capsys.readouterr().out
    _, profiles = load_site(str(path))
    profile = profiles["acme-x1"]
    (request,) = plan_reads(profile)
    words = [0] * request.count
    words[12:14] = [0x4060, 0x0000]  # 3.5 kW
    words[20:22] = [0x0000, 0x04D2]  # 1234 Wh
    values = RequestDecoder(profile, request)(words)
    assert values["power_w"] == 3500.0
    assert values["energy_wh"] == 1234.0


def test_user_profile_replaces_a_bundled_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_profile(tmp_path, profile_data(id="eastron-sdm120", model="SDM120 site copy"))
    assert main(["profiles", "-d", str(tmp_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("eastron-sdm120"))
    assert "SDM120 site copy" in line


def test_missing_profiles_directory_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["profiles", "-d", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: profiles directory not found" in capsys.readouterr().err


def _values(**values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param(
            {"values": _values(power_w={"address": 0, "type": "f32", "unit": "kVA"})},
            "values.power_w.unit: unknown unit 'kVA'",
            id="unknown-unit",
        ),
        pytest.param(
            {"values": _values(current_a={"address": 0, "type": "f32", "unit": "W"})},
            "values.current_a.unit: 'W' cannot express 'A'",
            id="unit-of-another-quantity",
        ),
        pytest.param(
            {"values": _values(power_w={"address": 0, "type": "f16"})},
            "values.power_w.type: Input should be 'u16'",
            id="unknown-type",
        ),
        pytest.param(
            {"values": _values(power_kw={"address": 0, "type": "f32"})},
            "values.power_kw: unknown quantity",
            id="unknown-quantity",
        ),
        pytest.param(
            {"values": _values(power_w={"address": 0, "type": "f32", "scaling": 2})},
            "values.power_w.scaling: Extra inputs are not permitted",
            id="misspelt-key",
        ),
        pytest.param(
            {"values": _values(power_w={"address": -1, "type": "f32"})},
            "values.power_w.address: Input should be greater than or equal to 0",
            id="negative-address",
        ),
        pytest.param(
            {"values": _values(energy_wh={"address": 0xFFFF, "type": "u32", "unit": "Wh"})},
            "values.energy_wh.address: runs past register 0xFFFF",
            id="past-last-register",
        ),
        pytest.param(
            {
                "values": _values(
                    power_w={"address": 12, "type": "f32", "unit": "W"},
                    energy_wh={"address": 13, "type": "f32", "unit": "kWh"},
                )
            },
            "values.energy_wh.address: register 0x000d is also used by power_w",
            id="overlapping-registers",
        ),
        pytest.param({"max_read": 200}, "max_read: Input should be less than or equal to 125"),
        pytest.param({"confidence": "sure"}, "confidence: Input should be 'confirmed'"),
        pytest.param({"sources": []}, "sources: List should have at least 1 item"),
        pytest.param(
            {"values": _values(voltage_v={"address": 0, "type": "f32", "unit": "V"})},
            "values: a profile needs at least power_w or energy_wh",
            id="nothing-to-meter",
        ),
    ],
)
def test_broken_user_profile_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any], message: str
) -> None:
    path = write_profile(tmp_path, profile_data(**changes), name="broken.yaml")
    assert main(["profiles", "-d", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err, err


def test_profile_that_is_not_yaml_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.yaml").write_text("id: [unclosed\n")
    assert main(["profiles", "-d", str(tmp_path)]) == 2
    assert f"{tmp_path / 'junk.yaml'}: not valid YAML" in capsys.readouterr().err


def test_profile_that_is_not_a_mapping_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "list.yaml").write_text("- id: acme\n")
    assert main(["profiles", "-d", str(tmp_path)]) == 2
    assert f"{tmp_path / 'list.yaml'}: expected a mapping" in capsys.readouterr().err


def test_broken_user_profile_fails_the_site_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = profile_data(values=_values(power_w={"address": 0, "type": "f32", "unit": "kVA"}))
    path = write_profile(tmp_path / "mine", bad)
    site: dict[str, Any] = yaml.safe_load((EXAMPLES / "gite-one-socket.yaml").read_text())
    site["profiles_dir"] = [str(tmp_path / "mine")]
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(site, allow_unicode=True))
    assert main(["check", "-c", str(tmp_path / "site.yaml")]) == 2
    assert f"{path}: values.power_w.unit" in capsys.readouterr().err


# --- Units ------------------------------------------------------------------------------------


def test_kw_and_wh_registers_both_end_up_in_spec_units() -> None:
    profile = Profile.model_validate(
        profile_data(
            values={
                "power_w": {"address": 0, "type": "f32", "unit": "kW"},
                "energy_wh": {"address": 2, "type": "u32", "unit": "Wh"},
                "export_energy_wh": {"address": 4, "type": "u32", "unit": "kWh", "scale": 0.01},
                "current_a": {"address": 6, "type": "u16", "unit": "mA"},
                "voltage_v": {"address": 7, "type": "u32", "unit": "mV"},
            }
        )
    )
    (request,) = plan_reads(profile)
    words = [0x4060, 0x0000, 0x0000, 0x04D2, 0x0000, 0x04D2, 0x3E80, 0x0003, 0x8301]
    assert RequestDecoder(profile, request)(words) == {
        "power_w": 3500.0,  # 3.5 kW
        "energy_wh": 1234.0,  # 1234 Wh
        "export_energy_wh": pytest.approx(12340.0),  # 1234 x 0.01 kWh
        "current_a": 16.0,  # 16000 mA
        "voltage_v": pytest.approx(230.145),  # 230145 mV
    }


def test_unit_factors() -> None:
    assert {u: f for u, (_, f) in UNITS.items()} == {
        "W": 1.0,
        "kW": 1000.0,
        "A": 1.0,
        "mA": 0.001,
        "V": 1.0,
        "mV": 0.001,
        "Wh": 1.0,
        "kWh": 1000.0,
        "MWh": 1_000_000.0,
        "Hz": 1.0,
        "": 1.0,
    }


# --- Read plans -------------------------------------------------------------------------------


def synthetic(
    addresses: dict[str, tuple[int, str]], max_read: int = 50, max_gap: int = 8, **extra: Any
) -> Profile:
    """A profile with `name: (address, type)` values, the rest as given."""
    values = {name: {"address": a, "type": t} for name, (a, t) in addresses.items()}
    for name, spec in values.items():
        spec["unit"] = {"_w": "W", "_a": "A", "_v": "V", "wh": "Wh", "hz": "Hz"}[name[-2:]]
        spec.update(extra.pop(name, {}))
    return Profile.model_validate(
        profile_data(values=values, max_read=max_read, max_gap=max_gap, **extra)
    )


THREE_PHASE = {
    "voltage_l1_v": (0, "u32"),
    "voltage_l2_v": (2, "u32"),
    "voltage_l3_v": (4, "u32"),
    "power_w": (6, "u32"),
}


def spans(profile: Profile, **kwargs: Any) -> list[tuple[str, int, int]]:
    return [(r.function, r.address, r.count) for r in plan_reads(profile, **kwargs)]


def test_contiguous_values_take_one_request() -> None:
    assert spans(synthetic(THREE_PHASE, max_read=8)) == [("holding", 0, 8)]


def test_max_read_splits_into_the_fewest_requests() -> None:
    assert spans(synthetic(THREE_PHASE, max_read=6)) == [("holding", 0, 6), ("holding", 6, 2)]
    assert spans(synthetic(THREE_PHASE, max_read=4)) == [("holding", 0, 4), ("holding", 4, 4)]


def test_max_gap_decides_whether_to_read_across_unused_registers() -> None:
    values = {"power_w": (0, "u16"), "energy_wh": (10, "u16")}  # 9 unused registers between
    assert spans(synthetic(values, max_gap=8)) == [("holding", 0, 1), ("holding", 10, 1)]
    assert spans(synthetic(values, max_gap=9)) == [("holding", 0, 11)]
    assert spans(synthetic(values, max_gap=9, max_read=10)) == [
        ("holding", 0, 1),
        ("holding", 10, 1),
    ]


def test_function_codes_are_never_mixed() -> None:
    profile = synthetic(
        {"power_w": (0, "f32"), "energy_wh": (2, "f32"), "voltage_v": (4, "f32")},
        energy_wh={"function": "input"},
    )
    # Holding registers 0..5 are one read (across the two input registers), input 2..3 another.
    assert spans(profile) == [("holding", 0, 6), ("input", 2, 2)]


def test_learned_limit_is_never_exceeded() -> None:
    profile = synthetic(THREE_PHASE, max_read=8)
    assert spans(profile, max_read=2) == [("holding", a, 2) for a in (0, 2, 4, 6)]
    assert spans(profile, max_read=100) == [("holding", 0, 8)]  # never above the profile's


@pytest.mark.parametrize("limit", [2, 4, 10, 30])
def test_learned_limit_on_every_bundled_profile(limit: int) -> None:
    for profile in load_profiles().values():
        requests = plan_reads(profile, max_read=limit)
        for request in requests:
            # Only a lone value wider than the limit (a u64 under 4) may be read whole.
            assert request.count <= limit or len(request.slots) == 1, profile.id
        assert sum(len(r.slots) for r in requests) == len(profile.values)


def test_only_the_named_values_are_read() -> None:
    profile = load_profiles()["eastron-sdm630"]
    (request,) = plan_reads(profile, ["power_w", "energy_wh"])
    assert (request.address, request.count) == (0x0034, 0x0048 + 2 - 0x0034)
    assert [s.name for s in request.slots] == ["power_w", "energy_wh"]


@pytest.mark.parametrize(
    ("profile_id", "expected"),
    [
        ("eastron-sdm630", 1),  # 0x0000..0x004B in one read of 76 registers
        ("carlo-gavazzi-em340", 2),  # 80 registers, 50 per read
        ("eastron-sdm72d-m", 2),  # 10 registers per read at most
        ("schneider-iem3155", 4),
        ("abb-b23", 3),
    ],
)
def test_bundled_profiles_read_in_few_requests(profile_id: str, expected: int) -> None:
    assert len(plan_reads(load_profiles()[profile_id])) == expected


# --- Round trip (an extra check: the hand-written vectors are in test_decode.py) -------------


def sample(name: str) -> float:
    """A realistic value for any quantity name."""
    if name.startswith("power_factor"):
        return 0.97
    if name in ("voltage_l12_v", "voltage_l23_v", "voltage_l31_v"):
        return 400.3
    prefixes = {"voltage": 231.2, "current": 16.02, "power": 3680.4, "frequency": 50.01}
    for prefix, value in prefixes.items():
        if name.startswith(prefix):
            return value
    assert name.endswith("_wh"), name
    return 1_234_567.0


@pytest.mark.parametrize("profile_id", sorted(load_profiles()))
def test_round_trip_every_value(profile_id: str) -> None:
    profile = load_profiles()[profile_id]
    image: dict[tuple[str, int], int] = {}
    for name, spec in profile.values.items():
        words = encode(
            sample(name), spec.type, profile.word_order_of(spec), profile.factor_of(spec)
        )
        for i, word in enumerate(words):
            image[(profile.function_of(spec), spec.address + i)] = word
    for request in plan_reads(profile):
        words = [
            image.get((request.function, request.address + i), 0) for i in range(request.count)
        ]
        for name, value in RequestDecoder(profile, request)(words).items():
            spec = profile.values[name]
            resolution = profile.factor_of(spec) if spec.type[0] in "us" else 0.0
            assert value == pytest.approx(sample(name), rel=1e-6, abs=resolution / 2 + 1e-9), name


def test_example_in_the_docs_is_a_valid_profile() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text(
        encoding="utf-8"
    )
    block = next(b for b in text.split("```yaml")[1:] if "id: acme-x1" in b)
    profile = Profile.model_validate(yaml.safe_load(block.split("```")[0]))
    assert profile.factor_of(profile.values["power_w"]) == pytest.approx(1.0)  # 0.001 kW = 1 W


def test_counter_span_of_the_energy_register() -> None:
    """Where each bundled index wraps: from its register type and scale (float: never)."""
    profiles = load_profiles([])
    assert profiles["legrand-emdx3-412045"].counter_spans_wh() == (2**32 * 10.0,)  # u32, 10 Wh
    assert profiles["eastron-sdm120"].counter_spans_wh() == ()  # float32 kWh
    assert profiles["schneider-iem3155"].counter_spans_wh() == (2**64 * 1.0,)  # int64 Wh
