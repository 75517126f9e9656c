"""HistoryStore on real SQLite files: keys and dedupe, gaps, the queue bound,
retention, migrations, damaged files, a full disk, and a writer killed with SIGKILL."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import threading

import pytest
from conftest import OutputWatcher, start_python
from history_data import FLOODER, GEN, damage_schema, ring_batch, ring_event, rows, start_store, ws_batch, ws_threat

from kindlyguard_monitor.history import db, query
from kindlyguard_monitor.history import store as store_module
from kindlyguard_monitor.event import from_ring
from kindlyguard_monitor.history.records import I64_MAX, PackedRows
from kindlyguard_monitor.history.schema import SCHEMA_VERSION
from kindlyguard_monitor.history.store import DAY_US, HistoryStore


@pytest.fixture
def path(tmp_path):
    return tmp_path / "history.sqlite3"


@pytest.fixture
def store(path):
    s = start_store(path)
    yield s
    s.close()


# ---- keys: nothing stored twice, nothing merged that differs


def test_the_same_ring_batch_twice_is_stored_once(store, path):
    batch = ring_batch([ring_event(i) for i in range(100)])
    store.submit([batch])
    store.submit(batch)  # a single Batch is accepted too
    assert store.flush(60)
    assert [r[0] for r in rows(path)] == list(range(100))
    assert (store.stored, store.duplicates) == (100, 100)


def test_ring_then_websocket_with_the_same_numbers_is_stored_once(store, path):
    store.submit([ring_batch([ring_event(i) for i in range(10)])])
    store.submit([ws_batch([ws_threat(i) for i in range(5, 15)])])
    assert store.flush(60)
    assert rows(path) == [(i, "shm" if i < 10 else "websocket", ring_event(i).timestamp_unix_us) for i in range(15)]
    # another writer's generation with the same seqs is another threat
    store.submit([ring_batch([ring_event(i) for i in range(3)], generation=GEN + 1)])
    assert store.flush(60)
    assert len(rows(path)) == 18


def test_threats_without_numbers_get_a_content_key(store, path):
    one = ws_threat(None, None, details="same")
    store.submit([ws_batch([one, one._replace(observe_mono_ns=99)])])  # a resend: same content
    store.submit([ws_batch([ws_threat(None, None, details="other", time_us=one.timestamp_unix_us)])])  # in details
    store.submit([ws_batch([ws_threat(None, None, details="same", time_us=one.timestamp_unix_us + 1)])])  # in time
    # a seq but no generation: keyed by content too, so this copy of `one` is a duplicate
    store.submit([ws_batch([ws_threat(7, None, details="same", time_us=one.timestamp_unix_us)])])
    assert store.flush(60)
    stored = query.recent(path, 10)
    assert len(stored) == 3
    assert all(t.id.startswith("content-") and t.generation is None for t in stored)
    assert store.duplicates == 2  # the resend and the seq-only copy of the same content


def test_stored_threats_read_back_with_the_event_field_names(store, path):
    e = ring_event(5, threat_type=3, severity=4, blocked=True, flags=1, source="src", details="d\u202ex")
    w = ws_threat(None, None, details="from ws", time_us=e.timestamp_unix_us + 1)
    store.submit([ring_batch([e]), ws_batch([w])])
    assert store.flush(60)
    first, second = query.recent(path, 2)  # oldest first
    for name in ("seq", "timestamp_unix_us", "threat_type", "severity", "blocked", "flags", "source", "details"):
        assert getattr(first, name) == getattr(e, name), name
    assert (first.event().publish_mono_ns, first.event().observe_mono_ns) == (None, None)  # not known after a restart
    assert first.event().key == from_ring([e], GEN)[0].key
    assert (first.id, first.generation, first.transport) == (f"{GEN:016x}-5", GEN, "shm")
    assert (second.details, second.seq, second.transport) == ("from ws", None, "websocket")


def test_hostile_values_are_stored_not_crashed_on(store, path):
    ws = [
        ws_threat(1, details="lone surrogate \ud800 here", source="\udfff"),
        ws_threat(2**64 - 1, details="seq beyond SQLite's integers"),
        ws_threat(None, None, details="nul \x00 inside", time_us=-5),
    ]
    ring = [ring_event(3, time_us=2**64 - 1, details="a ring event with a wild clock")]
    store.submit([ws_batch(ws), ring_batch(ring)])
    assert store.flush(60)
    assert store.error is None and store.running
    got = {t.details: t for t in query.recent(path, 10)}
    assert got["lone surrogate \ufffd here"].source == "\ufffd"
    assert got["seq beyond SQLite's integers"].seq == 2**64 - 1  # kept in the key
    assert got["nul \x00 inside"].timestamp_unix_us == -5
    assert got["a ring event with a wild clock"].timestamp_unix_us == I64_MAX


def test_a_big_ring_batch_with_one_unbindable_row_is_stored_whole_and_exact(store, path):
    # ring batches go in multi-row INSERTs (inserts.INSERT_SIZES: 100, then 10, then 1 row a statement):
    # 257 threats are 2 x 100, 5 x 10 and 7 x 1; the wild clock (row 250) fails the fast path after
    # 250 rows were inserted, and the careful path stores the rest without storing anything twice
    events = [ring_event(i, threat_type=i % 8, severity=1 + i % 4, blocked=i % 2 == 1, flags=i % 3,
                         source=f"src {i % 5}", details=f"d {i} \u202e") for i in range(257)]
    events[250] = ring_event(250, time_us=2**64 - 1, details="wild")
    store.submit([ring_batch(events)])
    assert store.flush(60) and store.error is None
    assert (store.stored, store.duplicates, store.dropped) == (257, 0, 0)
    got = {t.seq: t for t in query.recent(path, 1000)}
    assert sorted(got) == list(range(257))
    for e in events:
        t = got[e.seq]
        assert (t.threat_type, t.severity, t.blocked, t.flags, t.source, t.details) == \
            (e.threat_type, e.severity, e.blocked, e.flags, e.source, e.details)
        assert t.timestamp_unix_us == (I64_MAX if e.seq == 250 else e.timestamp_unix_us)
        assert (t.id, t.transport) == (f"{GEN:016x}-{e.seq}", "shm")


def test_a_store_behind_queues_ring_threats_compact_and_stores_both_forms_exactly(path, monkeypatch):
    # more than COMPACT_WAITING threats waiting: submit() keeps ring threats as compact rows
    monkeypatch.setattr(store_module, "COMPACT_WAITING", 30)
    s = HistoryStore(path)  # not started: everything waits
    events = [ring_event(i, threat_type=i % 8, blocked=i % 3 == 0, details=f"t {i} \u200b") for i in range(100)]
    for i in range(0, 100, 25):
        s.submit([ring_batch(events[i:i + 25])])
    s.submit([ws_batch([ws_threat(200)])])
    assert [p.compact for p in s._pending.items] == [False, False, True, True, False]  # ws: never compact
    assert [type(p.events).__name__ for p in s._pending.items][2:4] == ["PackedRows"] * 2
    s.start()
    try:
        assert s.flush(60) and (s.stored, s.dropped) == (101, 0)
        got = {t.seq: t for t in query.recent(path, 1000)}
        assert sorted(got) == list(range(100)) + [200]
        for e in events:
            t = got[e.seq]
            assert (t.threat_type, t.blocked, t.details, t.timestamp_unix_us, t.id) == \
                (e.threat_type, e.blocked, e.details, e.timestamp_unix_us, f"{GEN:016x}-{e.seq}")
    finally:
        s.close()


def test_a_backlog_waits_packed_out_of_the_collectors_sight(path, monkeypatch):
    # while the store is behind, a ring batch waits as one bytes object: no per-threat object the
    # garbage collector walks (20,000 waiting compact tuples took it 5-25 ms each young collection,
    # the GIL held, and the reader lost events at 200,000/s: docs/benchmarks.md)
    monkeypatch.setattr(store_module, "COMPACT_WAITING", -1)
    s = HistoryStore(path)  # not started: everything waits
    batches = [ring_batch([ring_event(i) for i in range(j, j + 500)]) for j in range(0, 20_000, 500)]
    gc.collect()
    gc.freeze()  # what exists now is out of sight: what submit() adds is what the next collection walks
    gc.disable()
    try:
        for b in batches:
            s.submit([b])
        tracked = len(gc.get_objects())
    finally:
        gc.enable()
        gc.unfreeze()
    assert s.lag() == 20_000
    assert tracked < 200  # a Pending and a PackedRows per batch of 500 (as tuples: a walk of 20,000 rows)
    s.start()
    try:
        assert s.flush(60) and (s.stored, s.dropped) == (20_000, 0)
        assert [r[0] for r in rows(path)] == list(range(20_000))
    finally:
        s.close()


def test_packed_rows_slice_and_iterate_as_the_rows_they_hold():
    rows_in = tuple((i, 1, 2, 0, 0, f"src {i}", "\u202e détails", i, GEN, i) for i in range(10))
    packed = PackedRows(rows_in)
    assert len(packed) == 10 and tuple(packed) == packed.rows() == rows_in
    assert not gc.is_tracked(packed.data)
    head, tail = packed[:4], packed[4:]
    assert type(head) is PackedRows and (head.rows(), tail.rows()) == (rows_in[:4], rows_in[4:])


def test_a_packed_backlog_over_the_bound_drops_the_oldest_inside_a_batch(path, monkeypatch):
    monkeypatch.setattr(store_module, "COMPACT_WAITING", -1)
    s = HistoryStore(path, max_pending=120)  # not started: everything waits
    for i in range(0, 250, 50):
        s.submit([ring_batch([ring_event(j) for j in range(i, i + 50)])])
    assert (s.lag(), s.dropped) == (120, 130)
    s.start()
    try:
        assert s.flush(60)
        assert [r[0] for r in rows(path)] == list(range(130, 250))
        assert [(g.missed, g.kind) for g in query.gaps(path)] == [(130, "store_overflow")]
    finally:
        s.close()


def test_a_ring_batch_keeps_each_threats_own_key(store, path):
    # the key stored is the event's, whatever generation the batch names
    store.submit([ring_batch(from_ring([ring_event(i) for i in range(3)], GEN + 7), GEN)])
    assert store.flush(60)
    assert sorted(t.id for t in query.recent(path, 10)) == [f"{GEN + 7:016x}-{i}" for i in range(3)]


# ---- gaps and the bounded queue


def test_counter_growth_becomes_gap_records(store, path):
    store.record_counters(10, 0, 0, "shm", GEN)  # nothing lost yet
    store.record_counters(20, 5, 0, "shm", GEN)
    store.record_counters(30, 5, 2, "shm", GEN)
    store.record_counters(40, 5, 2, "shm", GEN)  # no growth
    store.record_counters(3, 1, 0, "websocket", None)  # a new reader counts from zero
    assert store.flush(60)
    got = [(g.transport, g.generation, g.missed, g.corrupt, g.kind) for g in reversed(query.gaps(path))]
    assert got == [("shm", GEN, 5, 0, "reader"), ("shm", GEN, 0, 2, "reader"), ("websocket", None, 1, 0, "reader")]


def test_too_many_waiting_drops_the_oldest_and_records_it(path):
    s = HistoryStore(path, max_pending=100)  # not started: everything waits
    for i in range(0, 250, 50):
        s.submit([ring_batch([ring_event(j) for j in range(i, i + 50)])])
    assert (s.lag(), s.dropped) == (100, 150)
    s.start()
    try:
        assert s.flush(60)
        assert s.lag() == 0
        assert [r[0] for r in rows(path)] == list(range(150, 250))
        (gap,) = query.gaps(path)
        assert (gap.kind, gap.missed, gap.transport) == ("store_overflow", 150, "store")
    finally:
        s.close()


def test_submit_never_waits_for_the_disk_and_lag_says_how_far_behind(path):
    s = HistoryStore(path)
    s.submit([ring_batch([ring_event(i) for i in range(1000)])])
    assert s.lag() == 1000
    assert s.flush(0.01) is False  # not started: nothing is written, and flush says so at once
    s.start()
    try:
        assert s.flush(60) and s.lag() == 0 and s.stored == 1000
    finally:
        s.close()


def test_large_submissions_are_written_in_bounded_transactions(path):
    s = HistoryStore(path, batch_rows=300)
    s.submit([ring_batch([ring_event(i) for i in range(1000)])])  # waiting before the writer starts
    s.start()
    try:
        assert s.flush(60)
        assert [r[0] for r in rows(path)] == list(range(1000))
        assert s.transactions == 4  # 300 + 300 + 300 + 100
    finally:
        s.close()


# ---- retention


def _times_out_of_order(n: int, step_us: int) -> list[int]:
    """n distinct times, stored in an order that is not time order (retention must go by time)."""
    return [(i * 7919) % n * step_us for i in range(n)]


def test_retention_by_age_deletes_exactly_the_old_and_runs_at_start(path):
    now = 1_000 * DAY_US
    times = [now - d * DAY_US - 1 for d in (0, 1, 5, 9, 10, 11, 30)]  # -1: 10 days and 1 µs is older than 10 days
    s = start_store(path, now_us=lambda: now)
    s.submit([ring_batch([ring_event(i, time_us=t) for i, t in enumerate(times)])])
    s.record_counters(1, 1, 0, "shm", GEN)  # a gap stamped now
    assert s.close(60)
    old_gap = sqlite3.connect(path)
    old_gap.execute("INSERT INTO gaps (time_us, transport, missed, corrupt, kind) VALUES (?, 'shm', 3, 0, 'reader')",
                    (now - 20 * DAY_US,))
    old_gap.commit()
    old_gap.close()
    s = start_store(path, now_us=lambda: now, max_age_days=10)  # retention at start
    try:
        assert s.last_retention.threats_deleted == 3
        assert s.last_retention.gaps_deleted == 1
        assert sorted(r[0] for r in rows(path)) == [0, 1, 2, 3]
        assert [g.missed for g in query.gaps(path)] == [1]
    finally:
        s.close()


@pytest.mark.parametrize("late", [False, True], ids=["indexed", "stored during a flood, not indexed yet"])
def test_retention_by_count_keeps_the_newest_and_the_file_shrinks(path, late):
    n, keep = 3000, 1000
    times = _times_out_of_order(n, 1000)
    s = start_store(path, now_us=lambda: BASE_NOW, **(dict(defer_waiting=-1, catch_up=False) if late else {}))
    try:
        s.submit([ring_batch([ring_event(i, time_us=BASE_NOW - DAY_US + t, details="x" * 200)
                              for i, t in enumerate(times)])])
        assert s.flush(60)
        # The text index caught up first, so nothing writes into the WAL after the vacuum (the
        # severity and type indexes wait in the late case: catching up is off there).
        assert s.wait_indexed(60) or (late and s._text_backlog == 0)
        _checkpoint(path)
        before = path.stat().st_size
        s.max_rows = keep
        result = s.retain_now(60)
        assert result is not None and result.threats_deleted == n - keep and result.vacuumed
        kept = sorted(t for (t,) in rows(path, "SELECT time_us FROM threats"))
        assert kept == sorted(BASE_NOW - DAY_US + t for t in times)[-keep:]
        assert rows(path, "SELECT count(*) FROM threats WHERE ix = 0")[0][0] == (keep if late else 0)
        assert path.stat().st_size < before * 0.6
        assert s.size_bytes() < before * 0.6
    finally:
        s.close()


BASE_NOW = 500 * DAY_US


def _checkpoint(path) -> None:
    conn = sqlite3.connect(path)
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0
    finally:
        conn.close()


def test_rows_far_beyond_max_rows_are_trimmed_as_they_come(path):
    s = start_store(path, max_rows=1000, batch_rows=500, now_us=lambda: BASE_NOW)
    try:
        for i in range(0, 5000, 500):
            s.submit([ring_batch([ring_event(j, time_us=BASE_NOW - DAY_US + j) for j in range(i, i + 500)])])
            assert s.flush(60)
        count = rows(path, "SELECT count(*) FROM threats")[0][0]
        assert 1000 <= count <= 2000  # trimmed whenever 1,000 over, without waiting for the hourly run
        assert rows(path, "SELECT max(seq) FROM threats")[0][0] == 4999
    finally:
        s.close()


# ---- migrations

V1_SCHEMA = (  # migration 1 as it shipped, frozen here: an "old" database is built from it
    """CREATE TABLE threats (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, time_us INTEGER NOT NULL,
        type INTEGER NOT NULL, severity INTEGER NOT NULL, blocked INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL, details TEXT NOT NULL, transport TEXT NOT NULL, generation TEXT, seq INTEGER,
        stored_at INTEGER NOT NULL)""",
    "CREATE INDEX threats_time ON threats(time_us)",
    """CREATE TABLE gaps (id INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, transport TEXT NOT NULL,
        generation TEXT, missed INTEGER NOT NULL, corrupt INTEGER NOT NULL, kind TEXT NOT NULL)""",
    "CREATE INDEX gaps_time ON gaps(time_us)",
)


def test_an_old_database_is_migrated_and_keeps_its_threats(path):
    old = sqlite3.connect(path)  # version 1, made the way an old tool would: no auto-vacuum, rollback journal
    for statement in V1_SCHEMA:
        old.execute(statement)
    old_event = ring_event(1, details="stored by version 1")
    old.execute("INSERT INTO threats (key, time_us, type, severity, blocked, source, details, transport, generation, "
                "seq, stored_at) VALUES (?, ?, 1, 2, 0, 'src', ?, 'shm', ?, 1, 0)",
                (GEN.to_bytes(8, "big") + (1).to_bytes(8, "big"), old_event.timestamp_unix_us, old_event.details,
                 f"{GEN:016x}"))
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    assert [(t.details, t.host) for t in query.recent(path, 10)] == [("stored by version 1", "")]  # read as it is

    s = start_store(path)
    try:
        s.submit([ring_batch([ring_event(1), ring_event(2)])])  # seq 1 is already there
        assert s.flush(60)
        assert s.notice is None
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # converted
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
        assert {"threats_severity_time", "threats_type_time"} <= indexes
        conn.close()
        assert [(t.details, t.host) for t in query.recent(path, 10)] == [("stored by version 1", ""),
                                                                          ("threat 2", "")]  # 4: this machine's
    finally:
        s.close()


def test_an_empty_file_becomes_a_new_history(path):
    path.touch()  # version 0: no tables
    s = start_store(path)
    try:
        assert s.notice is None
        assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    finally:
        s.close()


# ---- damaged files


def _garbage(path):
    path.write_bytes(b"this is not a database, just some words\n" * 200)


def _truncated(path):
    from history_data import make_history

    make_history(path, [ring_batch([ring_event(i, details="y" * 300) for i in range(2000)])])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _bit_rot(path):
    from history_data import make_history

    make_history(path, [ring_batch([ring_event(i, details="z" * 300) for i in range(2000)])])
    data = bytearray(path.read_bytes())
    for offset in range(20000, len(data) - 100, 16384):  # scribble over every page's middle
        data[offset:offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


# A garbage file, a newer kgmon's history and another program's database are left alone
# (tests/integration/test_history_files.py): only a file SQLite says is damaged, and that is ours, moves.
@pytest.mark.parametrize("damage", [_truncated, _bit_rot])
def test_a_damaged_file_is_moved_aside_and_a_new_history_started(path, damage):
    damage(path)
    original = path.read_bytes()
    s = start_store(path)
    try:
        assert s.notice and "moved to history.sqlite3.corrupt-" in s.notice, s.notice
        (aside,) = [p for p in path.parent.iterdir() if p.name.startswith("history.sqlite3.corrupt-")
                    and not p.name.endswith(("-wal", "-shm"))]
        assert aside.read_bytes() == original
        s.submit([ring_batch([ring_event(1)])])
        assert s.flush(60)
        assert rows(path, "PRAGMA quick_check") == [("ok",)]
        assert [r[0] for r in rows(path)] == [1]
    finally:
        s.close()


def test_a_file_damaged_while_in_use_is_moved_aside_too(path, store):
    store.submit([ring_batch([ring_event(i) for i in range(10)])])
    assert store.flush(60)
    assert store.wait_indexed(60)  # the writer idle: no text indexing of its own meets the damage halfway
    damage_schema(store._conn)  # through the idle writer's own connection
    store.submit([ring_batch([ring_event(i) for i in range(10, 20)])])
    assert store.flush(60)
    assert store.notice and "damaged" in store.notice
    assert [r[0] for r in rows(path)] == list(range(10, 20))


# ---- a full disk


def test_a_full_disk_is_reported_kept_and_retried(path):
    reports: list = []
    full = threading.Event()
    recovered = threading.Event()

    def on_error(message):
        reports.append(message)
        (full if message else recovered).set()

    s = start_store(path, max_page_count=18, on_error=on_error)  # 18 pages of 16 KiB (an empty history has 14): a tiny disk
    try:
        s.submit([ring_batch([ring_event(i) for i in range(10)])])
        assert s.flush(60) and s.error is None
        s.submit([ring_batch([ring_event(i, details="x" * 500) for i in range(10, 2010)])])
        assert full.wait(60)
        assert "disk is full" in reports[0] and s.error == reports[0]
        assert s.running and s.lag() == 2000  # kept in memory, nothing lost
        s.submit([ring_batch([ring_event(2010)])])  # submitting still works
        assert s.lag() == 2001
        s.set_max_page_count(None)  # space again
        assert s.flush(60)
        assert recovered.wait(60) and s.error is None and reports[-1] is None
        assert [r[0] for r in rows(path)] == list(range(2011))
    finally:
        s.close()


# ---- killed mid-flood



def test_a_writer_killed_mid_flood_leaves_a_clean_prefix(path):
    proc = start_python(FLOODER, path, str(10**9))  # every transaction on the writer thread
    out = OutputWatcher(proc)
    out.wait_lines(lambda lines: len(lines) >= 8, 60, "the flooder to flush 40,000 threats")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    flushed = int(out.lines[-1][1].split()[0])
    assert rows(path, "PRAGMA quick_check") == [("ok",)]
    seqs = [r[0] for r in rows(path, "SELECT seq FROM threats ORDER BY seq")]
    assert seqs == list(range(len(seqs)))  # a prefix of what was submitted, nothing missing inside it
    assert len(seqs) >= flushed
    s = start_store(path)  # and the app opens it as it is, and puts every row in the indexes
    try:
        assert s.notice is None and s.error is None
        assert s.wait_indexed(60)
        assert rows(path, "SELECT count(*) FROM threats WHERE ix = 0") == [(0,)]
        assert query.count(path, query.Filter(types={1})) == len(seqs)  # through the type index
    finally:
        s.close()


def test_the_history_path_comes_from_the_argument_the_environment_or_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv(db.PATH_ENV, str(tmp_path / "env.sqlite3"))
    assert HistoryStore().path == tmp_path / "env.sqlite3"
    assert HistoryStore(tmp_path / "arg.sqlite3").path == tmp_path / "arg.sqlite3"
    monkeypatch.delenv(db.PATH_ENV)
    assert db.history_path().parts[-2:] == ("kindlyguard-monitor", "history.sqlite3")

