"""The tray and the notifications in the app: built (the desktop's own
notifications where the desktop has them), connected to the app's @Slot
methods, and told the news the feed picked. Functions only: nothing here keeps
a reference to the app (gui/app.py's MonitorApp), so nothing makes a cycle with it."""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

from PySide6.QtCore import QObject

from kindlyguard_monitor.feed import Feed, Update
from kindlyguard_monitor.gui import desktop_notifications
from kindlyguard_monitor.gui.notifier import Notifier
from kindlyguard_monitor.gui.resources import icon_path
from kindlyguard_monitor.gui.tray import TrayController
from kindlyguard_monitor.threats import CRITICAL, HIGH
from kindlyguard_monitor.vocabulary import Transport

_SEVERITY = attrgetter("severity")
TRAY_STATE = {Transport.SHM: "protected", Transport.WEBSOCKET: "degraded", Transport.DISCONNECTED: "disconnected",
              Transport.FLEET: "protected"}


def build_notifications() -> tuple[TrayController, desktop_notifications.DesktopNotifications | None, Notifier]:
    """The tray, the desktop's notifications (None where it has none) and the notifier using both."""
    tray = TrayController()
    desktop = (desktop_notifications.DesktopNotifications(icon_path=_icon_file("kindlyguard"))
               if desktop_notifications.supported() else None)
    return tray, desktop, Notifier(tray, desktop=desktop)


def connect_tray(app: QObject) -> None:
    """The tray's menu and state signals, to the app's slots."""
    t = app.tray
    t.toggle_window.connect(app.toggle_window)
    t.pause_notifications.connect(app._pause_notifications)
    t.resume_notifications.connect(app._resume_notifications)
    t.toggle_demo.connect(app.toggle_demo)
    t.quit_requested.connect(app.quit)
    t.settings_requested.connect(app.open_settings)
    t.history_requested.connect(app.open_history)
    t.mark_all_seen.connect(app.mark_all_seen)
    t.tray_missing.connect(app._on_tray_missing)
    t.tray_appeared.connect(app._on_tray_appeared)


def announce(update: Update, feed: Feed, tray: TrayController, notifier: Notifier) -> None:
    """The feed's news to the notifier, and its totals and unseen count to the tray; the tray's
    icon turns to the alert for threats worth a notification only, until everything is seen."""
    # One offer for the whole update (a flood's slice is many batches); each event's key
    # names the row a click on the notification opens.
    totals = feed.totals
    events = list(chain.from_iterable(b.events for b in update.news))
    notifier.offer(events)
    tray.set_counts(totals["total"], totals["blocked"], totals[CRITICAL], totals[HIGH])
    tray.set_unseen(feed.unseen)
    if feed.unseen and max(map(_SEVERITY, events), default=0) >= notifier.policy.threshold:
        tray.set_state("threat")


def tray_state(transport: str) -> str:
    return TRAY_STATE.get(transport, "disconnected")


def _icon_file(name: str) -> str:
    try:
        return str(icon_path(name))
    except FileNotFoundError:
        return ""
