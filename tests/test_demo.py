"""`textbackd demo`, the README's first command, run as a user would."""

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_the_busy_hour_and_texts_every_missed_caller(tmp_path):
    """The demo replays the recorded hour through the real daemon and reports 28 texts for 30 missed calls, all delivered."""
    r = subprocess.run(
        [sys.executable, "-m", "textbackd", "demo", "--speed", "60", "--grace", "1", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    summary = dict(
        (m.group(1).strip(), m.group(2).strip())
        for m in re.finditer(r"^(\S.*?|  \S.*?)\s{2,}(\S.*)$", out.split("\nsummary\n", 1)[1], re.M)
    )
    assert summary["calls seen"] == "46"
    assert summary["missed inbound calls"] == "30"
    assert summary["text-backs sent"] == "28"  # 30 misses from 28 numbers: one text each
    assert summary["confirmed delivered by the network"] == "28"
    assert summary["duplicate"] == "2"
    assert summary["STOP confirmations sent"] == "1"
    assert "Apex Plumbing Brooklyn. We're closed right now" in out
    assert re.search(r"front desk: http://127\.0\.0\.1:\d+/  sign in as demo / \S+", out)  # issue 12
    # --keep leaves a store the other commands can read
    calls = subprocess.run(
        [sys.executable, "-m", "textbackd", "calls", "--json", "-n", "100", "-c", str(tmp_path / "textbackd.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert calls.returncode == 0, calls.stderr
    rows = [json.loads(line) for line in calls.stdout.splitlines()]
    assert len(rows) == 46 and sum(r["missed"] for r in rows) == 30
