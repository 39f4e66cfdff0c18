"""One Modbus client per configured bus: a serialised queue with timeouts, delays and reconnects.

pymodbus does the framing; we own everything around it. Its own retries are off (a retry of a
dead meter would cost the other meters on the bus their rate) and its automatic reconnect is
off (we reconnect with a tenacity backoff instead, without blocking the queue while we wait).
Requests and bytes are counted as ADU sizes so a benchmark can compare them with the minimum
the profiles allow.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse, ReadInputRegistersResponse
from tenacity import RetryCallState, Retrying, wait_exponential

from collector.config import RtuBus, TcpBus
from collector.meters.profile import Function

log = logging.getLogger(__name__)


def quiet_pymodbus() -> None:
    """pymodbus logs every timeout at ERROR with a frame dump; we log failures ourselves, naming
    the meter. Its frames stay visible at DEBUG, and a pymodbus logger set by the user wins."""
    logger = logging.getLogger("pymodbus")
    if logger.level == logging.NOTSET and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.CRITICAL)


Framing = Literal["tcp", "rtu"]

# Exception codes a meter answers when a request covers registers it does not have or is longer
# than it accepts: the poller then falls back to smaller reads.
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3
REQUEST_PDU_BYTES = 5  # function, start address, count
EXCEPTION_PDU_BYTES = 2  # function | 0x80, code


def adu_bytes(framing: Framing, pdu_bytes: int) -> int:
    """Bytes on the wire for one PDU: TCP adds the 7-byte MBAP header, RTU the unit and CRC."""
    return pdu_bytes + (7 if framing == "tcp" else 3)


def read_cost(framing: Framing, count: int) -> int:
    """Bytes of one successful read of `count` registers: request plus answer."""
    return adu_bytes(framing, REQUEST_PDU_BYTES) + adu_bytes(framing, 2 + 2 * count)


class BusError(Exception):
    """A request did not produce registers; the message names bus, unit and address."""


class NoAnswer(BusError):
    """Timeout, broken or garbled frame: the meter said nothing we could use."""


class BadAnswer(BusError):
    """A well-formed frame with the wrong content (e.g. fewer registers than asked)."""


def unpack_registers(pdu: ModbusPDU, data: bytes) -> list[int]:
    """pymodbus's register decoding (byte count, then byte_count // 2 big-endian words), in
    one struct call instead of one per register: a 76-register answer cost 76 calls."""
    byte_count = data[0]
    if byte_count >= len(data):
        raise ModbusIOException(
            f"byte_count {byte_count} > length of packet {len(data)}",
            function_code=pdu.function_code,
        )
    return list(struct.unpack_from(f">{byte_count // 2}H", data, 1))


class _HoldingRegisters(ReadHoldingRegistersResponse):
    def decode(self, data: bytes) -> None:
        self.registers = unpack_registers(self, data)


class _InputRegisters(ReadInputRegistersResponse):
    def decode(self, data: bytes) -> None:
        self.registers = unpack_registers(self, data)


class GarbledFrame(ModbusIOException):
    """Raised into a pending request when its answer frame cannot be decoded."""


class BusDown(BusError):
    """The bus itself is unreachable (TCP gateway down, serial port missing)."""


class ExceptionAnswer(BusError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def refuses_range(self) -> bool:
        """Illegal address / value: the meter would answer a smaller or different read."""
        return self.code in (ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE)


@dataclass
class WireStats:
    requests: int = 0
    bytes: int = 0
    errors: int = 0


def backoff_delay(wait: wait_exponential, attempt: int) -> float:
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    return float(wait(state))


class Bus:
    """A bus is ONE queue: one request on the wire at a time, whatever asks for it."""

    def __init__(self, config: TcpBus | RtuBus, stats: WireStats | None = None) -> None:
        self.config = config
        self.stats = stats or WireStats()
        self.framing: Framing = "tcp" if config.type == "tcp" else "rtu"
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._connect_failures = 0
        self._next_connect = 0.0
        self._reconnect_wait = wait_exponential(multiplier=0.5, max=30)
        self._quiet_until: dict[int, float] = {}  # unit -> loop time its delay_ms ends
        # RTU frames are delimited by 3.5 character times of silence (1.75 ms above 19200 baud).
        self._frame_gap = 0.0
        if isinstance(config, RtuBus):
            self._frame_gap = max(3.5 * 11 / config.baudrate, 0.00175)
        self._line_free_at = 0.0
        quiet_pymodbus()

    @property
    def id(self) -> str:
        return self.config.id

    def where(self) -> str:
        if isinstance(self.config, RtuBus):
            return self.config.device
        return f"{self.config.host}:{self.config.port}"

    def _new_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        cfg = self.config
        if isinstance(cfg, RtuBus):
            client: AsyncModbusTcpClient | AsyncModbusSerialClient = AsyncModbusSerialClient(
                cfg.device,
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                timeout=cfg.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=cfg.id,
            )
        else:
            client = AsyncModbusTcpClient(
                cfg.host,
                port=cfg.port,
                framer=FramerType.SOCKET if cfg.type == "tcp" else FramerType.RTU,
                timeout=cfg.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=cfg.id,
            )
        # A silent meter must not make pymodbus drop the connection every other meter uses.
        client.set_max_no_responses(1_000_000)
        client.register(_HoldingRegisters)
        client.register(_InputRegisters)
        self._guard_frames(client)
        return client

    def _guard_frames(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient) -> None:
        """A frame pymodbus cannot decode (a gateway lying about its byte count) raises inside
        the transport's data callback, where asyncio logs a 'Fatal error' traceback and drops
        the connection. Caught here instead: the bytes received are discarded and the pending
        request fails at once as a garbled answer."""
        manager = client.ctx
        decode = manager.callback_data

        def callback_data(data: bytes, addr: tuple[str, int] | None = None) -> int:
            try:
                return decode(data, addr)
            except ModbusIOException:
                future = manager.response_future
                if not future.done():
                    future.set_exception(GarbledFrame())
                return len(data)

        manager.callback_data = callback_data  # type: ignore[method-assign]

    async def _ensure_connected(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        if self._client is not None and self._client.connected:
            return self._client
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_connect:
            raise BusDown(f"bus {self.id} ({self.where()}): not connected, retrying later")
        if self._client is not None:
            self._client.close()
        self._client = self._new_client()
        try:
            ok = await asyncio.wait_for(self._client.connect(), self.config.timeout_s + 1)
        except (TimeoutError, OSError, ModbusException):
            ok = False
        if ok and self._client.connected:
            if self._connect_failures:
                log.info("bus %s (%s): connected again", self.id, self.where())
            self._connect_failures = 0
            return self._client
        self._connect_failures += 1
        delay = backoff_delay(self._reconnect_wait, self._connect_failures)
        self._next_connect = loop.time() + delay
        log.warning(
            "bus %s (%s): cannot connect, next attempt in %.1f s", self.id, self.where(), delay
        )
        raise BusDown(f"bus {self.id} ({self.where()}): cannot connect")

    async def read(
        self, unit: int, function: Function, address: int, count: int, delay_s: float = 0.0
    ) -> list[int]:
        """Registers [address, address + count) of `unit`, or a BusError naming what failed."""
        where = f"bus {self.id} unit {unit} {function} {address}+{count}"
        async with self._lock:
            client = await self._ensure_connected()
            loop = asyncio.get_running_loop()
            wait = max(self._quiet_until.get(unit, 0.0), self._line_free_at) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            call = (
                client.read_holding_registers
                if function == "holding"
                else client.read_input_registers
            )
            self.stats.requests += 1
            self.stats.bytes += adu_bytes(self.framing, REQUEST_PDU_BYTES)
            try:
                # asyncio.timeout, not wait_for: no extra task per request (CPU per reading).
                async with asyncio.timeout(self.config.timeout_s + 0.5):
                    response: ModbusPDU = await call(address, count=count, device_id=unit)
            except (ConnectionException, OSError):
                self.stats.errors += 1
                raise NoAnswer(f"{where}: connection lost") from None
            except GarbledFrame:
                self.stats.errors += 1
                raise NoAnswer(
                    f"{where}: garbled answer (its length or byte count does not match "
                    "the registers asked)"
                ) from None
            except (TimeoutError, ModbusException):
                self.stats.errors += 1
                timeout = self.config.timeout_s
                raise NoAnswer(f"{where}: no answer within {timeout:g} s") from None
            finally:
                self._line_free_at = loop.time() + self._frame_gap
                if delay_s:
                    self._quiet_until[unit] = loop.time() + delay_s
        if response.isError():
            self.stats.errors += 1
            self.stats.bytes += adu_bytes(self.framing, EXCEPTION_PDU_BYTES)
            code = int(getattr(response, "exception_code", 0))
            raise ExceptionAnswer(f"{where}: exception code {code}", code)
        registers = list(response.registers)
        self.stats.bytes += adu_bytes(self.framing, 2 + 2 * len(registers))
        if len(registers) != count:
            self.stats.errors += 1
            raise BadAnswer(f"{where}: answer has {len(registers)} registers, expected {count}")
        return registers

    def close(self) -> None:
        # No lock: called after the pollers using this bus are cancelled or done.
        if self._client is not None:
            self._client.close()
            self._client = None
