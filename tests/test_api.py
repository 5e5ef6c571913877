"""The JSON API over real HTTP on 127.0.0.1 with a real store: tokens and scopes, cursor pages, an idempotent POST
through the outbox, problem details, and every response checked against the OpenAPI 3.1 document (openapi-core)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

from textbackd import config as config_mod
from textbackd.api.app import PREFIX, hash_token, make_app
from textbackd.api.openapi import document
from textbackd.core.model import Call, Direction, MessageState, Outcome, TextKind, TokenScope
from textbackd.store import api as api_q
from textbackd.store import audit, figures
from textbackd.store.db import Store

NOW = time.time()
T0 = datetime.fromtimestamp(NOW, tz=timezone.utc) - timedelta(hours=2)
# problem details are JSON too (openapi-core only knows application/json by itself)
SPEC = OpenAPI.from_dict(document(), config=Config(extra_media_type_deserializers={"application/problem+json": json.loads}))
READ, WRITE = "tbk_read-token-for-the-tests", "tbk_write-token-for-the-tests"


def call(i: int, *, answered: bool = False) -> Call:
    start = T0 + timedelta(minutes=i)
    return Call(id=f"17953958{i:02d}.1", pbx="asterisk", direction=Direction.INBOUND,
                outcome=Outcome.ANSWERED if answered else Outcome.NO_ANSWER, caller=f"+121255501{i:02d}",
                caller_raw=f"212555{i:04d}", caller_name="José Núñez" if i == 3 else "", did="5550100", started=start,
                ended=start + timedelta(seconds=20), ring_seconds=18.0)


class Api:
    """An HTTP client for the API that checks each answer against the OpenAPI document."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session
        self.checked = 0

    async def __call__(self, method: str, path: str, *, token: str | None = READ, body=None, headers=None,
                       pattern: str | None = None, params: dict | None = None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            h["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, data=data, headers=h, params=params) as r:
            raw = await r.read()
            status, ctype, rh = r.status, r.content_type, dict(r.headers)
        if path != "/openapi.json" or status != 200:
            view_args = {"number": path.split("/")[2]} if pattern and "{number}" in pattern else None
            req = MockRequest("http://127.0.0.1", method, PREFIX + path, path_pattern=PREFIX + (pattern or path), args=params,
                              view_args=view_args, headers=h, data=data)
            SPEC.validate_response(req, MockResponse(raw, status_code=status, headers=rh, content_type=ctype))
            self.checked += 1
        return status, json.loads(raw), rh, ctype


@pytest.fixture
async def api(tmp_path: Path):
    cfg = config_mod.parse({"business": {"name": "Apex Plumbing", "timezone": "America/New_York"},
                            "store": {"path": str(tmp_path / "t.db")}}, env={})
    store = Store(cfg.store.path)
    for i in range(7):
        store.record_call(call(i, answered=i == 5), now=NOW - 3600 + i)
        if i != 5:
            store.add_message(to=f"+121255501{i:02d}", kind=TextKind.TEXTBACK, state=MessageState.SCHEDULED,
                              now=NOW - 3600 + i, call_id=f"asterisk:17953958{i:02d}.1", text=f"Hi {i}",
                              line_did="5550100")
    store.record_incoming(sender="modem1", from_number="+12125550103", text="Tuesday?", received_at=NOW - 60,
                          call_id="asterisk:1795395803.1")
    api_q.add_token(store, name="dash", scope=TokenScope.READ, token_hash=hash_token(READ), now=NOW, by="cli:root")
    api_q.add_token(store, name="crm", scope=TokenScope.WRITE, token_hash=hash_token(WRITE), now=NOW, by="cli:root")
    woken: list[float] = []
    root = web.Application()
    root.add_subapp(PREFIX, make_app(store, cfg, lambda: woken.append(time.time())))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as session:
        client = Api(f"http://127.0.0.1:{runner.addresses[0][1]}{PREFIX}", session)
        client.store, client.cfg, client.woken = store, cfg, woken
        yield client
    await runner.cleanup()
    store.close()


def test_the_openapi_document_is_valid_3_1_with_a_schema_for_every_webhook_event() -> None:
    """The served document validates as OpenAPI 3.1 and describes each of the nine webhook event types."""
    doc = document()
    validate(doc)
    assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == "1.0.0"
    assert sorted(doc["webhooks"]) == sorted(config_mod.WEBHOOK_EVENTS)


async def test_tokens_and_scopes(api) -> None:
    """No token or an unknown one is a 401 problem with a Bearer challenge; a read token reads but may not write (403);
    a revoked token stops at once; the store keeps only each token's SHA-256."""
    status, body, headers, ctype = await api("GET", "/calls", token=None, pattern="/calls")
    assert (status, ctype, headers["WWW-Authenticate"]) == (401, "application/problem+json", 'Bearer realm="textbackd"')
    assert body["title"] == "Unauthorized" and "Authorization: Bearer" in body["detail"]
    status, body, _, _ = await api("GET", "/calls", token="tbk_guessed", pattern="/calls")
    assert status == 401 and body["detail"] == "this token is not known or was revoked"
    status, _, _, _ = await api("GET", "/calls", token=READ, pattern="/calls")
    assert status == 200
    status, body, _, _ = await api("POST", "/conversations/+12125550101/handled", token=READ,
                                   pattern="/conversations/{number}/handled")
    assert status == 403 and "may only read" in body["detail"]
    assert api_q.revoke_token(api.store, "dash", now=time.time())
    status, _, _, _ = await api("GET", "/calls", token=READ, pattern="/calls")
    assert status == 401
    raw = api.store.db.execute("SELECT group_concat(name || scope || hash) FROM api_tokens").fetchone()[0]
    assert READ not in raw and WRITE not in raw and hash_token(WRITE) in raw


async def test_calls_come_in_cursor_pages_with_their_decision(api) -> None:
    """Seven calls, three a page: newest first, no call twice, the last page's next_cursor is null; filters apply;
    a cursor that is not one is a 400 problem."""
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        status, body, _, _ = await api("GET", "/calls", pattern="/calls", params=params)
        assert status == 200
        seen += [c["id"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    assert seen == [f"asterisk:17953958{i:02d}.1" for i in range(6, -1, -1)]
    status, body, _, _ = await api("GET", "/calls", pattern="/calls", params={"missed": "true", "limit": "50"})
    assert len(body["items"]) == 6 and all(c["missed"] for c in body["items"])
    first = body["items"][-1]
    assert first["textback"] == {"id": 1, "state": "scheduled", "reason": "", "text": "Hi 0"}
    assert first["started"] == (T0.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    status, body, _, _ = await api("GET", "/calls", pattern="/calls", params={"number": "(212) 555-0103"})
    assert [c["caller_name"] for c in body["items"]] == ["José Núñez"]
    status, body, _, ctype = await api("GET", "/calls", pattern="/calls", params={"cursor": "bm9wZQ"})
    assert (status, ctype) == (400, "application/problem+json") and body["detail"].startswith("cursor:")
    status, body, _, _ = await api("GET", "/calls", pattern="/calls", params={"limit": "1000"})
    assert status == 400 and "limit" in body["detail"]


async def test_a_staff_text_by_api_is_idempotent_audited_and_goes_through_the_outbox(api) -> None:
    """POST messages with an Idempotency-Key twice makes one staff text (the second answer is the first, replayed),
    audited as api:crm, and wakes the outbox; the key with another text is refused; an opted-out number is a 422."""
    path, pattern = "/conversations/+12125550103/messages", "/conversations/{number}/messages"
    key = {"Idempotency-Key": "crm-4711"}
    s1, b1, _, _ = await api("POST", path, token=WRITE, body={"text": "Yes, Tuesday 3pm works"}, headers=key,
                             pattern=pattern)
    s2, b2, h2, _ = await api("POST", path, token=WRITE, body={"text": "Yes, Tuesday 3pm works"}, headers=key,
                              pattern=pattern)
    assert (s1, s2) == (201, 201) and b1 == b2 and h2["Idempotent-Replayed"] == "true"
    assert (b1["kind"], b1["state"], b1["to_number"], b1["template"]) == ("staff", "scheduled", "+12125550103", "api")
    staff = api.store.messages(number="+12125550103", states=("scheduled",))
    assert [m.id for m in staff if m.kind == "staff"] == [b1["id"]]
    assert len(api.woken) == 1
    (row,) = audit.rows(api.store, actor="api:crm")
    assert (row.action, row.number, row.message_id) == ("text_sent", "+12125550103", b1["id"])
    s3, b3, _, _ = await api("POST", path, token=WRITE, body={"text": "Something else"}, headers=key, pattern=pattern)
    assert s3 == 422 and "Idempotency-Key was used for another request" in b3["detail"]
    api.store.set_opt_out("+12125550104", True, now=time.time(), source="sms:modem1")
    s4, b4, _, _ = await api("POST", "/conversations/+12125550104/messages", token=WRITE, body={"text": "Hello?"},
                             pattern=pattern)
    assert s4 == 422 and "opted out" in b4["detail"]
    s5, b5, _, _ = await api("POST", path, token=WRITE, body={"txt": "typo"}, pattern=pattern)
    assert s5 == 422 and b5["detail"] == 'give the text as {"text": "..."}'


async def test_conversations_list_detail_and_handled(api) -> None:
    """The conversations list pages by latest activity; one conversation holds its texts both ways; POST handled
    marks it (audited) and the conversation no longer needs a person until the customer writes again."""
    status, body, _, _ = await api("GET", "/conversations", pattern="/conversations", params={"limit": "2"})
    assert status == 200 and body["items"][0]["number"] == "+12125550103"  # its reply is the latest activity
    assert body["items"][0]["needs_person"] is True and body["next_cursor"]
    numbers = [c["number"] for c in body["items"]]
    while body["next_cursor"]:
        status, body, _, _ = await api("GET", "/conversations", pattern="/conversations",
                                       params={"limit": "2", "cursor": body["next_cursor"]})
        numbers += [c["number"] for c in body["items"]]
    assert sorted(numbers) == [f"+121255501{i:02d}" for i in range(7) if i != 5]  # 05 was answered: nothing to do
    pattern = "/conversations/{number}"
    status, body, _, _ = await api("GET", "/conversations/+12125550103", pattern=pattern)
    assert status == 200 and body["name"] == "José Núñez"
    assert [(m["direction"], m["text"]) for m in body["messages"]["items"]] == [("in", "Tuesday?"), ("out", "Hi 3")]
    status, body, _, _ = await api("POST", "/conversations/+12125550103/handled", token=WRITE,
                                   pattern="/conversations/{number}/handled")
    assert status == 200 and body["handled_by"] == "api:crm" and body["needs_person"] is False
    assert [r.action for r in audit.rows(api.store, actor="api:crm")] == ["handled"]
    status, body, _, _ = await api("GET", "/conversations/+12125550188", pattern=pattern)
    assert status == 404 and body["status"] == 404


async def test_stats_are_the_figures_of_textbackd_stats_and_unknown_paths_are_problems(api) -> None:
    """GET stats answers what `textbackd stats --json` computes for the same period; an unknown path is a 404 problem."""
    status, body, _, _ = await api("GET", "/stats", pattern="/stats", params={"since": "1d"})
    assert status == 200
    assert body["total"]["missed"] == 6
    now = time.time()
    want = figures.compute(api.store, api.cfg, since=now - 86400, until=now, line=None).to_json()
    assert body["total"] == want["total"]
    async with api.session.get(api.base + "/nope", headers={"Authorization": f"Bearer {READ}"}) as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
    assert api.checked == 1  # each answer above was checked against the document


def test_token_cli_prints_once_lists_and_revokes(tmp_path: Path) -> None:
    """`textbackd token add` prints the token once (stdout) and stores its hash; `list` never shows it; `revoke` stops it;
    each change is an audit row."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[business]\nname = "Apex"\n[store]\npath = "{tmp_path / "t.db"}"\n')
    run = lambda *a: subprocess.run([sys.executable, "-m", "textbackd", "token", *a, "-c", str(cfg)],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    added = run("add", "crm", "--scope", "write")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("tbk_") and "shown once" in added.stderr
    again = run("add", "crm", "--scope", "read")
    assert again.returncode == 1 and "exists" in again.stderr
    listed = run("list")
    assert "crm" in listed.stdout and "write" in listed.stdout and token not in listed.stdout
    store = Store(tmp_path / "t.db")
    try:
        assert api_q.token_by_hash(store, hash_token(token)).name == "crm"
    finally:
        store.close()
    assert run("revoke", "crm").returncode == 0
    store = Store(tmp_path / "t.db")
    try:
        assert api_q.token_by_hash(store, hash_token(token)) is None
        assert [r.detail for r in audit.rows(store)] == ["revoked crm", "added crm (write)"]
    finally:
        store.close()


async def test_the_api_answers_on_the_front_desk_listener_too(tmp_path) -> None:
    """With [web] on, /api/v1 answers a token on the front desk's port as on the HTTP listener's, and
    neither answers without one."""
    import asyncio

    from aiohttp import ClientSession

    from textbackd import config as config_mod
    from textbackd.api.app import hash_token, new_token
    from textbackd.core.model import TokenScope
    from textbackd.daemon.service import Daemon
    from textbackd.store import api as api_q
    from textbackd.store.db import Store

    cfg = config_mod.parse({"business": {"name": "Apex"}, "store": {"path": str(tmp_path / "t.db")},
                            "http": {"listen": "127.0.0.1:0"}, "web": {"listen": "127.0.0.1:0"}}, env={})
    token = new_token()
    store = Store(cfg.store.path)
    api_q.add_token(store, name="crm", scope=TokenScope.READ, token_hash=hash_token(token), now=0.0, by="test")
    store.close()
    daemon = Daemon(cfg, senders=[], handle_signals=False)
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(200):
            if daemon.listener is not None and daemon.web is not None and daemon.web.port:
                break
            await asyncio.sleep(0.05)
        async with ClientSession() as http:
            for port in (daemon.listener.port, daemon.web.port):
                url = f"http://127.0.0.1:{port}/api/v1/calls"
                async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200, (port, await r.text())
                    assert await r.json() == {"items": [], "next_cursor": None}
                async with http.get(url) as r:
                    assert r.status == 401
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 20)
