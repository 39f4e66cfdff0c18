"""Modbus TCP reads on an asyncio protocol: the collector's hot path, framed here.

A read is a 12-byte request and an answer matched by its transaction id. pymodbus's
transaction manager, framer, PDU objects and per-frame debug formatting cost more CPU than
the rest of a reading together (docs/benchmarks.md, collector), so Modbus TCP is framed here;
pymodbus keeps serial RTU and RTU over TCP, where the bus, not the CPU, is the limit.

One request at a time (the Bus holds its lock around `read`). An answer to an earlier
request that timed out carries an older transaction id and is dropped, so it can never be
taken for the answer to the current one. A frame whose header makes no sense (protocol id
not 0, impossible length) leaves the stream unsynchronised: the buffer is dropped and the
pending request fails as garbled, the next answer starts a fresh frame.
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

from collector.meters.profile import Function

# MBAP header (transaction id, protocol id 0, length of what follows, unit) then the PDU:
# function code, start address, register count.
REQUEST = struct.Struct(">HHHBBHH")
HEADER = struct.Struct(">HHH")
HEADER_BYTES = 6
MAX_LENGTH = 254  # unit + the longest PDU (253 bytes)
FUNCTION_CODES: dict[Function, int] = {"holding": 3, "input": 4}


class ConnectionLost(Exception):
    """The TCP connection closed or failed while a request was pending."""


class Garbled(Exception):
    """The answer frame does not fit the request: its reason says how."""


class Refused(Exception):
    """The meter answered with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"exception code {code}")
        self.code = code


def request_frame(tid: int, unit: int, function: Function, address: int, count: int) -> bytes:
    return REQUEST.pack(tid, 0, 6, unit, FUNCTION_CODES[function], address, count)


def answer_registers(frame: bytes, unit: int, function: Function) -> bytes:
    """The register bytes of an answer (unit id + PDU, the MBAP header removed), big-endian
    words; raises Refused for an exception answer, Garbled for anything that does not fit."""
    code = FUNCTION_CODES[function]
    if len(frame) < 3:
        raise Garbled(f"a {len(frame)}-byte answer")
    if frame[0] != unit:
        raise Garbled(f"the answer comes from unit {frame[0]}")
    if frame[1] == code | 0x80:
        raise Refused(frame[2])
    if frame[1] != code:
        raise Garbled(f"the answer is for function code {frame[1]}")
    byte_count = frame[2]
    if byte_count != len(frame) - 3 or byte_count % 2:
        raise Garbled(
            "its length or byte count does not match the registers asked "
            f"(byte count {byte_count}, {len(frame) - 3} bytes)"
        )
    return frame[3:]


class ModbusTcp(asyncio.Protocol):
    """One TCP connection to a Modbus TCP server or gateway."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._tid = 0
        self._pending: tuple[int, asyncio.Future[bytes]] | None = None

    @classmethod
    async def open(cls, host: str, port: int, timeout: float) -> ModbusTcp:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, whatever its class (uvloop's are not asyncio.Transport's).
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._fail(ConnectionLost(str(exc) if exc else "closed by the peer"))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER_BYTES:
            tid, protocol, length = HEADER.unpack_from(buffer)
            if protocol != 0 or not 2 <= length <= MAX_LENGTH:
                buffer.clear()
                self._fail(Garbled(f"a frame header with protocol {protocol}, length {length}"))
                return
            end = HEADER_BYTES + length
            if len(buffer) < end:
                return
            frame = bytes(buffer[HEADER_BYTES:end])
            del buffer[:end]
            pending = self._pending
            if pending is not None and pending[0] == tid and not pending[1].done():
                pending[1].set_result(frame)
            # Otherwise a late answer to a request given up on: dropped.

    # -- requests -------------------------------------------------------------------------

    async def read(
        self, unit: int, function: Function, address: int, count: int, timeout: float
    ) -> bytes:
        """Register bytes of [address, address + count); raises TimeoutError, ConnectionLost,
        Garbled or Refused."""
        if self._transport is None:
            raise ConnectionLost("not connected")
        loop = asyncio.get_running_loop()
        self._tid = tid = self._tid % 0xFFFF + 1
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending = (tid, future)
        self._transport.write(request_frame(tid, unit, function, address, count))
        # A timer on the future, not asyncio.timeout: no task cancellation machinery per read.
        timer = loop.call_later(timeout, _expire, future)
        try:
            frame = await future
        finally:
            timer.cancel()
            self._pending = None
        return answer_registers(frame, unit, function)

    def _fail(self, exc: Exception) -> None:
        if self._pending is not None and not self._pending[1].done():
            self._pending[1].set_exception(exc)


def _expire(future: asyncio.Future[bytes]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
