from datetime import datetime, timedelta, timezone

import pytest

from textbackd import config
from textbackd.core.model import Call, DeliveryReport, Direction, IncomingText, MessageState, Outcome
from textbackd.daemon.conversations import Conversations, keyword
from textbackd.daemon.pipeline import Pipeline
from textbackd.store.db import Store

# Tuesday 2026-11-24 15:00 in New York: open
T0 = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)

CFG = config.parse(
    {
        "business": {
            "name": "Apex Plumbing",
            "timezone": "America/New_York",
            "booking_link": "https://apex.example/book",
            "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
        },
        "policy": {"grace_seconds": 30},
    },
    env={},
)


def call(cid, caller="+12125550101", outcome=Outcome.NO_ANSWER, at=T0, direction=Direction.INBOUND):
    return Call(
        id=cid, pbx="asterisk", direction=direction, outcome=outcome, caller=caller, caller_raw=caller,
        caller_name="", did="2125550100", started=at - timedelta(seconds=20), ended=at, ring_seconds=20,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "p.db")
    yield s
    s.close()


def test_missed_call_schedules_one_text_after_grace(store):
    """A missed inbound call becomes one scheduled text due after the grace delay."""
    p = Pipeline(store, CFG)
    out = p.handle_call(call("1.1"), T0.timestamp())
    m = store.message(out.message_id)
    assert m.state is MessageState.SCHEDULED and m.to_number == "+12125550101"
    assert m.send_at == pytest.approx(T0.timestamp() + 30)
    assert "Apex Plumbing" in m.text


def test_second_miss_within_grace_gets_no_second_text(store):
    """Two missed calls from one number within the grace give one text and one 'duplicate' skip."""
    p = Pipeline(store, CFG)
    p.handle_call(call("1.1"), T0.timestamp())
    out2 = p.handle_call(call("1.2", at=T0 + timedelta(seconds=10)), T0.timestamp() + 10)
    assert store.message(out2.message_id).state is MessageState.SKIPPED
    assert store.message(out2.message_id).reason == "duplicate"


def test_answered_callback_cancels_pending_text(store):
    """A call-back answered within the grace makes the recheck cancel the text."""
    p = Pipeline(store, CFG)
    mid = p.handle_call(call("1.1"), T0.timestamp()).message_id
    p.handle_call(call("1.3", outcome=Outcome.ANSWERED, at=T0 + timedelta(seconds=15)), T0.timestamp() + 15)
    assert p.recheck(store.message(mid), T0.timestamp() + 31) == "answered_callback"


def test_same_call_twice_is_handled_once(store):
    """A call seen again (resync after reconnect) is not decided twice."""
    p = Pipeline(store, CFG)
    assert p.handle_call(call("1.1"), T0.timestamp()).new
    assert not p.handle_call(call("1.1"), T0.timestamp()).new
    assert store.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1


@pytest.mark.parametrize(
    "text, kw",
    [("STOP", "stop"), (" stop ", "stop"), ("Stop.", "stop"), ("UNSUBSCRIBE", "unsubscribe"), ("start", "start"),
     ("Help", "help"), ("stop calling me please", "")],
)
def test_keywords(text, kw):
    """Carrier keywords match the whole message, case- and space-insensitively."""
    expected = {"unsubscribe": "stop"}.get(kw, kw)
    assert keyword(text) == expected


async def test_stop_opts_out_confirms_once_and_cancels_pending(store):
    """STOP records the opt-out, cancels the pending text, and is confirmed once; a second STOP is silent."""
    p = Pipeline(store, CFG)
    mid = p.handle_call(call("1.1"), T0.timestamp()).message_id
    conv = Conversations(store, CFG, clock=lambda: T0.timestamp() + 5)
    msg = IncomingText(sender="modem1", from_number="2125550101", text="STOP", received_at=T0)
    await conv.incoming(msg)
    await conv.incoming(IncomingText(sender="modem1", from_number="+12125550101", text="stop", received_at=T0))
    assert store.is_opted_out("+12125550101")
    assert store.message(mid).state is MessageState.CANCELLED
    confirms = store.messages(number="+12125550101", states=("scheduled",))
    assert [m.kind for m in confirms] == ["confirm"]
    # a later missed call is not texted
    later = p.handle_call(call("1.9", at=T0 + timedelta(days=3)), T0.timestamp() + 3 * 86400)
    assert store.message(later.message_id).reason == "opted_out"


async def test_delivery_report_marks_text_delivered(store):
    """A delivery report naming a sent text's reference moves it to delivered."""
    mid = store.add_message(to="+12125550101", kind="textback", state=MessageState.SCHEDULED, now=1.0)
    store.transition(mid, MessageState.SENDING, now=2.0)
    store.transition(mid, MessageState.SENT, now=3.0, sender="modem1", refs=["42"])
    conv = Conversations(store, CFG, clock=lambda: 10.0)
    await conv.delivery_report(DeliveryReport(sender="modem1", reference="42", delivered=True, final=True, at=T0))
    assert store.message(mid).state is MessageState.DELIVERED


async def test_delivery_report_that_overtakes_the_sent_mark_is_applied(store):
    """A delivery report arriving while the outbox has not yet recorded `sent` is applied once it has."""
    import asyncio

    mid = store.add_message(to="+12125550101", kind="textback", state=MessageState.SCHEDULED, now=1.0)
    store.transition(mid, MessageState.SENDING, now=2.0)
    conv = Conversations(store, CFG, clock=lambda: 10.0)
    report = asyncio.create_task(
        conv.delivery_report(DeliveryReport(sender="kannel", reference="k-9", delivered=True, final=True, at=T0))
    )
    await asyncio.sleep(0.15)
    store.transition(mid, MessageState.SENT, now=3.0, sender="kannel", refs=["k-9"])
    await asyncio.wait_for(report, 5)
    assert store.message(mid).state is MessageState.DELIVERED


def test_generic_gateway_headers_do_not_print():
    """Header values of a generic HTTP gateway (often API keys) stay out of repr()."""
    cfg = config.parse(
        {"business": {"name": "X"}, "senders": [{"name": "g", "kind": "http", "url": "http://127.0.0.1:9/x",
         "headers": {"Authorization": "Bearer sekrit-key"}, "body": {"to": "{to}", "text": "{text}"}}]},
        env={},
    )
    assert "sekrit-key" not in repr(cfg)
    assert cfg.senders[0].headers == (("Authorization", "Bearer sekrit-key"),)
