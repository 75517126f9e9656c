"""Light or dark: follow the system's colour scheme, or the user's choice.

The setting (Settings.theme) is "system", "light" or "dark". "system" follows
Qt's colour-scheme hint (QStyleHints.colorScheme(), Qt ≥ 6.5, and its
colorSchemeChanged signal: the desktop switching at sunset switches the app);
where the platform says nothing (a bare X server: Unknown), the darkness of
the platform's own palette decides.

Applying a variant: gui/palette.py's colours become `palette.current()` (the
severity cells, the badge, the error red, the histogram ask for them), and
the application palette is set to the variant's, always, so every text the
app draws is on the background its contrast was checked against (a desktop's
own palette could put our error red on a grey it was never checked on; the
accent colour is the price). `changed` tells the widgets that draw with
palette colours to refresh.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QColor, QGuiApplication, QPalette

from kindlyguard_monitor.gui import palette as P

log = logging.getLogger(__name__)

SYSTEM = "system"
CHOICES = (("System", SYSTEM), ("Light", P.LIGHT), ("Dark", P.DARK))


def is_dark(qpalette: QPalette) -> bool:
    return qpalette.color(QPalette.ColorRole.Window).lightness() < 128


def system_scheme(app: QGuiApplication, platform_palette: QPalette) -> str:
    """What the desktop asks for: Qt's colour-scheme hint, else its palette's darkness."""
    scheme = app.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return P.DARK
    if scheme == Qt.ColorScheme.Light:
        return P.LIGHT
    return P.DARK if is_dark(platform_palette) else P.LIGHT


def qpalette(p: P.Palette) -> QPalette:
    """A complete QPalette of one variant (Fusion draws every widget from it)."""
    R, G = QPalette.ColorRole, QPalette.ColorGroup
    pal = QPalette()
    colours = {
        R.Window: p.window, R.WindowText: p.window_text, R.Base: p.base, R.AlternateBase: p.alternate_base,
        R.Text: p.base_text, R.Button: p.button, R.ButtonText: p.window_text, R.BrightText: p.error,
        R.Highlight: p.highlight, R.HighlightedText: p.highlighted_text, R.ToolTipBase: p.base,
        R.ToolTipText: p.base_text, R.PlaceholderText: p.mid, R.Link: p.link, R.LinkVisited: p.link,
        R.Mid: p.mid, R.Light: p.button, R.Midlight: p.button, R.Dark: p.mid, R.Shadow: "#000000",
    }
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    disabled = QColor(p.mid)
    for role in (R.WindowText, R.Text, R.ButtonText):
        pal.setColor(G.Disabled, role, disabled)
    return pal


class ThemeManager(QObject):
    """Owns which variant is active. `changed(palette.Palette)` after every switch."""

    changed = Signal(object)

    def __init__(self, app: QGuiApplication, setting: str = SYSTEM, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.app = app
        self.platform_palette = QPalette(app.palette())  # the desktop's own, before we change anything
        self.setting = setting if setting in (SYSTEM, P.LIGHT, P.DARK) else SYSTEM
        self.scheme = ""
        app.styleHints().colorSchemeChanged.connect(self._system_changed)
        self.apply()

    def set_setting(self, setting: str) -> None:
        self.setting = setting if setting in (SYSTEM, P.LIGHT, P.DARK) else SYSTEM
        self.apply()

    def effective(self) -> str:
        return system_scheme(self.app, self.platform_palette) if self.setting == SYSTEM else self.setting

    @Slot()
    def _system_changed(self, *_args) -> None:
        if self.setting == SYSTEM:
            self.apply()

    def apply(self) -> None:
        scheme = self.effective()
        variant = P.PALETTES[scheme]
        self.app.setPalette(qpalette(variant))
        P.set_current(variant)
        if scheme != self.scheme:
            log.info("colours: %s (setting %s)", scheme, self.setting)
        self.scheme = scheme
        self.changed.emit(variant)
