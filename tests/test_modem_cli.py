"""`textbackd send` and `textbackd modem-info` against the simulator run as a separate program."""

import json
import socket
import subprocess
import sys
from io import StringIO

import pytest
import structlog
from smspdudecoder.easy import read_outgoing_sms
from smspdudecoder.fields import SMSSubmit

from textbackd import cli


@pytest.fixture(autouse=True)
def _restore_logging():
    """The commands configure structlog on capsys' stderr; later tests must not log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def simproc(tmp_path):
    link, ctl = tmp_path / "ttyUSB0", tmp_path / "sim.sock"
    p = subprocess.Popen(
        [sys.executable, "-m", "textbackd.senders.modem.simulator", "--link", str(link), "--control", str(ctl), "--pin", "1234"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        hello = json.loads(p.stdout.readline())
        assert hello["device"] == str(link)

        def control(**req):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(20)
                s.connect(str(ctl))
                s.sendall((json.dumps(req) + "\n").encode())
                return json.loads(s.makefile().readline())

        yield str(link), control
    finally:
        p.terminate()
        p.wait(timeout=20)


def write_config(tmp_path, device: str) -> str:
    path = tmp_path / "textbackd.toml"
    path.write_text(
        f"""
[business]
name = "Test Clinic"

[store]
path = "{tmp_path / 'db.sqlite'}"

[[senders]]
name = "modem1"
kind = "modem"
device = "{device}"
pin = "1234"
command_timeout = 5

[[senders]]
name = "modem2"
kind = "modem"
device = "{tmp_path / 'unplugged'}"
"""
    )
    return str(path)


def test_send_command_puts_exactly_the_text_on_the_air(simproc, tmp_path, capsys):
    """The done-when command prints JSON and the simulator's PDU reads back as exactly the text in smspdudecoder."""
    device, control = simproc
    cfg = write_config(tmp_path, device)
    text = "Sorry we missed your call 😊"
    rc = cli.main(["send", "-c", cfg, "--via", "modem1", "--to", "+12125550101", text])
    out = capsys.readouterr().out
    assert rc == 0
    res = json.loads(out)
    assert (res["sender"], res["segments"], res["encoding"]) == ("modem1", 1, "ucs2")
    [got] = control(cmd="received")["received"]
    assert res["references"] == [str(r) for r in got["references"]]
    [raw] = got["pdus"]
    assert read_outgoing_sms(raw) == {"recipient": "+12125550101", "content": text}


def test_send_command_long_text_three_linked_parts(simproc, tmp_path, capsys):
    """A 400-character GSM-7 text sent from the command line arrives as 3 linked PDUs."""
    device, control = simproc
    cfg = write_config(tmp_path, device)
    text = ("We are open Mon-Fri 8-18, Sat 9-12. Call us back or reply here. " * 7)[:400]
    assert cli.main(["send", "-c", cfg, "--to", "+12125550102", text]) == 0
    assert json.loads(capsys.readouterr().out)["segments"] == 3
    [got] = control(cmd="received")["received"]
    decoded = [SMSSubmit.decode(StringIO(p)) for p in got["pdus"]]
    assert "".join(d["user_data"]["data"] for d in decoded) == text
    assert len({d["user_data"]["header"]["elements"][0]["data"]["reference"] for d in decoded}) == 1


def test_send_command_leaves_replies_on_the_sim(simproc, tmp_path, capsys):
    """A one-shot send does not read or delete replies waiting on the SIM (they are the daemon's)."""
    device, control = simproc
    cfg = write_config(tmp_path, device)
    assert control(cmd="incoming", **{"from": "+12125550103", "text": "call me"})["indexes"] == [0]
    assert cli.main(["send", "-c", cfg, "--to", "+12125550103", "hi"]) == 0
    # index 0 is still taken by the first reply, so the next one lands in 1
    assert control(cmd="incoming", **{"from": "+12125550103", "text": "again"})["indexes"] == [1]
    assert control(cmd="received")["received"][0]["text"] == "hi"


def test_send_command_down_modem_exits_tempfail_with_reason(tmp_path, capsys):
    """Sending via an unplugged modem exits 75 once --retry-for is spent, with the device's reason on stderr and no JSON."""
    cfg = write_config(tmp_path, str(tmp_path / "nothing"))
    rc = cli.main(["send", "-c", cfg, "--via", "modem2", "--to", "+12125550104", "--retry-for", "1", "hi"])
    captured = capsys.readouterr()
    assert rc == 75
    assert captured.out == ""
    assert "no such device" in captured.err and "temporary" in captured.err and "after 2 attempts" in captured.err


def test_send_command_permanent_error_exits_1(simproc, tmp_path, capsys):
    """A +CMS ERROR the network gives for an unknown number exits 1 with its 27.005 meaning."""
    device, control = simproc
    cfg = write_config(tmp_path, device)
    control(cmd="fail_next_send", cms=1)
    rc = cli.main(["send", "-c", cfg, "--to", "+12125550105", "hi"])
    err = capsys.readouterr().err
    assert rc == 1 and "permanent" in err and "CMS 1" in err and "unassigned" in err


def test_modem_info_prints_identity_network_and_signal(simproc, tmp_path, capsys):
    """modem-info shows maker, model, firmware, IMEI tail, SIM, operator, registration and dBm."""
    device, _control = simproc
    cfg = write_config(tmp_path, device)
    assert cli.main(["modem-info", "-c", cfg, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {
        "device": device,
        "maker": "huawei",
        "model": "E3372",
        "firmware": "21.180.01.00.00",
        "imei_tail": "2345",
        "sim": "READY",
        "operator": "Textback Mobile",
        "registration": "registered, home network",
        "signal_dbm": -71,
    }
    assert cli.main(["modem-info", "-c", cfg]) == 0
    assert "signal (dBm): -71" in capsys.readouterr().out


def test_modem_info_missing_device_says_why(tmp_path, capsys):
    """modem-info on a device that is not there exits 1 naming the device and the reason."""
    dev = str(tmp_path / "ttyUSB9")
    assert cli.main(["modem-info", "-c", write_config(tmp_path, dev), "--device", dev]) == 1
    assert f"{dev}: no such device" in capsys.readouterr().err
