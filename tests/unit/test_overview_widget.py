"""The Overview tab draws the overview's numbers, redraws only when shown and changed,
and its sources, types and blocked counts filter the feed when clicked (QTest input)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, THREAT_TYPE_NUMBER

from test_main_window import add_batches, batch

MINUTE_US = 60_000_000


def live(seq, severity=LOW, source="a", threat_type=1, blocked=False):
    return dict(seq=seq, timestamp_unix_us=int(time.time() * 1_000_000), threat_type=threat_type, severity=severity, blocked=blocked,
                source=source, details=f"d{seq}", publish_mono_ns=0, observe_mono_ns=0)


def shown_seqs(w):
    return sorted(w.proxy.index(r, 0).data(w.model.RowRole).seq for r in range(w.proxy.rowCount()))


def click_item(lst, row):
    rect = lst.visualItemRect(lst.item(row))
    QTest.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def test_overview_counts_draws_and_filters_the_feed_on_click(win, qtbot):
    add_batches(win, [batch(live(1, CRITICAL, "mcp:evil\u202e", 3, True), live(2, HIGH, "mcp:evil\u202e", 3, True),
                            live(3, LOW, "other", 5), live(4, LOW, "mcp:evil\u202e", 3))])
    later = int(time.time() * 1_000_000) + 2 * MINUTE_US  # fixed: the minute cannot turn under the test
    tab = win.overview_tab
    assert not tab.isVisible() and tab.redraws == 0  # hidden: nothing drawn
    win.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.redraws == 1, timeout=2000)
    drawn = tab.redraws
    assert tab.refresh(later) and tab.redraws == drawn + 1  # the minute moved: redrawn
    assert sum(b[0] for b in tab.hour_chart.span.bins[-4:]) == 2  # two Low, two or three minutes ago
    assert [sum(b[i] for b in tab.hour_chart.span.bins) for i in range(4)] == [2, 0, 1, 1]
    assert tab.blocked_button.text() == "2 blocked" and tab.allowed_button.text() == "2 not blocked"
    assert tab.sources.item(0).text().split() == ["3", "mcp:evil⟨U+202E⟩"]
    assert tab.types.item(0).text().split()[0] == "3"
    assert not tab.refresh(later)  # nothing changed: no redraw
    assert not tab.hour_chart.grab().isNull()

    click_item(tab.sources, 0)
    assert shown_seqs(win) == [1, 2, 4]
    win.clear_filters()
    click_item(tab.types, 1)  # type 5, one threat
    assert win.type_combo.currentData() == 5 and shown_seqs(win) == [3]
    win.clear_filters()
    QTest.mouseClick(tab.allowed_button, Qt.MouseButton.LeftButton)
    assert win.blocked_combo.currentData() is False and shown_seqs(win) == [3, 4]
    QTest.mouseClick(tab.blocked_button, Qt.MouseButton.LeftButton)
    assert win.blocked_combo.currentData() is True and shown_seqs(win) == [1, 2]

    add_batches(win, [batch(live(5, CRITICAL, "new", THREAT_TYPE_NUMBER["PathTraversal"]))])
    tab.refresh(later)  # (the once-a-second timer may have drawn the real minute meanwhile)
    drawn = tab.redraws
    add_batches(win, [batch(live(6, CRITICAL, "newer"))])
    assert tab.refresh(later) and tab.redraws == drawn + 1  # the numbers moved: one redraw
    win.tabs.setCurrentWidget(win.details)
    add_batches(win, [batch(live(7))])
    assert not tab.refresh(later) and tab.redraws == drawn + 1  # hidden: no redraw


def test_restored_threats_of_the_last_day_count(win):
    from kindlyguard_monitor.event import threat_event
    from kindlyguard_monitor.vocabulary import Transport

    old = [threat_event(transport=Transport.HISTORY, generation=3, seq=i, timestamp_unix_us=int(time.time() * 1_000_000) - 7200_000_000,
                        threat_type=1, severity=HIGH, blocked=True, source="s", details="d") for i in range(3)]
    win.show_restored(old)
    assert win.overview.span(24 * 60, 10).blocked == 3 and win.overview.span(60).total == 0
