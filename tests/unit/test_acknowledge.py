"""Acknowledging threats in the window (issue 14 items 2 and 4), offscreen with real mouse and key
input: unseen rows are bold with a dot and say so to a screen reader; opening a row makes it seen;
"Mark all as seen" (its button, Ctrl+Shift+A) sees everything, in the title and the tray too;
rows restored from the history are dated, muted, and stay below this session's rows under sorting."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from kindlyguard_monitor.event import EventKey, threat_event
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.row_look import RESTORED_TIP, UNSEEN_MARK
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM
from kindlyguard_monitor.vocabulary import Transport

from test_feed_selection import click_header, click_row, selected_keys, shown
from test_main_window import add_batches, batch, ev

M = ThreatTableModel


def restored_events(seqs, severity=CRITICAL):
    """Threats as the history gives them back at start (an earlier day, another writer)."""
    return [threat_event(transport=Transport.HISTORY, generation=3, seq=s,
                         timestamp_unix_us=1_600_000_000_000_000 + s, threat_type=1, severity=severity,
                         blocked=True, source="old", details=f"old {s}", publish_mono_ns=None,
                         observe_mono_ns=None) for s in seqs]


def cell(w, key, column, role=Qt.ItemDataRole.DisplayRole):
    return w.model.data(w.model.index(w.model.row_for_key(key), column), role)


def test_unseen_rows_are_marked_and_opening_one_sees_it(win, qtbot):
    win.show_restored(restored_events([1, 2]), unseen=[EventKey(3, 2)], unseen_total=5)
    add_batches(win, [batch(ev(1, HIGH), ev(2, LOW), ev(3, MEDIUM))])
    assert win.feed.unseen == 8 and win.windowTitle() == "KindlyGuard Monitor — 8 unseen"
    assert win.unseen_label.text() == "8 unseen" and win.mark_seen_button.isEnabled()
    new, old_seen, old_unseen = EventKey(7, 2), EventKey(3, 1), EventKey(3, 2)
    # unseen: a dot before the time, bold, and a screen reader hears it (not colour alone)
    assert cell(win, new, M.TIME).startswith(UNSEEN_MARK)
    assert cell(win, new, M.DETAILS, Qt.ItemDataRole.FontRole).bold()
    assert cell(win, new, M.TIME, Qt.ItemDataRole.AccessibleTextRole).startswith("Unseen, ")
    assert cell(win, old_unseen, M.TIME).startswith(UNSEEN_MARK)
    assert not cell(win, old_seen, M.TIME).startswith(UNSEEN_MARK)
    assert not cell(win, old_seen, M.DETAILS, Qt.ItemDataRole.FontRole).bold()

    with qtbot.waitSignal(win.row_seen, timeout=2000) as opened:
        click_row(win, qtbot, new)
    assert opened.args == [new]
    assert not cell(win, new, M.TIME).startswith(UNSEEN_MARK)
    assert cell(win, new, M.DETAILS, Qt.ItemDataRole.FontRole) is None  # the table's own font again
    assert win.feed.unseen == 7 and win.windowTitle() == "KindlyGuard Monitor — 7 unseen"
    with qtbot.assertNotEmitted(win.row_seen):  # a seen row opened again: nothing to keep
        click_row(win, qtbot, old_seen)

    with qtbot.waitSignal(win.mark_all_seen_requested, timeout=2000):
        QTest.mouseClick(win.mark_seen_button, Qt.MouseButton.LeftButton)
    assert win.mark_all_seen() == 7
    assert win.windowTitle() == "KindlyGuard Monitor" and win.unseen_label.text() == "All seen"
    assert not win.mark_seen_button.isEnabled()
    assert not any(cell(win, r.key, M.TIME).startswith(UNSEEN_MARK) for r in shown(win))


@pytest.mark.parametrize("variant", [palette.LIGHT_PALETTE, palette.DARK_PALETTE], ids=["light", "dark"])
def test_restored_rows_are_dated_muted_and_stay_below_this_sessions_under_sorting(win, qtbot, variant):
    palette.set_current(variant)
    try:
        win.show_restored(restored_events(range(10, 14)))  # Critical, from an earlier day
        add_batches(win, [batch(ev(1, LOW), ev(2, HIGH), ev(3, MEDIUM))])
        old = EventKey(3, 12)
        assert win.counter_labels["restored"].text() == "Before this session: 4 (from the history)"
        assert win.counter_labels["total"].text() == "This session: 3 threats"
        # big numbers too: the window still fits its default 960 px, with room for a desktop's wider
        # font (the e2e test's DejaVu is ~8% wider than offscreen's; the counters row once took 924 here)
        win.set_counters(123_456, 1_234, 12)
        win.set_shield_status(True, 123_456)
        win.set_history_status("Kept in history: 123,456 threats, 12.3 MiB on disk")
        assert win.minimumSizeHint().width() <= 800, win.minimumSizeHint()
        assert cell(win, old, M.TIME).startswith("2020-09-")  # its date, not only the time
        assert cell(win, old, M.TIME, Qt.ItemDataRole.ToolTipRole).startswith(RESTORED_TIP)
        assert cell(win, old, M.DETAILS, Qt.ItemDataRole.ForegroundRole).name() == variant.mid  # muted
        assert cell(win, old, M.DETAILS, Qt.ItemDataRole.FontRole).italic()
        assert cell(win, EventKey(7, 1), M.DETAILS, Qt.ItemDataRole.ForegroundRole) is None
        assert palette.contrast(variant.mid, variant.base) >= palette.MIN_CONTRAST
        click_row(win, qtbot, old)
        for _ in range(2):  # by severity, both ways: this session's rows first, the restored ones below
            click_header(win, M.SEVERITY)
            transports = [r.transport for r in shown(win)]
            assert transports == [Transport.SHM] * 3 + [Transport.HISTORY] * 4
            assert selected_keys(win) == [old]  # the selection stays on its threat
        add_batches(win, [batch(ev(4, CRITICAL))])  # an arrival lands among this session's rows
        assert [r.transport for r in shown(win)][:4] == [Transport.SHM] * 4
        assert selected_keys(win) == [old]
    finally:
        palette.set_current(palette.LIGHT_PALETTE)


def test_ctrl_shift_a_marks_all_seen_in_the_window_and_the_tray(qtbot, shown_app):
    from kindlyguard_monitor.gui import app_tray

    monitor = shown_app
    w = monitor.window
    update = monitor.feed.take([batch(ev(1, CRITICAL), ev(2, HIGH))])
    w.show_update(update)
    app_tray.announce(update, monitor.feed, monitor.tray, monitor.notifier)
    assert monitor.tray.state == "threat" and monitor.tray.tooltip().startswith("KindlyGuard Monitor — 2 unseen")
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=2000)  # a window shortcut: for the active window
    w.table.setFocus()
    QTest.keyClick(w.table, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: monitor.feed.unseen == 0, timeout=2000)
    assert w.windowTitle() == "KindlyGuard Monitor"
    assert monitor.tray.state != "threat" and "nothing unseen" in monitor.tray.tooltip()
    assert w.action_mark_seen.shortcut().toString() == "Ctrl+Shift+A"
