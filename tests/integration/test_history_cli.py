"""`kgmon export` as a real process: filters, formats, files, and errors as one clear line."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import pytest
from conftest import run_kgmon
from history_data import make_history, ring_batch, ring_event

from kindlyguard_monitor.cli.export import parse_time
from kindlyguard_monitor.history import export, query
from kindlyguard_monitor.history.query import Filter

NOW_US = time.time_ns() // 1000
HOUR_US = 3600 * 1_000_000


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    events = [ring_event(i, time_us=NOW_US - (2 * 24 if i < 50 else 0) * HOUR_US - (50 - i % 50) * 60_000_000,
                         threat_type=i % 8, severity=1 + i % 4, blocked=i % 2 == 0,
                         source="mcp:tools/call" if i % 5 else "other'; --",
                         details=f"=cmd|' /C calc'!A0 \u202e {i} 50%_off" if i % 7 == 0 else f"threat {i}")
              for i in range(100)]
    return make_history(tmp_path_factory.mktemp("history") / "history.sqlite3", [ring_batch(events)])


def want(history, f: Filter) -> list[dict]:
    return [export.record(t) for t in query.iterate(history, f)]


def test_export_everything_as_json(history):
    r = run_kgmon("export", "--history", history, "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == want(history, Filter())
    assert "kgmon export: 100 threats written to standard output" in r.stderr


def test_filters_to_a_csv_file(history, tmp_path):
    out = tmp_path / "threats.csv"
    r = run_kgmon("export", "--history", history, "--output", out, "--type", "UnicodeInvisible", "--type", "traversal",
                  "--min-severity", "medium", "--blocked", "no", "--source", "mcp:tools/call", "--since", "1d")
    assert r.returncode == 0, r.stderr
    f = Filter(types=frozenset({1, 5}), min_severity=2, blocked=False, source="mcp:tools/call",
               since_us=NOW_US - 24 * HOUR_US)
    expected = want(history, f)
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert [int(row["seq"]) for row in rows] == [e["seq"] for e in expected] and expected
    assert f"{len(expected)} threats written to {out}" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["threats.csv"]  # no temporary file left


def test_hostile_text_and_json_lines(history):
    r = run_kgmon("export", "--history", history, "--format", "jsonl", "--text=' /c CALC'!a0 \u202e")
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in r.stdout.splitlines()]
    assert got == want(history, Filter(text="' /c CALC'!a0 \u202e")) and len(got) == 15
    r = run_kgmon("export", "--history", history, "--format", "jsonl", "--text=%_")
    assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [e["seq"] for e in
                                                                          want(history, Filter(text="%_"))]


def test_the_history_comes_from_the_environment(history, tmp_path):
    env = dict(os.environ, KINDLYGUARD_HISTORY_PATH=str(history))
    r = run_kgmon("export", "--format", "json", "--until", "1d", env=env)
    assert r.returncode == 0, r.stderr
    assert [e["seq"] for e in json.loads(r.stdout)] == list(range(49, -1, -1))


@pytest.mark.parametrize("args, message", [
    (["--type", "Nope"], "unknown threat type 'Nope'"),
    (["--type", "unicode"], "unknown threat type 'unicode'"),  # three types have it in their name
    (["--min-severity", "extreme"], "unknown severity 'extreme'"),
    (["--since", "last tuesday"], "not a time: 'last tuesday'"),
    (["--since", "1h", "--until", "2h"], "--since must be before --until"),
    (["--format", "xml"], "invalid choice: 'xml'"),
    (["--blocked", "maybe"], "invalid choice: 'maybe'"),
])
def test_bad_usage_exits_2_with_one_clear_line(history, args, message):
    r = run_kgmon("export", "--history", history, *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_failures_exit_1_with_what_went_wrong(history, tmp_path):
    missing = tmp_path / "none.sqlite3"
    r = run_kgmon("export", "--history", missing)
    assert r.returncode == 1 and f"no threat history at {missing}" in r.stderr and "Traceback" not in r.stderr
    assert not missing.exists()
    r = run_kgmon("export", "--history", history, "--output", tmp_path / "no-such-folder" / "x.csv")
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all\n" * 100)
    r = run_kgmon("export", "--history", junk)
    assert r.returncode == 1 and f"cannot read the threat history {junk}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and junk.read_bytes() == b"not a database at all\n" * 100  # left alone


def test_times_parse_as_documented():
    now = 1_700_000_000.0
    assert parse_time("now", now) == 1_700_000_000_000_000
    assert parse_time("90s", now) == parse_time("-90s", now) == 1_699_999_910_000_000
    assert parse_time("1.5h", now) == 1_700_000_000_000_000 - 5400 * 1_000_000
    assert parse_time("2w", now) == 1_700_000_000_000_000 - 14 * 86400 * 1_000_000
    assert parse_time("2023-11-14T22:13:20Z", now) == 1_700_000_000_000_000
    assert parse_time("2023-11-14T23:13:20+01:00", now) == 1_700_000_000_000_000


@pytest.mark.slow
def test_the_history_bench_runs(tmp_path):
    r = run_kgmon("bench", "--history", "--short", "--json", "--shm-path", tmp_path / "unused.shm", timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["mode"] == "short" and out["threats"] == 100_000
    (live,) = out["live"]
    assert live["stored"] == live["delivered"] > 0  # the store kept everything the reader read
    assert out["store_rate_per_s"] > 0 and out["size_mib_per_million"] > 0
    assert out["store_to_floor"] > 0 and out["sqlite_indexed_per_s"] > 0  # the same run's floors
    assert live["alone_missed"] >= 0
    assert out["search"]["one type (PathTraversal)"]["rows"] == 200
