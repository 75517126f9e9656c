"""The assembled app (kindlyguard_monitor/gui/app.py) on Qt's offscreen platform, fed by a real
ring: threats reach the table, the transport reaches the badge, quitting
stops the reader thread cleanly. (Offscreen has no tray: the app must run as a
normal window and say so; the tray itself is tested under Xvfb.)"""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import weakref

import pytest
from conftest import REPO, free_port, wait_for, wait_for_file, wait_reader_settled

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.ring.pyring import PyWriter


def make_app(qapp, ring_path, demo=False):
    from kindlyguard_monitor.gui.app import MonitorApp

    monitor = MonitorApp(qapp, str(ring_path), f"ws://127.0.0.1:{free_port()}", demo=demo)
    return monitor


def test_threats_from_the_ring_reach_the_table(qtbot, qapp, ring_path):
    writer = PyWriter.create(ring_path, slot_count=64)
    writer.publish(ThreatGenerator(5).batch(20))
    monitor = make_app(qapp, ring_path)
    try:
        monitor.start()
        qtbot.waitUntil(lambda: monitor.window.isVisible(), timeout=5000)
        model = monitor.window.model
        qtbot.waitUntil(lambda: model.rowCount() == 20, timeout=10000)
        qtbot.waitUntil(lambda: monitor.window.windowTitle() == "KindlyGuard Monitor — 20 unseen", timeout=5000)
        assert monitor.screen_latency.count == 20
        assert not monitor.window.hide_on_close, "no tray here: closing the window quits"
    finally:
        monitor.shutdown()
        writer.close()
    assert monitor.reader.isFinished()


def test_a_dropped_app_is_freed_at_once_not_by_the_cyclic_gc(qtbot, qapp, ring_path):
    """No reference cycle holds the app or its window: dropped, they are freed at once, on the GUI
    thread. In a cycle, only the cyclic GC frees them, and it runs on whatever thread allocates
    next (the reader thread): their timers and widgets were then destroyed off the GUI thread, and
    the GUI thread segfaulted on a freed object's timer."""
    writer = PyWriter.create(ring_path, slot_count=64)
    writer.publish(ThreatGenerator(5).batch(5))
    gc.collect()
    gc.disable()
    try:
        monitor = make_app(qapp, ring_path)
        try:
            monitor.start()
            wait_reader_settled(qtbot, monitor.reader, 5)
        finally:
            monitor.shutdown()
        parts = {name: weakref.ref(part) for name, part in [
            ("app", monitor), ("window", monitor.window), ("reader", monitor.reader),
            ("protection", monitor.protection), ("keys", monitor.window._enter_filter)]}
        del monitor
        assert [name for name, ref in parts.items() if ref() is not None] == []
    finally:
        gc.enable()
        writer.close()


def test_the_badge_follows_the_transport(qtbot, qapp, ring_path):
    monitor = make_app(qapp, ring_path)
    try:
        monitor.start()
        qtbot.waitUntil(lambda: "Disconnected" in monitor.window.badge.text(), timeout=10000)
        writer = PyWriter.create(ring_path, slot_count=64)
        writer.publish(ThreatGenerator(6).batch(3))
        qtbot.waitUntil(lambda: "Shared memory" in monitor.window.badge.text(), timeout=10000)
        writer.close()
        qtbot.waitUntil(lambda: "Disconnected" in monitor.window.badge.text(), timeout=10000)
    finally:
        monitor.shutdown()


def stored_threats(history_path) -> int:
    """Threats in a history file (0 while it is not made yet); read-only, beside the app."""
    try:
        with sqlite3.connect(f"file:{history_path}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM threats").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kgmon_with_no_command_starts_the_app_and_quits_on_sigterm(ring_path, _private_history):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO), SHIELD_WS_PORT=str(free_port()),
               XDG_RUNTIME_DIR=str(ring_path.parent))
    proc = subprocess.Popen([sys.executable, "-m", "kindlyguard_monitor", "--demo", "--shm-path", str(ring_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(ring_path, 30)  # the demo writer child created its ring
        # the app runs: its reader took the demo's threats and its history stored them
        wait_for(lambda: stored_threats(_private_history) > 0, 60, "the app to store the demo's threats")
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Destroyed while thread" not in err and "Traceback" not in err, err


def test_settings_apply_to_the_app(qtbot, qapp, ring_path, tmp_path):
    from PySide6.QtCore import QSettings

    from kindlyguard_monitor.gui.app import MonitorApp
    from kindlyguard_monitor.gui.settings import Settings
    from kindlyguard_monitor.threats import MEDIUM

    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.feed_size = 100
    settings.notify_threshold = MEDIUM
    monitor = MonitorApp(qapp, str(ring_path), f"ws://127.0.0.1:{free_port()}", demo=False, settings=settings)
    try:
        assert monitor.window.model.max_rows() == 100
        assert monitor.notifier.policy.threshold == MEDIUM
        actions = [a.text() for a in monitor.window.menuBar().actions()[0].menu().actions()]
        assert "&Settings…" in actions and "&Quit" in actions
        assert monitor.tray.action_settings.text() == "Settings…"
    finally:
        monitor.shutdown()


@pytest.mark.slow
def test_gui_bench_short_runs():
    """`kgmon bench --gui --short` proves the desktop bench works; its figures are never asserted."""
    import json

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "kindlyguard_monitor", "bench", "--gui", "--short", "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for phase in ("steady_1000", "flood_100000"):
        assert set(out[phase]) == {"publish_to_row_ms", "rows_measured", "event_loop_lateness_ms", "rows_in_table",
                                   "gui_thread_cpu_percent", "load_average", "reader_delivered", "reader_missed",
                                   "history_stored", "history_flood_transactions"}
    assert out["flood_100000"]["rows_in_table"] <= 10_000, "the feed stays bounded"
    # the app stores what its reader read (its history in a temporary folder, as every user has one)
    read = out["steady_1000"]["reader_delivered"] + out["flood_100000"]["reader_delivered"]
    assert read > 0 and out["flood_100000"]["history_stored"] == read


def test_a_notification_names_the_table_row_its_click_opens(qtbot, qapp, ring_path):
    """The notifier is offered real ring events (which carry no key of their own):
    the key it keeps for a click must be the table's key of that threat."""
    from kindlyguard_monitor.threats import CRITICAL, THREAT_TYPE_NUMBER, Threat

    writer = PyWriter.create(ring_path, slot_count=64)
    writer.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, True, "mcp:fs", "../../etc/shadow", 1)])
    monitor = make_app(qapp, ring_path)
    try:
        monitor.start()
        qtbot.waitUntil(lambda: monitor.notifier.last_notification is not None, timeout=10000)
        key = monitor.notifier.last_notification.key
        assert key is not None
        assert monitor.window.model.row_for_key(key) == 0
        monitor.window.hide()
        monitor.notifier.open_event.emit(key)  # what a click on the notification does
        assert monitor.window.isVisible()
        assert "../../etc/shadow" in monitor.window.details.text.toPlainText()
    finally:
        monitor.shutdown()
        writer.close()


def test_the_demo_writer_never_outlives_a_killed_app(ring_path):
    import psutil

    from conftest import wait_for

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO), SHIELD_WS_PORT=str(free_port()),
               XDG_RUNTIME_DIR=str(ring_path.parent), TMPDIR=str(ring_path.parent))
    proc = subprocess.Popen([sys.executable, "-m", "kindlyguard_monitor", "--demo", "--shm-path", str(ring_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(ring_path), 30, "the demo writer's ring")
        children = psutil.Process(proc.pid).children()
        assert len(children) == 1 and "demo" in children[0].cmdline()
        proc.kill()  # no chance to stop its child
        proc.wait()
        assert psutil.wait_procs(children, timeout=10)[1] == [], "the demo writer is still running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in psutil.Process().children(recursive=True):
            try:
                if "demo" in " ".join(child.cmdline()):
                    child.kill()
            except psutil.Error:  # gone, or a zombie: another child of this process that ended a moment ago
                pass


def test_new_transport_settings_reconnect_without_duplicates(qtbot, qapp, ring_dir, tmp_path):
    """A changed ring path or spin budget restarts the reader at once; the feed keeps
    its rows and a replayed ring shows nothing twice (nor notifies twice)."""
    from PySide6.QtCore import QSettings

    from kindlyguard_monitor.gui.app import MonitorApp
    from kindlyguard_monitor.gui.settings import Settings
    from kindlyguard_monitor.threats import CRITICAL, THREAT_TYPE_NUMBER, Threat

    first, second = ring_dir / "first.shm", ring_dir / "second.shm"
    w1 = PyWriter.create(first, slot_count=64)
    w1.publish(ThreatGenerator(1).batch(5))
    w2 = PyWriter.create(second, slot_count=64)
    w2.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, True, "mcp:fs", "second ring", 1)])
    settings = Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    monitor = MonitorApp(qapp, str(first), f"ws://127.0.0.1:{free_port()}", demo=False, settings=settings)
    try:
        monitor.start()
        model = monitor.window.model
        qtbot.waitUntil(lambda: model.rowCount() == 5, timeout=10000)
        offered = monitor.notifier.policy.offered
        # the same ring, another spin budget: a new reader replays the ring from its oldest event
        before = (settings.ring_path, settings.ws_url, settings.spin_us)
        settings.spin_us = settings.spin_us + 1
        old_reader = monitor.reader
        monitor.apply_changed_settings(before, settings)
        assert monitor.reader is not old_reader and old_reader.isFinished()
        qtbot.waitUntil(lambda: monitor.window.transport == "shm", timeout=10000)
        wait_reader_settled(qtbot, monitor.reader, 5)  # the replay is in, and changed nothing
        assert model.rowCount() == 5 and monitor.feed.totals["total"] == 5
        assert monitor.notifier.policy.offered == offered, "replayed threats are not offered again"
        # another ring
        before = (settings.ring_path, settings.ws_url, settings.spin_us)
        settings.ring_path = str(second)
        monitor.apply_changed_settings(before, settings)
        qtbot.waitUntil(lambda: model.rowCount() == 6, timeout=10000)
        assert model.row_at(0).details == "second ring"
        assert monitor.reader.shm_path == str(second) and monitor.demo.shm_path == str(second)
    finally:
        monitor.shutdown()
        w1.close()
        w2.close()


def test_muting_a_source_from_the_details_pane_is_remembered(qtbot, qapp, ring_path, tmp_path):
    from PySide6.QtCore import QSettings

    from kindlyguard_monitor.gui.app import MonitorApp
    from kindlyguard_monitor.gui.settings import Settings
    from kindlyguard_monitor.threats import CRITICAL, THREAT_TYPE_NUMBER, Threat

    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    writer = PyWriter.create(ring_path, slot_count=64)
    noisy = "mcp:noisy\u202eserver"
    writer.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, True, noisy, "x", 1)])
    monitor = MonitorApp(qapp, str(ring_path), f"ws://127.0.0.1:{free_port()}", demo=False,
                         settings=Settings(store))
    try:
        monitor.start()
        w = monitor.window
        qtbot.waitUntil(lambda: w.model.rowCount() == 1, timeout=10000)
        w.table.selectRow(0)
        assert w.details.mute_button.isEnabled() and not w.details.mute_button.isChecked()
        w.details.mute_button.click()
        assert noisy in monitor.notifier.policy.muted
        assert "⟨U+202E⟩" in w.statusBar().currentMessage() and "\u202e" not in w.statusBar().currentMessage()
        suppressed = monitor.notifier.policy.suppressed
        writer.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, True, noisy, "y", 2)])
        qtbot.waitUntil(lambda: w.model.rowCount() == 2, timeout=10000)
        assert monitor.notifier.policy.suppressed == suppressed + 1, "shown, but not notified"
    finally:
        monitor.shutdown()
    # the next start remembers it
    monitor = MonitorApp(qapp, str(ring_path), f"ws://127.0.0.1:{free_port()}", demo=False,
                         settings=Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)))
    try:
        assert noisy in monitor.notifier.policy.muted
    finally:
        monitor.shutdown()
        writer.close()
