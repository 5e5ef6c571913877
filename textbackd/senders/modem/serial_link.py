"""The serial device on asyncio: open, bytes in through a callback, write, notice when it vanishes.

Transport choice: pyserial-asyncio-fast (a maintained fork of pyserial-asyncio,
used by Home Assistant's Z-Wave/Zigbee stacks). On POSIX it registers the
pyserial file descriptor with the loop's ``add_reader``/``add_writer`` — no
reader thread —, buffers writes with flow control, opens the port in an
executor (a USB device that takes a second to answer ``open()`` does not stall
the daemon), and turns a read error (``EIO`` when a USB modem is unplugged,
hang-up on a pty) into ``connection_lost``. Hand-writing ``add_reader`` on a
pyserial fd would give the same I/O in ~80 lines we would have to maintain,
including the partial-write buffering; the library is already a dependency.

This module is the only one in ``modem/`` that touches the device; it maps
``serial.SerialException``/``OSError`` to ``ModemUnavailableError`` with a
reason an admin can act on (missing device, permission → dialout group, busy).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable

import serial
import serial_asyncio_fast
import structlog

from textbackd.core.errors import ModemError

log = structlog.get_logger(__name__)


class ModemUnavailableError(ModemError):
    """The device cannot be opened, or it went away."""


class _Protocol(asyncio.Protocol):
    def __init__(self, link: SerialLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(exc)


class SerialLink:
    """One open device. ``on_data(bytes)`` gets every read; ``on_lost(reason)`` once when it closes."""

    def __init__(self, device: str, on_data: Callable[[bytes], None], on_lost: Callable[[str], None]) -> None:
        self.device = device
        self._on_data = on_data
        self._on_lost = on_lost
        self._transport: serial_asyncio_fast.SerialTransport | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._lost_reported = False

    @classmethod
    async def open(
        cls,
        device: str,
        baudrate: int,
        on_data: Callable[[bytes], None],
        on_lost: Callable[[str], None],
    ) -> SerialLink:
        link = cls(device, on_data, on_lost)
        if not os.path.exists(device):
            raise ModemUnavailableError(f"{device}: no such device (unplugged, or a different /dev name?)")
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await serial_asyncio_fast.create_serial_connection(
                loop, lambda: _Protocol(link), device, baudrate=baudrate, exclusive=True, rtscts=False
            )
        except serial.SerialException as e:
            raise ModemUnavailableError(_reason(device, e)) from None
        except OSError as e:
            raise ModemUnavailableError(_reason(device, e)) from None
        link._transport = transport
        return link

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.is_open:
            raise ModemUnavailableError(f"{self.device}: not open")
        self._transport.write(data)

    def _lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        if not self._lost_reported:
            self._lost_reported = True
            reason = "closed" if exc is None else _reason(self.device, exc)
            self._on_lost(reason)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    async def close(self) -> None:
        """Close the device; idempotent. The lost callback is not called for a close we asked for."""
        self._lost_reported = True
        t = self._transport
        if t is not None and not t.is_closing():
            t.abort()
        if t is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._closed), 5.0)
            except asyncio.TimeoutError:
                log.warning("modem_close_slow", device=self.device)


def _reason(device: str, e: BaseException) -> str:
    err = getattr(e, "errno", None)
    text = str(e)
    if err == errno.EACCES or "Permission denied" in text:
        return f"{device}: permission denied (add the textbackd user to the dialout group)"
    if err == errno.ENOENT or "No such file" in text:
        return f"{device}: no such device (unplugged, or a different /dev name?)"
    if err in (errno.EBUSY, errno.EAGAIN) or "Could not exclusively lock" in text or "busy" in text.lower():
        return f"{device}: in use by another program (ModemManager? see README)"
    if err == errno.EIO or "returned no data" in text or "Input/output error" in text:
        return f"{device}: device went away (unplugged or reset)"
    return f"{device}: {text}"
