"""Follow-ups: the pure timing and stop rules, then the rows they become in a real store and outbox."""

from datetime import datetime, timedelta, timezone

import pytest

from textbackd import config
from textbackd.core.model import Call, Direction, IncomingText, MessageState, Outcome, SendResult
from textbackd.daemon import followups
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.followups import Facts, Followups, chain_recheck, escalation_due, next_touch, plan, stop_reason
from textbackd.daemon.outbox import Outbox
from textbackd.daemon.pipeline import Pipeline
from textbackd.store.db import Store

NY = "America/New_York"
# Tuesday 2026-11-24 15:00 in New York (20:00 UTC): open
T0 = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)
CALLER = "+12125550123"


def make_cfg(**extra):
    data = {
        "business": {
            "name": "Apex Plumbing",
            "timezone": NY,
            "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")} | {"holidays": ["2026-11-26"]},
        },
        "policy": {"grace_seconds": 30},
        "followups": [
            {"after": "2h", "text": "{business} here again: still need a hand? Just reply."},
            {"after": "next_business_day 09:00", "text": "Last note from {business}: reply any time."},
        ],
    }
    data.update(extra)
    return config.parse(data, env={})


CFG = make_cfg()


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


class RecordingSender:
    """A sender that accepts every text and remembers it (follows the Sender protocol)."""

    name = "rec"
    kind = "scripted"

    def __init__(self):
        self.sent = []

    async def start(self, sink):
        pass

    async def close(self):
        pass

    def healthy(self):
        return True

    async def send(self, to, text):
        self.sent.append((to, text))
        return SendResult(sender=self.name, segments=1, references=(str(len(self.sent)),))


def missed(cid, caller=CALLER, at=T0, direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER, did="2125550100"):
    return Call(
        id=cid, pbx="asterisk", direction=direction, outcome=outcome, caller=caller, caller_raw=caller,
        caller_name="MARIA GARCIA", did=did, started=at - timedelta(seconds=20), ended=at, ring_seconds=20,
        answered_at=at - timedelta(seconds=5) if outcome is Outcome.ANSWERED else None,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "f.db")
    yield s
    s.close()


def local(ts):
    return ts.astimezone(CFG.business.tz)


def test_a_delay_counts_from_the_previous_touch():
    """'2h' after a 15:00 text-back is 17:00 the same day, business time."""
    at = next_touch(T0, "2h", None, CFG)
    assert local(at).strftime("%a %H:%M") == "Tue 17:00"


def test_a_delay_that_lands_in_quiet_hours_waits_for_the_morning():
    """A '2h' follow-up after a 20:30 text-back would land at 22:30 and waits for quiet_end (08:00)."""
    evening = datetime(2026, 11, 25, 1, 30, tzinfo=timezone.utc)  # Tue 20:30 in New York
    assert local(next_touch(evening, "2h", None, CFG)).strftime("%a %H:%M") == "Wed 08:00"


def test_next_business_day_skips_the_weekend_and_holidays():
    """'next_business_day 09:00' from a Wednesday skips the Thanksgiving holiday, and from Friday skips the weekend."""
    wed = datetime(2026, 11, 25, 20, 0, tzinfo=timezone.utc)
    assert local(next_touch(wed, "next_business_day 09:00", None, CFG)).strftime("%Y-%m-%d %H:%M") == "2026-11-27 09:00"
    fri = datetime(2026, 11, 27, 20, 0, tzinfo=timezone.utc)
    assert local(next_touch(fri, "next_business_day 09:00", None, CFG)).strftime("%a %H:%M") == "Mon 09:00"
    # without a time: the day's opening
    assert local(next_touch(fri, "next_business_day", None, CFG)).strftime("%a %H:%M") == "Mon 08:00"


def test_plan_chains_the_touches_and_never_exceeds_three_texts():
    """The plan after a Tuesday 15:00 text-back is Tue 17:00 then Wed 09:00: two follow-ups, three touches in all."""
    touches = plan(T0, None, CFG)
    assert [t.seq for t in touches] == [1, 2]
    assert [local(t.send_at).strftime("%a %H:%M") for t in touches] == ["Tue 17:00", "Wed 09:00"]
    assert len(touches) + 1 <= followups.MAX_TOUCHES


def test_config_refuses_a_third_followup():
    """A third [[followups]] entry (a fourth text) is refused with the key path."""
    with pytest.raises(config.ConfigError, match="followups"):
        make_cfg(followups=[{"after": "1h", "text": "x"}] * 3)


@pytest.mark.parametrize(
    "facts, reason",
    [
        (Facts(), None),
        (Facts(opted_out=True), "opted_out"),
        (Facts(last_reply_at=T0 + timedelta(minutes=5)), "replied"),
        (Facts(last_reply_at=T0 - timedelta(days=2)), None),  # an old conversation does not count
        (Facts(last_call_from_at=T0 + timedelta(hours=1)), "called_back"),
        (Facts(last_office_contact_at=T0 + timedelta(hours=1)), "answered_callback"),
        (Facts(last_staff_text_at=T0 + timedelta(hours=1)), "staff_took_over"),
    ],
)
def test_stop_rule(facts, reason):
    """A reply, a call from the number, an answered call from the office, a staff text or an opt-out stops follow-ups."""
    assert stop_reason(T0, facts) == reason


def test_escalation_waits_for_escalate_after_and_for_silence():
    """Escalation is due only after escalate_after, and only if nobody replied or called back."""
    sent = T0 + timedelta(seconds=30)
    assert not escalation_due(sent, T0, Facts(), 4 * 3600, sent + timedelta(hours=3))
    assert escalation_due(sent, T0, Facts(), 4 * 3600, sent + timedelta(hours=4))
    assert not escalation_due(sent, T0, Facts(last_reply_at=sent + timedelta(hours=1)), 4 * 3600,
                              sent + timedelta(hours=5))
    assert not escalation_due(sent, T0, Facts(), 0, sent + timedelta(days=9))


async def _send_textback(store, clock, cfg=CFG):
    """Missed call → scheduled text-back → sent by a real Outbox; follow-ups scheduled from its observer."""
    pipeline = Pipeline(store, cfg)
    fu = Followups(store, cfg, clock=clock)
    sender = RecordingSender()
    outbox = Outbox(store, [sender], clock=clock, recheck=chain_recheck(pipeline.recheck, fu.recheck),
                    observer=lambda m, st, d: fu.on_text_state(m, st))
    out = pipeline.handle_call(missed("1.1"), clock())
    clock.t += 31
    await outbox.process_due()
    return pipeline, fu, outbox, sender, out.message_id


async def test_followups_are_scheduled_once_the_textback_is_sent_and_go_out_on_time(store):
    """After the text-back is sent two follow-ups are scheduled, and with no reply they go out on their times."""
    clock = Clock(T0.timestamp())
    _, fu, outbox, sender, tb = await _send_textback(store, clock)
    assert store.message(tb).state is MessageState.SENT
    rows = [m for m in store.messages(number=CALLER, limit=10) if m.kind == "followup"]
    assert sorted(m.seq for m in rows) == [1, 2]
    assert all(m.state is MessageState.SCHEDULED for m in rows)
    assert "Apex Plumbing here again" in min(rows, key=lambda m: m.seq).text
    assert fu.schedule(tb) == []  # idempotent: one row per call and seq
    clock.t = T0.timestamp() + 2 * 3600 + 60
    await outbox.process_due()
    assert len(sender.sent) == 2
    clock.t = datetime(2026, 11, 25, 14, 1, tzinfo=timezone.utc).timestamp()  # Wed 09:01 NY
    await outbox.process_due()
    assert [t for _, t in sender.sent][2].startswith("Last note from Apex Plumbing")


async def test_a_reply_cancels_the_followups_at_once(store):
    """A reply received through Conversations cancels the scheduled follow-ups before they are due."""
    clock = Clock(T0.timestamp())
    _, fu, outbox, sender, _ = await _send_textback(store, clock)
    conv = Conversations(store, CFG, clock=clock, on_reply=lambda text, kw, cid: fu.on_reply(text.from_number, kw))
    clock.t += 600
    await conv.incoming(IncomingText(sender="rec", from_number="(212) 555-0123", text="Yes please call me",
                                     received_at=datetime.fromtimestamp(clock.t, tz=timezone.utc)))
    rows = [m for m in store.messages(number=CALLER, limit=10) if m.kind == "followup"]
    assert {(m.state, m.reason) for m in rows} == {(MessageState.CANCELLED, "replied")}
    clock.t += 3 * 86400
    await outbox.process_due()
    assert len(sender.sent) == 1  # only the text-back ever went out


async def test_a_call_from_the_number_cancels_the_followups(store):
    """The caller phoning again (even unanswered) cancels the follow-ups."""
    clock = Clock(T0.timestamp())
    pipeline, fu, _, _, _ = await _send_textback(store, clock)
    again = missed("1.2", at=T0 + timedelta(minutes=40))
    pipeline.handle_call(again, clock.t)
    fu.on_call(again)
    states = {m.reason for m in store.messages(number=CALLER, limit=10) if m.kind == "followup"}
    assert states == {"called_back"}


async def test_the_recheck_stops_a_followup_after_the_office_reached_the_caller(store):
    """An answered call from the office to the number, seen only by the store, makes the recheck cancel the follow-up."""
    clock = Clock(T0.timestamp())
    pipeline, fu, outbox, sender, _ = await _send_textback(store, clock)
    office = missed("1.3", caller="101", did=CALLER, direction=Direction.OUTBOUND, outcome=Outcome.ANSWERED,
                    at=T0 + timedelta(minutes=50))
    pipeline.handle_call(office, clock.t)  # no on_call hook: only the recheck can catch it
    clock.t = T0.timestamp() + 2 * 3600 + 60
    await outbox.process_due()
    assert len(sender.sent) == 1
    first = min((m for m in store.messages(number=CALLER, limit=10) if m.kind == "followup"), key=lambda m: m.seq)
    assert (first.state, first.reason) == (MessageState.CANCELLED, "answered_callback")


async def test_an_opt_out_cancels_the_followups(store):
    """STOP cancels the follow-ups (conversations cancels them as opted_out) and sends only the confirmation."""
    clock = Clock(T0.timestamp())
    _, fu, outbox, sender, _ = await _send_textback(store, clock)
    conv = Conversations(store, CFG, clock=clock)
    await conv.incoming(IncomingText(sender="rec", from_number=CALLER, text="STOP",
                                     received_at=datetime.fromtimestamp(clock.t, tz=timezone.utc)))
    clock.t += 60
    await outbox.process_due()  # the confirmation
    clock.t += 3 * 86400
    await outbox.process_due()  # the follow-ups' times have passed
    assert [t for _, t in sender.sent][1:] == [CFG.messages.opt_out.format(business="Apex Plumbing")]
    assert {m.state for m in store.messages(number=CALLER, limit=10) if m.kind == "followup"} == {
        MessageState.CANCELLED
    }


async def test_sweep_schedules_followups_a_crash_left_out(store):
    """A text-back sent without its follow-ups (crash in between) gets them from the sweep, once."""
    clock = Clock(T0.timestamp())
    pipeline = Pipeline(store, CFG)
    outbox = Outbox(store, [RecordingSender()], clock=clock, recheck=pipeline.recheck)  # no follow-up hook
    pipeline.handle_call(missed("1.1"), clock())
    clock.t += 31
    await outbox.process_due()
    fu = Followups(store, CFG, clock=clock)
    assert fu.sweep() == 2
    assert fu.sweep() == 0


def test_no_followups_after_a_textback_whose_outcome_is_unknown(store):
    """A text-back that may never have arrived (unknown) gets no 'still need a hand?' follow-up."""
    clock = Clock(T0.timestamp())
    out = Pipeline(store, CFG).handle_call(missed("1.1"), clock())
    store.transition(out.message_id, MessageState.SENDING, now=clock.t + 30)
    store.transition(out.message_id, MessageState.UNKNOWN, now=clock.t + 31, detail="interrupted_while_sending")
    fu = Followups(store, CFG, clock=clock)
    assert fu.schedule(out.message_id) == [] and fu.sweep() == 0
