"""The main window: the threat table between the status display above it
(gui/status_display.py: badge, counters, status bar) and the filter bar
(gui/filter_bar.py), with the Details, Latency and Overview tabs below.

Free of transport logic and of intake: kindlyguard_monitor.feed decides what
is news; the app wiring hands the window what to show through the methods
below (show_update, show_restored, set_transport, set_counters, set_latency,
set_shield_status, show_event). While the window is hidden only the model is fed (it must hold
the rows); labels and the histogram are refreshed when it is shown again.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal, Slot
from PySide6.QtWidgets import QMainWindow, QSplitter, QTabWidget, QVBoxLayout, QWidget

from kindlyguard_monitor.event import EventKey, ThreatEvent
from kindlyguard_monitor.feed import Feed, Update
from kindlyguard_monitor.overview import Overview
from kindlyguard_monitor.gui.details_pane import DetailsPane
from kindlyguard_monitor.gui.filter_bar import FilterBar
from kindlyguard_monitor.gui.histogram_widget import FLEET_TOOLTIP, LatencyHistogram
from kindlyguard_monitor.gui.overview_widget import OverviewWidget
from kindlyguard_monitor.gui.status_display import StatusDisplay
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.gui.threat_table import ThreatTableView
from kindlyguard_monitor.platform_integration import set_macos_dock_icon
from kindlyguard_monitor.textsafe import visible


class MainWindow(QMainWindow):
    close_requested = Signal()
    shown = Signal()  # the window was shown (labels that are refreshed only while shown catch up)
    row_seen = Signal(object)  # EventKey: the user opened an unseen threat (for the history to keep)
    mark_all_seen_requested = Signal()  # the "Mark all as seen" button

    def __init__(self, model: ThreatTableModel | None = None, parent=None, feed: Feed | None = None):
        super().__init__(parent)
        self.setWindowTitle("KindlyGuard Monitor")
        self.hide_on_close = False
        self.model = model if model is not None else ThreatTableModel(parent=self)
        self.feed = feed if feed is not None else Feed(self.model.max_rows())  # what is news, and the totals
        self.model.is_unseen = self.feed.is_unseen  # unseen rows drawn as such (the feed decides)
        self.overview = Overview()  # the Overview tab's numbers: per minute, blocked, tops (Qt-free)
        self.proxy = ThreatFilterModel(self)
        self.proxy.setSourceModel(self.model)
        # The selected threat, by key: filtering, sorting and arrivals never swap it for another.
        self._selected_key: EventKey | None = None
        self._model_changing = 0  # inside a proxy change: selection changes are Qt's, not the user's
        self._reselecting = False
        self._watch_proxy_before_view()
        self._latency: tuple[str, object, object] | None = None  # shown when the window is

        central = QWidget(self)
        root = QVBoxLayout(central)
        self.status = StatusDisplay(self, central, root, self.feed)  # badge, counters, status bar
        s = self.status  # its widgets by their old names: keyboard.py and help.py find them by attribute
        self.badge, self.latency_label, self.reason_label = s.badge, s.latency_label, s.reason_label
        self.counter_labels = s.counter_labels
        self.status_label, self.history_label, self.shield_label = s.status_label, s.history_label, s.shield_label
        self.filters = f = FilterBar(self, central, root, self.proxy, self.model)
        self.severity_combo, self.type_combo, self.blocked_combo = f.severity_combo, f.type_combo, f.blocked_combo
        self.search, self.match_label, self.pause_button = f.search, f.match_label, f.pause_button
        self.unseen_label, self.mark_seen_button = s.unseen_label, s.mark_seen_button
        self.mark_seen_button.clicked.connect(self.mark_all_seen_requested)
        self.pause_button.toggled.connect(self._pause_toggled)
        self._build_table_and_tabs(central, root)
        self.setCentralWidget(central)

        self.status.show_transport()
        self.status.refresh_labels()
        self.resize(960, 640)

    @property
    def transport(self) -> str:
        return self.status.transport

    # ---------------------------------------------------------------- building

    def _build_table_and_tabs(self, central: QWidget, root: QVBoxLayout) -> None:
        """The threat table above the Details, Latency and Overview tabs."""
        self.table = ThreatTableView(self.model, self.proxy, central)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self._watch_proxy_after_view()

        self.details = DetailsPane(central, muting=True)
        self.histogram = LatencyHistogram(central)
        self.overview_tab = OverviewWidget(self.overview, central)
        self.overview_tab.source_chosen.connect(self.filters.filter_source)
        self.overview_tab.type_chosen.connect(self.filters.filter_type)
        self.overview_tab.blocked_chosen.connect(self.filters.filter_blocked)
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

    # ---------------------------------------------------------------- slots
    def show_update(self, update: Update) -> int:
        """List the rows the feed picked (oldest first) at the top of the table and
        refresh the counters; returns how many rows the table took."""
        if not update.added:
            return 0
        self.overview.add_batches(update.news)
        if self.fleet_mode:
            for b in update.news:
                self.filters.add_hosts(b.events)
        anchor = self.table.anchor() if self.pause_button.isChecked() else None
        listed = self.model.add_events(update.rows)
        if self.pause_button.isChecked():
            self.table.restore_anchor(anchor)
        elif self.isVisible():
            self.table.scrollToTop()
        self.status.count_arrivals(update.added)
        return listed

    def set_feed_size(self, n: int) -> None:
        """How many threats the feed keeps (and remembers as seen)."""
        self.model.set_max_rows(n)
        self.feed.set_max_rows(n)

    def show_restored(self, events: list[ThreatEvent], unseen=(), unseen_total: int | None = None) -> int:
        """Threats restored from the history (oldest first): listed (dated, set apart), not counted;
        `unseen`: the keys among them not seen yet, `unseen_total`: all the history holds unseen."""
        fresh = self.feed.restore(events, unseen, unseen_total)
        if self.fleet_mode:
            self.filters.add_hosts(fresh)
        self.overview.add(fresh)  # restored threats of the last day count in the overview
        listed = self.model.add_events(fresh)
        self.status.refresh_labels()
        return listed

    def mark_all_seen(self) -> int:
        """Every threat seen (the window's rows redrawn, the counts too); returns how many were unseen."""
        n = self.feed.mark_all_seen()
        self.model.seen_changed(None)
        self.status.refresh_labels()
        return n

    fleet_mode = False

    def set_fleet_mode(self, on: bool) -> None:
        """`kgmon --fleet`: the Host column and the host filter shown."""
        self.fleet_mode = bool(on)
        self.table.setColumnHidden(self.model.HOST, not on)
        self.filters.set_hosts_visible(on)
        if on:  # the latency counts only threats delivered live (fleet/source.py)
            self.histogram.setToolTip(FLEET_TOOLTIP)
            self.latency_label.setToolTip(FLEET_TOOLTIP)

    @Slot(str, str)
    def set_transport(self, transport: str, reason: str) -> None:
        self.status.set_transport(transport, reason)

    @Slot(int)
    def set_ring_format(self, ring_format: int) -> None:
        """1 (the Shield's own ring, polled) or 2; shown while on shared memory."""
        self.status.set_ring_format(ring_format)

    @Slot(int, int, int)
    def set_counters(self, delivered: int, missed: int, corrupt: int) -> None:
        self.status.set_counters(delivered, missed, corrupt)

    def set_latency(self, transport_name: str, transport_hist, screen_hist=None) -> None:
        self._latency = (transport_name, transport_hist, screen_hist)
        if self.isVisible():
            self._apply_latency()

    def set_shield_status(self, protection_enabled: bool | None, threats_blocked: int | None,
                          requested: bool | None = None) -> None:
        self.status.set_shield_status(protection_enabled, threats_blocked, requested)

    def set_history_status(self, text: str, failing: bool = False) -> None:
        self.status.set_history_status(text, failing)

    def set_protection_off(self, off: bool) -> None:
        self.status.set_protection_off(off)

    def refresh_colours(self) -> None:
        """The light/dark palette changed: redraw what uses its colours."""
        self.status.refresh_colours()
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

    def clear_filters(self) -> None:
        self.filters.clear()

    # ---------------------------------------------------------------- Qt events

    def showEvent(self, event) -> None:
        super().showEvent(event)
        set_macos_dock_icon(True)  # a menu-bar app on macOS: in the Dock only while the window is open
        self._fit_tabs()
        self.status.window_shown()
        if self._latency is not None:
            self._apply_latency()
        if not self.pause_button.isChecked():
            self.table.scrollToTop()
        self.shown.emit()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.status.window_hidden()
        set_macos_dock_icon(False)

    def closeEvent(self, event) -> None:
        if self.hide_on_close:
            event.ignore()
            self.hide()
            self.close_requested.emit()
        else:
            event.accept()

    # ---------------------------------------------------------------- internals

    def _pause_toggled(self, paused: bool) -> None:
        if not paused:
            self.table.scrollToTop()

    def _apply_latency(self) -> None:
        name, transport_hist, screen_hist = self._latency
        self.histogram.set_data(name, transport_hist, screen_hist)
        self.status.set_transport_latency(transport_hist)

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
            self.filters.show_match_count()

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
        if row is not None and self.feed.open(row.key):  # opened: seen from now on
            self.model.seen_changed(row.key)
            self.status.refresh_labels()
            self.row_seen.emit(row.key)

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

