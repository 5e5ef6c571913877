"""Call → policy → outbox row: the one path shared by ``run``, ``demo`` and ``replay``.

``Pipeline.handle_call`` stores the finished call, asks the pure policy what
to do (with the number's history read from the store) and records the answer
as a ``scheduled`` text or a ``skipped`` row with its reason. ``recheck`` is
what the outbox calls just before a send (grace cancellation, opt-out, max
age). No clock is read here: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textbackd.core.model import Call, Contact, MessageState, TextKind
from textbackd.core.settings import Config
from textbackd.core.timeutil import to_dt
from textbackd.decide import policy
from textbackd.store import history as history_q
from textbackd.store.db import MessageRow, Store, call_key

TEXTBACK = TextKind.TEXTBACK
ContactLookup = Callable[[str], Contact | None]


@dataclass(frozen=True, slots=True)
class Outcome:
    call: Call
    new: bool  # False: the call was already stored (resync, replayed twice)
    decision: policy.Decision | None  # None for calls already handled
    message_id: int | None


def history(store: Store, number: str, now: float, *, exclude: int | None = None) -> policy.History:
    """What the policy needs to know about ``number`` at ``now`` (see ``policy.History``)."""
    return history_q.number_history(store, number, now, policy.number_prefix(number), exclude=exclude)


class Pipeline:
    def __init__(self, store: Store, config: Config, contacts: ContactLookup | None = None) -> None:
        self.store = store
        self.config = config
        self.contacts = contacts  # issue 14: the address book's lookup (E.164 → Contact), replaced on a reload

    def handle_call(self, call: Call, now: float) -> Outcome:
        key = call_key(call)
        to = policy.destination(call, self.config)  # the number decide() would text, or ""
        contact = self.contacts(to) if to and self.contacts is not None else None
        if contact is not None:  # the office's name for the caller wins; the carrier's is kept beside it
            call = call.replace(caller_name=contact.name, carrier_name=call.caller_name)
        if not self.store.record_call(call, now=now) and self._decided(key):
            return Outcome(call, False, None, None)
        # (a call stored without its decision: the store failed or the process died between the two writes)
        hist = history(self.store, to, now) if to else policy.History()
        decision = policy.decide(call, hist, self.config, to_dt(now), contact)
        if isinstance(decision, policy.TextDecision):
            expires = call.ended.timestamp() + self.config.policy.max_age_minutes * 60
            if decision.deferred:
                # deferred to the morning on purpose: max age counts from the release time
                expires = decision.send_at.timestamp() + self.config.policy.max_age_minutes * 60
            mid = self.store.add_message(
                to=decision.to,
                kind=TEXTBACK,
                state=MessageState.SCHEDULED,
                now=now,
                send_at=decision.send_at.timestamp(),
                call_id=key,
                text=decision.text,
                template=decision.template,
                line_did=decision.line_did,
                sender_pref=decision.sender,
                segments=decision.segments,
                encoding=decision.encoding,
                expires_at=expires,
            )
        else:
            mid = self.store.add_message(
                to=to or call.caller_raw or call.caller,
                kind=TEXTBACK,
                state=MessageState.SKIPPED,
                now=now,
                call_id=key,
                reason=decision.reason,
                line_did=call.did,
            )
        return Outcome(call, True, decision, mid)

    def _decided(self, key: str) -> bool:
        return history_q.decided(self.store, key)

    def recheck(self, m: MessageRow, now: float) -> str | None:
        """The outbox's last look before sending a scheduled text-back."""
        if m.kind != TEXTBACK:
            return "opted_out" if self.store.is_opted_out(m.to_number) and m.kind != "confirm" else None
        ended = m.created
        if m.call_id:
            row = self.store.get_call(m.call_id)
            if row is not None:
                ended = row.ended
        pending = policy.Pending(
            to=m.to_number, call_ended=to_dt(ended), send_at=to_dt(m.send_at), created=to_dt(m.created)
        )
        hist = history(self.store, m.to_number, now, exclude=m.id)
        return policy.recheck(pending, hist, self.config, to_dt(now))


def as_action(decision: policy.Decision | None) -> dict:
    """The ``action`` object ``replay`` prints for a call."""
    if decision is None:
        return {"action": "none"}
    if isinstance(decision, policy.TextDecision):
        return {"action": "text", **decision.to_json()}
    return {"action": "skip", **decision.to_json()}


__all__ = ["Pipeline", "history", "as_action"]
