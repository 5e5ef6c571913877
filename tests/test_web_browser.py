"""The front desk in a real Chromium (Debian's, driven by Playwright) against the real daemon: `textbackd
run` reading the built-in AMI replay of a recorded busy hour and texting through the modem simulator.
The steps of issue 12, in order, and a screenshot of each page into docs/screenshots/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import pytest
from aiohttp import web
from e2e import capture, query, rewrite, settled, spawn_daemon, stop_daemon, wait_until, write_config
from smspdudecoder.easy import read_outgoing_sms

from textbackd.pbx.asterisk.replay_server import AmiReplayServer
from textbackd.staff import accounts
from textbackd.store.db import Store

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
CALLER, SHOWN = "+12125550142", "(212) 555-0142"  # the busy hour's first caller, renumbered
PASSWORDS = {"ana": "ana-admin-password", "maria": "maria-desk-password", "lee": "lee-desk-password"}


class GatedAmi(AmiReplayServer):
    """The recorded hour starts only when the test opens the gate (the browser is watching by then)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.gate = asyncio.Event()

    async def paced(self, wanted=lambda b: True):
        await self.gate.wait()
        async for b in super().paced(wanted):
            yield b


def _web_url(log: Path) -> str:
    for line in log.read_text().splitlines():
        if '"web_started"' in line:
            return json.loads(line)["url"]
    return ""


async def _sign_in(page, base: str, name: str, password: str) -> None:
    await page.goto(base + "login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def _no_reload_since(page) -> bool:
    return await page.evaluate("window.tbMarker === 42")


@pytest.fixture
def chromium_path():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium (.ci/apt-packages.txt)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return CHROMIUM


async def test_the_front_desk_in_a_real_browser(tmp_path, sim, chromium_path):
    """Sign in, watch a missed call arrive, answer it (the modem gets the PDU), see the reply live, claim and
    close it, and the security rules hold: roles, sign-out, CSRF, lockout."""
    from playwright.async_api import async_playwright, expect

    db = tmp_path / "textbackd.db"
    store = Store(db)
    for name, role in (("ana", "admin"), ("maria", "frontdesk"), ("lee", "frontdesk")):
        accounts.add_user(store, name, role, PASSWORDS[name], actor="cli:root", now=time.time())
    store.close()
    srv = GatedAmi(rewrite(capture("18-busy-office-hour"), "6145550134", CALLER[2:]), secret="e2e-secret", speed=40)
    await srv.start()
    cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=1, extra='\n[web]\nlisten = "127.0.0.1:0"\n')
    log = tmp_path / "daemon.log"
    proc = await spawn_daemon(cfg, log)
    evil = web.Application()
    evil_runner = None
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        await wait_until(lambda: _web_url(log), 30, what="the front desk to listen")
        base = _web_url(log)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium_path, args=FLAGS)
            ctx = await browser.new_context(viewport={"width": 1280, "height": 860})
            page = await ctx.new_page()

            # 1. sign in
            await page.goto(base)
            await expect(page).to_have_url(re.compile(r"/login"))
            await page.screenshot(path=SHOTS / "login.png")
            await _sign_in(page, base, "ana", PASSWORDS["ana"])
            await expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
            for link in ("Inbox", "Missed calls", "Figures", "Status"):
                await expect(page.get_by_role("navigation").get_by_role("link", name=link)).to_be_visible()
            await expect(page.get_by_role("button", name="Sign out")).to_be_visible()

            # 2. a missed call appears on Missed calls without a reload
            await page.get_by_role("link", name="Missed calls").click()
            await expect(page.get_by_text("No calls")).to_be_visible()
            await page.evaluate("window.tbMarker = 42")
            srv.gate.set()
            row = page.get_by_role("link", name=re.compile(re.escape(SHOWN)))
            await expect(row.first).to_be_visible(timeout=30_000)
            assert await _no_reload_since(page), "the page reloaded instead of updating live"
            await asyncio.wait_for(srv.finished.wait(), 60)
            await wait_until(lambda: settled(db), 30, what="the hour's texts to go out")
            await expect(page.get_by_role("link", name=re.compile(r"\(\d{3}\) \d{3}-\d{4}"))).to_have_count(30)  # every missed call of the hour
            await expect(page.get_by_text("waiting to go")).to_have_count(0)  # the last texts' states arrived live
            await page.screenshot(path=SHOTS / "calls.png")
            tablet = await browser.new_page(viewport={"width": 390, "height": 844}, storage_state=await ctx.storage_state())
            await tablet.goto(base + "calls")
            await tablet.screenshot(path=SHOTS / "calls-phone.png")
            await tablet.close()

            # 3. open its conversation and send a reply; the modem gets the PDU, an independent decoder reads it
            await row.first.click()
            await expect(page.get_by_role("heading", name=re.compile(re.escape(SHOWN)))).to_be_visible()
            answer = "Yes, we can come at 4pm today. See you then! 😊"
            await page.get_by_label("Reply").fill(answer)
            await expect(page.get_by_text("UCS-2", exact=False).first).to_be_visible()
            await page.get_by_role("button", name="Send").click()
            await expect(page.get_by_text("Text queued")).to_be_visible()
            await wait_until(lambda: any(m.text == answer for m in sim.received), 20, what="the modem to get the reply")
            [got] = [m for m in sim.received if m.text == answer]
            decoded = [read_outgoing_sms(h) for h in got.pdus]
            assert {d["recipient"] for d in decoded} == {CALLER}
            assert "".join(d["content"] for d in decoded) == answer

            # 4. a reply sent from the simulator appears in the thread live
            await asyncio.sleep(1.1)  # the SMSC time stamp of a reply has whole seconds: keep the thread's order plain
            await page.evaluate("window.tbMarker = 42")
            await sim.incoming(CALLER, "Great, thank you! Is parking free?")
            await expect(page.get_by_text("Great, thank you! Is parking free?")).to_be_visible(timeout=10_000)
            assert await _no_reload_since(page)
            await expect(page.get_by_text("Staff text by ana")).to_be_visible()
            await page.screenshot(path=SHOTS / "conversation.png", full_page=True)
            await page.get_by_role("navigation").get_by_role("link", name="Inbox").click()
            await expect(page.get_by_role("link", name=re.compile(re.escape(SHOWN)))).to_be_visible()
            await page.screenshot(path=SHOTS / "inbox.png")

            # 5. claim, then mark handled, and the conversation leaves the Inbox
            await page.get_by_role("link", name=re.compile(re.escape(SHOWN))).click()
            await page.get_by_role("button", name="Claim").click()
            await expect(page.get_by_text("The conversation is yours.")).to_be_visible()
            await page.get_by_role("button", name="Mark handled").click()
            await expect(page.get_by_text("Marked handled")).to_be_visible()
            await page.get_by_role("navigation").get_by_role("link", name="Inbox").click()
            await expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
            await expect(page.get_by_role("link", name=re.compile(re.escape(SHOWN)))).to_have_count(0)
            await page.get_by_role("link", name="Figures").click()
            await page.get_by_label("Period").select_option("7")
            await page.get_by_role("button", name="Show").click()
            await expect(page.locator("svg.chart").first).to_be_visible()
            await page.screenshot(path=SHOTS / "figures.png", full_page=True)
            await page.get_by_role("link", name="Status").click()
            await expect(page.get_by_text("connected", exact=False).first).to_be_visible()
            await page.screenshot(path=SHOTS / "status.png", full_page=True)

            # 6. a frontdesk user gets 403 on Figures and Status
            desk_ctx = await browser.new_context()
            desk = await desk_ctx.new_page()
            await _sign_in(desk, base, "maria", PASSWORDS["maria"])
            await expect(desk.get_by_role("heading", name="Inbox")).to_be_visible()
            await expect(desk.get_by_role("navigation").get_by_role("link", name="Figures")).to_have_count(0)
            for path in ("figures", "status"):
                r = await desk.goto(base + path)
                assert r.status == 403, path
                await expect(desk.get_by_role("heading", name="Not for your account")).to_be_visible()

            # 7. sign out, after which the old cookie no longer works
            old = await ctx.storage_state()
            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
            replay_ctx = await browser.new_context(storage_state=old)
            replay = await replay_ctx.new_page()
            await replay.goto(base + "calls")
            await expect(replay).to_have_url(re.compile(r"/login"))
            await expect(replay.get_by_role("button", name="Sign in")).to_be_visible()

            # 8. a cross-site POST without the CSRF token is refused
            target = f"{base}conversations/{CALLER}/claim"

            async def attack(request):
                return web.Response(content_type="text/html", text=(
                    f'<form id="f" method="post" action="{target}"><input name="x" value="1"></form>'
                    '<script>document.getElementById("f").submit()</script>'))

            evil.router.add_get("/", attack)
            evil_runner = web.AppRunner(evil)
            await evil_runner.setup()
            site = web.TCPSite(evil_runner, "localhost", 0)
            await site.start()
            evil_port = evil_runner.addresses[0][1]
            async with desk.expect_response(lambda r: r.url == target) as answered:
                await desk.goto(f"http://localhost:{evil_port}/")
            assert (await answered.value).status == 403
            same_site = await desk_ctx.request.post(target, form={"x": "1"})  # her own cookie, but no token
            assert same_site.status == 403
            [row_] = query(db, "SELECT claimed_by FROM conversations WHERE number = ?", (CALLER,))
            assert row_["claimed_by"] == "web:ana"

            # 9. the sixth wrong password locks the account
            lock = await (await browser.new_context()).new_page()
            for i in range(6):
                await _sign_in(lock, base, "lee", "not the password")
                msg = "locked" if i == 5 else "Wrong username or password."
                await expect(lock.get_by_role("alert")).to_contain_text(msg)
            await _sign_in(lock, base, "lee", PASSWORDS["lee"])
            await expect(lock.get_by_role("alert")).to_contain_text("locked")
            await browser.close()
    finally:
        if evil_runner is not None:
            await evil_runner.cleanup()
        rc = await stop_daemon(proc)
        await srv.stop()
    assert rc == 0, log.read_text()[-3000:]
    actions = [r["action"] for r in query(db, "SELECT action FROM audit ORDER BY id")]
    for a in ("login", "text_sent", "claim", "handled", "logout", "login_failed"):
        assert a in actions, a
    assert "2125550142" not in log.read_text()  # the access log and every other line masks numbers
