"""kgmon export: the threat history (or part of it) as CSV, JSON or JSON Lines.

The filters are the History view's (kindlyguard_monitor.history.query.Filter): text, type,
minimum severity, blocked, source and a time range. Everything that matches
is written, newest first, to a file (written to a temporary name, then
renamed, so a failed export leaves no half file) or to standard output.
Exit status 0, 2 bad usage, 1 failure (no history, unreadable, cannot write),
each with one line on standard error saying what happened.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import re
import sqlite3
import sys
import time
from pathlib import Path

from kindlyguard_monitor.cli.args import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, TIME_OPTIONS
from kindlyguard_monitor.history import db, export, query
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import SEVERITY_NUMBER, THREAT_TYPES

_RELATIVE = re.compile(r"-?\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)", re.IGNORECASE)
MAX_AGO_S = 10_000 * 365.25 * 86400
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="write the threat history, or a search of it, as CSV or JSON",
        description="Write every stored threat that matches the filters, newest first, as CSV (a header row; "
        "cells that a spreadsheet would run as a formula get a leading ') or JSON (an array; jsonl: one "
        "object per line). With no filter, the whole history. A value that starts with '-' is written "
        "with '=': --text=-x.",
    )
    p.add_argument("--format", choices=export.FORMATS, default="csv", help="csv (default), json or jsonl")
    p.add_argument("--output", "-o", default="-", metavar="FILE", help="where to write (default -: standard output)")
    p.add_argument("--text", metavar="T",
                   help="only threats whose details or source contain T (ASCII letters in any case; "
                   "no wildcards)")
    p.add_argument("--type", dest="types", action="append", type=_threat_type, metavar="NAME",
                   help=f"only this threat type (repeat for several): {', '.join(THREAT_TYPES)}, in any case, "
                   "or a part of one that names it alone (bidi, traversal)")
    p.add_argument("--min-severity", type=_severity, metavar="NAME",
                   help="only this severity and above: Low, Medium, High, Critical")
    p.add_argument("--blocked", choices=("yes", "no"), help="only blocked (yes) or only allowed (no) threats")
    p.add_argument("--source", metavar="S", help="only threats from exactly this source (for part of one: --text)")
    p.add_argument("--since", type=parse_time, metavar="WHEN",
                   help="only threats at or after WHEN: ISO 8601 (2026-11-25, 2026-11-25T14:00, with Z or an "
                   "offset for UTC; else local time), or a time ago: 90s, 30m, 1h, 7d, 2w")
    p.add_argument("--until", type=parse_time, metavar="WHEN", help="only threats before WHEN (as --since)")
    p.add_argument("--history", metavar="PATH",
                   help="the history file (default: $KINDLYGUARD_HISTORY_PATH, else history.sqlite3 in the "
                   "user's data folder)")
    p.add_argument("--no-formula-guard", action="store_true",
                   help="CSV: write text exactly as stored, even when a spreadsheet would run it")
    p.set_defaults(run=run)


def _threat_type(text: str) -> int:
    """A type's name in any case, a unique part of one (bidi, traversal), or its number."""
    key = text.strip().lower()
    if key.isdigit() and int(key) < len(THREAT_TYPES):
        return int(key)
    exact = [i for i, name in enumerate(THREAT_TYPES) if name.lower() == key]
    partial = [i for i, name in enumerate(THREAT_TYPES) if key and key in name.lower()]
    if exact or len(partial) == 1:
        return (exact or partial)[0]
    raise argparse.ArgumentTypeError(f"unknown threat type {text!r}; one of {', '.join(THREAT_TYPES)}")


def _severity(text: str) -> int:
    by_name = {name.lower(): n for name, n in SEVERITY_NUMBER.items()}
    key = text.strip().lower()
    if key in by_name:
        return by_name[key]
    if key in ("1", "2", "3", "4"):
        return int(key)
    raise argparse.ArgumentTypeError(f"unknown severity {text!r}; one of Low, Medium, High, Critical")


def join_time_values(argv: list[str]) -> list[str]:
    """`--since -1h` as `--since=-1h`: argparse takes a value that starts with '-'
    (and is not a plain number) for an option and stops with "expected one
    argument". A time ago written with its minus sign is the README's form."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in TIME_OPTIONS and i + 1 < len(argv) and _RELATIVE.fullmatch(argv[i + 1].strip()) \
                and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        if argv[i] == "--":
            return out + argv[i:]
        out.append(argv[i])
        i += 1
    return out


def parse_time(text: str, now: float | None = None) -> int:
    """WHEN (see --since) as µs since the epoch."""
    now = time.time() if now is None else now
    raw = text.strip()
    if raw.lower() == "now":
        return int(now * 1_000_000)
    m = _RELATIVE.fullmatch(raw)
    if m:
        ago_s = float(m.group(1)) * _UNIT_S[m.group(2).lower()]  # a 320-digit number is inf, not an error
        if not ago_s <= MAX_AGO_S:
            raise argparse.ArgumentTypeError(
                f"{text!r} is more than 10,000 years ago; leave the option out to include the whole history")
        return int((now - ago_s) * 1_000_000)
    try:
        moment = dt.datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.astimezone()  # local time, as the app shows it
        return int(moment.timestamp() * 1_000_000)
    except (ValueError, OverflowError, OSError):  # not a time, or one the platform's clock cannot hold
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601 from 1970 to 9999 such as 2026-11-25T14:00 or 2026-11-25T14:00Z, "
            "or a time ago such as 30m, 1h, 7d)") from None


def build_filter(args: argparse.Namespace) -> query.Filter:
    return query.Filter(
        text=args.text or "",
        types=frozenset(args.types or ()),
        min_severity=args.min_severity or 0,
        blocked=None if args.blocked is None else args.blocked == "yes",
        source=args.source,
        since_us=args.since,
        until_us=args.until,
    )


def _fail(message: str) -> int:
    print(f"kgmon export: {visible(message)}", file=sys.stderr)  # paths and SQLite's words: outside text
    return EXIT_FAILURE


def run(args: argparse.Namespace) -> int:
    if args.since is not None and args.until is not None and args.since >= args.until:
        print("kgmon export: --since must be before --until", file=sys.stderr)
        return EXIT_USAGE
    path = db.history_path(args.history)
    try:
        reader = db.open_reader(path)
    except FileNotFoundError:
        return _fail(f"no threat history at {path} (the app creates it when it stores its first threat; "
                     "--history or $KINDLYGUARD_HISTORY_PATH names another)")
    except db.Refused as exc:  # a folder, a device: said, left alone
        return _fail(str(exc))
    except (sqlite3.Error, OSError) as exc:  # OSError: a name too long, a folder we may not enter
        return _fail(f"cannot read the threat history {path}: {getattr(exc, 'strerror', None) or exc}")
    try:
        return _export(reader, path, build_filter(args), args)
    finally:
        reader.close()


def _export(reader: sqlite3.Connection, path: Path, f: query.Filter, args: argparse.Namespace) -> int:
    to_stdout = args.output == "-"
    target = Path(args.output)
    temp = None
    try:
        if to_stdout:
            out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        elif target.exists() and not target.is_file():  # /dev/null, a pipe: write in place
            out = open(target, "w", encoding="utf-8", newline="")
        else:
            temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
            out = open(temp, "w", encoding="utf-8", newline="")
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    try:
        n = export.export(reader, f, out, args.format, formula_guard=not args.no_formula_guard)
        out.flush()
        if temp is not None:
            out.close()
            os.replace(temp, target)
            temp = None
    except BrokenPipeError:  # `kgmon export | head`: the reader of our output left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except sqlite3.Error as exc:
        return _fail(f"cannot read the threat history {path}: {exc}")
    except OSError as exc:
        return _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    finally:
        if to_stdout:
            try:
                out.detach()  # leave sys.stdout's buffer open
            except (ValueError, OSError):
                pass
        else:
            try:
                out.close()
            except OSError:  # what could not be flushed was reported above
                pass
        if temp is not None:
            temp.unlink(missing_ok=True)
    where = "standard output" if to_stdout else str(target)
    print(f"kgmon export: {n:,} threat{'s' if n != 1 else ''} written to {visible(where)}", file=sys.stderr)
    return EXIT_OK
