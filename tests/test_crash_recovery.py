"""The two marks (claimed, handed over) and what each leaves after a crash, a temporary error or a report
(issue 18, issue 13.1): the store's recovery on every combination of part states, and the outbox driving the
real ``ModemSender`` against the simulator on a pty. The SIGKILL tests of a real ``textbackd run`` are in
``test_kill_steps.py``."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest
from test_modem_sender import started

from textbackd.core.errors import TextbackError
from textbackd.core.model import DeliveryReport, MessageState, PartState
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.outbox import Outbox
from textbackd.staff.actions import resend
from textbackd.store import outbox as outbox_q
from textbackd.store.db import Store
from textbackd.store.schema import MIGRATIONS

TO = "+12125550140"
LONG = ("Hi, this is Apex Plumbing. Sorry we missed your call; reply here or book online any time. " * 5)[:400]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


def claimed(store: Store, text: str = "hi", to: str = TO) -> int:
    mid = store.add_message(to=to, kind="textback", state=MessageState.SCHEDULED, now=1.0, text=text)
    assert store.transition(mid, MessageState.SENDING, now=2.0, expect=MessageState.SCHEDULED, attempts=1)
    return mid


def states(store: Store, mid: int) -> list[tuple[int, PartState]]:
    return [(p.part, p.state) for p in outbox_q.parts(store, mid)]


def test_claimed_but_never_handed_over_is_sent_again_after_a_crash(store):
    """A text claimed (`sending`) with no part handed over goes back to `scheduled`, due at once: nothing can have left."""
    mid = claimed(store)
    rec = outbox_q.recover_interrupted(store, now=10.0)
    m = store.message(mid)
    assert [r.id for r in rec.resumed] == [mid] and not rec.unknown
    assert (m.state, m.send_at) == (MessageState.SCHEDULED, 10.0)
    assert store.message_events(mid)[-1].detail == "interrupted before it was handed over: sending it again"


def test_handed_over_without_an_answer_is_unknown_after_a_crash(store):
    """A one-part text handed over and never answered is `unknown` after a crash, and is not due again."""
    mid = claimed(store)
    outbox_q.hand_over(store, mid, part=1, total=1, sender="modem1", now=3.0)
    rec = outbox_q.recover_interrupted(store, now=10.0)
    assert [r.id for r in rec.unknown] == [mid]
    assert store.message(mid).state is MessageState.UNKNOWN
    assert "may or may not have gone out" in store.message(mid).reason
    assert store.due_messages(now=100.0) == []


def test_every_part_accepted_before_the_crash_is_sent(store):
    """A text whose every part got its +CMGS before the crash (but not its `sent` mark) is `sent`, with the references."""
    mid = claimed(store, LONG)
    for part, mr in ((1, "7"), (2, "8")):
        outbox_q.hand_over(store, mid, part=part, total=2, sender="modem1", now=3.0, concat_ref=42)
        outbox_q.accept(store, mid, part=part, ref=mr, sender="modem1", now=3.1)
    rec = outbox_q.recover_interrupted(store, now=10.0)
    m = store.message(mid)
    assert [r.id for r in rec.sent] == [mid]
    assert (m.state, m.refs, m.sender) == (MessageState.SENT, ("7", "8"), "modem1")


def test_a_multipart_text_stopped_between_parts_resumes_with_its_reference(store):
    """Part 1 of 3 accepted, part 2 never handed over: scheduled again, and the progress keeps the reference and part 1."""
    mid = claimed(store, LONG)
    outbox_q.hand_over(store, mid, part=1, total=3, sender="modem1", now=3.0, concat_ref=42)
    outbox_q.accept(store, mid, part=1, ref="7", sender="modem1", now=3.1)
    rec = outbox_q.recover_interrupted(store, now=10.0)
    assert [r.id for r in rec.resumed] == [mid]
    prog = outbox_q.progress(store, mid)
    assert (prog.sender, prog.total, prog.concat_ref, prog.accepted, prog.missing) == ("modem1", 3, 42, ((1, "7"),), (2, 3))


def test_a_part_in_doubt_still_lets_the_parts_never_handed_over_go(store):
    """Part 2 of 3 in doubt after a crash: part 3 (never handed over, so never a duplicate) is still to be sent."""
    mid = claimed(store, LONG)
    outbox_q.hand_over(store, mid, part=1, total=3, sender="modem1", now=3.0, concat_ref=42)
    outbox_q.accept(store, mid, part=1, ref="7", sender="modem1", now=3.1)
    outbox_q.hand_over(store, mid, part=2, total=3, sender="modem1", now=3.2, concat_ref=42, expected_ref="8")
    outbox_q.recover_interrupted(store, now=10.0)
    prog = outbox_q.progress(store, mid)
    assert store.message(mid).state is MessageState.SCHEDULED
    assert (prog.in_doubt, prog.missing) == ((2,), (3,))


def test_the_migration_keeps_a_text_an_older_version_left_sending_in_doubt(tmp_path):
    """A database from before the parts table, with a text left `sending`: after the upgrade it is unknown, not resent."""
    path = tmp_path / "old.db"
    import sqlite3

    con = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        con.executescript(script)
    con.execute("PRAGMA user_version = 3")
    con.execute("""INSERT INTO messages (id, kind, to_number, text, state, sender, created, send_at, updated)
                   VALUES (5, 'textback', ?, 'hi', 'sending', 'modem1', 1, 1, 2)""", (TO,))
    con.commit()
    con.close()
    store = Store(path)
    try:
        outbox_q.recover_interrupted(store, now=10.0)
        assert store.message(5).state is MessageState.UNKNOWN
    finally:
        store.close()


async def test_outbox_resumes_a_text_whose_part_2_failed_through_the_same_modem(store, sim, tmp_path):
    """Part 2 refused past the modem's own retries: the outbox retries later through the same modem (not the
    healthy second one), and the phone gets parts 1, 2, 3 once each with one reference."""
    from textbackd.senders.modem.simulator import ModemSimulator

    other = ModemSimulator(link=str(tmp_path / "modem9"))
    await other.start()
    m1 = await started(sim)
    m2 = await started(other)
    m2.name = "modem2"
    try:
        sim.fail_part(2, 42, times=3)
        mid = store.add_message(to=TO, kind="textback", state=MessageState.SCHEDULED, now=1.0, text=LONG)
        box = Outbox(store, [m1, m2], retry_base=0.05)
        await box.process_due()
        assert store.message(mid).state is MessageState.SCHEDULED and [t.part for t in sim.taken] == [1]
        await asyncio.sleep(0.1)
        box.clock = lambda: 10**10  # due again
        await box.process_due()
        assert store.message(mid).state is MessageState.SENT and other.taken == []
        assert [t.part for t in sim.taken] == [1, 2, 3] and len({t.concat_ref for t in sim.taken}) == 1
        assert [p.state for p in outbox_q.parts(store, mid)] == [PartState.ACCEPTED] * 3
    finally:
        await m1.close()
        await m2.close()
        await other.stop()


async def test_outbox_fails_a_text_whose_later_part_is_refused_for_good_naming_what_went_out(store, sim):
    """A permanent +CMS ERROR on part 3: the text is failed at once, its reason saying 2 of 3 parts went out."""
    m1 = await started(sim)
    try:
        sim.fail_part(3, 96)
        mid = store.add_message(to=TO, kind="textback", state=MessageState.SCHEDULED, now=1.0, text=LONG)
        await Outbox(store, [m1]).process_due()
        m = store.message(mid)
        assert m.state is MessageState.FAILED and "2 of 3 parts went out" in m.reason and "CMS ERROR: 96" in m.reason
    finally:
        await m1.close()


def report(ref: str, recipient: str = "", delivered: bool = True) -> DeliveryReport:
    return DeliveryReport("modem1", ref, delivered, True, datetime(2026, 1, 1, tzinfo=timezone.utc), "delivered",
                          recipient=recipient)


def conversations(store: Store) -> Conversations:
    from textbackd.config import parse

    c = Conversations(store, parse({"business": {"name": "Apex"}}, env={}))
    c.dlr_wait_steps = 0
    return c


async def test_a_report_for_the_part_in_doubt_settles_an_unknown_text(store):
    """An unknown one-part text: the network's report for the TP-MR it was expected to get, to its recipient, makes it delivered."""
    mid = claimed(store)
    outbox_q.hand_over(store, mid, part=1, total=1, sender="modem1", now=3.0, expected_ref="19")
    outbox_q.recover_interrupted(store, now=10.0)
    await conversations(store).delivery_report(report("19", recipient="+12125550199"))  # someone else's
    assert store.message(mid).state is MessageState.UNKNOWN
    await conversations(store).delivery_report(report("19", recipient=TO))
    assert store.message(mid).state is MessageState.DELIVERED
    assert states(store, mid) == [(1, PartState.ACCEPTED)]


async def test_a_multipart_text_is_delivered_when_every_part_is(store):
    """Reports for parts 1 and 2 of 3 leave it sent; the third (a part that was in doubt, found by recipient) delivers it."""
    mid = claimed(store, LONG)
    for part in (1, 2):
        outbox_q.hand_over(store, mid, part=part, total=3, sender="modem1", now=3.0, concat_ref=9)
        outbox_q.accept(store, mid, part=part, ref=str(part), sender="modem1", now=3.1)
    outbox_q.hand_over(store, mid, part=3, total=3, sender="modem1", now=3.2, concat_ref=9)  # no expected TP-MR
    outbox_q.recover_interrupted(store, now=10.0)
    assert store.message(mid).state is MessageState.UNKNOWN
    conv = conversations(store)
    await conv.delivery_report(report("1", TO))
    await conv.delivery_report(report("2", TO))
    assert store.message(mid).state is MessageState.UNKNOWN
    await conv.delivery_report(report("3", TO))
    assert store.message(mid).state is MessageState.DELIVERED


def test_staff_resend_of_an_unknown_text_starts_a_fresh_copy_and_says_so(store):
    """`resend` puts an unknown text back in the outbox with a fresh start, its earlier parts kept as history."""
    from textbackd.config import parse

    cfg = parse({"business": {"name": "Apex"}}, env={})
    mid = claimed(store, LONG)
    outbox_q.hand_over(store, mid, part=1, total=3, sender="modem1", now=3.0, concat_ref=9)
    outbox_q.recover_interrupted(store, now=4.0)  # part 1 in doubt, 2 and 3 to go...
    store.transition(mid, MessageState.SENDING, now=5.0, expect=MessageState.SCHEDULED)
    store.transition(mid, MessageState.UNKNOWN, now=6.0, expect=MessageState.SENDING, detail="in doubt")
    with pytest.raises(TextbackError, match="only a text whose outcome is unknown, or that failed"):
        resend(store, cfg, claimed(store, "other"), now=7.0, source="cli")
    m = resend(store, cfg, mid, now=7.0, source="cli")
    assert (m.state, m.send_at, m.attempts) == (MessageState.SCHEDULED, 7.0, 0)
    assert outbox_q.progress(store, mid) is None  # the next send starts afresh (a new reference)
    assert [p.copy for p in outbox_q.parts(store, mid, copy=None)] == [1]
    assert "the caller may get a second copy" in store.message_events(mid)[-1].detail
    store.set_opt_out(TO, True, now=8.0, source="sms")
    store.transition(mid, MessageState.SENDING, now=9.0, expect=MessageState.SCHEDULED)
    store.transition(mid, MessageState.UNKNOWN, now=9.5, expect=MessageState.SENDING)
    with pytest.raises(TextbackError, match="opted out"):
        resend(store, cfg, mid, now=10.0, source="cli")
