"""The app with its history: threats go to disk from the reader thread, come back
into the feed at the next start (without showing or notifying anything twice),
can be searched and exported from the History window, and survive kill -9."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO, free_port, wait_for, wait_reader_settled
from history_data import make_history, ring_batch, ring_event

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.history import query
from kindlyguard_monitor.history.store import HistoryStore
from kindlyguard_monitor.ring.pyring import PyWriter
from kindlyguard_monitor.ring.writer import RingWriter
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.threats import CRITICAL, THREAT_TYPE_NUMBER, Threat


def make_app(qapp, ring_path, history_path):
    from kindlyguard_monitor.gui.app import MonitorApp

    return MonitorApp(qapp, str(ring_path), f"ws://127.0.0.1:{free_port()}", demo=False,
                      history=HistoryStore(history_path))


@pytest.fixture
def published(ring_path):
    """published(n, seed, slot_count=64) -> a Python writer on the ring that has published n
    threats (ThreatGenerator(seed)); every writer made is closed when the test ends."""
    writers: list[PyWriter] = []

    def make(n: int, seed: int, slot_count: int = 64) -> PyWriter:
        writer = PyWriter.create(ring_path, slot_count=slot_count)
        writers.append(writer)
        writer.publish(ThreatGenerator(seed).batch(n))
        return writer

    yield make
    for writer in writers:
        writer.close()


def start_until_rows(qtbot, monitor, rows: int) -> None:
    """Start the app and wait until its table lists `rows` threats."""
    monitor.start()
    qtbot.waitUntil(lambda: monitor.window.model.rowCount() == rows, timeout=10000)


def test_threats_are_stored_and_restored_at_the_next_start(qtbot, qapp, ring_path, tmp_path, published):
    history_path = tmp_path / "h" / "history.sqlite3"
    writer = published(20, 3)
    monitor = make_app(qapp, ring_path, history_path)
    try:
        start_until_rows(qtbot, monitor, 20)
        assert monitor.history.flush(10)
        assert query.count(history_path) == 20
    finally:
        monitor.shutdown()
    first_rows = [monitor.window.model.row_at(i) for i in range(20)]

    # Next start, the same ring still there: the feed comes back from the history, the ring's
    # replay adds nothing twice (table or disk), and nothing old is notified or counted as new.
    writer.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, True, "mcp:fs", "while closed", 1)])
    monitor = make_app(qapp, ring_path, history_path)
    try:
        monitor.start()
        model = monitor.window.model
        qtbot.waitUntil(lambda: model.rowCount() == 21, timeout=10000)
        qtbot.waitUntil(lambda: monitor.window.transport == "shm", timeout=10000)
        wait_reader_settled(qtbot, monitor.reader, 21)  # the ring's replay is in, and added nothing
        assert model.rowCount() == 21
        assert model.row_at(0).details == "while closed"
        assert [(r.key, r.details) for r in (model.row_at(i) for i in range(1, 21))] == \
            [(r.key, r.details) for r in first_rows]
        assert monitor.feed.totals["total"] == 1, "only the threat that arrived while closed is news"
        assert monitor.notifier.policy.offered == 1
        assert monitor.history.flush(10)
        assert query.count(history_path) == 21
        assert monitor.window.history_label.text().startswith("Kept in history: ")
    finally:
        monitor.shutdown()


def test_seen_state_is_kept_across_restarts_and_restored_rows_are_dated(qtbot, qapp, ring_path, tmp_path, published):
    """Issue 14 items 2 and 4: a threat opened is seen, in the history too; after a restart the
    restored rows keep their seen state, carry their date, and the counts say what they count."""
    from kindlyguard_monitor.gui.row_look import RESTORED_TIP, UNSEEN_MARK
    from kindlyguard_monitor.gui.threat_model import ThreatTableModel

    history_path = tmp_path / "h" / "history.sqlite3"
    published(10, 3)
    monitor = make_app(qapp, ring_path, history_path)
    try:
        start_until_rows(qtbot, monitor, 10)
        w = monitor.window
        assert w.windowTitle() == "KindlyGuard Monitor — 10 unseen"
        opened = w.model.row_at(3)
        assert w.show_event(opened.key)  # as a click on its notification, or on its row, does
        assert w.windowTitle() == "KindlyGuard Monitor — 9 unseen" and w.unseen_label.text() == "9 unseen"
        assert not w.model.data(w.model.index(w.model.row_for_key(opened.key), 0)).startswith(UNSEEN_MARK)
        assert w.model.data(w.model.index(0, 0)).startswith(UNSEEN_MARK)
        assert monitor.history.flush(10)
        assert monitor.history.unseen == 9 == query.unseen_count(history_path)
    finally:
        monitor.shutdown()
    on_disk = sum(os.path.getsize(p) for p in (history_path, f"{history_path}-wal") if os.path.exists(p))

    monitor = make_app(qapp, ring_path, history_path)
    try:
        start_until_rows(qtbot, monitor, 10)
        w, model = monitor.window, monitor.window.model
        qtbot.waitUntil(lambda: monitor.window.transport == "shm", timeout=10000)
        wait_reader_settled(qtbot, monitor.reader, 10)  # the ring's replay: known, not news, not unseen again
        assert monitor.feed.unseen == 9 and w.windowTitle() == "KindlyGuard Monitor — 9 unseen"
        assert monitor.feed.totals["total"] == 0
        assert w.counter_labels["total"].text() == "This session: 0 threats"
        assert w.counter_labels["restored"].text() == "Before this session: 10 (from the history)"
        # the size shown is what was on disk when the last session closed (nothing written since)
        assert w.history_label.text() == f"Kept in history: 10 threats, {on_disk / 2**20:.1f} MiB on disk"
        row = model.row_for_key(opened.key)
        time_text = model.data(model.index(row, ThreatTableModel.TIME))
        assert not time_text.startswith(UNSEEN_MARK) and len(time_text) == len("2026-12-02 08:15")  # dated
        assert model.data(model.index(row, ThreatTableModel.TIME), 3).startswith(RESTORED_TIP)  # ToolTipRole
        others = [model.data(model.index(i, 0)) for i in range(10) if i != row]
        assert all(t.startswith(UNSEEN_MARK) for t in others)
        monitor.mark_all_seen()  # File › Mark all as seen, the button, the tray, Ctrl+Shift+A
        assert w.windowTitle() == "KindlyGuard Monitor" and w.unseen_label.text() == "All seen"
        assert not any(model.data(model.index(i, 0)).startswith(UNSEEN_MARK) for i in range(10))
        assert not w.mark_seen_button.isEnabled()
    finally:
        monitor.shutdown()
    assert query.unseen_count(history_path) == 0


def test_the_history_window_searches_and_exports_everything_it_finds(qtbot, qapp, ring_path, tmp_path):
    from kindlyguard_monitor.gui.history_window import PAGE_ROWS

    history_path = tmp_path / "h" / "history.sqlite3"
    store = HistoryStore(history_path).start()
    hostile = "report\u202efdp.exe"

    def event(seq, details, severity=2):
        return ring_event(seq, time_us=1_700_000_000_000_000 + seq, threat_type=4, severity=severity,
                          blocked=seq % 2 == 0, source=f"mcp:s{seq % 3}", details=details)

    events = [event(i, f"ordinary {i}") for i in range(PAGE_ROWS * 2 + 50)] + [event(10_000, hostile, CRITICAL)]
    store.submit(ring_batch(events, 0xABC))
    store.record_counters(len(events), 0, 0, "shm")
    store.record_counters(len(events) + 7, 5, 2, "shm")  # the reader lost 5 and dropped 2 corrupt
    assert store.flush(10)
    monitor = make_app(qapp, ring_path, history_path)
    monitor.history.close()  # the test's own store writes this file
    monitor.history = store
    try:
        monitor.open_history()
        window = monitor.history_window
        qtbot.waitUntil(lambda: window.matching == len(events), timeout=10000)
        assert window.model.rowCount() == PAGE_ROWS
        assert "known holes in this period: 1 (5 missed, 2 corrupt" in window.status.text()
        while window.fetch_more():  # page through everything: each row once, newest first
            qtbot.waitUntil(lambda: not window._loading, timeout=10000)
        times = [window.model.row_at(i).timestamp_unix_us for i in range(window.model.rowCount())]
        assert len(times) == len(events) and times == sorted(times, reverse=True)

        window.text.setText("\u202e")  # hostile search text: exactly the one threat
        qtbot.waitUntil(lambda: window.matching == 1, timeout=10000)
        assert window.model.data(window.model.index(0, 4)) == "report⟨U+202E⟩fdp.exe"
        assert window.model.data(window.model.index(0, 0)).startswith("2023-11-1")  # the date too
        window.table.selectRow(0)
        assert "report⟨U+202E⟩fdp.exe" in window.details.text.toPlainText()

        # a custom period: the threats are from 2023-11-14 (UTC)
        from PySide6.QtCore import QDateTime, Qt as QtNS

        from kindlyguard_monitor.gui.history_window import CUSTOM_RANGE
        window.text.setText("")
        window.period.setCurrentIndex(window.period.findData(CUSTOM_RANGE))
        window.since.setDateTime(QDateTime.fromString("2020-01-01T00:00:00Z", QtNS.DateFormat.ISODate))
        window.until.setDateTime(QDateTime.fromString("2023-11-13T00:00:00Z", QtNS.DateFormat.ISODate))
        window.search()
        qtbot.waitUntil(lambda: window.matching == 0, timeout=10000)
        assert window.since.isVisibleTo(window) and window.until.isVisibleTo(window)
        window.until.setDateTime(QDateTime.fromString("2023-11-15T00:00:00Z", QtNS.DateFormat.ISODate))
        window.search()
        qtbot.waitUntil(lambda: window.matching == len(events), timeout=10000)
        window.period.setCurrentIndex(0)  # any time

        window.text.setText("ordinary")
        qtbot.waitUntil(lambda: window.matching == len(events) - 1, timeout=10000)
        out = tmp_path / "export.csv"
        window.export_to(str(out), "csv")
        qtbot.waitUntil(lambda: window.status.text().startswith("Exported"), timeout=10000)
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(events) - 1, "the whole search, not the page shown"
        assert not os.path.exists(str(out) + ".part")
    finally:
        monitor.shutdown()


@pytest.mark.slow
def test_kill_9_during_a_flood_loses_nothing_the_ring_still_holds(tmp_path, ring_dir):
    """A real app process stores a flood; SIGKILL mid-flood; the file is intact and
    holds an unbroken prefix of what was published; a restart stores the rest
    (the ring still holds it), each threat exactly once."""
    total = 40_000
    ring_path = ring_dir / "flood.shm"
    history_path = tmp_path / "h" / "history.sqlite3"
    writer = RingWriter(ring_path, slot_count=65536)
    lock = threading.Lock()
    done = threading.Event()
    published = [0]

    def flood():  # about 20,000 threats/s in batches of 200, heartbeat kept
        gen = ThreatGenerator(9)
        while published[0] < total:
            with lock:
                published[0] += writer.publish(gen.batch(200))
            time.sleep(0.01)
        while not done.is_set():
            with lock:
                writer.tick()
            time.sleep(0.1)

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO), TMPDIR=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path / "config"), KINDLYGUARD_HISTORY_PATH=str(history_path))

    def start_app():
        return subprocess.Popen([sys.executable, "-m", "kindlyguard_monitor", "--shm-path", str(ring_path)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    def stored_seqs() -> list[int]:
        with sqlite3.connect(f"file:{history_path}?mode=ro", uri=True) as conn:
            return [r[0] for r in conn.execute("SELECT seq FROM threats ORDER BY seq")]

    app = start_app()
    thread = threading.Thread(target=flood, daemon=True)
    try:
        wait_for(history_path.exists, 30, "the history file")
        thread.start()
        wait_for(lambda: published[0] >= total // 3 and len(stored_seqs()) > 0, 60, "threats on disk mid-flood")
        app.send_signal(signal.SIGKILL)
        app.wait()
        assert published[0] < total, "killed mid-flood"

        with sqlite3.connect(str(history_path)) as conn:
            assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        seqs = stored_seqs()
        assert seqs == list(range(len(seqs))), "an unbroken prefix: batches commit in order, whole or not at all"

        wait_for(lambda: published[0] >= total, 60, "the flood to end")
        app = start_app()
        wait_for(lambda: len(stored_seqs()) == total, 60, "the restarted app to store the rest")
        app.send_signal(signal.SIGTERM)
        _, err = app.communicate(timeout=30)
        assert app.returncode == 0, err
        assert stored_seqs() == list(range(total)), "every threat exactly once"
    finally:
        done.set()
        if app.poll() is None:
            app.kill()
            app.wait()
        thread.join(10)
        writer.close()


def test_a_damaged_history_is_moved_aside_and_the_app_says_so(qtbot, qapp, ring_path, tmp_path, published):
    history_path = tmp_path / "h" / "history.sqlite3"
    make_history(history_path, [ring_batch([ring_event(i, details="y" * 300) for i in range(2000)])])
    data = history_path.read_bytes()
    history_path.write_bytes(data[: len(data) // 3])  # our own history, truncated: damaged, and ours
    published(3, 4)
    monitor = make_app(qapp, ring_path, history_path)
    try:
        start_until_rows(qtbot, monitor, 3)
        assert "moved" in monitor.window.statusBar().currentMessage().lower()
        assert list(history_path.parent.glob("history.sqlite3.corrupt-*"))
        assert monitor.history.flush(10) and query.count(history_path) == 3
    finally:
        monitor.shutdown()


def test_a_history_in_a_folder_the_user_cannot_write_is_shown_not_saved(qtbot, qapp, ring_path, tmp_path, published,
                                                                         unwritable):
    """Issue 11 item 6: opened read-only, restored into the feed, nothing stored, nothing moved."""
    history_path = tmp_path / "h" / "history.sqlite3"
    make_history(history_path, [ring_batch([ring_event(i, details=f"old {i}") for i in range(5)], generation=99)])
    unwritable(history_path.parent)
    published(3, 4)
    monitor = make_app(qapp, ring_path, history_path)
    try:
        start_until_rows(qtbot, monitor, 8)  # 5 shown + 3 new
        monitor.app_history.show_size()
        assert "history is read-only: shown, not saved" in monitor.window.history_label.text()
        assert monitor.history.read_only and monitor.history.flush(10)
        assert query.count(history_path) == 5  # nothing stored
        assert sorted(p.name for p in history_path.parent.iterdir()) == ["history.sqlite3"]
    finally:
        monitor.shutdown()


def test_the_history_size_shown_is_what_is_on_disk_once_the_writer_is_idle(qtbot, qapp, ring_path, tmp_path, published):
    """Issue 14 item 4: the label followed the WAL's high-water mark ("15.9 MiB" for a 0.26 MiB file).
    Once the writer is idle it checkpoints the WAL, and the label shows the files as they are then."""
    history_path = tmp_path / "h" / "history.sqlite3"
    published(3000, 4, slot_count=4096)
    monitor = make_app(qapp, ring_path, history_path)
    try:
        monitor.start()
        store = monitor.history
        qtbot.waitUntil(lambda: store.stored == 3000 and store.settled, timeout=20000)
        wal = f"{history_path}-wal"
        assert not os.path.exists(wal) or os.path.getsize(wal) == 0  # checkpointed and truncated

        def on_disk() -> str:
            size = os.path.getsize(history_path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)
            return f"Kept in history: 3,000 threats, {size / 2**20:.1f} MiB on disk"

        qtbot.waitUntil(lambda: monitor.window.history_label.text() == on_disk(), timeout=10000)
    finally:
        monitor.shutdown()
