"""Showing attacker-controlled text safely.

Threat sources and details are written by whoever attacks the user's AI
tools. Shown raw, a right-to-left override (U+202E) reorders what the user
reads, zero-width characters hide words, and ANSI escapes rewrite a terminal.
`visible()` replaces every control, format (zero-width, bidirectional),
separator, private-use, surrogate and unassigned character with a visible
marker such as ⟨U+202E⟩, so what is shown is exactly what was sent. A run
of more than MAX_COMBINING_RUN combining marks (a "Zalgo" stack: 200 accents
on one letter paint over the lines around it) is shown escaped the same way,
mark by mark; shorter runs, which real scripts use (Vietnamese, Hebrew
points, Indic vowel signs), are left as they are.

`defang()` is for text a desktop notification server may turn into links
(dunst linkifies `file:///etc/passwd`, `http://…` and `www.…`): URLs are
written the way security tools write indicators, `hxxp[:]//evil[.]example/x`,
`file[:]///etc/passwd`, so nothing in a threat's text is one click away.

`VisibleFormatter` does the same for log records: every line a log handler
writes (message, arguments, traceback) goes through visible(), so a log read
in a terminal cannot be rewritten by what a server or a file name said.
"""

from __future__ import annotations

import logging
import re
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
# Nonspacing and enclosing marks stack on the character before them.
_COMBINING_CATEGORIES = frozenset({"Mn", "Me"})
# The longest run of combining marks shown as marks: real text stacks at most
# three or four (Vietnamese two, pointed Hebrew with cantillation four).
MAX_COMBINING_RUN = 4
_PLAIN, _HIDDEN, _COMBINING = 0, 1, 2
_cache: dict[str, int] = {}


def _kind(ch: str) -> int:
    kind = _cache.get(ch)
    if kind is None:
        category = unicodedata.category(ch)
        if ord(ch) in _HIDDEN_EXTRA or category in _HIDDEN_CATEGORIES:
            kind = _HIDDEN
        elif category in _COMBINING_CATEGORIES:
            kind = _COMBINING
        else:
            kind = _PLAIN
        if len(_cache) < 4096:
            _cache[ch] = kind
    return kind


def _hidden(ch: str) -> bool:
    return _kind(ch) == _HIDDEN


def _marker(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def visible(text: str, keep_newlines: bool = False) -> str:
    """`text` with every hidden character, and every run of more than
    MAX_COMBINING_RUN combining marks, shown as ⟨U+XXXX⟩.

    keep_newlines leaves "\\n" as a line break (for a details pane); tabs and
    everything else hidden are always marked."""
    if text.isascii() and text.isprintable():
        return text  # the common case, fast
    out = []
    run: list[str] = []  # the combining marks since the last other character

    def end_run() -> None:
        out.extend(map(_marker, run) if len(run) > MAX_COMBINING_RUN else run)
        run.clear()

    for ch in text:
        kind = _kind(ch)
        if kind == _COMBINING:
            run.append(ch)
            continue
        if run:
            end_run()
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif kind == _HIDDEN:
            out.append(_marker(ch))
        else:
            out.append(ch)
    if run:
        end_run()
    return "".join(out)


# A URL: a scheme, "://" and what follows up to a space; the host is what comes
# before the first "/", "?", "#" or "\\" (user info and port included).
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,31})://([^\s/?#\\]*)")
_WWW = re.compile(r"(?i)www\.([^\s/?#\\]*)")  # no word boundary needed: "xwww.a" is harmless as "xwww[.]a"
_MAILTO = re.compile(r"(?i)(mailto|callto|(?<![a-z0-9])(?:tel|sms|xmpp|irc|news|nntp)):")
_SCHEME_NAMES = {"http": "hxxp", "https": "hxxps", "ftp": "fxp", "ftps": "fxps", "ws": "wxs", "wss": "wxss"}


def _defang_scheme(scheme: str) -> str:
    fanged = _SCHEME_NAMES.get(scheme.lower())
    if fanged is None:
        return scheme
    # keep the sender's letter case where it is the same letter: "HTTP" -> "HXXP"
    return fanged.upper() if scheme.isupper() else fanged


def _defang_host(host: str) -> str:
    return host.replace(".", "[.]")


def defang(text: str) -> str:
    """`text` with every URL made inert the way security tools write them:
    `http://evil.example/x` -> `hxxp[:]//evil[.]example/x`, `file:///etc/passwd`
    -> `file[:]///etc/passwd`, `www.evil.example` -> `www[.]evil[.]example`,
    `mailto:x@y` -> `mailto[:]x@y`; a stray `://` becomes `[:]//`. The result
    holds no `://`, so a notification server that linkifies finds nothing to
    link. Idempotent: defang(defang(t)) == defang(t). Apply it after visible()."""
    if ":" not in text and "." not in text:
        return text
    text = _URL.sub(lambda m: f"{_defang_scheme(m.group(1))}[:]//{_defang_host(m.group(2))}", text)
    text = text.replace("://", "[:]//")  # what the pattern did not take ("://x", after a marker)
    text = _WWW.sub(lambda m: m.group(0)[:3] + "[.]" + _defang_host(m.group(1)), text)
    return _MAILTO.sub(lambda m: m.group(1) + "[:]", text)


def elide(text: str, limit: int) -> str:
    """At most `limit` characters, with … at the end when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


class VisibleFormatter(logging.Formatter):
    """A logging.Formatter whose output is visible(): one line per record for
    the message, a traceback keeping its line breaks, every control, bidi
    override and combining stack in either shown as ⟨U+XXXX⟩."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return visible(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        # The traceback (perhaps formatted and cached by another formatter) keeps its lines.
        return visible(super().format(record), keep_newlines=True)


def log_to_stderr(level: int = logging.WARNING, fmt: str = "kgmon: %(message)s") -> logging.Handler:
    """Send log records at `level` and above to standard error through VisibleFormatter
    (once per process: a second call only sets the level). Without it Python's
    last-resort handler would print warnings raw."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if isinstance(handler.formatter, VisibleFormatter):
            return handler
    handler = logging.StreamHandler()
    handler.setFormatter(VisibleFormatter(fmt))
    root.addHandler(handler)
    return handler
