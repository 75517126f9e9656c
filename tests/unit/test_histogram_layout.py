"""The latency histogram reads well (issue 14 item 6): no label ever overlaps another label, a bar or
a line, over many data shapes and sizes; a count axis; a one-line legend that says what each series
measures. Offscreen Qt: real font metrics, the layout the widget paints."""

from __future__ import annotations

import itertools
import random

import pytest
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QApplication

from kindlyguard_monitor import _ring
from kindlyguard_monitor.gui.histogram_widget import (
    MAX_NS, MIN_NS, N_BINS, SCREEN, TRANSPORT, LatencyHistogram, Series, format_count, layout, nice_ticks)


def random_series(rng: random.Random, name: str) -> Series:
    shape = rng.choice(["spike", "spread", "tiny", "huge", "edges"])
    bins = [0] * N_BINS
    if shape == "spike":
        bins[rng.randrange(N_BINS)] = rng.choice([1, 7, 10**6])
    elif shape == "spread":
        bins = [rng.randrange(0, 500) for _ in range(N_BINS)]
    elif shape == "tiny":
        bins[0] = 1
    elif shape == "huge":
        bins = [rng.randrange(0, 2 * 10**9) for _ in range(N_BINS)]
    else:
        bins[0], bins[-1] = 3, 3
    count = max(1, sum(bins))
    # percentiles anywhere, equal, below 1 µs or above 1 s
    p50 = rng.choice([0, 500, MIN_NS, 2_000, 50_000, 999_999, 10**7, MAX_NS, 5 * MAX_NS,
                      int(10 ** rng.uniform(2, 10))])
    p99 = rng.choice([p50, p50 + 1, p50 * 2, p50 * 10, int(10 ** rng.uniform(3, 10))])
    return Series(name, tuple(bins), count, p50, p99)


def shapes():
    rng = random.Random(14)
    sizes = [(320, 200), (321, 207), (400, 240), (560, 260), (800, 300), (1280, 420), (1900, 800)]
    for i in range(160):
        w, h = sizes[i % len(sizes)]
        t = random_series(rng, TRANSPORT)
        if i % 3 == 0:
            yield w, h, [t]
        else:
            s = random_series(rng, SCREEN)
            if i % 5 == 0:  # both series' markers in the same places
                s = s._replace(p50_ns=t.p50_ns, p99_ns=t.p99_ns)
            yield w, h, [t, s]


def test_no_text_overlaps_text_bars_or_lines_in_any_shape(qapp):
    fm = QFontMetrics(QApplication.font())
    checked = 0
    for width, height, series in shapes():
        for name in ("", "shm", "Shared memory · Shield format v1, polled"):
            lay = layout(width, height, fm, series, name)
            texts = lay.texts
            where = f"{width}x{height} {series} {name!r}"
            for a, b in itertools.combinations(texts, 2):
                assert not a.rect.intersects(b.rect), f"{a.kind} {a.text!r} overlaps {b.kind} {b.text!r}: {where}"
            for t in texts:
                r = t.rect
                assert not r.intersects(lay.plot), f"{t.kind} {t.text!r} is on the bars: {where}"
                assert r.top() >= 0 and r.bottom() <= height, f"{t.kind} {t.text!r} outside: {where}"
                if t.kind != "title":  # (a very long transport name may run off the right edge)
                    assert r.left() >= 0 and r.right() <= width + 0.5, f"{t.kind} {t.text!r} outside: {where}"
                for _, line, _ in lay.lines:
                    x = line.x1()
                    assert not (r.left() <= x <= r.right() and r.top() <= line.y2() and r.bottom() >= line.y1()), \
                        f"{t.kind} {t.text!r} is crossed by a marker line: {where}"
            # four markers per two series, each labelled once; a count axis up to at least the peak
            assert sorted(t.text for t in texts if t.kind == "marker") == sorted(m.text for m in lay.markers)
            assert len(lay.markers) == 2 * len(series)
            peak = max(max(s.bins) for s in series)
            assert lay.yticks[0] == 0 and lay.ymax >= peak and lay.yticks == sorted(set(lay.yticks))
            labels = [t.text for t in texts if t.kind == "ytick"]
            assert labels[0] == "0" and labels[-1] == format_count(lay.ymax), labels
            assert set(labels) <= {format_count(v) for v in lay.yticks}
            legend = [t for t in texts if t.kind == "legend"]
            assert len({t.rect.top() for t in legend}) == 1, "the legend is one line"
            assert [t.text for t in texts if t.kind == "xtick"][0] == "1 µs"
            checked += 1
    assert checked == 480


def test_the_legend_says_what_each_series_measures(qapp):
    fm = QFontMetrics(QApplication.font())
    both = [Series(TRANSPORT, (5,) + (0,) * (N_BINS - 1), 5, 2_000, 3_000),
            Series(SCREEN, (0, 5) + (0,) * (N_BINS - 2), 5, 300_000, 900_000)]
    wide = " ".join(t.text for t in layout(1280, 300, fm, both).texts if t.kind == "legend")
    assert "transport: Shield publishes → monitor receives (5)" in wide
    assert "to screen: Shield publishes → row on screen (5)" in wide
    narrow = [t.text for t in layout(320, 200, fm, both).texts if t.kind == "legend"]
    assert narrow and narrow[0].startswith("transport")


@pytest.mark.parametrize("peak, most, expected", [
    (1, 10, [0, 1]), (7, 10, list(range(8))), (7, 3, [0, 5, 10]), (95, 4, [0, 50, 100]),
    (1000, 5, [0, 200, 400, 600, 800, 1000]), (10**9, 4, [0, 500_000_000, 1_000_000_000]),
])
def test_nice_ticks(peak, most, expected):
    assert nice_ticks(peak, most) == expected


def test_the_widget_paints_what_layout_says(qtbot):
    hw = LatencyHistogram()
    qtbot.addWidget(hw)
    transport, screen = _ring.Histogram(), _ring.Histogram()
    for i in range(300):
        transport.record(3_000 + i * 10)
        screen.record(3_100 + i * 10)  # percentiles close together: labels must go to other lanes
    hw.set_data("shm", transport, screen)
    for size in ((320, 200), (700, 300)):
        hw.resize(*size)
        assert not hw.grab().isNull()
        lanes = {t.rect.top() for t in hw.last_layout.texts if t.kind == "marker"}
        assert len(lanes) >= 2
        assert hw.toolTip() and "p99" in hw.toolTip()
