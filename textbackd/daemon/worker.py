"""The one loop every durable queue runs (the outbox, staff mail, webhook deliveries).

A queue is rows in the store; the worker only decides *when* to look:

    while not stopped:
        await process()                    # handle everything due now
        sleep until next_due(), a wake(), or ``poll`` seconds, whichever is first

``process`` raising one of ``retry_on`` (the store is read-only, the disk is full)
is logged and the loop goes on after ``error_pause`` seconds: a queue never dies
of a passing fault. ``stop()`` lets the ``process`` in flight finish (the
outbox's send in flight on SIGTERM), then ``run`` returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from textbackd.core.errors import TextbackError

log = structlog.get_logger(__name__)


class Worker:
    def __init__(
        self,
        name: str,
        process: Callable[[], Awaitable[object]],
        *,
        next_due: Callable[[], float | None] = lambda: None,
        clock: Callable[[], float] = time.time,
        poll: float = 5.0,
        retry_on: tuple[type[BaseException], ...] = (TextbackError,),
        error_pause: float = 5.0,
    ) -> None:
        self.name = name
        self.process = process
        self.next_due = next_due
        self.clock = clock
        self.poll = poll
        self.retry_on = retry_on
        self.error_pause = error_pause
        self._wake = asyncio.Event()
        self.stopping = False

    def wake(self) -> None:
        """A row was added or changed: look at the queue now."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the work in flight, then leave ``run``."""
        self.stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self.stopping:
            delay = self.poll
            try:
                await self.process()
            except self.retry_on as e:
                log.error(f"{self.name}_store_error", error=str(e))
                delay = self.error_pause
            else:
                nxt = self.next_due()
                if nxt is not None:
                    delay = max(0.0, min(self.poll, nxt - self.clock()))
            if self.stopping:
                break
            self._wake.clear()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except TimeoutError:
                    pass
