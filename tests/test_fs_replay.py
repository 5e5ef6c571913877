"""`textbackd replay --pbx freeswitch`: JSON lines out for plain and json captures, clear errors on bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from textbackd.cli import main

TRACES = Path(__file__).parent / "data" / "freeswitch" / "traces"


@pytest.fixture(autouse=True)
def _reset_logging():
    """The CLI binds structlog to the captured stderr; give later tests the defaults back."""
    yield
    structlog.reset_defaults()


@pytest.mark.parametrize("capture", ["18-busy-hour.esl.gz", "18-busy-hour.json.esl.gz"])
def test_replay_prints_the_busy_hour_calls(capture: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The busy hour, in event plain or event json, prints its 46 calls (27 missed) as JSON lines."""
    assert main(["replay", "--pbx", "freeswitch", str(TRACES / capture)]) == 0
    out, err = capsys.readouterr()
    calls = [json.loads(line) for line in out.splitlines()]
    assert len(calls) == 46 and all(c["pbx"] == "freeswitch" for c in calls)
    assert sum(c["missed"] for c in calls) == 27
    assert "46 calls, 27 missed" in err


def test_uncompressed_capture_with_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A plain (not gzipped) capture replays with ``pbx.kind = "freeswitch"`` taken from -c."""
    esl = tmp_path / "12.esl"
    esl.write_bytes(gzip.decompress((TRACES / "12-after-hours-voicemail.esl.gz").read_bytes()))
    cfg = tmp_path / "t.toml"
    cfg.write_text('[business]\nname = "Acme"\n[pbx]\nkind = "freeswitch"\npassword = "x"\n')
    assert main(["replay", "-c", str(cfg), str(esl)]) == 0
    (call,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (call["outcome"], call["voicemail_left"], call["missed"], call["voicemail_box"]) == ("voicemail", True, True, "1008")


def test_truncated_capture_gives_the_calls_it_holds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A capture cut inside a frame, with garbage after it, still yields its call and no traceback."""
    data = gzip.decompress((TRACES / "03-caller-cancel.esl.gz").read_bytes())
    bad = tmp_path / "cut.esl"
    bad.write_bytes(data[: len(data) - 3000] + b"\x00\xff\xfegarbage\n\n")
    assert main(["replay", "--pbx", "freeswitch", str(bad)]) == 0
    out, err = capsys.readouterr()
    (call,) = [json.loads(line) for line in out.splitlines()]
    assert call["outcome"] in ("caller_cancel", "unknown")
    assert "Traceback" not in err


def test_garbage_file_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    """A file that is not an ESL capture exits 1 with one clear line on stderr."""
    bad = tmp_path / "x.esl"
    bad.write_bytes(bytes(range(256)) * 20)
    r = subprocess.run(
        [sys.executable, "-m", "textbackd", "replay", "--pbx", "freeswitch", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 1
    assert "no event-socket frames found" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_ring_seconds_mean_the_same_on_both_pbxes() -> None:
    """Ring time counts from the first phone being rung on FreeSWITCH as on Asterisk: the same scenario recorded
    on each gives the same ring time within 2 s (FreeSWITCH's b-leg exists while SIP still sets it up; a busy
    phone took 1.5 s to refuse), and a call that never rang a phone (IVR) rang 0 s on both."""
    from textbackd.config import parse
    from textbackd.replay import replay_calls

    cfg = parse({"business": {"name": "t"}}, env={})
    ast = Path(__file__).parent / "data" / "asterisk"
    pairs = [("02-no-answer-voicemail", "02-voicemail-left"), ("08-ring-group-no-answer", "08-ringgroup-noanswer"),
             ("11-ivr-abandon", "11-ivr-abandon"), ("05-busy", "05-busy")]
    for fs_name, ast_name in pairs:
        [fs] = [c for c in replay_calls(TRACES / f"{fs_name}.esl.gz", cfg, "freeswitch") if c.missed]
        [am] = [c for c in replay_calls(ast / f"{ast_name}.ami", cfg, "asterisk") if c.missed]
        assert abs(fs.ring_seconds - am.ring_seconds) < 2.0, (fs_name, fs.ring_seconds, am.ring_seconds)
        assert fs.ring_seconds < fs.duration_seconds or fs.ring_seconds == 0
