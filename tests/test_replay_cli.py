"""`textbackd replay --summary / --compare / --progress` (issue 15), run as the real command on recorded captures."""

import gzip
import json
import os
import statistics
import subprocess
import sys
from collections import Counter
from datetime import datetime

from e2e import ASTERISK

from textbackd import config as cfgmod
from textbackd import replay as replay_mod

BUSY = str(ASTERISK / "18-busy-office-hour.ami.gz")
START = "2026-11-24T23:00:00-05:00"  # at night: texts wait for the morning, and a call-back cancels one
DAY = "2026-11-24T10:00:00-05:00"  # a Tuesday morning, in business hours: texts go after the grace


def textbackd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textbackd", "replay", *args], capture_output=True, text=True,
                          timeout=120)


def write_cfg(tmp_path, name="t.toml", policy="", grace=30):
    p = tmp_path / name
    p.write_text(
        '[business]\nname = "Apex Plumbing"\ntimezone = "America/New_York"\nbooking_link = "apex.example/book"\n'
        '[business.hours]\nmon = "08:00-18:00"\ntue = "08:00-18:00"\n'
        f"[policy]\ngrace_seconds = {grace}\n{policy}"
    )
    return str(p)


def outcome(row: dict) -> str:
    """What a printed call led to, read from its JSON line (the test's own reading, not the command's)."""
    if row["action"] == "text":
        return f"cancelled: {row['cancelled']}" if row.get("cancelled") else "texted"
    return f"not texted: {row['reason']}"


def lines(cfg: str, start: str = START) -> list[dict]:
    r = textbackd("-c", cfg, "--start", start, BUSY)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def test_summary_counts_what_the_call_lines_say(tmp_path):
    """--summary prints the calls, missed calls and every outcome with its reason, as many as the JSON lines show."""
    cfg = write_cfg(tmp_path)
    rows = lines(cfg)
    r = textbackd("-c", cfg, "--start", START, "--summary", BUSY)
    assert r.returncode == 0, r.stderr
    counts, _, timing = r.stdout.partition("\n\n")
    table = {}
    group = ""
    for line in counts.splitlines():
        label, n = line.rsplit(None, 1)
        if line.startswith("  "):
            table[f"{group}: {label.strip()}"] = int(n.replace(",", ""))
        else:
            group = label.strip()
            table[group] = int(n.replace(",", ""))
    want = Counter(outcome(x) for x in rows)
    assert table["calls"] == len(rows) == 46
    assert table["missed"] == sum(x["missed"] for x in rows)
    assert table["texted"] == want["texted"]
    assert table["cancelled"] == sum(v for k, v in want.items() if k.startswith("cancelled"))
    assert table["cancelled: answered_callback"] == want["cancelled: answered_callback"] == 1
    for k, v in want.items():
        if k.startswith("not texted"):
            assert table[k] == v
    assert table["not texted"] == sum(v for k, v in want.items() if k.startswith("not texted"))
    delays = sorted(seconds_to_text(x) for x in rows if outcome(x) == "texted")
    shown = {line.rsplit(None, 1)[0]: line.rsplit(None, 1)[1] for line in timing.splitlines()}
    assert shown["time to text, median"] == as_read(statistics.median(delays))  # at night: texts wait for 08:00
    assert shown["time to text, longest"] == as_read(delays[-1])
    assert set(shown) == {"time to text, median", "time to text, 95th percentile", "time to text, longest"}


def as_read(seconds: float) -> str:
    """The test's own reading of a duration, as the owner's figures write it: 45s, 12m, 3.5h."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 90 * 60 else f"{seconds / 3600:.1f}h"


def seconds_to_text(x: dict) -> float:
    return (datetime.fromisoformat(x["send_at"]) - datetime.fromisoformat(x["ended"])).total_seconds()


def test_compare_shows_a_longer_grace_in_the_time_to_text_even_when_no_outcome_changes(tmp_path):
    """The admin's question "what if grace were 10 minutes?": the totals side by side carry the time to text,
    which moves for every text even where the call's outcome stays the same."""
    mine = write_cfg(tmp_path)
    other = write_cfg(tmp_path, "slow.toml", grace=600)
    a, b = lines(mine, DAY), lines(other, DAY)
    r = textbackd("-c", mine, "--start", DAY, "--compare", other, BUSY)
    assert r.returncode == 0, r.stderr
    timing = r.stdout.rsplit("\n\n", 1)[1]
    median = next(line for line in timing.splitlines() if line.startswith("time to text, median"))
    da = sorted(seconds_to_text(x) for x in a if outcome(x) == "texted")
    db = sorted(seconds_to_text(x) for x in b if outcome(x) == "texted")
    assert statistics.median(db) == 600 and statistics.median(da) < 600
    assert median.split()[-2:] == [as_read(statistics.median(da)), "10m"]


def test_compare_lists_each_call_the_other_config_treats_differently(tmp_path):
    """--compare prints each call whose outcome differs under OTHER.toml, then both configs' totals side by side."""
    mine = write_cfg(tmp_path)
    other = write_cfg(tmp_path, "capped.toml", "max_per_hour = 5\n")
    a, b = lines(mine), lines(other)
    differ = {x["id"] for x, y in zip(a, b, strict=True) if outcome(x) != outcome(y)}
    assert differ  # the hourly cap leaves callers untexted
    r = textbackd("-c", mine, "--start", START, "--compare", other, BUSY)
    assert r.returncode == 0, r.stderr
    body, _, totals = r.stdout.partition("\n\n")
    shown = {line.split()[1]: line for line in body.splitlines()}
    assert set(shown) == differ
    by_id = {x["id"]: (outcome(x), outcome(y)) for x, y in zip(a, b)}
    for cid, line in shown.items():
        assert line.endswith(f"{by_id[cid][0]}  ->  {by_id[cid][1]}")
    counts_part, _, _timing = totals.partition("\n\n")
    head, *rest = counts_part.splitlines()
    assert head.split() == ["t.toml", "capped.toml"]
    cols = {line.rsplit(None, 2)[0].strip(): tuple(int(v.replace(",", "")) for v in line.split()[-2:]) for line in rest}
    assert cols["calls"] == (46, 46)
    assert cols["texted"] == (Counter(map(outcome, a))["texted"], Counter(map(outcome, b))["texted"])
    assert f"{len(differ)} treated differently by capped.toml" in r.stderr


def test_progress_goes_to_stderr_and_leaves_stdout_alone(tmp_path):
    """--progress reports bytes read, calls, rate and the time taken on stderr; stdout is byte for byte the same."""
    plain = textbackd("--start", START, BUSY)
    shown = textbackd("--start", START, "--progress", BUSY)
    assert shown.returncode == plain.returncode == 0
    assert shown.stdout == plain.stdout
    size = (ASTERISK / "18-busy-office-hour.ami.gz").stat().st_size
    last = [x for x in shown.stderr.splitlines() if x.startswith("replay: ") and " MB" in x][-1]
    assert f"of {size / 1e6:,.1f} MB (100%), 46 calls" in last and "calls/s" in last and "done in" in last
    assert not any(" MB" in x for x in plain.stderr.splitlines())  # off when stderr is not a terminal


def test_calls_waiting_on_disk_come_back_in_order(tmp_path, monkeypatch):
    """With the spool at 1 call, every waiting call goes through the scratch store and the replay is unchanged."""
    cfg = cfgmod.load(write_cfg(tmp_path))
    want = [(c.to_json(), a) for c, a in replay_mod.replay_decisions(BUSY, cfg, start=1795000000.0)]
    monkeypatch.setattr(replay_mod, "SPOOL_AT", 1)
    got = [(c.to_json(), a) for c, a in replay_mod.replay_decisions(BUSY, cfg, start=1795000000.0)]
    assert got == want and len(got) == 46
    assert any(a.get("sent") for _, a in got) and any(a.get("cancelled") for _, a in got)


def test_untimed_capture_streams_and_gives_the_same_calls(tmp_path):
    """A capture without .timing, plain or gzip, is read in chunks and gives the same calls either way."""
    raw = gzip.decompress((ASTERISK / "18-busy-office-hour.ami.gz").read_bytes())
    plain = tmp_path / "busy.ami"
    plain.write_bytes(raw * 3)  # the same hour three times: the same call ids, stored once
    packed = tmp_path / "busy2.ami.gz"
    packed.write_bytes(gzip.compress(raw * 3))
    for f in (plain, packed):  # an untimed capture's events all arrive at the file's time
        os.utime(f, (1795000000, 1795000000))
    a, b = textbackd("--calls-only", str(plain)), textbackd("--calls-only", str(packed))
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout
    assert len(a.stdout.splitlines()) >= 46
