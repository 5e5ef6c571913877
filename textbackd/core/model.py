"""The shared vocabulary: calls, their outcomes, texts and their states.

Both PBX trackers produce ``Call`` objects; the policy, the store, the reports
and ``replay`` consume them. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from textbackd.core.timeutil import iso, utc_from_epoch


class Direction(enum.StrEnum):
    INBOUND = "inbound"  # arrived on a trunk from the outside world
    OUTBOUND = "outbound"  # an office phone called out
    INTERNAL = "internal"  # extension to extension


class Outcome(enum.StrEnum):
    """How the call ended, from the caller's point of view."""

    ANSWERED = "answered"  # a human (desk phone, ring group member, queue agent) picked up
    NO_ANSWER = "no_answer"  # rang until the PBX gave up, no voicemail
    BUSY = "busy"  # the called phone(s) were busy
    UNAVAILABLE = "unavailable"  # nothing could be rung (unregistered, congestion)
    CALLER_CANCEL = "caller_cancel"  # the caller hung up while phones were ringing
    VOICEMAIL = "voicemail"  # the caller reached voicemail (see Call.voicemail_left)
    QUEUE_ABANDON = "queue_abandon"  # hung up waiting in a queue
    IVR_ABANDON = "ivr_abandon"  # hung up in a menu before anyone was rung
    UNKNOWN = "unknown"  # the call ended while we could not see it (expired, gap)


@dataclass(frozen=True, slots=True)
class Call:
    """One finished call, as reconstructed from PBX events.

    ``id`` is the PBX's own call identity (Asterisk Linkedid, FreeSWITCH a-leg
    UUID). ``caller`` is E.164 when the number allows it, else what the PBX
    said (``caller_raw`` always keeps that). For inbound calls ``did`` is the
    business number that was dialled; for internal/outbound calls it is the
    number the office phone dialled.
    """

    id: str
    pbx: str
    direction: Direction
    outcome: Outcome
    caller: str
    caller_raw: str
    caller_name: str
    did: str
    started: datetime
    ended: datetime
    answered_at: datetime | None = None
    ring_seconds: float = 0.0
    voicemail_left: bool = False
    voicemail_box: str | None = None
    answered_by: str | None = None
    queue: str | None = None
    channel: str | None = None
    notes: tuple[str, ...] = field(default=())
    carrier_name: str | None = None  # issue 14: what the PBX/carrier said when a contact's name replaced it

    @property
    def missed(self) -> bool:
        """An inbound call that no human answered."""
        return self.direction is Direction.INBOUND and self.outcome is not Outcome.ANSWERED

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.ended - self.started).total_seconds())

    def to_json(self) -> dict[str, Any]:
        """The ``replay`` / store representation (ISO 8601 times)."""
        return {
            "id": self.id,
            "pbx": self.pbx,
            "direction": str(self.direction),
            "caller": self.caller,
            "caller_raw": self.caller_raw,
            "caller_name": self.caller_name,
            "carrier_name": self.caller_name if self.carrier_name is None else self.carrier_name,
            "did": self.did,
            "outcome": str(self.outcome),
            "missed": self.missed,
            "voicemail_left": self.voicemail_left,
            "voicemail_box": self.voicemail_box,
            "answered_by": self.answered_by,
            "queue": self.queue,
            "channel": self.channel,
            "started": iso(self.started),
            "answered_at": iso(self.answered_at) if self.answered_at else None,
            "ended": iso(self.ended),
            "ring_seconds": round(self.ring_seconds, 3),
        }

    def replace(self, **changes: Any) -> Call:
        return dataclasses.replace(self, **changes)


class TextKind(enum.StrEnum):
    """Why a text exists (``messages.kind``)."""

    TEXTBACK = "textback"  # the policy's answer to a missed call
    FOLLOWUP = "followup"  # a planned later touch after a text-back
    CONFIRM = "confirm"  # the one answer to STOP / START
    HELP = "help"  # the answer to HELP
    STAFF = "staff"  # written by a person (reply command, mail, front desk, API)


class MessageState(enum.StrEnum):
    """States of an outgoing text in the outbox.

    scheduled → sending → sent → delivered | failed; scheduled → cancelled;
    skipped (the policy decided not to text, with a reason); unknown (the
    process died while a send was under way and the sender cannot confirm);
    expired (not sent within max_age).
    """

    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


#: the outbox's work in progress (not history: retention keeps it)
OPEN_STATES = (MessageState.SCHEDULED, MessageState.SENDING)
#: a text that (may have) left: it counts as sent for dedupe, follow-ups and figures
SENT_STATES = (MessageState.SENT, MessageState.DELIVERED)
GONE_STATES = (MessageState.SENT, MessageState.DELIVERED, MessageState.UNKNOWN)
#: a decision that was never a text
NOT_COUNTED_STATES = (MessageState.SKIPPED, MessageState.CANCELLED)


class AuditAction(enum.StrEnum):
    """What a person (or a program with a token) did, as the audit table records it."""

    TEXT_SENT = "text_sent"  # a staff text queued
    CLAIM = "claim"
    HANDLED = "handled"
    BLOCK = "block"  # an opt-out set by staff
    UNBLOCK = "unblock"
    RESEND = "resend"  # an unknown text sent again on purpose
    EXPORT = "export"  # figures or data downloaded
    FORGET = "forget"  # an erasure request carried out
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    USER_CHANGED = "user_changed"
    TOKEN_CHANGED = "token_changed"


class EmailState(enum.StrEnum):
    """States of a staff e-mail in its queue (``emails.state``)."""

    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a sender reports for one accepted text."""

    sender: str
    segments: int
    references: tuple[str, ...]  # provider message ids, or modem TP-MR per part
    encoding: str = "gsm7"  # "gsm7" | "ucs2" | "unknown"


@dataclass(frozen=True, slots=True)
class IncomingText:
    """A text received from a phone (reply, STOP...)."""

    sender: str  # the configured sender that received it
    from_number: str  # E.164 when possible
    text: str
    received_at: datetime
    to_number: str | None = None
    provider_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery status for a text we sent, by the reference the sender gave."""

    sender: str
    reference: str
    delivered: bool
    final: bool
    at: datetime
    detail: str = ""
    recipient: str = ""  # the number the report is about, when the sender says (a modem's status report does)


# --------------------------------------------------------------------------------------
# what the store holds (times are UTC seconds since the epoch)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A stored call (``calls`` row); ``id`` is ``"<pbx>:<pbx call id>"``."""

    id: str
    pbx: str
    direction: str
    outcome: str
    missed: bool
    caller: str
    caller_raw: str
    caller_name: str
    did: str
    started: float
    answered_at: float | None
    ended: float
    ring_seconds: float
    voicemail_left: bool
    voicemail_box: str | None
    answered_by: str | None
    queue: str | None
    channel: str | None
    recorded_at: float
    carrier_name: str | None = None  # the caller ID name as the PBX gave it (``caller_name``: a contact's wins)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_public(self) -> dict[str, Any]:
        """The API's and webhooks' form: the store's fields, times in ISO 8601 UTC (as ``replay``)."""
        d = dataclasses.asdict(self)
        if d["carrier_name"] is None:
            d["carrier_name"] = d["caller_name"]
        return _iso_fields(d, ("started", "answered_at", "ended", "recorded_at"))


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A stored text or decision (``messages`` row)."""

    id: int
    call_id: str | None
    kind: str
    to_number: str
    text: str
    template: str
    line_did: str
    state: MessageState
    reason: str
    sender_pref: str
    sender: str
    segments: int
    encoding: str
    refs: tuple[str, ...]
    attempts: int
    created: float
    send_at: float
    updated: float
    sent_at: float | None
    delivered_at: float | None
    expires_at: float | None
    seq: int

    def to_public(self) -> dict[str, Any]:
        """The API's and webhooks' form: the store's fields, times in ISO 8601 UTC."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["state"], d["refs"] = str(self.state), list(self.refs)
        return _iso_fields(d, ("created", "send_at", "updated", "sent_at", "delivered_at", "expires_at"))


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """One state change of a text, or a mark within ``sending`` (a part handed over, accepted,
    refused: ``store/outbox.py``) (``message_events`` row)."""

    at: float
    state: str
    detail: str


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """A stored text from a phone (``incoming`` row)."""

    id: int
    sender: str
    from_number: str
    to_number: str | None
    text: str
    received_at: float
    provider_id: str | None
    call_id: str | None
    keyword: str

    def to_public(self) -> dict[str, Any]:
        """The API's and webhooks' form: the store's fields, times in ISO 8601 UTC."""
        return _iso_fields(dataclasses.asdict(self), ("received_at",))


@dataclass(frozen=True, slots=True)
class EmailRow:
    """A staff e-mail in the queue (``emails`` row); ``headers`` keys starting with ``_`` are bookkeeping."""

    id: int
    kind: str
    to_addrs: tuple[str, ...]
    subject: str
    body: str
    headers: dict[str, str]
    state: EmailState
    attempts: int
    created: float
    next_try: float
    sent_at: float | None
    last_error: str


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One staff action (``audit`` row)."""

    id: int
    at: float
    actor: str
    action: str
    number: str | None
    message_id: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class ConversationState:
    """Who owns a conversation and whether it was marked handled (``conversations`` row)."""

    number: str
    claimed_by: str | None = None
    claimed_at: float | None = None
    handled_by: str | None = None
    handled_at: float | None = None
    # kept by the store's triggers (issue 12): replies since the office last answered or marked it handled
    unread: int = 0
    waiting_since: float | None = None  # the first of those replies (None: nothing waits for a person)
    last_in_at: float | None = None  # the customer's latest reply (STOP excepted)

    def to_public(self) -> dict[str, Any]:
        """The API's and webhooks' form (schema ``ConversationState``), times in ISO 8601 UTC. The inbox
        counters the front desk's triggers keep are not part of it."""
        d = {k: getattr(self, k) for k in ("number", "claimed_by", "claimed_at", "handled_by", "handled_at")}
        return _iso_fields(d, ("claimed_at", "handled_at"))


# --------------------------------------------------------------------------------------
# the parts of a text as its sender took them (issue 18: crash safety; issue 13: multipart resume)


class PartState(enum.StrEnum):
    """Where one part of a text stands with its sender (``message_parts.state``).

    A part is recorded ``handed_over`` on disk *before* the byte that is the point of no
    return leaves (the PDU and Ctrl-Z for a modem, the request for a gateway); the sender's
    answer makes it ``accepted`` (with its TP-MR or provider id) or ``refused`` (a ``+CMS
    ERROR``, a 5xx: it did not go out and may be sent again). A part still ``handed_over``
    when its send ended without an answer (a crash, the device gone) is *in doubt*.
    """

    HANDED_OVER = "handed_over"
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class SendProgress:
    """What earlier attempts left of the current copy of a text: a resumed send goes out
    through ``sender`` with the same ``concat_ref`` and numbering, and never sends a part in
    ``accepted`` or ``in_doubt`` again."""

    sender: str
    total: int
    concat_ref: int | None
    accepted: tuple[tuple[int, str], ...] = ()  # (part, ref), part order
    in_doubt: tuple[int, ...] = ()  # handed over, no answer: may be on the phone

    @property
    def out(self) -> frozenset[int]:
        """Parts never to send again in this copy."""
        return frozenset(p for p, _ in self.accepted) | frozenset(self.in_doubt)

    @property
    def missing(self) -> tuple[int, ...]:
        """Parts never handed over (or refused), in order."""
        return tuple(p for p in range(1, self.total + 1) if p not in self.out)

    def describe(self) -> str:
        """``"1 of 3 parts went out"`` (plus the parts in doubt), for reasons and staff mail."""
        words = f"{len(self.accepted)} of {self.total} part{'s' if self.total != 1 else ''} went out"
        if self.in_doubt:
            words += f", part {', '.join(map(str, self.in_doubt))} may have"
        return words


# --------------------------------------------------------------------------------------
# what the policy and the follow-up rules know about a number (read from the store, passed in)


@dataclass(frozen=True, slots=True)
class History:
    """What the store knows about one destination number (E.164), at ``now``.

    Every field has a "nothing known" default, so ``History()`` is a number
    never seen. "Text-back" means a row the policy created (not STOP/HELP
    answers or staff replies). For ``recheck`` the store leaves the pending
    row itself out of every field.
    """

    opted_out: bool = False
    """The number sent STOP (or was opted out by staff) and has not sent START since."""

    pending_textback: bool = False
    """A text-back to this number is ``scheduled`` or ``sending`` (not yet sent). Blocks any second one,
    whatever ``dedupe_hours`` says: two missed calls within the grace get one text."""

    last_textback_at: datetime | None = None
    """When the latest text-back to this number went out (``sent``, ``delivered`` or ``unknown``:
    its sent time, else its send time). Cancelled, failed, skipped and expired rows do not count."""

    last_inbound_text_at: datetime | None = None
    """When this number last texted us (any text, STOP excepted)."""

    last_answered_contact_at: datetime | None = None
    """When the latest answered call with this number was answered: the number called in and a human
    answered, or the office called it and it picked up."""

    answered_call_active: bool = False
    """A call with this number is up right now and a person answered it (known to the tracker before
    the call ends and reaches the store). Counts as an answered callback."""

    texts_to_number_24h: int = 0
    """Text-backs to this number created in the 24 hours before ``now``, in any state but
    ``skipped`` and ``cancelled``."""

    texts_to_prefix_1h: int = 0
    """The same, to any number sharing all but the last 4 digits (``to LIKE prefix || '____'``,
    prefix = ``policy.number_prefix(e164)``), created in the hour before ``now``."""

    texts_global_1h: int = 0
    """The same, to any number, created in the hour before ``now``."""

    automated_sender: bool = False
    """The store knows this number as an automated sender (an answer to our text came back within
    seconds, it is a gateway/short-code sender that texted us, or staff marked it). Our own lines and
    sender numbers are recognised by the policy itself from the config."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What happened with a number after a missed call (None: never)."""

    opted_out: bool = False
    last_reply_at: datetime | None = None  # the number texted us (STOP excepted)
    last_call_from_at: datetime | None = None  # the number called in again (answered or not)
    last_office_contact_at: datetime | None = None  # the office called it and it answered
    last_staff_text_at: datetime | None = None  # staff texted it (reply command or mail)


# --------------------------------------------------------------------------------------
# the front desk (issue 12): accounts, sessions and what its pages show (read by store/pages.py)


class Role(enum.StrEnum):
    """What a front-desk account may see: each role has the pages of the one before it."""

    FRONTDESK = "frontdesk"  # inbox, conversations, missed calls
    OWNER = "owner"  # + figures
    ADMIN = "admin"  # + status and users

    @property
    def rank(self) -> int:
        return (Role.FRONTDESK, Role.OWNER, Role.ADMIN).index(self)

    def may(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class User:
    """A front-desk account (``users`` row). The password hash never leaves the store but to be verified."""

    id: int
    name: str
    role: Role
    disabled: bool
    created_at: float
    changed_at: float
    failed_count: int = 0
    locked_until: float | None = None
    last_login_at: float | None = None
    password_hash: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in browser (``web_sessions`` row); ``id`` is the SHA-256 of the cookie, never the cookie."""

    id: str
    user: User
    csrf: str
    created_at: float
    last_seen: float
    address: str


@dataclass(frozen=True, slots=True)
class CallFilter:
    """What the Missed calls page asks for. ``number`` is E.164 (exact) or a run of digits (contained)."""

    line: str | None = None
    since: float | None = None
    until: float | None = None
    attention: str | None = None  # "needs" | "handled" | None
    number: str | None = None
    all_calls: bool = False  # every call, answered and office calls included


@dataclass(frozen=True, slots=True)
class CallListRow:
    """One row of the Missed calls page: the call, its decision and what followed."""

    call: CallRecord
    textback: MessageRow | None  # the text-back, or the skip with its reason (None: not decided)
    replied_at: float | None  # the caller texted back after the call (STOP excepted)
    called_back_at: float | None  # the office called the number and it answered
    answered_again_at: float | None  # the caller called again and a person answered
    handled: bool  # the conversation was marked handled after this call


@dataclass(frozen=True, slots=True)
class InboxRow:
    """A conversation waiting for a person: its unread replies and who has it."""

    number: str
    caller_name: str
    unread: int
    waiting_since: float
    last_in_at: float | None
    last_text: str
    claimed_by: str | None


@dataclass(frozen=True, slots=True)
class ThreadItem:
    """One entry of a conversation, in time order: ``kind`` is call | text | reply | action."""

    at: float
    kind: str
    call: CallRecord | None = None
    text: MessageRow | None = None
    reply: IncomingRecord | None = None
    action: AuditRow | None = None
    sent_by: str | None = None  # a staff text: who queued it (from the audit trail)


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What the Status page says about the store's queues and the file itself."""

    outbox_depth: int
    oldest_due_at: float | None
    emails_queued: int
    oldest_email_at: float | None
    emails_failed: int
    size_bytes: int
    schema_version: int
    calls: int


# issue 14: contacts, events for webhooks, API tokens


@dataclass(frozen=True, slots=True)
class Contact:
    """Someone in the office's address book (``contacts/``), found by one of their numbers."""

    name: str  # as the office wrote it: "José Núñez", "Acme Plumbing Supply"
    first_name: str  # what a template's {first_name} says ("" when the book has none)
    numbers: tuple[str, ...]  # E.164 where the number could be read
    tags: tuple[str, ...] = ()  # lower case: "vendor", "staff"
    source: str = ""  # "contacts.csv:12": where the row is

    def to_public(self) -> dict[str, Any]:
        return {"name": self.name, "first_name": self.first_name, "numbers": list(self.numbers),
                "tags": list(self.tags), "source": self.source}


class EventType(enum.StrEnum):
    """What a webhook can tell (``events.type``); the payload schema of each is versioned in ``webhooks/``."""

    CALL_MISSED = "call.missed"
    CALL_ANSWERED = "call.answered"
    TEXT_SCHEDULED = "text.scheduled"
    TEXT_SENT = "text.sent"
    TEXT_DELIVERED = "text.delivered"
    TEXT_FAILED = "text.failed"
    REPLY_RECEIVED = "reply.received"
    OPTOUT_CHANGED = "optout.changed"
    CONVERSATION_HANDLED = "conversation.handled"


class DeliveryState(enum.StrEnum):
    """States of one event's delivery to one webhook endpoint (``webhook_deliveries.state``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # a permanent answer, the retry horizon passed, or the endpoint was disabled


@dataclass(frozen=True, slots=True)
class EventRow:
    """A stored event (``events`` row): ``uid`` is the ``webhook-id`` on every retry and endpoint."""

    id: int
    uid: str
    type: str
    at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One event on its way to one endpoint (``webhook_deliveries`` row joined with its event)."""

    id: int
    endpoint: str
    event: EventRow
    state: DeliveryState
    attempts: int
    created: float
    next_try: float
    delivered_at: float | None
    last_status: int | None
    last_error: str


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    """What ``textbackd webhooks list`` and ``/metrics`` show of one endpoint's queue."""

    name: str
    active: bool  # still in the config
    disabled_at: float | None
    disabled_reason: str
    pending: int  # deliveries waiting
    due: int  # of those, due now
    failing: bool  # the head of the queue has failed at least once
    delivered: int
    failed: int
    last_error: str
    last_delivered_at: float | None


class TokenScope(enum.StrEnum):
    READ = "read"  # GET only
    WRITE = "write"  # GET, and the POSTs (staff texts, handled)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token as stored: its SHA-256, never the token itself."""

    name: str
    scope: TokenScope
    created: float
    created_by: str
    last_used: float | None
    revoked_at: float | None


def _iso_fields(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for k in keys:
        if d.get(k) is not None:
            d[k] = iso(utc_from_epoch(d[k]))
    return d


__all__ = [n for n in dir() if not n.startswith('_')] + ["iso", "utc_from_epoch"]
