"""ThreatTableModel (the live feed) and ThreatFilterModel."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import Qt as GuiQt
from PySide6.QtGui import QTextDocument
from PySide6.QtTest import QAbstractItemModelTester

from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.event import EventKey, ThreatEvent, threat_event
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, THREAT_TYPE_NUMBER
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import Transport

M = ThreatTableModel
GEN = 0x1234
TS = 1_700_000_000_123_456  # .123 s


def ev(seq, severity=MEDIUM, threat_type=1, source="src", details="details", blocked=False,
       generation=GEN, ts=TS, ident=""):
    return threat_event(transport=Transport.WEBSOCKET, generation=generation, seq=seq, timestamp_unix_us=ts,
                        threat_type=threat_type, severity=severity, blocked=blocked, source=source,
                        details=details, publish_mono_ns=0, observe_mono_ns=0, wire_id=ident, exact_latency=False)


def batch(*events, generation=GEN):
    return Batch("websocket", generation, list(events))


def seqs(model):
    return [model.row_at(r).seq for r in range(model.rowCount())]


def cell(model, row, col, role=Qt.ItemDataRole.DisplayRole):
    return model.data(model.index(row, col), role)


@pytest.fixture
def model(qapp):
    m = ThreatTableModel()
    tester = QAbstractItemModelTester(m, QAbstractItemModelTester.FailureReportingMode.Fatal)
    m._tester = tester  # keep it alive for the test
    return m


def test_newest_first_across_batches(model):
    assert model.add_batch(batch(ev(1), ev(2), ev(3))) == 3
    assert seqs(model) == [3, 2, 1]
    assert model.add_batch(batch(ev(4), ev(5))) == 2
    assert seqs(model) == [5, 4, 3, 2, 1]
    assert model.add_batch(batch()) == 0
    assert model.rowCount() == 5


def test_a_threat_already_shown_is_not_added_again(model):
    """A replayed ring (reader restarted) or history restored then read again live."""
    assert model.add_batch(batch(ev(1), ev(2))) == 2
    assert model.add_batch(batch(ev(1), ev(2), ev(3))) == 1
    assert seqs(model) == [3, 2, 1]
    assert model.add_batch(batch(ev(1), generation=GEN + 1)) == 0  # the event's own generation counts
    assert model.add_batch(batch(ev(1, generation=None), generation=GEN + 1)) == 1  # another writer's seq 1
    no_seq = ev(None, ident="", details="unnumbered")
    assert model.add_batch(batch(no_seq)) == 1
    assert model.add_batch(batch(no_seq)) == 0  # no number: its content is its key, as in the history


def test_headers_and_columns(model):
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(model.columnCount())] == [
        "Time", "Severity", "Type", "Source", "Details", "Blocked", "Host"]  # Host: the fleet view's
    assert (M.TIME, M.SEVERITY, M.TYPE, M.SOURCE, M.DETAILS, M.BLOCKED, M.HOST) == (0, 1, 2, 3, 4, 5, 6)


def test_one_insert_signal_per_batch_and_bounded(model):
    model.set_max_rows(5)
    inserts, removes = [], []
    model.rowsInserted.connect(lambda parent, first, last: inserts.append((first, last)))
    model.rowsRemoved.connect(lambda parent, first, last: removes.append((first, last)))
    model.add_batch(batch(ev(1), ev(2), ev(3)))
    model.add_batch(batch(ev(4), ev(5), ev(6), ev(7)))
    assert inserts == [(0, 2), (0, 3)]
    assert removes == [(5, 6)]  # the two oldest, in one signal
    assert seqs(model) == [7, 6, 5, 4, 3]
    # a batch bigger than the table keeps its newest events
    assert model.add_batch(batch(*[ev(s) for s in range(8, 20)])) == 5
    assert seqs(model) == [19, 18, 17, 16, 15]
    model.set_max_rows(2)
    assert seqs(model) == [19, 18]


def test_display_strings(model):
    model.add_batch(batch(ev(1, severity=CRITICAL, threat_type=THREAT_TYPE_NUMBER["PathTraversal"],
                             source="mcp:fs", details="../../etc/passwd", blocked=True)))
    lt = time.localtime(TS // 1_000_000)
    assert cell(model, 0, M.TIME) == time.strftime("%H:%M:%S", lt) + ".123"
    assert cell(model, 0, M.SEVERITY) == "Critical"
    assert cell(model, 0, M.TYPE) == "PathTraversal"
    assert cell(model, 0, M.SOURCE) == "mcp:fs"
    assert cell(model, 0, M.DETAILS) == "../../etc/passwd"
    assert cell(model, 0, M.BLOCKED) == "Yes"
    model.add_batch(batch(ev(2, blocked=False, threat_type=99)))
    assert cell(model, 0, M.BLOCKED) == "No"
    assert cell(model, 0, M.TYPE) == "Unknown"
    row = cell(model, 0, M.DETAILS, M.RowRole)
    assert isinstance(row, ThreatEvent) and row.key == EventKey(GEN, 2) and row.transport == "websocket"


HOSTILE = "ad\u200bmin \u202eexe.pdf \x1b[31m <b>x</b>"


def test_hostile_text_shown_visibly(model):
    model.add_batch(batch(ev(1, source="evil\u202e", details=HOSTILE)))
    shown = cell(model, 0, M.DETAILS)
    assert shown == "ad⟨U+200B⟩min ⟨U+202E⟩exe.pdf ⟨U+001B⟩[31m <b>x</b>"
    assert "\u202e" not in shown and "\u200b" not in shown and "\x1b" not in shown
    assert cell(model, 0, M.SOURCE) == "evil⟨U+202E⟩"
    assert cell(model, 0, M.DETAILS, M.RowRole).details == HOSTILE  # raw kept


def test_long_details_elided_but_row_keeps_raw(model):
    details = "A" * 5000
    model.add_batch(batch(ev(1, details=details)))
    shown = cell(model, 0, M.DETAILS)
    assert len(shown) == 160 and shown.endswith("…")
    assert cell(model, 0, M.DETAILS, M.RowRole).details == details
    tip = cell(model, 0, M.DETAILS, Qt.ItemDataRole.ToolTipRole)
    doc = QTextDocument()
    doc.setHtml(tip)
    assert len(doc.toPlainText()) == 1000 and doc.toPlainText().endswith("…")


@pytest.mark.parametrize("details", ["<b>bold</b>", HOSTILE, "a  &amp; b <script>x</script>", "plain"])
def test_tooltip_is_literal(model, details):
    model.add_batch(batch(ev(1, details=details)))
    tip = cell(model, 0, M.DETAILS, Qt.ItemDataRole.ToolTipRole)
    # Qt will treat it as rich text (it always is) - and that rich text renders
    # exactly the visible() characters, tags included.
    assert GuiQt.mightBeRichText(tip)
    doc = QTextDocument()
    doc.setHtml(tip)
    assert doc.toPlainText() == visible(details)
    assert "<b>" not in tip


def test_severity_colours_differ(model):
    model.add_batch(batch(*[ev(s, severity=s) for s in (LOW, MEDIUM, HIGH, CRITICAL)]))
    backgrounds = {cell(model, r, M.SEVERITY, Qt.ItemDataRole.BackgroundRole).name() for r in range(4)}
    assert len(backgrounds) == 4
    for r in range(4):
        fg = cell(model, r, M.SEVERITY, Qt.ItemDataRole.ForegroundRole)
        bg = cell(model, r, M.SEVERITY, Qt.ItemDataRole.BackgroundRole)
        assert fg.name() != bg.name()
    assert cell(model, 0, M.DETAILS, Qt.ItemDataRole.BackgroundRole) is None
    left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
    assert cell(model, 0, M.DETAILS, Qt.ItemDataRole.TextAlignmentRole) == int(left.value)
    assert cell(model, 0, M.SEVERITY, Qt.ItemDataRole.TextAlignmentRole) == int(Qt.AlignmentFlag.AlignCenter.value)


def test_row_for_key_after_inserts_and_trimming(model):
    model.set_max_rows(4)
    model.add_batch(batch(ev(1), ev(2), ev(3)))
    assert model.row_for_key(EventKey(GEN, 3)) == 0
    assert model.row_for_key(EventKey(GEN, 1)) == 2
    model.add_batch(batch(ev(4), ev(5)))
    assert model.row_for_key(EventKey(GEN, 5)) == 0
    assert model.row_for_key(EventKey(GEN, 2)) == 3
    assert model.row_for_key(EventKey(GEN, 1)) is None  # trimmed
    assert model.row_for_key(EventKey(999, 5)) is None
    for key in [EventKey(GEN, s) for s in (2, 3, 4, 5)]:
        r = model.row_for_key(key)
        assert model.row_at(r).key == key
    # unnumbered WebSocket threats are found by their content key
    unnumbered = ev(None, generation=None, ident="abc")
    model.add_batch(Batch("websocket", None, [unnumbered]))
    assert unnumbered.key.digest is not None and model.row_for_key(unnumbered.key) == 0
    assert model.row_for_key(EventKey(GEN, 5)) == 1
    model.clear()
    assert model.rowCount() == 0 and model.row_for_key(unnumbered.key) is None
    model.add_batch(batch(ev(9)))
    assert model.row_for_key(EventKey(GEN, 9)) == 0


@pytest.fixture
def filtered(model):
    model.add_batch(batch(
        ev(1, severity=LOW, threat_type=1, source="cli", details="hidden\u200bword"),
        ev(2, severity=MEDIUM, threat_type=2, source="mcp", details="invoice \u202efdp.exe"),
        ev(3, severity=HIGH, threat_type=4, source="Browser", details="ignore previous (.* instructions"),
        ev(4, severity=CRITICAL, threat_type=5, source="fs", details="../../etc/passwd"),
    ))
    proxy = ThreatFilterModel()
    proxy.setSourceModel(model)
    proxy._tester = QAbstractItemModelTester(proxy, QAbstractItemModelTester.FailureReportingMode.Fatal)
    return proxy


def shown_seqs(proxy):
    return [proxy.data(proxy.index(r, 0), M.RowRole).seq for r in range(proxy.rowCount())]


def test_filter_min_severity(filtered):
    assert shown_seqs(filtered) == [4, 3, 2, 1]
    filtered.set_min_severity(HIGH)
    assert shown_seqs(filtered) == [4, 3]
    filtered.set_min_severity(LOW)
    assert shown_seqs(filtered) == [4, 3, 2, 1]


def test_filter_types(filtered):
    filtered.set_types({2, 5})
    assert shown_seqs(filtered) == [4, 2]
    filtered.set_types(set())
    assert shown_seqs(filtered) == []
    filtered.set_types(None)
    assert shown_seqs(filtered) == [4, 3, 2, 1]


def test_filter_text(filtered):
    filtered.set_text("BROWSER")  # case-insensitive, over source
    assert shown_seqs(filtered) == [3]
    filtered.set_text("passwd")  # over details
    assert shown_seqs(filtered) == [4]
    filtered.set_text("u+202e")  # the visible() form finds the RLO
    assert shown_seqs(filtered) == [2]
    filtered.set_text("U+200B")
    assert shown_seqs(filtered) == [1]
    filtered.set_text("\u202efdp")  # the raw form too
    assert shown_seqs(filtered) == [2]
    filtered.set_text("(.*")  # literal, not a regex
    assert shown_seqs(filtered) == [3]
    filtered.set_text(".*")
    assert shown_seqs(filtered) == [3]
    filtered.set_text("nothing here")
    assert shown_seqs(filtered) == []
    filtered.set_text("")
    assert shown_seqs(filtered) == [4, 3, 2, 1]


def test_filter_combined_and_live(filtered, model):
    filtered.set_min_severity(MEDIUM)
    filtered.set_text("new")
    assert shown_seqs(filtered) == []
    model.add_batch(batch(ev(5, severity=LOW, details="new low"), ev(6, severity=HIGH, details="new high")))
    assert shown_seqs(filtered) == [6]


def test_a_full_model_takes_each_batch_in_one_insert_and_one_remove(qapp):
    """A full 10,000-row table takes a batch with two signals (rows in, oldest out), never one per
    row or a reset: what keeps a flood cheap (its speed is kgmon bench --gui's business)."""
    model = ThreatTableModel(max_rows=10_000)
    proxy = ThreatFilterModel()
    proxy.setSourceModel(model)
    proxy.set_min_severity(MEDIUM)
    model.add_batch(batch(*[ev(s, severity=1 + s % 4) for s in range(10_000)]))
    assert model.rowCount() == 10_000
    inserts, removes, resets = [], [], []
    model.rowsInserted.connect(lambda parent, first, last: inserts.append((first, last)))
    model.rowsRemoved.connect(lambda parent, first, last: removes.append((first, last)))
    model.modelReset.connect(lambda: resets.append(1))
    for b in range(10):
        base = 10_000 + b * 100
        model.add_batch(batch(*[ev(base + i, severity=1 + i % 4, details="x" * 50) for i in range(100)]))
    assert model.rowCount() == 10_000
    assert model.row_at(0).seq == 10_999 and model.row_at(9_999).seq == 1_000
    assert model.row_for_key(EventKey(GEN, 10_999)) == 0 and model.row_for_key(EventKey(GEN, 999)) is None
    assert proxy.rowCount() == 7_500
    assert inserts == [(0, 99)] * 10 and removes == [(10_000, 10_099)] * 10 and not resets
