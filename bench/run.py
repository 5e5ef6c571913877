"""Run every ``bench/bench_*.py`` with this interpreter and print its figures.

``./scripts/dev bench`` calls this. Extra arguments are passed to every
benchmark; the exit status is non-zero when any benchmark failed its bars.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        t = time.perf_counter()
        rc = subprocess.run([sys.executable, str(script), *argv], cwd=HERE.parent).returncode
        print(f"== {script.name}: exit {rc} in {time.perf_counter() - t:.1f} s\n", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
