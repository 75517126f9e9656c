"""The live threat feed as a Qt table model: newest first, bounded.

Rows are the immutable ThreatEvents (kindlyguard_monitor/event.py) holding the
raw, untrusted strings as they arrived, each found by its EventKey; only what
is *shown* goes through kindlyguard_monitor.textsafe.visible(), so a
right-to-left override, a zero-width space or an ANSI escape appears as a
marker such as ⟨U+202E⟩ and a filter can still match the raw text.

What needs the user (issue 14 items 2 and 4): a row the user has not seen
yet (`is_unseen`, the feed's answer) is bold with a dot before its time, and
says "Unseen" to a screen reader; a row restored from the history at start
(delivered by Transport.HISTORY) shows its date, is muted, and stays below
this session's rows whichever column sorts them.

What a painted cell shows (text, colours, alignment, font, made once per row): row_cells.py;
how a row looks beyond its text (the marks, fonts and plain tooltips): row_look.py.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from kindlyguard_monitor.event import EventKey, ThreatEvent
from kindlyguard_monitor.gui import row_cells
from kindlyguard_monitor.gui.row_cells import ALIGN, ALIGNMENTS, BACKGROUND, DISPLAY, FONT, FOREGROUND, RowCells
from kindlyguard_monitor.gui.row_look import RESTORED_TIP, date_time, plain_tooltip, restored
from kindlyguard_monitor.threats import local_time, severity_level, threat_type_name
from kindlyguard_monitor.vocabulary import DEFAULT_FEED_SIZE

DEFAULT_MAX_ROWS = DEFAULT_FEED_SIZE
_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren


class ThreatTableModel(QAbstractTableModel):
    TIME, SEVERITY, TYPE, SOURCE, DETAILS, BLOCKED, HOST = (row_cells.TIME, row_cells.SEVERITY, row_cells.TYPE,
                                                            row_cells.SOURCE, row_cells.DETAILS, row_cells.BLOCKED,
                                                            row_cells.HOST)
    HEADERS = row_cells.HEADERS
    RowRole = Qt.ItemDataRole.UserRole + 1
    SortRole = Qt.ItemDataRole.UserRole + 2  # what a column sorts by: numbers for time, severity, blocked

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, parent=None):
        super().__init__(parent)
        self._max_rows = max(1, int(max_rows))
        self._rows: list[ThreatEvent] = []  # newest first
        # key -> insertion number; row index = (self._inserted - 1) - number.
        self._numbers: dict[EventKey, int] = {}
        self._inserted = 0
        # Sorted by a column (sort()): the rows in that order, their sort keys beside them
        # (arrivals are put in place by binary search), and key -> row rebuilt when asked.
        self._sort_column = -1  # -1: the feed's order, newest first
        self._sort_descending = False
        self._sort_keys: list | None = None
        self._row_of: dict[EventKey, int] | None = None
        # What a painted row shows, made once per row when it is first painted (never for rows
        # a flood pushes out unseen).
        self._cells = RowCells()
        # Has the user not seen this threat yet? (the window sets it to the feed's answer)
        self.is_unseen = lambda key: False

    # ---- feeding ----

    def is_shown(self, ev: ThreatEvent) -> bool:
        """Is this threat already in the table (by its key)?"""
        return ev.key in self._numbers

    def add_events(self, events: list[ThreatEvent]) -> int:
        """Insert events (oldest first, as delivered) at the top; return how many rows were added."""
        if not events:
            return 0
        events = events[-self._max_rows:]  # more events than the table holds: the newest
        numbers = self._numbers
        new: list[ThreatEvent] = []
        for ev in reversed(events):
            if ev.key in numbers:  # already shown (restored from history, or a reader restarted on the ring)
                continue
            new.append(ev)
        n = len(new)
        if not n:
            return 0
        if self._sort_keys is not None:
            return self._add_sorted(new)
        self.beginInsertRows(QModelIndex(), 0, n - 1)
        self._rows[0:0] = new
        self._inserted += n
        last = self._inserted - 1
        for i, row in enumerate(new):  # new[0] is the newest: number `last`
            numbers[row.key] = last - i
        self.endInsertRows()
        self._trim()
        return n

    def add_batch(self, batch) -> int:
        """add_events(batch.events)."""
        return self.add_events(batch.events)

    def _trim(self) -> None:
        count = len(self._rows)
        if count <= self._max_rows:
            return
        if self._sort_keys is not None:
            self._trim_sorted()
            return
        self.beginRemoveRows(QModelIndex(), self._max_rows, count - 1)
        last = self._inserted - 1
        for i in range(self._max_rows, count):
            key = self._rows[i].key
            if self._numbers.get(key) == last - i:  # not since reused by a newer row
                del self._numbers[key]
                self._cells.drop(key)
        del self._rows[self._max_rows:]
        self.endRemoveRows()

    def set_max_rows(self, n: int) -> None:
        self._max_rows = max(1, int(n))
        self._trim()

    def max_rows(self) -> int:
        return self._max_rows

    def clear(self) -> None:
        self.beginResetModel()
        self._rows = []
        self._sort_keys = None if self._sort_keys is None else []
        self._row_of = None
        self._numbers = {}
        self._cells.clear()
        self._inserted = 0
        self.endResetModel()

    # ---- lookups ----

    def row_for_key(self, key: EventKey) -> int | None:
        if self._sort_keys is not None:
            if self._row_of is None:
                self._row_of = {row.key: i for i, row in enumerate(self._rows)}
            return self._row_of.get(key)
        number = self._numbers.get(key)
        if number is None:
            return None
        row = self._inserted - 1 - number
        return row if 0 <= row < len(self._rows) else None

    def row_at(self, row: int) -> ThreatEvent:
        return self._rows[row]

    # ---- sorting: in the model, with Python's sort (the proxy's would call data() twice
    # per comparison: seconds for 10 000 rows); the proxy shows the model's order

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        column = int(column)
        self.layoutAboutToBeChanged.emit()
        persistent = self.persistentIndexList()
        rows = self._rows
        held = [rows[i.row()] if 0 <= i.row() < len(rows) else None for i in persistent]
        self._sort_column = column
        self._sort_descending = order == Qt.SortOrder.DescendingOrder
        self._row_of = None
        if 0 <= column < len(self.HEADERS):
            # newest first among equals: sort the feed order (newest first) stably
            numbers = self._numbers
            rows.sort(key=lambda r: numbers[r.key], reverse=True)
            keys = [self._grouped_key(r, column) for r in rows]
            order_ = sorted(range(len(rows)), key=keys.__getitem__, reverse=self._sort_descending)
            self._rows = [rows[i] for i in order_]
            self._sort_keys = [keys[i] for i in order_]
        else:
            numbers = self._numbers
            rows.sort(key=lambda r: numbers[r.key], reverse=True)
            self._sort_column = -1
            self._sort_keys = None
        where = {r.key: i for i, r in enumerate(self._rows)}
        self.changePersistentIndexList(
            persistent, [QModelIndex() if r is None else self.index(where[r.key], i.column())
                         for r, i in zip(held, persistent)])
        self.layoutChanged.emit()

    def sort_column(self) -> int:
        return self._sort_column

    def _position(self, key) -> int:
        """Where a new row with sort key `key` goes: before the rows equal to it (newest first)."""
        keys = self._sort_keys
        lo, hi = 0, len(keys)
        if self._sort_descending:
            while lo < hi:
                mid = (lo + hi) // 2
                if keys[mid] > key:
                    lo = mid + 1
                else:
                    hi = mid
        else:
            while lo < hi:
                mid = (lo + hi) // 2
                if keys[mid] < key:
                    lo = mid + 1
                else:
                    hi = mid
        return lo

    def _add_sorted(self, new: list[ThreatEvent]) -> int:
        """Arrivals (newest first) each inserted in sorted place; the oldest rows over the budget dropped."""
        column, rows, keys, numbers = self._sort_column, self._rows, self._sort_keys, self._numbers
        for ev in reversed(new):  # oldest first: each newer one lands before the equal older ones
            key = self._grouped_key(ev, column)
            pos = self._position(key)
            self.beginInsertRows(QModelIndex(), pos, pos)
            rows.insert(pos, ev)
            keys.insert(pos, key)
            numbers[ev.key] = self._inserted
            self._inserted += 1
            self.endInsertRows()
        self._row_of = None
        self._trim()
        return len(new)

    def _trim_sorted(self) -> None:
        cutoff = self._inserted - self._max_rows  # insertion numbers below it are the oldest
        numbers = self._numbers
        doomed = [i for i, r in enumerate(self._rows) if numbers[r.key] < cutoff]
        while doomed:  # contiguous runs, from the bottom
            end = doomed.pop()
            start = end
            while doomed and doomed[-1] == start - 1:
                start = doomed.pop()
            self.beginRemoveRows(QModelIndex(), start, end)
            for r in self._rows[start:end + 1]:
                del numbers[r.key]
                self._cells.drop(r.key)
            del self._rows[start:end + 1]
            del self._sort_keys[start:end + 1]
            self.endRemoveRows()
        self._row_of = None

    def _grouped_key(self, row: ThreatEvent, col: int) -> tuple:
        """The sort key behind this session's rows or the restored ones: restored rows stay
        below this session's in either direction."""
        group = restored(row) != self._sort_descending
        return group, self.sort_key(row, col)

    def seen_changed(self, key: EventKey | None = None) -> None:
        """The seen state of one threat (or of all, None) changed: redraw its row (or every row)."""
        if key is None:
            self._cells.clear()  # the time's dot and the font are made again at the next paint
            first, last = 0, len(self._rows) - 1
        else:
            self._cells.drop(key)
            first = last = self.row_for_key(key)
            if first is None:
                return
        if last >= first:
            self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.HEADERS) - 1),
                                  [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.FontRole,
                                   Qt.ItemDataRole.AccessibleTextRole, Qt.ItemDataRole.ToolTipRole])

    def sort_key(self, row: ThreatEvent, col: int):
        """What column `col` sorts by: numbers for time, severity and blocked; casefolded text."""
        if col == self.TIME:
            return row.timestamp_unix_us
        if col == self.SEVERITY:
            return severity_level(row.severity)
        if col == self.TYPE:
            return threat_type_name(row.threat_type)
        if col == self.SOURCE:
            return row.source.casefold()
        if col == self.DETAILS:
            return row.details.casefold()
        if col == self.BLOCKED:
            return 1 if row.blocked else 0
        if col == self.HOST:
            return row.host.casefold()
        return None

    # ---- Qt model ----

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if (orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole
                and 0 <= section < len(self.HEADERS)):
            return self.HEADERS[section]
        return None

    def flags(self, index):
        return _FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    # ---- painting: what a cell shows, made once per row

    def row_cells(self, r: int) -> tuple | None:
        """(texts, backgrounds, foregrounds, alignments, font) of row `r`, one per column but the
        row's font (None: the table's), for the table's paint; None outside the table."""
        if not 0 <= r < len(self._rows):
            return None
        cells = self._cells.of(self._rows[r], self.is_unseen)
        return cells[DISPLAY], cells[BACKGROUND], cells[FOREGROUND], ALIGNMENTS, cells[FONT]

    def multiData(self, index: QModelIndex, span) -> None:
        """Every role a delegate paints a cell with, in one call (Qt's default asks data()
        once per role: seven calls into Python per cell, each painted cell)."""
        r, col = index.row(), index.column()
        if not (0 <= r < len(self._rows)) or not (0 <= col < len(self.HEADERS)) or not index.isValid():
            for d in span:
                d.clearData()
            return
        cells = self._cells.of(self._rows[r], self.is_unseen)
        for d in span:
            role = d.role()
            values = cells.get(role)
            if values is None:
                d.clearData()
            elif role == FONT:  # one font for the whole row
                d.setData(values)
            else:
                d.setData(values[col])

    def data(self, index: QModelIndex | QPersistentModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r, col = index.row(), index.column()
        if not (0 <= r < len(self._rows)):
            return None
        row = self._rows[r]
        if role == DISPLAY:
            return self._cells.of(row, self.is_unseen)[DISPLAY][col] if 0 <= col < len(self.HEADERS) else None
        if role == self.RowRole:
            return row
        if role == self.SortRole:
            return self.sort_key(row, col)
        if role == FONT:
            return self._cells.of(row, self.is_unseen)[FONT]
        if role == Qt.ItemDataRole.AccessibleTextRole and col == self.TIME:
            return ("Unseen, " if self.is_unseen(row.key) else "") + (
                f"from the history, {date_time(row.timestamp_unix_us)}" if restored(row)
                else local_time(row.timestamp_unix_us))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == self.TIME:
                tip = RESTORED_TIP if restored(row) else "This session"
                return tip + (" · not seen yet (open it, or mark all as seen)" if self.is_unseen(row.key) else "")
            if col == self.DETAILS:
                return plain_tooltip(row.details)
            if col == self.SOURCE:
                return plain_tooltip(row.source)
            if col == self.HOST:
                return plain_tooltip(row.host)
            return None
        if role in (BACKGROUND, FOREGROUND, ALIGN) and 0 <= col < len(self.HEADERS):
            return self._cells.of(row, self.is_unseen)[role][col]  # severity colours: the light or dark variant in use
        return None

