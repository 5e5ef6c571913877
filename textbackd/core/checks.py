"""One ``doctor`` verdict: what was checked, whether it passed, and how to fix it.

Kinds return these from their checks (``PbxKind.checks``, ``SenderKind.check``);
``textbackd.doctor`` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    check: str
    ok: bool | None  # None: skipped (not configured, or what it needs failed)
    verdict: str
    fix: str = ""

    def line(self) -> str:
        mark = {True: "OK  ", False: "FAIL", None: "SKIP"}[self.ok]
        out = f"{mark}  {self.check:<14} {self.verdict}"
        if self.fix and self.ok is False:
            out += f"\n      fix: {self.fix}"
        return out
