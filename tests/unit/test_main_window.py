"""MainWindow, DetailsPane and LatencyHistogram on Qt's offscreen platform."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from kindlyguard_monitor import _ring
from kindlyguard_monitor.gui.details_pane import DetailsPane
from kindlyguard_monitor.gui.histogram_widget import LatencyHistogram, format_ns
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.main_window import MainWindow
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, THREAT_TYPE_NUMBER
from kindlyguard_monitor.event import EventKey, threat_event
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import Transport

RowRole = ThreatTableModel.RowRole


def ev(seq, severity=MEDIUM, threat_type=1, blocked=False, source="src", details="details") -> dict:
    return dict(seq=seq, timestamp_unix_us=1_700_000_000_000_000 + seq, threat_type=threat_type, severity=severity,
                blocked=blocked, source=source, details=details, publish_mono_ns=0, observe_mono_ns=0)


def batch(*events, generation=7, transport="shm"):
    """Events as a transport delivers them: of this generation, each with its key."""
    return Batch(transport, generation,
                 [threat_event(transport=Transport(transport), generation=generation, **e) for e in events])


def add_batches(w, batches):
    """Deliver batches as the app does: the feed decides what is news, the window shows it."""
    update = w.feed.take(batches)
    w.show_update(update)
    return update.news


def shown_rows(w):
    proxy = w.proxy
    return [proxy.index(r, 0).data(RowRole) for r in range(proxy.rowCount())]


def test_builds_and_shows(win):
    assert win.isVisible()
    assert win.table.model() is win.proxy
    assert win.status_label.text() == "KindlyGuard (disconnected)"


def test_add_batches_newest_first_and_counters(win):
    add_batches(win, [batch(ev(1, LOW), ev(2, HIGH, blocked=True)),
                     batch(ev(3, CRITICAL, blocked=True), ev(4, MEDIUM))])
    assert [r.seq for r in shown_rows(win)] == [4, 3, 2, 1]
    assert shown_rows(win)[0].key == EventKey(7, 4)
    labels = {k: v.text() for k, v in win.counter_labels.items()}
    assert labels["total"] == "This session: 4 threats"
    assert labels["blocked"] == "2 blocked"
    assert labels["Low"] == "Low: 1"
    assert labels["Medium"] == "Medium: 1"
    assert labels["High"] == "High: 1"
    assert labels["Critical"] == "Critical: 1"
    assert labels["rate"] == "Events/s: 4"
    win.set_counters(4, 3, 2)
    assert win.counter_labels["missed"].text() == "Missed: 3"
    assert win.counter_labels["corrupt"].text() == "Corrupt: 2"


def test_a_flood_update_lists_the_newest_and_counts_everything(win):
    from kindlyguard_monitor.feed import ROWS_PER_UPDATE as DISPLAY_ROWS_PER_UPDATE

    n = DISPLAY_ROWS_PER_UPDATE * 3 + 17
    news = add_batches(win, [batch(*(ev(i, severity=CRITICAL if i % 2 else LOW) for i in range(n)))])
    assert sum(len(b.events) for b in news) == n  # all of it is news (for the notifier)
    assert win.model.rowCount() == DISPLAY_ROWS_PER_UPDATE
    assert win.model.row_at(0).seq == n - 1 and win.model.row_at(DISPLAY_ROWS_PER_UPDATE - 1).seq == n - 1000
    assert win.feed.totals["total"] == n and win.feed.totals[CRITICAL] == n // 2 and win.feed.totals[LOW] == n - n // 2
    assert win.feed.not_listed == n - DISPLAY_ROWS_PER_UPDATE
    assert "Not listed (flood): 2,017" in win.counter_labels["missed"].text()
    # a replay of threats in the table: nothing is news, nothing counted twice
    again = add_batches(win, [batch(*(ev(i) for i in range(n - 10, n)))])
    assert again == [] and win.feed.totals["total"] == n


def test_badge_and_status_bar_per_transport(win):
    win.set_transport("shm", "ring healthy")
    assert win.badge.text() == "Shared memory"
    assert palette.current().badge["shm"][0] in win.badge.styleSheet()
    assert win.status_label.text() == "KindlyGuard (SHM)"
    h = _ring.Histogram()
    for _ in range(10):
        h.record(12_000)
    win.set_latency("shm", h, None)
    assert win.status_label.text() == f"KindlyGuard (SHM {format_ns(h.percentile(50))})"
    assert "p99" in win.latency_label.text()

    reason = "ring /tmp/<b>x</b>/kindly-guard.shm: writer gone " + "x" * 200
    win.set_transport("websocket", reason)
    assert win.badge.text() == "WebSocket"
    assert palette.current().badge["websocket"][0] in win.badge.styleSheet()
    assert win.status_label.text().startswith("KindlyGuard (WebSocket")
    assert win.reason_label.text().endswith("…") and len(win.reason_label.text()) < len(reason)
    assert "&lt;b&gt;x&lt;/b&gt;" in win.reason_label.toolTip()

    win.set_transport("disconnected", "nothing there")
    assert win.badge.text() == "Disconnected (retrying)"
    assert palette.current().badge["disconnected"][0] in win.badge.styleSheet()
    assert win.status_label.text() == "KindlyGuard (disconnected)"


def test_filters(win, qtbot):
    add_batches(win, [batch(ev(1, LOW, THREAT_TYPE_NUMBER["PathTraversal"], details="../../etc/passwd"),
                           ev(2, HIGH, THREAT_TYPE_NUMBER["InjectionAttempt"], details="ignore previous"),
                           ev(3, CRITICAL, THREAT_TYPE_NUMBER["UnicodeBiDi"], details="a\u202eb"))])
    win.severity_combo.setCurrentIndex(win.severity_combo.findData(HIGH))
    assert [r.seq for r in shown_rows(win)] == [3, 2]
    win.type_combo.setCurrentIndex(win.type_combo.findText("InjectionAttempt"))
    assert [r.seq for r in shown_rows(win)] == [2]
    win.clear_filters()
    assert len(shown_rows(win)) == 3
    win.search.setText("U+202E")
    assert len(shown_rows(win)) == 3  # debounced: not yet
    qtbot.waitUntil(lambda: [r.seq for r in shown_rows(win)] == [3], timeout=2000)
    win.search.setText("PASSWD")
    qtbot.waitUntil(lambda: [r.seq for r in shown_rows(win)] == [1], timeout=2000)


def test_selecting_a_row_fills_details_and_copy(win, qtbot):
    add_batches(win, [batch(ev(1, details="evil \u202e txt\n<b>x</b>", source="<i>tool</i>"))])
    win.table.selectRow(0)
    text = win.details.text.toPlainText()
    assert "⟨U+202E⟩" in text and "\u202e" not in text
    assert "<b>x</b>" in text and "<i>tool</i>" in text
    assert "Severity:  Medium" in text and "Blocked:   No — reported, but let through" in text
    assert "2023-11-14T" in text  # ISO time
    # the internals under "Technical details", closed until asked for
    technical = win.details.technical
    assert "generation 7, seq 1" not in text and "generation 7, seq 1" in technical.text()
    assert "code points" in technical.text() and str(len("evil \u202e txt\n<b>x</b>")) in technical.text()
    assert not technical.isVisible()
    qtbot.mouseClick(win.details.technical_button, Qt.MouseButton.LeftButton)
    assert technical.isVisible()
    qtbot.mouseClick(win.details.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == text + "\n\nTechnical details:\n" + technical.text()


def test_details_pane_none(qtbot):
    pane = DetailsPane()
    qtbot.addWidget(pane)
    pane.show_row(None)
    assert pane.text.toPlainText() == "" and not pane.copy_button.isEnabled()


def test_show_event_clears_hiding_filters(win):
    add_batches(win, [batch(ev(1, LOW), ev(2, CRITICAL), ev(3, LOW))])
    win.severity_combo.setCurrentIndex(win.severity_combo.findData(CRITICAL))
    assert [r.seq for r in shown_rows(win)] == [2]
    win.hide()
    assert win.show_event(EventKey(7, 3))
    assert win.isVisible()
    assert win.proxy.min_severity() == LOW
    rows = win.table.selectionModel().selectedRows()
    assert len(rows) == 1 and rows[0].data(RowRole).key == EventKey(7, 3)
    assert "seq 3" in win.details.technical.text()
    assert not win.show_event((99, 99))


def test_pause_scrolling_keeps_selected_row(win):
    add_batches(win, [batch(*[ev(i) for i in range(200)])])
    win.table.selectRow(50)
    key = win.table.selectionModel().selectedRows()[0].data(RowRole).key
    win.table.scrollTo(win.table.selectionModel().selectedRows()[0])
    win.pause_button.setChecked(True)
    before = win.table.visualRect(win.table.selectionModel().selectedRows()[0]).top()
    add_batches(win, [batch(*[ev(i) for i in range(200, 210)])])
    sel = win.table.selectionModel().selectedRows()[0]
    assert sel.data(RowRole).key == key and sel.row() == 60
    assert win.table.visualRect(sel).top() == before
    win.pause_button.setChecked(False)
    add_batches(win, [batch(ev(300))])
    assert win.table.verticalScrollBar().value() == 0


def test_hide_on_close(win, qtbot):
    win.hide_on_close = True
    with qtbot.waitSignal(win.close_requested, timeout=1000):
        win.close()
    assert not win.isVisible()


def test_close_accepted_without_hide_on_close(win):
    assert win.close()
    assert not win.isVisible()


def test_hidden_window_defers_counter_labels(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    assert w.counter_labels["total"].text() == "This session: 0 threats"
    add_batches(w, [batch(ev(1, HIGH), ev(2, HIGH))])
    w.set_counters(2, 5, 1)
    assert w.model.rowCount() == 2  # the model is fed
    assert w.counter_labels["total"].text() == "This session: 0 threats"
    assert w.counter_labels["missed"].text() == "Missed: 0"
    w.show()
    qtbot.waitExposed(w)
    assert w.counter_labels["total"].text() == "This session: 2 threats"
    assert w.counter_labels["High"].text() == "High: 2"
    assert w.counter_labels["missed"].text() == "Missed: 5"


def test_histogram_empty_and_data(qtbot):
    hw = LatencyHistogram()
    qtbot.addWidget(hw)
    hw.resize(hw.sizeHint())
    assert not hw.grab().isNull()
    assert hw.last_paint_empty is True and hw.last_markers == []

    hw.set_data("shm", _ring.Histogram(), None)  # empty histograms: still "No events yet"
    assert not hw.grab().isNull() and hw.last_paint_empty is True

    transport, screen = _ring.Histogram(), _ring.Histogram()
    for i in range(100):
        transport.record(5_000 + i * 100)
        screen.record(200_000 + i * 1000)
    transport.record(50_000_000)
    hw.set_data("shm", transport, screen)
    assert sum(hw.series[0].bins) == transport.count
    assert not hw.grab().isNull()
    assert hw.last_paint_empty is False
    got = {(m.series, m.label): m for m in hw.last_markers}
    assert set(got) == {("transport", "p50"), ("transport", "p99"), ("to screen", "p50"), ("to screen", "p99")}
    assert got[("transport", "p50")].ns == transport.percentile(50)
    assert got[("transport", "p50")].text == "p50 " + format_ns(transport.percentile(50))
    assert got[("to screen", "p99")].ns == screen.percentile(99)

    hw.set_data("websocket", transport, None)  # screen series is optional
    hw.grab()
    assert {m.series for m in hw.last_markers} == {"transport"}


def test_window_latency_tab_renders(win):
    h = _ring.Histogram()
    h.record(3_000)
    win.set_latency("shm", h, h.copy())
    win.tabs.setCurrentWidget(win.histogram)
    assert not win.histogram.grab().isNull()
    assert len(win.histogram.last_markers) == 4


def test_a_requested_protection_state_is_shown_as_asked_until_confirmed(win):
    # issue 10: the Shield answers no toggle_protection; the window must not claim it happened
    win.set_shield_status(True, 4, requested=False)
    assert "turning off" in win.shield_label.text() and "not confirmed" in win.shield_label.text()
    win.set_shield_status(False, 4)
    assert win.shield_label.text().startswith("Protection OFF")


def test_counters_are_redrawn_at_most_every_interval_while_threats_stream(win, qtbot, monkeypatch):
    """The first arrival shows at once; the next ones within LABELS_INTERVAL_S wait for one
    deferred refresh (at 60 deliveries a second each refresh re-laid the counters row)."""
    from kindlyguard_monitor.gui import status_display

    monkeypatch.setattr(status_display, "LABELS_INTERVAL_S", 1.0)
    add_batches(win, [batch(ev(1))])
    assert win.counter_labels["total"].text() == "This session: 1 threat"
    add_batches(win, [batch(ev(2), ev(3))])
    assert win.counter_labels["total"].text() == "This session: 1 threat"  # deferred, not dropped
    qtbot.waitUntil(lambda: win.counter_labels["total"].text() == "This session: 3 threats", timeout=5000)
    assert win.windowTitle() == "KindlyGuard Monitor — 3 unseen"
