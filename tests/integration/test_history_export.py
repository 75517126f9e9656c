"""Export: CSV, JSON and JSON Lines read back equal the search they came from."""

from __future__ import annotations

import csv
import io
import json

import pytest
from history_data import make_history, ring_batch, ring_event, ws_batch, ws_threat

from kindlyguard_monitor.history import export, query
from kindlyguard_monitor.history.query import Filter

TRICKY = [
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tstarts with a tab",
    "\rstarts with a carriage return",
    "'already quoted",
    "''two quotes",
    "comma, \"quotes\" and\na newline",
    "right-to-left \u202eexe.txt",
    "nul \x00 inside",
    "plain",
    "",
]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    events = [ring_event(i, threat_type=i % 8, severity=1 + i % 4, blocked=i % 3 == 0, flags=i % 2,
                         source=TRICKY[(i + 5) % len(TRICKY)], details=TRICKY[i % len(TRICKY)])
              for i in range(3000)]  # more than one fetchmany() chunk
    unnumbered = [ws_threat(None, None, details="=from a Shield without numbers", time_us=events[-1].timestamp_unix_us)]
    return make_history(tmp_path_factory.mktemp("history") / "history.sqlite3",
                        [ring_batch(events), ws_batch(unnumbered)])


def expected(path, f: Filter) -> list[dict]:
    return [export.record(t) for t in query.iterate(path, f)]


FILTERS = [Filter(), Filter(min_severity=3, blocked=True), Filter(text="'"), Filter(types=frozenset({9}))]


@pytest.mark.parametrize("f", FILTERS, ids=["all", "severity+blocked", "text", "nothing"])
def test_csv_reads_back_equal_to_the_search(history, f):
    out = io.StringIO(newline="")
    n = export.export(history, f, out, "csv")
    want = expected(history, f)
    assert n == len(want)
    reader = csv.reader(io.StringIO(out.getvalue(), newline=""))
    assert next(reader) == list(export.FIELDS)
    got = []
    for cells in reader:
        r = dict(zip(export.FIELDS, cells))
        for name in export.GUARDED_FIELDS:
            r[name] = export.unguard(r[name])
        for name in ("timestamp_unix_us", "generation", "seq", "flags"):
            r[name] = int(r[name]) if r[name] else None
        r["blocked"] = {"true": True, "false": False}[r["blocked"]]
        got.append(r)
    assert got == want


def test_csv_cells_a_spreadsheet_would_run_are_guarded(history):
    out = io.StringIO(newline="")
    export.export(history, Filter(), out, "csv")
    cells = {c for row in csv.reader(io.StringIO(out.getvalue(), newline="")) for c in row[5:7]}
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    assert "'=HYPERLINK(\"http://evil.example\",\"click\")" in cells
    assert "'''two quotes" in cells and "plain" in cells
    raw = io.StringIO(newline="")
    export.export(history, Filter(), raw, "csv", formula_guard=False)
    assert "=HYPERLINK" in {c[:10] for row in csv.reader(io.StringIO(raw.getvalue(), newline="")) for c in row}


@pytest.mark.parametrize("f", FILTERS, ids=["all", "severity+blocked", "text", "nothing"])
def test_json_reads_back_equal_to_the_search(history, f):
    out = io.StringIO()
    n = export.export(history, f, out, "json")
    assert json.loads(out.getvalue()) == expected(history, f)
    assert n == len(expected(history, f))
    assert out.getvalue().isascii()  # U+202E and friends are \u escapes


def test_json_lines_read_back_equal_to_the_search(history):
    out = io.StringIO()
    export.export(history, Filter(text="nul"), out, "jsonl")
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == expected(history, Filter(text="nul")) and lines


def test_records_carry_what_the_app_shows(history):
    newest = expected(history, Filter())[0]
    assert newest["id"].startswith("content-") and newest["seq"] is None  # the unnumbered one
    numbered = expected(history, Filter(types=frozenset({5})))[0]
    assert numbered["threat_type"] == "PathTraversal" and numbered["id"].endswith(f"-{numbered['seq']}")
    assert numbered["timestamp"].endswith("Z") and numbered["severity"] in ("Low", "Medium", "High", "Critical")


def test_an_unknown_format_is_refused(history):
    with pytest.raises(ValueError, match="unknown export format"):
        export.export(history, Filter(), io.StringIO(), "xml")


# OWASP's CSV-injection guidance: a cell that a spreadsheet may read as a formula, also
# after leading blanks or in full-width form, starts with a single quote, otherwise intact.
HOSTILE_CELLS = [
    " =1+1", "  +cmd|' /C calc'!A0", "\n-2+3", "\n\n@SUM(A1)", "\t=1", "\r=1", " \t\r\n=HYPERLINK(\"x\")",
    "\u3000=1", "\u00a0+1",  # ideographic and no-break spaces
    "＝HYPERLINK(\"http://evil.example\")", "＋1", "－1", "＠SUM(A1)", " ＝1", "\n＠x",
    "\ufe66 small equals", "\ufe62 small plus", "\ufe63 small minus",
]
SAFE_CELLS = ["plain", " plain after a space", "\nnewline then text", "a=1", "1+1", "", " ", "x@y"]


@pytest.mark.parametrize("text", HOSTILE_CELLS)
def test_csv_guard_catches_formulas_behind_blanks_and_full_width_signs(text):
    assert export.guard(text) == "'" + text  # one quote, nothing else changed
    assert export.unguard(export.guard(text)) == text


@pytest.mark.parametrize("text", SAFE_CELLS)
def test_csv_guard_leaves_harmless_cells_alone(text):
    assert export.guard(text) == text


def test_csv_export_of_hostile_cells_guards_every_one(tmp_path):
    events = [ring_event(i, source=text, details=text) for i, text in enumerate(HOSTILE_CELLS)]
    path = make_history(tmp_path / "history.sqlite3", [ring_batch(events)])
    out = io.StringIO(newline="")
    assert export.export(path, Filter(), out, "csv") == len(HOSTILE_CELLS)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))[1:]
    for row in rows:
        for cell in row[5:7]:
            assert cell.startswith("'") and cell[1:] in HOSTILE_CELLS
    assert sorted(r[6][1:] for r in rows) == sorted(HOSTILE_CELLS)
