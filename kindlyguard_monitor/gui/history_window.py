"""The History window: search the whole threat history, page through it, export it.

Every query runs on one worker thread (most first pages take milliseconds
through the history's indexes, but a one- or two-character text that
matches little scans the table: the window never waits for it);
answers come back as Qt signals and an answer to an older search is dropped.
Pages are keyset pages from kindlyguard_monitor.history.query (200 rows; the next one is read
when the table is scrolled to its end), so page 1,000 costs what page 1 does.
Export writes the whole current search, not just the rows loaded, as CSV or
JSON (kindlyguard_monitor.history.export) on the same worker.

Threat text is shown exactly as in the live feed: plain, escaped, elided in
the table and whole in the details pane.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import itertools
import logging
import os

from PySide6.QtCore import QDateTime, QModelIndex, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (QComboBox, QDateTimeEdit, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSplitter, QTableView, QVBoxLayout, QWidget)

from kindlyguard_monitor.gui.details_pane import DetailsPane
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.gui.threat_table import size_columns
from kindlyguard_monitor.history import export as history_export
from kindlyguard_monitor.history import query
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import SEVERITIES, THREAT_TYPES, local_time

log = logging.getLogger(__name__)

PAGE_ROWS = 200
MAX_HOLES = 10_000  # gap records summed for the status line
TIME_RANGES = (  # label, seconds back (None: all)
    ("Any time", None),
    ("Last hour", 3600),
    ("Last 24 hours", 86400),
    ("Last 7 days", 7 * 86400),
    ("Last 30 days", 30 * 86400),
)
CUSTOM_RANGE = -1  # the period combo's "From … to …": the two date-time fields


def local_date_time(timestamp_unix_us: int) -> str:
    """A stored threat's local date and time: YYYY-MM-DD HH:MM:SS.mmm."""
    try:
        day = datetime.datetime.fromtimestamp(int(timestamp_unix_us) / 1e6).strftime("%Y-%m-%d ")
    except (OverflowError, OSError, ValueError):
        day = ""
    return day + local_time(timestamp_unix_us)


class HistoryPageModel(ThreatTableModel):
    """The feed's columns and formatting over pages of stored threats, oldest at the bottom."""

    def set_rows(self, threats) -> None:
        self.beginResetModel()
        self._rows = [t.event() for t in threats]
        self.endResetModel()

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and index.isValid() and index.column() == self.TIME:
            return local_date_time(self._rows[index.row()].timestamp_unix_us)  # history spans days
        return super().data(index, role)

    def append_rows(self, threats) -> None:
        if not threats:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(threats) - 1)
        self._rows.extend(t.event() for t in threats)
        self.endInsertRows()


class _Answers(QObject):
    """Carries the worker's answers to the GUI thread (queued signals)."""

    page = Signal(int, object, bool)  # search number, Page, first page
    counted = Signal(int, int, object)  # search number, rows matching, (holes, missed, corrupt) in the period
    exported = Signal(str)  # message
    failed = Signal(int, str)  # search number (0: export), message


class HistoryWindow(QWidget):
    def __init__(self, history_path, parent=None, fleet: bool = False) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.fleet = fleet  # the fleet view's history: a Host column and a host filter
        self.setWindowTitle("KindlyGuard Monitor — Fleet history" if fleet else "KindlyGuard Monitor — History")
        self.resize(1000, 640)
        self.history_path = str(history_path)
        self._start_worker()
        self._make_filters()
        self._make_table()
        self._lay_out()
        self._connect_signals()

    def _start_worker(self) -> None:
        """The query thread, the signals that bring its answers back, and the search state."""
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kgmon-history-query")
        self._answers = _Answers(self)
        self._answers.page.connect(self._on_page)
        self._answers.counted.connect(self._on_count)
        self._answers.exported.connect(self._on_exported)
        self._answers.failed.connect(self._on_failed)
        self._numbers = itertools.count(1)
        self._search = 0  # number of the newest search
        self._filter = query.Filter()
        self._cursor: query.Cursor | None = None
        self._loading = False
        self.matching: int | None = None
        self.holes = (0, 0, 0)  # gap records in the period: count, missed, corrupt

    def _make_filters(self) -> None:
        """The filter row: text, source, severity, type, blocked, period (and its custom range)."""
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("Text in source or details (exact characters, no wildcards)")
        self.source = QLineEdit(self)
        self.source.setPlaceholderText("Source (exact)")
        self.host = QLineEdit(self)
        self.host.setPlaceholderText("Host (exact)")
        self.host.setVisible(self.fleet)
        self.severity = QComboBox(self)
        for number in range(1, 5):
            self.severity.addItem(f"≥ {SEVERITIES[number]}", number)
        self.type = QComboBox(self)
        self.type.addItem("All types", None)
        for number, name in enumerate(THREAT_TYPES):
            self.type.addItem(name, number)
        self.blocked = QComboBox(self)
        for label, value in (("Blocked or not", None), ("Blocked", True), ("Not blocked", False)):
            self.blocked.addItem(label, value)
        self.period = QComboBox(self)
        for label, seconds in TIME_RANGES:
            self.period.addItem(label, seconds)
        self.period.addItem("From … to …", CUSTOM_RANGE)
        now = QDateTime.currentDateTime()
        self.since = QDateTimeEdit(now.addDays(-1), self)
        self.until = QDateTimeEdit(now.addSecs(3600), self)
        for edit, tip in ((self.since, "from (local time, inclusive)"), (self.until, "to (local time, exclusive)")):
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
            edit.setCalendarPopup(True)
            edit.setToolTip(tip)
            edit.setVisible(False)

    def _make_table(self) -> None:
        """The results table, the details pane, the status line and the export buttons."""
        self.export_csv = QPushButton("Export CSV…", self)
        self.export_json = QPushButton("Export JSON…", self)
        self.status = QLabel("", self)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.model = HistoryPageModel(parent=self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        size_columns(self.table, local_date_time(0))  # Type and Source not cut, Blocked in view
        self.table.setColumnHidden(self.model.HOST, not self.fleet)
        self.table.setWordWrap(False)
        self.details = DetailsPane(self)

    def _lay_out(self) -> None:
        filters = QHBoxLayout()
        for w in (self.text, self.source, self.host, self.severity, self.type, self.blocked, self.period, self.since,
                  self.until):
            filters.addWidget(w)
        actions = QHBoxLayout()
        actions.addWidget(self.status, 1)
        actions.addWidget(self.export_csv)
        actions.addWidget(self.export_json)
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(split, 1)
        layout.addLayout(actions)

    def _connect_signals(self) -> None:
        """Typing searches after a pause, a choice at once; scrolling to the end loads the next page."""
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(250)
        self._typing.timeout.connect(self.search)
        self.text.textChanged.connect(lambda _t: self._typing.start())
        self.source.textChanged.connect(lambda _t: self._typing.start())
        self.host.textChanged.connect(lambda _t: self._typing.start())
        for edit in (self.since, self.until):
            edit.dateTimeChanged.connect(lambda _d: self._typing.start())
        for combo in (self.severity, self.type, self.blocked, self.period):
            combo.currentIndexChanged.connect(lambda _i: self.search())
        self.table.verticalScrollBar().valueChanged.connect(self._maybe_more)
        self.table.selectionModel().currentRowChanged.connect(self._row_selected)
        self.export_csv.clicked.connect(lambda: self.ask_export("csv"))
        self.export_json.clicked.connect(lambda: self.ask_export("json"))

    # -- searching

    def current_filter(self) -> query.Filter:
        seconds = self.period.currentData()
        custom = seconds == CUSTOM_RANGE
        self.since.setVisible(custom)
        self.until.setVisible(custom)
        now_us = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1_000_000)
        kind = self.type.currentData()
        if custom:
            since_us = self.since.dateTime().toMSecsSinceEpoch() * 1000
            until_us = self.until.dateTime().toMSecsSinceEpoch() * 1000
        else:
            since_us = None if seconds is None else now_us - int(seconds) * 1_000_000
            until_us = None
        return query.Filter(
            text=self.text.text(),
            types=frozenset() if kind is None else frozenset({kind}),
            min_severity=int(self.severity.currentData()),
            blocked=self.blocked.currentData(),
            source=self.source.text() or None,
            since_us=since_us,
            until_us=until_us,
            host=(self.host.text() or None) if self.fleet else None,
        )

    @Slot()
    def search(self) -> None:
        """Start a new search with the filters shown (the first page, and the count)."""
        self._typing.stop()
        self._search = number = next(self._numbers)
        self._filter = f = self.current_filter()
        self._cursor, self._loading, self.matching = None, True, None
        self.status.setText("Searching…")
        path, answers = self.history_path, self._answers

        def first_page():
            try:
                answers.page.emit(number, query.search(path, f, PAGE_ROWS), True)
                holes = query.gaps(path, f.since_us, f.until_us, limit=MAX_HOLES)
                answers.counted.emit(number, query.count(path, f),
                                     (len(holes), sum(g.missed for g in holes), sum(g.corrupt for g in holes)))
            except Exception as exc:  # a missing or locked file: said in the window, never raised into Qt
                answers.failed.emit(number, f"cannot search the history: {exc}")

        self._worker.submit(first_page)

    @Slot()
    def _maybe_more(self, *_args) -> None:
        bar = self.table.verticalScrollBar()
        if self._cursor is None or self._loading or bar.value() < bar.maximum() - 5:
            return
        self.fetch_more()

    def fetch_more(self) -> bool:
        """Load the next page of the current search; False when there is none (or one is loading)."""
        if self._cursor is None or self._loading:
            return False
        self._loading = True
        number, f, cursor, path, answers = self._search, self._filter, self._cursor, self.history_path, self._answers

        def next_page():
            try:
                answers.page.emit(number, query.search(path, f, PAGE_ROWS, before=cursor), False)
            except Exception as exc:
                answers.failed.emit(number, f"cannot read the next page: {exc}")

        self._worker.submit(next_page)
        return True

    @Slot(int, object, bool)
    def _on_page(self, number: int, page, first: bool) -> None:
        if number != self._search:
            return  # an answer to a search the user has since changed
        if first:
            self.model.set_rows(page.rows)
            self.details.show_row(None)
        else:
            self.model.append_rows(page.rows)
        self._cursor, self._loading = page.next_cursor, False
        self._show_status()

    @Slot(int, int, object)
    def _on_count(self, number: int, matching: int, holes) -> None:
        if number == self._search:
            self.matching, self.holes = matching, holes
            self._show_status()

    def _show_status(self) -> None:
        shown = self.model.rowCount()
        if self.matching is None:
            self.status.setText(f"{shown:,} shown…")
            return
        text = f"{self.matching:,} threat{'s' if self.matching != 1 else ''} match; {shown:,} shown"
        count, missed, corrupt = self.holes
        if count:  # the history knows it is incomplete here: say so next to every result
            more = "+" if count >= MAX_HOLES else ""
            text += (f" · known holes in this period: {count:,}{more} "
                     f"({missed:,} missed, {corrupt:,} corrupt events never stored)")
        self.status.setText(text)

    @Slot(int, str)
    def _on_failed(self, number: int, message: str) -> None:
        if number in (0, self._search):
            self._loading = False
            self.status.setText(visible(message))  # a path and SQLite's words
            log.warning("history: %s", message)

    @Slot()
    def _row_selected(self, current: QModelIndex, _previous=None) -> None:
        self.details.show_row(self.model.row_at(current.row()) if current.isValid() else None)

    # -- export

    def ask_export(self, fmt: str) -> None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        suggested = os.path.join(os.path.expanduser("~"), f"kindlyguard-threats-{stamp}.{fmt}")
        kind = "CSV (*.csv)" if fmt == "csv" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, "Export the threats this search finds", suggested, kind)
        if path:
            self.export_to(path, fmt)

    def export_to(self, path: str, fmt: str) -> None:
        """Write every threat the current search finds (not only the rows loaded) to path."""
        f, source, answers = self._filter, self.history_path, self._answers
        self.status.setText(visible(f"Exporting to {path}…"))

        def run():
            tmp = path + ".part"
            try:
                with open(tmp, "w", encoding="utf-8", newline="") as out:
                    n = history_export.export(source, f, out, fmt)
                os.replace(tmp, path)  # a half-written export never has the real name
                answers.exported.emit(f"Exported {n:,} threat{'s' if n != 1 else ''} to {path}")
            except Exception as exc:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                answers.failed.emit(0, f"export to {path} failed: {exc}")

        self._worker.submit(run)

    @Slot(str)
    def _on_exported(self, message: str) -> None:
        self.status.setText(visible(message))
        log.info("history: %s", message)

    # -- life cycle

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.search()  # what is stored now

    def close_worker(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
