"""The bounded queue between the WebSocket thread and whoever reads it.

The WebSocket thread reads frames as fast as the server sends them; the reader
(kgmon tail writing into a pager, the GUI thread) may be slower. Without a
bound the difference piles up in memory (2.3 GiB in 40 s, issue 11). Here:

- every item has a weight (a threat message: its frame's bytes plus an
  estimate of the Python objects it became); threats beyond `max_weight` are
  not queued but counted in an `Overflow` the reader takes next, so they are
  reported as missed, never lost silently;
- notes about the link itself (connected, disconnected, status, server
  errors) always get through: they are few by construction (one per
  connection or per server frame that is not a threat, and those are bounded
  too: beyond `max_notes` waiting, `droppable` notes such as bad-frame reports
  are dropped; their counts stay in the link's counters).

`get(timeout)`, `get_nowait()` and `put()` behave like queue.SimpleQueue's.
"""

from __future__ import annotations

import queue
import threading
from collections import deque

THREAT_OBJECT_BYTES = 700  # what one parsed threat costs in Python objects, roughly
MAX_WEIGHT = 64 << 20
MAX_NOTES = 10_000


class Overflow:
    """Threats the reader was too slow to take, dropped in the WebSocket thread,
    in the queue where they would have been (so numbering stays in order)."""

    __slots__ = ("unnumbered", "ranges")

    def __init__(self):
        self.unnumbered = 0  # threats without a seq
        self.ranges: dict = {}  # generation -> [first seq, last seq, how many] of the numbered ones

    @property
    def count(self) -> int:
        return self.unnumbered + sum(r[2] for r in self.ranges.values())

    def add(self, threats: list) -> None:
        for t in threats:
            if t.seq is None:
                self.unnumbered += 1
                continue
            r = self.ranges.get(t.generation)
            if r is None:
                self.ranges[t.generation] = [t.seq, t.seq, 1]
            else:
                r[0], r[1], r[2] = min(r[0], t.seq), max(r[1], t.seq), r[2] + 1


class LinkQueue:
    def __init__(self, max_weight: int = MAX_WEIGHT, max_notes: int = MAX_NOTES):
        self.max_weight = max_weight
        self.max_notes = max_notes
        self.weight = 0
        self.dropped_threats = 0  # over the life of the queue
        self.dropped_notes = 0
        self._items: deque = deque()  # (item, weight)
        self._notes = 0
        self._overflow: Overflow | None = None  # the last item queued, while drops go on
        self._cond = threading.Condition()

    def put(self, item, weight: int = 0, droppable: bool = False) -> bool:
        """Queue `item`; False when it was dropped instead."""
        with self._cond:
            if weight == 0 and droppable and self._notes >= self.max_notes:
                self.dropped_notes += 1
                return False
            self._append(item, weight)
            return True

    def _append(self, item, weight: int) -> None:
        self._items.append((item, weight))
        self.weight += weight
        if weight == 0:
            self._notes += 1
        self._overflow = item if isinstance(item, Overflow) else None
        self._cond.notify()

    def put_threats(self, message, threats: list, frame_bytes: int | None = None) -> bool:
        """Queue a threat message (protocol.Threats) if it fits, else count its threats.
        Its weight: the frame's length when given (the threats' text came from it), else their text's."""
        text = frame_bytes if frame_bytes is not None else sum(len(t.source) + len(t.details) for t in threats)
        weight = text + THREAT_OBJECT_BYTES * len(threats)
        with self._cond:
            if self.weight + weight <= self.max_weight or not self._items:
                self._append(message, weight)
                return True
            if self._overflow is None:
                self._append(Overflow(), 0)  # a note: always queued
            self._overflow.add(threats)
            self.dropped_threats += len(threats)
            return False

    def get(self, block: bool = True, timeout: float | None = None):
        with self._cond:
            if block and not self._items:
                self._cond.wait_for(lambda: self._items, timeout)
            if not self._items:
                raise queue.Empty
            item, weight = self._items.popleft()
            self.weight -= weight
            if weight == 0:
                self._notes -= 1
            if item is self._overflow:
                self._overflow = None  # taken: later drops start a new one
            return item

    def get_nowait(self):
        return self.get(block=False)

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)
