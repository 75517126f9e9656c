"""Painting the live feed cheaply: the model's cached cell texts and multiData(), and the
table's own one-pass paint (QStaticText laid out once per text), showing what Qt's paint shows."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from kindlyguard_monitor.event import threat_event
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.gui.threat_table import ThreatTableView
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW
from kindlyguard_monitor.vocabulary import Transport

M = ThreatTableModel
LONG = "<i>markup</i> " + "word " * 200


def ev(seq, severity=LOW, source="src", details="details", transport=Transport.SHM):
    return threat_event(transport=transport, generation=7, seq=seq, timestamp_unix_us=1_700_000_000_000_000 + seq,
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


def differing_pixels(a, b) -> int:
    assert a.size() == b.size()
    return sum(a.pixel(x, y) != b.pixel(x, y) for x in range(a.width()) for y in range(a.height()))


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


def test_one_pass_paint_shows_what_qt_paints(qapp):
    """Severity colours, alternate rows, the selected row, the focused cell, elided and centred
    texts: the table's own paint and Qt's cell-by-cell paint give the same picture."""
    events = [ev(i, severity=(LOW, CRITICAL, HIGH)[i % 3], details=LONG if i == 30 else f"d{i}") for i in range(1, 31)]
    model, proxy, view = make_view(qapp, events)
    view.selectRow(2)
    view.setFocus()
    qapp.processEvents()
    ours = view.grab().toImage()
    assert view.painted_rows > 0
    view.fast_paint = False
    painted = view.painted_rows
    theirs = view.grab().toImage()
    assert view.painted_rows == painted  # Qt painted this one
    # the same picture (a little room for anti-aliasing where a platform's fonts differ)
    assert differing_pixels(ours, theirs) < ours.width() * ours.height() // 200
    view.close()


def test_one_pass_paint_lays_each_text_out_once_as_plain_text(qapp):
    model, proxy, view = make_view(qapp, [ev(i, details=LONG if i == 300 else "details") for i in range(1, 301)])
    view.grab()
    laid_out = dict(view._laid_out)
    assert 0 < len(laid_out) <= 6 * (view.viewport().height() // view.rowHeight(0) + 2)  # a screenful, not 300 rows
    # one layout per text and width, shared by the cells showing it (one severity, two blocked values)
    assert len([key for key in laid_out if key[0] == M.SEVERITY]) == 1
    assert len([key for key in laid_out if key[0] == M.BLOCKED]) == 2
    details = [static for (col, _w, text, _font), (static, _x, _y) in laid_out.items()
               if col == M.DETAILS and text.startswith("<i>")]
    assert len(details) == 1
    static = details[0]
    assert static.textFormat() == Qt.TextFormat.PlainText  # "<i>" is shown, never taken as markup
    assert static.text().startswith("<i>markup</i>") and static.text().endswith("…")
    assert static.size().width() <= view.columnWidth(M.DETAILS)
    painted = view.painted_rows
    view.grab()
    assert view.painted_rows > painted and view._laid_out == laid_out  # painted again from the same layouts
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


def test_one_pass_paint_shows_unseen_and_restored_rows_as_qt_does(qapp):
    """Unseen rows bold (with their dot), restored rows italic and muted with their date: the
    table's own paint and Qt's cell-by-cell paint give the same picture (issue 14, item 2 and 4)."""
    events = [ev(i, severity=(LOW, CRITICAL, HIGH)[i % 3], transport=Transport.HISTORY if i <= 4 else Transport.SHM)
              for i in range(1, 11)]  # a screenful: the restored rows (set below this session's) in view
    unseen = {e.key for e in events if e.seq % 2}
    model, proxy, view = make_view(qapp, [])
    model.is_unseen = unseen.__contains__
    model.add_events(events)
    qapp.processEvents()
    fonts = [model.data(model.index(r, M.TIME), Qt.ItemDataRole.FontRole) for r in range(model.rowCount())]
    assert any(f is not None and f.bold() for f in fonts) and any(f is not None and f.italic() for f in fonts)
    ours = view.grab().toImage()
    painted = view.painted_rows
    assert painted > 0
    view.fast_paint = False
    theirs = view.grab().toImage()
    assert view.painted_rows == painted  # Qt painted this one
    assert differing_pixels(ours, theirs) < ours.width() * ours.height() // 200
    # seen now: the cached cells are made again, plain
    unseen.clear()
    model.seen_changed(None)
    view.fast_paint = True
    plain = view.grab().toImage()
    assert differing_pixels(plain, ours) > 0
    view.fast_paint = False
    assert differing_pixels(plain, view.grab().toImage()) < ours.width() * ours.height() // 200
    view.close()
