"""The desktop app: builds the window, the tray, the notifier and the reader
thread, and wires their signals together. Nothing here reads the ring or the
socket: the reader thread does, and only emits signals.

    kgmon            start the app
    kgmon --demo     start it with the built-in demo writer as a child process
                     (kindlyguard_monitor/gui/demo_process.py)
    kgmon --fleet URL  watch the fleet's stream instead of this machine's Shield (app_fleet.py)

Started by launch.py's run() (`kgmon`). Its other parts, each in its own module:
the threat history's part (start-up,
the restored feed, the History window) app_history.py; the menus and shortcuts
app_menus.py; the tray and the notifications app_tray.py; a flood taken in
slices flood_pacer.py; signals waking the event loop signal_wakeup.py.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QApplication

from kindlyguard_monitor import _ring
from kindlyguard_monitor.feed import Feed
from kindlyguard_monitor.gui import app_tray, keyboard
from kindlyguard_monitor.gui.app_fleet import AppForwarder, apply_forwarding
from kindlyguard_monitor.gui.app_history import AppHistory
from kindlyguard_monitor.gui.app_menus import install_menus, protection_toggler
from kindlyguard_monitor.gui.demo_process import DemoWriter
from kindlyguard_monitor.gui.flood_pacer import FloodPacer
from kindlyguard_monitor.gui.help import HelpDialog
from kindlyguard_monitor.gui.main_window import MainWindow
from kindlyguard_monitor.gui.protection import ProtectionController
from kindlyguard_monitor.gui.reader_thread import ReaderThread
from kindlyguard_monitor.gui.resources import icon
from kindlyguard_monitor.gui.settings import Settings
from kindlyguard_monitor.gui.theme import SYSTEM, ThemeManager
from kindlyguard_monitor.history.store import HistoryStore
from kindlyguard_monitor.ring.paths import default_ring_path
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.transport.urls import default_ws_url
from kindlyguard_monitor.vocabulary import DEFAULT_SPIN_NS, Transport

if TYPE_CHECKING:  # opened on demand: imported then, not at start (docs/benchmarks.md, start-up)
    from kindlyguard_monitor.gui.history_window import HistoryWindow

log = logging.getLogger(__name__)


class MonitorApp(QObject):
    """The wiring between the parts; owns their lifetimes.

    The threading contract: a QObject living on the GUI thread, and every
    receiver of a signal is one of its @Slot methods (or another GUI object's).
    A signal from the reader thread or the history's thread is therefore queued
    to the GUI thread by the receiver's affinity (a lambda has none of its own:
    where it runs depends on the sender object and on the Qt for Python version).
    tests/integration/test_gui_threads.py checks that every slot runs on the GUI thread."""

    def __init__(self, qapp: QApplication, shm_path: str, ws_url: str, demo: bool,
                 settings: Settings | None = None, history: HistoryStore | None = None, source=None):
        super().__init__()
        self.qapp = qapp
        self.settings = settings
        self.demo = DemoWriter(shm_path)
        self.feed = Feed()  # what is news (Qt-free); the window shows it, the notifier and tray hear it
        self.theme = ThemeManager(qapp, settings.theme if settings is not None else SYSTEM, parent=self)
        self.window = MainWindow(feed=self.feed)
        self.app_history = AppHistory(history, self.window, parent=self, fleet=source is not None)
        self.window.setWindowIcon(icon("kindlyguard"))
        self.tray, self.desktop_notifications, self.notifier = app_tray.build_notifications()
        self.protection = ProtectionController(self.window, self.tray, self.notifier,
                                               send=protection_toggler(self), parent=self)
        spin_ns = int(settings.spin_us * 1000) if settings else DEFAULT_SPIN_NS
        self.source = source  # `kgmon --fleet`: the fleet's source (fleet/source.py) instead of this machine's Shield
        self.reader = ReaderThread(shm_path, ws_url, spin_ns=spin_ns, history=history, source=source)
        self.window.set_fleet_mode(source is not None)
        self.protection.set_fleet(source is not None)  # switched on each workstation, not here
        self.forwarding = AppForwarder()  # Settings › Forward threats to a NATS server (app_fleet.py)
        self._started = False
        self._shut_down = False
        if settings is not None:
            self.apply_settings(settings)
        install_menus(self)  # File and Help, the shortcuts
        self.help_dialog: HelpDialog | None = None
        self.screen_latency = _ring.Histogram()  # publish -> row in the model, on this thread
        self.pacer = FloodPacer(parent=self)  # a flood is taken in slices: see gui/flood_pacer.py
        self.pacer.sliced.connect(self._take)
        self._wire()
        if demo:
            self.demo.start()
        self.tray.set_demo_running(self.demo.running)
        self.window.hide_on_close = self.tray.available()

    def _wire(self) -> None:
        w, n = self.window, self.notifier
        self._wire_reader(self.reader)
        app_tray.connect_tray(self)
        self.app_history.ready.connect(self._on_history_ready)
        self.theme.changed.connect(self._on_theme_changed)
        n.open_event.connect(w.show_event)
        # A question the pane asks on the GUI thread, not a signal. It closes over the notifier, never
        # over self: a bound method of the app kept by its own window would make a reference cycle, and
        # a dropped app would then be freed by the cyclic GC in whatever thread allocates next (the
        # reader thread), destroying its widgets and timers off the GUI thread: a segfault.
        w.details.is_muted = lambda source: source in n.policy.muted
        w.details.mute_toggled.connect(self.set_source_muted)
        w.close_requested.connect(w.hide)
        w.row_seen.connect(self._on_row_seen)
        w.mark_all_seen_requested.connect(self.mark_all_seen)
        self.qapp.aboutToQuit.connect(self.shutdown)

    def _wire_reader(self, r: ReaderThread) -> None:
        """The reader thread's signals: each queued to a slot on the GUI thread."""
        r.batches.connect(self._on_batches)
        r.ring_format.connect(self._on_ring_format)
        r.transport_changed.connect(self._on_transport)
        r.status.connect(self._on_status)
        r.status.connect(self.protection.on_status)
        r.shield_error.connect(self.protection.on_error)
        r.counters.connect(self._on_counters)
        r.latency.connect(self._on_latency)
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
        self.reader = ReaderThread(new[0], new[1], spin_ns=new[2], history=self.history, source=self.source)
        self._wire_reader(self.reader)
        self.demo.shm_path = new[0]  # a demo started from now on writes where the app reads
        log.info("reading from %s (WebSocket %s) now", new[0], new[1])
        if self._started:
            self.reader.start()
        return True

    # -- slots (all on the GUI thread)

    @Slot(object)
    def _on_batches(self, batches: list) -> None:
        """Queue what the reader delivered: the pacer hands it to _take in slices."""
        self.pacer.offer(batches)

    @Slot(object, bool)
    def _take(self, batches: list, last: bool) -> None:
        # Rows for the table from the newest slice only: older ones would be pushed out at once.
        update = self.feed.take(batches, list_rows=last)  # a threat seen before is not news
        self.window.show_update(update)
        now = time.monotonic_ns()
        for e in update.rows:  # publish -> row in the model, for the rows the table took
            if e.publish_mono_ns is not None:  # None: not known (a fleet threat caught up, fleet/source.py)
                self.screen_latency.record(max(0, now - e.publish_mono_ns))
        app_tray.announce(update, self.feed, self.tray, self.notifier)
        self.app_history.note_activity()

    @Slot(object)
    def _on_row_seen(self, key) -> None:
        """The user opened an unseen threat: the history keeps it seen, the tray counts it."""
        if self.history is not None:
            self.history.mark_seen([key])
        self.tray.set_unseen(self.feed.unseen)

    @Slot()
    def mark_all_seen(self) -> None:
        """Mark all as seen (File, the button by the feed, the tray, Ctrl+Shift+A): every threat
        so far, in the window, the tray and the history."""
        self.window.mark_all_seen()
        if self.history is not None:
            self.history.mark_all_seen()
        self.tray.set_unseen(0)

    @Slot(int)
    def _on_ring_format(self, ring_format: int) -> None:
        self.window.set_ring_format(ring_format)

    @Slot(object)
    def _on_status(self, s) -> None:
        self.window.set_shield_status(s.protection_enabled, s.threats_blocked, s.requested)

    @Slot(object)
    def _on_counters(self, c) -> None:
        self.window.set_counters(c.delivered, c.missed, c.corrupt)

    @Slot(object)
    def _on_latency(self, s) -> None:
        self.window.set_latency(s.transport, s.transport_latency, self.screen_latency)

    @Slot(str, str)
    def _on_transport(self, transport: str, reason: str) -> None:
        self.window.set_transport(transport, reason)
        self.tray.set_state(app_tray.tray_state(transport))
        self.screen_latency.reset()  # the histogram is for the current transport
        available = self.reader.send_command("get_status")
        self.protection.set_available(available, "" if available else "the Shield's WebSocket is not reachable")

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.window.set_transport(Transport.DISCONNECTED, message)

    @Slot(object)
    def _on_theme_changed(self, _palette) -> None:
        self.window.refresh_colours()

    @Slot()
    def _on_tray_appeared(self) -> None:
        self.window.hide_on_close = True

    @Slot(object)
    def _pause_notifications(self, seconds) -> None:
        self.notifier.policy.pause(seconds)

    @Slot()
    def _resume_notifications(self) -> None:
        self.notifier.policy.resume()

    @Slot()
    def _on_tray_missing(self) -> None:
        self.window.hide_on_close = False
        self.window.show()
        self.window.show_message(
            "No system tray found: KindlyGuard Monitor runs as a normal window (closing it quits).", 15000)

    @Slot()
    def quit(self) -> None:
        """Quit for real (tray Quit, File > Quit, Ctrl-C, SIGTERM). Qt 6's quit()
        first closes every window and gives up if one refuses, and our window
        refuses (it hides to the tray): so it stops refusing first."""
        self.window.hide_on_close = False
        self.qapp.quit()

    @Slot()
    def toggle_window(self) -> None:
        if self.window.isVisible():
            self.window.hide()
        else:
            self.show_window()

    @Slot()
    def show_window(self) -> None:
        """Bring the window forward (a second launch, the tray's Show)."""
        self.window.show()
        self.window.raise_()
        self.window.activateWindow()

    @Slot()
    def toggle_demo(self) -> None:
        if self.demo.running:
            self.demo.stop()
        else:
            self.demo.start()
        self.tray.set_demo_running(self.demo.running)

    def apply_settings(self, settings: Settings) -> None:
        """The settings that apply to the running app (at start, and after the dialog)."""
        self.notifier.policy.set_threshold(settings.notify_threshold)
        self.notifier.policy.min_interval_s = float(settings.notify_interval_s)
        self.window.set_feed_size(settings.feed_size)
        self.theme.set_setting(settings.theme)
        for source in settings.muted_sources:
            self.notifier.policy.mute_source(source)

    @Slot(str, bool)
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
        apply_forwarding(self)
        ring, url, spin = before
        self.reconnect(
            shm_path=str(default_ring_path(settings.ring_path or None)) if settings.ring_path != ring else None,
            ws_url=default_ws_url(settings.ws_url or None) if settings.ws_url != url else None,
            spin_ns=int(settings.spin_us * 1000) if settings.spin_us != spin else None)

    @Slot()
    def open_settings(self) -> None:
        from kindlyguard_monitor.gui.settings_dialog import SettingsDialog  # not needed to start

        settings = self.settings or Settings()
        self._settings_before = (settings.ring_path, settings.ws_url, settings.spin_us)
        dialog = SettingsDialog(settings, parent=self.window)
        keyboard.install_dialog(dialog)
        dialog.applied.connect(self._on_settings_applied)
        dialog.exec()

    @Slot(object)
    def _on_settings_applied(self, settings: Settings) -> None:
        self.apply_changed_settings(self._settings_before, settings)

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
        self.app_history.start()  # then ready -> _on_history_ready starts the reader
        apply_forwarding(self)

    @Slot()
    def _on_history_ready(self) -> None:
        """The feed is restored from the history (or it could not be waited for): read now."""
        self.tray.set_unseen(self.feed.unseen)  # what the history kept unseen
        if not self._shut_down and not self.reader.isRunning():  # (a reconnect meanwhile may have started one)
            self.reader.start()

    @Slot()
    def open_help(self) -> None:
        """Help › KindlyGuard Monitor Help (F1): what the monitor shows, what to do about a threat."""
        if self.help_dialog is None:
            self.help_dialog = HelpDialog(self.window)
            keyboard.install_dialog(self.help_dialog)
        self.help_dialog.show()
        self.help_dialog.raise_()
        self.help_dialog.activateWindow()

    @Slot()
    def open_history(self) -> None:
        self.app_history.open_window()
        window = self.history_window
        if window is not None and not hasattr(window, "_keyboard_shortcuts"):  # Esc and Ctrl+W close it
            keyboard.install_closing_window(window, keyboard.HISTORY_NAMES)

    @property
    def history(self) -> HistoryStore | None:
        return self.app_history.store

    @history.setter
    def history(self, store: HistoryStore | None) -> None:
        self.app_history.store = store

    @property
    def history_window(self) -> HistoryWindow | None:
        return self.app_history.history_window

    @Slot()
    def shutdown(self) -> None:
        """Ask the reader to stop, wake it and wait for it; stop the demo; write
        what the history still holds and close it."""
        self._shut_down = True  # a SIGTERM right after start: the history poll must not start the reader later
        self.pacer.stop()  # what waits was stored by the reader's thread already
        self.app_history.stop()
        self.reader.shutdown()
        self.demo.stop()
        self.forwarding.stop()  # its cursor saved: what was not acknowledged goes again next time
        self.app_history.close()
        if self.desktop_notifications is not None:
            self.desktop_notifications.close()
