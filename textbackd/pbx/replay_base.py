"""The lifecycle shared by the built-in PBX servers (AMI and event-socket replay).

A subclass sets ``host``/``port`` and implements ``_session(reader, writer)``,
registering each writer in ``_writers`` so ``stop()`` can close live sessions. It keeps
its capture in ``blocks`` (each with ``at``, seconds in the capture), ``speed`` (0: as
fast as the socket takes them) and ``position`` (how many blocks went out), and streams
with ``paced()``, the one loop both replay servers use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any


class LoopbackServer:
    host: str
    port: int
    blocks: list[Any]
    speed: float
    position: int
    resume: bool

    async def paced(self, wanted: Callable[[Any], bool] = lambda b: True) -> AsyncIterator[Any]:
        """The blocks still to send (from ``position`` when ``resume``), each at its time.

        ``position`` moves past a block when it is handed out (after its wait, so a channel
        listing asked for meanwhile describes what the client has been sent), or at once for
        a block ``wanted`` leaves out (an event the session did not subscribe to).
        """
        start = self.position if self.resume else 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        base = self.blocks[start].at if start < len(self.blocks) else 0.0
        for i in range(start, len(self.blocks)):
            b = self.blocks[i]
            if not wanted(b):
                self.position = i + 1
                continue
            if self.speed > 0:
                delay = t0 + (b.at - base) / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.position = i + 1
            yield b

    def _init_server(self) -> None:
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _end_session(self, writer: asyncio.StreamWriter, streamer: asyncio.Task | None) -> None:
        """Stop a session's event streamer and close its connection."""
        if streamer is not None:
            streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streamer
        self._writers.discard(writer)
        writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
