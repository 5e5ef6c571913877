"""The front desk's handlers through aiohttp's test client: every page empty and full, roles, CSRF,
sign-in rules, pagination, filters, and the staff actions behind each form."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
import structlog
from aiohttp import web
from webkit import PASSWORD, T0, client_for, fill, sign_in, store_with_users, token_in, web_config

from textbackd import config as config_mod
from textbackd.core.errors import ConfigError
from textbackd.core.model import AuditAction, MessageState, Role, TextKind
from textbackd.staff import accounts
from textbackd.store import audit
from textbackd.store import conversations as conv_q
from textbackd.store.db import Store
from textbackd.store.schema import MIGRATIONS, _split_sql
from textbackd.web.app import make_app
from textbackd.web.live import Hub
from textbackd.web.server import WebServer, scrub_path

PAGES = ["/", "/calls", "/calls?all=1", "/conversations/+12125550101", "/figures", "/figures?days=7", "/status", "/users"]


@pytest.fixture
def empty(tmp_path):
    cfg = web_config(tmp_path)
    store = store_with_users(cfg.store.path)
    yield cfg, store
    store.close()


@pytest.fixture
async def full(tmp_path):
    cfg = web_config(tmp_path)
    store = store_with_users(cfg.store.path)
    await fill(store, cfg)
    yield cfg, store
    store.close()


async def test_every_page_renders_for_an_admin_on_an_empty_store(empty):
    """Each page answers 200 with its heading and the main navigation when the store holds nothing."""
    cfg, store = empty
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "admin")
        for path in PAGES:
            r = await c.get(path)
            html = await r.text()
            assert r.status == 200, (path, html[:500])
            for link in ("Inbox", "Missed calls", "Figures", "Status", "Sign out"):
                assert f">{link}<" in html, (path, link)
        assert "Nothing waits for a person" in await (await c.get("/")).text()
        assert "No calls" in await (await c.get("/calls")).text()
    finally:
        await c.close()


async def test_every_page_renders_a_full_store_in_words(full):
    """With calls, texts and replies stored, each page shows them as people read them."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "admin")
        for path in PAGES:
            assert (await c.get(path)).status == 200, path
        calls = await (await c.get("/calls")).text()
        assert '<a href="/conversations/+12125550125">(212) 555-0125</a>' in calls  # newest first, national format
        assert "rang out" in calls and "texted at" in calls and "Main office" in calls
        replied = await (await c.get("/calls", params={"number": "+12125550101"})).text()
        assert "replied 10:40 AM, recovered" in replied and "delivered" in replied
        inbox = await (await c.get("/")).text()
        assert '<a href="/conversations/+12125550101">(212) 555-0101</a>' in inbox
        assert "Yes please, tomorrow?" in inbox
        assert "0102" not in inbox  # answered by staff: nothing waits
        assert "0103" not in inbox  # STOP is not a reply that needs a person
        conv = await (await c.get("/conversations/+12125550102")).text()
        assert "Staff text by ana" in conv and "Calling you in 5 minutes" in conv and 'href="tel:+12125550102"' in conv
        assert '<label for="reply">Reply</label>' in conv and ">Send</button>" in conv
        stop = await (await c.get("/conversations/+12125550103")).text()
        assert "STOP: opted out" in stop and "opted out" in stop and 'id="reply"' not in stop
        figures = await (await c.get("/figures?days=90")).text()
        assert "<svg" in figures and "Download CSV" in figures and "time to text p95" in figures
        status = await (await c.get("/status")).text()
        assert "outbox" in status and "schema" in status
    finally:
        await c.close()


async def test_nothing_but_healthz_and_login_answers_without_a_session(full):
    """Pages redirect to the sign-in form; assets, fragments and the event stream answer 401; POSTs 403."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        assert (await c.get("/healthz")).status == 200
        assert (await c.get("/login")).status == 200
        for path in PAGES:
            r = await c.get(path, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"].startswith("/login"), path
        for path in ("/static/app.css", "/static/htmx.min.js", "/events", "/figures.csv"):
            r = await c.get(path, allow_redirects=False)
            assert r.status in (401, 303) and "htmx" not in await r.text(), path
        r = await c.post("/conversations/+12125550101/handled", data={"csrf": "x"})
        assert r.status == 403
        assert conv_q.state(store, "+12125550101").handled_at is None
    finally:
        await c.close()


@pytest.mark.parametrize("who,allowed,refused", [
    ("desk", ["/", "/calls", "/conversations/+12125550101"], ["/figures", "/figures.csv", "/status", "/users"]),
    ("owner", ["/", "/calls", "/figures", "/figures.csv"], ["/status", "/users"]),
    ("admin", ["/", "/calls", "/figures", "/figures.csv", "/status", "/users"], []),
])
async def test_each_role_sees_its_pages_and_gets_403_on_the_others(full, who, allowed, refused):
    """frontdesk has inbox, conversations and calls; owner adds figures; admin adds status and users."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        home = await sign_in(c, who)
        html = await home.text()
        assert (">Figures<" in html) == (who != "desk") and (">Status<" in html) == (who == "admin")
        for path in allowed:
            assert (await c.get(path)).status == 200, path
        for path in refused:
            r = await c.get(path)
            assert r.status == 403, path
            assert "Not for your account" in await r.text()
    finally:
        await c.close()


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(full):
    """No token, a wrong token or another site's Origin: 403, and the conversation stays as it was."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        good = token_in(await (await c.get("/conversations/+12125550101")).text())
        for data, headers in (({}, {}), ({"csrf": "forged"}, {}),
                              ({"csrf": good}, {"Origin": "https://evil.example"})):
            r = await c.post("/conversations/+12125550101/claim", data=data, headers=headers)
            assert r.status == 403
        r = await c.post("/conversations/+12125550101/send", data={"text": "hi"})
        assert r.status == 403
        assert conv_q.state(store, "+12125550101").claimed_by is None
        assert not [m for m in store.messages(number="+12125550101") if m.kind == TextKind.STAFF]
        r = await c.post("/login", data={"username": "desk", "password": PASSWORD})  # no login token
        assert r.status == 403
        r = await c.post("/conversations/+12125550101/claim", data={"csrf": good})
        assert r.status == 200 and conv_q.state(store, "+12125550101").claimed_by == "web:desk"
    finally:
        await c.close()


async def test_the_sixth_wrong_password_locks_the_account(full):
    """Five wrong passwords still let the right one in; six lock the account, the right one too, all audited."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        for _ in range(5):
            r = await sign_in(c, "owner", "wrong password!", expect=401)
            assert "Wrong username or password." in await r.text()
        await sign_in(c, "owner")  # a success resets the count
        for _ in range(5):
            await sign_in(c, "desk", "wrong password!", expect=401)
        r = await sign_in(c, "desk", "wrong password!", expect=423)
        assert "locked" in await r.text()
        r = await sign_in(c, "desk", expect=423)
        assert "locked" in await r.text()
        failed = [a for a in audit.rows(store, actor="web:desk") if a.action == AuditAction.LOGIN_FAILED]
        assert len(failed) == 7 and "account locked for 15 min" in failed[1].detail
        assert [a.action for a in audit.rows(store, actor="web:owner")][:1] == [AuditAction.LOGIN]
        accounts.unlock(store, "desk", actor="cli:root", now=T0.timestamp())
        await sign_in(c, "desk")
    finally:
        await c.close()


async def test_too_many_failures_from_one_address_are_refused_before_the_password_is_read(tmp_path):
    """Past address_failures wrong passwords from one address, even a right one gets 429."""
    cfg = web_config(tmp_path, address_failures=4, lockout_failures=50)
    store = store_with_users(cfg.store.path)
    c = await client_for(store, cfg)
    try:
        for name in ("desk", "owner", "nobody", "admin"):
            await sign_in(c, name, "wrong password!", expect=401)
        r = await sign_in(c, "admin", expect=429)
        assert "Too many failed sign-ins" in await r.text()
    finally:
        await c.close()
        store.close()


async def test_sign_out_ends_the_session_on_the_server(full):
    """After Sign out the old cookie opens nothing, even replayed by hand."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        cookie = next(m.value for m in c.session.cookie_jar if m.key == "tb_session")
        token = token_in(await (await c.get("/")).text())
        r = await c.post("/logout", data={"csrf": token})
        assert r.status == 200 and "Sign in" in await r.text()
        c.session.cookie_jar.update_cookies({"tb_session": cookie})
        r = await c.get("/", allow_redirects=False)
        assert r.status == 303
        assert [a.action for a in audit.rows(store, actor="web:desk")][0] == AuditAction.LOGOUT
    finally:
        await c.close()


async def test_an_idle_session_expires(full):
    """A session unused for longer than session_idle_minutes is over."""
    cfg, store = full
    now = [T0.timestamp() + 7200]
    c = await client_for(store, cfg, clock=lambda: now[0])
    try:
        await sign_in(c, "desk")
        assert (await c.get("/", allow_redirects=False)).status == 200
        now[0] += 59 * 60
        assert (await c.get("/", allow_redirects=False)).status == 200
        now[0] += 61 * 60
        assert (await c.get("/", allow_redirects=False)).status == 303
    finally:
        await c.close()


async def test_missed_calls_page_by_cursor_without_gaps_or_repeats(full):
    """25 missed calls at 10 a page: three pages, newest first, each call once."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        seen, url = [], "/calls"
        while url:
            html = await (await c.get(url)).text()
            seen += re.findall(r'<a href="/conversations/(\+\d+)">', html)
            m = re.search(r'<a href="(/calls\?[^"]+)" rel="next">', html)
            url = m.group(1).replace("&amp;", "&") if m else ""
        assert seen == [f"+121255501{n:02d}" for n in range(25, 0, -1)]
    finally:
        await c.close()


async def test_the_inbox_pages_too_and_puts_unclaimed_first(tmp_path):
    """Twelve waiting conversations at 10 a page: the claimed one comes last, the oldest unclaimed first."""
    cfg = web_config(tmp_path)
    store = store_with_users(cfg.store.path)
    await fill(store, cfg, calls=3)
    from textbackd.core.model import IncomingText
    from textbackd.daemon.conversations import Conversations

    conv = Conversations(store, cfg, clock=lambda: T0.timestamp())
    for i in range(10):
        await conv.incoming(IncomingText(sender="m", from_number=f"+121255501{60 + i}", text=f"hello {i}",
                                         received_at=T0 + timedelta(minutes=60 + i)))
    from textbackd.staff import actions

    actions.claim(store, "+12125550101", actor="web:ana", now=T0.timestamp())
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        first = await (await c.get("/")).text()
        order = re.findall(r'<a href="/conversations/(\+\d+)">', first)
        assert order[0] == "+12125550104" and len(order) == 10
        m = re.search(r'<a href="(/\?after=[^"]+)" rel="next">', first)
        rest = re.findall(r'<a href="/conversations/(\+\d+)">', await (await c.get(m.group(1).replace("&amp;", "&"))).text())
        assert rest == ["+12125550169", "+12125550101"]  # the claimed one last
        assert "12 conversation(s) waiting" in first
    finally:
        await c.close()
        store.close()


@pytest.mark.parametrize("typed", ["(212) 555-0105", "212.555.0105", "+1 212 555 0105", "2125550105", "0105"])
async def test_the_number_search_takes_any_format(full, typed):
    """However the number is typed, the calls of that caller (and only theirs) are shown."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        html = await (await c.get("/calls", params={"number": typed})).text()
        assert set(re.findall(r'<a href="/conversations/(\+\d+)">', html)) == {"+12125550105"}
    finally:
        await c.close()


async def test_filters_by_line_date_and_attention(full):
    """Line, date range and needs-attention/handled narrow the list; a bad date or number says why."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        rows = lambda html: re.findall(r'<a href="/conversations/(\+\d+)">', html)  # noqa: E731
        assert rows(await (await c.get("/calls", params={"line": "+12125550199"})).text()) == []
        assert len(rows(await (await c.get("/calls", params={"line": "+12125550100"})).text())) == 10
        assert len(rows(await (await c.get("/calls", params={"from": "2026-11-24", "to": "2026-11-24"})).text())) == 10
        assert rows(await (await c.get("/calls", params={"from": "2026-11-25"})).text()) == []
        token = token_in(await (await c.get("/conversations/+12125550125")).text())
        await c.post("/conversations/+12125550125/handled", data={"csrf": token})
        assert rows(await (await c.get("/calls", params={"status": "handled"})).text()) == ["+12125550125"]
        assert "+12125550125" not in rows(await (await c.get("/calls", params={"status": "needs"})).text())
        bad = await (await c.get("/calls", params={"from": "yesterday", "number": "55"})).text()
        assert "is not a date" in bad and "at least 3 digits" in bad
    finally:
        await c.close()


async def test_a_reply_from_the_page_is_a_row_before_it_is_a_send(full):
    """Send queues a staff text as web:desk, audits it, claims the conversation and wakes the outbox."""
    cfg, store = full
    woken = []

    class Host:
        def health(self): return {"ok": True}
        def pbx_facts(self): return {}
        def sender_facts(self): return []
        def wake_outbox(self): woken.append(1)

    c = await client_for(store, cfg, host=Host())
    try:
        await sign_in(c, "desk")
        token = token_in(await (await c.get("/conversations/+12125550101")).text())
        r = await c.post("/conversations/+12125550101/send", data={"csrf": token, "text": "Tomorrow at 9 works 😊"})
        assert r.status == 200 and "Text queued" in await r.text()
        [m] = [m for m in store.messages(number="+12125550101") if m.kind == TextKind.STAFF]
        assert (m.state, m.text, m.encoding) == (MessageState.SCHEDULED, "Tomorrow at 9 works 😊", "ucs2")
        assert audit.rows(store, number="+12125550101")[0].actor == "web:desk"
        assert conv_q.state(store, "+12125550101").claimed_by == "web:desk" and woken == [1]
        assert "0101" not in re.sub(r"[^\n]*href=\"/conversations/\+1212555010[^1][^\n]*", "", await (await c.get("/")).text())
        r = await c.post("/conversations/+12125550103/send", data={"csrf": token, "text": "hello?"})
        assert r.status == 409 and "opted out" in await r.text()
    finally:
        await c.close()


async def test_the_reply_box_counts_characters_segments_and_warns_about_ucs2(full):
    """The counter fragment says the length, the parts and the encoding, and what an emoji costs."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        token = token_in(await (await c.get("/conversations/+12125550101")).text())
        plain = await (await c.post("/compose/describe", data={"text": "x" * 100}, headers={"X-CSRF-Token": token})).text()
        assert "100 characters, 1 SMS, GSM-7" in plain and "UCS-2" not in plain
        emoji = await (await c.post("/compose/describe", data={"text": "x" * 100 + "😊"},
                                    headers={"X-CSRF-Token": token})).text()
        assert "2 SMS, UCS-2" in emoji and "2 SMS instead of 1" in emoji
    finally:
        await c.close()


async def test_quiet_hours_ask_then_hold_the_text_until_they_end(tmp_path):
    """At 23:00 the page asks; "Hold" keeps the text in the outbox until 08:00, "Send now" sends at once."""
    cfg = web_config(tmp_path)
    store = store_with_users(cfg.store.path)
    await fill(store, cfg, calls=2)
    night = (T0 + timedelta(hours=13)).timestamp()  # 23:00 in New York
    c = await client_for(store, cfg, clock=lambda: night)
    try:
        await sign_in(c, "desk")
        token = token_in(await (await c.get("/conversations/+12125550101")).text())
        ask = await c.post("/conversations/+12125550101/send", data={"csrf": token, "text": "See you at 9"})
        html = await ask.text()
        assert "quiet hours" in html and "Hold until tomorrow 8:00 AM" in html and "Send now" in html
        assert not [m for m in store.messages(number="+12125550101") if m.kind == TextKind.STAFF]
        r = await c.post("/conversations/+12125550101/send", data={"csrf": token, "text": "See you at 9", "quiet": "hold"})
        assert "held for quiet hours" in await r.text()
        [m] = [m for m in store.messages(number="+12125550101") if m.kind == TextKind.STAFF]
        assert m.send_at == (T0 + timedelta(hours=22)).timestamp()  # 08:00 the next morning
        await c.post("/conversations/+12125550101/send", data={"csrf": token, "text": "Now", "quiet": "send"})
        now_row = store.messages(number="+12125550101")[0]
        assert now_row.text == "Now" and now_row.send_at == night
    finally:
        await c.close()
        store.close()


async def test_claim_handled_and_block_from_the_page(full):
    """Claim makes it mine, Mark handled takes it out of the Inbox, Block records an opt-out with who and why."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "desk")
        token = token_in(await (await c.get("/conversations/+12125550101")).text())
        await c.post("/conversations/+12125550101/claim", data={"csrf": token})
        assert conv_q.state(store, "+12125550101").claimed_by == "web:desk"
        await c.post("/conversations/+12125550101/handled", data={"csrf": token})
        assert "+12125550101" not in await (await c.get("/")).text()
        r = await c.post("/conversations/+12125550104/block", data={"csrf": token, "reason": ""})
        assert r.status == 400 and "say why" in await r.text()
        await c.post("/conversations/+12125550104/block", data={"csrf": token, "reason": "asked on the phone"})
        assert store.is_opted_out("+12125550104")
        page = await (await c.get("/conversations/+12125550104")).text()
        assert "desk blocked the number" in page and "asked on the phone" in page
        assert "desk claimed it" in await (await c.get("/conversations/+12125550101")).text()
    finally:
        await c.close()


async def test_the_figures_csv_download_is_audited(full):
    """An owner's CSV download has a row per day, week and line, and an export row in the audit trail."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "owner")
        r = await c.get("/figures.csv", params={"days": "7"})
        lines = (await r.text()).splitlines()
        assert r.headers["Content-Type"].startswith("text/csv") and lines[0].startswith("group,period,missed calls")
        assert any(x.startswith("total,all,25,") for x in lines) and any(x.startswith("week,2026-W48,") for x in lines)
        [row] = [a for a in audit.rows(store, actor="web:owner") if a.action == AuditAction.EXPORT]
        assert "figures CSV" in row.detail
    finally:
        await c.close()


async def test_an_admin_adds_disables_and_unlocks_users_from_the_page(full):
    """Users: add with a role, disable (its sessions end), and the admin cannot disable itself."""
    cfg, store = full
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "admin")
        token = token_in(await (await c.get("/users")).text())
        r = await c.post("/users", data={"csrf": token, "name": "nina", "role": "frontdesk", "password": "short"})
        assert r.status == 400 and "too short" in await r.text()
        await c.post("/users", data={"csrf": token, "name": "nina", "role": "frontdesk", "password": PASSWORD})
        assert "nina" in [u.name for u in accounts.list_users(store)]
        await c.post("/users/nina/disable", data={"csrf": token})
        assert [u for u in accounts.list_users(store) if u.name == "nina"][0].disabled
        r = await c.post("/users/admin/disable", data={"csrf": token})
        assert r.status == 400 and "your own account" in await r.text()
    finally:
        await c.close()


async def test_the_event_stream_tells_a_signed_in_page_what_changed(full):
    """A change published by the daemon reaches the open /events stream as a `change` event."""
    cfg, store = full
    hub = Hub()
    c = await client_for(store, cfg, hub=hub)
    try:
        await sign_in(c, "desk")
        r = await c.get("/events")
        assert r.headers["Content-Type"] == "text/event-stream"
        await r.content.readuntil(b"\n\n")
        while hub.listeners == 0:
            await asyncio.sleep(0.01)
        hub.publish("call", "+12125550101")
        event = await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)
        assert event == b'event: change\ndata: {"kind": "call", "number": "+12125550101"}\n\n'
        r.close()
    finally:
        await c.close()


async def test_a_subapp_mounts_with_its_own_authentication(full):
    """An app given in ``subapps`` answers under its prefix without a session, with the security headers."""
    cfg, store = full

    async def ping(request):
        return web.json_response({"pong": True})

    api = web.Application()
    api.router.add_get("/ping", ping)
    c = await client_for(store, cfg, subapps={"/api/v1/": api})
    try:
        r = await c.get("/api/v1/ping")
        assert r.status == 200 and await r.json() == {"pong": True}
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert (await c.get("/calls", allow_redirects=False)).status == 303
    finally:
        await c.close()


async def test_the_access_log_shows_no_customer_number(full):
    """The served app logs each request with the number in its path masked and no query string."""
    cfg, store = full
    server = WebServer(make_app(store, cfg), cfg.__class__(**{**cfg.__dict__, "web": cfg.web.__class__(listen="127.0.0.1:0")})
                       if False else cfg)
    server.web = cfg.web.__class__(listen="127.0.0.1:0")
    import aiohttp

    with structlog.testing.capture_logs() as logs:
        await server.start()
        try:
            async with aiohttp.ClientSession() as s:
                await s.get(f"http://127.0.0.1:{server.port}/conversations/+12125550101?number=2125550101",
                            allow_redirects=False)
        finally:
            await server.stop()
    [req] = [e for e in logs if e["event"] == "web_request"]
    assert req["path"] == "/conversations/********0101" and "2125550101" not in repr(logs)
    assert scrub_path("/conversations/+12125550101", "full") == "/conversations/+12125550101"


def test_web_config_refuses_plain_http_off_loopback(tmp_path):
    """A listen address other machines reach needs TLS, or allow_plain_http = true on purpose."""
    base = {"business": {"name": "X"}}
    assert config_mod.parse(base, env={}).web is None
    assert config_mod.parse({**base, "web": {}}, env={}).web.listen == "127.0.0.1:8088"
    with pytest.raises(ConfigError, match="web.listen: .* no TLS"):
        config_mod.parse({**base, "web": {"listen": "192.0.2.10:8088"}}, env={})
    assert config_mod.parse({**base, "web": {"listen": "192.0.2.10:8088", "allow_plain_http": True}}, env={}).web
    with pytest.raises(ConfigError, match="web.tls_key: give both"):
        config_mod.parse({**base, "web": {"tls_cert": str(tmp_path)}}, env={})
    with pytest.raises(ConfigError, match="web.tls_cert: .*no such file"):
        config_mod.parse({**base, "web": {"tls_cert": "/nope.pem", "tls_key": "/nope.key"}}, env={})
    with pytest.raises(ConfigError, match="web.sesion_idle_minutes: unknown key"):
        config_mod.parse({**base, "web": {"sesion_idle_minutes": 5}}, env={})


def test_an_older_store_migrates_its_replies_into_the_inbox(tmp_path):
    """A store written before the front desk gets each conversation's unread replies counted on upgrade."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for i in range(4):
        for stmt in _split_sql(MIGRATIONS[i]):
            db.execute(stmt)
    db.execute("PRAGMA user_version = 4")
    for i, (n, at) in enumerate([("+12125550101", 10.0), ("+12125550101", 20.0), ("+12125550102", 30.0)]):
        db.execute("INSERT INTO incoming (sender, from_number, text, received_at) VALUES ('m', ?, 'hi', ?)", (n, at))
    db.execute("INSERT INTO messages (kind, to_number, state, created, send_at, updated) VALUES "
               "('staff', '+12125550102', 'sent', 40, 40, 40)")
    db.close()
    store = Store(path)
    try:
        a, b = conv_q.state(store, "+12125550101"), conv_q.state(store, "+12125550102")
        assert (a.unread, a.waiting_since, a.last_in_at) == (2, 10.0, 20.0)
        assert (b.unread, b.waiting_since) == (0, None)
    finally:
        store.close()


def test_the_user_command_adds_changes_and_lists_accounts(tmp_path):
    """`textbackd user add/passwd/disable/list` work from a password file and refuse a missing one off a terminal."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[business]\nname = "X"\n[store]\npath = "{tmp_path / "t.db"}"\n[web]\n')
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")

    def tb(*args, stdin=subprocess.DEVNULL):
        return subprocess.run([sys.executable, "-m", "textbackd", "user", *args, "-c", str(cfg)],
                              capture_output=True, text=True, timeout=60, stdin=stdin)

    assert tb("add", "maria", "--role", "owner", "--password-file", str(pw)).stdout == "added maria (owner)\n"
    r = tb("add", "bob", "--role", "admin")
    assert r.returncode == 1 and "--password-file" in r.stderr
    store = Store(tmp_path / "t.db")
    try:
        accounts.set_disabled(store, "maria", True, actor="cli:root", now=time.time())
        assert [a.detail for a in audit.rows(store)][::-1] == ["added maria (owner)", "disabled maria"]
    finally:
        store.close()
    assert re.search(r"^maria\s+owner\s+disabled\s+never", tb("list").stdout, re.M)


async def test_adding_a_user_from_the_page_hashes_off_the_event_loop(full, monkeypatch):
    """The argon2id hash of a new user's password (about 0.3 s of CPU) is made in the password thread, not on the
    daemon's event loop; a bad role is refused before any hash is made. The real hash is made and stored."""
    cfg, store = full
    made_in: list[str] = []
    real = accounts.hash_password

    def recording(password: str) -> str:
        made_in.append(threading.current_thread().name)
        return real(password)

    monkeypatch.setattr(accounts, "hash_password", recording)
    c = await client_for(store, cfg)
    try:
        await sign_in(c, "admin")
        token = token_in(await (await c.get("/users")).text())
        r = await c.post("/users", data={"csrf": token, "name": "omar", "role": "janitor", "password": PASSWORD})
        assert r.status == 400 and "not a role" in await r.text() and made_in == []
        await c.post("/users", data={"csrf": token, "name": "omar", "role": "frontdesk", "password": PASSWORD})
        assert len(made_in) == 1 and made_in[0].startswith("argon2") and made_in[0] != threading.main_thread().name
        assert [u.role for u in accounts.list_users(store) if u.name == "omar"] == [Role.FRONTDESK]
        c2 = await client_for(store, cfg)
        try:
            await sign_in(c2, "omar")  # the stored hash is a real argon2id hash of the password
        finally:
            await c2.close()
    finally:
        await c.close()
