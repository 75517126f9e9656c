"""A doctor finding, its levels, and the small wording helpers every check uses.

Levels: "ok", "warn", "fail", "info". Anything "fail" means the monitor cannot
show threats (or must not be trusted to) until the advice is followed.
"""

from __future__ import annotations

import pwd
from typing import NamedTuple

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


class Finding(NamedTuple):
    check: str  # a short name: "ring", "writer", "websocket", ...
    level: str  # ok | warn | fail | info
    message: str  # what was found, one sentence
    advice: str = ""  # what to do about it ("" when nothing)

    def as_dict(self) -> dict:
        return {"check": self.check, "level": self.level, "message": self.message, "advice": self.advice}


def failed(findings: list[Finding]) -> bool:
    return any(f.level == FAIL for f in findings)


# ---- wording shared by the checks


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return f"uid {uid}"


def cpu_list(cpus) -> str:
    """{0, 1, 2, 5} -> "0-2,5"."""
    out, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def ago(ns: int) -> str:
    if ns < 0:
        return "just now"
    return f"{ns / 1e9:.1f} s ago"


def counted(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
