"""Made-up but realistic threats for the demo writer.

ThreatGenerator deals threats the way Shield reports them: MCP sources, a real-life
mix of types and severities, and details that quote the attack text itself,
drawn from the templates and raw material in corpus.py. Deterministic for a seed.
When to publish them is schedule.py's.
"""

from __future__ import annotations

import base64
import random
import time

from kindlyguard_monitor.demo.corpus import (  # the templates, their raw material, the type numbers
    ANSI_PAYLOADS, ARG_NAMES, BAD_ACTIONS, BIDI, CODE_FILES, CONTROL_PAYLOADS, DOCS, DOMAINS, FILES,
    HIDDEN_SENTENCES, HOMOGLYPH, HOMOGLYPHS, INJECTION, INVISIBLE, JS_PAYLOADS, LONG_PAYLOAD_LINES,
    RATE_LIMIT, RATE_LIMITS, RLO_REAL_EXTS, RLO_SHOWN_EXTS, RLO_STEMS, SHELL_DROPPERS, SHELL_PAYLOADS,
    SMUGGLED_TEXT, SMUGGLE_COVERS, SQL_PAYLOADS, SUSPICIOUS, TEMPLATES, TOOL_NAMES, TRAVERSAL,
    TRAVERSAL_STEPS, UNIX_TARGETS, UNKNOWN, WEIRD_METHODS, WINDOWS_TARGETS, WORDS, ZERO_WIDTH, ZW_WORDS,
)
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, Threat

# ---------------------------------------------------------------------------
# The mix
# ---------------------------------------------------------------------------

# How many of each (type, severity) one deck of 100 threats holds. Threats are
# dealt from a shuffled deck, so every type and every severity shows up in every
# 100 events, and the overall mix is exactly this table.
DECK = {
    INJECTION: {LOW: 2, MEDIUM: 8, HIGH: 12, CRITICAL: 4},  # 26
    INVISIBLE: {LOW: 6, MEDIUM: 8, HIGH: 3, CRITICAL: 1},  # 18
    SUSPICIOUS: {LOW: 4, MEDIUM: 6, HIGH: 3, CRITICAL: 1},  # 14
    BIDI: {LOW: 1, MEDIUM: 4, HIGH: 5, CRITICAL: 2},  # 12
    HOMOGLYPH: {LOW: 3, MEDIUM: 5, HIGH: 3, CRITICAL: 1},  # 12
    TRAVERSAL: {LOW: 1, MEDIUM: 3, HIGH: 6, CRITICAL: 2},  # 12
    RATE_LIMIT: {LOW: 1, MEDIUM: 2, HIGH: 1},  # 4
    UNKNOWN: {LOW: 1, MEDIUM: 1},  # 2
}  # severities: Low 19, Medium 37, High 33, Critical 11

BLOCK_CHANCE = {LOW: 0.10, MEDIUM: 0.45, HIGH: 0.85, CRITICAL: 0.97}

# About 1 in 50 threats quotes its whole payload, longer than a ring slot's 408
# bytes of details, so the writer's truncation path gets exercised.
LONG_DETAILS_CHANCE = 1 / 50
LONG_PAYLOAD_BYTES = (440, 1200)

# ---------------------------------------------------------------------------
# Parts: small functions part(rng, source) -> str
# ---------------------------------------------------------------------------


def _codepoint(char: str) -> str:
    return f"U+{ord(char):04X}"


def _method(source: str) -> str:
    """mcp:tools/call:shell.exec -> tools/call"""
    return source.removeprefix("mcp:").split(":")[0]


def _tool(rng: random.Random, source: str) -> str:
    """The tool the source names, else a plausible one."""
    parts = source.split(":")
    return parts[2] if len(parts) > 2 else rng.choice(TOOL_NAMES)


def _pick(choices):
    return lambda rng, _source: rng.choice(choices)


def _number(low: int, high: int):
    return lambda rng, _source: str(rng.randint(low, high))


def _insert_zero_width(rng: random.Random, word: str) -> tuple[str, str, str, int]:
    """word with one zero-width character inside it: (text, char, char's name, index)."""
    char, name = rng.choice(ZERO_WIDTH)
    at = rng.randint(1, len(word) - 1)
    return word[:at] + char + word[at:], char, name, at


def _zw_word(rng, _source):
    text, char, name, at = _insert_zero_width(rng, rng.choice(ZW_WORDS))
    return f'"{text}" ({_codepoint(char)} {name} at index {at})'


def _zw_sentence(rng, _source):
    words = rng.choice(HIDDEN_SENTENCES).split(" ")  # every word has 2+ letters
    count = rng.randint(2, 4)
    for _ in range(count):
        i = rng.randrange(len(words))
        words[i] = _insert_zero_width(rng, words[i])[0]
    return f'"{" ".join(words)}" ({count} invisible characters)'


def _tag_smuggle(rng, _source):
    cover, hidden = rng.choice(SMUGGLE_COVERS), rng.choice(SMUGGLED_TEXT)
    tags = "".join(chr(0xE0000 + ord(c)) for c in hidden)
    return f'"{cover}{tags}" hides "{hidden}" in {len(hidden)} Unicode tag characters'


def _rlo_file(rng, _source):
    stem, shown, real = rng.choice(RLO_STEMS), rng.choice(RLO_SHOWN_EXTS), rng.choice(RLO_REAL_EXTS)
    name = f"{stem}_\u202e{shown[::-1]}.{real}"
    looks_like = f"{stem}_{real[::-1]}.{shown}"
    return f'"{name}" (renders as "{looks_like}")'


def _homoglyph(words):
    def part(rng, _source):
        word = rng.choice(words)
        at = rng.choice([i for i, c in enumerate(word) if c in HOMOGLYPHS])
        fake, name = rng.choice(HOMOGLYPHS[word[at]])
        spoof = word[:at] + fake + word[at + 1 :]
        return f'"{spoof}" ({_codepoint(fake)} {name} at index {at}) imitates "{word}"'

    return part


def _traversal(rng, _source):
    step = rng.choice(TRAVERSAL_STEPS)
    targets = WINDOWS_TARGETS if "\\" in step else UNIX_TARGETS
    return step * rng.randint(2, 8) + rng.choice(targets)


def _base64_of(choices):
    return lambda rng, _source: base64.b64encode(rng.choice(choices).encode()).decode()


def _rate_excess(rng, source):
    limit = rng.choice(RATE_LIMITS)
    seen = limit + rng.randint(1, 3 * limit)
    return f"{limit} requests/min on {_method(source)} ({seen} in the last 60 s)"


def _aws_key(rng, _source):
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


PARTS = {
    "offset": _number(3, 480),
    "line": _number(3, 420),
    "octet": _number(1, 254),
    "size": _number(64, 65536),
    "count": _number(17, 4096),
    "in_flight": _number(17, 256),
    "client": lambda rng, _source: f"{rng.getrandbits(16):04x}",
    "entropy": lambda rng, _source: f"{rng.uniform(7.2, 7.99):.2f}",
    "method": lambda _rng, source: _method(source),
    "tool": _tool,
    "word": _pick(WORDS),
    "arg": _pick(ARG_NAMES),
    "file": _pick(FILES),
    "doc": _pick(DOCS),
    "code_file": _pick(CODE_FILES),
    "bad_action": _pick(BAD_ACTIONS),
    "shell_payload": _pick(SHELL_PAYLOADS),
    "sql_payload": _pick(SQL_PAYLOADS),
    "ansi_payload": _pick(ANSI_PAYLOADS),
    "control_payload": _pick(CONTROL_PAYLOADS),
    "weird_method": _pick(WEIRD_METHODS),
    "zw_word": _zw_word,
    "zw_sentence": _zw_sentence,
    "tag_smuggle": _tag_smuggle,
    "rlo_file": _rlo_file,
    "homoglyph_domain": _homoglyph(DOMAINS),
    "homoglyph_tool": _homoglyph(TOOL_NAMES),
    "traversal": _traversal,
    "b64_shell": _base64_of(SHELL_DROPPERS),
    "b64_js": _base64_of(JS_PAYLOADS),
    "rate_excess": _rate_excess,
    "aws_key": _aws_key,
}


class _Parts(dict):
    """For str.format_map: each {name} draws PARTS[name], left to right."""

    def __init__(self, rng: random.Random, source: str):
        super().__init__()
        self.rng, self.source = rng, source

    def __missing__(self, name: str) -> str:
        return PARTS[name](self.rng, self.source)


def _long_payload(rng: random.Random) -> str:
    target = rng.randint(*LONG_PAYLOAD_BYTES)
    lines: list[str] = []
    while len(" ".join(lines).encode()) < target:
        lines.append(rng.choice(LONG_PAYLOAD_LINES))
    return " ".join(lines)


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------


def _now_unix_us() -> int:
    return time.time_ns() // 1000


def _new_deck() -> list[tuple[int, int]]:
    return [(t, sev) for t, counts in DECK.items() for sev, n in counts.items() for _ in range(n)]


class ThreatGenerator:
    """A deterministic (for a seed) stream of realistic threats."""

    def __init__(self, seed: int | None = None):
        self._rng = random.Random(seed)
        self._deck: list[tuple[int, int]] = []

    def next(self, now_unix_us: int | None = None) -> Threat:
        """One threat stamped now_unix_us (default: the wall clock)."""
        if now_unix_us is None:
            now_unix_us = _now_unix_us()
        threat_type, severity = self._deal()
        sources, template = self._rng.choice(TEMPLATES[threat_type])
        source = self._rng.choice(sources)
        details = template.format_map(_Parts(self._rng, source))
        if self._rng.random() < LONG_DETAILS_CHANCE:
            payload = _long_payload(self._rng)
            details += f'; full payload ({len(payload.encode())} bytes): "{payload}"'
        blocked = self._rng.random() < BLOCK_CHANCE[severity]
        return Threat(threat_type, severity, blocked, source, details, now_unix_us)

    def batch(self, n: int, now_unix_us: int | None = None) -> list[Threat]:
        """n threats, all stamped the same moment (the clock is read once)."""
        if now_unix_us is None:
            now_unix_us = _now_unix_us()
        return [self.next(now_unix_us) for _ in range(n)]

    def _deal(self) -> tuple[int, int]:
        if not self._deck:
            self._deck = _new_deck()
            self._rng.shuffle(self._deck)
        return self._deck.pop()
