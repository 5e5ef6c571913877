"""`textbackd replay` with the policy: what the daemon would have done with a recorded hour."""

import json
from datetime import datetime

from e2e import ASTERISK

from textbackd.cli import main

BUSY = str(ASTERISK / "18-busy-office-hour.ami.gz")


def run_replay(capsys, *args) -> list[dict]:
    assert main(["replay", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def write_cfg(tmp_path, grace=30):
    p = tmp_path / "t.toml"
    p.write_text(
        '[business]\nname = "Apex Plumbing"\ntimezone = "America/New_York"\nbooking_link = "apex.example/book"\n'
        '[business.hours]\nmon = "08:00-18:00"\ntue = "08:00-18:00"\n'
        f"[policy]\ngrace_seconds = {grace}\n"
    )
    return str(p)


def test_each_call_carries_the_decision(capsys, tmp_path):
    """Every replayed call says text (with text and send time) or skip (with the reason)."""
    rows = run_replay(capsys, "-c", write_cfg(tmp_path), "--start", "2026-11-24T10:00:00-05:00", BUSY)
    assert len(rows) == 46
    texts = [r for r in rows if r["action"] == "text"]
    skips = [r for r in rows if r["action"] == "skip"]
    assert len(texts) == 28 and all(r["sent"] for r in texts)
    assert sorted(r["reason"] for r in skips if r["missed"]) == ["duplicate", "duplicate"]
    assert {r["reason"] for r in skips if not r["missed"]} == {"answered", "not_inbound"}
    for r in texts:
        assert r["text"].startswith("Hi, this is Apex Plumbing. Sorry we missed your call.")
        delay = datetime.fromisoformat(r["send_at"]).timestamp() - datetime.fromisoformat(r["ended"]).timestamp()
        assert abs(delay - 30) < 0.01  # the grace, during opening hours


def test_start_moves_the_hour_out_of_opening_hours(capsys, tmp_path):
    """Replayed at night, the same hour gets the after-hours wording, held for the morning by quiet hours."""
    rows = run_replay(capsys, "-c", write_cfg(tmp_path), "--start", "2026-11-24T23:00:00-05:00", BUSY)
    texts = [r for r in rows if r["action"] == "text"]
    assert texts and all(r["template"] == "after_hours" and r["deferred"] for r in texts)
    assert {r["send_at"] for r in texts} == {"2026-11-25T13:00:00.000Z"}  # 08:00 in New York


def test_call_back_before_a_held_text_cancels_it(capsys, tmp_path):
    """A caller whose text waits for morning and who calls back and is answered meanwhile gets no text."""
    rows = run_replay(capsys, "-c", write_cfg(tmp_path), "--start", "2026-11-24T23:00:00-05:00", BUSY)
    cancelled = [r for r in rows if r.get("cancelled")]
    assert [(r["caller"], r["cancelled"]) for r in cancelled] == [("+16145550187", "answered_callback")]
    later = [r for r in rows if r["caller"] == "+16145550187" and r["outcome"] == "answered"]
    assert later and later[0]["ended"] < "2026-11-25T13:00:00"


def test_replay_is_deterministic_and_calls_only_has_no_decisions(capsys, tmp_path):
    """Two replays of one capture print the same bytes; --calls-only prints the calls alone."""
    cfg = write_cfg(tmp_path)
    a = run_replay(capsys, "-c", cfg, "--start", "2026-11-24T10:00:00-05:00", BUSY)
    b = run_replay(capsys, "-c", cfg, "--start", "2026-11-24T10:00:00-05:00", BUSY)
    assert a == b
    plain = run_replay(capsys, "--calls-only", BUSY)
    assert len(plain) == 46 and not any("action" in r for r in plain)


def test_bad_start_is_a_clear_error(capsys):
    """--start without a UTC offset is refused with a clear message, not a traceback."""
    assert main(["replay", "--start", "2026-11-24T10:00", BUSY]) == 1
    assert "add the UTC offset" in capsys.readouterr().err
