"""Plain words (issue 14 item 5): every number in the main window has a tooltip that says what it
counts, the Help page says what the monitor shows and what to do about a threat, every threat type
is explained. Offscreen, the real app wiring (MonitorApp) so the menu and F1 are the real ones."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel

from kindlyguard_monitor.gui import help as helptext
from kindlyguard_monitor.threats import THREAT_TYPES


def test_every_number_says_what_it_counts_and_f1_opens_help(qtbot, shown_app):
    monitor = shown_app
    w = monitor.window
    numbers = [label for label in w.findChildren(QLabel) if any(ch.isdigit() for ch in label.text())]
    numbers += list(w.counter_labels.values()) + [w.badge, w.latency_label]
    assert len(numbers) >= 10
    assert [lab.text() for lab in numbers if not lab.toolTip()] == []
    for name, label in w.counter_labels.items():
        assert len(label.toolTip()) > 30, name

    with qtbot.waitActive(w):
        w.activateWindow()
    w.table.setFocus()
    QTest.keyClick(w.table, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: monitor.help_dialog is not None and monitor.help_dialog.isVisible())
    page = monitor.help_dialog.browser.toPlainText()
    for words in ("What you see", "What to do about a threat", "Protection OFF", "Ctrl+F", "hxxp"):
        assert words in page, words
    assert [a.text() for a in w.menuBar().actions()] == ["&File", "&Help"]
    dialog = monitor.help_dialog
    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)
    QTest.keyClick(dialog.browser, Qt.Key.Key_Escape)  # Esc in the page closes it
    qtbot.waitUntil(lambda: not monitor.help_dialog.isVisible())


def test_every_threat_type_is_explained():
    assert set(THREAT_TYPES) <= set(helptext.TYPE_MEANING)
    assert all(len(text) > 30 and text.endswith(".") or text.endswith(")") for text in helptext.TYPE_MEANING.values())
