"""The Overview tab: draws kindlyguard_monitor.overview's numbers, computes none.

Threats per minute by severity over the last hour and the last day (stacked
bars in the severity colours), blocked against not blocked, the top sources and
types. Clicking a source, a type or the blocked / not blocked count filters the
feed (the window connects the signals). It redraws only while shown, at most
once a second, and only when the numbers (Overview.version) or the minute moved.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QSizePolicy, QVBoxLayout, QWidget)

from kindlyguard_monitor.overview import DAY_MINUTES, HOUR_MINUTES, Overview, Span
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.textsafe import elide, visible
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, threat_type_name

REFRESH_MS = 1000
TOP_N = 5
SOURCE_SHOWN = 60
DataRole = Qt.ItemDataRole.UserRole + 1


def _count(n: float) -> str:
    return f"{n:.1f}" if 0 < n < 10 and n != int(n) else f"{int(round(n))}"


class SpanChart(QWidget):
    """Stacked bars, one per bin, Low at the bottom; a count axis (0 and the peak per minute)."""

    def __init__(self, title: str, parent=None):
        super().__init__(parent)
        self.title = title
        self.span: Span | None = None
        self.setMinimumHeight(50)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_span(self, span: Span) -> None:
        self.span = span
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        fm = self.fontMetrics()
        text_colour = self.palette().windowText().color()
        p.setPen(text_colour)
        p.drawText(0, fm.ascent(), self.title)
        span = self.span
        if span is None:
            return
        peak = span.peak_per_minute()
        axis_w = fm.horizontalAdvance(f"{_count(peak)}/min") + 6
        top, bottom = fm.height() + 4, self.height() - 2
        left, right = axis_w, self.width() - 2
        p.drawLine(left - 2, top, left - 2, bottom)
        p.drawText(0, top + fm.ascent(), f"{_count(peak)}/min")
        p.drawText(0, bottom, "0")
        if peak <= 0 or right <= left or bottom <= top:
            return
        scale = (bottom - top) / peak
        width = (right - left) / len(span.bins)
        p.setPen(Qt.PenStyle.NoPen)
        for i, counts in enumerate(span.bins):
            y = float(bottom)
            x = left + i * width
            for level, n in zip((LOW, MEDIUM, HIGH, CRITICAL), counts):
                if not n:
                    continue
                h = n / span.bin_minutes * scale
                p.setBrush(palette.qcolor(palette.severity_colours(level)[0]))  # light or dark
                p.drawRect(QRectF(x, y - h, max(1.0, width - 1), h))
                y -= h


class OverviewWidget(QWidget):
    source_chosen = Signal(str)  # raw source text
    type_chosen = Signal(int)
    blocked_chosen = Signal(bool)

    def __init__(self, overview: Overview, parent=None):
        super().__init__(parent)
        self.overview = overview
        self._drawn: tuple[int, int] | None = None  # (version, minute) last drawn
        self.redraws = 0
        self.hour_chart = SpanChart("Threats per minute, last hour", self)
        self.day_chart = SpanChart("Threats per minute, last day (10-minute averages)", self)
        self.blocked_button = QPushButton("", self)
        self.allowed_button = QPushButton("", self)
        for button, value in ((self.blocked_button, True), (self.allowed_button, False)):
            button.setFlat(True)
            button.setToolTip("Show only these in the feed")
            button.clicked.connect(lambda _c=False, v=value: self.blocked_chosen.emit(v))
        self.day_label = QLabel("", self)
        self.day_label.setTextFormat(Qt.TextFormat.PlainText)
        self.sources = QListWidget(self)
        self.types = QListWidget(self)
        for lst, name in ((self.sources, "Top sources, last day"), (self.types, "Top types, last day")):
            lst.setAccessibleName(name)
            lst.setToolTip(f"{name}: click one to filter the feed")
        self.sources.itemClicked.connect(lambda item: self.source_chosen.emit(item.data(DataRole)))
        self.types.itemClicked.connect(lambda item: self.type_chosen.emit(int(item.data(DataRole))))

        counts = QHBoxLayout()
        counts.addWidget(QLabel("Last hour:", self))
        counts.addWidget(self.blocked_button)
        counts.addWidget(self.allowed_button)
        counts.addWidget(self.day_label, 1)
        charts = QVBoxLayout()
        charts.addWidget(self.hour_chart, 1)
        charts.addWidget(self.day_chart, 1)
        charts.addLayout(counts)
        tops = QGridLayout()
        tops.addWidget(QLabel("Top sources (last day)", self), 0, 0)
        tops.addWidget(self.sources, 1, 0)
        tops.addWidget(QLabel("Top types (last day)", self), 0, 1)
        tops.addWidget(self.types, 1, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(charts, 3)
        layout.addLayout(tops, 2)

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._timer.start()
        self.refresh()

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self._timer.stop()

    @Slot()
    def refresh(self, now_us: int | None = None) -> bool:
        """Redraw when shown and the numbers or the minute moved; returns whether it redrew."""
        if not self.isVisible():
            return False
        o = self.overview
        o.expire(now_us)
        minute = o._now_minute(now_us)
        if self._drawn == (o.version, minute):
            return False
        self._drawn = (o.version, minute)
        self.redraws += 1
        hour = o.span(HOUR_MINUTES, 1, now_us)
        day = o.span(DAY_MINUTES, 10, now_us)
        self.hour_chart.set_span(hour)
        self.day_chart.set_span(day)
        self.blocked_button.setText(f"{hour.blocked} blocked")
        self.allowed_button.setText(f"{hour.allowed} not blocked")
        self.day_label.setText(f"Last day: {day.total} threats, {day.blocked} blocked, {day.allowed} not blocked")
        self.sources.clear()
        for source, n in o.top_sources(TOP_N):
            item = QListWidgetItem(f"{n:>6}  {elide(visible(source), SOURCE_SHOWN)}")
            item.setData(DataRole, source)
            item.setToolTip("Show only threats from this source")
            self.sources.addItem(item)
        self.types.clear()
        for number, n in o.top_types(TOP_N):
            item = QListWidgetItem(f"{n:>6}  {threat_type_name(number)}")
            item.setData(DataRole, int(number))
            self.types.addItem(item)
        return True

