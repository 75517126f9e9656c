"""The latency histogram, hand-painted with QPainter.

Why QPainter and not a plotting library: PySide6-Essentials has no QtCharts,
and pyqtgraph would pull numpy (~30 MB) into a tray app whose bundle budget
is 110 MiB, all for ~40 bars. A few dozen rectangles, two marker lines per
series and a log-scale axis are easily drawn by hand.

Two series share the chart, told apart by colour and a one-line legend at
the bottom that says what each measures:

- "transport": the Shield publishes a threat -> the monitor has received it;
- "to screen": the Shield publishes a threat -> its row is on the screen.

The x axis is logarithmic from 1 µs to 1 s (decade ticks); the histogram's
fine buckets are regrouped into BINS_PER_DECADE bins per decade; the y axis
counts events per bin (round ticks). p50 and p99 of each series are marked
with vertical lines inside the plot and labelled in a band above it.

No text ever overlaps other text, a bar or a line: `layout()` is pure (a
width, a height, font metrics and the data in; every text rectangle and line
out), places percentile labels in as many lanes above the plot as needed,
keeps the y tick labels inside the plot's height, drops x tick labels that
would collide, and elides the legend to the width; paintEvent draws exactly
what it returns, and the tests check its rectangles for intersections over
many data shapes and sizes.

set_data() only keeps the histograms; the snapshot (the regrouped counts and
two percentiles) is taken when `series` is first read after it, by paintEvent,
which Qt only calls while the widget is visible: a hidden tab costs nothing.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

from PySide6.QtCore import QLineF, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from kindlyguard_monitor.gui import palette

MIN_NS = 1_000  # 1 µs
MAX_NS = 1_000_000_000  # 1 s
DECADES = 6
BINS_PER_DECADE = 4
N_BINS = DECADES * BINS_PER_DECADE
DECADE_LABELS = ("1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s")

TRANSPORT, SCREEN = "transport", "to screen"
# Series colours (bars, lines, labels): gui/palette.py, light and dark.
# What each series measures, as the legend says it (long form, then short for narrow widths).
SERIES_MEANING = {
    TRANSPORT: ("Shield publishes → monitor receives", "publish → received"),
    SCREEN: ("Shield publishes → row on screen", "publish → shown"),
}
PAD = 4  # pixels around text


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


class Text(NamedTuple):
    """One piece of text to draw: its rectangle (drawn into with `align`)."""

    kind: str  # "title", "legend", "xtick", "ytick", "yaxis", "marker", "empty"
    text: str
    rect: QRectF
    colour: str  # a series name, or "" for the foreground colour
    align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter


class Layout(NamedTuple):
    plot: QRectF  # the bars' area (nothing else is drawn inside it but grid and marker lines)
    texts: list[Text]
    lines: list[tuple[str, QLineF, Qt.PenStyle]]  # marker lines: series, line, style
    swatches: list[tuple[str, QRectF]]  # legend colour boxes
    ymax: int  # the count at the plot's top
    yticks: list[int]  # counts with a tick and a label
    xticks: list[tuple[float, str | None]]  # x of each decade line, its label (None: dropped, no room)
    markers: list[Marker]


def nice_ticks(peak: int, max_ticks: int) -> list[int]:
    """0 and round counts up to at least `peak` (1, 2, 2.5 or 5 times a power of ten apart), at most
    max_ticks + 1 of them."""
    peak = max(1, int(peak))
    max_ticks = max(1, int(max_ticks))
    magnitude = 10 ** max(0, len(str(peak)) - 2)
    while True:
        for m in (1, 2, 5):  # 2.5 would give non-integer ticks at magnitude 1
            step = m * magnitude
            n = -(-peak // step)  # ceil
            if n <= max_ticks:
                return [i * step for i in range(n + 1)]
        magnitude *= 10


def format_count(n: int) -> str:
    """A count for an axis: "950", "1.5k", "20k", "3M", "1.2G"."""
    for scale, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= scale:
            v = n / scale
            text = f"{v:.1f}" if v < 10 and n % scale else f"{v:.0f}"
            return text + unit
    return str(n)


def _text_rect(fm: QFontMetrics, x: float, y: float, text: str) -> QRectF:
    return QRectF(x, y, fm.horizontalAdvance(text) + 1, fm.height())


def layout(width: int, height: int, fm: QFontMetrics, series: list[Series], transport_name: str = "") -> Layout:
    """Where everything goes; pure, so a test can check it for overlaps without painting."""
    lh = fm.height()
    texts: list[Text] = []
    if not series:
        rect = QRectF(0, 0, width, height)
        return Layout(rect, [Text("empty", "No events yet", rect, "", Qt.AlignmentFlag.AlignCenter)],
                      [], [], 0, [], [], [])
    # -- rows from the top: title, percentile lanes, a gap, the plot, x tick labels, the legend
    title = f"Latency — {transport_name}" if transport_name else "Latency"
    texts.append(Text("title", title, _text_rect(fm, PAD, 2, title), ""))
    markers = [Marker(s.name, label, ns, f"{label} {format_ns(ns)}")
               for s in series for label, ns in (("p50", s.p50_ns), ("p99", s.p99_ns))]

    peak = max(max(s.bins) for s in series) or 1
    caption = "events"
    plot_left, plot_right = _plot_columns(width, fm, peak, caption)

    def x_of(ns: float) -> float:
        ns = min(max(ns, MIN_NS), MAX_NS)
        return plot_left + (plot_right - plot_left) * math.log10(ns / MIN_NS) / DECADES

    n_lanes, placed = _place_marker_labels(markers, x_of, fm, lh, width, plot_left)
    band_top = 2 + lh + PAD
    gap = 6  # between the lowest lane and the plot: short ticks tie each label to its line
    plot_top = band_top + n_lanes * lh + gap
    legend_y = height - lh - 2
    plot_bottom = max(plot_top + 10, legend_y - PAD - lh - PAD)
    plot = QRectF(plot_left, plot_top, plot_right - plot_left, plot_bottom - plot_top)
    marker_texts, lines = _marker_texts_and_lines(placed, x_of, lh, band_top, plot_top - gap + 1, plot_bottom)
    yticks, ymax, ytick_texts = _y_ticks(fm, lh, peak, caption, plot, plot_left, plot_top, plot_bottom, band_top)
    xticks, xtick_texts = _x_ticks(fm, lh, width, plot, plot_left, plot_bottom)
    swatches, legend_texts = _legend(fm, lh, width, series, legend_y)
    texts += marker_texts + ytick_texts + xtick_texts + legend_texts
    return Layout(plot, texts, lines, swatches, ymax, yticks, xticks, markers)


def _plot_columns(width: int, fm: QFontMetrics, peak: int, caption: str) -> tuple[float, float]:
    """The plot's left and right x: the y tick labels, right-aligned, as wide as the widest count."""
    ytick_room = max(fm.horizontalAdvance(format_count(v)) for v in nice_ticks(peak, 10))
    left = PAD + max(ytick_room, fm.horizontalAdvance(caption)) + PAD + 2
    right = PAD + fm.horizontalAdvance("1 s") // 2 + 2
    return float(left), float(max(left + 10, width - right))


def _place_marker_labels(markers: list[Marker], x_of: Callable[[float], float], fm: QFontMetrics, lh: int,
                         width: int, plot_left: float) -> tuple[int, list[tuple[Marker, int, float, float]]]:
    """Percentile labels: each beside its line's x, in the first lane where it collides with nothing."""
    lanes: list[list[QRectF]] = []
    placed: list[tuple[Marker, int, float, float]] = []  # marker, lane, x, text width
    for m in sorted(markers, key=lambda m: x_of(m.ns)):
        w = fm.horizontalAdvance(m.text) + 1
        x = min(max(plot_left, x_of(m.ns) - w / 2), max(plot_left, width - PAD - w))
        for lane, used in enumerate(lanes):
            if all(x >= r.right() + PAD or x + w + PAD <= r.left() for r in used):
                break
        else:
            lane = len(lanes)
            lanes.append([])
        lanes[lane].append(QRectF(x, 0, w, lh))
        placed.append((m, lane, x, w))
    return len(lanes), placed


def _marker_texts_and_lines(placed: list[tuple[Marker, int, float, float]], x_of: Callable[[float], float],
                            lh: int, band_top: int, line_top: float, plot_bottom: float
                            ) -> tuple[list[Text], list[tuple[str, QLineF, Qt.PenStyle]]]:
    """The percentile labels in their lanes, and their lines from `line_top` down through the plot."""
    texts: list[Text] = []
    lines: list[tuple[str, QLineF, Qt.PenStyle]] = []
    for m, lane, x, w in placed:
        y = band_top + lane * lh
        texts.append(Text("marker", m.text, QRectF(x, y, w, lh), m.series))
        mx = x_of(m.ns)
        style = Qt.PenStyle.DashLine if m.label == "p50" else Qt.PenStyle.DotLine
        lines.append((m.series, QLineF(mx, line_top, mx, plot_bottom), style))
    return texts, lines


def _y_ticks(fm: QFontMetrics, lh: int, peak: int, caption: str, plot: QRectF, plot_left: float, plot_top: float,
             plot_bottom: float, band_top: int) -> tuple[list[int], int, list[Text]]:
    """The y ticks, the top count and the texts (caption, labels): as many as fit 1.5 label heights
    apart (the lowest and highest labels are pushed half a height inwards to stay within the plot's
    height); a label that would still touch its neighbour is dropped (its grid line stays)."""
    yticks = nice_ticks(peak, max(1, int(plot.height() // (1.5 * lh + 2))))
    ymax = yticks[-1]
    caption_rect = QRectF(plot_left - PAD - 2 - fm.horizontalAdvance(caption) - 1, band_top,
                          fm.horizontalAdvance(caption) + 1, lh)
    texts = [Text("yaxis", caption, caption_rect, "")]
    last_top = math.inf
    for v in yticks:
        label = format_count(v)
        w = fm.horizontalAdvance(label) + 1
        y = plot_bottom - plot.height() * v / ymax - lh / 2
        y = min(max(y, plot_top), plot_bottom - lh)
        if y + lh > last_top - 1 and v != ymax:
            continue
        if y + lh > last_top - 1:  # the top count always shows: drop the one below it instead
            texts.pop()
        texts.append(Text("ytick", label, QRectF(plot_left - PAD - 2 - w, y, w, lh), "",
                          Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
        last_top = y
    return yticks, ymax, texts


def _x_ticks(fm: QFontMetrics, lh: int, width: int, plot: QRectF, plot_left: float, plot_bottom: float
             ) -> tuple[list[tuple[float, str | None]], list[Text]]:
    """x ticks: decade labels centred under their line; one that would touch its neighbour is dropped."""
    texts: list[Text] = []
    xticks: list[tuple[float, str | None]] = []
    last_right = -math.inf
    for d, label in enumerate(DECADE_LABELS):
        tx = plot_left + plot.width() * d / DECADES
        w = fm.horizontalAdvance(label) + 1
        x = min(max(tx - w / 2, 0.0), width - w)
        if x >= last_right + PAD:
            texts.append(Text("xtick", label, QRectF(x, plot_bottom + PAD, w, lh), ""))
            xticks.append((tx, label))
            last_right = x + w
        else:
            xticks.append((tx, None))
    return xticks, texts


def _legend(fm: QFontMetrics, lh: int, width: int, series: list[Series], legend_y: int
            ) -> tuple[list[tuple[str, QRectF]], list[Text]]:
    """The legend: one line, long words if they fit, else short, else elided."""
    texts: list[Text] = []
    swatches: list[tuple[str, QRectF]] = []
    for form in (0, 1, 2):
        parts = []
        for s in series:
            meaning = SERIES_MEANING[s.name][min(form, 1)]
            parts.append(f"{s.name}: {meaning} ({s.count:,})" if form < 2 else f"{s.name} ({s.count:,})")
        widths = [fm.horizontalAdvance(t) + 1 for t in parts]
        needed = sum(widths) + len(parts) * (lh + 2 * PAD) + (len(parts) - 1) * 3 * PAD
        if needed <= width - 2 * PAD or form == 2:
            break
    x = float(PAD)
    for s, text, w in zip(series, parts, widths):
        room = width - PAD - (x + lh + PAD)
        if room <= 0:
            break
        swatches.append((s.name, QRectF(x, legend_y + 2, lh - 4, lh - 4)))
        x += lh + PAD
        if w > room:
            text = fm.elidedText(text, Qt.TextElideMode.ElideRight, int(room))
            w = fm.horizontalAdvance(text) + 1
        texts.append(Text("legend", text, QRectF(x, legend_y, w, lh), ""))
        x += w + 3 * PAD
    return swatches, texts


TOOLTIP = ("How long threats take to reach you. transport: from the Shield publishing a threat "
           "to the monitor receiving it; to screen: until its row is on the screen. Bars count "
           "threats per latency range; p50 is the median, p99 the latency 99 in 100 stay under.")
FLEET_TOOLTIP = ("How long the fleet's threats take to reach this screen: from the time the workstation "
                 "stamped a threat (its clock) until its row is on the screen. Only threats delivered live "
                 "count: those the stream stored after this viewer opened or reconnected. Threats caught "
                 "up after the viewer was away are shown but not counted (their latency would be how long "
                 "it was away). p50 is the median, p99 the latency 99 in 100 stay under.")


class LatencyHistogram(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.transport_name = ""
        self._histograms: tuple = (None, None)  # (transport, to screen) as last given
        self._series: list[Series] | None = []  # their snapshot; None: not taken since set_data
        self.last_markers: list[Marker] = []  # what the last paintEvent drew (for tests)
        self.last_layout: Layout | None = None
        self.last_paint_empty: bool | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 200)
        self.setToolTip(TOOLTIP)

    def sizeHint(self) -> QSize:
        return QSize(560, 260)

    def set_data(self, transport_name: str, transport_hist, screen_hist=None) -> None:
        self.transport_name = transport_name or ""
        self._histograms = (transport_hist, screen_hist)
        self._series = None
        if self.isVisible():
            self.update()

    @property
    def series(self) -> list[Series]:
        """The histograms last given, regrouped (taken on first use after set_data)."""
        if self._series is None:
            transport_hist, screen_hist = self._histograms
            self._series = [s for s in (snapshot(TRANSPORT, transport_hist), snapshot(SCREEN, screen_hist)) if s]
        return self._series

    # ---- painting ----

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            self._paint(p)
        finally:
            p.end()

    def series_colour(self, name: str) -> QColor:
        return palette.qcolor(palette.current().series[name])

    def _paint(self, p: QPainter) -> None:
        pal = self.palette()
        fg = pal.color(self.foregroundRole())
        p.fillRect(self.rect(), pal.color(self.backgroundRole()))
        lay = layout(self.width(), self.height(), QFontMetrics(self.font()), self.series, self.transport_name)
        self.last_layout = lay
        self.last_paint_empty = not self.series
        self.last_markers = lay.markers
        if self.series:
            plot = lay.plot
            grid = QColor(fg)
            grid.setAlpha(60)
            p.setPen(QPen(grid, 1))
            for tx, _ in lay.xticks:
                p.drawLine(QPointF(tx, plot.top()), QPointF(tx, plot.bottom()))
            for v in lay.yticks[1:]:
                y = plot.bottom() - plot.height() * v / lay.ymax
                p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(QPen(fg, 1))
            p.drawLine(QPointF(plot.left(), plot.bottom()), QPointF(plot.right(), plot.bottom()))
            p.drawLine(QPointF(plot.left(), plot.top()), QPointF(plot.left(), plot.bottom()))
            # bars: each bin split between the series, scaled to the axis' top count
            bin_w = plot.width() / N_BINS
            bar_w = max(1.0, (bin_w - 2) / len(self.series))
            for k, s in enumerate(self.series):
                colour = self.series_colour(s.name)
                for i, n in enumerate(s.bins):
                    if n:
                        h = max(1.0, plot.height() * n / lay.ymax)
                        p.fillRect(QRectF(plot.left() + i * bin_w + 1 + k * bar_w, plot.bottom() - h, bar_w, h),
                                   colour)
            for name, line, style in lay.lines:
                p.setPen(QPen(self.series_colour(name), 2, style))
                p.drawLine(line)
            for name, rect in lay.swatches:
                p.fillRect(rect, self.series_colour(name))
        for t in lay.texts:
            p.setPen(self.series_colour(t.colour) if t.colour else fg)
            p.drawText(t.rect, t.align, t.text)
