"""The shared vocabulary: calls, their outcomes, texts and their states.

Both PBX trackers produce ``Call`` objects; the policy, the store, the reports
and ``replay`` consume them. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


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


def iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)
