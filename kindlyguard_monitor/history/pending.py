"""What waits to be written to the history: the store's queue and its bookkeeping.

The reader thread appends submitted batches (kindlyguard_monitor.history.store.submit);
the writer thread takes up to a transaction's worth from the front. A threat
waits as part of a submitted batch (`queued`), then in the transaction being
written (`inflight`). Seen marks (`Mark`) wait in the same queue, in order, so
"mark all as seen" covers exactly what was submitted before it.

Nothing here touches SQLite or takes a lock: every method is called with the
store's condition held. The counts make `flush()` exact: every item submitted
(a threat, a gap row, a mark) is finished once, when committed or dropped.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

from kindlyguard_monitor.event import U64
from kindlyguard_monitor.history.records import PackedRows, compact
from kindlyguard_monitor.vocabulary import Transport

MAX_PENDING_GAPS = 10_000  # beyond this, new gap records are merged into the last one


class Pending(NamedTuple):
    """A batch as submitted: its ThreatEvents, or (compact) its ring threats as compact rows
    (kindlyguard_monitor.history.records.compact), as they are or packed (PackedRows)."""

    transport: str
    generation: int | None
    events: list | tuple | PackedRows
    compact: bool = False


def pending(batch) -> Pending:
    """A submitted Batch as it waits, its events as they are."""
    return batch if type(batch) is Pending else Pending(batch.transport, batch.generation, batch.events)


def compacted(batch, packed: bool = False) -> Pending:
    """A batch with the ring's numbered threats as compact rows (made in C), anything else as it is;
    `packed`: the rows packed into one bytes object (PackedRows), to wait without the collector's walks."""
    events, gen = batch.events, batch.generation
    if events and not getattr(batch, "compact", False) and batch.transport == Transport.SHM \
            and type(gen) is int and 0 <= gen <= U64:
        try:
            rows = compact(events)
            return Pending(batch.transport, gen, PackedRows(rows) if packed else rows, True)
        except (AttributeError, TypeError):  # not ThreatEvents: stored by the careful path
            pass
    return pending(batch)


class Mark(NamedTuple):
    """Seen state to write: `keys` (history keys, bytes) seen, or every row stored so far (keys None)."""

    keys: tuple | None


class PendingQueue:
    def __init__(self, max_pending: int):
        self.max_pending = max_pending
        self.items: deque[Pending | Mark] = deque()
        self.queued = self.inflight = 0  # threats in each
        self.gaps: list[tuple] = []  # gap rows (the store's INSERT parameters)
        self.overflow = 0  # threats dropped, not yet in a gap row
        self.submitted = 0  # items accepted (a threat, a gap row or a mark each)
        self.finished = 0  # items committed or dropped
        self.first_waiting = 0.0  # monotonic time the oldest waiting item arrived
        self.last_submit = 0.0  # monotonic time threats last arrived
        self.dropped = 0  # threats dropped because too many waited (or unstorable)

    def waiting(self) -> int:
        """Threats submitted and not yet committed or dropped."""
        return self.queued + self.inflight

    def has_work(self) -> bool:
        return bool(self.items or self.gaps or self.overflow)

    def _mark_waiting(self) -> None:
        if not self.has_work():
            self.first_waiting = time.monotonic()

    def add_batches(self, batches: list[Pending]) -> int:
        """Append the batches that hold threats; returns how many threats (bounded by max_pending)."""
        added = 0
        first = not self.has_work()
        for b in batches:
            if b.events:
                self.items.append(b)
                added += len(b.events)
        if added:
            self.last_submit = now = time.monotonic()
            if first:
                self.first_waiting = now
            self.queued += added
            self.submitted += added
            self.trim()
        return added

    def add_mark(self, mark: Mark) -> None:
        self._mark_waiting()
        self.items.append(mark)
        self.submitted += 1

    def add_gap(self, row: tuple) -> None:
        self._mark_waiting()
        self.submitted += 1
        if len(self.gaps) >= MAX_PENDING_GAPS:  # merge: counts stay exact, the row count bounded
            last = self.gaps[-1]
            self.gaps[-1] = last[:3] + (last[3] + row[3], last[4] + row[4]) + last[5:]
            self.finished += 1
        else:
            self.gaps.append(row)

    def lose(self, n: int) -> None:
        """n threats will never be stored: count them, and record them in a store_overflow gap row."""
        if not self.overflow:
            self.submitted += 1  # the gap row that will record them
        self.overflow += n
        self.finished += n
        self.dropped += n

    def trim(self) -> None:
        """Drop the oldest waiting threats beyond max_pending.

        Why a bound: besides memory, every full collection of the cyclic GC walks
        each waiting event (with the GIL held): about 100 ms per million here."""
        excess = self.waiting() - self.max_pending
        i = 0
        while excess > 0 and i < len(self.items):
            item = self.items[i]
            if type(item) is Mark:  # marks stay: they cost nothing and say what the user saw
                i += 1
                continue
            cut = min(len(item.events), excess)
            if cut == len(item.events):
                del self.items[i]
            else:
                self.items[i] = item._replace(events=item.events[cut:])
                i += 1
            self.queued -= cut
            self.lose(cut)
            excess -= cut

    def take(self, room: int) -> tuple[list[Pending], list[Mark]]:
        """Up to `room` waiting threats from the front, moved to in-flight, and the marks
        among them; stops after a mark, so a mark covers exactly what came before it."""
        batches: list[Pending] = []
        marks: list[Mark] = []
        left = room
        while self.items and left > 0:
            first = self.items[0]
            if type(first) is Mark:
                marks.append(self.items.popleft())
                break
            if len(first.events) <= left:
                batches.append(self.items.popleft())
            else:
                batches.append(first._replace(events=first.events[:left]))
                self.items[0] = first._replace(events=first.events[left:])
            left -= len(batches[-1].events)
        taken = room - left
        self.queued -= taken
        self.inflight += taken
        return batches, marks

    def take_gaps(self, overflow_row) -> list[tuple]:
        """Every waiting gap row, plus a store_overflow row (made by `overflow_row(n)`) for
        the threats dropped since the last one."""
        gaps, self.gaps = self.gaps, []
        if self.overflow:
            gaps.append(overflow_row(self.overflow))
            self.overflow = 0
        return gaps

    def put_back(self, batches: list[Pending], marks: list[Mark], gaps: list[tuple]) -> None:
        """A transaction failed: its threats, marks and gap rows go back to the front, to be retried."""
        threats = sum(len(b.events) for b in batches)
        self.items.extendleft(reversed(batches + marks))
        self.queued += threats
        self.inflight -= threats
        self.gaps[:0] = gaps
        self.trim()

    def committed(self, batches: list[Pending], marks: list[Mark], gaps: list[tuple], unstorable: int) -> None:
        """A transaction committed; `unstorable` of its threats could not be stored at all."""
        threats = sum(len(b.events) for b in batches)
        self.inflight -= threats
        self.finished += threats - unstorable + len(marks) + len(gaps)
        if unstorable:  # counted and recorded as the store's own loss
            self.lose(unstorable)

    def discard(self) -> int:
        """Saving stopped for good: everything waiting is finished unsaved; returns the threats."""
        n = self.waiting()
        marks = sum(1 for i in self.items if type(i) is Mark)
        self.items.clear()
        self.finished += n + marks + len(self.gaps) + (1 if self.overflow else 0)
        self.queued = self.inflight = 0
        self.gaps, self.overflow = [], 0
        return n
