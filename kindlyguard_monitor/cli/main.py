"""kgmon: the KindlyGuard Monitor command line.

    kgmon         the desktop app (--demo: with the built-in demo writer)
    kgmon demo    a demo writer: realistic threats into the ring and the WebSocket
    kgmon tail    a headless reader: one line (or JSON object) per threat
    kgmon doctor  checks what a user needs checked, and says what to do
    kgmon bench   measures both transports against the bare-C floor
    kgmon export  writes the threat history, or a search of it, as CSV or JSON

Exit status: 0 fine, 1 failure, 2 bad usage, 3 cannot attach to the ring.

Bad usage is one line on standard error, never a traceback: every option is
parsed by a checking type below (bounded numbers, powers of two, ws:// URLs),
and the environment variables that stand in for options are checked as they
would be (`ws_url_from_env`).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys

from kindlyguard_monitor import __version__
from kindlyguard_monitor.textsafe import log_to_stderr, visible
from kindlyguard_monitor.transport.urls import ws_url_problem
from kindlyguard_monitor.vocabulary import DEFAULT_WS_URL, ENV_WS_URL

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CANNOT_ATTACH = 0, 1, 2, 3


# The ring's geometry limits (native/kg_layout.h; kindlyguard_monitor/ring/pyring.py has the same).
SLOT_SIZE_MIN, SLOT_SIZE_MAX = 256, 65536
SLOT_COUNT_MIN, SLOT_COUNT_MAX = 16, 1 << 20
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


def int_in(low: int, high: int):
    """An argparse type: a whole number from low to high."""
    def parse(text: str) -> int:
        value = _whole(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {text}")
        return value
    return parse


def positive_int(text: str) -> int:
    value = _whole(text)
    if not 0 < value <= MAX_WHOLE:
        raise argparse.ArgumentTypeError(f"must be a positive whole number (at most {MAX_WHOLE}), not {text}")
    return value


def power_of_two(low: int, high: int):
    """An argparse type: a power of two from low to high (ring slot sizes and counts)."""
    def parse(text: str) -> int:
        value = _whole(text)
        if not low <= value <= high or value & (value - 1):
            raise argparse.ArgumentTypeError(f"must be a power of two from {low} to {high}, not {text}")
        return value
    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def float_in(low: float, high: float):
    """An argparse type: a finite number from low to high."""
    def parse(text: str) -> float:
        value = _number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a number from {low:g} to {high:g}, not {text}")
        return value
    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds, at most ten years."""
    value = _number(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (at most {MAX_SECONDS:.0f}), "
                                         f"not {text}")
    return value


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


def build_parser() -> argparse.ArgumentParser:
    from kindlyguard_monitor.cli import bench, demo, doctor, export, tail  # each adds its own options

    common = Parser(add_help=False)
    common.add_argument(
        "--shm-path",
        metavar="PATH",
        help="the ring file (default: $KINDLYGUARD_SHM_PATH, else the platform path, "
        "/dev/shm/kindly-guard/kindly-guard.shm on Linux)",
    )
    parser = Parser(
        prog="kgmon",
        description="KindlyGuard Monitor: see the threats KindlyGuard Shield finds, as it finds them.",
    )
    parser.add_argument("--version", action="version", version=f"kgmon {__version__}")
    gui = parser.add_argument_group("the desktop app (kgmon with no command)")
    gui.add_argument("--demo", action="store_true",
                     help="also start the built-in demo writer (stopped when the app quits)")
    gui.add_argument("--hidden", action="store_true", help="start in the tray, without showing the window")
    gui.add_argument("--shm-path", metavar="PATH", help="the ring file (see the commands' --shm-path)")
    gui.add_argument("--ws-url", type=ws_url, metavar="URL", help=f"the Shield's WebSocket (default {DEFAULT_WS_URL})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, tail, bench, doctor, export):
        module.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from kindlyguard_monitor.cli.export import join_time_values

    parser = build_parser()
    args = parser.parse_args(join_time_values(sys.argv[1:] if argv is None else list(argv)))
    if getattr(args, "ws_url", "-") is None and args.command != "doctor":  # doctor reports it as a finding
        problem = ws_url_from_env()
        if problem is not None:
            print(f"kgmon: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if args.command is None:
        try:
            from kindlyguard_monitor.gui.app import run as run_gui  # Qt is loaded only for the app
        except ImportError as exc:
            print(f"kgmon: the desktop app cannot start: {visible(str(exc))}; `kgmon tail` works without it",
                  file=sys.stderr)
            return EXIT_FAILURE
        return run_gui(args)
    log_to_stderr(logging.WARNING)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
