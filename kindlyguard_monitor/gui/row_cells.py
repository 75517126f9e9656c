"""What a painted row of the live feed shows, cell by cell, made once per row.

The feed's columns, and for one ThreatEvent the text, colours, alignment and
font of each of its cells: outside text through textsafe.visible(), the time
with its unseen mark (and its date when restored from the history), the
Severity cell in the palette's colours (light or dark), a restored row muted.
RowCells keeps them from a row's first paint while the row is in the table
(never made for rows a flood pushes out unseen); the table model
(threat_model.py) drops a row's cells when it leaves or its seen state changes.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont

from kindlyguard_monitor.event import EventKey, ThreatEvent
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.row_look import UNSEEN_MARK, date_time, fonts, restored
from kindlyguard_monitor.textsafe import elide, visible
from kindlyguard_monitor.threats import local_time, severity_level, severity_name, threat_type_name

TIME, SEVERITY, TYPE, SOURCE, DETAILS, BLOCKED, HOST = range(7)
HEADERS = ("Time", "Severity", "Type", "Source", "Details", "Blocked", "Host")  # Host: shown in the fleet view
DETAILS_DISPLAY_LIMIT = 160

DISPLAY = Qt.ItemDataRole.DisplayRole
ALIGN = Qt.ItemDataRole.TextAlignmentRole
BACKGROUND = Qt.ItemDataRole.BackgroundRole
FOREGROUND = Qt.ItemDataRole.ForegroundRole
FONT = Qt.ItemDataRole.FontRole
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
_CENTER = Qt.AlignmentFlag.AlignCenter
ALIGNMENTS = tuple(int((_CENTER if col in (SEVERITY, BLOCKED) else _LEFT).value) for col in range(len(HEADERS)))

IsUnseen = Callable[[EventKey], bool]


def time_text(row: ThreatEvent, unseen: bool) -> str:
    """Time only for this session's threats; a restored one's date too; a dot when unseen."""
    text = date_time(row.timestamp_unix_us) if restored(row) else local_time(row.timestamp_unix_us)
    return UNSEEN_MARK + text if unseen else text


def display_texts(row: ThreatEvent, unseen: bool) -> list[str]:
    """Each column's text, as shown (outside text through visible(); the time with its
    unseen mark, and its date when restored)."""
    return [time_text(row, unseen), severity_name(row.severity), threat_type_name(row.threat_type),
            visible(row.source), elide(visible(row.details), DETAILS_DISPLAY_LIMIT),
            "Yes" if row.blocked else "No", visible(row.host)]


def data_font(row: ThreatEvent, unseen: bool) -> QFont | None:
    """Bold while unseen, italic when restored from the history; None: the table's own."""
    old = restored(row)
    return fonts()[2] if unseen and old else fonts()[0] if unseen else fonts()[1] if old else None


class RowCells:
    """key -> {role: [value per column]} (the font: one per row) for the roles a cell is painted with."""

    def __init__(self) -> None:
        self._cells: dict[EventKey, dict] = {}
        self._colours: tuple = (None, {})  # (the palette in use, level -> (background, text) QColors)

    def of(self, row: ThreatEvent, is_unseen: IsUnseen) -> dict:
        """The row's cells, made on its first paint and kept while it is in the table
        (the colours: while the palette is the same)."""
        cells = self._cells.get(row.key)
        if cells is None:
            unseen = is_unseen(row.key)
            cells = self._cells[row.key] = {DISPLAY: display_texts(row, unseen), ALIGN: ALIGNMENTS,
                                            FONT: data_font(row, unseen)}
        pal = palette.current()
        if cells.get("palette") is not pal:
            bg, fg = self._severity_qcolours(severity_level(row.severity), pal)
            others = palette.qcolor(pal.mid) if restored(row) else None  # muted: from before this session
            cells[BACKGROUND] = (None, bg) + (None,) * (len(HEADERS) - 2)
            cells[FOREGROUND] = (others, fg) + (others,) * (len(HEADERS) - 2)
            cells["palette"] = pal
        return cells

    def drop(self, key: EventKey) -> None:
        """Forget a row's cells (it left the table, or they are to be made again)."""
        self._cells.pop(key, None)

    def clear(self) -> None:
        self._cells.clear()

    def _severity_qcolours(self, level: int, pal) -> tuple:
        if self._colours[0] is not pal:
            self._colours = (pal, {})
        colours = self._colours[1].get(level)
        if colours is None:
            bg, fg = palette.severity_colours(level, pal)
            colours = self._colours[1][level] = (palette.qcolor(bg), palette.qcolor(fg))
        return colours
