"""What is news: the intake of the live feed, free of Qt.

The reader thread delivers batches; the history gives back the newest threats
at start. `Feed` decides, before anything is drawn:

- which threats are new: a threat whose EventKey was seen before (restored
  from the history, or read again after a reader restart) is not news;
- the totals (threats, blocked, per severity) of this session's news;
- which of the news the table lists: under a flood at most `rows_per_update`
  per delivery, the newest (each row costs the GUI thread ~3 µs; the counters,
  the notifier and the history still take every threat);
- restored threats: shown, remembered as known, never counted or notified;
- what needs the user (issue 14 item 2): every new threat is *unseen* until
  the user opens its row (`open()`) or marks all as seen (`mark_all_seen()`);
  restored threats come back with the seen state the history kept for them
  (`restore(..., unseen=..., unseen_total=...)`). `unseen` counts them all,
  listed or not (a flood's unlisted threats, rows pushed out of the table);
  a row the table still holds says its own state (`is_unseen()`). Without a
  history this state lives for the session only.

The window shows `Update.rows`; the notifier and the tray take `Update.news`,
`Feed.totals` and `Feed.unseen`.
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
        # What needs the user: unseen threats in total, and those of them the table can still show.
        self.unseen = 0
        self._unseen: set[EventKey] = set()
        self.restored = 0  # threats restored from the history at start (listed, from before this session)

    def set_max_rows(self, n: int) -> None:
        self.max_rows = max(1, int(n))
        self._forget()

    def seen(self, key: EventKey) -> bool:
        return key in self._seen

    def is_unseen(self, key: EventKey) -> bool:
        """Has the user not yet opened (or marked seen) this threat?"""
        return key in self._unseen

    def restore(self, events: Iterable[ThreatEvent], unseen: Iterable[EventKey] = (),
                unseen_total: int | None = None) -> list[ThreatEvent]:
        """Threats from the history (oldest first): remembered as known, not counted.
        `unseen`: the keys among them the user has not seen; `unseen_total`: how many
        threats the history holds unseen in all (default: those keys).
        Returns those to show (not known before, at most max_rows, the newest)."""
        fresh = self._remember(events)[-self.max_rows:]
        self.restored += len(fresh)
        shown = {e.key for e in fresh}
        keys = {k for k in unseen if k in shown and k not in self._unseen}
        self._unseen |= keys
        self.unseen += max(len(keys), int(unseen_total)) if unseen_total is not None else len(keys)
        return fresh

    def open(self, key: EventKey) -> bool:
        """The user opened this threat: seen from now on. True when it was unseen (it is
        for the caller to keep that in the history)."""
        if key not in self._unseen:
            return False
        self._unseen.discard(key)
        self.unseen = max(0, self.unseen - 1)
        return True

    def mark_all_seen(self) -> int:
        """Every threat so far seen; returns how many were unseen."""
        n = self.unseen
        self.unseen = 0
        self._unseen.clear()
        return n

    def take(self, batches: list[Batch], list_rows: bool = True) -> Update:
        """Delivered batches (each oldest first): count every threat not seen before,
        and pick the newest of them (at most rows_per_update) for the table; none when
        not list_rows (newer threats already wait: only the newest are listed)."""
        news: list[Batch] = []
        added = 0
        totals = self.totals
        for batch in batches:
            fresh = self._remember(batch.events, unseen=True)
            if not fresh:
                continue
            news.append(batch._replace(events=fresh))
            added += len(fresh)
            # counted in C (a flood's batch has a handful of distinct severities)
            totals["blocked"] += sum(map(bool, map(_BLOCKED, fresh)))
            for severity, n in Counter(map(_SEVERITY, fresh)).items():
                totals[severity_level(severity)] += n
        totals["total"] += added
        self.unseen += added
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

    def _remember(self, events: Iterable[ThreatEvent], unseen: bool = False) -> list[ThreatEvent]:
        """The events not known before, now known (and, when `unseen`, waiting for the user)."""
        seen, order = self._seen, self._order
        events = events if isinstance(events, list) else list(events)
        keys = list(map(_KEY, events))
        if seen.isdisjoint(keys):  # the usual case, all new: set operations in C
            before = len(seen)
            seen.update(keys)
            if len(seen) - before == len(keys):
                order.extend(keys)
                if unseen:
                    self._unseen.update(keys)
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
        if unseen:
            self._unseen.update(e.key for e in fresh)
        self._forget()
        return fresh

    def _forget(self) -> None:
        excess = len(self._order) - self.max_rows
        if excess > 0:
            popleft = self._order.popleft
            gone = [popleft() for _ in range(excess)]
            self._seen.difference_update(gone)
            self._unseen.difference_update(gone)  # no row to open any more: still counted until all are marked seen
