"""Live updates: the daemon publishes what changed, each open page's event stream (SSE) hears it.

``Hub.publish(kind, number)`` is called by the daemon (``daemon/service.py``: a finished call, a
text's new state, a reply) and by the web app itself (a claim, handled, a block). Each browser tab
holds one ``/events`` stream, a bounded queue here; a tab that cannot keep up loses old events and
is told to reload its lists (``resync``), so a slow tablet never grows the daemon's memory.
Events carry only the kind and the conversation's number: the page asks for the rows itself, with
its own session, through the same handlers that render it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

KINDS = ("call", "text", "reply", "conversation", "resync")
QUEUE = 64


class Hub:
    def __init__(self) -> None:
        self._subs: set[asyncio.Queue[str | None]] = set()
        self.published = 0

    @property
    def listeners(self) -> int:
        return len(self._subs)

    def publish(self, kind: str, number: str = "") -> None:
        """Tell every open stream; never blocks, never raises."""
        self.published += 1
        data = json.dumps({"kind": kind, "number": number})
        for q in list(self._subs):
            try:
                q.put_nowait(data)
            except asyncio.QueueFull:
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(json.dumps({"kind": "resync", "number": ""}))

    async def stream(self, heartbeat: float = 15.0) -> AsyncIterator[str | None]:
        """Events as JSON strings; ``None`` every ``heartbeat`` seconds of silence; ends on ``close``."""
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE)
        self._subs.add(q)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), heartbeat)
                except TimeoutError:
                    yield None
                    continue
                if item is None:
                    return
                yield item
        finally:
            self._subs.discard(q)

    def close(self) -> None:
        """End every stream (the daemon stops)."""
        for q in list(self._subs):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(None)
