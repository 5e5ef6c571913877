"""`textbackd send` retries like the outbox (issue 13.3), and a gateway request is marked handed over before it
is written and never written twice (issue 18): against the modem simulator run as a program, a real HTTP
server (pytest-httpserver) and a raw TCP server that drops the connection after reading the request."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog
from pytest_httpserver import HTTPServer
from test_modem_cli import simproc  # noqa: F401 - the fixture
from werkzeug import Response

from textbackd import cli
from textbackd.config import parse
from textbackd.core.errors import SenderUnavailableError, UnknownSendError
from textbackd.senders.base import MemoryTrack
from textbackd.senders.registry import build_sender

LONG = ("Hi, this is Apex Plumbing. Sorry we missed your call; reply here or book online any time. " * 5)[:400]


@pytest.fixture(autouse=True)
def _restore_logging():
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def sender_config(tmp_path, sender: str) -> str:
    """A clinic's config with quick outbox retries and the one ``[[senders]]`` table given."""
    path = tmp_path / "textbackd.toml"
    path.write_text(f"""
[business]
name = "Test Clinic"
[policy]
retry_base_seconds = 0.2
[[senders]]
{sender}""")
    return str(path)


def modem_config(tmp_path, device: str) -> str:
    return sender_config(tmp_path, f"""name = "modem1"
kind = "modem"
device = "{device}"
pin = "1234"
command_timeout = 1
""")


def http_config(tmp_path, url: str) -> str:
    return sender_config(tmp_path, f"""name = "gw"
kind = "http"
url = "{url}"
timeout = 2
message_id_path = "id"
body = {{ to = "{{to}}", text = "{{text}}" }}
""")


def test_send_retries_a_gateway_503_and_says_how_many_attempts(tmp_path, httpserver: HTTPServer, capsys):
    """A gateway answering 503 twice, then 200: `send` exits 0 with attempts 3 (it used to exit 75 at the first 503)."""
    answers = iter([Response("busy", status=503), Response("busy", status=503)])
    httpserver.expect_request("/send", method="POST").respond_with_handler(
        lambda r: next(answers, Response('{"id": "m1"}', status=200, content_type="application/json")))
    rc = cli.main(["send", "-c", http_config(tmp_path, httpserver.url_for("/send")), "--to", "+12125550170", "hi"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["attempts"] == 3 and json.loads(out.out)["references"] == ["m1"]


def test_no_retry_keeps_the_one_shot_behaviour(tmp_path, httpserver: HTTPServer, capsys):
    """With --no-retry one 503 exits 75 at once, after one request."""
    httpserver.expect_request("/send", method="POST").respond_with_data("busy", status=503)
    rc = cli.main(["send", "-c", http_config(tmp_path, httpserver.url_for("/send")), "--no-retry", "--to",
                   "+12125550171", "hi"])
    assert rc == 75 and "temporary" in capsys.readouterr().err
    assert len(httpserver.log) == 1


def test_send_resumes_a_long_text_whose_part_2_kept_failing(simproc, tmp_path, capsys):  # noqa: F811
    """Part 2 refused past the modem's own retries: `send` tries again and sends parts 2 and 3 only, same reference."""
    device, control = simproc
    control(cmd="fail_part", part=2, cms=38, times=3)
    rc = cli.main(["send", "-c", modem_config(tmp_path, device), "--to", "+12125550172", LONG])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["attempts"] == 2
    taken = control(cmd="log")["taken"]
    assert [t["part"] for t in taken] == [1, 2, 3] and len({t["concat_ref"] for t in taken}) == 1


def test_send_through_a_modem_hung_until_atz_resets_it_and_sends(simproc, tmp_path, capsys):  # noqa: F811
    """A modem that stops answering (until ATZ) just before the send: the ladder resets it and the text goes once."""
    device, control = simproc
    control(cmd="hang_after", commands=14, until="atz")  # answers most of init, then hangs
    rc = cli.main(["send", "-c", modem_config(tmp_path, device), "--to", "+12125550173", "hello"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    log = control(cmd="log")
    assert "ATZ" in log["commands"] and [t["to"] for t in log["taken"]] == ["+12125550173"]


async def test_gateway_marks_the_hand_over_before_the_request_arrives(httpserver: HTTPServer):
    """The HTTP sender's hand-over mark is on the track when the gateway sees the request; a refused connect marks nothing."""
    cfg = parse({"business": {"name": "T"}, "senders": [
        {"name": "gw", "kind": "http", "url": httpserver.url_for("/send"), "body": {"to": "{to}"}},
        {"name": "down", "kind": "http", "url": "http://127.0.0.1:9/send", "timeout": 1, "body": {"to": "{to}"}}]}, env={})
    track = MemoryTrack("gw")
    seen = []

    def handler(request):
        seen.append(dict(track.parts))
        return Response("{}", status=200)

    httpserver.expect_request("/send", method="POST").respond_with_handler(handler)
    gw, down = build_sender("gw", cfg), build_sender("down", cfg)
    try:
        await gw.send("+12125550174", "hi", track=track)
        assert seen == [{1: None}]  # handed over, not yet answered, when the request arrived
        other = MemoryTrack("down")
        with pytest.raises(SenderUnavailableError):
            await down.send("+12125550174", "hi", track=other)
        assert other.parts == {}
    finally:
        await gw.close()
        await down.close()


async def test_a_dropped_connection_after_the_request_is_not_written_twice():
    """A gateway that reads Kannel's GET and drops the connection: aiohttp would send it again by itself; it goes once,
    and the outcome is unknown."""
    requests = []

    async def handle(reader, writer):
        requests.append((await reader.read(4096)).split(b"\r\n", 1)[0])
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    cfg = parse({"business": {"name": "T"}, "senders": [{"name": "k", "kind": "kannel", "username": "u",
                 "password": "p", "url": f"http://127.0.0.1:{port}/cgi-bin/sendsms"}]}, env={})
    sender = build_sender("k", cfg)
    try:
        with pytest.raises(UnknownSendError):
            await sender.send("+12125550175", "hi", track=MemoryTrack("k"))
        assert len(requests) == 1
    finally:
        await sender.close()
        srv.close()
