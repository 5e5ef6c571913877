"""Helpers for the front-desk tests: a store with calls, texts, replies and users, and a signed-in client."""

from __future__ import annotations

import re
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from textbackd import config as config_mod
from textbackd.core.model import Call, Direction, IncomingText, MessageState, Outcome
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.pipeline import Pipeline
from textbackd.staff import accounts, actions
from textbackd.store.db import Store
from textbackd.web import make_app

PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 24, 15, 0, tzinfo=timezone.utc)  # a Tuesday, 10:00 in New York


def web_config(tmp_path, **web):
    return config_mod.parse({
        "business": {"name": "Apex Dental", "timezone": "America/New_York",
                     "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}},
        "store": {"path": str(tmp_path / "t.db")},
        "policy": {"grace_seconds": 0, "dedupe_hours": 0, "max_per_number_per_day": 100,
                   "max_per_prefix_per_hour": 1000, "max_per_hour": 10000},
        "lines": [{"did": "+12125550100", "name": "Main office"}],
        "web": {"page_size": 10, **web},
    }, env={})


def call(n: int, at: datetime, outcome: Outcome = Outcome.NO_ANSWER, direction: Direction = Direction.INBOUND,
         caller: str | None = None, did: str = "+12125550100", name: str = "MARIA GARCIA") -> Call:
    caller = caller or f"+121255501{n % 100:02d}"
    return Call(id=f"c{n}", pbx="asterisk", direction=direction, outcome=outcome, caller=caller, caller_raw=caller,
                caller_name=name, did=did, started=at - timedelta(seconds=20), ended=at, ring_seconds=20,
                answered_at=at - timedelta(seconds=5) if outcome is Outcome.ANSWERED else None)


async def fill(store: Store, cfg, *, calls: int = 25) -> None:
    """``calls`` missed calls a minute apart (callers +12125550101...), two answered, three replies, one STOP."""
    pipe = Pipeline(store, cfg)
    for i in range(1, calls + 1):
        at = T0 + timedelta(minutes=i)
        pipe.handle_call(call(i, at), at.timestamp())
    pipe.handle_call(call(90, T0 + timedelta(minutes=2), Outcome.ANSWERED, caller="+12125550150"), T0.timestamp())
    for m in store.messages(states=("scheduled",), limit=1000):  # the outbox's work, done: sent, some delivered
        at = m.send_at + 2
        store.transition(m.id, MessageState.SENDING, now=at)
        store.transition(m.id, MessageState.SENT, now=at, sent_at=at, sender="modem1", refs=[str(m.id)], segments=1)
        if m.id % 2:
            store.transition(m.id, MessageState.DELIVERED, now=at + 3, delivered_at=at + 3)
    conv = Conversations(store, cfg, clock=lambda: (T0 + timedelta(hours=1)).timestamp())
    for i, (n, text) in enumerate([(101, "Yes please, tomorrow?"), (102, "Can you call me?"), (103, "STOP"),
                                   (104, "Thanks 😊")]):
        await conv.incoming(IncomingText(sender="modem1", from_number=f"+12125550{n}", text=text,
                                         received_at=T0 + timedelta(minutes=40 + i)))
    actions.send_text(store, cfg, "+12125550102", "Calling you in 5 minutes", now=(T0 + timedelta(minutes=50)).timestamp(),
                      source="web", actor="web:ana")


def add_users(store: Store) -> None:
    for name, role in (("desk", "frontdesk"), ("owner", "owner"), ("admin", "admin")):
        accounts.add_user(store, name, role, PASSWORD, actor="cli:root", now=T0.timestamp())


_TEMPLATE: dict[str, Path] = {}


def store_with_users(path: Path) -> Store:
    """A new store at ``path`` holding desk (frontdesk), owner and admin: hashed once per test run and
    copied (an argon2id hash costs a few tenths of a second by design)."""
    if "db" not in _TEMPLATE:
        tmp = Path(tempfile.mkdtemp(prefix="textbackd-users-")) / "users.db"
        s = Store(tmp)
        add_users(s)
        s.close()
        _TEMPLATE["db"] = tmp
    shutil.copyfile(_TEMPLATE["db"], path)
    return Store(path)


async def client_for(store: Store, cfg, clock=None, **kw) -> TestClient:
    app = make_app(store, cfg, clock=clock or (lambda: (T0 + timedelta(hours=2)).timestamp()), **kw)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def token_in(html: str, name: str = "csrf") -> str:
    m = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert m, f"no {name} in the page"
    return m.group(1)


async def sign_in(client: TestClient, name: str, password: str = PASSWORD, *, expect: int = 200):
    """Sign in through the login form; returns the final response (the page after the redirect)."""
    page = await client.get("/login")
    html = await page.text()
    r = await client.post("/login", data={"username": name, "password": password,
                                          "login_token": token_in(html, "login_token"), "next": "/"})
    assert r.status == expect, (r.status, await r.text())
    return r
