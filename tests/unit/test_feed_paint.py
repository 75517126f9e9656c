"""Painting the live feed cheaply: the model's multiData() and cached cell texts, and the
table's CellDelegate (QStaticText laid out once per cell), showing what Qt's own delegate shows."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QStaticText
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from kindlyguard_monitor.event import threat_event
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.gui.threat_table import ThreatTableView
from kindlyguard_monitor.threats import CRITICAL, LOW
from kindlyguard_monitor.vocabulary import Transport

M = ThreatTableModel


def ev(seq, severity=LOW, source="src", details="details"):
    return threat_event(transport=Transport.SHM, generation=7, seq=seq, timestamp_unix_us=int(time.time() * 1e6),
                        threat_type=seq % 8, severity=severity, blocked=bool(seq % 2), source=source,
                        details=details, publish_mono_ns=0, observe_mono_ns=0)


def make_view(qapp, events):
    model, proxy = M(), ThreatFilterModel()
    proxy.setSourceModel(model)
    view = ThreatTableView(model, proxy)
    view.resize(900, 300)
    model.add_events(events)
    view.show()
    qapp.processEvents()
    return model, proxy, view


def test_qt_delegate_reads_the_same_through_multidata(qapp):
    """Qt's delegate asks every role in one multiData() call (through the proxy): it must get what data() says."""
    model, proxy, view = make_view(qapp, [ev(1, CRITICAL, details="<b>x</b>"), ev(2, LOW)])
    qt_delegate = QStyledItemDelegate()
    for row in range(proxy.rowCount()):
        for col in range(M.columnCount(model)):
            index = proxy.index(row, col)
            option = QStyleOptionViewItem()
            qt_delegate.initStyleOption(option, index)
            assert option.text == proxy.data(index, Qt.ItemDataRole.DisplayRole)
            background = proxy.data(index, Qt.ItemDataRole.BackgroundRole)
            if col == M.SEVERITY:
                assert background is not None and option.backgroundBrush.color() == background
            else:
                assert background is None
    view.close()


def test_delegate_paints_visible_cells_as_plain_text_laid_out_once(qapp):
    long = "<i>markup</i> " + "word " * 200
    events = [ev(i, details=long if i == 300 else "details") for i in range(1, 301)]
    model, proxy, view = make_view(qapp, events)
    view.grab()
    cells = view.cells
    assert cells.painted > 0
    laid_out = dict(cells._laid_out)
    assert 0 < len(laid_out) <= 6 * (view.viewport().height() // view.rowHeight(0) + 2)  # a screenful, not 300 rows
    # one layout per text and width, shared by the cells showing it (two severities, two blocked values)
    assert len([key for key in laid_out if key[0] == M.SEVERITY]) == 1
    assert len([key for key in laid_out if key[0] == M.BLOCKED]) == 2
    details = [static for (col, _w, text), (static, _x, _y) in laid_out.items()
               if col == M.DETAILS and text.startswith("<i>")]
    assert len(details) == 1
    static: QStaticText = details[0]
    assert static.textFormat() == Qt.TextFormat.PlainText  # "<i>" is shown, never taken as markup
    assert static.text().startswith("<i>markup</i>") and static.text().endswith("…")
    assert static.size().width() <= view.columnWidth(M.DETAILS)
    painted = cells.painted
    view.grab()
    assert cells.painted > painted and cells._laid_out == laid_out  # painted again from the same layouts
    view.close()


def test_severity_colours_follow_the_palette(qapp):
    model = M()
    model.add_events([ev(1, CRITICAL)])
    index = model.index(0, M.SEVERITY)
    light = model.data(index, Qt.ItemDataRole.BackgroundRole)
    try:
        palette.set_current(palette.DARK_PALETTE)
        dark = model.data(index, Qt.ItemDataRole.BackgroundRole)
    finally:
        palette.set_current(palette.LIGHT_PALETTE)
    assert light == palette.qcolor(palette.LIGHT_PALETTE.severity[CRITICAL][0])
    assert dark == palette.qcolor(palette.DARK_PALETTE.severity[CRITICAL][0])
    assert model.data(index, Qt.ItemDataRole.BackgroundRole) == light
