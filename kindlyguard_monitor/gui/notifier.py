"""Showing what the NotificationPolicy decides, and opening the event on click.

The policy (pure Python) says what and when; this object owns the timer and
picks the display backend, first that can take it:

1. an injected `show(notification) -> bool | None` callable (tests); None
   counts as delivered;
2. the desktop's notification server (`DesktopNotifications`: a real
   org.freedesktop.Notifications.Notify call on Linux, whatever the tray);
3. the tray icon's `showMessage()` when a visible tray icon exists (macOS,
   Windows, a Linux session without a notification server: Qt draws a balloon
   there). Not tested on macOS and Windows;
4. otherwise the notification is counted in `undelivered` and dropped (the
   event is still in the window's feed).

Never steals focus: nothing here raises or activates a window. Text is plain
(the policy already made attacker text visible, defanged and bounded).
Critical urgency (a notification that stays until dismissed) only for a
Critical threat the Shield did not block (`Notification.urgent`).

The desktop's do-not-disturb, where the notification server tells it
(`DesktopNotifications.inhibited_changed`), holds notifications in the policy;
they come out as one when it ends.
"""

from __future__ import annotations

import logging
import math
from typing import Callable

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QSystemTrayIcon

from kindlyguard_monitor.gui.notify_policy import Notification, NotificationPolicy

log = logging.getLogger(__name__)

MESSAGE_MS = 8000  # how long a tray balloon stays up


class Notifier(QObject):
    open_event = Signal(object)  # the key of the event a clicked notification names

    def __init__(
        self,
        tray=None,
        policy: NotificationPolicy | None = None,
        show: Callable[[Notification], bool | None] | None = None,
        desktop=None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tray = tray  # a TrayController, or None
        self.desktop = desktop  # a DesktopNotifications, or None
        self.policy = policy if policy is not None else NotificationPolicy()
        self._show = show
        self.shown_count = 0
        self.undelivered = 0
        self.last_notification: Notification | None = None
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)  # a coarse timer may fire early
        self.timer.timeout.connect(self.deliver_due)
        if tray is not None:
            tray.message_clicked.connect(self.on_message_clicked)
        if desktop is not None:
            desktop.clicked.connect(self.open_event)
            desktop.not_sent.connect(self._desktop_failed)
            desktop.inhibited_changed.connect(self.set_inhibited)

    def offer(self, events, key_of=None) -> None:
        """Give threat events to the policy and arm the timer for what is due;
        `key_of(event)` names the table row a click on the notification opens."""
        self.policy.offer(events, key_of=key_of)
        self._arm()

    def _arm(self) -> None:
        due_in = self.policy.next_due_in()
        if due_in is None:
            self.timer.stop()
            return
        msecs = max(0, math.ceil(due_in * 1000))
        # An armed timer that fires sooner stays armed: it re-arms after delivering.
        if not self.timer.isActive() or self.timer.remainingTime() > msecs:
            self.timer.start(msecs)

    @Slot()
    def deliver_due(self) -> None:
        """Show what the policy says is due now (the timer's slot)."""
        note = self.policy.due()
        if note is not None:
            self._deliver(note)
        self._arm()

    def _deliver(self, note: Notification) -> None:
        self.last_notification = note
        if self._show is not None:
            delivered = self._show(note)
            delivered = True if delivered is None else bool(delivered)
        elif self.desktop is not None and self.desktop.notify(note.title, note.body, note.urgent, note.key):
            delivered = True
        else:
            delivered = self._show_in_tray(note.title, note.body, note.urgent)
        if delivered:
            self.shown_count += 1
        else:
            self.undelivered += 1

    def _show_in_tray(self, title: str, body: str, critical: bool) -> bool:
        if self.tray is None:
            return False
        kind = QSystemTrayIcon.MessageIcon.Critical if critical else QSystemTrayIcon.MessageIcon.Warning
        return self.tray.show_message(title, body, kind, MESSAGE_MS)

    @Slot(str, str, bool, object)
    def _desktop_failed(self, title: str, body: str, critical: bool, key) -> None:
        """The notification server did not take one we counted as shown: use the tray."""
        if not self._show_in_tray(title, body, critical):
            self.shown_count -= 1
            self.undelivered += 1

    def notify_now(self, title: str, body: str, urgent: bool = False, key=None) -> bool:
        """A notification about the app's own state (protection off), outside the threat
        policy's interval; held back only by do-not-disturb. Our own words only: plain text."""
        if self.policy.inhibited:
            return False
        self._deliver(Notification(title, body, 0, 0, key, (), urgent=urgent))
        return True

    @Slot(bool)
    def set_inhibited(self, inhibited: bool) -> None:
        """The desktop's do-not-disturb went on or off."""
        self.policy.set_inhibited(inhibited)
        self._arm()

    @Slot()
    def on_message_clicked(self) -> None:
        """The last notification was clicked: open the event it names."""
        if self.last_notification is not None:
            self.open_event.emit(self.last_notification.key)
