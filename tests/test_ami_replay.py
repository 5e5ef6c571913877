"""`textbackd replay --pbx asterisk`: JSON lines out, clear errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from textbackd.cli import main

DATA = Path(__file__).parent / "data" / "asterisk"


@pytest.fixture(autouse=True)
def _reset_logging():
    """The CLI binds structlog to the captured stderr; give later tests the defaults back."""
    yield
    structlog.reset_defaults()


FIELDS = {"id", "direction", "caller", "caller_name", "did", "outcome", "missed", "voicemail_left", "started", "ended", "ring_seconds"}


def test_replay_prints_one_json_object_per_call(capsys):
    """Replaying the busy hour prints its 46 calls as JSON lines with the required fields."""
    assert main(["replay", "--pbx", "asterisk", str(DATA / "18-busy-office-hour.ami.gz")]) == 0
    out, err = capsys.readouterr()
    calls = [json.loads(line) for line in out.splitlines()]
    assert len(calls) == 46
    assert all(FIELDS <= set(c) for c in calls)
    assert sum(c["missed"] for c in calls) == 30
    assert calls[0]["started"].endswith("Z")
    assert "46 calls, 30 missed" in err


def test_replay_with_a_config_file(tmp_path, capsys):
    """-c uses the configuration's region and contexts."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('[business]\nname = "Acme"\n[pbx]\ninbound_contexts = ["from-trunk"]\n')
    assert main(["replay", "-c", str(cfg), str(DATA / "12-after-hours-voicemail.ami")]) == 0
    (call,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (call["outcome"], call["voicemail_left"], call["missed"]) == ("voicemail", True, True)


def test_truncated_capture_gives_the_calls_it_holds(tmp_path, capsys):
    """A capture cut in the middle of a frame still yields the finished calls and no traceback."""
    data = (DATA / "03-caller-cancel.ami").read_bytes()
    bad = tmp_path / "cut.ami"
    bad.write_bytes(data[: len(data) - 1000] + b"\x00\xff\xfegarbage\r\n\r\n")
    assert main(["replay", "--pbx", "asterisk", str(bad)]) == 0
    out, err = capsys.readouterr()
    (call,) = [json.loads(line) for line in out.splitlines()]
    assert call["outcome"] in ("caller_cancel", "unknown")
    assert "Traceback" not in err


def test_garbage_file_is_a_clear_error_not_a_traceback(tmp_path):
    """A file that is not an AMI capture exits 1 with one clear line on stderr."""
    bad = tmp_path / "x.ami"
    bad.write_bytes(bytes(range(256)) * 20)
    r = subprocess.run([sys.executable, "-m", "textbackd", "replay", "--pbx", "asterisk", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "no AMI messages found" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_missing_file_is_a_clear_error(capsys):
    """A missing capture is reported by name with exit status 1."""
    assert main(["replay", "--pbx", "asterisk", "/nonexistent/x.ami"]) == 1
    assert "no such file" in capsys.readouterr().err
