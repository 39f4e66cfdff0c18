"""Serial RTU and RTU over TCP through pymodbus, with the errors of `modbus_tcp`.

pymodbus's own retries are off (a retry of a dead meter would cost the other meters on the bus
their rate) and so is its reconnect: the Bus reconnects with its own backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from collector.config import RtuBus, TcpBus
from collector.meters import modbus_tcp
from collector.meters.profile import Function


class GarbledFrame(ModbusIOException):
    """Raised into a pending request when its answer frame cannot be decoded."""


class PymodbusLink:
    """One pymodbus client, reading as `modbus_tcp.ModbusTcp` does."""

    def __init__(self, config: TcpBus | RtuBus) -> None:
        if isinstance(config, RtuBus):
            self._client: AsyncModbusTcpClient | AsyncModbusSerialClient = AsyncModbusSerialClient(
                config.device,
                framer=FramerType.RTU,
                baudrate=config.baudrate,
                bytesize=config.bytesize,
                parity=config.parity,
                stopbits=config.stopbits,
                timeout=config.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=config.id,
            )
        else:
            self._client = AsyncModbusTcpClient(
                config.host,
                port=config.port,
                framer=FramerType.RTU,
                timeout=config.timeout_s,
                retries=0,
                reconnect_delay=0,
                name=config.id,
            )
        self._timeout = config.timeout_s
        # A silent meter must not make pymodbus drop the connection every other meter uses.
        self._client.set_max_no_responses(1_000_000)
        self._guard_frames()

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def open(self) -> None:
        """Connect; a failure leaves `connected` false (the Bus then backs off)."""
        with contextlib.suppress(ModbusException):
            await asyncio.wait_for(self._client.connect(), self._timeout + 1)

    def close(self) -> None:
        self._client.close()

    def _guard_frames(self) -> None:
        """A frame pymodbus cannot decode (a gateway lying about its byte count) raises inside
        the transport's data callback, where asyncio logs a 'Fatal error' traceback and drops
        the connection. Caught here instead: the bytes received are discarded and the pending
        request fails at once as a garbled answer."""
        manager = self._client.ctx
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

    async def read(
        self, unit: int, function: Function, address: int, count: int, timeout: float
    ) -> bytes:
        call = (
            self._client.read_holding_registers
            if function == "holding"
            else self._client.read_input_registers
        )
        try:
            async with asyncio.timeout(timeout + 0.5):
                response: ModbusPDU = await call(address, count=count, device_id=unit)
        except (ConnectionException, OSError):
            raise modbus_tcp.ConnectionLost("connection lost") from None
        except GarbledFrame:
            raise modbus_tcp.Garbled(
                "its length or byte count does not match the registers asked"
            ) from None
        except ModbusException:
            raise TimeoutError from None
        if response.isError():
            raise modbus_tcp.Refused(int(getattr(response, "exception_code", 0)))
        return struct.pack(f">{len(response.registers)}H", *response.registers)
