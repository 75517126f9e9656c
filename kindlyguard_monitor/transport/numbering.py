"""No event twice, none skipped uncounted: the event numbers one TransportManager has seen.

Events are numbered (generation, seq) on the ring, and our writers' WebSocket
threats carry the same numbers. `Numbering` remembers the next number it expects
of each generation: a WebSocket threat below it is a duplicate and dropped, a
jump is counted as missed, and a ring of a generation the WebSocket was
delivering is read from the next number on (`resume`). A WebSocket threat
without a number (a Shield that does not send `seq`) cannot be matched: it is
delivered as it comes, and noted (`ws_unnumbered`). Used by the manager's one
polling thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.transport.link_queue import Overflow

# Event numbers from a WebSocket: how far a seq may fall back and still be a
# duplicate (a replay at a transport switch), and how far it may jump ahead and
# still be a gap. Beyond either, the numbering started again (a new epoch).
DUPLICATE_WINDOW = 1 << 20
MAX_GAP = 1 << 32


@dataclass
class WsCounts:
    delivered: int = 0
    missed: int = 0
    duplicates: int = 0  # dropped because another transport (or a replay) delivered them
    overflow: int = 0  # dropped in the WebSocket thread: we read them slower than the server sent them
    epochs: int = 0  # times the server's numbering started again (seq far back or absurdly far ahead)


class Numbering:
    def __init__(self):
        self.next_seq: dict[int | None, int] = {}  # generation -> next event number not yet delivered
        self.started = False  # has anything been delivered (decides what counts as missed)
        self.ws_unnumbered = False  # the WebSocket delivered threats without numbers since we left the ring
        self.ws_counts = WsCounts()

    def resume(self) -> dict[int, int]:
        """Where a ring of each numbered generation goes on from."""
        return {g: n for g, n in self.next_seq.items() if g is not None}

    def ring_read(self, generation: int | None, last_seq: int) -> None:
        """The ring delivered events of `generation` up to `last_seq`."""
        self.next_seq[generation] = last_seq + 1
        self.started = True

    def only_unnumbered(self) -> bool:
        """Has the WebSocket delivered threats, none of them numbered? Then a ring has nothing to
        resume from: it starts at its newest event rather than show anything twice."""
        return self.started and self.ws_unnumbered and not any(g is not None for g in self.next_seq)

    def gap(self, generation: int | None, seq: int) -> int | None:
        """Events missed before `seq` of `generation`; None for a duplicate. A seq far
        behind what we expect, or absurdly far ahead, starts a new epoch: nothing missed."""
        expected = self.next_seq.get(generation)
        if expected is None:
            # A generation we have not seen: its earlier events were never ours
            # to see if nothing had been delivered yet, else they are missed.
            if not self.started:
                return 0
            if seq > MAX_GAP:
                self.ws_counts.epochs += 1
                return 0
            return seq
        if seq < expected:
            if expected - seq <= DUPLICATE_WINDOW:
                return None
            self.ws_counts.epochs += 1  # numbering restarted
            return 0
        if seq - expected > MAX_GAP:
            self.ws_counts.epochs += 1
            return 0
        return seq - expected

    def skip(self, overflow: Overflow) -> None:
        """Threats the link dropped because we read too slowly: counted as missed, numbered or not."""
        self.ws_counts.overflow += overflow.count
        self.ws_counts.missed += overflow.unnumbered
        for generation, (first, last, _count) in overflow.ranges.items():
            gap = self.gap(generation, first)
            if gap is None:
                expected = self.next_seq[generation]
                if last < expected:
                    continue
                first = expected
                gap = 0
            self.ws_counts.missed += gap + last + 1 - first
            self.next_seq[generation] = last + 1
            self.started = True

    def accept(self, threats: list[ThreatEvent]) -> list[ThreatEvent]:
        """Drop duplicates, count gaps; returns the threats to deliver."""
        out = []
        next_seq = self.next_seq
        for t in threats:
            expected = next_seq.get(t.generation)
            if expected is not None and t.seq == expected:  # the usual: the next number
                next_seq[t.generation] = expected + 1
                out.append(t)
                continue
            if t.seq is None:
                out.append(t)
                self.started = True
                self.ws_unnumbered = True
                continue
            gap = self.gap(t.generation, t.seq)
            if gap is None:
                self.ws_counts.duplicates += 1
                continue
            self.ws_counts.missed += gap
            self.next_seq[t.generation] = t.seq + 1
            self.started = True
            out.append(t)
        self.ws_counts.delivered += len(out)
        return out
