"""How a row of the live feed looks, apart from its cells' text: an unseen row's
mark and bold font, a restored row's date, italic and tooltip, and tooltips
that show outside text literally (issue 14 items 2 and 4).

Tooltips are kept plain: Qt renders a tooltip as rich text when
Qt.mightBeRichText() says so (e.g. it starts with "<b>"). Instead of hoping
it does not, every tooltip is *always* rich text whose content is
html.escape()d and wrapped in a pre-wrap paragraph, so the user sees exactly
the characters that were sent, "<b>x</b>" included.
"""

from __future__ import annotations

import html
import time

from PySide6.QtGui import QFont

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.textsafe import elide, visible
from kindlyguard_monitor.vocabulary import Transport

TOOLTIP_LIMIT = 1000
UNSEEN_MARK = "● "  # before an unseen row's time (with bold: not colour alone)
RESTORED_TIP = "Before this session — from the history"
TIME_SAMPLE = UNSEEN_MARK + "0000-00-00 00:00"  # the Time column's widest text (a restored, unseen row)


def plain_tooltip(text: str) -> str:
    """`text` as a tooltip Qt shows literally: visible(), elided, HTML-escaped,
    in a paragraph that keeps its spaces."""
    shown = html.escape(elide(visible(text), TOOLTIP_LIMIT), quote=False)
    return f"<p style='white-space:pre-wrap'>{shown}</p>"


def restored(row: ThreatEvent) -> bool:
    """Restored from the history at start: from before this session."""
    return row.transport == Transport.HISTORY


def date_time(timestamp_unix_us: int) -> str:
    """A restored threat's local date and time, to the minute."""
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(int(timestamp_unix_us) // 1_000_000))
    except (OverflowError, OSError, ValueError):
        return "?"


def fonts() -> list[QFont]:
    """(unseen, restored, restored and unseen) fonts, made once."""
    if not _MADE_FONTS:
        bold, italic, both = QFont(), QFont(), QFont()
        bold.setBold(True)
        italic.setItalic(True)
        both.setBold(True)
        both.setItalic(True)
        _MADE_FONTS.extend((bold, italic, both))
    return _MADE_FONTS


_MADE_FONTS: list = []
