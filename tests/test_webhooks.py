"""Webhooks out: a real HTTP receiver on 127.0.0.1 verifies every signature with the `standardwebhooks` library
(unmodified), answers as a flaky, a gone or a refusing receiver would, and sees each event once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from textbackd import config as config_mod
from textbackd.core.errors import ConfigError
from textbackd.core.model import Call, DeliveryState, Direction, MessageState, Outcome, TextKind
from textbackd.daemon.worker import Worker
from textbackd.store import webhooks as wh_q
from textbackd.store.db import Store
from textbackd.webhooks.delivery import Endpoint
from textbackd.webhooks.signing import new_secret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks spec's example secret
T0 = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


class Receiver:
    """An HTTP endpoint that checks each request's signature and answers ``answer(n)`` to the n-th request."""

    def __init__(self, secret: str = SECRET, answer=lambda n: 200, retry_after: str | None = None) -> None:
        self.wh = Webhook(secret)
        self.answer = answer
        self.retry_after = retry_after
        self.requests: list[tuple[str, dict, int]] = []  # (webhook-id, body, status answered)
        self.bad_signatures = 0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = self.wh.verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        status = self.answer(len(self.requests))
        self.requests.append((request.headers["webhook-id"], payload, status))
        headers = {"Retry-After": self.retry_after} if self.retry_after and status in (429, 503) else {}
        return web.Response(status=status, text="a body textbackd must never log", headers=headers)

    @property
    def accepted(self) -> list[tuple[str, dict]]:
        return [(i, b) for i, b, s in self.requests if 200 <= s < 300]

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def cfg(tmp_path: Path, url: str, **hook) -> config_mod.Config:
    return config_mod.parse({
        "business": {"name": "Apex Plumbing"},
        "store": {"path": str(tmp_path / "t.db")},
        "webhooks": [{"name": "crm", "url": url, "secret": SECRET, "retry_base_seconds": 0.02, **hook}],
    }, env={})


def missed_call(i: int) -> Call:
    start = T0 + timedelta(minutes=i)
    return Call(id=f"17953958{i:02d}.1", pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER,
                caller=f"+121255501{i:02d}", caller_raw=f"212555{i:04d}", caller_name="MARIA GARCIA", did="5550100",
                started=start, ended=start + timedelta(seconds=20), ring_seconds=18.0)


async def deliver(store: Store, config: config_mod.Config, until, timeout: float = 20.0, **kw) -> Endpoint:
    """Run the endpoint's worker (as the daemon does) until ``until()`` holds."""
    ep = Endpoint(store, config.webhooks[0], **kw)
    worker = Worker("webhook_crm", ep.process, next_due=ep.next_due, poll=0.05)
    task = asyncio.create_task(worker.run())
    try:
        for _ in range(int(timeout / 0.02)):
            if until():
                break
            await asyncio.sleep(0.02)
        assert until(), "the receiver did not get what it should"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await ep.close()
    return ep


def open_store(config: config_mod.Config) -> Store:
    store = Store(config.store.path)
    wh_q.sync_endpoints(store, [(w.name, w.events) for w in config.webhooks])
    return store


async def test_a_receiver_answering_500_for_a_while_gets_each_event_once_in_order_with_one_id(tmp_path):
    """Five missed calls, a receiver answering 500 to its first 4 requests: every try verifies, every retry
    carries the first try's webhook-id, and the receiver accepts each event exactly once, in the calls' order."""
    async with Receiver(answer=lambda n: 500 if n < 4 else 200) as rx:
        config = cfg(tmp_path, rx.url, events=["call.missed"])
        store = open_store(config)
        for i in range(5):
            assert store.record_call(missed_call(i), now=time.time())
        await deliver(store, config, lambda: len(rx.accepted) == 5)
        await asyncio.sleep(0.2)  # nothing more may come
    assert rx.bad_signatures == 0
    assert {i for i, _, s in rx.requests if s == 500} == {rx.requests[0][0]}  # the retries re-sent the same id
    ids = [i for i, _ in rx.accepted]
    assert len(set(ids)) == 5 and ids[0] == rx.requests[0][0]
    callers = [b["data"]["caller"] for _, b in rx.accepted]
    assert callers == [f"+121255501{i:02d}" for i in range(5)]
    first = rx.accepted[0][1]
    assert first["type"] == "call.missed" and first["timestamp"].endswith("Z")
    # the data is the stored call with the store's field names, times as in `replay`
    stored = store.calls(limit=10)[-1].to_public()
    assert first["data"] == stored and first["data"]["started"] == "2026-11-23T15:00:00.000Z"
    states = [d.state for d in wh_q.deliveries(store, "crm")]
    assert states == [DeliveryState.DELIVERED] * 5
    assert wh_q.deliveries(store, "crm")[0].attempts == 5
    store.close()


async def test_410_gone_disables_the_endpoint_and_tells_the_admin(tmp_path):
    """A receiver answering 410: the endpoint is disabled, what waited for it fails, new events are no longer
    queued for it, and the admin hook is called once; `enable` brings it back for new events."""
    told: list[tuple[str, str]] = []
    async with Receiver(answer=lambda n: 410) as rx:
        config = cfg(tmp_path, rx.url)
        store = open_store(config)
        for i in range(3):
            store.record_call(missed_call(i), now=time.time())
        await deliver(store, config, lambda: wh_q.disabled(store, "crm"),
                      on_disabled=lambda name, reason: told.append((name, reason)))
    assert len(rx.requests) == 1 and told == [("crm", f"{rx.url} answered 410 Gone")]
    assert [d.state for d in wh_q.deliveries(store, "crm")] == [DeliveryState.FAILED] * 3
    store.record_call(missed_call(7), now=time.time())
    assert len(wh_q.deliveries(store, "crm")) == 3  # nothing queued for a gone endpoint
    (status,) = wh_q.status(store, time.time())
    assert status.disabled_at is not None and status.pending == 0 and status.failed == 3
    assert wh_q.enable(store, "crm")
    store.record_call(missed_call(8), now=time.time())
    assert [d.state for d in wh_q.deliveries(store, "crm")][-1] == DeliveryState.PENDING
    store.close()


async def test_a_permanent_4xx_fails_that_event_and_the_next_ones_still_go(tmp_path):
    """400 is permanent: that event fails at once (no retry) with the status kept, and the next event is delivered;
    408, 409 and 429 are retried."""
    async with Receiver(answer=lambda n: {0: 400, 1: 429, 2: 408, 3: 409}.get(n, 200)) as rx:
        config = cfg(tmp_path, rx.url)
        store = open_store(config)
        store.record_call(missed_call(1), now=time.time())
        store.record_call(missed_call(2), now=time.time())
        await deliver(store, config, lambda: len(rx.accepted) == 1)
    first, second = wh_q.deliveries(store, "crm")
    assert (first.state, first.attempts, first.last_status, first.last_error) == (DeliveryState.FAILED, 1, 400, "HTTP 400")
    assert (second.state, second.attempts) == (DeliveryState.DELIVERED, 4)
    assert [i for i, _, _ in rx.requests[1:]] == [second.event.uid] * 4
    store.close()


async def test_retry_after_is_honoured_and_the_horizon_gives_up(tmp_path):
    """A 503 with ``Retry-After: 30`` sets the next try 30 s later; a try that would land past ``retry_hours``
    after the event fails it instead."""
    now = [time.time()]
    async with Receiver(answer=lambda n: 503, retry_after="30") as rx:
        config = cfg(tmp_path, rx.url, retry_hours=1)
        store = open_store(config)
        store.record_call(missed_call(1), now=now[0] - 3550)  # the horizon ends 50 s from now
        ep = Endpoint(store, config.webhooks[0], clock=lambda: now[0])
        assert await ep.process() == 0
        (d,) = wh_q.deliveries(store, "crm")
        assert (d.state, d.attempts, d.next_try) == (DeliveryState.PENDING, 1, now[0] + 30)
        assert await ep.process() == 0 and len(rx.requests) == 1  # not due yet: nothing sent
        now[0] += 30  # the next 30 s would pass the horizon
        assert await ep.process() == 1
        await ep.close()
    (d,) = wh_q.deliveries(store, "crm")
    assert d.state == DeliveryState.FAILED and d.last_error == "gave up after 2 tries over 1 h: HTTP 503"
    assert rx.bad_signatures == 0
    store.close()


async def test_every_kind_of_change_is_an_event_in_its_own_transaction(tmp_path):
    """A missed call, its text through the outbox's states, a reply, a STOP and a conversation marked handled
    each become the event of their type, in order, with the store's own rows as data; none for an unsubscribed type."""
    from textbackd.staff.actions import mark_handled

    config = cfg(tmp_path, "https://crm.example/hook",
                 events=["call.missed", "text.scheduled", "text.sent", "text.delivered", "reply.received",
                         "optout.changed", "conversation.handled"])
    store = open_store(config)
    t = T0.timestamp()
    call = missed_call(1)
    store.record_call(call, now=t)
    mid = store.add_message(to=call.caller, kind=TextKind.TEXTBACK, state=MessageState.SCHEDULED, now=t,
                            call_id="asterisk:" + call.id, text="Hi Maria")
    store.transition(mid, MessageState.SENDING, now=t + 1)
    store.transition(mid, MessageState.SENT, now=t + 2, sender="modem1", refs=("7",), sent_at=t + 2)
    store.transition(mid, MessageState.DELIVERED, now=t + 3, delivered_at=t + 3)
    store.record_incoming(sender="modem1", from_number=call.caller, text="STOP", received_at=t + 4, keyword="stop")
    store.set_opt_out(call.caller, True, now=t + 4, source="sms:modem1")
    mark_handled(store, call.caller, actor="web:maria", now=t + 5)
    answered = missed_call(2).replace(outcome=Outcome.ANSWERED)
    store.record_call(answered, now=t + 6)  # call.answered: not asked for
    ds = wh_q.deliveries(store, "crm")
    assert [d.event.type for d in ds] == ["call.missed", "text.scheduled", "text.sent", "text.delivered",
                                          "reply.received", "optout.changed", "conversation.handled"]
    assert len({d.event.uid for d in ds}) == len(ds)
    sent = ds[2].event.data
    assert (sent["id"], sent["state"], sent["sender"], sent["refs"], sent["call_id"]) == (
        mid, "sent", "modem1", ["7"], "asterisk:" + call.id)
    assert ds[4].event.data["keyword"] == "stop" and ds[5].event.data["active"] is True
    assert ds[6].event.data == {"number": call.caller, "claimed_by": None, "claimed_at": None,
                                "handled_by": "web:maria", "handled_at": "2026-11-23T15:00:05.000Z"}
    store.close()


def test_config_refuses_plain_http_bad_secrets_and_unknown_events(tmp_path):
    """https only (plain http to loopback or with allow_http), a whsec_ secret of 24-64 bytes, known event names."""
    def parse(**hook):
        return config_mod.parse({"business": {"name": "Apex"},
                                 "webhooks": [{"name": "crm", "secret": SECRET, **hook}]}, env={})

    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.url: must be https://"):
        parse(url="http://crm.example/hook")
    assert parse(url="http://crm.example/hook", allow_http=True).webhooks[0].allow_http
    assert parse(url="http://[::1]:8080/hook").webhooks[0].url == "http://[::1]:8080/hook"
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.secret: must be a Standard Webhooks secret"):
        parse(url="https://crm.example/hook", secret="hunter2")
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.secret: must hold 24 to 64 bytes, not 3"):
        parse(url="https://crm.example/hook", secret="whsec_YWJj")
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.events\[1\]: 'call.mised' is not an event"):
        parse(url="https://crm.example/hook", events=["call.missed", "call.mised"])
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.timeout: must be at most 30"):
        parse(url="https://crm.example/hook", timeout=120)
    with pytest.raises(ConfigError, match=r"webhooks\[0\]\.secrte: unknown key"):
        parse(url="https://crm.example/hook", secrte="x")
    fresh = new_secret()
    assert Webhook(fresh) and parse(url="https://crm.example/hook", secret=fresh).webhooks[0].secret.reveal() == fresh
    assert SECRET not in repr(parse(url="https://crm.example/hook"))
