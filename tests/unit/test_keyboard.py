"""The main window by keyboard alone, offscreen (issue 14 item 10): Tab reaches every control and
each has an accessible name; Ctrl+F, Esc, Ctrl+W, arrows and Enter in the feed. Real key events
(QTest), the real window; the end-to-end test repeats this on the desktop."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QTableView

from kindlyguard_monitor.gui import keyboard
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW
from test_main_window import add_batches, batch, ev


def walk_focus(window, presses: int = 60, key=Qt.Key.Key_Tab) -> list:
    """Press Tab (or Shift+Tab) until the focus comes back where it started; the widgets visited."""
    seen = []
    for _ in range(presses):
        QTest.keyClick(QApplication.focusWidget() or window, key)
        w = QApplication.focusWidget()
        if seen and w is seen[0]:
            return seen
        seen.append(w)
    raise AssertionError(f"Tab never came back round: {[type(w).__name__ for w in seen]}")


def test_tab_reaches_every_control_and_each_has_a_name(win, qtbot):
    keyboard.install_main_window(win)
    add_batches(win, [batch(ev(1, HIGH), ev(2, CRITICAL, source="mcp:x"), ev(3, LOW))])
    win.activateWindow()
    win.table.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is win.table)
    chain = walk_focus(win)
    names = [(type(w).__name__, w.accessibleName()) for w in chain]
    assert all(name for _, name in names), names
    for must in (win.search, win.severity_combo, win.type_combo, win.pause_button, win.table, win.details.text):
        assert must in chain, f"{must.accessibleName()} is not reachable by Tab: {names}"
    assert keyboard.unnamed(win) == []
    backwards = walk_focus(win, key=Qt.Key.Key_Backtab)
    assert set(backwards) == set(chain)


def test_ctrl_f_esc_arrows_enter(win, qtbot):
    keyboard.install_main_window(win)
    add_batches(win, [batch(*(ev(i, HIGH, details=f"threat {i}") for i in range(1, 6)))])
    win.activateWindow()
    win.table.setFocus()
    QTest.keyClick(win.table, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.focusWidget() is win.search
    QTest.keyClicks(win.search, "threat 3")
    qtbot.waitUntil(lambda: win.proxy.rowCount() == 1)
    QTest.keyClick(win.search, Qt.Key.Key_Escape)  # first Esc: clears the filter, the window stays
    assert win.search.text() == "" and win.isVisible()
    qtbot.waitUntil(lambda: win.proxy.rowCount() == 5)

    win.table.setFocus()
    QTest.keyClick(win.table, Qt.Key.Key_Home, Qt.KeyboardModifier.ControlModifier)  # the top row
    QTest.keyClick(win.table, Qt.Key.Key_Down)
    QTest.keyClick(win.table, Qt.Key.Key_Down)
    assert win.table.currentIndex().row() == 2
    third = win.proxy.index(2, 4).data()
    assert third.startswith("threat ") and third in win.details.plain_text()  # the details follow the arrows
    QTest.keyClick(win.table, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is win.details.text and win.tabs.currentWidget() is win.details

    QTest.keyClick(win.details.text, Qt.Key.Key_Escape)  # Esc elsewhere closes the window
    assert not win.isVisible()
    win.show()
    with qtbot.waitActive(win):
        win.activateWindow()
    win.table.setFocus()
    QTest.keyClick(win.table, Qt.Key.Key_W, Qt.KeyboardModifier.ControlModifier)
    assert not win.isVisible()


def test_tables_and_read_only_text_give_tab_back(win):
    keyboard.install_main_window(win)
    assert not any(v.tabKeyNavigation() for v in win.findChildren(QTableView))
    assert win.details.text.tabChangesFocus()
