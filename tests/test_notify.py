"""Staff e-mail against a real SMTP server (aiosmtpd on 127.0.0.1): forwarded replies, outages, escalation, summaries."""

import asyncio
import json
import socket
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from test_followups import Clock

from textbackd import config
from textbackd.core.model import Call, Direction, IncomingText, MessageState, Outcome
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.notify import Notifier
from textbackd.daemon.pipeline import Pipeline
from textbackd.store.db import Store

# Tuesday 2026-11-24 15:00 in New York: open
T0 = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)
CALLER = "+12125550134"
STAFF = ("desk@apex.example", "owner@apex.example")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl, inbox
    ctl.stop()


def make_cfg(port, **email):
    return config.parse(
        {
            "business": {
                "name": "Apex Plumbing",
                "timezone": "America/New_York",
                "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
            },
            "lines": [{"did": "2125550100", "name": "Main line"}],
            "email": {
                "host": "127.0.0.1", "port": port, "from": "textbackd@apex.example", "to": list(STAFF),
                "starttls": False, "receive_listen": "127.0.0.1:8026", "reply_domain": "reply.apex.example",
            } | email,
        },
        env={},
    )


def missed(cid="1.1", caller=CALLER, at=T0, voicemail=True):
    return Call(
        id=cid, pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.VOICEMAIL, caller=caller,
        caller_raw=caller, caller_name="MARIA GARCIA", did="2125550100", started=at - timedelta(seconds=40),
        ended=at, ring_seconds=20, voicemail_left=voicemail, voicemail_box="101" if voicemail else None,
    )


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "n.db")
    yield s
    s.close()


async def _reply(store, cfg, clock, notifier, text="Can you come tomorrow at 9?"):
    Pipeline(store, cfg).handle_call(missed(), clock())
    mid = store.messages(limit=1)[0].id
    store.transition(mid, MessageState.SENDING, now=clock.t + 30)
    store.transition(mid, MessageState.SENT, now=clock.t + 31, sender="modem1", refs=("7",), sent_at=clock.t + 31)
    clock.t += 600
    conv = Conversations(store, cfg, clock=clock, on_reply=notifier.on_reply)
    await conv.incoming(IncomingText(sender="modem1", from_number=CALLER, text=text,
                                     received_at=datetime.fromtimestamp(clock.t, tz=timezone.utc)))


async def test_a_reply_is_forwarded_with_its_context_and_a_reply_to(store, smtp):
    """A reply reaches every staff address with the caller, number dialled, local time, outcome, voicemail and texts."""
    ctl, inbox = smtp
    cfg = make_cfg(ctl.port)
    clock = Clock(T0.timestamp())
    notifier = Notifier(store, cfg, clock=clock)
    await _reply(store, cfg, clock, notifier)
    assert await notifier.send_due() == 1
    (mail_from, rcpts, msg), = inbox.mails
    assert mail_from == "textbackd@apex.example" and sorted(rcpts) == sorted(STAFF)
    assert msg["Subject"].startswith("Text from Maria Garcia")
    body = msg.get_content()
    assert "Can you come tomorrow at 9?" in body
    assert "(212) 555-0134" in body  # the caller, formatted for people
    assert "(212) 555-0100 (Main line)" in body  # the number dialled
    assert "Tue 24 Nov 2026 15:00 EST" in body  # the missed call in business time
    assert "went to voicemail" in body and "Voicemail left:  yes (box 101)" in body
    assert "us → them (textback, sent): Hi, this is Main line" in body
    assert "them → us: Can you come tomorrow at 9?" in body
    reply_to = msg["Reply-To"]
    assert reply_to.startswith("textbackd+r") and reply_to.endswith("@reply.apex.example")
    row = store.db.execute("SELECT headers FROM emails").fetchone()
    assert json.loads(row["headers"])["_number"] == CALLER
    assert "_number" not in msg and "_token" not in msg  # bookkeeping never leaves


async def test_an_smtp_outage_queues_the_mail_and_never_blocks_texting(store, tmp_path):
    """With the SMTP server down the reply still lands and its mail waits; once the server is up it is sent."""
    port = free_port()
    cfg = make_cfg(port)
    clock = Clock(T0.timestamp())
    notifier = Notifier(store, cfg, clock=clock, smtp_timeout=5)
    await _reply(store, cfg, clock, notifier, text="hello?")
    assert store.incoming(number=CALLER)[0].text == "hello?"  # texting side done, mail only queued
    assert await notifier.send_due() == 0
    row = store.db.execute("SELECT * FROM emails").fetchone()
    assert row["state"] == "queued" and row["attempts"] == 1 and row["next_try"] == clock.t + 30
    assert "127.0.0.1" in row["last_error"]
    assert await notifier.send_due() == 0  # not due yet: no second try before the backoff
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        clock.t += 31
        assert await notifier.send_due() == 1
    finally:
        ctl.stop()
    assert store.db.execute("SELECT state, attempts FROM emails").fetchone()[:] == ("sent", 2)
    assert "hello?" in inbox.mails[0][2].get_content()


async def test_a_5xx_answer_fails_the_mail_without_retrying(store, smtp):
    """A server that refuses the recipients makes the mail 'failed' at once, with the reason kept."""
    ctl, inbox = smtp

    class Refuser:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            return "550 5.1.1 no such user"

    bad = Controller(Refuser(), hostname="127.0.0.1", port=free_port())
    bad.start()
    try:
        cfg = make_cfg(bad.port)
        notifier = Notifier(store, cfg, clock=Clock(T0.timestamp()))
        notifier.queue("reply", "s", "b")
        assert await notifier.send_due() == 0
    finally:
        bad.stop()
    row = store.db.execute("SELECT state, last_error FROM emails").fetchone()
    assert row["state"] == "failed" and "refused" in row["last_error"]


async def test_every_missed_call_mode_mails_each_missed_call(store, smtp):
    """notify = every_missed_call sends one mail per missed call with what textbackd decided."""
    ctl, inbox = smtp
    cfg = make_cfg(ctl.port, notify="every_missed_call")
    clock = Clock(T0.timestamp())
    notifier = Notifier(store, cfg, clock=clock)
    call = missed(voicemail=False)
    out = Pipeline(store, cfg).handle_call(call, clock())
    notifier.on_call(call, out)
    notifier.on_call(call, Pipeline(store, cfg).handle_call(call, clock()))  # seen again: no second mail
    await notifier.send_due()
    (_, _, msg), = inbox.mails
    assert msg["Subject"] == "Missed call from Maria Garcia ((212) 555-0134)"
    assert "a text is scheduled for Tue 24 Nov 2026 15:00 EST" in msg.get_content()
    assert "Voicemail left:  no" in msg.get_content()


async def test_replies_only_mode_does_not_mail_missed_calls(store, smtp):
    """The default notify = replies_only queues nothing for a missed call."""
    ctl, _ = smtp
    cfg = make_cfg(ctl.port)
    notifier = Notifier(store, cfg, clock=Clock(T0.timestamp()))
    call = missed()
    assert notifier.on_call(call, Pipeline(store, cfg).handle_call(call, T0.timestamp())) is None
    assert store.db.execute("SELECT COUNT(*) FROM emails").fetchone()[0] == 0


async def test_escalation_after_silence_is_mailed_once_with_the_whole_context(store, smtp):
    """No reply and no call-back 4h after the text-back: one escalation mail; a caller who replied is not escalated."""
    ctl, inbox = smtp
    cfg = make_cfg(ctl.port, escalate_after="4h")
    clock = Clock(T0.timestamp())
    notifier = Notifier(store, cfg, clock=clock)
    p = Pipeline(store, cfg)
    for cid, caller in (("1.1", CALLER), ("1.2", "+12125550135")):
        p.handle_call(missed(cid, caller), clock())
    for m in store.messages(limit=5):
        store.transition(m.id, MessageState.SENDING, now=clock.t + 30)
        store.transition(m.id, MessageState.SENT, now=clock.t + 31, sender="modem1", refs=(), sent_at=clock.t + 31)
    store.record_incoming(sender="modem1", from_number="+12125550135", text="thanks, later", received_at=clock.t + 900)
    clock.t += 3 * 3600
    assert notifier.check_escalations(clock.t) == 0  # too early
    clock.t += 3600 + 60
    assert notifier.check_escalations(clock.t) == 1
    assert notifier.check_escalations(clock.t) == 0  # once
    await notifier.send_due()
    (_, _, msg), = inbox.mails
    assert msg["Subject"] == "No answer yet from Maria Garcia ((212) 555-0134)"
    body = msg.get_content()
    assert "no reply to our text and no call back 4.0h after it was sent" in body
    assert "Missed call at:  Tue 24 Nov 2026 15:00 EST" in body and "us → them (textback, sent)" in body


async def test_daily_summary_is_sent_once_per_day_with_the_stats_table(store, smtp):
    """summary = daily mails yesterday's figures once, after 07:00 business time."""
    ctl, inbox = smtp
    cfg = make_cfg(ctl.port, summary="daily")
    clock = Clock(T0.timestamp())
    notifier = Notifier(store, cfg, clock=clock)
    Pipeline(store, cfg).handle_call(missed(), clock())
    wed_0630 = datetime(2026, 11, 25, 11, 30, tzinfo=timezone.utc).timestamp()
    start, end = notifier.summary_period(wed_0630)
    assert datetime.fromtimestamp(end, tz=cfg.business.tz).strftime("%a %H:%M") == "Tue 00:00"  # before 07:00
    wed_0710 = wed_0630 + 40 * 60
    start, end = notifier.summary_period(wed_0710)
    assert datetime.fromtimestamp(start, tz=cfg.business.tz).strftime("%a %d %H:%M") == "Tue 24 00:00"
    assert notifier.check_summary(wed_0710) == 1
    assert notifier.check_summary(wed_0710 + 3600) == 0
    await notifier.send_due()
    (_, _, msg), = inbox.mails
    assert msg["Subject"] == "Daily missed-call summary for Apex Plumbing: Tue 24 Nov 2026"
    body = msg.get_content()
    assert "missed" in body.splitlines()[2] and body.splitlines()[4].split()[:3] == ["all", "1", "0"]


async def test_weekly_summary_covers_the_previous_monday_to_sunday(store, smtp):
    """summary = weekly: on Wednesday the due summary is the week that ended last Monday 00:00."""
    ctl, _ = smtp
    notifier = Notifier(store, make_cfg(ctl.port, summary="weekly"), clock=Clock(T0.timestamp()))
    start, end = notifier.summary_period(datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc).timestamp())
    tz = notifier.config.business.tz
    assert datetime.fromtimestamp(start, tz=tz).strftime("%a %d") == "Mon 16"
    assert datetime.fromtimestamp(end, tz=tz).strftime("%a %d") == "Mon 23"


async def test_the_worker_sends_queued_mail_in_the_background(store, smtp):
    """Notifier.run sends what is queued while it runs and stops on stop()."""
    ctl, inbox = smtp
    notifier = Notifier(store, make_cfg(ctl.port), poll=0.05)
    task = asyncio.create_task(notifier.run())
    notifier.queue("reply", "hello", "body")
    for _ in range(200):
        if inbox.mails:
            break
        await asyncio.sleep(0.02)
    notifier.stop()
    await task
    assert [m["Subject"] for _, _, m in inbox.mails] == ["hello"]


def test_config_refuses_a_receive_listen_that_is_not_host_port():
    """[email] receive_listen must be host:port; the error names the key."""
    with pytest.raises(config.ConfigError, match="email.receive_listen"):
        make_cfg(25, receive_listen="8026")


async def test_smtp_login_uses_the_password_from_a_file_and_never_logs_it(store, tmp_path, capsys):
    """username + password_file log in to the SMTP server (AUTH PLAIN); the secret is in no log line."""
    from aiosmtpd.smtp import AuthResult

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret-smtp", handled=False)

    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                     auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])
    ctl.start()
    (tmp_path / "pw").write_text("s3cret-smtp\n")
    try:
        cfg = make_cfg(ctl.port, username="textbackd", password_file=str(tmp_path / "pw"))
        notifier = Notifier(store, cfg, clock=Clock(T0.timestamp()))
        notifier.queue("reply", "with login", "b")
        assert await notifier.send_due() == 1
        bad = make_cfg(ctl.port, username="textbackd", password="wrong")
        notifier = Notifier(store, bad, clock=Clock(T0.timestamp()), smtp_timeout=5)
        notifier.queue("reply", "bad login", "b")
        assert await notifier.send_due() == 0
    finally:
        ctl.stop()
    assert logins[0] == (b"textbackd", b"s3cret-smtp") and len(inbox.mails) == 1
    row = store.db.execute("SELECT state, last_error FROM emails WHERE subject='bad login'").fetchone()
    assert row["state"] == "queued" and "refused the login" in row["last_error"]  # an admin can fix it: retried
    assert "s3cret-smtp" not in capsys.readouterr().out and "wrong" not in row["last_error"]


async def test_digest_mode_mails_each_past_hour_with_missed_calls_once(store, smtp):
    """notify = digest: no mail per call, one mail listing the past hour's missed calls, and none for a quiet hour."""
    ctl, inbox = smtp
    cfg = make_cfg(ctl.port, notify="digest")
    clock = Clock(T0.timestamp() + 600)
    notifier = Notifier(store, cfg, clock=clock)
    p = Pipeline(store, cfg)
    for cid, caller in (("1.1", CALLER), ("1.2", "+12125550135")):
        call = missed(cid, caller, at=T0 + timedelta(minutes=10))
        assert notifier.on_call(call, p.handle_call(call, clock())) is None
    clock.t = T0.timestamp() + 3600 + 5  # 16:00:05 New York: the 15:00-16:00 hour is over
    assert notifier.check_digest(clock.t) == 1
    assert notifier.check_digest(clock.t + 60) == 0
    assert notifier.check_digest(clock.t + 3600) == 0  # 16:00-17:00 had no missed call
    await notifier.send_due()
    (_, _, msg), = inbox.mails
    assert msg["Subject"] == "2 missed call(s) in the last hour"
    body = msg.get_content()
    assert "Maria Garcia ((212) 555-0134) → 2125550100: went to voicemail; text scheduled" in body


async def test_a_running_daemon_mails_staff_about_texts_a_crash_left_unknown(tmp_path, smtp):
    """A text a crash left 'sending' after its hand-over becomes 'unknown' at the next start and staff get one mail
    about it, saying how to send it again on purpose."""
    from textbackd.daemon.service import Daemon
    from textbackd.store import outbox as outbox_q

    ctl, inbox = smtp
    db = tmp_path / "d.db"
    store = Store(db)
    now = T0.timestamp()
    mid = store.add_message(to=CALLER, kind="textback", state=MessageState.SCHEDULED, now=now, text="Sorry we missed you")
    store.transition(mid, MessageState.SENDING, now=now + 1)
    outbox_q.hand_over(store, mid, part=1, total=1, sender="modem1", now=now + 1.5)
    store.close()
    cfg = config.parse(
        {
            "pbx": {"host": "127.0.0.1", "port": 9, "connect_timeout": 1},
            "business": {"name": "Apex Plumbing", "timezone": "America/New_York"},
            "store": {"path": str(db)},
            "http": {"listen": "127.0.0.1:0"},
            "email": {"host": "127.0.0.1", "port": ctl.port, "from": "tb@apex.example", "to": list(STAFF),
                      "starttls": False},
        },
        env={},
    )
    d = Daemon(cfg, senders=[], handle_signals=False)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(d.wait_ready(), 10)
        for _ in range(200):
            if inbox.mails:
                break
            await asyncio.sleep(0.05)
    finally:
        d.stop()
        await asyncio.wait_for(task, 10)
    (_, _, msg), = inbox.mails
    assert msg["Subject"] == "1 text(s) with an unknown outcome"
    assert "(212) 555-0134 (textback): Sorry we missed you" in msg.get_content()
    assert f"textbackd resend {mid}" in msg.get_content()
    assert Store(db).message(mid).state is MessageState.UNKNOWN
