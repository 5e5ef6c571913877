"""The durable outbox: texts are rows before they are sends.

Life of a text (``store.TRANSITIONS`` enforces it):

    scheduled ──claim──► sending ──► sent ──DLR──► delivered
        ▲ │                │  └────► failed      (permanent error, or out of attempts)
        │ │                │  └────► unknown     (a part was handed over and no answer came: never re-sent blindly)
        │ │                └───────► scheduled   (temporary failure, or parts still to send: retry later)
        │ ├──► cancelled   (recheck says no: the caller was answered on a call-back, opted out...)
        │ └──► expired     (not sent within max_age of the call)
        └── unknown | failed  (a staff resend, on purpose: ``staff.actions.resend``)

Two marks, not one (issue 18):

* *claimed*: the row goes ``scheduled → sending`` by one conditional UPDATE, on disk
  (``synchronous=FULL``), before the sender is called; only the claimant sends.
* *handed over*: the sender calls ``track.handing_over(part, total)`` (``StoredTrack``,
  a ``message_parts`` row and a ``message_events`` row) just before it writes the byte
  that is the point of no return, and ``track.accepted(part, ref)`` when the part was
  taken. A sender whose ``send`` takes no track is marked handed over before it is called.

What that buys (``store/outbox.recover_interrupted`` at start, and here at run time):

* a text claimed but never handed over is sent again, once (a crash, SIGTERM mid-send);
* a multipart text that stopped between parts (a crash, a temporary ``+CMS ERROR`` on part
  2) resumes through the same sender with the same concatenation reference, sending only
  the missing parts; it is not cancelled by a recheck (an opt-out excepted) nor expired,
  since a fragment on the caller's phone is worse than a late end;
* only a part handed over without an answer is in doubt: never sent again, the text ends
  ``unknown`` (staff are told; a delivery report can still settle it). Parts never handed
  over are still sent, since they cannot duplicate anything.

Senders are tried in order (the line's preferred sender first); a temporary failure or an
unavailable sender falls over to the next one, unless parts already went out through this
one (another SIM is another sender number: the phone would not join the parts). When all
fail temporarily the row goes back to ``scheduled`` with exponential backoff (or the
provider's ``Retry-After``) until ``policy.max_attempts``. ``stop()`` lets the send in
flight finish, then returns (SIGTERM).
"""

from __future__ import annotations

import asyncio
import inspect
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
from textbackd.core.model import MessageState, SendProgress, SendResult
from textbackd.core.numbers import mask
from textbackd.daemon.worker import Worker
from textbackd.senders.base import Sender
from textbackd.store import outbox as outbox_q
from textbackd.store.db import MessageRow, Store

log = structlog.get_logger(__name__)

# recheck(message, now) -> reason to cancel, or None to go ahead
Recheck = Callable[[MessageRow, float], str | None]
# observer(message, new_state, detail) — for the demo's live log, metrics, staff notices
Observer = Callable[[MessageRow, MessageState, str], Awaitable[None] | None]


def retry_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before try ``attempt + 1``: the provider's ``Retry-After``, else ``base`` doubling up to ``cap``, ±20 %."""
    if retry_after:
        return retry_after
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)


def takes_track(sender: Sender) -> bool:
    """Does this sender's ``send`` accept the hand-over ``track``? (A kind from before issue 18 may not.)"""
    try:
        return "track" in inspect.signature(sender.send).parameters
    except (TypeError, ValueError):
        return False


class StoredTrack:
    """The outbox's ``SendTrack`` for one attempt of one text: every mark on disk before it returns."""

    def __init__(self, store: Store, mid: int, sender: str, clock: Callable[[], float]) -> None:
        self.store = store
        self.mid = mid
        self.sender = sender
        self.clock = clock
        self.handed: set[int] = set()  # parts handed over in this attempt
        self.accepted_parts: set[int] = set()

    def progress(self) -> SendProgress | None:
        return outbox_q.progress(self.store, self.mid)

    def handing_over(self, part: int, total: int, *, concat_ref: int | None = None,
                     expected_ref: str | None = None) -> None:
        try:
            outbox_q.hand_over(self.store, self.mid, part=part, total=total, sender=self.sender, now=self.clock(),
                               concat_ref=concat_ref, expected_ref=expected_ref)
        except StoreError as e:
            raise TemporarySendError(f"{self.sender}: not sent: the store cannot record the hand-over ({e})") from None
        self.handed.add(part)

    def accepted(self, part: int, ref: str) -> None:
        outbox_q.accept(self.store, self.mid, part=part, ref=ref, sender=self.sender, now=self.clock())
        self.accepted_parts.add(part)

    @property
    def unanswered(self) -> set[int]:
        """Parts handed over in this attempt without an answer yet."""
        return self.handed - self.accepted_parts


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
        prior = outbox_q.progress(self.store, m.id)  # parts out already: complete it, do not reconsider it
        if prior is None and m.expires_at is not None and now > m.expires_at:
            await self._move(m, MessageState.EXPIRED, "too_old", expect=MessageState.SCHEDULED)
            return
        if self.recheck is not None:
            reason = self.recheck(m, now)
            if reason and prior is None and reason not in ("opted_out", "blocked") and outbox_q.resent(self.store, m.id):
                reason = None  # staff sent it again on purpose: only an opt-out or a block stops it
            if reason and (prior is None or reason == "opted_out"):
                state = MessageState.EXPIRED if reason == "too_old" else MessageState.CANCELLED
                detail = reason if prior is None else f"{reason} ({prior.describe()})"
                await self._move(m, state, detail, expect=MessageState.SCHEDULED)
                return
        attempt = m.attempts + 1
        claim = f"attempt {attempt}" + (f", resuming: {prior.describe()}" if prior is not None else "")
        if not self.store.transition(
            m.id, MessageState.SENDING, now=now, expect=MessageState.SCHEDULED, attempts=attempt, detail=claim
        ):
            return  # someone else claimed or cancelled it
        await self._notify(m, MessageState.SENDING, "")
        if prior is not None:
            order = [s for s in self.senders if s.name == prior.sender]
            if not order:
                await self._move(m, MessageState.FAILED, f"{prior.describe()} through {prior.sender}, which is no "
                                 "longer configured: the rest cannot follow with the same sender number",
                                 expect=MessageState.SENDING)
                return
        else:
            order = self._order(m.sender_pref)
        errors: list[str] = []
        retry_after: float | None = None
        for sender in order:
            track = StoredTrack(self.store, m.id, sender.name, self.clock)
            try:
                if takes_track(sender):
                    coro = sender.send(m.to_number, m.text, track=track)
                else:  # it cannot say when it hands over: count it as handed over from the start
                    track.handing_over(1, 1)
                    coro = sender.send(m.to_number, m.text)
                result = await asyncio.wait_for(coro, timeout=self.send_timeout)
            except TimeoutError:
                await self._doubt(m, sender.name, "send timed out", track, attempt)
                return
            except UnknownSendError as e:
                await self._doubt(m, sender.name, str(e), track, attempt)
                return
            except PermanentSendError as e:
                self._refused(m, track, str(e))
                prog = outbox_q.progress(self.store, m.id)
                detail = f"{sender.name}: {e}" if prog is None or "went out" in str(e) else f"{sender.name}: {prog.describe()}; {e}"
                await self._move(m, MessageState.FAILED, detail, expect=MessageState.SENDING, sender=sender.name)
                return
            except (TemporarySendError, SendError) as e:  # a SendError subclass we do not know: temporary
                self._refused(m, track, str(e))
                errors.append(f"{sender.name}: {e}")
                if isinstance(e, TemporarySendError) and e.retry_after:
                    retry_after = max(retry_after or 0.0, e.retry_after)
                log.warning("send_failed_temporarily", message=m.id, sender=sender.name, error=str(e))
                if outbox_q.progress(self.store, m.id) is not None:
                    break  # parts went out through this sender: the rest must follow through it, later
                continue
            except asyncio.CancelledError:
                # shutdown in the middle of a send: only a part handed over without an answer is in doubt
                await self._doubt(m, sender.name, "interrupted during send", track, attempt, shutdown=True)
                raise
            except Exception as e:  # a bug in a sender must not lose the text
                log.exception("sender_crashed", sender=sender.name, message=m.id)
                await self._doubt(m, sender.name, f"sender error: {type(e).__name__}", track, attempt)
                return
            await self._sent(m, result, track)
            return
        detail = "; ".join(errors) or "no sender configured"
        prog = outbox_q.progress(self.store, m.id)
        if attempt >= self.max_attempts:
            went = f"{prog.describe()}; " if prog is not None else ""
            await self._move(m, MessageState.FAILED, f"gave up after {attempt} attempts: {went}{detail}",
                             expect=MessageState.SENDING)
            return
        await self._retry_later(m, attempt, detail, retry_after)

    async def _retry_later(self, m: MessageRow, attempt: int, detail: str, retry_after: float | None = None) -> None:
        delay = retry_delay(attempt, self.retry_base, self.retry_max, retry_after)
        self.store.transition(
            m.id, MessageState.SCHEDULED, now=self.clock(), expect=MessageState.SENDING, send_at=self.clock() + delay,
            detail=f"retry in {delay:.0f}s: {detail}",
        )
        await self._notify(m, MessageState.SCHEDULED, detail)

    def _refused(self, m: MessageRow, track: StoredTrack, why: str) -> None:
        """The sender answered with an error: what it had been handed in this attempt did not go out."""
        try:
            outbox_q.refuse(self.store, m.id, track.unanswered, sender=track.sender, detail=why, now=self.clock())
        except StoreError as e:  # they stay in doubt: the safe side
            log.error("outbox_refuse_mark_failed", message=m.id, error=str(e))

    async def _doubt(self, m: MessageRow, sender: str, detail: str, track: StoredTrack, attempt: int,
                     *, shutdown: bool = False) -> None:
        """The send ended without an answer: parts never handed over still go (later); a part in doubt never."""
        prog = outbox_q.progress(self.store, m.id)
        if prog is None:  # nothing was handed over: nothing can have left
            if shutdown or attempt < self.max_attempts:
                self.store.transition(m.id, MessageState.SCHEDULED, now=self.clock(), expect=MessageState.SENDING,
                                      send_at=self.clock(), detail=f"{sender}: {detail} before the hand-over: sending it again")
                await self._notify(m, MessageState.SCHEDULED, detail)
            else:
                await self._move(m, MessageState.FAILED, f"gave up after {attempt} attempts: {sender}: {detail}",
                                 expect=MessageState.SENDING)
            return
        if prog.missing and (shutdown or attempt < self.max_attempts):
            if shutdown:
                self.store.transition(m.id, MessageState.SCHEDULED, now=self.clock(), expect=MessageState.SENDING,
                                      send_at=self.clock(), detail=f"{sender}: {detail}; {prog.describe()}: the rest follows")
                await self._notify(m, MessageState.SCHEDULED, detail)
            else:
                await self._retry_later(m, attempt, f"{sender}: {detail}; {prog.describe()}: the rest follows")
            return
        if prog.in_doubt:
            why = outbox_q.doubt_reason(prog, detail)
            await self._move(m, MessageState.UNKNOWN, why, expect=MessageState.SENDING, sender=sender,
                             refs=[r for _, r in prog.accepted], segments=prog.total)
        else:
            await self._move(m, MessageState.FAILED, f"gave up after {attempt} attempts: {prog.describe()}; "
                             f"{sender}: {detail}", expect=MessageState.SENDING, sender=sender)

    def _order(self, preferred: str) -> list[Sender]:
        first = [s for s in self.senders if s.name == preferred]
        rest = [s for s in self.senders if s.name != preferred]
        ordered = first + rest
        # healthy senders first, but an unhealthy one is still tried last (it may have recovered)
        return [s for s in ordered if s.healthy()] + [s for s in ordered if not s.healthy()]

    async def _sent(self, m: MessageRow, r: SendResult, track: StoredTrack) -> None:
        now = self.clock()
        for part in sorted(track.unanswered):  # a gateway's 2xx: it took what it was handed
            ref = r.references[part - 1] if part - 1 < len(r.references) else (r.references[0] if r.references else "")
            try:
                track.accepted(part, ref)
            except StoreError as e:
                log.error("outbox_accept_mark_failed", message=m.id, error=str(e))
        prog = outbox_q.progress(self.store, m.id)
        if prog is not None and prog.in_doubt:  # an earlier attempt's part never got its answer
            await self._move(m, MessageState.UNKNOWN, outbox_q.doubt_reason(prog, "an earlier attempt stopped"),
                             expect=MessageState.SENDING, sender=r.sender, refs=r.references, segments=r.segments,
                             encoding=r.encoding, sent_at=now)
            return
        self.store.transition(
            m.id, MessageState.SENT, now=now, expect=MessageState.SENDING, sender=r.sender, refs=r.references,
            segments=r.segments, encoding=r.encoding, sent_at=now, detail=f"via {r.sender}",
        )
        self.sent += 1
        self.last_latency = now - m.send_at
        log.info("text_sent", message=m.id, to=mask(m.to_number, self.log_numbers), sender=r.sender, segments=r.segments)
        await self._notify(m, MessageState.SENT, r.sender)

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
