"""One Modbus client per configured bus: a serialised queue with timeouts, delays and reconnects.

Modbus TCP is framed by `collector.meters.modbus_tcp` (the hot path); pymodbus does the framing
of serial RTU and RTU over TCP. Its own retries are off (a retry of a dead meter would cost the
other meters on the bus their rate) and its automatic reconnect is off: every bus reconnects
with a tenacity backoff instead, without blocking the queue while it waits. Requests and bytes
are counted as ADU sizes so a benchmark can compare them with the minimum the profiles allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tenacity import RetryCallState, Retrying, wait_exponential

from collector.config import RtuBus, TcpBus
from collector.meters import modbus_tcp
from collector.meters.profile import Function

if TYPE_CHECKING:
    from collector.meters.rtu import PymodbusLink

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
        self._link: modbus_tcp.ModbusTcp | PymodbusLink | None = None
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

    async def _open(self) -> modbus_tcp.ModbusTcp | PymodbusLink:
        cfg = self.config
        if isinstance(cfg, TcpBus) and cfg.type == "tcp":
            return await modbus_tcp.ModbusTcp.open(cfg.host, cfg.port, cfg.timeout_s + 1)
        # Imported here: a site with Modbus TCP buses only never loads pymodbus (memory, start-up).
        from collector.meters.rtu import PymodbusLink

        link = PymodbusLink(cfg)
        await link.open()
        return link

    async def _connect(self) -> modbus_tcp.ModbusTcp | PymodbusLink:
        """A new link, or BusDown while the backoff lasts (`read` calls it when not connected)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._next_connect:
            raise BusDown(f"bus {self.id} ({self.where()}): not connected, retrying later")
        self.close()
        with contextlib.suppress(TimeoutError, OSError):
            self._link = await self._open()
        if self._link is not None and self._link.connected:
            if self._connect_failures:
                log.info("bus %s (%s): connected again", self.id, self.where())
            self._connect_failures = 0
            return self._link
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
        async with self._lock:
            link = self._link
            if link is None or not link.connected:
                link = await self._connect()
            loop = asyncio.get_running_loop()
            wait = max(self._quiet_until.get(unit, 0.0), self._line_free_at) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.stats.requests += 1
            self.stats.bytes += adu_bytes(self.framing, REQUEST_PDU_BYTES)
            try:
                data = await link.read(unit, function, address, count, self.config.timeout_s)
            except modbus_tcp.Refused as exc:
                self.stats.errors += 1
                self.stats.bytes += adu_bytes(self.framing, EXCEPTION_PDU_BYTES)
                raise ExceptionAnswer(
                    f"{self._where(unit, function, address, count)}: exception code {exc.code}",
                    exc.code,
                ) from None
            except modbus_tcp.ConnectionLost:
                self.stats.errors += 1
                raise NoAnswer(
                    f"{self._where(unit, function, address, count)}: connection lost"
                ) from None
            except modbus_tcp.Garbled as exc:
                self.stats.errors += 1
                raise NoAnswer(
                    f"{self._where(unit, function, address, count)}: garbled answer ({exc})"
                ) from None
            except TimeoutError:
                self.stats.errors += 1
                raise NoAnswer(
                    f"{self._where(unit, function, address, count)}: no answer within "
                    f"{self.config.timeout_s:g} s"
                ) from None
            finally:
                self._line_free_at = loop.time() + self._frame_gap
                if delay_s:
                    self._quiet_until[unit] = loop.time() + delay_s
        self.stats.bytes += adu_bytes(self.framing, 2 + len(data))
        if len(data) != 2 * count:
            self.stats.errors += 1
            raise BadAnswer(
                f"{self._where(unit, function, address, count)}: answer has {len(data) // 2} "
                f"registers, expected {count}"
            )
        return list(struct.unpack(f">{count}H", data))

    def _where(self, unit: int, function: Function, address: int, count: int) -> str:
        return f"bus {self.id} unit {unit} {function} {address}+{count}"

    def close(self) -> None:
        # No lock: called after the pollers using this bus are cancelled or done.
        if self._link is not None:
            self._link.close()
            self._link = None
