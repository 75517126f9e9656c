"""The app's menus and shortcuts: File (History, Settings, Mark all as seen,
protection on/off, Quit) and Help on the main window, its keyboard shortcuts and its numbers'
tooltips; and the sender behind the protection toggle (the File menu's and the
tray's). Functions that connect the app's own @Slot methods: nothing here keeps
a reference to the app (gui/app.py's MonitorApp), so nothing makes a cycle with it."""

from __future__ import annotations

import weakref
from typing import Callable

from PySide6.QtCore import QObject

from kindlyguard_monitor.gui import keyboard
from kindlyguard_monitor.gui.help import explain_numbers


def install_menus(app: QObject) -> None:
    window = app.window
    file_menu = window.menuBar().addMenu("&File")
    file_menu.setToolTipsVisible(True)  # a greyed-out action says why (the protection action)
    file_menu.addAction("&History…", app.open_history).setShortcut(keyboard.SHORTCUTS["history"])
    file_menu.addAction("&Settings…", app.open_settings).setShortcut(keyboard.SHORTCUTS["settings"])
    window.action_mark_seen = file_menu.addAction("&Mark all as seen", app.mark_all_seen)
    window.action_mark_seen.setShortcut(keyboard.SHORTCUTS["mark_all_seen"])
    file_menu.addAction(app.tray.action_protection)  # "Turn protection off…/on", as in the tray
    file_menu.addAction("&Quit", app.quit).setShortcut(keyboard.SHORTCUTS["quit"])
    help_menu = window.menuBar().addMenu("&Help")
    help_menu.addAction("KindlyGuard Monitor &Help", app.open_help).setShortcut("F1")
    keyboard.install_main_window(window)
    explain_numbers(window)


def protection_toggler(app: QObject) -> Callable[[], bool]:
    """The ProtectionController's send(): asks the app's current reader (replaced on reconnect) to
    toggle protection. It holds the app weakly: the controller is the app's, and a strong
    reference back would make a cycle (see the details pane's is_muted in MonitorApp._wire)."""
    ref = weakref.ref(app)

    def send() -> bool:
        monitor = ref()
        return monitor is not None and monitor.reader.send_command("toggle_protection")
    return send
