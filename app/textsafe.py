"""Showing attacker-controlled text safely.

Threat sources and details are written by whoever attacks the user's AI
tools. Shown raw, a right-to-left override (U+202E) reorders what the user
reads, zero-width characters hide words, and ANSI escapes rewrite a terminal.
`visible()` replaces every control, format (zero-width, bidirectional),
separator, private-use, surrogate and unassigned character with a visible
marker such as ⟨U+202E⟩, so what is shown is exactly what was sent.
"""

from __future__ import annotations

import unicodedata

# Categories whose characters are invisible or change how other text renders.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
# Characters outside those categories that still render as nothing or as blank.
_HIDDEN_EXTRA = frozenset(
    {
        0x034F,  # combining grapheme joiner
        0x115F, 0x1160, 0x3164, 0xFFA0,  # Hangul fillers
        0x180E,  # Mongolian vowel separator
        0x2800,  # braille blank
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
    }
)
_cache: dict[str, bool] = {}


def _hidden(ch: str) -> bool:
    hidden = _cache.get(ch)
    if hidden is None:
        cp = ord(ch)
        hidden = cp in _HIDDEN_EXTRA or unicodedata.category(ch) in _HIDDEN_CATEGORIES
        if len(_cache) < 4096:
            _cache[ch] = hidden
    return hidden


def visible(text: str, keep_newlines: bool = False) -> str:
    """`text` with every hidden character shown as ⟨U+XXXX⟩.

    keep_newlines leaves "\\n" as a line break (for a details pane); tabs and
    everything else hidden are always marked."""
    if text.isascii() and text.isprintable():
        return text  # the common case, fast
    out = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif _hidden(ch):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def elide(text: str, limit: int) -> str:
    """At most `limit` characters, with … at the end when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"
