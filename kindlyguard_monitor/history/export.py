"""Export a whole search (every matching threat, not one page) as CSV or JSON.

Rows are streamed from one read snapshot (kindlyguard_monitor.history.query.iterate), newest
first, so a million-row export needs no more memory than one.

Fields (both formats, named as in `kgmon tail --json`): timestamp (RFC 3339
UTC, µs), timestamp_unix_us, severity (name), threat_type (name), blocked,
source, details, transport, id ("<generation hex>-<seq>", or "content-<hex>"
for a threat without numbers), generation, seq, flags; and `host` last, only for a fleet
view's history (fleet-history.sqlite3: its threats carry the workstation they came from), so
this machine's own history exports exactly as before.

- csv: a header row, then one row per threat (the csv module's quoting:
  text with commas, quotes or newlines is quoted, never altered). Text is
  written as received except for the formula guard (OWASP, "CSV
  Injection"): a source or details cell that a spreadsheet may run as a
  formula gets a leading `'` and is otherwise left intact. That is a cell
  that begins with = + - @ (or their full-width and small forms ＝ ＋ － ＠
  ﹦ ﹢ ﹣, which East Asian spreadsheets convert), also after any leading
  blanks (spaces, tabs, newlines, carriage returns, other Unicode spaces:
  spreadsheets trim them), or that begins with a tab or a carriage return.
  So does a cell that already begins with `'`, which keeps the guard
  reversible (`unguard()` removes exactly one leading `'`). UTF-8, no BOM.
- json: one JSON array of objects, written incrementally.
- jsonl: JSON Lines, one object per line (for streaming tools).
  JSON output is ASCII: every non-ASCII or invisible character is a \\uXXXX
  escape, so U+202E cannot reorder what a terminal shows.
"""

from __future__ import annotations

import csv
import json
from typing import Iterable, TextIO

from kindlyguard_monitor.history import query
from kindlyguard_monitor.history.records import StoredThreat

FORMATS = ("csv", "json", "jsonl")
FIELDS = ("timestamp", "timestamp_unix_us", "severity", "threat_type", "blocked", "source", "details",
          "transport", "id", "generation", "seq", "flags")
FLEET_FIELDS = FIELDS + ("host",)  # a fleet view's history (has_hosts)
GUARDED_FIELDS = ("source", "details")  # (and a fleet history's host: HOST_GUARDED)
HOST_GUARDED = GUARDED_FIELDS + ("host",)
_GUARDED_STARTS = ("\t", "\r", "'")
_FORMULA_SIGNS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20\ufe66\ufe62\ufe63")


def record(t: StoredThreat, names: tuple[str, ...] = FIELDS) -> dict:
    """One threat as an export record (`names`, in order): the event's to_dict() and three more."""
    fields = t.event().to_dict()
    fields.update(timestamp_unix_us=t.timestamp_unix_us, flags=t.flags, host=t.host)
    return {name: fields[name] for name in names}


def has_hosts(database: query.Database) -> bool:
    """Is this a fleet view's history? Its newest threat names a host (schema 4's column; this
    machine's own history leaves it empty, and the two are never mixed in one file)."""
    with query.connection(database) as conn:
        if not any(r[1] == "host" for r in conn.execute("PRAGMA table_info(threats)")):
            return False
        row = conn.execute("SELECT host FROM threats ORDER BY id DESC LIMIT 1").fetchone()
        return bool(row and row[0])


def guard(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (see the module docstring)."""
    if text.startswith(_GUARDED_STARTS):
        return "'" + text
    start = text.lstrip()  # str.lstrip: every Unicode blank (space, \n, \t, \r, U+3000, U+00A0...)
    return "'" + text if start and start[0] in _FORMULA_SIGNS else text


def unguard(text: str) -> str:
    """The text guard() was given."""
    return text[1:] if text.startswith("'") else text


def write_csv(threats: Iterable[StoredThreat], out: TextIO, formula_guard: bool = True,
              names: tuple[str, ...] = FIELDS) -> int:
    """Write a header and one row per threat to `out` (opened with newline=""); returns the row count."""
    writer = csv.writer(out)
    writer.writerow(names)
    guarded = HOST_GUARDED if "host" in names else GUARDED_FIELDS
    n = 0
    for t in threats:
        r = record(t, names)
        if formula_guard:
            for name in guarded:
                r[name] = guard(r[name])
        r["blocked"] = "true" if r["blocked"] else "false"
        writer.writerow(["" if v is None else v for v in r.values()])
        n += 1
    return n


def write_json(threats: Iterable[StoredThreat], out: TextIO, lines: bool = False,
               names: tuple[str, ...] = FIELDS) -> int:
    """A JSON array of records (or, with lines=True, one record per line); returns the count."""
    n = 0
    if lines:
        for t in threats:
            out.write(json.dumps(record(t, names)) + "\n")
            n += 1
        return n
    out.write("[")
    for t in threats:
        out.write(("\n" if n == 0 else ",\n") + json.dumps(record(t, names)))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def export(database: query.Database, f: query.Filter, out: TextIO, fmt: str = "csv",
           formula_guard: bool = True) -> int:
    """Every threat matching `f`, newest first, to `out` as `fmt` (one of FORMATS); returns the count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    names = FLEET_FIELDS if has_hosts(database) else FIELDS
    threats = query.iterate(database, f)
    try:
        if fmt == "csv":
            return write_csv(threats, out, formula_guard, names)
        return write_json(threats, out, lines=fmt == "jsonl", names=names)
    finally:
        threats.close()
