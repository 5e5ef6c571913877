"""The durable outbox: texts are rows before they are sends.

Life of a text (``store.TRANSITIONS`` enforces it):

    scheduled ──claim──► sending ──► sent ──DLR──► delivered
        │                  │  └────► failed      (permanent error, or out of attempts)
        │                  │  └────► unknown     (the request may have left: never re-sent blindly)
        │                  └───────► scheduled   (temporary failure on every sender: retry later)
        ├──► cancelled   (recheck says no: the caller was answered on a call-back, opted out...)
        └──► expired     (not sent within max_age of the call)

Rules that make it safe:

* A row is claimed ``scheduled → sending`` by one conditional UPDATE before any
  byte leaves; only the claimant sends. The ``sending`` mark is on disk
  (``synchronous=FULL``) before the sender is called.
* If the process dies while a row is ``sending``, the next start turns it into
  ``unknown`` (``Store.recover_interrupted``) and staff are told: a text that
  may have reached a patient is not sent a second time by guesswork. A
  delivery report that later names it moves it on to ``delivered``.
* Senders are tried in order (the line's preferred sender first); a temporary
  failure or an unavailable sender falls over to the next one. When all fail
  temporarily the row goes back to ``scheduled`` with exponential backoff (or
  the provider's ``Retry-After``) until ``policy.max_attempts``.
* ``stop()`` lets the send in flight finish, then returns (SIGTERM).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from textbackd.core.errors import (
    PermanentSendError,
    SendError,
    StoreError,
    TemporarySendError,
    UnknownSendError,
)
from textbackd.core.model import MessageState, SendResult
from textbackd.core.numbers import mask
from textbackd.daemon.worker import Worker
from textbackd.senders.base import Sender
from textbackd.store.db import MessageRow, Store

log = structlog.get_logger(__name__)

# recheck(message, now) -> reason to cancel, or None to go ahead
Recheck = Callable[[MessageRow, float], str | None]
# observer(message, new_state, detail) — for the demo's live log, metrics, staff notices
Observer = Callable[[MessageRow, MessageState, str], Awaitable[None] | None]


class Outbox:
    def __init__(
        self,
        store: Store,
        senders: Sequence[Sender],
        *,
        max_attempts: int = 5,
        retry_base: float = 30.0,
        retry_max: float = 3600.0,
        recheck: Recheck | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
        log_numbers: str = "masked",
        send_timeout: float = 120.0,
    ) -> None:
        self.store = store
        self.senders = list(senders)
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.recheck = recheck
        self.observer = observer
        self.clock = clock
        self.log_numbers = log_numbers
        self.send_timeout = send_timeout
        self.worker = Worker("outbox", self.process_due, next_due=store.next_due_at, clock=clock,
                             retry_on=(StoreError,))
        self.sent = 0
        self.last_latency: float | None = None

    # -- control --------------------------------------------------------------------

    def wake(self) -> None:
        """A row was added or changed: look at the queue now."""
        self.worker.wake()

    def stop(self) -> None:
        """Finish the send in flight, then leave ``run``."""
        self.worker.stop()

    @property
    def _stopping(self) -> bool:
        return self.worker.stopping

    async def run(self) -> None:
        await self.worker.run()

    async def process_due(self) -> int:
        """Send (or cancel/expire) every due text once. Returns how many rows were handled."""
        handled = 0
        while not self._stopping:
            due = self.store.due_messages(self.clock(), limit=20)
            if not due:
                break
            for m in due:
                if self._stopping:
                    break
                await self._handle(m)
                handled += 1
        return handled

    # -- one text -------------------------------------------------------------------

    async def _handle(self, m: MessageRow) -> None:
        now = self.clock()
        if m.expires_at is not None and now > m.expires_at:
            await self._move(m, MessageState.EXPIRED, "too_old", expect=MessageState.SCHEDULED)
            return
        if self.recheck is not None:
            reason = self.recheck(m, now)
            if reason:
                state = MessageState.EXPIRED if reason == "too_old" else MessageState.CANCELLED
                await self._move(m, state, reason, expect=MessageState.SCHEDULED)
                return
        attempt = m.attempts + 1
        if not self.store.transition(
            m.id, MessageState.SENDING, now=now, expect=MessageState.SCHEDULED, attempts=attempt, detail=f"attempt {attempt}"
        ):
            return  # someone else claimed or cancelled it
        await self._notify(m, MessageState.SENDING, "")
        order = self._order(m.sender_pref)
        errors: list[str] = []
        retry_after: float | None = None
        for sender in order:
            try:
                result = await asyncio.wait_for(sender.send(m.to_number, m.text), timeout=self.send_timeout)
            except TimeoutError:
                await self._unknown(m, sender.name, "send timed out after the request was handed over")
                return
            except UnknownSendError as e:
                await self._unknown(m, sender.name, str(e))
                return
            except PermanentSendError as e:
                await self._move(m, MessageState.FAILED, f"{sender.name}: {e}", expect=MessageState.SENDING, sender=sender.name)
                return
            except TemporarySendError as e:
                errors.append(f"{sender.name}: {e}")
                if e.retry_after:
                    retry_after = max(retry_after or 0.0, e.retry_after)
                log.warning("send_failed_temporarily", message=m.id, sender=sender.name, error=str(e))
                continue
            except SendError as e:  # a SendError subclass we do not know: treat as temporary
                errors.append(f"{sender.name}: {e}")
                continue
            except asyncio.CancelledError:
                # shutdown in the middle of a send: we cannot know whether it left
                await self._unknown(m, sender.name, "interrupted during send")
                raise
            except Exception as e:  # a bug in a sender must not lose the text
                log.exception("sender_crashed", sender=sender.name, message=m.id)
                await self._unknown(m, sender.name, f"sender error: {type(e).__name__}")
                return
            await self._sent(m, result)
            return
        detail = "; ".join(errors) or "no sender configured"
        if attempt >= self.max_attempts:
            await self._move(m, MessageState.FAILED, f"gave up after {attempt} attempts: {detail}", expect=MessageState.SENDING)
            return
        delay = retry_after or min(self.retry_max, self.retry_base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
        when = self.clock() + delay
        self.store.transition(
            m.id, MessageState.SCHEDULED, now=self.clock(), expect=MessageState.SENDING, send_at=when,
            detail=f"retry in {delay:.0f}s: {detail}",
        )
        await self._notify(m, MessageState.SCHEDULED, detail)

    def _order(self, preferred: str) -> list[Sender]:
        first = [s for s in self.senders if s.name == preferred]
        rest = [s for s in self.senders if s.name != preferred]
        ordered = first + rest
        # healthy senders first, but an unhealthy one is still tried last (it may have recovered)
        return [s for s in ordered if s.healthy()] + [s for s in ordered if not s.healthy()]

    async def _sent(self, m: MessageRow, r: SendResult) -> None:
        now = self.clock()
        self.store.transition(
            m.id, MessageState.SENT, now=now, expect=MessageState.SENDING, sender=r.sender, refs=r.references,
            segments=r.segments, encoding=r.encoding, sent_at=now, detail=f"via {r.sender}",
        )
        self.sent += 1
        self.last_latency = now - m.send_at
        log.info("text_sent", message=m.id, to=mask(m.to_number, self.log_numbers), sender=r.sender, segments=r.segments)
        await self._notify(m, MessageState.SENT, r.sender)

    async def _unknown(self, m: MessageRow, sender: str, detail: str) -> None:
        await self._move(m, MessageState.UNKNOWN, f"{sender}: {detail}", expect=MessageState.SENDING, sender=sender)

    async def _move(self, m: MessageRow, state: MessageState, detail: str, *, expect: MessageState, **fields) -> None:
        if self.store.transition(m.id, state, now=self.clock(), expect=expect, detail=detail, **fields):
            log.info("text_" + str(state), message=m.id, to=mask(m.to_number, self.log_numbers), reason=detail)
            await self._notify(m, state, detail)

    async def _notify(self, m: MessageRow, state: MessageState, detail: str) -> None:
        if self.observer is None:
            return
        try:
            r = self.observer(m, state, detail)
            if asyncio.iscoroutine(r):
                await r
        except Exception:
            log.exception("outbox_observer_failed")
