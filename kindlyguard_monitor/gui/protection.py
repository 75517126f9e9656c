"""Turning the Shield's protection off and on, and showing it everywhere while it is off.

Is the Shield protecting me right now? The answer is the Shield's own status
(`ShieldStatus.protection_enabled`), never what was asked: after a toggle the
request is shown as pending ("Turning protection off…") until a status
confirms it (the transport gives up after 5 s and says so: `on_error`).

- The one action (the tray menu, the window's File menu) says which way it
  goes: "Turn protection off…" / "Turn protection on"; greyed out with the
  reason while no Shield can be asked, or while a request is pending.
- Turning it off asks first: one stray click must not switch protection off.
  Turning it on does not ask.
- While the Shield says off: the badge reads "Protection OFF", the tray icon
  has its own state (a black shield with a yellow power sign), its tooltip
  says so (above a threat's red flash), and one notification says it (another when it is back on). A
  Shield that is already off when the monitor connects (someone else turned it
  off) is shown the same way.
- The fleet view (`kgmon --fleet`) watches many workstations and has no Shield to ask: the
  action says so ("Protection: switched on each workstation"), greyed out, its tooltip saying
  where it is switched instead (set_fleet).
"""

from __future__ import annotations

import logging
from typing import Callable

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QMessageBox

log = logging.getLogger(__name__)

TURN_OFF, TURN_ON, UNKNOWN = "Turn protection off…", "Turn protection on", "Turn protection off/on"
CONFIRM_TITLE = "Turn protection off?"
CONFIRM_TEXT = ("The Shield will stop blocking threats until you turn protection back on. "
                "Threats are still detected and shown here.")
CONFIRM_BUTTON = "&Turn protection off"
OFF_TITLE, OFF_BODY = ("Protection is off",
                       "The Shield is not blocking threats. Turn it back on from the KindlyGuard tray menu.")
ON_TITLE, ON_BODY = "Protection is back on", "The Shield is blocking threats again."
FLEET_TEXT = "Protection: switched on each workstation"
FLEET_TIP = ("This window watches the fleet. Each workstation's protection is turned off or on there, from "
             "its own KindlyGuard Monitor; it cannot be switched from here.")


class ProtectionController(QObject):
    def __init__(self, window, tray, notifier, send: Callable[[], bool],
                 confirm: Callable[[], bool] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.window, self.tray, self.notifier = window, tray, notifier
        self._send = send
        self._confirm = confirm  # None: _ask (not stored as self._ask: a bound method kept by its own
        # object is a reference cycle, freed only by the cyclic GC, on whatever thread runs it)
        self.enabled: bool | None = None  # what the Shield last said
        self.requested: bool | None = None  # asked for, not confirmed yet
        self.available = False
        self.reason = ""
        self.dialog: QMessageBox | None = None  # the confirmation while it is open
        self.fleet = False  # the fleet view: no Shield of ours, nothing to switch (set_fleet)
        self.action = tray.action_protection  # the tray menu's; the window's File menu shows it too
        tray.toggle_protection.connect(self.toggle)
        self._refresh()

    # -- what the user does

    @Slot()
    def toggle(self) -> bool:
        """The action was chosen: ask before turning off, then send. True when sent."""
        if self.fleet or not self.available or self.requested is not None:
            return False
        turning_off = self.enabled is not False  # unknown counts as on: ask first
        if turning_off and not (self._confirm or self._ask)():
            return False
        if not self._send():
            self.window.show_message("Could not reach the Shield to change protection.", 10000)
            return False
        self.requested = not turning_off
        self._refresh()
        return True

    def _ask(self) -> bool:
        box = QMessageBox(QMessageBox.Icon.Warning, CONFIRM_TITLE, CONFIRM_TEXT, QMessageBox.StandardButton.NoButton,
                          self.window if self.window.isVisible() else None)
        off = box.addButton(CONFIRM_BUTTON, QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)  # Enter keeps protection on
        box.setEscapeButton(cancel)
        off.setAccessibleName("Turn protection off")
        cancel.setAccessibleName("Cancel, keep protection on")
        self.dialog = box
        try:
            box.exec()
            return box.clickedButton() is off
        finally:
            self.dialog = None
            box.deleteLater()

    # -- what the Shield says

    def set_fleet(self, on: bool) -> None:
        """`kgmon --fleet`: protection is each workstation's, never switched from the fleet view."""
        self.fleet = bool(on)
        self._refresh()

    def set_available(self, available: bool, reason: str = "") -> None:
        self.available, self.reason = bool(available), reason
        self._refresh()

    @Slot(object)
    def on_status(self, status) -> None:
        """A ShieldStatus: protection_enabled, threats_blocked, requested."""
        was = self.enabled
        self.available, self.reason = True, ""  # a status came over the Shield's WebSocket: it can be asked
        self.enabled = status.protection_enabled
        self.requested = getattr(status, "requested", None)
        if self.enabled is not None and self.enabled != was:
            if self.enabled is False:
                log.warning("the Shield's protection is OFF")
                self.notifier.notify_now(OFF_TITLE, OFF_BODY, urgent=False)
            elif was is False:
                log.info("the Shield's protection is back on")
                self.notifier.notify_now(ON_TITLE, ON_BODY, urgent=False)
        self._refresh()

    @Slot(str)
    def on_error(self, message: str) -> None:
        """The transport gave up on a request (not confirmed in time) or the Shield refused it."""
        self.requested = None
        self.window.show_message(f"The Shield did not change protection: {message}", 15000)
        self._refresh()

    # -- showing it

    def _refresh(self) -> None:
        if self.fleet:
            self.tray.set_protection_action(FLEET_TEXT, False, FLEET_TIP)
            self.tray.set_protection_off(False)
            self.window.set_protection_off(False)
            return
        off = self.enabled is False
        if self.requested is not None:
            text = "Turning protection on… (waiting for the Shield)" if self.requested else \
                "Turning protection off… (waiting for the Shield)"
            enabled = False
        elif not self.available:
            text = (TURN_ON if off else TURN_OFF if self.enabled else UNKNOWN) + (
                f" ({self.reason})" if self.reason else "")
            enabled = False
        else:
            text = TURN_ON if off else TURN_OFF if self.enabled else UNKNOWN
            enabled = True
        self.tray.set_protection_action(text, enabled, self.reason if not self.available else "")
        self.tray.set_protection_off(off)
        self.window.set_protection_off(off)
