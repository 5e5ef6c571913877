"""The lifecycle shared by the built-in PBX servers (AMI and event-socket replay).

A subclass sets ``host``/``port`` and implements ``_session(reader, writer)``,
registering each writer in ``_writers`` so ``stop()`` can close live sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class LoopbackServer:
    host: str
    port: int

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
