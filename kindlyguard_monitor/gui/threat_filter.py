"""Filtering and sorting the live feed: minimum severity, threat types, blocked
or allowed, and a text search. Sorting is the feed model's own (numbers for
time, severity and blocked; Python's sort, arrivals put in place by binary
search): the proxy shows the model's order. Unsorted (column -1) is the feed's
order, newest first: no comparison at all while threats arrive.

The text search is a case-insensitive *substring* (never a regex) over the
source and details, both the raw strings and their visible() forms, so
"U+202E" finds a threat carrying a right-to-left override.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.gui.threat_model import _FLAGS, ThreatTableModel
from kindlyguard_monitor.textsafe import visible


class ThreatFilterModel(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self._min_severity = 0
        self._types: frozenset[int] | None = None
        self._needle = ""  # casefolded
        self._blocked: bool | None = None  # None: blocked and allowed
        self._host: str | None = None  # the fleet view: one workstation's threats only
        self.setSortRole(ThreatTableModel.SortRole)
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseSensitive)  # sort keys are casefolded already

    # ---- settings ----

    def _changed(self, apply) -> None:
        self.beginFilterChange()
        apply()
        self.endFilterChange()

    def set_min_severity(self, severity: int) -> None:
        severity = int(severity)
        if severity != self._min_severity:
            self._changed(lambda: setattr(self, "_min_severity", severity))

    def min_severity(self) -> int:
        return self._min_severity

    def set_types(self, types: set[int] | None) -> None:
        value = None if types is None else frozenset(int(t) for t in types)
        if value != self._types:
            self._changed(lambda: setattr(self, "_types", value))

    def types(self) -> frozenset[int] | None:
        return self._types

    def set_blocked(self, blocked: bool | None) -> None:
        """True: blocked only; False: allowed only; None: both."""
        value = None if blocked is None else bool(blocked)
        if value != self._blocked:
            self._changed(lambda: setattr(self, "_blocked", value))

    def blocked(self) -> bool | None:
        return self._blocked

    def set_host(self, host: str | None) -> None:
        """The fleet view: only threats from `host` (exactly as sent); None: every host."""
        if host != self._host:
            self._changed(lambda: setattr(self, "_host", host))

    def host(self) -> str | None:
        return self._host

    def is_filtered(self) -> bool:
        return bool(self._min_severity > 1 or self._types is not None or self._blocked is not None or self._needle
                    or self._host is not None)

    def set_text(self, text: str) -> None:
        needle = (text or "").casefold()
        if needle != self._needle:
            self._changed(lambda: setattr(self, "_needle", needle))

    def text(self) -> str:
        return self._needle

    # ---- filtering ----

    def _row(self, source_row: int) -> ThreatEvent | None:
        source = self.sourceModel()
        if isinstance(source, ThreatTableModel):
            return source.row_at(source_row)
        if source is None:
            return None
        return source.data(source.index(source_row, 0), ThreatTableModel.RowRole)

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        """The feed's model sorts itself (Python's sort, arrivals put in place); the proxy
        keeps showing the model's order and only filters."""
        source = self.sourceModel()
        if isinstance(source, ThreatTableModel):
            source.sort(column, order)
        else:
            super().sort(column, order)

    # ---- painting: one call into Python per cell (see ThreatTableModel.multiData)

    def multiData(self, index: QModelIndex, span) -> None:
        source = self.sourceModel()
        if isinstance(source, ThreatTableModel):
            source.multiData(self.mapToSource(index), span)
        else:
            super().multiData(index, span)

    def flags(self, index: QModelIndex):
        return _FLAGS if index.isValid() else Qt.ItemFlag.NoItemFlags

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:
        row = self._row(source_row)
        if row is None:
            return False
        if row.severity < self._min_severity:
            return False
        if self._types is not None and row.threat_type not in self._types:
            return False
        if self._blocked is not None and bool(row.blocked) != self._blocked:
            return False
        if self._host is not None and row.host != self._host:
            return False
        needle = self._needle
        if not needle:
            return True
        for raw in (row.source, row.details):
            if needle in raw.casefold():
                return True
        for raw in (row.source, row.details):
            shown = visible(raw)
            if shown is not raw and needle in shown.casefold():
                return True
        return False
