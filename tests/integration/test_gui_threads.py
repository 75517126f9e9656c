"""The app's threading contract (kindlyguard_monitor/gui/app.py): MonitorApp is a QObject on
the GUI thread whose receivers are @Slot methods, so every signal from the reader thread is
queued to the GUI thread. Checked on a real demo run (the demo writer as a child process,
shared memory and the WebSocket), offscreen: every slot call is recorded with its thread."""

from __future__ import annotations

import functools
import threading

from PySide6.QtCore import QMetaMethod, QThread

from kindlyguard_monitor.gui.app import MonitorApp
from kindlyguard_monitor.transport.ws_client import default_ws_url

# Slots the reader thread's signals reach: each must be seen on a demo run.
FROM_THE_READER = {"_on_batches", "_on_ring_format", "_on_transport", "_on_status", "_on_counters", "_on_latency"}


def monitor_slots() -> set[str]:
    meta = MonitorApp.staticMetaObject
    return {bytes(meta.method(i).name()).decode() for i in range(meta.methodOffset(), meta.methodCount())
            if meta.method(i).methodType() == QMetaMethod.MethodType.Slot}


def test_every_slot_is_declared():
    assert FROM_THE_READER <= monitor_slots()
    assert {"quit", "shutdown", "toggle_demo", "open_history", "_on_history_ready"} <= monitor_slots()


def test_every_slot_runs_on_the_gui_thread(qtbot, qapp, ring_path, monkeypatch):
    assert threading.current_thread() is threading.main_thread() and QThread.currentThread() == qapp.thread()
    calls: list[tuple[str, str]] = []  # (slot, thread name)

    for name in monitor_slots():
        original = getattr(MonitorApp, name)

        @functools.wraps(original)
        def recorded(self, *args, _name=name, _original=original):
            calls.append((_name, threading.current_thread().name))
            return _original(self, *args)

        monkeypatch.setattr(MonitorApp, name, recorded)

    monitor = MonitorApp(qapp, str(ring_path), default_ws_url(), demo=True)  # the demo on $SHIELD_WS_PORT
    try:
        monitor.start()
        qtbot.waitUntil(lambda: monitor.window.model.rowCount() >= 3, timeout=20000)
        qtbot.waitUntil(lambda: FROM_THE_READER <= {name for name, _ in calls}, timeout=20000)
        monitor.tray.toggle_demo.emit()  # a receiver of a GUI-thread signal too
        qtbot.waitUntil(lambda: not monitor.demo.running, timeout=10000)
    finally:
        monitor.shutdown()
    elsewhere = [(name, thread) for name, thread in calls if thread != threading.main_thread().name]
    assert not elsewhere, f"slots called off the GUI thread: {elsewhere}"
    assert monitor.reader.isFinished()
