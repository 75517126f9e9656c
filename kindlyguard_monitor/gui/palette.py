"""Every colour the app chooses, in one place, in a light and a dark variant.

Severity cells, the connection badge, the one error red, the histogram's
series: each is a (background, text) pair or a text colour on the window's
background, picked so text is readable in both variants: every pair has a
WCAG contrast ratio of at least 4.5:1 (tests/unit/test_palette_theme.py checks them all,
the text colours against both the window and the base background).

Which variant is active is the theme's business (gui/theme.py: the system's
colour scheme or the user's choice); widgets ask `current()` when they paint,
and repaint when the theme says it changed. Plain data: no Qt needed but for
`qcolor()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM

LIGHT, DARK = "light", "dark"
MIN_CONTRAST = 4.5  # WCAG AA for normal text


@dataclass(frozen=True)
class Palette:
    name: str
    window: str  # window background (labels, the histogram) and its text
    window_text: str
    base: str  # table and text-field background and its text
    base_text: str
    alternate_base: str
    button: str
    highlight: str  # selected rows and its text
    highlighted_text: str
    mid: str  # secondary text (the transport's reason line): still readable
    link: str
    error: str  # the one error red: text on window or base
    severity: dict = field(default_factory=dict)  # severity -> (background, text) of a Severity cell
    badge: dict = field(default_factory=dict)  # state -> (background, text) of the connection badge
    series: dict = field(default_factory=dict)  # histogram series -> colour of its bars, lines and labels


LIGHT_PALETTE = Palette(
    name=LIGHT,
    window="#efefef", window_text="#1a1a1a", base="#ffffff", base_text="#1a1a1a", alternate_base="#f5f5f5",
    button="#e6e6e6", highlight="#1f5fa8", highlighted_text="#ffffff", mid="#595959", link="#0b57b0",
    error="#b3261e",
    severity={LOW: ("#e0e0e0", "#212121"), MEDIUM: ("#ffc107", "#000000"),
              HIGH: ("#c43e00", "#ffffff"), CRITICAL: ("#b71c1c", "#ffffff")},
    badge={"shm": ("#2e7d32", "#ffffff"), "websocket": ("#ffb300", "#000000"),
           "disconnected": ("#c62828", "#ffffff"), "protection_off": ("#000000", "#ffd600")},
    series={"transport": "#1565c0", "to screen": "#a64b00"},
)

DARK_PALETTE = Palette(
    name=DARK,
    window="#2b2b2b", window_text="#e6e6e6", base="#1e1e1e", base_text="#e6e6e6", alternate_base="#262626",
    button="#3a3a3a", highlight="#2d69b4", highlighted_text="#ffffff", mid="#a6a6a6", link="#8ab4f8",
    error="#ff8a80",
    severity={LOW: ("#5f5f5f", "#ffffff"), MEDIUM: ("#e6a800", "#000000"),
              HIGH: ("#ff7043", "#000000"), CRITICAL: ("#ff5252", "#000000")},
    badge={"shm": ("#2e7d32", "#ffffff"), "websocket": ("#ffb300", "#000000"),
           "disconnected": ("#ef5350", "#000000"), "protection_off": ("#ffd600", "#000000")},
    series={"transport": "#64b5f6", "to screen": "#ffb74d"},
)

PALETTES = {LIGHT: LIGHT_PALETTE, DARK: DARK_PALETTE}
_current = [LIGHT_PALETTE]


def current() -> Palette:
    """The active variant (light until the theme says otherwise)."""
    return _current[0]


def set_current(palette: Palette) -> None:
    _current[0] = palette


def severity_colours(severity: int, palette: Palette | None = None) -> tuple[str, str]:
    p = palette or current()
    return p.severity.get(severity, p.severity[MEDIUM])


@lru_cache(maxsize=64)
def qcolor(hex_colour: str):
    """A QColor for a hex colour (cached: the table asks for one per painted cell)."""
    from PySide6.QtGui import QColor

    return QColor(hex_colour)


# ---- contrast (WCAG 2.x)

def _channel(c: int) -> float:
    s = c / 255
    return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours, 1 (none) to 21 (black on white)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_pairs(palette: Palette) -> list[tuple[str, str, str]]:
    """Every (what, text colour, background) the app draws with this palette."""
    pairs = [("window text", palette.window_text, palette.window), ("base text", palette.base_text, palette.base),
             ("alternate rows", palette.base_text, palette.alternate_base),
             ("selection", palette.highlighted_text, palette.highlight),
             ("secondary text", palette.mid, palette.window), ("link", palette.link, palette.base)]
    for bg_name in ("window", "base"):
        bg = getattr(palette, bg_name)
        pairs.append((f"error on {bg_name}", palette.error, bg))
        pairs += [(f"histogram {name} on {bg_name}", colour, bg) for name, colour in palette.series.items()]
    pairs += [(f"severity {sev}", fg, bg) for sev, (bg, fg) in palette.severity.items()]
    pairs += [(f"badge {state}", fg, bg) for state, (bg, fg) in palette.badge.items()]
    return pairs


assert set(LIGHT_PALETTE.severity) == set(DARK_PALETTE.severity) == {LOW, MEDIUM, HIGH, CRITICAL}
assert set(LIGHT_PALETTE.badge) == set(DARK_PALETTE.badge) and set(LIGHT_PALETTE.series) == set(DARK_PALETTE.series)
