"""The generic HTTP sender against a local HTTP server: request shape from the config, success rule, failures."""

from __future__ import annotations

import email.utils
import json
import socket
import time

import pytest
from aiohttp import web
from pytest_httpserver import HTTPServer

from textbackd import config as config_mod
from textbackd.core.errors import PermanentSendError, SenderUnavailableError, TemporarySendError
from textbackd.core.model import MessageState
from textbackd.daemon.outbox import Outbox
from textbackd.senders.base import NullSink
from textbackd.senders.http.sender import HttpSender, json_path, render
from textbackd.senders.registry import build_sender
from textbackd.store.db import Store

API_KEY = "key-6a5b4c3d2e1f"


def make_config(url: str, **extra: object) -> config_mod.Config:
    sender = {"name": "gw", "kind": "http", "url": url, "from": "+12125550100", "timeout": 2,
              "body": {"to": "{to}", "text": "{text}", "sender": "{from}"}, **extra}
    return config_mod.parse({"business": {"name": "Test Dental"}, "senders": [sender]})


async def send(server: HTTPServer, text: str = "Hi there", **extra: object):
    cfg = make_config(server.url_for("/send"), **extra)
    sender = build_sender("gw", cfg)
    assert isinstance(sender, HttpSender)
    await sender.start(NullSink())
    try:
        return await sender.send("+12125550101", text)
    finally:
        await sender.close()


async def test_form_post_from_templates(httpserver: HTTPServer):
    """Default form body: each configured field rendered with {to}, {text} and {from}, headers as given."""
    httpserver.expect_oneshot_request(
        "/send", method="POST",
        headers={"X-Api-Key": API_KEY, "Content-Type": "application/x-www-form-urlencoded"},
        data=b"to=%2B12125550101&text=Caf%C3%A9+%7B50%25%7D&sender=%2B12125550100",
    ).respond_with_data("queued", status=202)
    result = await send(httpserver, "Café {50%}", headers={"X-Api-Key": API_KEY})
    httpserver.check_assertions()
    assert result.sender == "gw" and result.segments == 1
    assert result.references[0].startswith("textbackd-")


async def test_json_post_with_message_id_path(httpserver: HTTPServer):
    """JSON bodies are sent as UTF-8 JSON and the message id is read at message_id_path."""
    httpserver.expect_oneshot_request(
        "/send", method="POST", headers={"Authorization": f"Bearer {API_KEY}"},
        json={"phone": "+12125550101", "message": "Привет {name}", "sim": "1"},
    ).respond_with_json({"data": {"messages": [{"id": "msg-77"}]}}, status=200)
    result = await send(
        httpserver, "Привет {name}", body_format="json", message_id_path="data.messages.0.id",
        body={"phone": "{to}", "message": "{text}", "sim": "1"}, headers={"Authorization": f"Bearer {API_KEY}"},
    )
    httpserver.check_assertions()
    assert result.references == ("msg-77",)
    assert result.encoding == "ucs2"


async def test_api_key_from_the_password_secret(httpserver: HTTPServer):
    """{password} in a header takes the sender's password secret, which no repr or error shows."""
    httpserver.expect_request("/send", headers={"Authorization": f"Bearer {API_KEY}"}).respond_with_data("no", status=400)
    cfg = make_config(httpserver.url_for("/send"), password=API_KEY, headers={"Authorization": "Bearer {password}"})
    sender = HttpSender(cfg.sender("gw"), cfg)
    with pytest.raises(PermanentSendError) as ei:
        await sender.send("+12125550101", "Hi")
    await sender.close()
    assert "HTTP 400" in str(ei.value)  # the header matched: the server answered our rule, not the 500 fallback
    assert API_KEY not in str(ei.value) + repr(sender) + repr(cfg.sender("gw"))


async def test_get_puts_fields_in_the_query(httpserver: HTTPServer):
    """With method GET the rendered fields travel in the query string."""
    httpserver.expect_oneshot_request(
        "/send", method="GET", query_string={"to": "+12125550101", "text": "Hi & bye", "sender": "+12125550100"},
    ).respond_with_data("OK")
    await send(httpserver, "Hi & bye", method="GET", success_status=[200])
    httpserver.check_assertions()


async def test_status_outside_success_rule_is_permanent_with_code(httpserver: HTTPServer):
    """A 4xx outside success_status is permanent and names the provider's code when the JSON has one."""
    httpserver.expect_request("/send").respond_with_json({"code": "E_DEST", "error": "bad number"}, status=400)
    with pytest.raises(PermanentSendError) as ei:
        await send(httpserver)
    assert ei.value.code == "E_DEST"
    assert str(ei.value).startswith("HTTP gateway E_DEST:")


async def test_success_status_is_the_rule(httpserver: HTTPServer):
    """A 2xx answer not listed in success_status is not taken as sent."""
    httpserver.expect_request("/send").respond_with_data("created", status=201)
    with pytest.raises(PermanentSendError):
        await send(httpserver, success_status=[200])


async def test_503_with_http_date_retry_after_is_temporary(httpserver: HTTPServer):
    """503 is temporary; a Retry-After given as an HTTP date becomes seconds from now."""
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    httpserver.expect_request("/send").respond_with_data("busy", status=503, headers={"Retry-After": when})
    with pytest.raises(TemporarySendError) as ei:
        await send(httpserver)
    assert ei.value.retry_after is not None and 60 < ei.value.retry_after <= 120


async def test_429_retry_after_seconds(httpserver: HTTPServer):
    """429 is temporary with Retry-After seconds."""
    httpserver.expect_request("/send").respond_with_data("slow down", status=429, headers={"Retry-After": "30"})
    with pytest.raises(TemporarySendError) as ei:
        await send(httpserver)
    assert ei.value.retry_after == 30.0


async def test_forbidden_means_unavailable_and_hides_headers(httpserver: HTTPServer):
    """403 makes the sender unavailable (texts wait); the API key in a header is in no message."""
    httpserver.expect_request("/send").respond_with_data("forbidden", status=403)
    with pytest.raises(SenderUnavailableError) as ei:
        await send(httpserver, headers={"X-Api-Key": API_KEY})
    assert API_KEY not in str(ei.value) and "403" in str(ei.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["http", "kannel", "twilio"])
async def test_connection_refused_is_unavailable(kind: str):
    """For every gateway kind, nothing listening means SenderUnavailableError (temporary) and healthy() false."""
    base = f"http://127.0.0.1:{free_port()}"
    sender_cfg = {
        "http": {"url": base + "/send", "body": {"to": "{to}"}},
        "kannel": {"url": base + "/cgi-bin/sendsms", "username": "u", "password": "kannel-pw-11"},
        "twilio": {"api_base": base, "account_sid": "AC1", "auth_token": "tw-token-22", "from": "+12125550100"},
    }[kind]
    cfg = config_mod.parse({"business": {"name": "Test Dental"}, "senders": [{"name": "x", "kind": kind, **sender_cfg}]})
    sender = build_sender("x", cfg)
    with pytest.raises(SenderUnavailableError) as ei:
        await sender.send("+12125550101", "Hi")
    await sender.close()
    assert isinstance(ei.value, TemporarySendError)
    assert base.removeprefix("http://") in str(ei.value)
    assert "kannel-pw-11" not in str(ei.value) and "tw-token-22" not in str(ei.value)
    assert not sender.healthy()


async def test_gateway_outage_delays_a_text_without_losing_it(tmp_path):
    """Through the real outbox: refused while the gateway is down, the text waits and goes out once it is back."""
    port = free_port()
    cfg = make_config(f"http://127.0.0.1:{port}/send", message_id_path="id")
    sender = build_sender("gw", cfg)
    store = Store(tmp_path / "t.db")
    now = [1000.0]
    box = Outbox(store, [sender], clock=lambda: now[0])
    mid = store.add_message(to="+12125550101", kind="textback", state=MessageState.SCHEDULED, now=now[0],
                            send_at=now[0], text="Sorry we missed your call")
    runner = None
    try:
        await box.process_due()
        waiting = store.message(mid)
        assert waiting.state is MessageState.SCHEDULED
        got: list[dict] = []

        async def gateway(request: web.Request) -> web.Response:
            got.append(dict(await request.post()))
            return web.json_response({"id": "gw-1"})

        app = web.Application()
        app.router.add_post("/send", gateway)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        now[0] += 24 * 3600
        await box.process_due()
        sent = store.message(mid)
        assert sent.state is MessageState.SENT and sent.refs == ("gw-1",)
        assert got == [{"to": "+12125550101", "text": "Sorry we missed your call", "sender": "+12125550100"}]
    finally:
        await sender.close()
        if runner is not None:
            await runner.cleanup()
        store.close()


def test_render_and_json_path():
    """Only {to}, {text} and {from} are replaced; JSON paths follow keys and list indexes."""
    assert render('{"a": "{to}", "b": {x}}', {"to": "+1", "text": "", "from": ""}) == '{"a": "+1", "b": {x}}'
    doc = json.loads('{"a": [{"id": 5}, {"id": "x"}], "b": true}')
    assert (json_path(doc, "a.0.id"), json_path(doc, "a.1.id"), json_path(doc, "a.2.id"), json_path(doc, "c")) == (
        5, "x", None, None)
