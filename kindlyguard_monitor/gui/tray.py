"""The tray icon, its tooltip and its menu.

The controller only emits signals; whoever builds the app wires them (to the
window, the notifier, the reader's command channel, the demo writer).

No tray at all (a bare X server, some Wayland desktops, Qt's offscreen
platform): `tray_missing` is emitted once, after the event loop starts, and
the app runs as a normal window. A tray host that appears later (a
StatusNotifierItem watcher or an XEmbed tray started after the app) is
noticed by a 2 s poll of `isSystemTrayAvailable()` while none exists and, on
Linux, by watching the D-Bus name org.kde.StatusNotifierWatcher; then the icon
is recreated and shown and `tray_appeared` is emitted.

Caveat: Qt decides once per process whether its D-Bus (StatusNotifierItem)
tray path is available; an icon recreated after a late SNI watcher may still
use the XEmbed path, which works where the desktop also bridges XEmbed.
macOS and Windows use Qt's native tray: not tested here.
"""

from __future__ import annotations

import logging
import sys

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from kindlyguard_monitor.gui.resources import icon
from kindlyguard_monitor.textsafe import visible

log = logging.getLogger(__name__)

APP_NAME = "KindlyGuard Monitor"
STATES = {
    # state: (icon name, tooltip line)
    "protected": ("shield-protected", "Protected (shared memory)"),
    "threat": ("shield-threat", "New threats: open them, or mark all as seen"),
    "degraded": ("shield-degraded", "Degraded to WebSocket"),
    "disconnected": ("shield-disconnected", "Disconnected from the Shield"),
    "protection_off": ("shield-off", "Protection is OFF: the Shield is not blocking threats"),
}
PROTECTION_UNKNOWN = "Turn protection off/on"
POLL_MS = 2_000  # poll for a tray host while none exists
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
PAUSE_CHOICES = (("15 minutes", 15 * 60), ("1 hour", 60 * 60), ("Until resumed", None))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class TrayController(QObject):
    toggle_window = Signal()
    pause_notifications = Signal(object)  # seconds, or None: until resumed
    resume_notifications = Signal()
    toggle_protection = Signal()
    toggle_demo = Signal()
    quit_requested = Signal()
    settings_requested = Signal()
    history_requested = Signal()
    tray_missing = Signal()  # once: no tray exists
    tray_appeared = Signal()  # a tray host appeared and the icon is shown
    message_clicked = Signal()  # the current icon's balloon/notification was clicked
    mark_all_seen = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._icons = {state: icon(name) for state, (name, _) in STATES.items()}
        self._base_state = "disconnected"
        self._threat_active = False
        self._protection_off = False  # the Shield says protection is off: its own icon until it is back on
        self._counts_text = "This session: no threats"
        self._unseen = 0
        self._missing_emitted = False
        self._dbus_watcher = None

        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(self._check_tray)

        self.menu = self._build_menu()
        self.tray: QSystemTrayIcon | None = None
        self._create_icon()
        if self.available():
            self.tray.show()
        else:
            self._poll.start()
            # After the event loop starts, so the app can connect first.
            QTimer.singleShot(0, self._emit_missing)
        self._watch_dbus()

    # -- menu -------------------------------------------------------------------

    def _build_menu(self) -> QMenu:
        menu = QMenu()
        menu.setToolTipsVisible(True)  # a greyed-out action says why (the protection action)
        self.action_window = menu.addAction("Show/Hide window")
        self.action_window.triggered.connect(self.toggle_window)

        self.pause_menu = menu.addMenu("Pause notifications")
        self.pause_actions: dict[str, QAction] = {}
        for text, seconds in PAUSE_CHOICES:
            action = self.pause_menu.addAction(text)
            action.triggered.connect(lambda _=False, s=seconds: self.pause_notifications.emit(s))
            self.pause_actions[text] = action
        self.pause_menu.addSeparator()
        self.action_resume = self.pause_menu.addAction("Resume")
        self.action_resume.triggered.connect(self.resume_notifications)
        self.pause_actions["Resume"] = self.action_resume

        self.action_mark_seen = menu.addAction("Mark all as seen")
        self.action_mark_seen.setEnabled(False)
        self.action_mark_seen.triggered.connect(self.mark_all_seen)

        menu.addSeparator()
        self.action_protection = menu.addAction(PROTECTION_UNKNOWN)
        self.action_protection.triggered.connect(self.toggle_protection)
        self.action_demo = menu.addAction("Start demo writer")
        self.action_demo.triggered.connect(self.toggle_demo)
        menu.addSeparator()
        self.action_history = menu.addAction("History…")
        self.action_history.triggered.connect(self.history_requested)
        self.action_settings = menu.addAction("Settings…")
        self.action_settings.triggered.connect(self.settings_requested)
        self.action_quit = menu.addAction("Quit")
        self.action_quit.triggered.connect(self.quit_requested)
        return menu

    def set_protection_available(self, available: bool, reason: str = "") -> None:
        """Grey out the protection action when it cannot work, saying why (the state unknown)."""
        shown = visible(reason) if reason else ""
        self.set_protection_action(PROTECTION_UNKNOWN + (f" ({shown})" if not available and shown else ""),
                                   available, "" if available else shown)

    def set_protection_action(self, text: str, enabled: bool, tooltip: str = "") -> None:
        """The protection action's label (which way it goes), whether it can be chosen, and why not.
        Outside text (a reason) is shown visible, never interpreted."""
        self.action_protection.setText(visible(text))
        self.action_protection.setEnabled(bool(enabled))
        self.action_protection.setToolTip(visible(tooltip))

    def set_protection_off(self, off: bool) -> None:
        """The Shield says protection is off (True) or on: the icon and the tooltip say it."""
        if bool(off) != self._protection_off:
            self._protection_off = bool(off)
            self._refresh()

    def set_demo_running(self, running: bool) -> None:
        self.action_demo.setText("Stop demo writer" if running else "Start demo writer")

    # -- state and tooltip ------------------------------------------------------

    @property
    def state(self) -> str:
        """The state the icon shows now."""
        if self._protection_off:  # the most important thing to know: above a threat's flash
            return "protection_off"
        return "threat" if self._threat_active else self._base_state

    def set_state(self, state: str) -> None:
        """"threat" (the alert) shows until everything is seen (set_unseen(0)); any other
        state is the one the icon goes back to then."""
        if state not in STATES or state == "protection_off":  # that one follows set_protection_off()
            raise ValueError(f"unknown tray state {state!r}")
        if state == "threat":
            self._threat_active = True
        else:
            self._base_state = state
        self._refresh()

    def set_unseen(self, unseen: int) -> None:
        """How many threats the user has not seen: in the tooltip; at 0 the alert is over."""
        self._unseen = max(0, int(unseen))
        self.action_mark_seen.setEnabled(bool(self._unseen))
        if not self._unseen:
            self._threat_active = False
        self._refresh()

    def set_counts(self, total: int, blocked: int, critical: int, high: int) -> None:
        self._counts_text = (
            f"This session: {_plural(total, 'threat')} ({blocked} blocked), "
            f"{critical} critical, {high} high"
        )
        self._refresh()

    def tooltip(self) -> str:
        """Plain text: numbers and fixed words only, never event text."""
        unseen = f"{self._unseen:,} unseen" if self._unseen else "nothing unseen"
        return f"{APP_NAME} — {unseen}\n{self._counts_text}\n{STATES[self.state][1]}"

    def current_icon(self):
        return self._icons[self.state]

    def _refresh(self) -> None:
        """Set the icon and tooltip when they changed (the counts change with every delivery:
        a tray host is sent each new icon and tooltip over D-Bus)."""
        if self.tray is None:
            return
        icon_now, tooltip = self.current_icon(), self.tooltip()
        shown = getattr(self, "_shown", None)
        if shown is not None and shown[0] is self.tray:
            if shown[1] is not icon_now:
                self.tray.setIcon(icon_now)
            if shown[2] != tooltip:
                self.tray.setToolTip(tooltip)
        else:
            self.tray.setIcon(icon_now)
            self.tray.setToolTip(tooltip)
        self._shown = (self.tray, icon_now, tooltip)

    # -- the icon and the tray host ----------------------------------------------

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def is_visible(self) -> bool:
        """True when a tray exists and our icon is shown in it."""
        return self.tray is not None and self.tray.isVisible() and self.available()

    def show_message(self, title: str, body: str, severity_icon=None, msecs: int = 8000) -> bool:
        """Show a balloon/notification through the tray icon; False when no visible icon."""
        if not self.is_visible():
            return False
        kind = severity_icon if severity_icon is not None else QSystemTrayIcon.MessageIcon.Warning
        self.tray.showMessage(title, body, kind, msecs)
        return True

    def _create_icon(self) -> None:
        old = self.tray
        if old is not None:
            old.hide()
            old.setContextMenu(None)
            old.deleteLater()
        tray = QSystemTrayIcon(self.current_icon(), self)
        tray.setToolTip(self.tooltip())
        tray.setContextMenu(self.menu)
        tray.activated.connect(self._on_activated)
        tray.messageClicked.connect(self.message_clicked)
        self.tray = tray

    @Slot(QSystemTrayIcon.ActivationReason)
    def _on_activated(self, reason) -> None:
        if reason in (QSystemTrayIcon.ActivationReason.Trigger, QSystemTrayIcon.ActivationReason.DoubleClick):
            self.toggle_window.emit()

    @Slot()
    def _emit_missing(self) -> None:
        if not self._missing_emitted and not self.available():
            self._missing_emitted = True
            self.tray_missing.emit()

    @Slot()
    def _check_tray(self) -> None:
        """While no tray exists: has one appeared?"""
        if self.available():
            self._poll.stop()
            self._host_appeared()

    def _host_appeared(self) -> None:
        log.info("a system tray appeared: showing the tray icon")
        self._create_icon()
        self.tray.show()
        self.tray_appeared.emit()

    def _watch_dbus(self) -> None:
        if not sys.platform.startswith("linux"):
            return
        try:
            from PySide6.QtDBus import QDBusConnection, QDBusServiceWatcher
        except ImportError:  # pragma: no cover - QtDBus ships with PySide6-Essentials
            return
        bus = QDBusConnection.sessionBus()
        if not bus.isConnected():
            return
        self._dbus_watcher = QDBusServiceWatcher(
            SNI_WATCHER, bus, QDBusServiceWatcher.WatchModeFlag.WatchForRegistration, self)
        self._dbus_watcher.serviceRegistered.connect(self._on_sni_watcher)

    @Slot(str)
    def _on_sni_watcher(self, _name: str = "") -> None:
        """A StatusNotifierWatcher (re)started: our old registration is gone."""
        if self.available():
            self._poll.stop()
            self._host_appeared()
        elif not self._poll.isActive():
            self._poll.start()
