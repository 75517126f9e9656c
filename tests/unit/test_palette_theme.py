"""One palette, light and dark (issue 14 item 10, issue 13 item 4's colours): every text colour is
readable on its background in both variants, the theme follows the setting and the system's colour
scheme, and the tray icons stand out on dark and light panels and stay crisp at 200 %."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPalette

from kindlyguard_monitor.gui import palette as P
from kindlyguard_monitor.gui import theme
from kindlyguard_monitor.gui.resources import icon
from kindlyguard_monitor.gui.tray import STATES
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM


@pytest.mark.parametrize("variant", [P.LIGHT, P.DARK])
def test_every_text_colour_has_contrast_4_5_on_its_background(variant):
    pal = P.PALETTES[variant]
    pairs = P.text_pairs(pal)
    assert len(pairs) == 20  # 6 window/base/selection texts, error and 2 series on 2 backgrounds, 4+4 cells
    low = [(what, fg, bg, round(P.contrast(fg, bg), 2)) for what, fg, bg in pairs if P.contrast(fg, bg) < 4.5]
    assert low == []


def test_contrast_is_the_wcag_ratio():
    assert P.contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert P.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert P.contrast("#ffffff", "#ffffff") == pytest.approx(1.0)


def test_the_variants_differ_where_it_matters():
    light, dark = P.LIGHT_PALETTE, P.DARK_PALETTE
    assert P.luminance(light.window) > 0.5 > 0.1 > P.luminance(dark.window)
    for sev in (LOW, MEDIUM, HIGH, CRITICAL):  # each severity its own colour, in both
        assert len({light.severity[s][0] for s in (LOW, MEDIUM, HIGH, CRITICAL)}) == 4
        assert len({dark.severity[s][0] for s in (LOW, MEDIUM, HIGH, CRITICAL)}) == 4
    assert light.badge["protection_off"] != light.badge["disconnected"]


def test_theme_follows_the_setting_and_the_system(qapp):
    manager = theme.ThemeManager(qapp, "dark")
    try:
        seen = []
        manager.changed.connect(seen.append)
        assert P.current() is P.DARK_PALETTE
        assert qapp.palette().color(QPalette.ColorRole.Window).name() == P.DARK_PALETTE.window
        manager.set_setting("light")
        assert P.current() is P.LIGHT_PALETTE and seen == [P.LIGHT_PALETTE]
        assert qapp.palette().color(QPalette.ColorRole.Base).name() == P.LIGHT_PALETTE.base
        manager.set_setting("bogus")  # an unknown value is System
        assert manager.setting == theme.SYSTEM
        # The platform says nothing here (offscreen: Unknown): its palette's darkness decides.
        assert qapp.styleHints().colorScheme() in (Qt.ColorScheme.Unknown, Qt.ColorScheme.Light)
        assert manager.effective() == P.LIGHT
        manager.platform_palette = theme.qpalette(P.DARK_PALETTE)
        if qapp.styleHints().colorScheme() == Qt.ColorScheme.Unknown:
            assert manager.effective() == P.DARK
    finally:
        manager.set_setting("light")


# ---- tray icons

PANELS = {"dark panel": "#2e3440", "light panel": "#f5f5f5"}


def rendered(name: str, size: int, dpr: float = 1.0) -> QImage:
    return icon(name).pixmap(QSize(size, size), dpr).toImage().convertToFormat(QImage.Format.Format_ARGB32)


def on_panel(img: QImage, panel: str) -> QImage:
    out = QImage(img.size(), QImage.Format.Format_ARGB32)
    out.fill(QColor(panel))
    p = QPainter(out)
    p.drawImage(0, 0, img)
    p.end()
    return out


def _lum(c: QColor) -> float:
    return P.luminance(c.name())


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("panel", sorted(PANELS))
def test_tray_icons_stand_out_on_dark_and_light_panels(qapp, state, panel):
    """Around the whole outline, within 2 px inwards of the icon's edge, some pixel contrasts with
    the panel by at least 3:1 (WCAG's ratio for graphics): the outline shows on either panel."""
    img = rendered(STATES[state][0], 22)
    shown = on_panel(img, PANELS[panel])
    panel_lum = P.luminance(PANELS[panel])
    w, h = img.width(), img.height()

    def alpha(x, y):
        return img.pixelColor(x, y).alpha() if 0 <= x < w and 0 <= y < h else 0

    edge = [(x, y) for y in range(h) for x in range(w)
            if alpha(x, y) > 128 and min(alpha(x + dx, y + dy) for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1))) < 32]
    assert len(edge) > 20
    visible = 0
    for x, y in edge:
        best = 1.0
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                if alpha(x + dx, y + dy) > 128:
                    lum = _lum(shown.pixelColor(x + dx, y + dy))
                    hi, lo = max(lum, panel_lum), min(lum, panel_lum)
                    best = max(best, (hi + 0.05) / (lo + 0.05))
        visible += best >= 3.0
    assert visible / len(edge) >= 0.95, f"{state} on the {panel}: {visible}/{len(edge)} edge pixels stand out"


@pytest.mark.parametrize("state", sorted(STATES))
def test_tray_icons_are_drawn_at_200_percent_not_scaled_up(qapp, state):
    """At a device pixel ratio of 2 a 22 px icon is drawn from the SVG at 44 px: a 22 px picture
    blown up would have every 2x2 block of one colour."""
    img = rendered(STATES[state][0], 22, 2.0)
    assert (img.width(), img.height()) == (44, 44)
    assert img.devicePixelRatio() == 2.0
    mixed = sum(1 for y in range(0, 44, 2) for x in range(0, 44, 2)
                if len({img.pixel(x + dx, y + dy) for dx in (0, 1) for dy in (0, 1)}) > 1)
    assert mixed > 40, mixed
