"""What is news: the intake of the live feed, free of Qt.

The reader thread delivers batches; the history gives back the newest threats
at start. `Feed` decides, before anything is drawn:

- which threats are new: a threat whose EventKey was seen before (restored
  from the history, or read again after a reader restart) is not news;
- the totals (threats, blocked, per severity) of this session's news;
- which of the news the table lists: under a flood at most `rows_per_update`
  per delivery, the newest (each row costs the GUI thread ~3 µs; the counters,
  the notifier and the history still take every threat);
- restored threats: shown, remembered as seen, never counted or notified.

The window shows `Update.rows`; the notifier and the tray take `Update.news`
and `Feed.totals`.
"""

from __future__ import annotations

from collections import Counter, deque
from operator import attrgetter
from typing import Iterable, NamedTuple

from kindlyguard_monitor.event import EventKey, ThreatEvent
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, severity_level
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import DEFAULT_FEED_SIZE

# The most rows one update puts in the table: ~3 µs of Python each, so at most
# about 60 updates/s × 1,000 rows keep the GUI thread responsive under a flood.
ROWS_PER_UPDATE = 1000
_KEY, _SEVERITY, _BLOCKED = attrgetter("key"), attrgetter("severity"), attrgetter("blocked")


class Update(NamedTuple):
    """What one delivery brought."""

    news: list[Batch]  # the batches' new threats, oldest first (for the notifier and the tray)
    rows: list[ThreatEvent]  # the newest of them for the table, oldest first
    added: int  # how many threats were new

    @property
    def not_listed(self) -> int:
        return self.added - len(self.rows)


class Feed:
    def __init__(self, max_rows: int = DEFAULT_FEED_SIZE, rows_per_update: int = ROWS_PER_UPDATE):
        self.max_rows = max(1, int(max_rows))
        self.rows_per_update = max(1, int(rows_per_update))
        self.totals = {"total": 0, "blocked": 0, LOW: 0, MEDIUM: 0, HIGH: 0, CRITICAL: 0}
        self.not_listed = 0  # new threats counted but not put in the table (floods)
        # Keys seen, oldest first, as many as the table holds: what the table could
        # still show is never news again.
        self._seen: set[EventKey] = set()
        self._order: deque[EventKey] = deque()

    def set_max_rows(self, n: int) -> None:
        self.max_rows = max(1, int(n))
        self._forget()

    def seen(self, key: EventKey) -> bool:
        return key in self._seen

    def restore(self, events: Iterable[ThreatEvent]) -> list[ThreatEvent]:
        """Threats from the history (oldest first): remembered as seen, not counted.
        Returns those to show (not seen before, at most max_rows, the newest)."""
        fresh = self._remember(events)
        return fresh[-self.max_rows:]

    def take(self, batches: list[Batch], list_rows: bool = True) -> Update:
        """Delivered batches (each oldest first): count every threat not seen before,
        and pick the newest of them (at most rows_per_update) for the table; none when
        not list_rows (newer threats already wait: only the newest are listed)."""
        news: list[Batch] = []
        added = 0
        totals = self.totals
        for batch in batches:
            fresh = self._remember(batch.events)
            if not fresh:
                continue
            news.append(batch._replace(events=fresh))
            added += len(fresh)
            # counted in C (a flood's batch has a handful of distinct severities)
            totals["blocked"] += sum(map(bool, map(_BLOCKED, fresh)))
            for severity, n in Counter(map(_SEVERITY, fresh)).items():
                totals[severity_level(severity)] += n
        totals["total"] += added
        budget = min(self.rows_per_update, self.max_rows) if list_rows else 0
        rows: list[ThreatEvent] = []
        for batch in reversed(news):
            if budget <= 0:
                break
            take = batch.events[-budget:]
            budget -= len(take)
            rows[0:0] = take
        update = Update(news, rows, added)
        self.not_listed += update.not_listed
        return update

    def _remember(self, events: Iterable[ThreatEvent]) -> list[ThreatEvent]:
        seen, order = self._seen, self._order
        events = events if isinstance(events, list) else list(events)
        keys = list(map(_KEY, events))
        if seen.isdisjoint(keys):  # the usual case, all new: set operations in C
            before = len(seen)
            seen.update(keys)
            if len(seen) - before == len(keys):
                order.extend(keys)
                self._forget()
                return events
            seen.difference_update(keys)  # a key twice in the batch: one at a time below
        fresh = []
        for e in events:
            key = e.key
            if key in seen:
                continue
            seen.add(key)
            order.append(key)
            fresh.append(e)
        self._forget()
        return fresh

    def _forget(self) -> None:
        excess = len(self._order) - self.max_rows
        if excess > 0:
            popleft = self._order.popleft
            self._seen.difference_update([popleft() for _ in range(excess)])
