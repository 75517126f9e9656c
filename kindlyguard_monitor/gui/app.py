"""The desktop app: builds the window, the tray, the notifier and the reader
thread, and wires their signals together. Nothing here reads the ring or the
socket: the reader thread does, and only emits signals.

    kgmon            start the app
    kgmon --demo     start it with the built-in demo writer as a child process
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import subprocess
import sys
import time

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication

from kindlyguard_monitor import _ring
from kindlyguard_monitor.gui import desktop_notifications
from kindlyguard_monitor.gui.history_window import HistoryWindow
from kindlyguard_monitor.gui.main_window import MainWindow
from kindlyguard_monitor.gui.notifier import Notifier
from kindlyguard_monitor.gui.reader_thread import ReaderThread
from kindlyguard_monitor.gui.resources import icon, icon_path
from kindlyguard_monitor.gui.settings import Settings
from kindlyguard_monitor.gui.settings_dialog import SettingsDialog
from kindlyguard_monitor.gui.single_instance import SingleInstance
from kindlyguard_monitor.gui.threat_model import event_key
from kindlyguard_monitor.gui.tray import TrayController
from kindlyguard_monitor.history import query as history_query
from kindlyguard_monitor.history.store import READ_ONLY_TEXT, HistoryStore
from kindlyguard_monitor.platform_integration import set_windows_app_id
from kindlyguard_monitor.ring.paths import default_ring_path
from kindlyguard_monitor.textsafe import log_to_stderr, visible
from kindlyguard_monitor.threats import CRITICAL, HIGH
from kindlyguard_monitor.transport.manager import Batch
from kindlyguard_monitor.transport.urls import ws_url_problem
from kindlyguard_monitor.transport.ws_client import default_ws_url
from kindlyguard_monitor.vocabulary import DEFAULT_SPIN_NS, Transport

log = logging.getLogger(__name__)
HISTORY_WAIT_S = 5.0  # the most the reader waits at start for the history to open
HISTORY_SIZE_REFRESH_MS = 2000
TRAY_STATE = {Transport.SHM: "protected", Transport.WEBSOCKET: "degraded", Transport.DISCONNECTED: "disconnected"}


def demo_command(shm_path: str) -> list[str]:
    """How to start the demo writer, from a source tree, an install or a frozen app."""
    args = ["demo", "--quiet", "--shm-path", shm_path, "--parent-pid", str(os.getpid())]
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "kindlyguard_monitor", *args]


class DemoWriter:
    """The built-in demo writer as a child process, stopped when the app quits."""

    def __init__(self, shm_path: str):
        self.shm_path = shm_path
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if not self.running:
            self.proc = subprocess.Popen(demo_command(self.shm_path), stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None


class MonitorApp:
    """The wiring between the parts; owns their lifetimes."""

    def __init__(self, qapp: QApplication, shm_path: str, ws_url: str, demo: bool,
                 settings: Settings | None = None, history: HistoryStore | None = None):
        self.qapp = qapp
        self.settings = settings
        self.history = history  # every threat on disk (its own writer thread), or None
        self.history_window: HistoryWindow | None = None
        self._history_events = _HistoryEvents()
        self.demo = DemoWriter(shm_path)
        self.window = MainWindow()
        self.window.setWindowIcon(icon("kindlyguard"))
        self.tray = TrayController()
        self.desktop_notifications = (
            desktop_notifications.DesktopNotifications(icon_path=_icon_file("kindlyguard"))
            if desktop_notifications.supported() else None)
        self.notifier = Notifier(self.tray, desktop=self.desktop_notifications)
        spin_ns = int(settings.spin_us * 1000) if settings else DEFAULT_SPIN_NS
        self.reader = ReaderThread(shm_path, ws_url, spin_ns=spin_ns, history=history)
        self._started = False
        self._shut_down = False
        if settings is not None:
            self.apply_settings(settings)
        file_menu = self.window.menuBar().addMenu("&File")
        file_menu.addAction("&History…", self.open_history)
        file_menu.addAction("&Settings…", self.open_settings)
        file_menu.addAction("&Quit", self.quit)
        self.screen_latency = _ring.Histogram()  # publish -> row in the model, on this thread
        self._wire()
        if demo:
            self.demo.start()
        self.tray.set_demo_running(self.demo.running)
        self.window.hide_on_close = self.tray.available()

    def _wire(self) -> None:
        w, t, n = self.window, self.tray, self.notifier
        self._wire_reader(self.reader)
        t.toggle_window.connect(self.toggle_window)
        t.pause_notifications.connect(lambda seconds: n.policy.pause(seconds))
        t.resume_notifications.connect(n.policy.resume)
        t.toggle_protection.connect(lambda: self.reader.send_command("toggle_protection"))
        t.toggle_demo.connect(self.toggle_demo)
        t.quit_requested.connect(self.quit)
        t.settings_requested.connect(self.open_settings)
        t.history_requested.connect(self.open_history)
        self._history_events.error.connect(self._on_history_error)
        t.tray_missing.connect(self._on_tray_missing)
        t.tray_appeared.connect(lambda: setattr(w, "hide_on_close", True))
        n.open_event.connect(w.show_event)
        w.details.is_muted = lambda source: source in n.policy.muted
        w.details.mute_toggled.connect(self.set_source_muted)
        w.close_requested.connect(w.hide)
        self.qapp.aboutToQuit.connect(self.shutdown)

    def _wire_reader(self, r: ReaderThread) -> None:
        w = self.window
        r.batches.connect(self._on_batches)
        r.ring_format.connect(w.set_ring_format)
        r.transport_changed.connect(self._on_transport)
        r.status.connect(lambda s: w.set_shield_status(s.protection_enabled, s.threats_blocked, s.requested))
        r.counters.connect(lambda c: w.set_counters(c.delivered, c.missed, c.corrupt))
        r.latency.connect(lambda s: w.set_latency(s.transport, s.transport_latency, self.screen_latency))
        r.failed.connect(self._on_failed)

    def reconnect(self, shm_path: str | None = None, ws_url: str | None = None,
                  spin_ns: int | None = None) -> bool:
        """Read from another ring or WebSocket, or with another spin budget: the
        reader thread is stopped, woken and waited for, and a new one started.
        The feed keeps its rows. True when something changed."""
        old = self.reader
        new = (str(shm_path) if shm_path is not None else old.shm_path,
               ws_url if ws_url is not None else old.ws_url,
               int(spin_ns) if spin_ns is not None else old.spin_ns)
        if new == (old.shm_path, old.ws_url, old.spin_ns):
            return False
        old.shutdown()
        self.reader = ReaderThread(new[0], new[1], spin_ns=new[2], history=self.history)
        self._wire_reader(self.reader)
        self.demo.shm_path = new[0]  # a demo started from now on writes where the app reads
        log.info("reading from %s (WebSocket %s) now", new[0], new[1])
        if self._started:
            self.reader.start()
        return True

    # -- slots

    def _on_batches(self, batches: list) -> None:
        news = self.window.add_batches(batches)  # a threat already shown is not news
        now = time.monotonic_ns()
        for batch in batches:
            for e in batch.events:
                self.screen_latency.record(max(0, now - e.publish_mono_ns))
        threshold = self.notifier.policy.threshold
        worth_it = False
        for b in news:  # the table's key names the row a click on the notification opens
            self.notifier.offer(b.events, key_of=lambda e, g=b.generation: event_key(e, g))
            worth_it = worth_it or any(e.severity >= threshold for e in b.events)
        totals = self.window.totals
        self.tray.set_counts(totals["total"], totals["blocked"], totals[CRITICAL], totals[HIGH])
        if worth_it:
            self.tray.set_state("threat")  # the icon turns for threats worth a notification only

    def _on_transport(self, transport: str, reason: str) -> None:
        self.window.set_transport(transport, reason)
        self.tray.set_state(TRAY_STATE.get(transport, "disconnected"))
        self.screen_latency.reset()  # the histogram is for the current transport
        available = self.reader.send_command("get_status")
        self.tray.set_protection_available(
            available, "" if available else "the Shield's WebSocket is not reachable")

    def _on_failed(self, message: str) -> None:
        self.window.set_transport(Transport.DISCONNECTED, message)

    def _on_tray_missing(self) -> None:
        self.window.hide_on_close = False
        self.window.show()
        self.window.show_message(
            "No system tray found: KindlyGuard Monitor runs as a normal window (closing it quits).", 15000)

    def quit(self) -> None:
        """Quit for real (tray Quit, File > Quit, Ctrl-C, SIGTERM). Qt 6's quit()
        first closes every window and gives up if one refuses, and our window
        refuses (it hides to the tray): so it stops refusing first."""
        self.window.hide_on_close = False
        self.qapp.quit()

    def toggle_window(self) -> None:
        if self.window.isVisible():
            self.window.hide()
        else:
            self.show_window()

    def show_window(self) -> None:
        """Bring the window forward (a second launch, the tray's Show)."""
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    def toggle_demo(self) -> None:
        if self.demo.running:
            self.demo.stop()
        else:
            self.demo.start()
        self.tray.set_demo_running(self.demo.running)

    def apply_settings(self, settings: Settings) -> None:
        """The settings that apply to the running app (at start, and after the dialog)."""
        self.notifier.policy.set_threshold(settings.notify_threshold)
        self.window.model.set_max_rows(settings.feed_size)
        for source in settings.muted_sources:
            self.notifier.policy.mute_source(source)

    def set_source_muted(self, source: str, muted: bool) -> None:
        """Mute (or unmute) notifications from one source; remembered across starts.
        Its threats are still shown, counted and stored."""
        policy = self.notifier.policy
        if muted:
            policy.mute_source(source)
        else:
            policy.unmute_source(source)
        if self.settings is not None:
            self.settings.muted_sources = policy.muted
        shown = visible(source[:60])
        self.window.show_message(
            f"Notifications from {shown} {'muted' if muted else 'unmuted'}.", 8000)

    def apply_changed_settings(self, before: tuple, settings: Settings) -> None:
        """After the dialog: apply everything, and reconnect for the transport
        settings the user changed there (one given on the command line stays
        until the user changes it)."""
        self.apply_settings(settings)
        ring, url, spin = before
        self.reconnect(
            shm_path=str(default_ring_path(settings.ring_path or None)) if settings.ring_path != ring else None,
            ws_url=default_ws_url(settings.ws_url or None) if settings.ws_url != url else None,
            spin_ns=int(settings.spin_us * 1000) if settings.spin_us != spin else None)

    def open_settings(self) -> None:
        settings = self.settings or Settings()
        before = (settings.ring_path, settings.ws_url, settings.spin_us)
        dialog = SettingsDialog(settings, parent=self.window)
        dialog.applied.connect(lambda s: self.apply_changed_settings(before, s))
        dialog.exec()

    # -- life cycle

    def start(self, show_window: bool = True) -> None:
        """Show the window at once; start reading once the history has put the
        most recent threats back in the feed (or said it cannot)."""
        self._started = True
        if show_window or not self.tray.available():
            self.window.show()
        if self.history is None:
            self.reader.start()
            return
        self.history.on_error = self._history_events.error.emit  # called on the store's thread
        self.history.start()
        waited = time.monotonic()
        poll = QTimer(self.window)
        poll.setInterval(20)

        def check() -> None:
            if self._shut_down:  # quit before the history was ready: start nothing now
                poll.stop()
                return
            if self.history.ready.is_set() or time.monotonic() - waited > HISTORY_WAIT_S:
                poll.stop()
                self._restore_feed()
                if not self.reader.isRunning():  # (a reconnect meanwhile may have started one)
                    self.reader.start()

        poll.timeout.connect(check)
        poll.start()
        self._history_poll = poll
        self._history_timer = QTimer(self.window)
        self._history_timer.timeout.connect(self._show_history_size)
        self._history_timer.start(HISTORY_SIZE_REFRESH_MS)

    def _restore_feed(self) -> None:
        """The newest threats from the history into the feed (they count as earlier,
        not as news: no notification, not in this session's counters)."""
        if not self.history.wait_ready(0):  # opened, checked and migrated: usable
            self.window.show_message(
                f"The threat history is not available: {self.history.error or 'still opening'}", 30000)
            return
        if self.history.notice:
            log.warning("%s", self.history.notice)
            self.window.show_message(self.history.notice, 60000)
        started = time.perf_counter()
        try:
            threats = history_query.recent(self.history.path, self.window.model.max_rows())
        except Exception as exc:  # a history that cannot be read must not stop the app
            log.warning("could not restore the feed from the history: %s", exc)
            return
        if threats:
            self.window.model.add_batch(Batch(Transport.HISTORY, None, threats))
        log.info("feed restored from the history: %d threats in %.0f ms", len(threats),
                 (time.perf_counter() - started) * 1000)
        self._show_history_size()

    def _show_history_size(self) -> None:
        if self.history is None or not self.window.isVisible():
            return
        text = f"History {self.history.size_bytes() / 2**20:.1f} MiB"
        lag = self.history.lag()
        if lag:
            text += f", {lag:,} waiting"
        if self.history.read_only:  # the error says why; the label says what it means
            text += " — " + READ_ONLY_TEXT
        elif self.history.error:
            text += " — not saving: " + self.history.error
        self.window.set_history_status(text, bool(self.history.error))

    def _on_history_error(self, message) -> None:
        if message:
            log.warning("history: %s", message)
        self._show_history_size()

    def open_history(self) -> None:
        if self.history is None:
            self.window.show_message("No threat history in this session.", 10000)
            return
        if self.history_window is None:
            self.history_window = HistoryWindow(self.history.path)
            self.history_window.setWindowIcon(icon("kindlyguard"))
        self.history.flush(0.2)  # what just arrived is searchable (a store far behind is not waited for)
        self.history_window.show()
        self.history_window.raise_()
        self.history_window.activateWindow()

    def shutdown(self) -> None:
        """Ask the reader to stop, wake it and wait for it; stop the demo; write
        what the history still holds and close it."""
        self._shut_down = True  # a SIGTERM right after start: the history poll must not start the reader later
        self.reader.shutdown()
        self.demo.stop()
        if self.history_window is not None:
            self.history_window.close_worker()
        if self.history is not None:
            self.history.close()
        if self.desktop_notifications is not None:
            self.desktop_notifications.close()


class _HistoryEvents(QObject):
    """Brings the history store's callbacks (its own thread) to the GUI thread."""

    error = Signal(object)  # message, or None when writing works again


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, Qt wrappers: ~40,000 objects)
    out of the garbage collector's sight. Under a flood the full collections then
    scan only what the flood made: the longest pause went from ~36 ms to ~11 ms
    in `kgmon bench --gui`, and such a pause stalls the GUI and the reader alike."""
    gc.collect()
    gc.freeze()


def _ms_since_process_start() -> float:
    if sys.platform.startswith("linux"):
        # /proc start ticks against CLOCK_BOOTTIME: psutil's create_time() rests on the boot
        # time rounded to whole seconds, which put ~150 ms of error into this figure.
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000
    import psutil

    return (time.time() - psutil.Process().create_time()) * 1000


def _icon_file(name: str) -> str:
    try:
        return str(icon_path(name))
    except FileNotFoundError:
        return ""


def choose_ws_url(option: str | None, saved: str | None) -> str:
    """--ws-url (checked by the parser), else the saved setting, else the default; a saved
    URL the client cannot use (a settings file edited by hand) is ignored, with a warning."""
    if not option and saved:
        problem = ws_url_problem(saved)
        if problem is not None:
            log.warning("ignoring the WebSocket URL in the settings: %s", problem)
            saved = None
    return default_ws_url(option or saved or None)


def run(args: argparse.Namespace, started=None) -> int:
    """The app's main: `started(monitor)`, when given, is called once the app is
    up (the end-to-end tests use it to watch the real app from inside)."""
    log_to_stderr(logging.INFO)  # every record made visible: log lines carry server text and paths
    set_windows_app_id()  # before the first window: the taskbar and notifications carry the app's name
    qapp = QApplication.instance() or QApplication(sys.argv[:1])
    qapp.setApplicationName("KindlyGuard Monitor")
    qapp.setOrganizationName("KindlyGuard")
    qapp.setDesktopFileName("kindlyguard-monitor")
    qapp.setQuitOnLastWindowClosed(False)
    instance = SingleInstance()
    if not instance.acquire():
        print("kgmon: KindlyGuard Monitor is already running; brought its window forward", file=sys.stderr)
        return 0
    settings = Settings()
    shm_path = str(default_ring_path(getattr(args, "shm_path", None) or settings.ring_path or None))
    ws_url = choose_ws_url(getattr(args, "ws_url", None), settings.ws_url)
    history = HistoryStore()  # $KINDLYGUARD_HISTORY_PATH, else the user's data folder
    monitor = MonitorApp(qapp, shm_path, ws_url, demo=getattr(args, "demo", False), settings=settings,
                         history=history)
    instance.activation_requested.connect(monitor.show_window)
    monitor.start(show_window=not getattr(args, "hidden", False))
    freeze_startup_objects()
    if started is not None:
        started(monitor)
    if monitor.window.isVisible():
        # Runs once the event loop has painted the first frame: `kgmon bench --gui` reads this line.
        QTimer.singleShot(0, lambda: log.info("window shown %.0f ms after the process started",
                                              _ms_since_process_start()))
    # Ctrl-C in the terminal quits cleanly: Python handles signals only between Qt events.
    # Quit from the event loop, not inside whatever Python code the signal interrupted
    # (a SIGTERM in the middle of start-up's history check once quit between the
    # check and the reader's start, which then outlived the app: Qt aborts on that).
    signal.signal(signal.SIGINT, lambda *a: QTimer.singleShot(0, monitor.quit))
    signal.signal(signal.SIGTERM, lambda *a: QTimer.singleShot(0, monitor.quit))
    tick = QTimer()
    tick.start(250)
    tick.timeout.connect(lambda: None)
    try:
        return qapp.exec()
    finally:
        instance.release()
