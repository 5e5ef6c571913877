"""The webhook listener: signatures and secrets, size limits, clear 4xx, and what reaches the sink."""

from __future__ import annotations

import socket
from urllib.parse import urlencode

import aiohttp
import pytest
import structlog
from aiohttp import web

from textbackd import config as config_mod
from textbackd.core.model import DeliveryReport, IncomingText
from textbackd.daemon.listener import Listener, webhook_urls
from textbackd.senders.gateway import dlr_token
from textbackd.senders.twilio.sender import signature

TOKEN = "twilio-token-0c8d7e6f"
SECRET = "hook-secret-5b4a3c2d"
PUBLIC = "https://hooks.example.test"


class Sink:
    def __init__(self) -> None:
        self.texts: list[IncomingText] = []
        self.reports: list[DeliveryReport] = []

    async def incoming(self, text: IncomingText) -> None:
        self.texts.append(text)

    async def delivery_report(self, report: DeliveryReport) -> None:
        self.reports.append(report)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(secret: str = SECRET, max_body: int = 2048) -> config_mod.Config:
    return config_mod.parse({
        "business": {"name": "Test Dental"},
        "senders": [
            {"name": "kan", "kind": "kannel", "url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "u"},
            {"name": "tw", "kind": "twilio", "account_sid": "AC1", "auth_token": TOKEN, "from": "+12125550100"},
            {"name": "gen", "kind": "http", "url": "http://127.0.0.1:9/send", "body": {"to": "{to}", "msg": "{text}"}},
        ],
        "http": {"listen": f"127.0.0.1:{free_port()}", "public_url": PUBLIC, "secret": secret,
                 "max_body_bytes": max_body},
    })


@pytest.fixture
async def served():
    sink = Sink()
    listener = Listener(make_config(), sink)

    async def healthz(_r: web.Request) -> web.Response:
        return web.Response(text="ok")

    listener.add_get("/healthz", healthz)
    await listener.start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{listener.port}") as client:
        yield listener, sink, client
    await listener.stop()


def twilio_post(path: str, params: dict[str, str], token: str = TOKEN) -> dict:
    return {
        "data": urlencode(params),
        "headers": {"Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature(token, PUBLIC + path, params.items())},
    }


INBOUND = {"MessageSid": "SM11", "AccountSid": "AC1", "From": "+12125550105", "To": "+12125550100",
           "Body": "Can I book for Tuesday? 😀", "NumMedia": "0"}


async def test_twilio_inbound_with_valid_signature_reaches_sink(served):
    """A correctly signed Twilio inbound webhook is recorded and answered with empty TwiML."""
    _, sink, client = served
    async with client.post("/twilio/tw/incoming", **twilio_post("/twilio/tw/incoming", INBOUND)) as r:
        assert r.status == 200
        assert r.content_type == "text/xml"
        assert "<Response></Response>" in await r.text()
    [t] = sink.texts
    assert (t.sender, t.from_number, t.to_number, t.text, t.provider_id) == (
        "tw", "+12125550105", "+12125550100", "Can I book for Tuesday? 😀", "SM11")


async def test_twilio_unsigned_or_badly_signed_is_403(served):
    """Missing signature, a signature with another token and tampered params are all refused with 403."""
    _, sink, client = served
    plain = {"data": urlencode(INBOUND), "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    forged = twilio_post("/twilio/tw/incoming", INBOUND, token="not-the-token")
    tampered = twilio_post("/twilio/tw/incoming", INBOUND)
    tampered["data"] = urlencode({**INBOUND, "Body": "changed"})
    for kw in (plain, forged, tampered):
        async with client.post("/twilio/tw/incoming", **kw) as r:
            assert r.status == 403
    assert sink.texts == []


async def test_twilio_status_callback_becomes_delivery_reports(served):
    """StatusCallback 'delivered' and 'undelivered' become final delivery reports by message sid."""
    _, sink, client = served
    for status, extra in (("delivered", {}), ("undelivered", {"ErrorCode": "30003"})):
        params = {"MessageSid": f"SM-{status}", "MessageStatus": status, "AccountSid": "AC1", **extra}
        async with client.post("/twilio/tw/status", **twilio_post("/twilio/tw/status", params)) as r:
            assert r.status == 204
    ok, bad = sink.reports
    assert (ok.reference, ok.delivered, ok.final) == ("SM-delivered", True, True)
    assert (bad.reference, bad.delivered, bad.final) == ("SM-undelivered", False, True)
    assert "30003" in bad.detail


async def test_kannel_incoming_needs_the_secret(served):
    """Kannel sms-service requests need http.secret in the path or header; without it, 403."""
    _, sink, client = served
    q = "?from=%2B12125550106&to=12125550100&text=hello+there&id=abc"
    async with client.get("/kannel/kan/incoming" + q) as r:
        assert r.status == 403
    async with client.get("/kannel/kan/incoming/wrong-secret" + q) as r:
        assert r.status == 403
    assert sink.texts == []
    async with client.get(f"/kannel/kan/incoming/{SECRET}" + q) as r:
        assert r.status == 200
        assert await r.text() == ""
    async with client.post("/kannel/kan/incoming?from=12125550107", data="via post-url".encode(),
                           headers={"X-Textbackd-Secret": SECRET, "Content-Type": "text/plain; charset=UTF-8"}) as r:
        assert r.status == 200
    assert [(t.from_number, t.text, t.provider_id) for t in sink.texts] == [
        ("+12125550106", "hello there", "abc"), ("+12125550107", "via post-url", None)]


async def test_kannel_incoming_decodes_utf16_charset(served):
    """A get-url text in UCS-2 (charset=UTF-16BE, as Kannel sends without mo-recode) is decoded."""
    _, sink, client = served
    async with client.get(f"/kannel/kan/incoming/{SECRET}?from=12125550108&text=%04%1F%00%20%D8%3D%DE%00"
                          "&charset=UTF-16BE&coding=2") as r:
        assert r.status == 200
    assert sink.texts[0].text == "П 😀"


async def test_kannel_dlr_needs_the_per_message_signature(served):
    """Kannel delivery reports are accepted only with the HMAC token sent in that text's dlr-url."""
    _, sink, client = served
    good = dlr_token(SECRET, "kan", "ref1")
    async with client.get("/kannel/kan/dlr?ref=ref1&sig=0000&type=1") as r:
        assert r.status == 403
    async with client.get(f"/kannel/kan/dlr?ref=ref2&sig={good}&type=1") as r:
        assert r.status == 403
    async with client.get(f"/kannel/kan/dlr?ref=ref1&sig={good}&type=") as r:
        assert r.status == 400
    async with client.get(f"/kannel/kan/dlr?ref=ref1&sig={good}&type=16") as r:
        assert r.status == 200
    [rep] = sink.reports
    assert (rep.reference, rep.delivered, rep.final, rep.detail) == ("ref1", False, True, "rejected by the SMSC")


async def test_generic_incoming_and_dlr(served):
    """The generic HTTP routes take JSON or form fields with the secret in a header or the path."""
    _, sink, client = served
    async with client.post("/http/gen/incoming", json={"from": "+12125550109", "text": "STOP", "id": "g1"},
                           headers={"X-Textbackd-Secret": SECRET}) as r:
        assert r.status == 200
    async with client.post(f"/http/gen/incoming/{SECRET}", json={"text": "no sender"}) as r:
        assert r.status == 400
        assert "from" in await r.text()
    async with client.post(f"/http/gen/dlr/{SECRET}", data={"id": "g-ref", "status": "DELIVERED"}) as r:
        assert r.status == 200
    assert [(t.sender, t.from_number, t.text) for t in sink.texts] == [("gen", "+12125550109", "STOP")]
    assert [(d.reference, d.delivered, d.final) for d in sink.reports] == [("g-ref", True, True)]


async def test_limits_and_unknown_routes(served):
    """Bodies over max_body_bytes get 413, an unknown sender 404, a wrong kind 404; /healthz can be added."""
    _, sink, client = served
    async with client.post(f"/http/gen/incoming/{SECRET}", data=b"text=" + b"x" * 5000,
                           headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 413
    async with client.get(f"/kannel/nobody/incoming/{SECRET}?from=1&text=x") as r:
        assert r.status == 404
    async with client.post("/twilio/kan/incoming", data="x=1") as r:
        assert r.status == 404
    async with client.get("/healthz") as r:
        assert (r.status, await r.text()) == (200, "ok")
    assert sink.texts == []


async def test_without_http_secret_shared_secret_routes_refuse():
    """With no http.secret configured, Kannel and generic webhooks answer 403 whatever is sent."""
    sink = Sink()
    listener = Listener(make_config(secret=""), sink)
    await listener.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{listener.port}") as client:
            for path in ("/kannel/kan/incoming/x?from=1&text=x", "/kannel/kan/incoming?from=1&text=x",
                         "/http/gen/incoming?from=1&text=x", "/kannel/kan/dlr?ref=a&sig=b&type=1"):
                async with client.get(path) as r:
                    assert r.status == 403, path
    finally:
        await listener.stop()
    assert sink.texts == [] and sink.reports == []


async def test_secrets_and_numbers_stay_out_of_logs(served):
    """Neither the shared secret nor the Twilio token nor a full phone number appears in log events."""
    _, _, client = served
    with structlog.testing.capture_logs() as logs:
        async with client.get(f"/kannel/kan/incoming/{SECRET}?from=12125550110&text=hi") as r:
            assert r.status == 200
        async with client.get("/kannel/kan/incoming/guess?from=12125550110&text=hi") as r:
            assert r.status == 403
        async with client.post("/twilio/tw/incoming", **twilio_post("/twilio/tw/incoming", INBOUND)) as r:
            assert r.status == 200
    text = repr(logs)
    assert len(logs) >= 3
    assert SECRET not in text and TOKEN not in text and "12125550110" not in text and "guess" not in text


def test_webhook_urls_for_the_admin():
    """webhook_urls lists, per sender, the URLs an admin configures, with the secret as a placeholder."""
    urls = webhook_urls(make_config())
    assert urls["tw"]["A message comes in (POST)"] == f"{PUBLIC}/twilio/tw/incoming"
    assert urls["kan"]["sms-service get-url"].startswith(f"{PUBLIC}/kannel/kan/incoming/<http.secret>?from=%p")
    assert SECRET not in repr(urls)


async def test_sink_failure_answers_500_so_the_gateway_retries():
    """When the sink cannot record a reply the webhook answers 500 (Kannel retries), without a traceback page."""

    class Broken(Sink):
        async def incoming(self, text: IncomingText) -> None:
            raise RuntimeError("database is locked")

    listener = Listener(make_config(), Broken())
    await listener.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{listener.port}") as client:
            async with client.get(f"/kannel/kan/incoming/{SECRET}?from=12125550112&text=hi") as r:
                assert r.status == 500
                assert "locked" not in await r.text()
    finally:
        await listener.stop()
