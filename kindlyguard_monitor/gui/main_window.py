"""The main window: connection badge, counters, filters, the threat table,
details and latency.

Free of transport logic and of intake: kindlyguard_monitor.feed decides what
is news; the app wiring hands the window what to show through the methods
below (show_update, show_restored, set_transport, set_counters, set_latency,
set_shield_status, show_event). While the window is hidden only the model is fed (it must hold
the rows); labels and the histogram are refreshed when it is shown again.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QMainWindow, QPushButton, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from kindlyguard_monitor.event import EventKey, ThreatEvent
from kindlyguard_monitor.feed import Feed, Update
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.overview import Overview
from kindlyguard_monitor.gui.details_pane import DetailsPane
from kindlyguard_monitor.gui.histogram_widget import LatencyHistogram, format_ns
from kindlyguard_monitor.gui.overview_widget import OverviewWidget
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import ThreatTableModel, plain_tooltip
from kindlyguard_monitor.gui.threat_table import ThreatTableView
from kindlyguard_monitor.platform_integration import set_macos_dock_icon
from kindlyguard_monitor.textsafe import elide, visible
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, SEVERITIES, THREAT_TYPES
from kindlyguard_monitor.vocabulary import Transport

# transport -> (badge text, palette.badge key, status-bar name); colours: gui/palette.py
BADGES = {
    Transport.SHM: ("Shared memory", "shm", "SHM"),
    Transport.WEBSOCKET: ("WebSocket", "websocket", "WebSocket"),
    Transport.DISCONNECTED: ("Disconnected (retrying)", "disconnected", None),
}
SHM_V1_BADGE = "Shared memory · Shield format v1, polled"  # the Shield's own ring: no wake-up, we poll it
REASON_LIMIT = 90
FILTER_DEBOUNCE_MS = 150
RATE_WINDOW_S = 1.0


def _plain_label(text: str = "", parent=None) -> QLabel:
    label = QLabel(text, parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class MainWindow(QMainWindow):
    close_requested = Signal()
    shown = Signal()  # the window was shown (labels that are refreshed only while shown catch up)

    def __init__(self, model: ThreatTableModel | None = None, parent=None, feed: Feed | None = None):
        super().__init__(parent)
        self.setWindowTitle("KindlyGuard Monitor")
        self.hide_on_close = False
        self.model = model if model is not None else ThreatTableModel(parent=self)
        self.feed = feed if feed is not None else Feed(self.model.max_rows())  # what is news, and the totals
        self.overview = Overview()  # the Overview tab's numbers: per minute, blocked, tops (Qt-free)
        self.proxy = ThreatFilterModel(self)
        self.proxy.setSourceModel(self.model)
        # The selected threat, by key: filtering, sorting and arrivals never swap it for another.
        self._selected_key: EventKey | None = None
        self._model_changing = 0  # inside a proxy change: selection changes are Qt's, not the user's
        self._reselecting = False
        self._watch_proxy_before_view()

        # state shown by labels (refreshed only while visible)
        self.transport = Transport.DISCONNECTED
        self.ring_format = 2
        self.reason = ""
        self.delivered = self.missed = self.corrupt = 0
        self._arrivals: deque[tuple[float, int]] = deque()  # (monotonic s, rows) over the last second
        self._latency: tuple[str, object, object] | None = None
        self._transport_p50: int | None = None
        self._transport_p99: int | None = None
        self._shield: tuple[bool | None, int | None] | None = None

        central = QWidget(self)
        root = QVBoxLayout(central)
        self._build_badge_row(central, root)
        self._build_counters(central, root)
        self._build_filter_bar(central, root)
        self._build_table_and_tabs(central, root)
        self.setCentralWidget(central)
        self._build_status_bar()
        self._start_rate_timer()

        self._show_transport()
        self._refresh_labels()
        self.resize(960, 640)

    # ---------------------------------------------------------------- building

    def _build_badge_row(self, central: QWidget, root: QVBoxLayout) -> None:
        """The connection badge, the transport latency and the reason for the transport."""
        self.badge = _plain_label("", central)
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setMinimumWidth(180)
        self.latency_label = _plain_label("", central)
        self.reason_label = _plain_label("", central)
        self.reason_label.setStyleSheet("color: palette(mid);")
        top = QHBoxLayout()
        top.addWidget(self.badge)
        top.addWidget(self.latency_label, 1)
        root.addLayout(top)
        root.addWidget(self.reason_label)

    def _build_counters(self, central: QWidget, root: QVBoxLayout) -> None:
        """Threats, blocked, per severity, events/s, missed, corrupt."""
        self.counter_labels: dict[str, QLabel] = {}
        counters = QHBoxLayout()
        for name in ("total", "blocked", "Low", "Medium", "High", "Critical", "rate", "missed", "corrupt"):
            label = _plain_label("", central)
            self.counter_labels[name] = label
            counters.addWidget(label)
        counters.addStretch(1)
        root.addLayout(counters)

    def _build_filter_bar(self, central: QWidget, root: QVBoxLayout) -> None:
        """Severity, type, text filter (debounced) and Pause scrolling."""
        self.severity_combo = QComboBox(central)
        for number in (LOW, MEDIUM, HIGH, CRITICAL):
            self.severity_combo.addItem(f"≥ {SEVERITIES[number]}", number)
        self.type_combo = QComboBox(central)
        self.type_combo.addItem("All types", None)
        for number, name in enumerate(THREAT_TYPES):
            self.type_combo.addItem(name, number)
        self.blocked_combo = QComboBox(central)  # as the History window says it
        for label, value in (("Blocked or not", None), ("Blocked", True), ("Not blocked", False)):
            self.blocked_combo.addItem(label, value)
        self.blocked_combo.setToolTip("Show threats the Shield blocked, those it did not, or both")
        self.blocked_combo.setAccessibleName("Show blocked or not blocked threats")
        self.search = QLineEdit(central)
        self.search.setPlaceholderText("Filter source and details…")
        self.search.setClearButtonEnabled(True)
        self.match_label = _plain_label("", central)  # "7 of 265" while a filter hides some
        self.match_label.setToolTip("Threats matching the filters, of those in the feed")
        self.pause_button = QPushButton("Pause scrolling", central)
        self.pause_button.setCheckable(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(FILTER_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self._apply_search)
        self.severity_combo.currentIndexChanged.connect(self._apply_severity)
        self.type_combo.currentIndexChanged.connect(self._apply_type)
        self.blocked_combo.currentIndexChanged.connect(self._apply_blocked)
        self.search.textChanged.connect(self._search_changed)
        self.pause_button.toggled.connect(self._pause_toggled)
        bar = QHBoxLayout()
        bar.addWidget(_plain_label("Severity:", central))
        bar.addWidget(self.severity_combo)
        bar.addWidget(self.type_combo)
        bar.addWidget(self.blocked_combo)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.match_label)
        bar.addWidget(self.pause_button)
        root.addLayout(bar)

    def _build_table_and_tabs(self, central: QWidget, root: QVBoxLayout) -> None:
        """The threat table above the Details, Latency and Overview tabs."""
        self.table = ThreatTableView(self.model, self.proxy, central)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self._watch_proxy_after_view()

        self.details = DetailsPane(central, muting=True)
        self.histogram = LatencyHistogram(central)
        self.overview_tab = OverviewWidget(self.overview, central)
        self.overview_tab.source_chosen.connect(self.filter_source)
        self.overview_tab.type_chosen.connect(self.filter_type)
        self.overview_tab.blocked_chosen.connect(self.filter_blocked)
        self.tabs = QTabWidget(central)
        self.tabs.addTab(self.details, "Details")
        self.tabs.addTab(self.histogram, "Latency")
        self.tabs.addTab(self.overview_tab, "Overview")  # last: tab 1 stays Latency (the e2e tests' "tab 1")
        # The feed gets the room: the tabs are small while nothing is selected, and take
        # about a third when a threat is (until the user drags the splitter: then theirs).
        self.splitter = QSplitter(Qt.Orientation.Vertical, central)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.tabs)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        # below the pages' own minimum (the Overview's charts): the splitter may make them small
        self.tabs.setMinimumHeight(self.tabs.tabBar().sizeHint().height() + 2 * self.fontMetrics().height())
        self._user_sized = False
        self.splitter.splitterMoved.connect(self._splitter_moved)
        self.tabs.currentChanged.connect(self._fit_tabs)
        root.addWidget(self.splitter, 1)

    def _build_status_bar(self) -> None:
        """Transport and latency, the history, the Shield's status."""
        self.status_label = _plain_label("", self)
        self.history_label = _plain_label("", self)
        self.shield_label = _plain_label("", self)
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.history_label)
        self.statusBar().addPermanentWidget(self.shield_label)

    def _start_rate_timer(self) -> None:
        """Events/s decays to 0 after the last arrival: the timer runs only while the
        window is shown and arrivals are counted, so an idle app sleeps."""
        self._rate_timer = QTimer(self)
        self._rate_timer.setInterval(1000)
        self._rate_timer.timeout.connect(self._tick)

    # ---------------------------------------------------------------- slots

    def show_update(self, update: Update) -> int:
        """List the rows the feed picked (oldest first) at the top of the table and
        refresh the counters; returns how many rows the table took."""
        if not update.added:
            return 0
        self.overview.add_batches(update.news)
        anchor = self.table.anchor() if self.pause_button.isChecked() else None
        listed = self.model.add_events(update.rows)
        self._arrivals.append((time.monotonic(), update.added))
        if self.pause_button.isChecked():
            self.table.restore_anchor(anchor)
        elif self.isVisible():
            self.table.scrollToTop()
        if self.isVisible():
            self._refresh_labels()
            if not self._rate_timer.isActive():
                self._rate_timer.start()
        return listed

    def set_feed_size(self, n: int) -> None:
        """How many threats the feed keeps (and remembers as seen)."""
        self.model.set_max_rows(n)
        self.feed.set_max_rows(n)

    def show_restored(self, events: list[ThreatEvent]) -> int:
        """Threats restored from the history (oldest first): listed, not counted."""
        fresh = self.feed.restore(events)
        self.overview.add(fresh)  # restored threats of the last day count in the overview
        return self.model.add_events(fresh)

    @Slot(str, str)
    def set_transport(self, transport: str, reason: str) -> None:
        self.transport = Transport(transport) if transport in BADGES else Transport.DISCONNECTED
        self.reason = reason or ""
        if self.transport == Transport.DISCONNECTED:
            self._transport_p50 = self._transport_p99 = None
        self._show_transport()

    @Slot(int)
    def set_ring_format(self, ring_format: int) -> None:
        """1 (the Shield's own ring, polled) or 2; shown while on shared memory."""
        self.ring_format = int(ring_format)
        self._show_transport()

    @Slot(int, int, int)
    def set_counters(self, delivered: int, missed: int, corrupt: int) -> None:
        self.delivered, self.missed, self.corrupt = int(delivered), int(missed), int(corrupt)
        if self.isVisible():
            self._refresh_labels()

    def set_latency(self, transport_name: str, transport_hist, screen_hist=None) -> None:
        self._latency = (transport_name, transport_hist, screen_hist)
        if self.isVisible():
            self._apply_latency()

    def set_shield_status(self, protection_enabled: bool | None, threats_blocked: int | None,
                          requested: bool | None = None) -> None:
        """The Shield's last status; `requested`: a toggle asked for that state and
        no status has confirmed it yet (shown as asked, not as done)."""
        self._shield = (protection_enabled, threats_blocked)
        parts = []
        if requested is not None:
            parts.append(f"Protection {'on' if protection_enabled else 'OFF'} → turning "
                         f"{'on' if requested else 'off'} (asked; not confirmed yet)")
        elif protection_enabled is not None:
            parts.append("Protection on" if protection_enabled else "Protection OFF")
        if threats_blocked is not None:
            parts.append(f"Shield blocked {int(threats_blocked)}")
        self.shield_label.setText(" · ".join(parts))

    def set_history_status(self, text: str, failing: bool = False) -> None:
        """The history's size (and backlog, or why it cannot write) in the status bar."""
        self.history_label.setText(visible(text))  # the error names a path and quotes SQLite
        self._history_failing = failing
        self.history_label.setStyleSheet(f"color: {palette.current().error};" if failing else "")

    def set_protection_off(self, off: bool) -> None:
        """The Shield says protection is off: the badge says so until it is back on."""
        self.protection_off = bool(off)
        self._show_transport()

    def refresh_colours(self) -> None:
        """The light/dark palette changed: redraw what uses its colours."""
        self._show_transport()
        self.set_history_status(self.history_label.text(), getattr(self, "_history_failing", False))
        self.table.viewport().update()
        self.histogram.update()

    def show_message(self, text: str, timeout_ms: int = 0) -> None:
        """A passing message in the status bar; outside text in it (paths, errors) made visible."""
        self.statusBar().showMessage(visible(text), timeout_ms)

    def show_event(self, key) -> bool:
        """Select and show the threat `key` (a notification was clicked); clear filters hiding it.
        Returns False when the row is no longer in the table."""
        if self.model.row_for_key(key) is None:
            return False
        index = self.table.index_for_key(key)
        if not index.isValid():
            self.clear_filters()
            index = self.table.index_for_key(key)
            if not index.isValid():
                return False
        self.table.select(index)
        self.tabs.setCurrentWidget(self.details)
        if self.isMinimized():
            self.showNormal()
        else:
            self.show()
        self.raise_()
        self.activateWindow()
        return True

    @Slot(str)
    def filter_source(self, source: str) -> None:
        """Show the threats from `source` (the Overview's top sources): its visible form,
        which the text filter matches as it matches the raw text."""
        self._search_timer.stop()
        self.search.blockSignals(True)
        self.search.setText(visible(source))
        self.search.blockSignals(False)
        self._apply_search()

    @Slot(int)
    def filter_type(self, number: int) -> None:
        index = self.type_combo.findData(int(number))
        if index >= 0:
            self.type_combo.setCurrentIndex(index)

    @Slot(bool)
    def filter_blocked(self, blocked: bool) -> None:
        self.blocked_combo.setCurrentIndex(self.blocked_combo.findData(bool(blocked)))

    def clear_filters(self) -> None:
        self.severity_combo.setCurrentIndex(0)
        self.type_combo.setCurrentIndex(0)
        self.blocked_combo.setCurrentIndex(0)
        self._search_timer.stop()
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self.proxy.set_min_severity(self.severity_combo.currentData())
        self.proxy.set_types(None)
        self.proxy.set_blocked(None)
        self.proxy.set_text("")
        self._show_match_count()

    # ---------------------------------------------------------------- Qt events

    def showEvent(self, event) -> None:
        super().showEvent(event)
        set_macos_dock_icon(True)  # a menu-bar app on macOS: in the Dock only while the window is open
        self._fit_tabs()
        self._refresh_labels()
        self._show_transport()
        if self._latency is not None:
            self._apply_latency()
        if not self.pause_button.isChecked():
            self.table.scrollToTop()
        if self._arrivals:
            self._rate_timer.start()
        self.shown.emit()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._rate_timer.stop()  # nothing to redraw while hidden
        set_macos_dock_icon(False)

    def closeEvent(self, event) -> None:
        if self.hide_on_close:
            event.ignore()
            self.hide()
            self.close_requested.emit()
        else:
            event.accept()

    # ---------------------------------------------------------------- internals

    @Slot(int)
    def _apply_severity(self, _index: int) -> None:
        self.proxy.set_min_severity(self.severity_combo.currentData())
        self._show_match_count()

    @Slot(str)
    def _search_changed(self, _text: str) -> None:
        self._search_timer.start()  # debounced: the filter applies once typing pauses

    @Slot()
    def _apply_search(self) -> None:
        self.proxy.set_text(self.search.text())
        self._show_match_count()

    @Slot(int)
    def _apply_type(self, _index: int) -> None:
        number = self.type_combo.currentData()
        self.proxy.set_types(None if number is None else {number})
        self._show_match_count()

    @Slot(int)
    def _apply_blocked(self, _index: int) -> None:
        self.proxy.set_blocked(self.blocked_combo.currentData())
        self._show_match_count()

    def _pause_toggled(self, paused: bool) -> None:
        if not paused:
            self.table.scrollToTop()

    # ---- the selection never jumps

    def _watch_proxy_before_view(self) -> None:
        """The proxy's "about to change" signals, connected before the view's selection model
        connects its own: while the proxy changes, selection changes are Qt's remapping."""
        p = self.proxy
        for signal in (p.layoutAboutToBeChanged, p.rowsAboutToBeRemoved, p.rowsAboutToBeInserted,
                       p.modelAboutToBeReset):
            signal.connect(self._proxy_changing)

    def _watch_proxy_after_view(self) -> None:
        """The proxy's "changed" signals, connected after the selection model's: it has
        remapped by then, and the selected key is checked against what it did."""
        self._model_changing = 0  # the view's own first sort had no "changed" handler yet
        p = self.proxy
        for signal in (p.layoutChanged, p.rowsRemoved, p.rowsInserted, p.modelReset):
            signal.connect(self._proxy_changed)

    def _proxy_changing(self, *_args) -> None:
        self._model_changing += 1

    def _proxy_changed(self, *_args) -> None:
        self._model_changing = max(0, self._model_changing - 1)
        if not self._model_changing:
            self._keep_selection()
            self._show_match_count()

    def selected_key(self) -> EventKey | None:
        return self._selected_key

    def _keep_selection(self) -> None:
        """Select the selected key's row again, wherever it is now; or, when it is gone
        (filtered out, dropped by the row budget), select nothing."""
        key = self._selected_key
        selection = self.table.selectionModel()
        rows = selection.selectedRows()
        if key is not None and len(rows) == 1 and rows[0].data(ThreatTableModel.RowRole).key == key:
            return
        index = self.table.index_for_key(key) if key is not None else QModelIndex()
        self._reselecting = True
        try:
            if index.isValid():
                selection.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect
                                          | QItemSelectionModel.SelectionFlag.Rows)
            else:
                selection.clearSelection()
                selection.setCurrentIndex(QModelIndex(), QItemSelectionModel.SelectionFlag.NoUpdate)
        finally:
            self._reselecting = False
        if not index.isValid() and key is not None:
            self._selected_key = None
            self.details.show_row(None)
            self._fit_tabs()

    def _selection_changed(self, *_args) -> None:
        if self._model_changing or self._reselecting:
            return  # Qt remapping rows: _keep_selection decides once the change is over
        rows = self.table.selectionModel().selectedRows()
        row = rows[0].data(ThreatTableModel.RowRole) if rows else None
        self._selected_key = None if row is None else row.key
        self.details.show_row(row)
        self._fit_tabs()

    # ---- layout: the feed gets the room

    def compact_tabs_height(self) -> int:
        """The tabs with nothing to show: the tab bar and a few lines (the placeholder)."""
        return self.tabs.tabBar().sizeHint().height() + 4 * self.fontMetrics().height()

    def _splitter_moved(self, *_args) -> None:
        self._user_sized = True  # the user chose the sizes: keep theirs

    @Slot()
    def _fit_tabs(self, *_args) -> None:
        if self._user_sized:
            return
        total = sum(self.splitter.sizes())
        if total <= 0:
            return
        empty = self.tabs.currentWidget() is self.details and self._selected_key is None
        bottom = self.compact_tabs_height() if empty else max(self.compact_tabs_height(), int(total * 0.38))
        bottom = min(bottom, total // 2)
        if self.splitter.sizes()[1] != bottom:
            self.splitter.setSizes([total - bottom, bottom])

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_tabs()

    def _show_match_count(self) -> None:
        """'7 of 265' while a filter hides some threats; nothing otherwise."""
        if self.proxy.is_filtered():
            text = f"{self.proxy.rowCount():,} of {self.model.rowCount():,}"
        else:
            text = ""
        if self.match_label.text() != text:
            self.match_label.setText(text)

    @Slot()
    def _tick(self) -> None:
        if self.isVisible():
            self._refresh_labels()
        if not self._arrivals or not self.isVisible():  # events/s shows 0 now: sleep until the next arrival
            self._rate_timer.stop()

    def events_per_second(self) -> int:
        cutoff = time.monotonic() - RATE_WINDOW_S
        while self._arrivals and self._arrivals[0][0] < cutoff:
            self._arrivals.popleft()
        return sum(n for _, n in self._arrivals)

    def _refresh_labels(self) -> None:
        t = self.feed.totals
        texts = {
            "total": f"Threats: {t['total']}",
            "blocked": f"Blocked: {t['blocked']}",
            "Low": f"Low: {t[LOW]}",
            "Medium": f"Medium: {t[MEDIUM]}",
            "High": f"High: {t[HIGH]}",
            "Critical": f"Critical: {t[CRITICAL]}",
            "rate": f"Events/s: {self.events_per_second()}",
            "missed": f"Missed: {self.missed}" + (
                f" · Not listed (flood): {self.feed.not_listed:,}" if self.feed.not_listed else ""),
            "corrupt": f"Corrupt: {self.corrupt}",
        }
        for name, text in texts.items():
            self.counter_labels[name].setText(text)
        # The title names the count too: task bars and window lists show it at a glance.
        total = t["total"]
        self.setWindowTitle("KindlyGuard Monitor" if not total else
                            f"KindlyGuard Monitor — {total:,} threat{'s' if total != 1 else ''}")

    def _apply_latency(self) -> None:
        name, transport_hist, screen_hist = self._latency
        self.histogram.set_data(name, transport_hist, screen_hist)
        if transport_hist is not None and getattr(transport_hist, "count", 0):
            self._transport_p50 = int(transport_hist.percentile(50))
            self._transport_p99 = int(transport_hist.percentile(99))
        else:
            self._transport_p50 = self._transport_p99 = None
        self._show_transport()

    def _show_transport(self) -> None:
        text, state, short = BADGES[self.transport]
        if self.transport == Transport.SHM and self.ring_format == 1:
            text, short = SHM_V1_BADGE, "SHM v1"
        if getattr(self, "protection_off", False):  # the Shield says so: above everything else
            text, state = f"Protection OFF · {text}", "protection_off"
        self.badge.setText(text)
        colour, ink = palette.current().badge[state]
        sheet = (f"QLabel {{ background-color: {colour}; color: {ink}; "
                 f"border-radius: 4px; padding: 4px 10px; font-weight: bold; }}")
        if self.badge.styleSheet() != sheet:  # a style sheet re-polishes the badge: only when it changes
            self.badge.setStyleSheet(sheet)
        if self._transport_p50 is not None and short is not None:
            self.latency_label.setText(f"latency p50 {format_ns(self._transport_p50)}, "
                                       f"p99 {format_ns(self._transport_p99)}")
            self.status_label.setText(f"KindlyGuard ({short} {format_ns(self._transport_p50)})")
        else:
            self.latency_label.setText("")
            self.status_label.setText(f"KindlyGuard ({short})" if short else "KindlyGuard (disconnected)")
        reason = visible(self.reason)
        self.reason_label.setText(elide(reason, REASON_LIMIT))
        self.reason_label.setToolTip(plain_tooltip(self.reason) if self.reason else "")

