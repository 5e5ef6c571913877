"""`textbackd doctor` against real parts: a replaying AMI server, the modem simulator, HTTP gateways and aiosmtpd."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from e2e import capture
from pytest_httpserver import HTTPServer
from werkzeug import Response

from textbackd.pbx.asterisk.replay_server import AmiReplayServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp_path, *, ami_port: int, secret: str = "doc-secret", senders: str = "", email: str = "") -> str:
    p = tmp_path / "textbackd.toml"
    p.write_text(f"""
[pbx]
host = "127.0.0.1"
port = {ami_port}
secret = "{secret}"
connect_timeout = 3

[business]
name = "Apex Plumbing"
timezone = "America/New_York"

[store]
path = "{tmp_path / 'db' / 'textbackd.db'}"
{senders}
{email}
""")
    return str(p)


async def doctor(cfg: str, timeout: float = 2) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "textbackd", "doctor", "-c", cfg, "--timeout", str(timeout),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode, out.decode()


def verdict(out: str, check: str) -> str:
    for line in out.splitlines():
        if line[6:].startswith(check):
            return line
    return ""


class Inbox:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        return "250 OK"


def smtp_auth(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"desk" and auth_data.password == b"right-password"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp():
    ctl = Controller(Inbox(), hostname="127.0.0.1", port=free_port(), authenticator=smtp_auth,
                     auth_require_tls=False)
    ctl.start()
    yield ctl
    ctl.stop()


def modem_sender(device: str) -> str:
    return f'\n[[senders]]\nname = "modem1"\nkind = "modem"\ndevice = "{device}"\ncommand_timeout = 3\n'


async def test_a_healthy_setup_passes_every_check(tmp_path, sim, smtp):
    """AMI login, permissions and events, the modem's SIM/registration/signal, SMTP login, store and clock all pass: exit 0."""
    email = f'[email]\nhost = "127.0.0.1"\nport = {smtp.port}\nstarttls = false\nfrom = "tb@apex.example"\n' \
            f'to = ["desk@apex.example"]\nusername = "desk"\npassword = "right-password"\n'
    await sim.incoming("+12125550130", "a reply waiting on the SIM")
    async with AmiReplayServer(capture("05-busy"), secret="doc-secret", speed=0) as srv:
        code, out = await doctor(write(tmp_path, ami_port=srv.port, senders=modem_sender(sim.device), email=email))
    assert code == 0, out
    assert len(sim.storage) == 1  # doctor leaves texts on the SIM for the daemon
    assert verdict(out, "pbx login").startswith("OK") and "textbackd" in verdict(out, "pbx login")
    assert verdict(out, "pbx permissions").startswith("OK")
    assert verdict(out, "pbx events").startswith("OK")
    m = verdict(out, "sender modem1")
    assert m.startswith("OK") and "SIM READY" in m and "registered" in m and "dBm" in m
    assert verdict(out, "smtp").startswith("OK") and "logged in as 'desk'" in out
    assert verdict(out, "store").startswith("OK") and "writable" in verdict(out, "store")
    assert verdict(out, "clock").startswith("OK") and "America/New_York" in verdict(out, "clock")
    assert out.rstrip().endswith("all checks passed")


async def test_wrong_ami_secret_and_smtp_password_get_clear_verdicts_and_fixes(tmp_path, smtp):
    """A wrong AMI secret and a wrong SMTP password each fail with what was refused and where to fix it; exit 1."""
    email = f'[email]\nhost = "127.0.0.1"\nport = {smtp.port}\nstarttls = false\nfrom = "tb@apex.example"\n' \
            f'to = ["desk@apex.example"]\nusername = "desk"\npassword = "wrong"\n'
    async with AmiReplayServer(capture("05-busy"), secret="doc-secret", speed=0) as srv:
        code, out = await doctor(write(tmp_path, ami_port=srv.port, secret="not-it", email=email))
    assert code == 1
    assert verdict(out, "pbx reachable").startswith("OK")
    login = verdict(out, "pbx login")
    assert login.startswith("FAIL") and "refused the login of 'textbackd'" in login and "Authentication failed" in login
    assert "fix: [pbx] username/secret must match a user in /etc/asterisk/manager.conf" in out
    assert verdict(out, "smtp").startswith("FAIL") and "refused the login of 'desk'" in out
    assert "no [[senders]] configured" in out


async def test_unreachable_pbx_and_missing_modem(tmp_path):
    """Nothing listening on the AMI port and a modem device that does not exist: both fail with a fix."""
    code, out = await doctor(write(tmp_path, ami_port=free_port(), senders=modem_sender(str(tmp_path / "ttyUSB9"))))
    assert code == 1
    assert verdict(out, "pbx reachable").startswith("FAIL") and "cannot connect" in out
    assert "manager.conf `enabled = yes`" in out
    assert verdict(out, "sender modem1").startswith("FAIL") and "does not exist" in out


async def test_modem_without_signal_fails(tmp_path, sim):
    """A modem that reports no signal (AT+CSQ 99) fails the sender check, naming the antenna."""
    sim.rssi = 99
    async with AmiReplayServer(capture("05-busy"), secret="doc-secret", speed=0) as srv:
        code, out = await doctor(write(tmp_path, ami_port=srv.port, senders=modem_sender(sim.device)))
    assert code == 1, out
    assert verdict(out, "sender modem1").startswith("FAIL") and "antenna" in out


def kannel_like(request):
    """Kannel's sendsms checks the login before the receiver, and sends nothing without one."""
    if request.args.get("password") != "kpass":
        return Response("Authorization failed for sendsms", status=403)
    return Response("Missing receiver number, rejected", status=400)


async def test_gateways_reachable_and_credentials_checked_without_sending(tmp_path, httpserver: HTTPServer):
    """Kannel and Twilio credentials are checked without sending anything; a bad one fails; a dead URL fails."""
    httpserver.expect_request("/cgi-bin/sendsms").respond_with_handler(kannel_like)
    httpserver.expect_request("/2010-04-01/Accounts/ACgood.json").respond_with_json({"status": "active"})
    httpserver.expect_request("/2010-04-01/Accounts/ACbad.json").respond_with_json({"code": 20003}, status=401)
    httpserver.expect_request("/send").respond_with_data("", status=405)
    base = httpserver.url_for("")
    dead = f"http://127.0.0.1:{free_port()}/send"
    senders = f"""
[[senders]]
name = "kannel-ok"
kind = "kannel"
url = "{base}cgi-bin/sendsms"
username = "tb"
password = "kpass"
[[senders]]
name = "kannel-bad"
kind = "kannel"
url = "{base}cgi-bin/sendsms"
username = "tb"
password = "nope"
[[senders]]
name = "twilio-ok"
kind = "twilio"
account_sid = "ACgood"
auth_token = "t"
from = "+12125550100"
api_base = "{base.rstrip('/')}"
[[senders]]
name = "twilio-bad"
kind = "twilio"
account_sid = "ACbad"
auth_token = "t"
from = "+12125550100"
api_base = "{base.rstrip('/')}"
[[senders]]
name = "http-ok"
kind = "http"
url = "{base}send"
body = {{ to = "{{to}}", text = "{{text}}" }}
[[senders]]
name = "http-dead"
kind = "http"
url = "{dead}"
body = {{ to = "{{to}}", text = "{{text}}" }}
"""
    async with AmiReplayServer(capture("05-busy"), secret="doc-secret", speed=0) as srv:
        code, out = await doctor(write(tmp_path, ami_port=srv.port, senders=senders))
    assert code == 1
    assert verdict(out, "sender kannel-ok").startswith("OK") and "credentials accepted" in out
    assert verdict(out, "sender kannel-bad").startswith("FAIL") and "sendsms-user" in out
    assert verdict(out, "sender twilio-ok").startswith("OK")
    assert verdict(out, "sender twilio-bad").startswith("FAIL") and "refused account 'ACbad'" in out
    assert verdict(out, "sender http-ok").startswith("OK")
    assert verdict(out, "sender http-dead").startswith("FAIL") and "not reachable" in out
    sent = [r for r, _ in httpserver.log if r.args.get("to") or r.method == "POST"]
    assert sent == []  # nothing was sent


async def test_broken_config_names_file_and_key(tmp_path):
    """An invalid config fails the first check with its file and key, and nothing else is tried."""
    p = tmp_path / "bad.toml"
    p.write_text('[pbx]\nport = "x"\n[business]\nname = "A"\n')
    code, out = await doctor(str(p))
    assert code == 1
    assert out.splitlines()[0].startswith("FAIL  config") and "pbx.port" in out
    assert "fix: edit" in out and "pbx reachable" not in out


async def test_freeswitch_event_socket_checks(tmp_path):
    """With kind = "freeswitch": the right password passes login, permissions and events; a wrong one fails with the fix."""
    from pathlib import Path

    from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture

    blocks = load_capture(Path(__file__).parent / "data" / "freeswitch" / "traces" / "01-answered.esl.gz")
    outs = {}
    async with EslReplayServer(blocks, password="s3cret-pw") as srv:
        for pw in ("s3cret-pw", "wrong-pw"):
            cfg = tmp_path / f"{pw}.toml"
            cfg.write_text(f'[pbx]\nkind = "freeswitch"\nport = {srv.port}\npassword = "{pw}"\n'
                           f'[business]\nname = "A"\n[store]\npath = "{tmp_path / "t.db"}"\n')
            outs[pw] = await doctor(str(cfg))
    code, out = outs["s3cret-pw"]
    assert verdict(out, "pbx login").startswith("OK") and verdict(out, "pbx permissions").startswith("OK")
    assert verdict(out, "pbx events").startswith("OK")
    assert code == 1  # no sender configured
    code, out = outs["wrong-pw"]
    assert verdict(out, "pbx login").startswith("FAIL") and "event_socket.conf.xml's `password`" in out
