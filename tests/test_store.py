import sqlite3
from datetime import datetime, timezone

import pytest

from textbackd.core.errors import StoreError
from textbackd.core.model import Call, Direction, MessageState, Outcome
from textbackd.store.db import SCHEMA_VERSION, Store, call_key

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)


def make_call(cid="1795394024.2", outcome=Outcome.NO_ANSWER, caller="+12125550102") -> Call:
    return Call(
        id=cid, pbx="asterisk", direction=Direction.INBOUND, outcome=outcome, caller=caller,
        caller_raw=caller, caller_name="Ann Lee", did="5550100", started=T0, ended=T0,
    )


def test_new_database_gets_current_schema(tmp_path):
    """A fresh file is created at the current schema version in WAL mode."""
    s = Store(tmp_path / "t.db")
    assert s.schema_version == SCHEMA_VERSION
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_older_database_is_migrated(tmp_path):
    """A database at schema 0 (an empty file from an older release) is migrated on open."""
    path = tmp_path / "old.db"
    sqlite3.connect(path).execute("CREATE TABLE keep_me (x)").connection.commit()
    s = Store(path)
    assert s.schema_version == SCHEMA_VERSION
    assert s.db.execute("SELECT name FROM sqlite_master WHERE name='keep_me'").fetchone()


def test_newer_database_is_refused(tmp_path):
    """A file written by a newer textbackd is refused with a clear reason."""
    path = tmp_path / "new.db"
    c = sqlite3.connect(path)
    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    c.commit()
    with pytest.raises(StoreError, match="newer textbackd"):
        Store(path)


def test_call_recorded_once(tmp_path):
    """The same call twice (resync, replay) is stored once."""
    s = Store(tmp_path / "t.db")
    assert s.record_call(make_call()) is True
    assert s.record_call(make_call()) is False
    assert s.get_call(call_key(make_call())).caller == "+12125550102"


def test_one_textback_per_call(tmp_path):
    """A call can get only one text-back row, whatever runs twice."""
    s = Store(tmp_path / "t.db")
    s.record_call(make_call())
    key = call_key(make_call())
    a = s.add_message(to="+12125550102", kind="textback", state=MessageState.SCHEDULED, now=1.0, call_id=key)
    b = s.add_message(to="+12125550102", kind="textback", state=MessageState.SCHEDULED, now=2.0, call_id=key)
    assert a is not None and b is None


def test_transitions_are_recorded_and_checked(tmp_path):
    """Every state change is a row in message_events; illegal moves are refused."""
    s = Store(tmp_path / "t.db")
    mid = s.add_message(to="+12125550102", kind="textback", state=MessageState.SCHEDULED, now=1.0)
    assert s.transition(mid, MessageState.SENDING, now=2.0, expect=MessageState.SCHEDULED)
    # a second worker cannot claim it again
    assert not s.transition(mid, MessageState.SENDING, now=2.1, expect=MessageState.SCHEDULED)
    assert s.transition(mid, MessageState.SENT, now=3.0, sender="modem1", refs=["17", "18"], segments=2)
    assert [r.state for r in s.message_events(mid)] == ["scheduled", "sending", "sent"]
    assert s.message_by_ref("modem1", "18").id == mid
    with pytest.raises(StoreError, match="not allowed"):
        s.transition(mid, MessageState.SCHEDULED, now=4.0)


def test_opt_out_survives_reopen(tmp_path):
    """An opt-out is kept across restarts, and its history is recorded."""
    path = tmp_path / "t.db"
    s = Store(path)
    s.set_opt_out("+12125550102", True, now=1.0, source="sms:STOP")
    s.close()
    s2 = Store(path)
    assert s2.is_opted_out("+12125550102")
    s2.set_opt_out("+12125550102", False, now=2.0, source="sms:START")
    assert not s2.is_opted_out("+12125550102")
    assert s2.db.execute("SELECT COUNT(*) FROM opt_out_events").fetchone()[0] == 2


def test_unwritable_location_is_a_store_error(tmp_path):
    """A database path that cannot be created gives a StoreError, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create its folder"):
        Store(blocker / "sub" / "t.db")
