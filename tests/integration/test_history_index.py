"""The text index on real files: an old history is migrated without losing a row and
becomes searchable through the index; retention takes deleted rows out of the index;
the WAL is checkpointed when the writer is idle and when it closes. The time, severity
and type indexes: rows stored during a flood are found before they are in them, and
put in them behind the writes."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import wait_for
from history_data import BASE_US, GEN, make_history, ring_batch, ring_event, rows, start_store

from kindlyguard_monitor.history import db, late_index, query, text_index
from kindlyguard_monitor.history.query import Filter
from kindlyguard_monitor.history.schema import MIGRATIONS, SCHEMA_VERSION, TEXT_INDEX, register_functions

ALL_COLUMNS = ("SELECT id, key, time_us, type, severity, blocked, flags, source, details, transport, generation, "
               "seq, stored_at FROM threats ORDER BY id")


@pytest.fixture
def path(tmp_path):
    return tmp_path / "history.sqlite3"


@pytest.fixture
def through_the_index(monkeypatch):
    monkeypatch.setattr(query, "PROBE_ROWS", 0)


def integrity_check(path) -> None:
    """FTS5's own check: the index holds exactly the content table's rows up to text_upto
    (raises sqlite3.DatabaseError when it does not)."""
    conn = sqlite3.connect(path)
    register_functions(conn)  # the index's content view uses kgmon's own function
    try:
        upto = conn.execute("SELECT value FROM meta WHERE name = 'text_upto'").fetchone()[0]
        assert upto == conn.execute("SELECT coalesce(max(id), 0) FROM threats").fetchone()[0]
        conn.execute(f"INSERT INTO {TEXT_INDEX} ({TEXT_INDEX}, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def _version_2_file(path, n: int) -> None:
    """A history as kgmon wrote it before the text index: schema 2 exactly as it shipped."""
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA page_size = 16384")
    old.execute("PRAGMA auto_vacuum = 2")
    for statement in MIGRATIONS[0] + MIGRATIONS[1]:
        old.execute(statement)
    old.execute("PRAGMA user_version = 2")
    old.execute("BEGIN")
    old.executemany(
        "INSERT INTO threats (key, time_us, type, severity, blocked, flags, source, details, transport, generation, "
        "seq, stored_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 'shm', ?, ?, 0)",
        [(GEN.to_bytes(8, "big") + i.to_bytes(8, "big"), BASE_US + i * 1000, i % 8, 1 + i % 4, i % 3 == 0,
          f"mcp:old/{i % 7}", f"old threat {i}: Ünïcode {'ΣΊΣΥΦΟΣ' if i % 500 == 0 else 'plain'}", f"{GEN:016x}", i)
         for i in range(n)])
    old.execute("INSERT INTO gaps (time_us, transport, generation, missed, corrupt, kind) "
                "VALUES (?, 'shm', NULL, 5, 0, 'reader')", (BASE_US,))
    old.execute("COMMIT")
    old.close()


def test_an_old_history_keeps_every_row_and_becomes_searchable_through_the_index(path, through_the_index):
    _version_2_file(path, 3000)
    before = rows(path, ALL_COLUMNS)
    store = start_store(path)
    try:
        assert store.notice is None
        assert store.wait_indexed(60)
        assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)] == [(5,)]  # 4: host (the fleet); 5: ix
        assert rows(path, ALL_COLUMNS) == before  # every row, every value
        assert rows(path, "SELECT missed FROM gaps") == [(5,)]
        assert rows(path, "SELECT count(*) FROM sources") == [(7,)]
        assert store.unseen == 3000 and query.unseen_count(path) == 3000
        integrity_check(path)
        with query.connection(path) as conn:
            assert text_index.upto(conn) == 3000
            found = [t.seq for t in query.iterate(conn, Filter(text="σίσυφος"))]
            assert sorted(found) == [0, 500, 1000, 1500, 2000, 2500]
            assert query.count(conn, Filter(text="old threat 123")) == 11  # 123, 1230 .. 1239
            assert query.count(conn, Filter(text="ünïcode plain")) == 2994
            assert query.search(conn, Filter(source="mcp:old/3"), limit=5000).rows[0].seq == 2999 - (2999 - 3) % 7
    finally:
        store.close()


def test_rows_stored_before_the_index_caught_up_are_found(path, through_the_index):
    hidden = "hidden after a NUL: \x00"
    make_history(path, [ring_batch([ring_event(i, details=hidden * (i % 2) + f"needle-{i % 10}")
                                    for i in range(2000)])], index_text=False)
    with query.connection(path) as conn:
        assert text_index.upto(conn) == 0 and text_index.backlog(conn) == 2000
        assert query.count(conn, Filter(text="NEEDLE-7")) == 200
    store = start_store(path)  # indexes what waits, in chunks, while idle
    try:
        assert store.wait_indexed(60)
        with query.connection(path) as conn:
            assert text_index.backlog(conn) == 0
            assert query.count(conn, Filter(text="NEEDLE-7")) == 200
    finally:
        store.close()
    integrity_check(path)


def _searches(conn) -> dict:
    """Every row id each search finds, page by page (pages of 7), and its count."""
    now = BASE_US + 1000 * 1000
    filters = [Filter(), Filter(types={2}), Filter(types={1, 3}, min_severity=3), Filter(min_severity=4),
               Filter(since_us=now - 500_000, until_us=now), Filter(blocked=True, types={0}),
               Filter(text="row 1"), Filter(source="src-3")]
    found = {}
    for f in filters:
        ids, cursor = [], None
        while True:
            page = query.search(conn, f, limit=7, before=cursor)
            ids += [t.row_id for t in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        found[f] = (ids, query.count(conn, f), [t.row_id for t in query.iterate(conn, f)])
    return found


def test_rows_stored_during_a_flood_are_found_and_indexed_behind_the_writes(path):
    times = [(i * 7919) % 1000 * 1000 for i in range(1200)]  # out of order, many equal
    events = [ring_event(i, time_us=BASE_US + t, threat_type=i % 4, severity=1 + i % 4, blocked=i % 3 == 0,
                         source=f"src-{i % 5}", details=f"row {i}") for i, t in enumerate(times)]
    make_history(path, [ring_batch(events[:400])])  # in the indexes as they were written
    make_history(path, [ring_batch(events[400:])], defer_waiting=-1, catch_up=False)  # a flood's, left behind
    assert rows(path, "SELECT ix, count(*) FROM threats GROUP BY ix") == [(0, 800), (1, 400)]
    with query.connection(path) as conn:
        assert late_index.upto(conn) == 400 and late_index.backlog(conn) == 800
        before = _searches(conn)
    reference = sorted(range(1, 1201), key=lambda i: (times[i - 1], i), reverse=True)
    assert before[Filter()][0] == before[Filter()][2] == reference and before[Filter()][1] == 1200
    assert before[Filter(types={2})][0] == [i for i in reference if (i - 1) % 4 == 2]
    store = start_store(path)  # puts the rest in the indexes, in chunks, while idle
    try:
        assert store.wait_indexed(60)
        assert rows(path, "SELECT ix, count(*) FROM threats GROUP BY ix") == [(1, 1200)]
        with query.connection(path) as conn:
            assert late_index.upto(conn) == 1200 and late_index.backlog(conn) == 0
            assert _searches(conn) == before
        store.submit([ring_batch([ring_event(5000)])])  # ordinary times: indexed at once, the mark follows
        assert store.flush(60)
        assert rows(path, "SELECT value FROM meta WHERE name = 'ix_upto'") == [(1201,)]
    finally:
        store.close()


def test_retention_takes_deleted_rows_out_of_the_index(path, through_the_index):
    store = start_store(path, max_rows=500)
    try:
        store.submit([ring_batch([ring_event(i, details=f"row {i:05d} xyz") for i in range(1500)])])
        assert store.flush(60) and store.wait_indexed(60)
        result = store.retain_now(60)
        assert result is not None and result.threats_deleted == 1000
        with query.connection(path) as conn:
            assert query.count(conn, Filter(text="XYZ")) == 500
            assert query.count(conn, Filter(text="row 00999")) == 0
            assert [t.seq for t in query.search(conn, Filter(text="row 01000")).rows] == [1000]
    finally:
        store.close()
    integrity_check(path)


def test_the_wal_is_truncated_when_idle_and_gone_after_close(path):
    store = start_store(path)
    wal = db.sidecars(path)[1]
    try:
        store.submit([ring_batch([ring_event(i, details="w" * 200) for i in range(3000)])])
        assert store.flush(60)
        wait_for(lambda: store.checkpoints >= 1 and store.lag() == 0 and wal.stat().st_size == 0, 30,
                 "an idle checkpoint")
        assert store.size_bytes() == path.stat().st_size  # the size shown is the file's
        store.submit([ring_batch([ring_event(i) for i in range(3000, 3100)])])
        assert store.flush(60)
        assert wal.stat().st_size > 0  # written since
    finally:
        assert store.close(60)
    assert not wal.exists() or wal.stat().st_size == 0
    assert store.size_bytes() == path.stat().st_size
    assert rows(path, "SELECT count(*) FROM threats") == [(3100,)]


def test_an_idle_checkpoint_waits_for_a_reader_and_loses_nothing(path):
    store = start_store(path)
    reader = db.open_reader(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(100)])])
        assert store.flush(60)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM threats").fetchone()[0] == 100  # holds a snapshot
        store.submit([ring_batch([ring_event(i) for i in range(100, 200)])])
        assert store.flush(60)
        assert reader.execute("SELECT count(*) FROM threats").fetchone()[0] == 100  # still its snapshot
        reader.execute("COMMIT")
        wait_for(lambda: store.checkpoints >= 1 and db.sidecars(path)[1].stat().st_size == 0, 30,
                 "a checkpoint once the reader let go")
        assert reader.execute("SELECT count(*) FROM threats").fetchone()[0] == 200
    finally:
        reader.close()
        store.close()
