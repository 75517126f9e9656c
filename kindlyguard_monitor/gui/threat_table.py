"""The feed's table view: newest first, fixed row heights, one row selected, and
the row the user is looking at kept in place while new rows arrive above it
(Pause scrolling)."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QAbstractItemView, QTableView

from kindlyguard_monitor.event import EventKey
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import TIME_SAMPLE, ThreatTableModel
from kindlyguard_monitor.threats import SEVERITIES, THREAT_TYPES

SOURCE_CHARS = 30  # the Source column's width, in average characters (it can be dragged wider)
CELL_PADDING = 16  # the cell's margins and focus frame
SORT_ARROW = 22  # room for the header's sort indicator


def size_columns(table: QTableView, time_sample: str = "00:00:00.000") -> None:
    """Columns sized to their content, measured once from the fonts (not per row: 10 000 rows
    would be measured on every change): Time, Severity, Type and Blocked never cut, Source
    about SOURCE_CHARS wide, Details taking the rest, so Blocked is visible without scrolling."""
    bold = QFont(table.font())
    bold.setBold(True)  # unseen rows are bold: measured so, they are never cut either
    cell = QFontMetrics(bold)
    header = table.horizontalHeader()
    head = header.fontMetrics()
    model = ThreatTableModel

    def fit(column: int, values) -> int:
        return max([cell.horizontalAdvance(v) + CELL_PADDING for v in values]
                   + [head.horizontalAdvance(model.HEADERS[column]) + CELL_PADDING + SORT_ARROW])

    header.setStretchLastSection(False)  # the details take the spare width, not "Blocked"
    widths = {model.TIME: fit(model.TIME, [time_sample]),
              model.SEVERITY: fit(model.SEVERITY, [s for s in SEVERITIES if s]),
              model.TYPE: fit(model.TYPE, THREAT_TYPES),
              model.SOURCE: cell.averageCharWidth() * SOURCE_CHARS + CELL_PADDING,
              model.BLOCKED: fit(model.BLOCKED, ["Yes", "No"])}
    for column, width in widths.items():
        header.setSectionResizeMode(column, header.ResizeMode.Interactive)
        header.resizeSection(column, width)
    header.setSectionResizeMode(model.DETAILS, header.ResizeMode.Stretch)


class ThreatTableView(QTableView):
    def __init__(self, model: ThreatTableModel, proxy: ThreatFilterModel, parent=None):
        super().__init__(parent)
        self.threats, self.proxy = model, proxy
        self.setModel(proxy)
        # Click a header to sort by it (again: the other way; a third time: the feed's
        # own order, newest first). Unsorted at start: arrivals cost no comparisons.
        self.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # -1 descending would reverse the feed
        self.horizontalHeader().setSortIndicatorClearable(True)
        self.setSortingEnabled(True)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.setWordWrap(False)
        size_columns(self, TIME_SAMPLE)  # unseen and restored rows' time too
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        # rows must not change height per content: uniform heights keep 10 000 rows cheap
        self.verticalHeader().setSectionResizeMode(self.verticalHeader().ResizeMode.Fixed)

    def index_for_key(self, key: EventKey) -> QModelIndex:
        """The view's index of the threat `key` (invalid when not in the table, or filtered out)."""
        source_row = self.threats.row_for_key(key)
        if source_row is None:
            return QModelIndex()
        return self.proxy.mapFromSource(self.threats.index(source_row, 0))

    def select(self, index: QModelIndex) -> None:
        """Select the row of `index` and scroll it to the middle."""
        self.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.scrollTo(index, QAbstractItemView.ScrollHint.PositionAtCenter)

    def anchor(self) -> tuple[EventKey, int] | None:
        """The key of the selected row, else of the row at the top of the view, and its offset on screen."""
        rows = self.selectionModel().selectedRows()
        index = rows[0] if rows else self.indexAt(QPoint(0, 0))
        if not index.isValid():
            return None
        row = index.data(ThreatTableModel.RowRole)
        if row is None:
            return None
        # the view keeps the anchor at the same offset from the viewport's top
        return row.key, self.visualRect(index).top()

    def restore_anchor(self, anchor: tuple[EventKey, int] | None) -> None:
        """Keep the anchor row where it was on screen: the new rows above it push it down by whole rows."""
        if anchor is None:
            return
        key, offset = anchor
        index = self.index_for_key(key)
        if not index.isValid():
            return
        row_h = max(1, self.rowHeight(index.row()))
        shift = (self.visualRect(index).top() - offset) // row_h
        if shift:
            bar = self.verticalScrollBar()
            bar.setValue(bar.value() + shift)
