"""The overview's numbers, free of Qt: threats per minute by severity over the
last hour and the last day, blocked against allowed, the top sources and types.

Fed what the feed decided was news (feed.Update.news) and what it restored from
the history, each threat counted in the minute of its own timestamp (a time in
the future counts as now; older than a day is not counted). Minutes older than
a day are dropped as time passes, so memory stays bounded: at most 1,440 minute
buckets, each naming at most SOURCES_PER_MINUTE distinct sources (an attacker
choosing a new source per threat adds to "other sources", not to memory).

`version` changes whenever the numbers do: a widget redraws only when it moved.
"""

from __future__ import annotations

import time
from collections import Counter
from operator import itemgetter
from typing import Callable, Iterable, NamedTuple

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, severity_level

MINUTE_US = 60_000_000
HOUR_MINUTES = 60
DAY_MINUTES = 24 * 60
SOURCES_PER_MINUTE = 64
LEVELS = (LOW, MEDIUM, HIGH, CRITICAL)
# ThreatEvent fields by position (a NamedTuple): timestamp; severity, blocked, type, source
_TIMESTAMP = itemgetter(ThreatEvent._fields.index("timestamp_unix_us"))
_GROUP = itemgetter(*(ThreatEvent._fields.index(f) for f in ("severity", "blocked", "threat_type", "source")))


class _Minute:
    __slots__ = ("counts", "types", "sources", "other_sources")

    def __init__(self):
        self.counts = [0] * 8  # (severity level - 1) * 2 + blocked
        self.types: Counter[int] = Counter()
        self.sources: Counter[str] = Counter()
        self.other_sources = 0


class Span(NamedTuple):
    """One chart: per bin, threats per severity (LOW..CRITICAL); blocked and allowed in the span."""

    minutes: int  # the span
    bin_minutes: int  # minutes per bin
    bins: list[tuple[int, int, int, int]]  # oldest first; counts per severity in each bin
    blocked: int
    allowed: int

    @property
    def total(self) -> int:
        return self.blocked + self.allowed

    def peak_per_minute(self) -> float:
        return max((sum(b) / self.bin_minutes for b in self.bins), default=0.0)


class Overview:
    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._minutes: dict[int, _Minute] = {}
        self._types: Counter[int] = Counter()  # over the kept day
        self._sources: Counter[str] = Counter()
        self._other_sources = 0
        self.version = 0

    def _now_minute(self, now_us: int | None) -> int:
        if now_us is None:
            now_us = int(self._clock() * 1_000_000)
        return now_us // MINUTE_US

    # ---- feeding

    def add(self, events: Iterable[ThreatEvent], now_us: int | None = None) -> int:
        """Count threats (any order); returns how many fell in the last day.
        Counted per distinct (minute, severity, blocked, type, source) with Counter's C loop:
        under a flood most threats of a batch share these, so the Python work is per group."""
        now = self._now_minute(now_us)
        oldest = now - DAY_MINUTES + 1
        events = events if isinstance(events, list) else list(events)
        if not events:
            return 0
        stamps = list(map(_TIMESTAMP, events))
        first, last = min(stamps) // MINUTE_US, max(stamps) // MINUTE_US
        if first == last:  # the usual case, one minute: no (minute, group) pair per threat
            groups = {(first, group): n for group, n in Counter(map(_GROUP, events)).items()}
        else:
            groups = Counter(zip(map(MINUTE_US.__rfloordiv__, stamps), map(_GROUP, events)))  # all in C
        minutes = self._minutes
        added = 0
        for (minute, (severity, blocked, threat_type, source)), n in groups.items():
            if minute > now:
                minute = now  # a clock ahead of ours: counted now
            elif minute < oldest:
                continue
            bucket = minutes.get(minute)
            if bucket is None:
                bucket = minutes[minute] = _Minute()
            bucket.counts[(severity_level(severity) - 1) * 2 + (1 if blocked else 0)] += n
            bucket.types[threat_type] += n
            self._types[threat_type] += n
            if source in bucket.sources or len(bucket.sources) < SOURCES_PER_MINUTE:
                bucket.sources[source] += n
                self._sources[source] += n
            else:
                bucket.other_sources += n
                self._other_sources += n
            added += n
        if added:
            self.version += 1
        self.expire(now * MINUTE_US)
        return added

    def add_batches(self, batches, now_us: int | None = None) -> int:
        """feed.Update.news: a list of Batches."""
        return self.add([e for b in batches for e in b.events], now_us)

    def expire(self, now_us: int | None = None) -> None:
        """Forget minutes older than a day (called as time passes, and by add)."""
        oldest = self._now_minute(now_us) - DAY_MINUTES + 1
        old = [m for m in self._minutes if m < oldest]
        for m in old:
            bucket = self._minutes.pop(m)
            self._types -= bucket.types
            self._sources -= bucket.sources
            self._other_sources -= bucket.other_sources
        if old:
            self.version += 1

    # ---- reading

    def span(self, minutes: int, bin_minutes: int = 1, now_us: int | None = None) -> Span:
        """The last `minutes` (ending with the current minute) in bins of `bin_minutes`."""
        now = self._now_minute(now_us)
        bin_minutes = max(1, int(bin_minutes))
        n_bins = max(1, int(minutes) // bin_minutes)
        first = now - n_bins * bin_minutes + 1
        bins = [[0, 0, 0, 0] for _ in range(n_bins)]
        blocked = allowed = 0
        for minute, bucket in self._minutes.items():
            if minute < first or minute > now:
                continue
            b = bins[(minute - first) // bin_minutes]
            c = bucket.counts
            for i in range(4):
                b[i] += c[2 * i] + c[2 * i + 1]
            allowed += c[0] + c[2] + c[4] + c[6]
            blocked += c[1] + c[3] + c[5] + c[7]
        return Span(n_bins * bin_minutes, bin_minutes, [tuple(b) for b in bins], blocked, allowed)

    def top_sources(self, n: int = 5) -> list[tuple[str, int]]:
        """The sources with the most threats in the last day (raw text: show it with visible())."""
        return self._sources.most_common(n)

    def other_sources(self) -> int:
        """Threats whose source was not kept (too many distinct sources in one minute)."""
        return self._other_sources

    def top_types(self, n: int = 5) -> list[tuple[int, int]]:
        return self._types.most_common(n)
