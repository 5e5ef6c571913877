"""Staff actions: a text, a claim, handled, a block; each one audited, and the CLI on the same path."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from textbackd import config as config_mod
from textbackd.core.errors import TextbackError
from textbackd.core.model import AuditAction, Call, Direction, IncomingText, MessageState, Outcome, TextKind
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.pipeline import Pipeline
from textbackd.staff import actions
from textbackd.store import audit
from textbackd.store import conversations as conv_q
from textbackd.store.db import Store
from textbackd.store.retention import export, forget, purge

CALLER = "+12125550161"
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)  # a Tuesday, 10:00 in New York


def cfg(tmp_path):
    return config_mod.parse({
        "business": {"name": "Apex Dental", "timezone": "America/New_York",
                     "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}},
        "store": {"path": str(tmp_path / "t.db")},
        "policy": {"grace_seconds": 0},
    }, env={})


def missed(at: datetime, cid: str = "c1") -> Call:
    return Call(id=cid, pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER, caller=CALLER,
                caller_raw=CALLER, caller_name="MARIA GARCIA", did="+12125550100", started=at - timedelta(seconds=20),
                ended=at, ring_seconds=20)


@pytest.fixture
def world(tmp_path):
    c = cfg(tmp_path)
    store = Store(c.store.path)
    Pipeline(store, c).handle_call(missed(T0), T0.timestamp())
    yield c, store
    store.close()


def test_a_staff_text_is_audited_and_claims_the_conversation(world):
    """The first staff text queues a row, writes an audit row with its actor, and claims the open conversation."""
    c, store = world
    now = T0.timestamp() + 60
    mid = actions.send_text(store, c, "(212) 555-0161", "Hi Maria, 4pm works", now=now, source="web", actor="web:ana")
    m = store.message(mid)
    assert (m.kind, m.state, m.to_number) == (TextKind.STAFF, MessageState.SCHEDULED, CALLER)
    [row] = audit.rows(store, number=CALLER)
    assert (row.actor, row.action, row.message_id) == ("web:ana", AuditAction.TEXT_SENT, mid)
    assert conv_q.state(store, CALLER).claimed_by == "web:ana"
    actions.send_text(store, c, CALLER, "See you then", now=now + 5, source="web", actor="web:ben")
    assert conv_q.state(store, CALLER).claimed_by == "web:ana"  # a second sender does not take it over


def test_handled_closes_until_the_next_reply(world):
    """Marking handled closes the conversation; the next reply from the customer opens it again."""
    c, store = world
    now = T0.timestamp() + 60
    assert actions.needs_person(store, CALLER)
    actions.claim(store, CALLER, actor="web:ana", now=now)
    actions.mark_handled(store, CALLER, actor="web:ana", now=now + 1)
    assert not actions.needs_person(store, CALLER)
    conv = Conversations(store, c, clock=lambda: now + 120)
    import asyncio

    asyncio.run(conv.incoming(IncomingText(sender="modem1", from_number=CALLER, text="one more thing",
                                           received_at=datetime.fromtimestamp(now + 120, tz=timezone.utc))))
    assert actions.needs_person(store, CALLER)
    assert [r.action for r in audit.rows(store, number=CALLER)] == ["handled", "claim"]


def test_block_records_who_and_why_cancels_queued_texts_and_refuses_later_ones(world):
    """Blocking opts the number out with the staff member as source, cancels its queued text-back, is
    audited with the reason, and staff texts to it are refused until it is unblocked."""
    c, store = world
    now = T0.timestamp() + 10
    [tb] = store.messages(number=CALLER)
    assert tb.state is MessageState.SCHEDULED
    with pytest.raises(TextbackError, match="say why"):
        actions.block(store, c, CALLER, actor="web:ana", reason=" ", now=now)
    assert actions.block(store, c, CALLER, actor="web:ana", reason="alarm company line", now=now) == 1
    assert store.message(tb.id).state is MessageState.CANCELLED
    assert store.is_opted_out(CALLER)
    [row] = audit.rows(store, number=CALLER)
    assert (row.action, row.detail) == ("block", "alarm company line")
    with pytest.raises(TextbackError, match="opted out"):
        actions.send_text(store, c, CALLER, "hello", now=now, source="web", actor="web:ana")
    actions.unblock(store, c, CALLER, actor="web:ana", now=now + 1)
    assert not store.is_opted_out(CALLER)


def test_forget_and_retention_treat_the_audit_trail_like_the_rest(world):
    """export carries the staff actions and the claim; forget erases them; retention purges old ones."""
    c, store = world
    now = T0.timestamp() + 60
    actions.send_text(store, c, CALLER, "Hi", now=now, source="cli", actor="cli:ana")
    doc = export(store, CALLER)
    assert [a["action"] for a in doc["staff_actions"]] == ["text_sent"] and doc["conversation"]["claimed_by"] == "cli:ana"
    actions.claim(store, "+12125550162", actor="cli:ana", now=now - 400 * 86400)
    counts = purge(store, now - 365 * 86400, now=now)
    assert counts["audit"] == 1 and counts["conversations"] == 1
    counts = forget(store, CALLER, now=now)
    assert counts["staff_actions"] == 1
    assert audit.rows(store, number=CALLER) == [] and conv_q.state(store, CALLER).claimed_by is None


def test_reply_and_forget_commands_write_the_audit_trail(tmp_path):
    """`textbackd reply` and `textbackd forget` are audited with the shell user; `textbackd audit` lists them."""
    c = cfg(tmp_path)
    store = Store(c.store.path)
    Pipeline(store, c).handle_call(missed(T0), T0.timestamp())
    store.close()
    path = tmp_path / "t.toml"
    path.write_text(f'[business]\nname = "Apex Dental"\n[store]\npath = "{c.store.path}"\n')

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "textbackd", *args, "-c", str(path)],
                              capture_output=True, text=True, timeout=60)

    r = cli("reply", CALLER, "Hi Maria")
    assert r.returncode == 0, r.stderr
    r = cli("audit", "--json")
    [row] = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["action"] == "text_sent" and row["actor"].startswith("cli:") and row["number"] == CALLER
    assert cli("forget", CALLER, "--yes").returncode == 0
    rows = [json.loads(line) for line in cli("audit", "--json").stdout.splitlines()]
    assert [r["action"] for r in rows] == ["forget"]
    assert rows[0]["number"] is None and CALLER not in json.dumps(rows) and "0161" in rows[0]["detail"]
