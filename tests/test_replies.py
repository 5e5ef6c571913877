"""Replies and staff answers: through a real daemon, the modem simulator, Kannel, aiosmtpd and the mail listener."""

import asyncio
import dataclasses
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from e2e import capture, query, renumber, settled, spawn_daemon, stop_daemon, wait_until, write_config
from test_followups import Clock
from test_kannel import FakeSmsc, kannel, until  # noqa: F401 - a real Kannel for this module
from test_kannel import make_config as kannel_config
from test_notify import Inbox, free_port

from textbackd import config
from textbackd.config import EmailConfig
from textbackd.core.model import Call, Direction, IncomingText, MessageState, Outcome
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.listener import Listener
from textbackd.daemon.mail_in import MailIn, answer_text
from textbackd.daemon.notify import Notifier
from textbackd.daemon.pipeline import Pipeline
from textbackd.pbx.asterisk.replay_server import AmiReplayServer
from textbackd.senders.registry import build_sender
from textbackd.staff.actions import queue_staff_text
from textbackd.store.db import Store

CALLER = "+12125550102"  # the caller of the recorded 02-voicemail-left trace
STAFF = "desk@apex.example"


@pytest.fixture
def smtp():
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl.port, inbox
    ctl.stop()


def staff_mail(to: str, body: str, frm: str = STAFF) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = to
    msg["Subject"] = "Re: Text from (212) 555-0102"
    msg.set_content(body)
    return msg


async def reply_by_mail(port: int, to: str, body: str, frm: str = STAFF) -> None:
    await aiosmtplib.send(staff_mail(to, body, frm), hostname="127.0.0.1", port=port, start_tls=False, timeout=10)


def cli_reply(cfg, number, text):
    return subprocess.run([sys.executable, "-m", "textbackd", "reply", "-c", str(cfg), number, text],
                          capture_output=True, text=True, timeout=60)


EMAIL_EXTRA = """
[email]
host = "127.0.0.1"
port = {smtp}
from = "textbackd@apex.example"
to = ["{staff}"]
starttls = false
receive_listen = "127.0.0.1:{mail_in}"
reply_domain = "reply.apex.example"

[[followups]]
after = "1h"
text = "{{business}} again: still need a hand? Just reply."
"""


@pytest.mark.slow
async def test_the_whole_loop_in_a_running_daemon(tmp_path, sim, smtp):
    """Missed call → text by modem → reply forwarded by mail → staff answer by mail and CLI → STOP → next call gets no text."""
    smtp_port, inbox = smtp
    mail_in = free_port()
    db = tmp_path / "textbackd.db"
    log = tmp_path / "daemon.log"
    extra = EMAIL_EXTRA.format(smtp=smtp_port, staff=STAFF, mail_in=mail_in)
    async with AmiReplayServer(capture("02-voicemail-left"), secret="e2e-secret", speed=0) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=0.5, extra=extra)
        proc = await spawn_daemon(cfg, log)
        try:
            await wait_until(lambda: len(sim.received) == 1, 30, what="the text-back")
            assert sim.received[0].to == CALLER
            await wait_until(lambda: query(db, "SELECT 1 FROM messages WHERE kind='followup'"), 10, what="follow-up")

            await sim.incoming(CALLER, "Can you come at 3?")
            await wait_until(lambda: inbox.mails, 20, what="the forwarded reply")
            mail = inbox.mails[0][2]
            body = mail.get_content()
            assert "Can you come at 3?" in body and "Voicemail left:  yes (box 101)" in body
            assert "us → them (textback, sent): Hi, this is Apex Plumbing" in body
            # the reply stopped the follow-up at once
            assert [(r["state"], r["reason"]) for r in query(db, "SELECT state, reason FROM messages WHERE kind='followup'")] == [
                ("cancelled", "replied")
            ]

            await reply_by_mail(mail_in, mail["Reply-To"], "Yes, 3pm works.\nSee you then\n\nOn Mon, textbackd wrote:\n> Can you come at 3?\n")
            await wait_until(lambda: len(sim.received) == 2, 20, what="the staff text by mail")
            assert (sim.received[1].to, sim.received[1].text) == (CALLER, "Yes, 3pm works. See you then")

            out = await asyncio.to_thread(cli_reply, cfg, "(212) 555-0102", "Running 10 min late")
            assert out.returncode == 0, out.stderr
            await wait_until(lambda: len(sim.received) == 3, 20, what="the staff text from the CLI")
            assert sim.received[2].text == "Running 10 min late"

            await sim.incoming(CALLER, "stop")
            await wait_until(lambda: len(sim.received) == 4, 20, what="the opt-out confirmation")
            assert "unsubscribed" in sim.received[3].text
            refused = await asyncio.to_thread(cli_reply, cfg, CALLER, "one more thing")
            assert refused.returncode == 1 and "opted out" in refused.stderr and "Traceback" not in refused.stderr
            with pytest.raises(aiosmtplib.SMTPDataError) as ei:
                await reply_by_mail(mail_in, mail["Reply-To"], "are you there?")
            assert ei.value.code == 550 and "opted out" in ei.value.message
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0, log.read_text()[-3000:]

    # the same caller misses the office again: no text, recorded as opted_out
    async with AmiReplayServer(renumber(capture("02-voicemail-left"), 1), secret="e2e-secret", speed=0) as srv2:
        cfg.write_text(cfg.read_text().replace(f"port = {srv.port}\n", f"port = {srv2.port}\n", 1))
        proc = await spawn_daemon(cfg, log)
        try:
            await asyncio.wait_for(srv2.finished.wait(), 30)
            await wait_until(lambda: len(query(db, "SELECT 1 FROM calls")) == 2 and settled(db), 20, what="2nd call")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    assert len(sim.received) == 4
    rows = query(db, "SELECT state, reason FROM messages WHERE kind='textback' ORDER BY id")
    assert [(r["state"], r["reason"]) for r in rows][1] == ("skipped", "opted_out")
    assert [m["Subject"] for _, _, m in inbox.mails][-1].endswith("opted out (STOP)")


async def test_a_reply_through_kannel_is_forwarded_to_staff(kannel, smtp, tmp_path):  # noqa: F811
    """A phone's reply travels fakesmsc → bearerbox → smsbox → listener → conversations → SMTP mail to staff."""
    smtp_port, inbox = smtp
    cfg = kannel_config(kannel)
    cfg = dataclasses.replace(cfg, email=EmailConfig(host="127.0.0.1", port=smtp_port, from_="tb@apex.example",
                                                      to=(STAFF,), starttls=False))
    store = Store(tmp_path / "k.db")
    notifier = Notifier(store, cfg)
    conversations = Conversations(store, cfg, on_reply=notifier.on_reply)
    sender = build_sender("kan", cfg)
    listener = Listener(cfg, conversations, [sender])
    await listener.start()
    await sender.start(conversations)
    smsc = FakeSmsc(kannel)
    try:
        smsc.inject("12125550121 12125550100 text Is Tuesday ok?")
        await until(lambda: store.db.execute("SELECT 1 FROM emails").fetchone(), "the queued mail", kannel)
        await notifier.send_due()
    finally:
        smsc.close()
        await sender.close()
        await listener.stop()
        store.close()
    ((_, _, mail),) = inbox.mails
    assert "Is Tuesday ok?" in mail.get_content() and "(212) 555-0121" in mail["Subject"]


# --------------------------------------------------------------------------------------
# the mail listener's rules, in process

T0 = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)


def cfg_for(mail_in_port: int, smtp_port: int = 25):
    return config.parse(
        {
            "business": {"name": "Apex Plumbing", "timezone": "America/New_York"},
            "email": {"host": "127.0.0.1", "port": smtp_port, "from": "textbackd@apex.example",
                      "to": [STAFF, "owner@apex.example"], "starttls": False,
                      "receive_listen": f"127.0.0.1:{mail_in_port}"},
        },
        env={},
    )


@pytest.fixture
async def listening(tmp_path):
    port = free_port()
    cfg = cfg_for(port)
    store = Store(tmp_path / "m.db")
    clock = Clock(T0.timestamp())
    mail_in = MailIn(store, cfg, clock=clock)
    await mail_in.start()
    notifier = Notifier(store, cfg, clock=clock)
    Pipeline(store, cfg).handle_call(
        Call(id="9.1", pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER, caller=CALLER,
             caller_raw=CALLER, caller_name="", did="2125550100", started=T0 - timedelta(seconds=20), ended=T0),
        clock.t,
    )
    await Conversations(store, cfg, clock=clock, on_reply=notifier.on_reply).incoming(
        IncomingText(sender="m", from_number=CALLER, text="hello", received_at=T0 + timedelta(minutes=5)))
    headers = store.db.execute("SELECT headers FROM emails").fetchone()["headers"]
    import json

    reply_to = json.loads(headers)["Reply-To"]
    yield port, store, cfg, reply_to
    await mail_in.stop()
    store.close()


def staff_texts(store):
    return [m for m in store.messages(limit=20) if m.kind == "staff"]


async def test_staff_answer_by_mail_becomes_a_staff_text(listening):
    """A staff member's answer to the Reply-To is queued as a staff text, quoted original left out."""
    port, store, cfg, reply_to = listening
    assert reply_to.startswith("textbackd+r") and reply_to.endswith("@apex.example")
    await reply_by_mail(port, reply_to, "Sure, we can do 4pm.\n\n-----Original Message-----\nFrom: textbackd\nhello\n",
                        frm="Owner <OWNER@apex.example>")
    (m,) = staff_texts(store)
    assert (m.to_number, m.text, m.state, m.template) == (CALLER, "Sure, we can do 4pm.", MessageState.SCHEDULED, "mail")
    assert m.call_id == "asterisk:9.1"


async def test_mail_from_a_stranger_or_for_an_unknown_conversation_is_refused(listening):
    """Only staff senders, only tokens textbackd wrote: anything else is a 550 and queues nothing."""
    port, store, cfg, reply_to = listening
    with pytest.raises(aiosmtplib.SMTPSenderRefused):
        await reply_by_mail(port, reply_to, "hi", frm="mallory@evil.example")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await reply_by_mail(port, "textbackd+r0123456789abcdef@apex.example", "hi")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await reply_by_mail(port, "textbackd@apex.example", "hi")
    # envelope from staff, but the From: header is someone else
    msg = staff_mail(reply_to, "hi", frm="mallory@evil.example")
    with pytest.raises(aiosmtplib.SMTPDataError):
        await aiosmtplib.send(msg, sender=STAFF, hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
    with pytest.raises(aiosmtplib.SMTPDataError):
        await reply_by_mail(port, reply_to, "> only quoted text\n")
    assert staff_texts(store) == []


@pytest.mark.parametrize(
    "body, text",
    [
        ("Yes!\r\n\r\nOn Tue, Nov 24, 2026 at 3:05 PM textbackd <textbackd@apex.example>\r\nwrote:\r\n> hello\r\n", "Yes!"),
        ("Call you at 5.\n-- \nMaria, front desk\n", "Call you at 5."),
        ("ok\n\nSent from my iPhone\n\n> On Nov 24 textbackd wrote:\n", "ok"),
        ("Line one\nline two\n________________________________\nFrom: textbackd\n", "Line one line two"),
        ("  spaced   out  \n\n\n", "spaced out"),
    ],
)
def test_answer_text_keeps_only_the_staff_members_words(body, text):
    """Gmail, Outlook, Apple Mail and signature separators end the answer."""
    assert answer_text(body) == text


def test_reply_command_refuses_opted_out_and_invalid_numbers(tmp_path):
    """`textbackd reply` queues a staff text, and refuses a number that opted out or cannot get texts."""
    cfg_file = tmp_path / "t.toml"
    cfg_file.write_text(f'[business]\nname = "Apex"\n[store]\npath = "{tmp_path / "r.db"}"\n')
    ok = cli_reply(cfg_file, "212-555-0144", "See you at 4")
    assert ok.returncode == 0 and "queued text" in ok.stdout
    store = Store(tmp_path / "r.db")
    (m,) = staff_texts(store)
    assert (m.to_number, m.text, m.template) == ("+12125550144", "See you at 4", "cli")
    store.set_opt_out("+12125550144", True, now=T0.timestamp(), source="sms:test")
    store.close()
    refused = cli_reply(cfg_file, "+12125550144", "hello?")
    assert refused.returncode == 1 and "opted out" in refused.stderr
    invalid = cli_reply(cfg_file, "101", "hi")
    assert invalid.returncode == 1 and "cannot get texts" in invalid.stderr and "Traceback" not in invalid.stderr


async def test_opt_out_then_a_new_missed_call_gets_no_text(tmp_path):
    """After STOP a new missed call from the number is skipped as opted_out, and staff cannot text it either."""
    cfg = cfg_for(free_port())
    store = Store(tmp_path / "o.db")
    clock = Clock(T0.timestamp())
    p = Pipeline(store, cfg)

    def call(cid, at):
        return Call(id=cid, pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER, caller=CALLER,
                    caller_raw=CALLER, caller_name="", did="2125550100", started=at - timedelta(seconds=20), ended=at)

    assert p.handle_call(call("1", T0), clock.t).decision.action == "text"
    await Conversations(store, cfg, clock=clock).incoming(
        IncomingText(sender="m", from_number=CALLER, text="STOP", received_at=T0 + timedelta(minutes=1)))
    later = T0 + timedelta(days=3)
    out = p.handle_call(call("2", later), later.timestamp())
    assert store.message(out.message_id).state is MessageState.SKIPPED
    assert store.message(out.message_id).reason == "opted_out"
    with pytest.raises(Exception, match="opted out"):
        queue_staff_text(store, cfg, CALLER, "hello", now=later.timestamp(), source="cli")
    store.close()


async def test_a_reply_to_token_expires_after_30_days(listening):
    """An answer to a conversation mail older than 30 days is refused at RCPT time."""
    port, store, cfg, reply_to = listening
    store.db.execute("UPDATE emails SET created = created - 31 * 86400")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await reply_by_mail(port, reply_to, "late answer")
    assert staff_texts(store) == []
