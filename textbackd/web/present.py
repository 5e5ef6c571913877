"""Rows and facts in words, for the templates (which hold no logic of their own).

Everything a page shows as text is made here: times in the business time zone, numbers as people
write them (national at home, international abroad), what happened to a call, what textbackd did and
why, a text's state and what followed. Pure functions over the model's types and the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from textbackd.core import sms
from textbackd.core.model import CallListRow, CallRecord, InboxRow, MessageRow, MessageState, ThreadItem
from textbackd.core.settings import Config
from textbackd.decide import templates

OUTCOME_WORDS = {
    "no_answer": "rang out",
    "busy": "busy",
    "unavailable": "no phone could ring",
    "caller_cancel": "hung up while it rang",
    "voicemail": "voicemail, no message",
    "queue_abandon": "left the queue",
    "ivr_abandon": "hung up in the menu",
    "unknown": "ended unseen (link down)",
    "answered": "answered",
}

SKIP_WORDS = {
    "not_inbound": "not a customer call",
    "answered": "answered",
    "line_disabled": "texting is off for this line",
    "outcome_disabled": "not texted for this outcome",
    "voicemail_left": "left a voicemail",
    "min_ring": "rang too briefly",
    "too_old": "too late to text",
    "withheld_number": "anonymous",
    "invalid_number": "not a phone number",
    "automated_sender": "an automated number",
    "country_not_allowed": "country not allowed",
    "blocked": "blocked",
    "not_allowed": "not on the allow list",
    "opted_out": "opted out",
    "answered_callback": "called back and answered",
    "duplicate": "already texted today",
    "conversation_open": "already texting with us",
    "cap_number": "daily limit for this number",
    "cap_prefix": "limit for similar numbers",
    "cap_global": "hourly limit reached",
    "blocked by staff": "blocked by staff",
}

STATE_WORDS = {
    MessageState.SCHEDULED: "waiting to go",
    MessageState.SENDING: "sending",
    MessageState.SENT: "sent",
    MessageState.DELIVERED: "delivered",
    MessageState.FAILED: "failed",
    MessageState.CANCELLED: "cancelled",
    MessageState.SKIPPED: "not sent",
    MessageState.UNKNOWN: "unknown (may have gone)",
    MessageState.EXPIRED: "expired",
}

KIND_WORDS = {"textback": "Automatic text", "followup": "Follow-up", "confirm": "Opt-out answer",
              "help": "HELP answer", "staff": "Staff text"}

ACTION_WORDS = {"claim": "claimed it", "handled": "marked it handled", "block": "blocked the number",
                "unblock": "unblocked the number", "resend": "sent it again", "export": "exported",
                "forget": "erased it"}


class Present:
    """Formatting bound to one config (time zone, region, line names)."""

    def __init__(self, config: Config, now: float) -> None:
        self.config = config
        self.tz = config.business.tz
        self.region = config.business.default_region
        self.now = now

    # -- pieces ---------------------------------------------------------------------

    def time(self, ts: float | None) -> str:
        if ts is None:
            return ""
        local = datetime.fromtimestamp(ts, tz=timezone.utc).astimezone(self.tz)
        today = datetime.fromtimestamp(self.now, tz=timezone.utc).astimezone(self.tz).date()
        hhmm = templates.format_time(local.time(), self.region)
        if local.date() == today:
            return hhmm
        days = (local.date() - today).days
        if days in (-1, 1):
            return f"{'tomorrow' if days == 1 else 'yesterday'} {hhmm}"
        if local.year == today.year:
            return f"{local:%b} {local.day}, {hhmm}"
        return f"{local:%Y-%m-%d} {hhmm}"

    def iso(self, ts: float | None) -> str:
        return "" if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds")

    def number(self, n: str) -> str:
        return templates.format_number(n, self.region) if n.startswith("+") else (n or "unknown")

    def line(self, did: str) -> str:
        line = self.config.line_for(did)
        shown = self.number(did) if did.startswith("+") else did
        return f"{shown} ({line.name})" if line is not None and line.name else shown

    def person(self, name: str) -> str:
        """A caller-ID name when it is a person's (not WIRELESS CALLER, a city or a number), as the texts use it."""
        return templates.person_name(name)

    @staticmethod
    def link(number: str) -> str:
        return "/conversations/" + quote(number, safe="+")

    def seconds(self, s: float | None) -> str:
        if s is None:
            return ""
        return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"

    def happened(self, c: CallRecord) -> str:
        if c.direction != "inbound":
            return f"{c.direction} call, {OUTCOME_WORDS.get(c.outcome, c.outcome)}"
        if c.outcome == "voicemail" and c.voicemail_left:
            return "voicemail, message left"
        return OUTCOME_WORDS.get(c.outcome, c.outcome.replace("_", " "))

    def did(self, m: MessageRow | None) -> str:
        """What textbackd did about a missed call, in words."""
        if m is None:
            return "not decided yet"
        if m.state is MessageState.SKIPPED or (m.state is MessageState.CANCELLED and m.sent_at is None):
            why = SKIP_WORDS.get(m.reason, m.reason.replace("_", " ") or str(m.state))
            return f"not texted: {why}"
        if m.state is MessageState.SCHEDULED:
            if m.send_at - m.created > 600:
                return f"held for quiet hours until {self.time(m.send_at)}"
            return f"text due at {self.time(m.send_at)}"
        if m.state is MessageState.EXPIRED:
            return "not texted: too late to send"
        if m.state is MessageState.FAILED and m.sent_at is None:
            return f"text failed: {m.reason}" if m.reason else "text failed"
        return f"texted at {self.time(m.sent_at or m.updated)}"

    def state(self, m: MessageRow | None) -> str:
        return "" if m is None else STATE_WORDS.get(m.state, str(m.state))

    def followed(self, r: CallListRow) -> str:
        words = []
        if r.replied_at:
            words.append(f"replied {self.time(r.replied_at)}")
        if r.called_back_at:
            words.append(f"called back and answered {self.time(r.called_back_at)}")
        if r.answered_again_at:
            words.append(f"called again, answered {self.time(r.answered_again_at)}")
        if words:
            words.append("recovered")
        return ", ".join(words)

    def actor(self, who: str | None) -> str:
        if not who:
            return ""
        kind, _, name = who.partition(":")
        return {"web": name, "cli": f"{name} (server)", "mail": f"{name} (mail)", "api": f"{name} (API)"}.get(kind, who)

    # -- rows -----------------------------------------------------------------------

    def call_row(self, r: CallListRow) -> dict[str, Any]:
        c = r.call
        return {
            "time": self.time(c.ended), "iso": self.iso(c.ended),
            "number": self.number(c.caller), "name": self.person(c.caller_name), "href": self.link(c.caller),
            "line": self.line(c.did), "happened": self.happened(c), "ring": self.seconds(c.ring_seconds),
            "did": self.did(r.textback) if c.direction == "inbound" and c.missed else "",
            "state": self.state(r.textback) if r.textback and r.textback.state is not MessageState.SKIPPED else "",
            "followed": self.followed(r), "handled": "handled" if r.handled else ("needs attention" if c.missed else ""),
            "textable": c.caller.startswith("+"),
        }

    def inbox_row(self, r: InboxRow) -> dict[str, Any]:
        return {
            "number": self.number(r.number), "name": self.person(r.caller_name), "href": self.link(r.number),
            "unread": r.unread, "waiting": self.time(r.waiting_since), "iso": self.iso(r.waiting_since),
            "last": r.last_text[:140], "claimed": self.actor(r.claimed_by) or "nobody",
        }

    def thread_item(self, it: ThreadItem) -> dict[str, Any]:
        base: dict[str, Any] = {"time": self.time(it.at), "iso": self.iso(it.at), "kind": it.kind, "title": "",
                                "body": "", "side": "note", "state": ""}
        if it.call is not None:
            c = it.call
            way = "Call from" if c.direction == "inbound" else ("Call to" if c.direction == "outbound" else "Call")
            base.update(title=f"{way} {self.number(c.caller if c.direction == 'inbound' else c.did)}",
                        body=f"{self.happened(c)}, line {self.line(c.did if c.direction == 'inbound' else c.caller)}"
                        + (f", rang {self.seconds(c.ring_seconds)}" if c.ring_seconds >= 1 else ""), side="in")
        elif it.text is not None:
            m = it.text
            if m.state is MessageState.SKIPPED:
                base.update(title=KIND_WORDS.get(m.kind, m.kind), body=self.did(m), side="note")
            else:
                who = f" by {self.actor(it.sent_by)}" if it.sent_by else ""
                base.update(title=f"{KIND_WORDS.get(m.kind, m.kind)}{who}", body=m.text, side="out",
                            state=self.state(m) + (f": {m.reason}" if m.reason and m.state in (
                                MessageState.FAILED, MessageState.CANCELLED, MessageState.UNKNOWN) else ""))
        elif it.reply is not None:
            i = it.reply
            kw = {"stop": "STOP: opted out", "start": "START: opted back in", "help": "asked for HELP"}.get(i.keyword, "")
            base.update(title="Reply" + (f" ({kw})" if kw else ""), body=i.text, side="in")
        elif it.action is not None:
            a = it.action
            base.update(title=f"{self.actor(a.actor)} {ACTION_WORDS.get(a.action, a.action)}",
                        body=a.detail, side="note")
        return base


@dataclass(frozen=True, slots=True)
class Compose:
    """What the reply box says about a draft (as ``check-config`` does for templates)."""

    characters: int
    segments: int
    encoding: str
    warning: str

    @property
    def line(self) -> str:
        if not self.characters:
            return "0 characters"
        enc = "GSM-7" if self.encoding == "gsm7" else "UCS-2"
        return f"{self.characters} characters, {self.segments} SMS, {enc}"


def compose(text: str) -> Compose:
    body = " ".join(text.split())
    info = sms.analyze(body)
    warning = ""
    if info.encoding == "ucs2":
        odd = sms.non_gsm7_chars(body)
        plain = sms.analyze("".join(ch for ch in body if ch not in odd))
        shown = " ".join(odd[:5])
        cost = (f": {info.segments} SMS instead of {plain.segments}" if info.segments > plain.segments
                else "")
        warning = (f"{shown} switches the whole text to UCS-2, 70 characters per SMS instead of 160{cost}. "
                   "It costs more; leave it out to stay in GSM-7.")
    return Compose(characters=len(body), segments=info.segments, encoding=info.encoding, warning=warning)
