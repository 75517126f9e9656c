"""The selected threat stays selected (by its EventKey) across filtering, sorting
and arrivals, or the selection is cleared: never swapped for another threat.
Driven with real key and mouse input (QTest) on the offscreen platform."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from kindlyguard_monitor.event import EventKey
from kindlyguard_monitor.gui.main_window import MainWindow
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM

from test_main_window import add_batches, batch, ev

RowRole = ThreatTableModel.RowRole


def details_key(w):
    return None if w.details.row is None else w.details.row.key


def selected_keys(w):
    return [i.data(RowRole).key for i in w.table.selectionModel().selectedRows()]


def click_row(w, qtbot, key):
    index = w.table.index_for_key(key)
    assert index.isValid()
    w.table.scrollTo(index)
    rect = w.table.visualRect(index.siblingAtColumn(ThreatTableModel.SEVERITY))
    QTest.mouseClick(w.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    qtbot.waitUntil(lambda: details_key(w) == key, timeout=2000)


def type_filter(w, qtbot, text):
    w.search.setFocus()
    QTest.keyClick(w.search, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClick(w.search, Qt.Key.Key_Backspace)
    if text:
        QTest.keyClicks(w.search, text)
    qtbot.waitUntil(lambda: w.proxy.text() == text.casefold(), timeout=2000)


def assert_same_or_cleared(w, key):
    shown = details_key(w)
    assert shown in (key, None), f"details swapped from {key} to {shown}"
    assert selected_keys(w) in ([key], []), f"selection swapped to {selected_keys(w)}"
    assert (shown is None) == (selected_keys(w) == [])  # the pane shows the selection, or nothing


def many(start, n, **kw):
    return [ev(s, severity=(LOW, MEDIUM, HIGH, CRITICAL)[s % 4], source=f"host-{s % 5}",
               details=f"payload {s}", **kw) for s in range(start, start + n)]


def test_filter_that_keeps_the_row_keeps_it_and_one_that_removes_it_clears(win, qtbot):
    add_batches(win, [batch(*many(0, 300))])
    key = EventKey(7, 297)
    click_row(win, qtbot, key)
    type_filter(win, qtbot, "host-2")  # 297 % 5 == 2: kept
    assert details_key(win) == key and selected_keys(win) == [key]
    type_filter(win, qtbot, "host-3")  # removed: cleared, not swapped
    assert details_key(win) is None and selected_keys(win) == []
    type_filter(win, qtbot, "")  # back: still nothing selected, never another threat
    assert_same_or_cleared(win, key)


def test_severity_and_type_filters_never_swap(win, qtbot):
    add_batches(win, [batch(*many(0, 200))])
    key = EventKey(7, 117)  # 117 % 4 == 1: Medium
    click_row(win, qtbot, key)
    win.severity_combo.setCurrentIndex(2)  # ≥ High: hides it
    assert details_key(win) is None and selected_keys(win) == []
    win.severity_combo.setCurrentIndex(0)
    click_row(win, qtbot, key)
    win.severity_combo.setCurrentIndex(1)  # ≥ Medium: keeps it
    assert details_key(win) == key and selected_keys(win) == [key]


def test_arrivals_and_the_row_budget_never_swap(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.set_feed_size(50)
    w.show()
    qtbot.waitExposed(w)
    add_batches(w, [batch(*many(0, 50))])
    key = EventKey(7, 40)  # row 9 of 50
    click_row(w, qtbot, key)
    for start in range(50, 80, 10):  # arrivals: the row moves down (old rows dropped), stays selected
        add_batches(w, [batch(*many(start, 10))])
        assert details_key(w) == key and selected_keys(w) == [key]
    add_batches(w, [batch(*many(80, 45))])  # the budget drops it
    assert details_key(w) is None and selected_keys(w) == []
    click_row(w, qtbot, EventKey(7, 120))
    add_batches(w, [batch(*many(125, 500))])  # a flood bigger than the table
    assert details_key(w) is None and selected_keys(w) == []


def test_arrivals_while_filtered_and_paused_keep_the_selection(win, qtbot):
    add_batches(win, [batch(*many(0, 100))])
    key = EventKey(7, 42)
    click_row(win, qtbot, key)
    type_filter(win, qtbot, "host-2")
    QTest.mouseClick(win.pause_button, Qt.MouseButton.LeftButton)
    for start in range(100, 400, 50):
        add_batches(win, [batch(*many(start, 50))])
        assert details_key(win) == key and selected_keys(win) == [key]


def test_sorting_by_a_column_keeps_the_selection(win, qtbot):
    add_batches(win, [batch(*many(0, 120))])
    key = EventKey(7, 33)
    click_row(win, qtbot, key)
    header = win.table.horizontalHeader()
    before = [r.key for r in shown(win)]
    for column in (ThreatTableModel.SEVERITY, ThreatTableModel.SOURCE, ThreatTableModel.SEVERITY,
                   ThreatTableModel.TIME):
        click_header(win, column)
        assert header.sortIndicatorSection() == column
        assert details_key(win) == key and selected_keys(win) == [key]
    assert [r.key for r in shown(win)] != before  # it did sort
    add_batches(win, [batch(*many(120, 30))])  # arrivals into a sorted table
    assert details_key(win) == key and selected_keys(win) == [key]


def test_keyboard_moves_the_selection_and_the_pane_follows(win, qtbot):
    add_batches(win, [batch(*many(0, 20))])
    click_row(win, qtbot, EventKey(7, 19))
    QTest.keyClick(win.table, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: details_key(win) == EventKey(7, 18), timeout=2000)
    assert selected_keys(win) == [EventKey(7, 18)]


# ---- sorting and the blocked filter (issue 14 item 8)

def click_header(w, column):
    header = w.table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     header.rect().center().__class__(x, header.height() // 2))


def shown(w):
    return [w.proxy.index(r, 0).data(RowRole) for r in range(w.proxy.rowCount())]


def test_columns_sort_numerically_and_a_third_click_restores_the_feed_order(win):
    # severities 4, 1, 10 (out of range: Medium), 3; times that sort differently as text
    events = [ev(1, severity=CRITICAL), ev(2, severity=LOW), ev(3, severity=10), ev(4, severity=HIGH)]
    events[1]["timestamp_unix_us"] = 9_000_000_000_000_000  # far later: 9 > 1 as numbers, not text
    events[2]["timestamp_unix_us"] = 10_000_000_000_000_000
    add_batches(win, [batch(*events)])
    assert [r.seq for r in shown(win)] == [4, 3, 2, 1]  # the feed's order at start
    click_header(win, ThreatTableModel.SEVERITY)
    order = [r.seq for r in shown(win)]
    click_header(win, ThreatTableModel.SEVERITY)
    other = [r.seq for r in shown(win)]
    assert sorted([order, other]) == [[1, 4, 3, 2], [2, 3, 4, 1]]  # Low < Medium(10) < High < Critical
    click_header(win, ThreatTableModel.SEVERITY)
    assert [r.seq for r in shown(win)] == [4, 3, 2, 1]
    click_header(win, ThreatTableModel.TIME)
    times = [r.seq for r in shown(win)]
    assert times in ([1, 4, 2, 3], [3, 2, 4, 1])
    add_batches(win, [batch(ev(5, severity=LOW))])  # an arrival lands in sorted place
    assert len(shown(win)) == 5 and [r.seq for r in shown(win)] != [5, 4, 3, 2, 1]


def test_blocked_filter_like_history(win, qtbot):
    add_batches(win, [batch(ev(1, blocked=True), ev(2), ev(3, blocked=True))])
    assert [win.blocked_combo.itemText(i) for i in range(3)] == ["Blocked or not", "Blocked", "Not blocked"]
    win.blocked_combo.setCurrentIndex(1)
    assert [r.seq for r in shown(win)] == [3, 1]
    win.blocked_combo.setCurrentIndex(2)
    assert [r.seq for r in shown(win)] == [2]
    win.clear_filters()
    assert len(shown(win)) == 3 and win.blocked_combo.currentIndex() == 0


def test_a_sorted_model_puts_arrivals_in_place_and_drops_the_oldest(qapp):
    from kindlyguard_monitor.event import threat_event
    from kindlyguard_monitor.vocabulary import Transport

    def t(seq, severity):
        return threat_event(transport=Transport.SHM, generation=1, seq=seq, timestamp_unix_us=seq, threat_type=1,
                            severity=severity, blocked=False, source="s", details="d")

    m = ThreatTableModel(max_rows=5)
    m.add_events([t(1, HIGH), t(2, LOW), t(3, CRITICAL)])
    m.sort(ThreatTableModel.SEVERITY, Qt.SortOrder.DescendingOrder)
    seqs = lambda: [m.row_at(r).seq for r in range(m.rowCount())]  # noqa: E731
    assert seqs() == [3, 1, 2]
    m.add_events([t(4, HIGH), t(5, LOW)])
    assert seqs() == [3, 4, 1, 5, 2]  # newest first among equals
    assert [m.row_for_key(m.row_at(r).key) for r in range(5)] == list(range(5))
    m.add_events([t(6, MEDIUM), t(7, CRITICAL)])  # over the budget: the two oldest (1, 2) go
    assert seqs() == [7, 3, 4, 6, 5]
    m.sort(-1)  # the feed's order again
    assert seqs() == [7, 6, 5, 4, 3]
    m.add_events([t(8, LOW)])
    assert seqs() == [8, 7, 6, 5, 4] and m.row_for_key(m.row_at(4).key) == 4
