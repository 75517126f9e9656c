"""Starting the desktop app (`kgmon`, `kgmon --demo`, `kgmon --fleet URL`): one
instance per source, the settings, the history, the app (gui/app.py's MonitorApp),
then Qt's event loop until the user quits or a signal arrives."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from kindlyguard_monitor.gui.app import MonitorApp
from kindlyguard_monitor.gui.app_fleet import fleet_history_path, fleet_source, instance_name
from kindlyguard_monitor.gui.settings import Settings
from kindlyguard_monitor.gui.signal_wakeup import SignalWakeup
from kindlyguard_monitor.gui.single_instance import SingleInstance
from kindlyguard_monitor.gui.startup import choose_ws_url, ms_since_process_start, prepare_for_floods
from kindlyguard_monitor.history.store import HistoryStore
from kindlyguard_monitor.platform_integration import set_windows_app_id
from kindlyguard_monitor.ring.paths import default_ring_path
from kindlyguard_monitor.textsafe import log_to_stderr, visible

log = logging.getLogger(__name__)


def run(args: argparse.Namespace, started=None) -> int:
    """The app's main: `started(monitor)`, when given, is called once the app is
    up (the end-to-end tests use it to watch the real app from inside)."""
    fleet = fleet_source(args)
    if isinstance(fleet, str):
        print(f"kgmon: {visible(fleet)}", file=sys.stderr)
        return 2
    log_to_stderr(logging.INFO)  # every record made visible: log lines carry server text and paths
    set_windows_app_id()  # before the first window: the taskbar and notifications carry the app's name
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationName("KindlyGuard Monitor")
    qapp.setOrganizationName("KindlyGuard")
    qapp.setDesktopFileName("kindlyguard-monitor")
    qapp.setQuitOnLastWindowClosed(False)
    instance = SingleInstance(instance_name(fleet))  # the fleet view and this machine's monitor may both run
    if not instance.acquire():
        print("kgmon: KindlyGuard Monitor is already running; brought its window forward", file=sys.stderr)
        return 0
    settings = Settings()
    shm_path = str(default_ring_path(getattr(args, "shm_path", None) or settings.ring_path or None))
    ws_url = choose_ws_url(getattr(args, "ws_url", None), settings.ws_url)
    history = HistoryStore(fleet_history_path(fleet))  # $KINDLYGUARD_HISTORY_PATH, else the data folder
    monitor = MonitorApp(qapp, shm_path, ws_url, demo=getattr(args, "demo", False) and fleet is None,
                         settings=settings, history=history, source=fleet)
    instance.activation_requested.connect(monitor.show_window)
    monitor.start(show_window=not getattr(args, "hidden", False))
    prepare_for_floods()
    if started is not None:
        started(monitor)
    if monitor.window.isVisible():
        # Runs once the event loop has painted the first frame: `kgmon bench --gui` reads this line.
        QTimer.singleShot(0, lambda: log.info("window shown %.0f ms after the process started",
                                              ms_since_process_start()))
    # Ctrl-C in the terminal quits cleanly: Python handles signals only between Qt events.
    # Quit from the event loop, not inside whatever Python code the signal interrupted
    # (a SIGTERM in the middle of start-up's history check once quit between the
    # check and the reader's start, which then outlived the app: Qt aborts on that).
    signal.signal(signal.SIGINT, lambda *a: QTimer.singleShot(0, monitor.quit))
    signal.signal(signal.SIGTERM, lambda *a: QTimer.singleShot(0, monitor.quit))
    wakeup = SignalWakeup()  # no polling timer: a signal itself wakes the event loop
    try:
        return qapp.exec()
    finally:
        wakeup.close()
        instance.release()

