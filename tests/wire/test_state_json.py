"""The `state` message built without validation, and written without `model_dump`, is the
message pydantic would validate and write: same bytes, for any reading."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.meters.reading import Reading, state_keys
from collector.site import load_site
from collector.wire.messages import StateMessage, format_ts
from tests.support.sim_helpers import main_meter, socket_meter, tcp_bus, write_site

NAMES = [
    "power_w", "current_a", "voltage_v", "energy_wh", "power_factor", "frequency_hz",
    "export_energy_wh", "current_l1_a", "current_l2_a", "current_l3_a", "voltage_l1_v",
    "voltage_l2_v", "voltage_l3_v", "power_l1_w", "power_l2_w", "power_l3_w",
]  # fmt: skip
VALUE = st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False), st.just(-0.0))
KEYS = st.one_of(
    st.just({}),
    st.builds(lambda r: {"role": "socket", "rated_current_a": r}, st.floats(1, 125)),
    st.builds(
        lambda w, s: {"role": "main", "limit_w": w, "warning_w": w * s},
        st.floats(1000, 1e6),
        st.floats(0.5, 1),
    ),
)
TS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def validated_json(reading: Reading, charging: bool | None, keys: dict[str, Any]) -> bytes:
    """The message as pydantic validates and dumps it (the former way)."""
    message = StateMessage(
        ts=reading.ts,
        power_w=reading.power_w,
        current_a=reading.current_a,
        voltage_v=reading.voltage_v,
        energy_wh=reading.energy_wh,
        currents_a=reading.currents_a,
        voltages_v=reading.voltages_v,
        power_factor=reading.values.get("power_factor"),
        frequency_hz=reading.values.get("frequency_hz"),
        export_energy_wh=reading.values.get("export_energy_wh"),
        charging=charging,
        **keys,
    )
    data = message.model_dump(mode="json", exclude_none=True)
    for key in ("power_w", "current_a", "voltage_v", "energy_wh"):
        data.setdefault(key, None)
    return json.dumps(data, separators=(",", ":")).encode()


@given(
    ts=TS,
    values=st.dictionaries(st.sampled_from(NAMES), VALUE),
    charging=st.sampled_from([None, True, False]),
    keys=KEYS,
)
def test_state_json_is_what_pydantic_writes(
    ts: datetime, values: dict[str, float | None], charging: bool | None, keys: dict[str, Any]
) -> None:
    reading = Reading("cp1", ts, values)
    assert reading.to_state(charging, keys).to_json() == validated_json(reading, charging, keys)


def test_a_timestamp_in_another_zone_is_written_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    reading = Reading("cp1", datetime(2026, 12, 6, 22, 0, 0, 123456, paris), {"power_w": 1.0})
    payload = json.loads(reading.to_state().to_json())
    assert payload["ts"] == "2026-12-06T21:00:00.123Z"


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_a_non_finite_number_is_refused(bad: float) -> None:
    reading = Reading("cp1", datetime(2026, 12, 6, tzinfo=UTC), {"power_l1_w": bad})
    with pytest.raises(ValueError, match="JSON compliant"):
        reading.to_state().to_json()


def test_the_site_file_keys_are_floats_as_validation_would_make_them(tmp_path: Path) -> None:
    meters = [main_meter("main", "board", 10), socket_meter("cp1", "board", 1, rated_a=16)]
    site, _ = load_site(str(write_site(tmp_path, [tcp_bus("board")], meters)))
    for meter in site.meters:
        for key, value in state_keys(site, meter).items():
            assert key == "role" or type(value) is float, (meter.id, key, value)


@given(st.datetimes(min_value=datetime(1001, 1, 1), timezones=st.timezones()))
def test_timestamps_are_utc_with_milliseconds_and_a_z(ts: datetime) -> None:
    utc = ts.astimezone(UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    assert format_ts(ts) == expected
