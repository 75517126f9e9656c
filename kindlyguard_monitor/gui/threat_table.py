"""The feed's table view: newest first, fixed row heights, one row selected, and
the row the user is looking at kept in place while new rows arrive above it
(Pause scrolling).

It paints its visible rows itself, in one pass (paint_rows): each cell's text
from the model's cached texts (ThreatTableModel.row_cells) as a QStaticText laid
out once per text and column width, shared by every cell showing it. Qt's own
paint calls a delegate per cell (and the delegate asks the model once per
role): a repaint of ~19 rows cost 17-26 ms of CPU on a loaded 2-core VM, and
threats arriving at 1,000/s repaint the table up to 60 times a second. The text
is plain (QStaticText's PlainText format: outside text is never markup). The
focused cell is drawn by Qt's delegate, a hidden column (Host outside the fleet
view) is skipped, a row's own font (bold unseen, italic restored) is used, and
anything unusual (right-to-left, moved columns) falls back to Qt's paint."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelectionModel, QModelIndex, QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPalette, QPen, QStaticText
from PySide6.QtWidgets import QAbstractItemView, QStyle, QStyleOptionViewItem, QTableView

from kindlyguard_monitor.event import EventKey
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.row_look import TIME_SAMPLE
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
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
              model.BLOCKED: fit(model.BLOCKED, ["Yes", "No"]),
              model.HOST: cell.averageCharWidth() * SOURCE_CHARS // 2 + CELL_PADDING}
    for column, width in widths.items():
        header.setSectionResizeMode(column, header.ResizeMode.Interactive)
        header.resizeSection(column, width)
    header.setSectionResizeMode(model.DETAILS, header.ResizeMode.Stretch)


_PLAIN = Qt.TextFormat.PlainText
_CENTERED = int(Qt.AlignmentFlag.AlignHCenter.value)
_ELIDE = Qt.TextElideMode.ElideRight
CACHE_LIMIT = 4000  # laid-out texts kept (a screenful is ~120 cells): dropped whole past it


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
        self.setColumnHidden(model.HOST, True)  # shown in the fleet view only (MainWindow.set_fleet_mode)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setAlternatingRowColors(True)
        # rows must not change height per content: uniform heights keep 10 000 rows cheap
        self.verticalHeader().setSectionResizeMode(self.verticalHeader().ResizeMode.Fixed)
        self._laid_out: dict = {}  # (column, width, text) -> (QStaticText, x offset, y offset)
        self._margin: int | None = None
        self.painted_rows = 0  # rows painted by paint_rows (tests)
        self.fast_paint = True  # False: Qt's own paint, cell by cell (tests compare the two)

    # ---- painting

    def changeEvent(self, event) -> None:
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._laid_out.clear()
            self._margin = None
        super().changeEvent(event)

    def paintEvent(self, event) -> None:
        header = self.horizontalHeader()
        usual = (self.fast_paint and self.model() is self.proxy and not self.isRightToLeft() and not self.wordWrap()
                 and all(header.logicalIndex(c) == c for c in range(header.count())))
        if not usual:
            super().paintEvent(event)
            return
        painter = QPainter(self.viewport())
        try:
            self.paint_rows(painter, event.rect())
        finally:
            painter.end()

    def paint_rows(self, painter: QPainter, area: QRect) -> None:
        proxy, threats = self.proxy, self.threats
        count = proxy.rowCount()
        first = self.rowAt(area.top())
        if count == 0 or first < 0:
            return
        last = self.rowAt(area.bottom())
        last = count - 1 if last < 0 else last
        same_rows = count == threats.rowCount()  # nothing filtered out: a proxy row is the model's row
        header = self.horizontalHeader()
        grid = 1 if self.showGrid() else 0
        columns = []  # (column, x, width) of the columns in the area
        for col in range(header.count()):
            if header.isSectionHidden(col):  # the Host column outside the fleet view
                continue
            x, width = header.sectionViewportPosition(col), header.sectionSize(col)
            if x + width > area.left() and x <= area.right():
                columns.append((col, x, width - grid))
        pal = self.palette()
        group = (QPalette.ColorGroup.Disabled if not self.isEnabled() else
                 QPalette.ColorGroup.Active if self.isActiveWindow() else QPalette.ColorGroup.Inactive)
        highlight = pal.brush(group, QPalette.ColorRole.Highlight)
        highlighted_text = pal.color(group, QPalette.ColorRole.HighlightedText)
        text_colour = pal.color(group, QPalette.ColorRole.Text)
        alternate = pal.brush(group, QPalette.ColorRole.AlternateBase) if self.alternatingRowColors() else None
        selected = {index.row() for index in self.selectionModel().selectedRows()}
        current = self.currentIndex()
        focused = current.isValid() and (self.hasFocus() or self.viewport().hasFocus())
        row_height = self.rowHeight(first)
        height = row_height - grid
        left = columns[0][1] if columns else 0
        right = columns[-1][1] + columns[-1][2] if columns else 0
        laid_out = self._laid_out
        y = self.rowViewportPosition(first)
        for row in range(first, last + 1):
            source_row = row if same_rows else proxy.mapToSource(proxy.index(row, 0)).row()
            cells = threats.row_cells(source_row)
            if cells is None:
                y += row_height
                continue
            texts, background, foreground, alignments, font = cells
            if font is not None:  # unseen (bold) or restored (italic), on the table's family and size
                painter.setFont(font.resolve(self.font()))
            is_selected = row in selected
            if is_selected:
                painter.fillRect(left, y, right - left, height, highlight)
            elif alternate is not None and row & 1:
                painter.fillRect(left, y, right - left, height, alternate)
            for col, x, width in columns:
                if is_selected:
                    painter.setPen(highlighted_text)
                elif background[col] is not None:
                    painter.fillRect(x, y, width, height, background[col])
                    painter.setPen(foreground[col])
                elif foreground[col] is not None:  # muted: a restored row
                    painter.setPen(foreground[col])
                else:
                    painter.setPen(text_colour)
                text = texts[col]
                laid = laid_out.get((col, width, text, font))
                if laid is None:
                    laid = self._lay_out(text, width, height, alignments[col], font)
                    if len(laid_out) >= CACHE_LIMIT:
                        laid_out.clear()
                    laid_out[(col, width, text, font)] = laid
                static, dx, dy = laid
                painter.drawStaticText(QPointF(x + dx, y + dy), static)
            if font is not None:
                painter.setFont(self.font())
            if focused and current.row() == row:
                self._paint_focused(painter, current, row, y, height, columns, is_selected)
            y += row_height
            self.painted_rows += 1
        if grid:
            self._paint_grid(painter, area, first, last, row_height, columns)

    def _paint_focused(self, painter, current, row, y, height, columns, is_selected) -> None:
        """The focused cell, with its focus frame, as Qt's own delegate draws it."""
        for col, x, width in columns:
            if col == current.column():
                option = QStyleOptionViewItem()
                self.initViewItemOption(option)
                option.rect = QRect(x, y, width, height)
                option.state |= QStyle.StateFlag.State_HasFocus
                if is_selected:
                    option.state |= QStyle.StateFlag.State_Selected
                if row & 1 and self.alternatingRowColors():
                    option.features |= QStyleOptionViewItem.ViewItemFeature.Alternate
                self.itemDelegateForIndex(current).paint(painter, option, current)

    def _paint_grid(self, painter, area, first, last, row_height, columns) -> None:
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        colour = QColor.fromRgba(self.style().styleHint(QStyle.StyleHint.SH_Table_GridLineColor, option, self) & 0xFFFFFFFF)
        painter.setPen(QPen(colour, 0, self.gridStyle()))
        y = self.rowViewportPosition(first)
        bottom = y + (last - first + 1) * row_height - 1
        for _ in range(first, last + 1):
            y += row_height
            painter.drawLine(area.left(), y - 1, area.right(), y - 1)
        for _col, x, width in columns:
            painter.drawLine(x + width, area.top(), x + width, min(area.bottom(), bottom))

    def _lay_out(self, text: str, width: int, height: int, alignment: int, font: QFont | None = None) -> tuple:
        margin = self._margin
        if margin is None:
            margin = self._margin = self.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, self) + 1
        if font is None:
            font, fm = self.font(), self.fontMetrics()
        else:  # the row's font (bold, italic) on the table's family and size
            font = font.resolve(self.font())
            fm = QFontMetrics(font)
        room = max(0, width - 2 * margin)
        static = QStaticText(fm.elidedText(text, _ELIDE, room))  # the text itself when it fits
        static.setTextFormat(_PLAIN)
        static.prepare(font=font)
        size = static.size()
        dx = margin + max(0.0, (room - size.width()) / 2) if alignment & _CENTERED else margin
        return static, dx, int((height - size.height()) // 2)

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
