"""What every kgmon command shares: the exit statuses, the one-line usage error, and the
checking argument types (bounded numbers, powers of two, ports, ws:// URLs).

The subcommands (cli/demo.py, tail.py, ...) and cli/main.py import this module;
it imports none of them, so no command module imports another.

Bad usage is one line on standard error, never a traceback: every option is
parsed by a checking type below, and the environment variables that stand in
for options are checked as they would be (`ws_url_from_env`).
"""

from __future__ import annotations

import argparse
import math
import os

# The ring's geometry limits (native/kg_layout.h), for --slot-size and --slot-count.
from kindlyguard_monitor.ring.layout import SLOT_COUNT_MAX, SLOT_COUNT_MIN, SLOT_SIZE_MAX, SLOT_SIZE_MIN  # noqa: F401
from kindlyguard_monitor.textsafe import visible

TIME_OPTIONS = ("--since", "--until")  # `kgmon export`'s, whose `-1h` values main.py joins before parsing
from kindlyguard_monitor.transport.urls import ws_url_problem
from kindlyguard_monitor.vocabulary import ENV_WS_URL, parse_port

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CANNOT_ATTACH = 0, 1, 2, 3
MAX_WHOLE = 2**63 - 1  # counts, pids: what a C int64 and SQLite hold
MAX_SECONDS = 10 * 365 * 86400.0  # timeouts and durations: ten years is "forever"


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (`kgmon tail: --count must be ...; see kgmon tail --help`)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {visible(message)}; see {self.prog} --help\n")


def _whole(text: str) -> int:
    raw = text.strip()
    if not raw.lstrip("+-").isdigit() or len(raw) > 30:  # int() of a 10,000-digit string is slow, and absurd
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}")
    return int(raw)


def _checked(parse, ok, wanted: str):
    """An argparse type: `parse` the text, then refuse a value that is not `ok` as "must be <wanted>"."""
    def check(text: str):
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text}")
        return value
    return check


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def int_in(low: int, high: int):
    """An argparse type: a whole number from low to high."""
    return _checked(_whole, lambda v: low <= v <= high, f"a whole number from {low} to {high}")


def power_of_two(low: int, high: int):
    """An argparse type: a power of two from low to high (ring slot sizes and counts)."""
    return _checked(_whole, lambda v: low <= v <= high and not v & (v - 1), f"a power of two from {low} to {high}")


def float_in(low: float, high: float):
    """An argparse type: a finite number from low to high."""
    return _checked(_number, lambda v: low <= v <= high, f"a number from {low:g} to {high:g}")


positive_int = _checked(_whole, lambda v: 0 < v <= MAX_WHOLE, f"a positive whole number (at most {MAX_WHOLE})")
positive_float = _checked(_number, lambda v: v > 0, "a positive number")
# seconds: a positive number of seconds, at most ten years
seconds = _checked(_number, lambda v: 0 < v <= MAX_SECONDS, f"a positive number of seconds (at most {MAX_SECONDS:.0f})")


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (pick a free one) to 65535."""
    try:
        return parse_port(text, lowest=0)  # 0: a free port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ws_url(text: str) -> str:
    """An argparse type: a ws:// or wss:// URL with a host and a valid port."""
    problem = ws_url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def ws_url_from_env() -> str | None:
    """Why $KINDLYGUARD_WS_URL (used when --ws-url is not given) cannot be used; None when it can."""
    env = os.environ.get(ENV_WS_URL)
    if not env:
        return None
    problem = ws_url_problem(env)
    return None if problem is None else f"{ENV_WS_URL}: {problem}; fix it or unset it"
