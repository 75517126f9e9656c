"""The feed gets the room (issue 14 item 7): the empty details pane stays small, columns
fit their content, details wrap instead of being cut, "7 of 265" when filtered, and the
History window shows Type, Source and Blocked whole without scrolling."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from kindlyguard_monitor.event import EventKey
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.threats import SEVERITIES, THREAT_TYPES

from test_feed_selection import click_row, details_key, many, type_filter
from test_main_window import add_batches, batch, ev

M = ThreatTableModel


def visible_rows(w):
    return w.table.viewport().height() // w.table.rowHeight(0)


def test_the_feed_gets_the_room_until_a_threat_is_selected(win, qtbot):
    add_batches(win, [batch(*many(0, 100))])
    assert win.tabs.height() <= win.compact_tabs_height() + 8
    assert win.table.height() >= 3 * win.tabs.height()
    assert visible_rows(win) >= 16  # at 960×640 (was 11)
    click_row(win, qtbot, EventKey(7, 99))
    qtbot.waitUntil(lambda: win.details.text.height() >= 6 * win.fontMetrics().height(), timeout=2000)
    assert win.table.height() > win.tabs.height()  # the feed keeps the larger part
    type_filter(win, qtbot, "nothing matches this")  # the selection is gone: small again
    assert details_key(win) is None
    qtbot.waitUntil(lambda: win.tabs.height() <= win.compact_tabs_height() + 8, timeout=2000)
    win.tabs.setCurrentWidget(win.overview_tab)  # the overview needs room too
    qtbot.waitUntil(lambda: win.tabs.height() > win.compact_tabs_height() + 8, timeout=2000)


def test_a_dragged_splitter_is_left_as_the_user_set_it(win, qtbot):
    add_batches(win, [batch(*many(0, 10))])
    total = sum(win.splitter.sizes())
    win.splitter.moveSplitter(total // 2, 1)
    sizes = win.splitter.sizes()
    click_row(win, qtbot, EventKey(7, 3))
    assert win.splitter.sizes() == sizes


def fits(table, column, texts, fm=None):
    fm = fm or table.fontMetrics()
    return table.columnWidth(column) >= max(fm.horizontalAdvance(t) for t in texts) + 8


def test_columns_fit_their_content_and_blocked_is_in_view(win):
    t = win.table
    head = t.horizontalHeader().fontMetrics()
    assert fits(t, M.TYPE, THREAT_TYPES) and fits(t, M.SEVERITY, [s for s in SEVERITIES if s])
    assert fits(t, M.TIME, ["23:59:59.999"]) and fits(t, M.BLOCKED, ["Blocked"], head)
    assert fits(t, M.SOURCE, ["mcp:tools/call:shell.exec"])
    x = t.horizontalHeader()
    assert x.sectionViewportPosition(M.BLOCKED) + x.sectionSize(M.BLOCKED) <= t.viewport().width()


def test_details_wrap_and_are_never_cut(win, qtbot):
    long_token = "A" * 3000  # no space to break at
    add_batches(win, [batch(ev(1, details=f"start {long_token} end", source="s" * 400))])
    click_row(win, qtbot, EventKey(7, 1))
    text = win.details.plain_text()
    assert long_token in text and text.endswith("end") and "…" not in text
    assert not win.details.text.horizontalScrollBar().isVisible()
    assert win.details.text.document().lineCount() >= 1
    assert win.details.text.document().documentLayout().documentSize().width() <= win.details.text.viewport().width() + 1


def test_match_count_when_filtered(win, qtbot):
    add_batches(win, [batch(*many(0, 265))])
    assert win.match_label.text() == ""
    type_filter(win, qtbot, "payload 26")  # 26, 260..264
    assert win.match_label.text() == "6 of 265"
    add_batches(win, [batch(ev(300, details="payload 26 again"), ev(301))])
    assert win.match_label.text() == "7 of 267"
    win.blocked_combo.setCurrentIndex(1)
    assert win.match_label.text() == "0 of 267"
    win.clear_filters()
    assert win.match_label.text() == ""


def test_history_window_shows_type_source_and_blocked_whole(qtbot, tmp_path):
    from kindlyguard_monitor.gui.history_window import HistoryWindow, local_date_time

    w = HistoryWindow(tmp_path / "h.sqlite3")
    qtbot.addWidget(w)
    try:
        w.show()
        qtbot.waitExposed(w)
        t = w.table
        assert fits(t, M.TYPE, THREAT_TYPES) and fits(t, M.TIME, [local_date_time(0)])
        assert fits(t, M.SOURCE, ["mcp:tools/call:shell.exec"])
        x = t.horizontalHeader()
        assert x.sectionViewportPosition(M.BLOCKED) + x.sectionSize(M.BLOCKED) <= t.viewport().width()
    finally:
        w.close_worker()  # its query thread ends before the window is deleted
