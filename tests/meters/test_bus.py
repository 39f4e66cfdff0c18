"""The bus's register decoding gives what pymodbus's own gives, errors included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadInputRegistersResponse

from collector.meters.bus import unpack_registers


@given(st.binary(min_size=1, max_size=260))
def test_unpack_registers_matches_pymodbus(data: bytes) -> None:
    theirs = ReadInputRegistersResponse()
    try:
        theirs.decode(data)
    except ModbusIOException:
        with pytest.raises(ModbusIOException, match="byte_count"):
            unpack_registers(theirs, data)
        return
    assert unpack_registers(theirs, data) == theirs.registers


def test_byte_count_beyond_the_frame_is_refused() -> None:
    with pytest.raises(ModbusIOException, match="byte_count 8 > length of packet 5"):
        unpack_registers(ReadInputRegistersResponse(), bytes([8, 0, 1, 0, 2]))
