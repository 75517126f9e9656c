"""The latency histogram, hand-painted with QPainter.

Why QPainter and not a plotting library: PySide6-Essentials has no QtCharts,
and pyqtgraph would pull numpy (~30 MB) into a tray app whose bundle budget
is 110 MiB, all for ~40 bars. A few dozen rectangles, two marker lines per
series and a log-scale axis are easily drawn by hand.

Two series share the chart, told apart by colour and a legend:

- "transport": publish -> seen by the reader;
- "to screen": publish -> row in the model.

The x axis is logarithmic from 1 µs to 1 s (decade ticks); the histogram's
fine buckets are regrouped into BINS_PER_DECADE bins per decade; p50 and p99
of each series are marked with vertical lines and labels.

set_data() only keeps a cheap snapshot (the regrouped counts and two
percentiles); all drawing happens in paintEvent, which Qt only calls while
the widget is visible.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

MIN_NS = 1_000  # 1 µs
MAX_NS = 1_000_000_000  # 1 s
DECADES = 6
BINS_PER_DECADE = 4
N_BINS = DECADES * BINS_PER_DECADE
DECADE_LABELS = ("1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s")

TRANSPORT, SCREEN = "transport", "to screen"
SERIES_COLOURS = {TRANSPORT: QColor("#1e88e5"), SCREEN: QColor("#fb8c00")}  # blue, orange


def format_ns(ns: float) -> str:
    """A latency for people: "850 ns", "12 µs", "1.5 ms", "2.0 s"."""
    ns = float(ns)
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if ns >= scale:
            v = ns / scale
            return f"{v:.1f} {unit}" if v < 10 else f"{v:.0f} {unit}"
    return f"{ns:.0f} ns"


def _bin_of(ns: float) -> int:
    if ns <= MIN_NS:
        return 0
    b = int(math.floor(math.log10(ns / MIN_NS) * BINS_PER_DECADE))
    return min(max(b, 0), N_BINS - 1)


class Series(NamedTuple):
    name: str
    bins: tuple[int, ...]  # N_BINS counts
    count: int
    p50_ns: int
    p99_ns: int


def snapshot(name: str, hist) -> Series | None:
    """Regroup `hist` (buckets()/percentile()/count) into N_BINS log bins; None when empty or absent."""
    if hist is None:
        return None
    count = int(getattr(hist, "count", 0) or 0)
    if count <= 0:
        return None
    bins = [0] * N_BINS
    for low, high, n in hist.buckets():
        mid = math.sqrt(max(1, low) * max(1, high))  # geometric middle of the bucket
        bins[_bin_of(mid)] += int(n)
    return Series(name, tuple(bins), count, int(hist.percentile(50)), int(hist.percentile(99)))


class Marker(NamedTuple):
    series: str
    label: str  # "p50" or "p99"
    ns: int
    text: str  # as drawn, e.g. "p50 12 µs"


class LatencyHistogram(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.transport_name = ""
        self.series: list[Series] = []
        self.last_markers: list[Marker] = []  # what the last paintEvent drew (for tests)
        self.last_paint_empty: bool | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 160)

    def sizeHint(self) -> QSize:
        return QSize(560, 240)

    def set_data(self, transport_name: str, transport_hist, screen_hist=None) -> None:
        self.transport_name = transport_name or ""
        self.series = [s for s in (snapshot(TRANSPORT, transport_hist), snapshot(SCREEN, screen_hist)) if s]
        self.update()

    # ---- painting ----

    def _x(self, plot: QRectF, ns: float) -> float:
        ns = min(max(ns, MIN_NS), MAX_NS)
        return plot.left() + plot.width() * math.log10(ns / MIN_NS) / DECADES

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            self._paint(p)
        finally:
            p.end()

    def _paint(self, p: QPainter) -> None:
        pal = self.palette()
        fg = pal.color(self.foregroundRole())
        p.fillRect(self.rect(), pal.color(self.backgroundRole()))
        fm = QFontMetrics(self.font())
        lh = fm.height()
        if not self.series:
            self.last_paint_empty = True
            self.last_markers = []
            p.setPen(fg)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No events yet")
            return
        self.last_paint_empty = False
        left, right = 12 + fm.horizontalAdvance("100 µs") // 2, 12 + fm.horizontalAdvance("1 s") // 2
        top, bottom = 2 * lh + 8, lh + 10  # title + marker labels above, tick labels below
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))

        # title and legend
        p.setPen(fg)
        title = f"Latency — {self.transport_name}" if self.transport_name else "Latency"
        p.drawText(QPointF(4, fm.ascent() + 2), title)
        x = self.width() - 4
        for s in reversed(self.series):
            text = f"{s.name} ({s.count})"
            w = fm.horizontalAdvance(text)
            x -= w
            p.drawText(QPointF(x, fm.ascent() + 2), text)
            x -= lh + 4
            p.fillRect(QRectF(x, 3, lh - 2, lh - 4), SERIES_COLOURS[s.name])
            x -= 10

        # axis and decade ticks
        grid = QColor(fg)
        grid.setAlpha(60)
        for d, label in enumerate(DECADE_LABELS):
            tx = plot.left() + plot.width() * d / DECADES
            p.setPen(QPen(grid, 1))
            p.drawLine(QPointF(tx, plot.top()), QPointF(tx, plot.bottom()))
            p.setPen(fg)
            w = fm.horizontalAdvance(label)
            p.drawText(QPointF(tx - w / 2, plot.bottom() + 4 + fm.ascent()), label)
        p.setPen(QPen(fg, 1))
        p.drawLine(QPointF(plot.left(), plot.bottom()), QPointF(plot.right(), plot.bottom()))

        # bars: each bin split between the series
        peak = max(max(s.bins) for s in self.series) or 1
        bin_w = plot.width() / N_BINS
        bar_w = max(1.0, (bin_w - 2) / len(self.series))
        for k, s in enumerate(self.series):
            colour = SERIES_COLOURS[s.name]
            for i, n in enumerate(s.bins):
                if n:
                    h = max(1.0, plot.height() * n / peak)
                    p.fillRect(QRectF(plot.left() + i * bin_w + 1 + k * bar_w, plot.bottom() - h, bar_w, h), colour)

        # p50 / p99 markers
        markers: list[Marker] = []
        row = 0
        for s in self.series:
            colour = SERIES_COLOURS[s.name]
            for label, ns, style in (("p50", s.p50_ns, Qt.PenStyle.DashLine), ("p99", s.p99_ns, Qt.PenStyle.DotLine)):
                text = f"{label} {format_ns(ns)}"
                mx = self._x(plot, ns)
                p.setPen(QPen(colour, 2, style))
                p.drawLine(QPointF(mx, plot.top() - 2), QPointF(mx, plot.bottom()))
                w = fm.horizontalAdvance(text)
                tx = min(max(2.0, mx - w / 2), self.width() - w - 2)
                # alternate: above the plot, then just inside it, so neighbours do not overlap
                ty = lh + 4 + fm.ascent() if row % 2 == 0 else plot.top() + fm.ascent() + 2
                p.setPen(colour)
                p.drawText(QPointF(tx, ty), text)
                markers.append(Marker(s.name, label, ns, text))
                row += 1
        self.last_markers = markers
