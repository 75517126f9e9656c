"""The feed's table view: newest first, fixed row heights, one row selected, and
the row the user is looking at kept in place while new rows arrive above it
(Pause scrolling)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QPoint, QPointF, Qt
from PySide6.QtGui import QPalette, QStaticText
from PySide6.QtWidgets import QAbstractItemView, QStyle, QStyledItemDelegate, QTableView

from kindlyguard_monitor.event import EventKey
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.threats import SEVERITIES, THREAT_TYPES

SOURCE_CHARS = 30  # the Source column's width, in average characters (it can be dragged wider)
CELL_PADDING = 16  # the cell's margins and focus frame
SORT_ARROW = 22  # room for the header's sort indicator


def size_columns(table: QTableView, time_sample: str = "00:00:00.000") -> None:
    """Columns sized to their content, measured once from the fonts (not per row: 10 000 rows
    would be measured on every change): Time, Severity, Type and Blocked never cut, Source
    about SOURCE_CHARS wide, Details taking the rest, so Blocked is visible without scrolling."""
    cell = table.fontMetrics()
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


# as ints: Python's enum.Flag operators cost more than the rest of a cell's paint
_SELECTED = QStyle.StateFlag.State_Selected.value
_FOCUSED = QStyle.StateFlag.State_HasFocus.value
_ACTIVE = QStyle.StateFlag.State_Active.value
_ENABLED = QStyle.StateFlag.State_Enabled.value
_DISABLED_GROUP, _ACTIVE_GROUP, _INACTIVE_GROUP = (QPalette.ColorGroup.Disabled, QPalette.ColorGroup.Active,
                                                  QPalette.ColorGroup.Inactive)
_HIGHLIGHT, _HIGHLIGHTED_TEXT, _TEXT = (QPalette.ColorRole.Highlight, QPalette.ColorRole.HighlightedText,
                                        QPalette.ColorRole.Text)
_PLAIN = Qt.TextFormat.PlainText
_CENTERED = int(Qt.AlignmentFlag.AlignHCenter.value)
_ELIDE = Qt.TextElideMode.ElideRight
CACHE_LIMIT = 4000  # laid-out cells kept (a screenful is ~100): dropped whole past it


class CellDelegate(QStyledItemDelegate):
    """Paints a feed cell from the model's cached texts (ThreatTableModel.cells_for) with a
    QStaticText laid out once per text and column width, shared by every cell showing it (the
    severity, type and blocked columns have a handful of texts): Qt's own delegate lays every
    cell's text out again on every paint, and asks the model once per role. The text is plain
    (QStaticText's PlainText format: outside text is never markup). The focused cell, and any
    cell of another model, are left to Qt's delegate."""

    def __init__(self, view: "ThreatTableView"):
        super().__init__(view)
        self.view = view
        self._laid_out: dict = {}  # (column, width, text) -> (QStaticText, x offset, y offset)
        self._margin: int | None = None
        self._same_rows = False  # this paint: the proxy shows every row of the model, in its order
        self._colours: dict = {}  # this paint: colour group -> (highlight brush, highlighted text, text)
        self.painted = 0  # cells painted here (tests)

    def forget(self) -> None:
        """Font or style changed: lay every cell out again."""
        self._laid_out.clear()
        self._margin = None

    def begin_paint(self) -> None:
        """Once per paint of the table, what every cell of it shares."""
        view = self.view
        # The proxy filters but never reorders (the model sorts itself): with every row
        # accepted, a proxy row is the model's row (no mapToSource per cell).
        self._same_rows = view.proxy.rowCount() == view.threats.rowCount()
        self._colours = {}

    def paint(self, painter, option, index) -> None:
        view = self.view
        if index.model() is not view.proxy:
            super().paint(painter, option, index)
            return
        cells = view.threats.cells_for(index if self._same_rows else view.proxy.mapToSource(index))
        state = option.state.value
        if cells is None or state & _FOCUSED:
            super().paint(painter, option, index)
            return
        col, text, background, foreground, alignment = cells
        rect = option.rect
        group = _DISABLED_GROUP if not state & _ENABLED else _ACTIVE_GROUP if state & _ACTIVE else _INACTIVE_GROUP
        colours = self._colours.get(group)
        if colours is None:
            pal = option.palette
            colours = self._colours[group] = (pal.brush(group, _HIGHLIGHT), pal.color(group, _HIGHLIGHTED_TEXT),
                                              pal.color(group, _TEXT))
        if state & _SELECTED:
            painter.fillRect(rect, colours[0])
            painter.setPen(colours[1])
        elif background is not None:
            painter.fillRect(rect, background)
            painter.setPen(foreground)
        else:
            painter.setPen(colours[2])
        x, y, width, height = rect.getRect()
        cache_key = (col, width, text)
        laid = self._laid_out.get(cache_key)
        if laid is None:
            laid = self._lay_out(text, width, height, alignment, option)
            if len(self._laid_out) >= CACHE_LIMIT:
                self._laid_out.clear()
            self._laid_out[cache_key] = laid
        static, dx, dy = laid
        painter.drawStaticText(x + dx, y + dy, static)
        self.painted += 1

    def _lay_out(self, text: str, width: int, height: int, alignment: int, option) -> tuple:
        margin = self._margin
        if margin is None:
            view = self.view
            margin = self._margin = view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1
        fm = option.fontMetrics
        room = max(0, width - 2 * margin)
        static = QStaticText(fm.elidedText(text, _ELIDE, room))  # the text itself when it fits
        static.setTextFormat(_PLAIN)
        static.prepare(font=option.font)
        size = static.size()
        dx = margin + max(0, (room - int(size.width())) // 2) if alignment & _CENTERED else margin
        return static, dx, int((height - size.height()) // 2)


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
        size_columns(self)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        # rows must not change height per content: uniform heights keep 10 000 rows cheap
        self.verticalHeader().setSectionResizeMode(self.verticalHeader().ResizeMode.Fixed)
        self.cells = CellDelegate(self)
        self.setItemDelegate(self.cells)

    def paintEvent(self, event) -> None:
        self.cells.begin_paint()
        super().paintEvent(event)

    def changeEvent(self, event) -> None:
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self.cells.forget()
        super().changeEvent(event)

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
