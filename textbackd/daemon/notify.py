"""Staff e-mail: replies forwarded at once, missed calls, escalations and the owner's summary.

Nothing here ever blocks texting. Every mail is first a row in the store's
``emails`` table (``Notifier.queue``: one INSERT, no network); the worker
(``Notifier.run``) sends due rows with aiosmtplib, one connection per mail,
and on failure sets the next try with exponential backoff (30 s doubling, at
most an hour between tries, given up after ``GIVE_UP_AFTER``). A 5xx answer
(other than an authentication failure, which an admin can fix) fails the
mail at once. An SMTP outage therefore only delays mail; texts keep flowing.

What gets mailed (``[email] notify``):

* each incoming text, at once, with the conversation's context: the caller,
  the number dialled, the time of the missed call in the business time zone,
  its outcome, whether a voicemail was left, and the texts so far (always,
  whatever ``notify`` says; STOP/START/HELP are marked as such);
* ``every_missed_call``: one mail per missed call with what textbackd did about it;
* ``digest``: one mail per hour listing that hour's missed calls (only when there were some);
* ``escalate_after`` (e.g. ``"4h"``): a text-back that got no reply and no
  call-back in that time is mailed with the whole context, once;
* texts whose outcome is unknown (interrupted or timed out mid-send, never re-sent blindly): one mail;
* ``summary = "daily" | "weekly"``: the ``textbackd stats`` table for the
  previous day (sent at 07:00 business time) or week (Mondays 07:00).

Mails about a conversation carry a ``Reply-To`` whose local part holds a random
token (``<from-local>+r<token>@<reply_domain or the From domain>``). The token is
kept in the mail's row (``headers._token``); ``mail_in`` accepts a staff answer
only for a token it finds there, so only conversations textbackd wrote about
can be answered by mail. Header keys starting with ``_`` are bookkeeping and are
never sent.

A staff answer by mail becomes a text through ``staff.actions.send_text``, the same
path as ``textbackd reply`` and the front desk.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import structlog

from textbackd.core.errors import EmailError, TextbackError
from textbackd.core.model import Call, CallRecord, EmailRow, IncomingText, MessageState
from textbackd.core.numbers import mask, normalize
from textbackd.core.settings import Config, parse_duration
from textbackd.core.timeutil import to_dt
from textbackd.daemon import followups
from textbackd.daemon.worker import Worker
from textbackd.decide import templates
from textbackd.store import conversations as conv_q
from textbackd.store import figures as stats
from textbackd.store import mail as mail_q
from textbackd.store.db import MessageRow, Store, call_key

_ENDED_WITH_REASON = (MessageState.CANCELLED, MessageState.FAILED, MessageState.EXPIRED)

log = structlog.get_logger(__name__)

RETRY_BASE = 30.0
RETRY_MAX = 3600.0
GIVE_UP_AFTER = 3 * 86400.0
SUMMARY_HOUR = 7
_TOKEN = re.compile(r"^[0-9a-f]{16}$")

OUTCOME_WORDS = {
    "no_answer": "rang, nobody answered",
    "busy": "line busy",
    "unavailable": "no phone could ring",
    "caller_cancel": "caller hung up while it rang",
    "voicemail": "went to voicemail",
    "queue_abandon": "caller hung up waiting in the queue",
    "ivr_abandon": "caller hung up in the menu",
    "unknown": "ended unseen",
    "answered": "answered",
}


# --------------------------------------------------------------------------------------
# staff texts (reply command, mail answers)


# --------------------------------------------------------------------------------------
# mail text


def _local(config: Config, ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=config.business.tz).strftime("%a %d %b %Y %H:%M %Z")


def _short_local(config: Config, ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=config.business.tz).strftime("%a %d %b %H:%M")


def _who(config: Config, number: str, name: str = "") -> str:
    person = templates.person_name(name)
    shown = templates.format_number(number, config.business.default_region) if number.startswith("+") else number
    return f"{person} ({shown})" if person else shown


def call_summary(config: Config, call: CallRecord) -> list[str]:
    """The lines that describe one stored call."""
    line = config.line_for(call.did)
    did = templates.format_number(call.did, config.business.default_region) if call.did else "-"
    if line is not None and line.name:
        did += f" ({line.name})"
    vm = "yes" + (f" (box {call.voicemail_box})" if call.voicemail_box else "") if call.voicemail_left else "no"
    caller = _who(config, call.caller, call.caller_name)
    if call.carrier_name is not None and call.carrier_name != call.caller_name:  # a contact's name (issue 14)
        shown = templates.format_number(call.caller, config.business.default_region)
        caller = f"{call.caller_name} ({shown})" + (f", caller ID {call.carrier_name!r}" if call.carrier_name else "")
    return [
        f"  Caller:          {caller}",
        f"  Number dialled:  {did}",
        f"  Missed call at:  {_local(config, call.ended)}",
        f"  Outcome:         {OUTCOME_WORDS.get(call.outcome, call.outcome)}, rang {call.ring_seconds:.0f} s",
        f"  Voicemail left:  {vm}",
    ]


def conversation_lines(store: Store, config: Config, number: str, *, since: float | None = None) -> list[str]:
    """Every text to and from ``number`` (since ``since``), oldest first."""
    out, inc = conv_q.thread(store, number, 0.0 if since is None else since)
    items: list[tuple[float, str]] = []
    for m in out:
        at = m.sent_at or m.created
        state = str(m.state) + (f": {m.reason}" if m.reason and m.state in _ENDED_WITH_REASON else "")
        items.append((at, f"  {_short_local(config, at)}  us → them ({m.kind}, {state}): {m.text}"))
    for r in inc:
        kw = f" [{r.keyword.upper()}]" if r.keyword else ""
        items.append((r.received_at, f"  {_short_local(config, r.received_at)}  them → us{kw}: {r.text}"))
    return [line for _, line in sorted(items, key=lambda x: x[0])] or ["  (none yet)"]


def _answer_hint(config: Config, number: str, can_reply_by_mail: bool) -> list[str]:
    hint = ["", "To answer by text:"]
    if can_reply_by_mail:
        hint.append("  - reply to this e-mail: the first lines you write (above the quoted text) become the text;")
    hint.append(f"  - or on the server: textbackd reply {number} \"your text\"")
    return hint


# --------------------------------------------------------------------------------------
# the notifier


class Notifier:
    """Queues staff mail for the daemon's events and sends the queue in the background."""

    def __init__(self, store: Store, config: Config, *, clock: Callable[[], float] = time.time,
                 smtp_timeout: float = 30.0, poll: float = 5.0, check_every: float = 60.0) -> None:
        self.store = store
        self.config = config
        self.email = config.email
        self.clock = clock
        self.smtp_timeout = smtp_timeout
        self.poll = poll
        self.check_every = check_every
        self.worker = Worker("notify", self._tick, clock=clock, poll=poll)
        self._last_check = 0.0
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.email.enabled

    # -- addresses ------------------------------------------------------------------

    def reply_address(self, token: str) -> str | None:
        """The Reply-To for a conversation mail, or None when mail answers are not set up."""
        if not self.email.receive_listen:
            return None
        local, _, domain = self.email.from_.partition("@")
        local = local.split("+", 1)[0] or "textbackd"
        return f"{local}+r{token}@{self.email.reply_domain or domain or 'localhost'}"

    # -- queueing (no network, never raises into the caller) ---------------------------

    def queue(self, kind: str, subject: str, body: str, *, number: str | None = None,
              call_id: str | None = None, extra: dict[str, str] | None = None) -> int | None:
        if not self.enabled:
            return None
        headers: dict[str, str] = dict(extra or {})
        if number:
            headers["_number"] = number
            token = secrets.token_hex(8)
            reply_to = self.reply_address(token)
            if reply_to:
                headers["_token"] = token
                headers["Reply-To"] = reply_to
        if call_id:
            headers["_call"] = call_id
        try:
            eid = self.store.queue_email(kind=kind, to=self.email.to, subject=subject, body=body,
                                         now=self.clock(), headers=headers)
        except TextbackError as e:
            log.error("email_queue_failed", kind=kind, error=str(e))
            return None
        self.worker.wake()
        return eid

    def on_reply(self, text: IncomingText, kw: str, call_id: str | None) -> int | None:
        """Forward an incoming text to staff with its conversation."""
        if not self.enabled:
            return None
        cfg = self.config
        number = normalize(text.from_number, cfg.business.default_region)
        call = self.store.get_call(call_id) if call_id else None
        who = _who(cfg, number, call.caller_name if call else "")
        what = {"stop": "opted out (STOP)", "start": "opted back in (START)", "help": "asked for HELP"}.get(kw, "replied")
        first = " ".join(text.text.split())
        subject = f"Text from {who}: {first[:60]}" if not kw else f"{who} {what}"
        body = [f"{who} {what} by text at {_local(cfg, text.received_at.timestamp())}:", "", f"    {text.text.strip()}", ""]
        if call is not None:
            body += ["The missed call:", *call_summary(cfg, call), ""]
        body += ["Texts so far:", *conversation_lines(self.store, cfg, number, since=call.ended - 1 if call else None)]
        if kw != "stop":
            body += _answer_hint(cfg, number, bool(self.email.receive_listen))
        return self.queue("reply", subject, "\n".join(body) + "\n", number=number if kw != "stop" else None,
                          call_id=call_id)

    def on_call(self, call: Call, outcome: Any) -> int | None:
        """``every_missed_call``: one mail per new missed call, with what textbackd decided."""
        if not (self.enabled and self.email.notify == "every_missed_call" and call.missed and getattr(outcome, "new", True)):
            return None
        cfg = self.config
        row = self.store.get_call(call_key(call))
        if row is None:
            return None
        decision = getattr(outcome, "decision", None)
        if decision is None:
            did = "nothing (already handled)"
        elif getattr(decision, "action", "") == "text":
            did = f"a text is scheduled for {_local(cfg, decision.send_at.timestamp())}: {decision.text}"
        else:
            did = f"no text ({decision.reason})"
        number = normalize(call.caller, cfg.business.default_region)
        body = ["Missed call:", *call_summary(cfg, row), "", f"textbackd: {did}"]
        body += _answer_hint(cfg, number, bool(self.email.receive_listen))
        subject = f"Missed call from {_who(cfg, number, call.caller_name)}"
        return self.queue("missed_call", subject, "\n".join(body) + "\n",
                          number=number if number.startswith("+") else None, call_id=call_key(call))

    def on_unknown(self, rows: Sequence[MessageRow]) -> int | None:
        """Texts whose fate is unknown (the process died mid-send, or a send timed out after leaving), and
        texts that failed after some of their parts went out (the caller holds a fragment): textbackd never
        re-sends them blindly, so staff are told and can check with the caller or resend one on purpose."""
        if not (self.enabled and rows):
            return None
        cfg = self.config
        unknown = [m for m in rows if m.state is not MessageState.FAILED]
        body = []
        if unknown:
            body += [
                f"{len(unknown)} text(s) may or may not have reached the caller (the send was interrupted or timed out",
                "after it left). textbackd does not send them again on its own, so nobody gets the same text twice.",
            ]
        if len(unknown) < len(rows):
            body += [f"{len(rows) - len(unknown)} text(s) failed after part of them went out: the caller has a fragment."]
        body += ["If it matters, call or text the caller yourself, or send one again on purpose (the caller may",
                 "then get a second copy): textbackd resend MESSAGE_ID", ""]
        for m in rows:
            body.append(f"  {_short_local(cfg, m.updated)}  {_who(cfg, m.to_number)} ({m.kind}): {m.text}")
            body.append(f"      {m.state}: {m.reason}  →  textbackd resend {m.id}")
        body += ["", "See: textbackd messages --state unknown"]
        subject = (f"{len(rows)} text(s) with an unknown outcome" if not len(unknown) < len(rows)
                   else f"{len(rows)} text(s) that may not have reached the caller whole")
        return self.queue("unknown", subject, "\n".join(body) + "\n")

    # -- periodic checks ----------------------------------------------------------------

    def check_escalations(self, now: float) -> int:
        """Mail staff about every text-back that got no reply and no call-back within ``escalate_after``."""
        after = parse_duration(self.email.escalate_after) if self.email.escalate_after else None
        if not (self.enabled and after):
            return 0
        cfg = self.config
        n = 0
        for m in mail_q.escalation_candidates(self.store, now - after, now - after - 86400):
            assert m.call_id is not None and m.sent_at is not None
            call = self.store.get_call(m.call_id)
            ended = call.ended if call else m.sent_at
            facts = followups.facts(self.store, m.to_number, m.call_id)
            if not followups.escalation_due(to_dt(m.sent_at), to_dt(ended), facts, after, to_dt(now)):
                continue
            number = m.to_number
            who = _who(cfg, number, call.caller_name if call else "")
            body = [
                f"Nobody has reached {who} yet: no reply to our text and no call back "
                f"{stats.duration(now - m.sent_at)} after it was sent. Please call them.",
                "",
            ]
            if call is not None:
                body += ["The missed call:", *call_summary(cfg, call), ""]
            body += ["Texts so far:", *conversation_lines(self.store, cfg, number, since=ended - 1)]
            body += _answer_hint(cfg, number, bool(self.email.receive_listen))
            if self.queue("escalation", f"No answer yet from {who}", "\n".join(body) + "\n", number=number,
                          call_id=m.call_id):
                n += 1
                log.info("escalated", to=mask(number, cfg.logging.log_numbers), call=m.call_id)
        return n

    def summary_period(self, now: float) -> tuple[float, float] | None:
        """The period the latest due summary covers (``[start, end)``), or None when none is configured."""
        mode = self.email.summary
        if not mode:
            return None
        tz = self.config.business.tz
        local = datetime.fromtimestamp(now, tz=tz)
        end_day = local.date()
        if local.hour < SUMMARY_HOUR:
            end_day -= timedelta(days=1)
        if mode == "weekly":
            end_day -= timedelta(days=end_day.weekday())  # back to Monday
        span = 7 if mode == "weekly" else 1
        end = templates._local_instant(end_day, datetime.min.time(), tz)
        start = templates._local_instant(end_day - timedelta(days=span), datetime.min.time(), tz)
        return start.timestamp(), end.timestamp()

    def check_summary(self, now: float) -> int:
        """Queue the daily/weekly summary once per period."""
        period = self.summary_period(now) if self.enabled else None
        if period is None:
            return 0
        start, end = period
        key = str(int(end))
        if mail_q.period_mailed(self.store, "summary", key):
            return 0
        report = stats.compute(self.store, self.config, since=start, until=end)
        label = datetime.fromtimestamp(start, tz=self.config.business.tz).strftime("%a %d %b %Y")
        which = "Weekly" if self.email.summary == "weekly" else "Daily"
        subject = f"{which} missed-call summary for {self.config.business.name}: {label}"
        body = stats.render(report, self.config.business.tz)
        return 1 if self.queue("summary", subject, body, extra={"_period": key}) else 0

    def check_digest(self, now: float) -> int:
        """``digest``: one mail per past hour that had missed calls."""
        if not (self.enabled and self.email.notify == "digest"):
            return 0
        end = now - now % 3600
        key = str(int(end))
        if mail_q.period_mailed(self.store, "digest", key):
            return 0
        calls = mail_q.missed_calls(self.store, end - 3600, end)
        if not calls:
            return 0
        cfg = self.config
        body = [f"{len(calls)} missed call(s) between {_local(cfg, end - 3600)} and {_local(cfg, end)}:", ""]
        for c in calls:
            tb = self.store.textback_of(c.id)
            what = "no decision" if tb is None else (f"no text ({tb.reason})" if tb.state == MessageState.SKIPPED else f"text {tb.state}")
            body.append(f"  {_short_local(cfg, c.ended)}  {_who(cfg, c.caller, c.caller_name)} → "
                        f"{c.did}: {OUTCOME_WORDS.get(c.outcome, c.outcome)}; {what}")
        return 1 if self.queue("digest", f"{len(calls)} missed call(s) in the last hour", "\n".join(body) + "\n",
                               extra={"_period": key}) else 0

    def check(self, now: float) -> int:
        """Every periodic check; how many mails were queued."""
        n = 0
        for f in (self.check_escalations, self.check_summary, self.check_digest):
            try:
                n += f(now)
            except Exception:  # a bug here must not stop the mail worker
                log.exception("notify_check_failed", check=f.__name__)
        return n

    # -- sending ------------------------------------------------------------------------

    def build(self, row: EmailRow) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.email.from_
        msg["To"] = ", ".join(row.to_addrs)
        msg["Subject"] = row.subject
        msg["Date"] = formatdate(row.created, localtime=False)
        domain = self.email.from_.rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(f"textbackd.{row.id}", domain=domain)
        msg["Auto-Submitted"] = "auto-generated"
        for k, v in row.headers.items():
            if not k.startswith("_"):
                msg[k] = v
        msg.set_content(row.body)
        return msg

    async def deliver(self, msg: EmailMessage) -> None:
        """Hand one mail to the SMTP server; ``EmailError`` (with ``permanent``) when it did not take it."""
        import aiosmtplib

        e = self.email
        try:
            await aiosmtplib.send(
                msg, hostname=e.host, port=e.port, username=e.username or None,
                password=(e.password.reveal() or None) if e.username else None,
                use_tls=e.tls, start_tls=True if (e.starttls and not e.tls) else False, timeout=self.smtp_timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as err:
            raise EmailError(f"{e.host}:{e.port} refused the login ({err.code})") from None
        except aiosmtplib.SMTPResponseException as err:
            ex = EmailError(f"{e.host}:{e.port} answered {err.code}: {err.message[:120]}")
            ex.permanent = 500 <= err.code < 600  # type: ignore[attr-defined]
            raise ex from None
        except aiosmtplib.SMTPRecipientsRefused as err:
            ex = EmailError(f"{e.host}:{e.port} refused every recipient ({len(err.recipients)})")
            ex.permanent = True  # type: ignore[attr-defined]
            raise ex from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise EmailError(f"{e.host}:{e.port}: {type(err).__name__}: {str(err)[:160]}") from None

    async def send_due(self) -> int:
        """Try every due mail once; how many went."""
        sent = 0
        for row in self.store.due_emails(self.clock()):
            if self._stopping:
                break
            try:
                await self.deliver(self.build(row))
            except EmailError as err:
                now = self.clock()
                attempts = row.attempts + 1
                if getattr(err, "permanent", False) or now - row.created > GIVE_UP_AFTER:
                    self.store.email_done(row.id, now=now, ok=False, error=str(err))
                    log.error("email_failed", email=row.id, kind=row.kind, error=str(err))
                else:
                    delay = min(RETRY_MAX, RETRY_BASE * 2 ** (attempts - 1))
                    self.store.email_done(row.id, now=now, ok=False, error=str(err), retry_at=now + delay)
                    log.warning("email_retry", email=row.id, kind=row.kind, error=str(err), retry_in=delay)
                continue
            self.store.email_done(row.id, now=self.clock(), ok=True)
            log.info("email_sent", email=row.id, kind=row.kind)
            sent += 1
            self.sent += 1
        return sent

    # -- the worker ---------------------------------------------------------------------

    def wake(self) -> None:
        self.worker.wake()

    def stop(self) -> None:
        self.worker.stop()

    @property
    def _stopping(self) -> bool:
        return self.worker.stopping

    async def _tick(self) -> None:
        now = self.clock()
        if now - self._last_check >= self.check_every:
            self._last_check = now
            self.check(now)
        await self.send_due()

    async def run(self) -> None:
        """Send due mail and run the periodic checks until ``stop()``."""
        if self.enabled:
            await self.worker.run()


TOKEN_DAYS = 30  # a Reply-To token answers its conversation for this long


def find_conversation(store: Store, token: str, *, now: float | None = None) -> tuple[str, str | None] | None:
    """(number, call id) of the conversation a Reply-To token was written for (within ``TOKEN_DAYS``), or None."""
    if not _TOKEN.match(token):
        return None
    now = time.time() if now is None else now
    h = mail_q.reply_token(store, token, now - TOKEN_DAYS * 86400)
    if h is None:
        return None
    return (h["_number"], h.get("_call")) if h.get("_number") else None


__all__ = ["Notifier", "find_conversation", "call_summary", "conversation_lines"]
