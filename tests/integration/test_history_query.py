"""Searching the history: hostile text finds exactly what contains it, every
filter agrees with a plain-Python reference, and keyset paging visits every row once.
Each search runs twice: the way a small history is searched (the newest rows
checked one by one) and through the trigram index, with half
of the rows not indexed yet (a quarter of those not in the severity and type
indexes either), so both plans must give the reference's answer."""

from __future__ import annotations

import random
import sqlite3

import pytest
from history_data import BASE_US, make_history, ring_batch, ring_event, start_store

from kindlyguard_monitor.history import query
from kindlyguard_monitor.history.query import Filter

HOSTILE = [
    "O'Brien's tool",
    'a "double" quote',
    "100% sure",
    "50%_off",
    "snake_case_name",
    "back\\slash and \\% escaped",
    "'; DROP TABLE threats; --",
    "Robert'); DROP TABLE threats;--",
    "SELECT * FROM threats WHERE 1=1 OR ''=''",
    "right-to-left \u202eexe.txt",
    "invisible zero\u200bwidth",
    "nul \x00 byte",
    "UPPER CASE DROP",
    "Émile é É",
    "Σίσυφος and Straße",
    "[brackets] and *stars* and ?marks",
    "plain details",
]
SOURCES = ["mcp:tools/call", "mcp:tools/list", "MCP:Tools/Call", "src'; --", "50%", "a_b", "\u202esrc"]
NEEDLES = ["'", '"', "%", "_", "\\", "\\%", "'; DROP TABLE threats; --", "DROP", "drop", "o'brien", "100%", "e_c",
           "\u202e", "\u200b", "\x00", "*", "[", "?", "1=1 or", "é", "É", "mcp:tools/call", "a_b", "zzz-nothing",
           "ÉMILE", "émile é", "σίσυφος", "ΣΊΣΥΦΟΣ AND", "straße", "src'; --", "\u202esrc", "ools/c",
           "byte #", "#5", "9", "Σ"]  # (text after a NUL is found too)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str, needle: str) -> str:
    """As docs/history.md says: an ASCII needle folds A-Z only, any other needle folds all letters."""
    return text.translate(_ASCII_LOWER) if needle.isascii() else text.lower()


def reference(all_rows: list[dict], f: Filter) -> list[int]:
    """The row ids `f` must find, newest first, computed in Python."""
    needle = fold(f.text, f.text)

    def ok(r):
        return ((not f.text or needle in fold(r["details"], f.text) or needle in fold(r["source"], f.text))
                and (not f.types or r["type"] in f.types)
                and r["severity"] >= f.min_severity
                and (f.blocked is None or r["blocked"] == f.blocked)
                and (f.source is None or r["source"] == f.source)
                and (f.since_us is None or r["time_us"] >= f.since_us)
                and (f.until_us is None or r["time_us"] < f.until_us))

    found = [r for r in all_rows if ok(r)]
    found.sort(key=lambda r: (r["time_us"], r["id"]), reverse=True)
    return [r["id"] for r in found]


def every_page(database, f: Filter, limit: int) -> list[int]:
    ids, cursor = [], None
    while True:
        page = query.search(database, f, limit=limit, before=cursor)
        ids += [t.row_id for t in page.rows]
        assert len(page.rows) <= limit
        if page.next_cursor is None:
            return ids
        assert len(page.rows) == limit
        cursor = page.next_cursor


@pytest.fixture(scope="module")
def history_file(tmp_path_factory):
    """600 threats: hostile details and sources, every type and severity, many equal times;
    the first 300 in the text index, the rest stored after it (not indexed), the last 150
    of them as during a flood: not in the severity and type indexes either."""
    rng = random.Random(5)
    events = [ring_event(i, time_us=BASE_US + rng.randrange(60) * 1000, threat_type=rng.randrange(8),
                         severity=rng.randrange(1, 5), blocked=rng.random() < 0.4, source=rng.choice(SOURCES),
                         details=f"{rng.choice(HOSTILE)} #{i}")
              for i in range(600)]
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    store = start_store(path)
    store.submit([ring_batch(events[:300])])
    assert store.flush(60) and store.wait_indexed(60)
    store.close()
    make_history(path, [ring_batch(events[300:450])], index_text=False)
    make_history(path, [ring_batch(events[450:])], index_text=False, defer_waiting=-1, catch_up=False)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT value FROM meta WHERE name = 'text_upto'").fetchone()[0] == 300
    assert conn.execute("SELECT value FROM meta WHERE name = 'ix_upto'").fetchone()[0] == 450
    assert conn.execute("SELECT ix, count(*) FROM threats GROUP BY ix").fetchall() == [(0, 150), (1, 450)]
    conn.close()
    return path


@pytest.fixture(scope="module", params=["newest rows first", "through the index"])
def history(request, history_file):
    """The history, searched one way or the other (query.FEW_CANDIDATES, query.PROBE_ROWS)."""
    saved = query.FEW_CANDIDATES, query.PROBE_ROWS
    if request.param == "newest rows first":
        query.FEW_CANDIDATES = 0  # always "many": check the newest rows (all 600 here) one by one
    else:
        query.PROBE_ROWS = 0  # never settled by the newest rows: narrow through the index
    try:
        yield _rows_of(history_file)
    finally:
        query.FEW_CANDIDATES, query.PROBE_ROWS = saved


def _rows_of(path):
    conn = sqlite3.connect(path)
    all_rows = [dict(zip(("id", "time_us", "type", "severity", "blocked", "source", "details"), r))
                for r in conn.execute("SELECT id, time_us, type, severity, blocked, source, details FROM threats")]
    conn.close()
    for r in all_rows:
        r["blocked"] = bool(r["blocked"])
    return path, all_rows


@pytest.mark.parametrize("needle", NEEDLES, ids=[ascii(n) for n in NEEDLES])
def test_hostile_search_text_finds_exactly_what_contains_it(history, needle):
    path, all_rows = history
    f = Filter(text=needle)
    expected = reference(all_rows, f)
    with query.connection(path) as conn:
        assert every_page(conn, f, 50) == expected
        assert query.count(conn, f) == len(expected)
        assert conn.execute("SELECT count(*) FROM threats").fetchone()[0] == 600  # still all there
    if needle not in ("zzz-nothing", "ΣΊΣΥΦΟΣ AND"):
        assert expected, f"the test data should contain {needle!r}"


def test_case_is_folded_beyond_ascii(history):
    path, _ = history
    with query.connection(path) as conn:
        upper = {t.row_id for t in query.iterate(conn, Filter(text="DROP"))}
        assert upper == {t.row_id for t in query.iterate(conn, Filter(text="dRoP"))} and upper
        for needle, other in (("É", "é"), ("ÉMILE", "émile"), ("ΣΊΣΥΦΟΣ", "σίσυφος")):
            found = {t.row_id for t in query.iterate(conn, Filter(text=needle))}
            assert found and found == {t.row_id for t in query.iterate(conn, Filter(text=other))}, needle
        assert not list(query.iterate(conn, Filter(text="STRASSE")))  # ß is not "ss": simple case folding


def test_a_source_never_stored_is_answered_without_a_scan(history):
    path, all_rows = history
    with query.connection(path) as conn:
        assert query.search(conn, Filter(source="mcp:nowhere")).rows == []
        assert query.count(conn, Filter(source="mcp:nowhere")) == 0
        assert conn.execute("SELECT count(*) FROM sources").fetchone()[0] == len(SOURCES)
        f = Filter(source="\u202esrc")
        assert [t.row_id for t in query.search(conn, f, limit=1000).rows] == reference(all_rows, f)


def test_every_filter_agrees_with_the_reference(history):
    path, all_rows = history
    rng = random.Random(11)
    times = sorted({r["time_us"] for r in all_rows})
    with query.connection(path) as conn:
        for _ in range(150):
            since = rng.choice([None, rng.choice(times)])
            f = Filter(
                text=rng.choice(["", "", "drop", "%", "_", "'", "#1", "\u202e", "tool", "ÉMILE", "#12", "ools/"]),
                types=frozenset(rng.sample(range(8), rng.choice([0, 0, 1, 2, 3]))),
                min_severity=rng.choice([0, 1, 2, 3, 4]),
                blocked=rng.choice([None, True, False]),
                source=rng.choice([None, None, None] + SOURCES),
                since_us=since,
                until_us=rng.choice([None, rng.choice(times)]),
            )
            assert every_page(conn, f, rng.choice([1, 7, 100])) == reference(all_rows, f), f
            assert query.count(conn, f) == len(reference(all_rows, f)), f


def test_keyset_paging_visits_every_row_once_even_with_equal_times(history):
    path, all_rows = history
    everything = reference(all_rows, Filter())
    assert len({r["time_us"] for r in all_rows}) < len(all_rows) / 5  # many ties to break by id
    for limit in (1, 13, 599, 600, 601):
        ids = every_page(path, Filter(), limit)
        assert ids == everything
        assert len(set(ids)) == 600


def test_threats_stored_while_paging_neither_repeat_nor_shift_later_pages(tmp_path):
    path = tmp_path / "history.sqlite3"
    store = start_store(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(100)])])
        assert store.flush(60)
        first = query.search(path, Filter(), limit=30)
        store.submit([ring_batch([ring_event(i) for i in range(100, 150)])])  # newer: above page 1
        assert store.flush(60)
        rest = every_page_after(path, first.next_cursor, 30)
        assert [t.seq for t in first.rows] + rest == list(range(99, -1, -1))
    finally:
        store.close()


def every_page_after(path, cursor, limit) -> list[int]:
    seqs = []
    while cursor is not None:
        page = query.search(path, Filter(), limit=limit, before=cursor)
        seqs += [t.seq for t in page.rows]
        cursor = page.next_cursor
    return seqs


def test_recent_gives_the_newest_oldest_first(history):
    path, all_rows = history
    newest = reference(all_rows, Filter())[:25]
    assert [t.row_id for t in query.recent(path, 25)] == newest[::-1]
    assert query.recent(path, 0) == []
    assert len(query.recent(path, 10_000)) == 600


def test_a_missing_history_is_an_error_not_a_new_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        query.search(tmp_path / "nothing.sqlite3")
    assert not (tmp_path / "nothing.sqlite3").exists()
