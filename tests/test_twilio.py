"""TwilioSender against a local HTTP server checking requests as Twilio's API reference describes them."""

from __future__ import annotations

import base64
import threading

import pytest
import structlog
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from textbackd import config as config_mod
from textbackd.core.errors import PermanentSendError, SenderUnavailableError, TemporarySendError, UnknownSendError
from textbackd.senders.base import NullSink, Sender
from textbackd.senders.registry import build_sender
from textbackd.senders.twilio.sender import TwilioSender, signature, valid_signature

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


def make_config(api_base: str, public_url: str = "https://hooks.example.test", **extra: object) -> config_mod.Config:
    sender = {"name": "tw", "kind": "twilio", "account_sid": SID, "auth_token": TOKEN,
              "from": "+12125550100", "api_base": api_base, "timeout": 0.5, **extra}
    return config_mod.parse({
        "business": {"name": "Test Dental"},
        "senders": [sender],
        "http": {"listen": "127.0.0.1:8025", "public_url": public_url, "secret": "s3cret-hook"},
    })


def message_json(**over: object) -> dict:
    doc = {"sid": "SM1a2b3c4d5e6f70819203a4b5c6d7e8f9", "status": "queued", "num_segments": "1",
           "to": "+12125550101", "from": "+12125550100", "error_code": None}
    doc.update(over)
    return doc


async def send(server: HTTPServer, text: str = "Hi there", **extra: object):
    cfg = make_config(server.url_for("/").rstrip("/"), **extra)
    sender = build_sender("tw", cfg)
    await sender.start(NullSink())
    try:
        return sender, await sender.send("+12125550101", text)
    finally:
        await sender.close()


async def test_send_posts_form_exactly_as_documented(httpserver: HTTPServer):
    """A send is one POST to Messages.json with basic auth and the form fields byte for byte."""
    auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    httpserver.expect_oneshot_request(
        PATH,
        method="POST",
        headers={"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"},
        data=(
            b"To=%2B12125550101&From=%2B12125550100&Body=Hi+there%2C+caf%C3%A9+%26+more%3F"
            b"&StatusCallback=https%3A%2F%2Fhooks.example.test%2Ftwilio%2Ftw%2Fstatus"
        ),
    ).respond_with_json(message_json(), status=201)
    sender, result = await send(httpserver, "Hi there, café & more?")
    httpserver.check_assertions()
    assert isinstance(sender, TwilioSender) and isinstance(sender, Sender)
    assert result.references == ("SM1a2b3c4d5e6f70819203a4b5c6d7e8f9",)
    assert (result.sender, result.segments, result.encoding) == ("tw", 1, "gsm7")


async def test_messaging_service_sid_and_segments_from_twilio(httpserver: HTTPServer):
    """With a messaging service the form carries MessagingServiceSid, and num_segments comes from Twilio."""
    httpserver.expect_oneshot_request(
        PATH,
        method="POST",
        data=(
            b"To=%2B12125550101&MessagingServiceSid=MG00000000000000000000000000000001"
            b"&Body=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82+%F0%9F%98%80"
            b"&StatusCallback=https%3A%2F%2Fhooks.example.test%2Ftwilio%2Ftw%2Fstatus"
        ),
    ).respond_with_json(message_json(num_segments="2"), status=201)
    _, result = await send(httpserver, "Привет 😀", **{"from": "", "messaging_service_sid": "MG00000000000000000000000000000001"})
    httpserver.check_assertions()
    assert (result.segments, result.encoding) == (2, "ucs2")


async def test_no_status_callback_without_public_url(httpserver: HTTPServer):
    """Without http.public_url Twilio could not reach us, so no StatusCallback is sent."""
    httpserver.expect_oneshot_request(
        PATH, method="POST", data=b"To=%2B12125550101&From=%2B12125550100&Body=Hi",
    ).respond_with_json(message_json(), status=201)
    cfg = make_config(httpserver.url_for("/").rstrip("/"), public_url="")
    sender = TwilioSender(cfg.sender("tw"), cfg)
    with structlog.testing.capture_logs() as logs:
        await sender.start(NullSink())
        result = await sender.send("+12125550101", "Hi")
    await sender.close()
    httpserver.check_assertions()
    assert result.references == ("SM1a2b3c4d5e6f70819203a4b5c6d7e8f9",)
    assert "twilio_no_status_callback" in [e["event"] for e in logs]


async def test_invalid_to_is_permanent_in_plain_words(httpserver: HTTPServer):
    """Twilio's 400 with code 21211 becomes a permanent error that says what went wrong."""
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"code": 21211, "message": "The 'To' number +12125550101 is not a valid phone number.",
         "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}, status=400)
    with pytest.raises(PermanentSendError) as ei:
        await send(httpserver)
    assert str(ei.value) == "Twilio 21211: invalid 'To' number"
    assert ei.value.code == "21211"


async def test_unknown_code_keeps_twilio_words_with_numbers_masked(httpserver: HTTPServer):
    """An error code we have no words for keeps Twilio's message, with phone numbers masked."""
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"code": 21999, "message": "Number +12125550101 is odd", "status": 400}, status=400)
    with pytest.raises(PermanentSendError) as ei:
        await send(httpserver)
    assert str(ei.value) == "Twilio 21999: Number ********0101 is odd"


async def test_429_is_temporary_and_honours_retry_after(httpserver: HTTPServer):
    """429 Too Many Requests is temporary and carries Retry-After seconds."""
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"code": 20429, "message": "Too Many Requests", "status": 429}, status=429, headers={"Retry-After": "7"})
    with pytest.raises(TemporarySendError) as ei:
        await send(httpserver)
    assert ei.value.retry_after == 7.0
    assert ei.value.code == "20429"
    assert not isinstance(ei.value, SenderUnavailableError)


async def test_500_is_temporary(httpserver: HTTPServer):
    """A 5xx from Twilio is temporary: the outbox tries again later."""
    httpserver.expect_request(PATH, method="POST").respond_with_data("oops", status=503)
    with pytest.raises(TemporarySendError) as ei:
        await send(httpserver)
    assert ei.value.retry_after is None
    assert "503" in str(ei.value)


async def test_bad_credentials_make_the_sender_unavailable(httpserver: HTTPServer):
    """A 401 (code 20003) keeps texts waiting instead of failing them, and marks the sender unhealthy."""
    httpserver.expect_request(PATH, method="POST").respond_with_json(
        {"code": 20003, "message": "Authenticate", "status": 401}, status=401)
    with pytest.raises(SenderUnavailableError) as ei:
        sender, _ = await send(httpserver)
    assert str(ei.value).startswith("Twilio 20003: authentication failed")
    cfg = make_config(httpserver.url_for("/").rstrip("/"))
    s = TwilioSender(cfg.sender("tw"), cfg)
    assert s.healthy()
    with pytest.raises(SenderUnavailableError):
        await s.send("+12125550101", "x")
    await s.close()
    assert not s.healthy()


async def test_timeout_after_request_left_is_unknown(httpserver: HTTPServer):
    """When Twilio got the request but did not answer in time, the outcome is unknown, not retried."""

    done = threading.Event()

    def slow(_req: Request) -> Response:
        done.wait(10)  # longer than the 0.5 s send timeout; released when the test is over
        return Response("{}", status=201)

    httpserver.expect_request(PATH, method="POST").respond_with_handler(slow)
    try:
        with pytest.raises(UnknownSendError) as ei:
            await send(httpserver)
    finally:
        done.set()
    assert "may have gone out" in str(ei.value)


async def test_no_secret_in_logs_errors_or_repr(httpserver: HTTPServer):
    """The auth token appears in no log event, exception message or repr, whatever happens."""
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_json(message_json(), status=201)
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_json(
        {"code": 20003, "message": "Authenticate", "status": 401}, status=401)
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("x", status=500)
    cfg = make_config(httpserver.url_for("/").rstrip("/"))
    sender = TwilioSender(cfg.sender("tw"), cfg)
    seen: list[str] = [repr(sender), str(sender), repr(cfg.sender("tw"))]
    with structlog.testing.capture_logs() as logs:
        await sender.send("+12125550101", "Hi")
        for _ in range(2):
            try:
                await sender.send("+12125550101", "Hi")
            except Exception as e:  # noqa: BLE001 - collecting every message
                seen += [str(e), repr(e)]
    await sender.close()
    seen += [repr(event) for event in logs]
    assert len(logs) >= 3
    assert not [s for s in seen if TOKEN in s]
    assert not [s for s in seen if "12125550101" in s]  # numbers masked too


def test_signature_matches_twilio_documented_vectors():
    """Our X-Twilio-Signature matches the examples Twilio publishes (plain and repeated parameters)."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
    assert signature("12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert valid_signature("12345", url, params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid_signature("12345", url + "&x=1", params.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not valid_signature("12345", url, params.items(), "")
    assert valid_signature("12345", "https://mycompany.com:443/myapp.php?foo=1&bar=2", params.items(),
                           "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
