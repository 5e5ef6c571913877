"""Texts that come back: replies, STOP/START/HELP, and delivery reports.

``Conversations`` is the ``InboundSink`` every sender delivers to. A reply is
stored against the number's last missed call; a keyword (matched case- and
space-insensitively on the whole message, as carriers do) changes the opt-out
state and queues one short answer through the outbox; a delivery report moves
the matching text to ``delivered`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import structlog

from textbackd.core.model import DeliveryReport, IncomingText, MessageState, TextKind
from textbackd.core.numbers import mask, normalize
from textbackd.core.settings import Config
from textbackd.core.timeutil import to_dt
from textbackd.decide import templates
from textbackd.store import conversations as conv_q
from textbackd.store import outbox as outbox_q
from textbackd.store.db import MessageRow, Store

log = structlog.get_logger(__name__)

STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"}
START_WORDS = {"start", "unstop", "yes", "subscribe"}
HELP_WORDS = {"help", "info"}

_CLEAN = re.compile(r"[\s.!]+")

ReplyHook = Callable[[IncomingText, str, str | None], Awaitable[None] | None]


def keyword(text: str) -> str:
    """'stop' | 'start' | 'help' | '' for a message body."""
    word = _CLEAN.sub("", text).lower()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    if word in HELP_WORDS:
        return "help"
    return ""


class Conversations:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        wake_outbox: Callable[[], None] = lambda: None,
        on_reply: ReplyHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.wake_outbox = wake_outbox
        self.on_reply = on_reply
        self.clock = clock
        self.dlr_wait_steps = 20

    async def incoming(self, text: IncomingText) -> None:
        now = self.clock()
        number = normalize(text.from_number, self.config.business.default_region)
        kw = keyword(text.text)
        last = conv_q.last_missed_call(self.store, number)
        call_id = last.id if last else None
        iid = self.store.record_incoming(
            sender=text.sender,
            from_number=number,
            to_number=text.to_number,
            text=text.text,
            received_at=text.received_at.timestamp(),
            provider_id=text.provider_id,
            call_id=call_id,
            keyword=kw,
        )
        if iid is None:
            log.info("incoming_duplicate_ignored", sender=text.sender, provider_id=text.provider_id)
            return
        log.info("text_received", sender=text.sender, frm=mask(number, self.config.logging.log_numbers), keyword=kw or None)
        if kw == "stop":
            already = self.store.is_opted_out(number)
            self.store.set_opt_out(number, True, now=now, source=f"sms:{text.sender}")
            self._cancel_pending(number, now)
            if not already:  # one confirmation, then silence
                self._answer(number, self.config.messages.opt_out, "confirm", now)
        elif kw == "start":
            if self.store.is_opted_out(number):
                self.store.set_opt_out(number, False, now=now, source=f"sms:{text.sender}")
                self._answer(number, self.config.messages.opt_in, "confirm", now)
        elif kw == "help":
            if not self.store.is_opted_out(number):
                self._answer(number, self.config.messages.help, "help", now)
        if self.on_reply is not None:
            r = self.on_reply(text, kw, call_id)
            if hasattr(r, "__await__"):
                await r

    async def delivery_report(self, report: DeliveryReport) -> None:
        """A report names one part (a modem's TP-MR) or one text (a gateway's id). A part whose hand-over got
        no answer is found by the id it was expected to get and its recipient (``store/outbox.match_report``);
        a multipart text is ``delivered`` once every part is."""
        def find() -> MessageRow | None:
            return outbox_q.match_report(self.store, report.sender, report.reference, report.recipient, now=self.clock())

        m = find()
        # A fast report can overtake the outbox's `sent` mark (the references are stored
        # with it): give the outbox a moment instead of dropping the report.
        for _ in range(self.dlr_wait_steps):
            if m is not None and m.state is not MessageState.SENDING:
                break
            await asyncio.sleep(0.1)
            m = find()
        if m is None:
            log.info("dlr_unmatched", sender=report.sender, reference=report.reference)
            return
        now = self.clock()
        if report.delivered:
            whole = outbox_q.part_delivered(self.store, m.id, report.sender, report.reference, report.at.timestamp())
            if whole and m.state in (MessageState.SENT, MessageState.UNKNOWN, MessageState.FAILED):
                self.store.transition(m.id, MessageState.DELIVERED, now=now, detail=report.detail or "delivered",
                                      delivered_at=report.at.timestamp())
        elif report.final and m.state in (MessageState.SENT, MessageState.UNKNOWN):
            self.store.transition(m.id, MessageState.FAILED, now=now, detail=f"delivery failed: {report.detail}")

    def _cancel_pending(self, number: str, now: float) -> None:
        for m in self.store.messages(number=number, states=(MessageState.SCHEDULED,), limit=100):
            if m.kind not in (TextKind.TEXTBACK, TextKind.FOLLOWUP):
                continue  # the opt-out confirmation itself must still go out
            self.store.transition(m.id, MessageState.CANCELLED, now=now, detail="opted_out", expect=MessageState.SCHEDULED)

    def _answer(self, number: str, template: str, kind: str, now: float) -> None:
        vals = templates.values(self.config, None, caller_name="", did="", at=to_dt(now))
        text = templates.render(template, vals)
        info = templates.describe(text)
        self.store.add_message(
            to=number, kind=kind, state=MessageState.SCHEDULED, now=now, send_at=now, text=text,
            segments=info.segments, encoding=info.encoding, expires_at=now + 3600,
        )
        self.wake_outbox()

