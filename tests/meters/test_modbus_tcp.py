"""Modbus TCP framing: the same bytes as pymodbus's, and answers matched by transaction id.

The protocol is driven through a real loopback socket pair, so what `data_received` sees is
what a gateway's TCP stream gives: frames split anywhere, several in one read.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
)

from collector.meters.modbus_tcp import (
    ConnectionLost,
    Garbled,
    ModbusTcp,
    Refused,
    answer_registers,
    request_frame,
)
from collector.meters.profile import Function

FUNCTIONS: list[Function] = ["holding", "input"]
REQUESTS = {"holding": ReadHoldingRegistersRequest, "input": ReadInputRegistersRequest}
ANSWERS = {"holding": ReadHoldingRegistersResponse, "input": ReadInputRegistersResponse}
FUNCTION = st.sampled_from(FUNCTIONS)
UNIT = st.integers(1, 247)


@given(FUNCTION, st.integers(1, 0xFFFF), UNIT, st.integers(0, 0xFFFF), st.integers(1, 125))
def test_request_is_the_frame_pymodbus_builds(
    function: Function, tid: int, unit: int, address: int, count: int
) -> None:
    pdu = REQUESTS[function](address=address, count=count, dev_id=unit, transaction_id=tid)
    theirs = FramerSocket(DecodePDU(is_server=False)).buildFrame(pdu)
    assert request_frame(tid, unit, function, address, count) == theirs


@given(FUNCTION, UNIT, st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125))
def test_answer_gives_the_registers_pymodbus_decodes(
    function: Function, unit: int, registers: list[int]
) -> None:
    answer = ANSWERS[function](registers=registers, dev_id=unit, transaction_id=1)
    frame = FramerSocket(DecodePDU(is_server=True)).buildFrame(answer)
    data = answer_registers(frame[6:], unit, function)
    assert list(struct.unpack(f">{len(data) // 2}H", data)) == registers


def test_exception_answer_gives_its_code() -> None:
    answer = ExceptionResponse(4, 2)
    answer.dev_id = 7
    frame = FramerSocket(DecodePDU(is_server=True)).buildFrame(answer)
    with pytest.raises(Refused, match="exception code 2") as refused:
        answer_registers(frame[6:], 7, "input")
    assert refused.value.code == 2


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (bytes([7, 4]), "a 2-byte answer"),
        (bytes([8, 4, 2, 0, 1]), "comes from unit 8"),
        (bytes([7, 3, 2, 0, 1]), "for function code 3"),
        (bytes([7, 4, 12, 0, 1]), "byte count 12, 2 bytes"),
        (bytes([7, 4, 3, 0, 1, 2]), "byte count 3, 3 bytes"),
    ],
)
def test_answer_that_does_not_fit_is_named(frame: bytes, reason: str) -> None:
    with pytest.raises(Garbled, match=reason):
        answer_registers(frame, 7, "input")


# --- the protocol on a socket pair --------------------------------------------------------


def answer(tid: int, unit: int, registers: list[int], function: int = 4) -> bytes:
    body = bytes([unit, function, 2 * len(registers)]) + struct.pack(
        f">{len(registers)}H", *registers
    )
    return struct.pack(">HHH", tid, 0, len(body)) + body


async def connected() -> tuple[ModbusTcp, socket.socket]:
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(ModbusTcp, sock=ours)
    theirs.setblocking(False)
    return protocol, theirs


async def request_seen(peer: socket.socket) -> tuple[int, int, int, int, int]:
    loop = asyncio.get_running_loop()
    data = await loop.sock_recv(peer, 12)
    tid, _, _, unit, function, address, count = struct.unpack(">HHHBBHH", data)
    return tid, unit, function, address, count


def test_answers_split_anywhere_and_late_answers_dropped() -> None:
    async def scenario() -> list[bytes]:
        client, peer = await connected()
        loop = asyncio.get_running_loop()
        got = []
        # 1: no answer in time.
        with pytest.raises(TimeoutError):
            await client.read(1, "input", 0, 2, timeout=0.05)
        first_tid = (await request_seen(peer))[0]
        # 2: the late answer to 1 arrives first, then 2's answer in three pieces.
        read = asyncio.ensure_future(client.read(1, "input", 0, 2, timeout=2))
        tid, unit, function, address, count = await request_seen(peer)
        assert (tid, unit, function, address, count) == (first_tid + 1, 1, 4, 0, 2)
        stream = answer(first_tid, 1, [9, 9]) + answer(tid, 1, [1, 2])
        for piece in (stream[:5], stream[5:20], stream[20:]):
            await loop.sock_sendall(peer, piece)
            await asyncio.sleep(0.01)
        got.append(await read)
        # 3: a holding read answered in one piece.
        read = asyncio.ensure_future(client.read(3, "holding", 100, 1, timeout=2))
        tid = (await request_seen(peer))[0]
        await loop.sock_sendall(peer, answer(tid, 3, [0xBEEF], function=3))
        got.append(await read)
        client.close()
        peer.close()
        return got

    assert asyncio.run(scenario()) == [b"\x00\x01\x00\x02", b"\xbe\xef"]


def test_header_out_of_sync_fails_the_request_and_the_next_one_works() -> None:
    async def scenario() -> bytes:
        client, peer = await connected()
        loop = asyncio.get_running_loop()
        read = asyncio.ensure_future(client.read(1, "input", 0, 1, timeout=2))
        await request_seen(peer)
        await loop.sock_sendall(peer, b"\x00\x01\x12\x34\x00\x05\x01\x04")  # protocol 0x1234
        with pytest.raises(Garbled, match="protocol 4660"):
            await read
        read = asyncio.ensure_future(client.read(1, "input", 0, 1, timeout=2))
        tid = (await request_seen(peer))[0]
        await loop.sock_sendall(peer, answer(tid, 1, [5]))
        data = await read
        client.close()
        peer.close()
        return data

    assert asyncio.run(scenario()) == b"\x00\x05"


def test_connection_lost_fails_the_pending_request_and_the_next() -> None:
    async def scenario() -> None:
        client, peer = await connected()
        read = asyncio.ensure_future(client.read(1, "input", 0, 1, timeout=5))
        await request_seen(peer)
        peer.close()
        with pytest.raises(ConnectionLost):
            await read
        assert not client.connected
        with pytest.raises(ConnectionLost, match="not connected"):
            await client.read(1, "input", 0, 1, timeout=5)

    asyncio.run(scenario())


def test_transaction_ids_wrap_without_zero() -> None:
    async def scenario() -> list[int]:
        client, peer = await connected()
        client._tid = 0xFFFE  # a wrap needs 65,535 reads otherwise
        seen = []
        for _ in range(3):
            read = asyncio.ensure_future(client.read(1, "input", 0, 1, timeout=2))
            tid = (await request_seen(peer))[0]
            seen.append(tid)
            await asyncio.get_running_loop().sock_sendall(peer, answer(tid, 1, [0]))
            await read
        client.close()
        peer.close()
        return seen

    assert asyncio.run(scenario()) == [0xFFFF, 1, 2]
