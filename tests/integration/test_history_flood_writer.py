"""The history's flood writer (kindlyguard_monitor.history.flood_writer): a flood's ring threats
written by a real `kgmon _history-writer` process on the same SQLite file, and what happens
when it fails: a full disk, the process killed, a process that never answers right, the app
killed while it writes."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import threading

import psutil
import pytest
from conftest import OutputWatcher, start_python, wait_for
from history_data import FLOODER, GEN, damage_schema, ring_batch, ring_event, rows, start_store, ws_batch, ws_threat

from kindlyguard_monitor.history import flood_writer, query
from kindlyguard_monitor.history.records import PackedRows


@pytest.fixture
def path(tmp_path):
    return tmp_path / "history.sqlite3"


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def flood_store(path, **kw):
    """A store whose every transaction of ring threats is a flood's (the process writes it)."""
    store = start_store(path, **kw)
    store.flood_waiting = -1
    return store


def texts(i: int) -> dict:
    return dict(threat_type=i % 8, severity=1 + i % 4, blocked=i % 3 == 0, flags=i % 5,
                source=f"mcp:tools/call {i % 7}", details=f"t {i} \u202e\u200b ‮ é 漢 \x00 end")


def test_a_floods_ring_threats_are_written_by_a_process_of_its_own_exactly(path):
    store = flood_store(path)
    try:
        events = [ring_event(i, **texts(i)) for i in range(3000)]
        for j in range(0, 3000, 250):
            store.submit([ring_batch(events[j:j + 250])])
        assert store.flush(60) and store.error is None
        pid = store._flood_writer.pid
        assert pid is not None and pid != os.getpid() and psutil.Process(pid).ppid() == os.getpid()
        assert store.flood_transactions >= 1 and (store.stored, store.duplicates, store.dropped) == (3000, 0, 0)
        got = {t.seq: t for t in query.recent(path, 5000)}
        assert sorted(got) == list(range(3000))
        for e in events:
            t = got[e.seq]
            assert (t.threat_type, t.severity, t.blocked, t.flags, t.source, t.details, t.timestamp_unix_us) == \
                (e.threat_type, e.severity, e.blocked, e.flags, e.source, e.details, e.timestamp_unix_us)
            assert (t.id, t.transport) == (f"{GEN:016x}-{e.seq}", "shm")
        assert rows(path, "SELECT count(*) FROM sources") == [(7,)]  # the new rows' sources, in its transaction
        store.submit([ring_batch(events[:100])])  # the same threats again: not stored twice
        assert store.flush(60) and (store.stored, store.duplicates) == (3000, 100)
        assert store.wait_indexed(60)  # the thread fills the indexes behind it as usual
        assert query.count(path, query.Filter(types={3})) == 375
    finally:
        store.close()
    assert ended(pid)


def test_websocket_threats_and_seen_marks_stay_on_the_writer_thread(path):
    store = flood_store(path)
    try:
        store.submit([ws_batch([ws_threat(i) for i in range(50)])])
        store.mark_all_seen()
        assert store.flush(60)
        assert store.flood_transactions == 0 and store._flood_writer.pid is None  # never started
        store.submit([ring_batch([ring_event(i) for i in range(100, 200)])])
        assert store.flush(60) and store.flood_transactions == 1
        assert (store.stored, store.unseen) == (150, 100)
    finally:
        store.close()


def test_a_full_disk_in_the_flood_writer_is_the_stores_own_error_and_nothing_is_lost(path):
    reports: list = []
    full, recovered = threading.Event(), threading.Event()

    def on_error(message):
        reports.append(message)
        (full if message else recovered).set()

    store = flood_store(path, max_page_count=18, on_error=on_error)  # a tiny disk (see test_history_store)
    try:
        store.submit([ring_batch([ring_event(i, details="x" * 500) for i in range(2000)])])
        assert full.wait(60)
        assert "disk is full" in reports[0] and store.lag() == 2000  # SQLite's own error, from the process
        store.set_max_page_count(None)
        assert store.flush(60) and recovered.wait(60) and store.error is None
        assert store.flood_transactions >= 1
        assert [r[0] for r in rows(path)] == list(range(2000))
    finally:
        store.close()


def test_a_file_the_flood_writer_finds_damaged_is_moved_aside_after_it_let_go(path):
    store = flood_store(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(10)])])
        assert store.flush(60) and store.wait_indexed(60)
        first = store._flood_writer.pid
        damage_schema(store._conn)  # the process's connection meets it at its next statement
        store.submit([ring_batch([ring_event(i) for i in range(10, 20)])])
        assert store.flush(60)
        assert store.notice and "damaged" in store.notice and store.error is None
        assert ended(first) and store._flood_writer.pid not in (None, first)  # a new one, on the new file
        assert [r[0] for r in rows(path)] == list(range(10, 20))
        (aside,) = path.parent.glob(f"{path.name}.corrupt-*[0-9]")  # the damaged file, kept
        assert aside.stat().st_size > 0  # moved, not deleted
    finally:
        store.close()


def test_the_flood_writer_killed_between_floods_loses_nothing(path, monkeypatch, caplog):
    monkeypatch.setattr(flood_writer, "RETRY_S", 0.0)
    store = flood_store(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(500)])])
        assert store.flush(60) and store.flood_transactions == 1
        first = store._flood_writer.pid
        os.kill(first, signal.SIGKILL)
        psutil.Process(first).wait(30)
        with caplog.at_level(logging.WARNING, logger="kindlyguard_monitor.history.store"):
            store.submit([ring_batch([ring_event(i) for i in range(500, 1000)])])
            assert store.flush(60) and store.error is None
        assert "the history's flood writer" in caplog.text  # said once, and written by the thread meanwhile
        store.submit([ring_batch([ring_event(i) for i in range(1000, 1500)])])
        assert store.flush(60)
        assert store._flood_writer.pid not in (None, first)  # started again after RETRY_S
        assert [r[0] for r in rows(path)] == list(range(1500)) and store.stored == 1500
    finally:
        store.close()


# The real flood writer (flood_writer.main), stopped by SIGSTOP after its transaction's INSERTs
# and before its COMMIT: the test then kills it at that exact point.
STOPS_MID_TRANSACTION = """
import os, signal, sys
from kindlyguard_monitor.history import flood_writer, inserts

real = inserts.write_threats

def write_threats(*args):
    counts = real(*args)
    os.kill(os.getpid(), signal.SIGSTOP)  # rows written, not committed
    return counts

inserts.write_threats = write_threats
sys.exit(flood_writer.main(sys.argv[1:]))
"""


def test_the_flood_writer_killed_in_the_middle_of_its_transaction_loses_nothing_and_stores_nothing_twice(
        path, monkeypatch, caplog):
    monkeypatch.setattr(flood_writer.child_process, "kgmon_command",
                        lambda *args: [sys.executable, "-c", STOPS_MID_TRANSACTION, *args[1:]])
    store = flood_store(path)
    try:
        with caplog.at_level(logging.WARNING, logger="kindlyguard_monitor.history.store"):
            store.submit([ring_batch([ring_event(i, **texts(i)) for i in range(2000)])])
            wait_for(lambda: store._flood_writer.pid is not None, 30, "the flood writer to start")
            child = psutil.Process(store._flood_writer.pid)
            wait_for(lambda: child.status() == psutil.STATUS_STOPPED, 30, "the flood writer to stop mid-transaction")
            child.kill()  # its 2,000 INSERTs written, its COMMIT never
            assert store.flush(60) and store.error is None
        assert "the history's flood writer" in caplog.text  # the thread wrote the transaction itself
        assert store.flood_transactions == 0 and (store.stored, store.duplicates, store.dropped) == (2000, 0, 0)
        assert [r[0] for r in rows(path)] == list(range(2000))  # each once, in order
        assert rows(path, "PRAGMA integrity_check") == [("ok",)]
        got = {t.seq: t for t in query.recent(path, 5000)}
        assert all(got[i].details == texts(i)["details"] for i in (0, 999, 1999))
    finally:
        store.close()


def test_an_idle_flood_writer_ends_and_the_next_flood_starts_another(path, monkeypatch):
    monkeypatch.setattr(flood_writer, "IDLE_S", 0.3)  # 10 s in the app: it holds ~70-80 MiB after a flood
    store = flood_store(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(500)])])
        assert store.flush(60)
        first = store._flood_writer.pid
        assert first is not None
        wait_for(lambda: store._flood_writer.pid is None and ended(first), 30, "the idle flood writer to end")
        store.submit([ring_batch([ring_event(i) for i in range(500, 1000)])])
        assert store.flush(60) and store.flood_transactions == 2
        assert store._flood_writer.pid not in (None, first)
        assert [r[0] for r in rows(path)] == list(range(1000))
    finally:
        store.close()


@pytest.mark.parametrize("command", [
    ["/nonexistent/kgmon"],  # cannot start
    [sys.executable, "-c", "import sys; sys.stdin.buffer.read(4); sys.stdout.write('no answer'); sys.stdout.flush()"],
    [sys.executable, "-c", "import sys, marshal, struct; d = marshal.dumps(['not', 'a tuple']); "
                           "sys.stdout.buffer.write(struct.pack('>I', len(d)) + d); sys.stdout.flush()"],
    [sys.executable, "-c", "import sys, marshal, struct; d = marshal.dumps(('ok', 'many', -1)); "
                           "sys.stdout.buffer.write(struct.pack('>I', len(d)) + d); sys.stdout.flush()"],
], ids=["missing", "garbage", "wrong-shape", "bad-counts"])
def test_a_flood_writer_that_does_not_answer_right_leaves_the_flood_to_the_thread(path, monkeypatch, command):
    monkeypatch.setattr(flood_writer.child_process, "kgmon_command", lambda *args: command)
    store = flood_store(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(300)])])
        assert store.flush(60) and store.error is None
        assert store.flood_transactions == 0 and not store._flood_writer.usable()
        assert [r[0] for r in rows(path)] == list(range(300))
    finally:
        store.close()




def test_the_app_killed_mid_flood_ends_its_flood_writer_and_leaves_a_clean_prefix(path):
    proc = start_python(FLOODER, path, "-1")  # every transaction the flood writer's
    out = OutputWatcher(proc)
    out.wait_lines(lambda lines: len(lines) >= 6, 60, "the flooder to flush 30,000 threats")
    flushed, child = map(int, out.lines[-1][1].split())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    psutil.Process(child).wait(30)  # its stdin ended: it finished its transaction and ended
    assert rows(path, "PRAGMA quick_check") == [("ok",)]
    seqs = [r[0] for r in rows(path, "SELECT seq FROM threats ORDER BY seq")]
    assert seqs == list(range(len(seqs))) and len(seqs) >= flushed


def test_messages_round_trip_and_a_broken_stream_is_refused():
    stream = io.BytesIO()
    packed = PackedRows(((1, 2, 3, 0, 0, "s", "d", 1, GEN, 1),))
    flood_writer.send(stream, ("write", 18, 123, True, (("shm", GEN, packed.data, 1),)))
    whole = stream.getvalue()
    assert flood_writer.receive(io.BytesIO(whole)) == ("write", 18, 123, True, (("shm", GEN, packed.data, 1),))
    assert flood_writer.receive(io.BytesIO(b"")) is None  # the end
    for broken in (whole[:2], whole[:-1], b"\xff\xff\xff\xff" + whole[4:]):
        with pytest.raises(ValueError):
            flood_writer.receive(io.BytesIO(broken))
