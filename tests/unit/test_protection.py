"""Turning protection off is never one stray click, and while the Shield says it is off the badge,
the tray icon and a notification say so (issue 14 item 3). Offscreen, with the real window, tray
controller and notifier; the confirmation is the real dialog, answered with real key presses."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.notifier import Notifier
from kindlyguard_monitor.gui.protection import CONFIRM_TITLE, ProtectionController
from kindlyguard_monitor.gui.tray import TrayController
from kindlyguard_monitor.transport.items import ShieldStatus


def make(win, sent, shown):
    tray = TrayController()
    notifier = Notifier(tray, show=shown.append)
    return tray, ProtectionController(win, tray, notifier, send=lambda: sent.append("toggle") or True)


def answer_confirmation(key, modifier=Qt.KeyboardModifier.NoModifier, seen=None):
    """When the confirmation is up, press `key` in it (as a person would)."""
    def press():
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, press)
            return
        if seen is not None and not seen:
            seen.append((box.windowTitle(), box.text()))
        if QApplication.activeWindow() is not box:  # a mnemonic (Alt+T) needs the dialog active
            box.activateWindow()
            QTimer.singleShot(20, press)
            return
        QTest.keyClick(box, key, modifier)
    QTimer.singleShot(0, press)


def test_turning_off_asks_first_and_shows_off_everywhere_until_confirmed_on(win, qtbot):
    sent, shown = [], []
    tray, protection = make(win, sent, shown)
    action = tray.action_protection
    assert action.text() == "Turn protection off/on" and not action.isEnabled()  # nothing known yet
    protection.set_available(True)
    protection.on_status(ShieldStatus(True, 3))
    assert action.text() == "Turn protection off…" and action.isEnabled()

    # Esc (and Enter: Cancel is the default) in the confirmation: nothing sent.
    for key in (Qt.Key.Key_Escape, Qt.Key.Key_Return):
        seen = []
        answer_confirmation(key, seen=seen)
        action.trigger()
        assert seen and seen[0][0] == CONFIRM_TITLE and "stop blocking" in seen[0][1]
        assert sent == [] and action.text() == "Turn protection off…"

    # Alt+T: "Turn protection off". Sent, and shown as asked, not as done.
    answer_confirmation(Qt.Key.Key_T, Qt.KeyboardModifier.AltModifier)
    action.trigger()
    assert sent == ["toggle"]
    assert action.text() == "Turning protection off… (waiting for the Shield)" and not action.isEnabled()
    assert "OFF" not in win.badge.text() and tray.state != "protection_off"
    action.trigger()  # a second click while waiting does nothing
    assert sent == ["toggle"]

    # The Shield confirms: the badge, the tray icon and its tooltip, one notification.
    win.set_transport("shm", "ring healthy")
    protection.on_status(ShieldStatus(False, 3))
    assert win.badge.text() == "Protection OFF · Shared memory"
    assert palette.current().badge["protection_off"][0] in win.badge.styleSheet()
    assert tray.state == "protection_off" and "Protection is OFF" in tray.tooltip()
    assert [n.title for n in shown] == ["Protection is off"]
    tray.set_state("protected")  # a transport change keeps the off icon, and so does a threat
    tray.set_state("threat")
    assert tray.state == "protection_off"
    win.set_transport("websocket", "ring gone")
    assert win.badge.text() == "Protection OFF · WebSocket"
    protection.on_status(ShieldStatus(False, 4))  # a repeated status: no second notification
    assert len(shown) == 1

    # Turning it on does not ask.
    assert action.text() == "Turn protection on"
    action.trigger()
    assert sent == ["toggle", "toggle"] and QApplication.activeModalWidget() is None
    assert action.text() == "Turning protection on… (waiting for the Shield)"
    assert win.badge.text().startswith("Protection OFF")  # not until the Shield says so
    protection.on_status(ShieldStatus(True, 4))
    assert win.badge.text() == "WebSocket" and tray.state == "threat"  # the flash, then "protected"
    assert [n.title for n in shown] == ["Protection is off", "Protection is back on"]


def test_a_shield_that_is_off_at_connect_is_shown_off(win):
    sent, shown = [], []
    tray, protection = make(win, sent, shown)
    protection.on_status(ShieldStatus(False, 0))
    assert win.badge.text().startswith("Protection OFF") and tray.state == "protection_off"
    assert [n.title for n in shown] == ["Protection is off"]


def test_a_request_the_shield_never_confirms_is_given_up_and_said(win):
    sent, shown = [], []
    tray, protection = make(win, sent, shown)
    protection.set_available(True)
    protection.on_status(ShieldStatus(False, 0))
    assert protection.toggle()  # turning on: no question
    protection.on_error("the Shield did not confirm protection on within 5 s")
    assert tray.action_protection.text() == "Turn protection on" and tray.action_protection.isEnabled()
    assert "did not confirm" in win.statusBar().currentMessage()


def test_unavailable_says_why(win):
    sent, shown = [], []
    tray, protection = make(win, sent, shown)
    protection.on_status(ShieldStatus(True, 0))
    protection.set_available(False, "the Shield's WebSocket is not reachable")
    assert tray.action_protection.text() == "Turn protection off… (the Shield's WebSocket is not reachable)"
    assert not tray.action_protection.isEnabled() and not protection.toggle() and sent == []


def test_the_fleet_view_says_protection_is_switched_on_each_workstation(win, qtbot):
    """`kgmon --fleet` has no Shield to ask: no toggle that cannot work, and no talk of a WebSocket."""
    from kindlyguard_monitor.gui.protection import FLEET_TEXT, FLEET_TIP

    sent, shown = [], []
    tray, protection = make(win, sent, shown)
    protection.set_fleet(True)
    action = tray.action_protection
    assert action.text() == FLEET_TEXT == "Protection: switched on each workstation"
    assert not action.isEnabled() and action.toolTip() == FLEET_TIP and "workstation" in FLEET_TIP
    assert tray.menu.toolTipsVisible()  # the greyed-out action's reason can be read
    # The app says, at every transport change, that no Shield answers: the fleet text stays.
    protection.set_available(False, "the Shield's WebSocket is not reachable")
    assert action.text() == FLEET_TEXT and not action.isEnabled()
    assert protection.toggle() is False and sent == []
    action.trigger()  # even if something triggers it: nothing sent, nothing asked
    assert sent == [] and protection.dialog is None
