"""Following the ring across writer restarts, with exact counts.

`RingFollower` is what a headless reader and the transport manager
use to say "give me the threats in the ring at this path, whoever writes it":

- attach() opens the ring after every health check, or raises RingError;
- poll() returns a batch of events, or raises WriterGone once the writer has
  closed, died (its process is gone, or its heartbeat is older than 3 s) or
  been replaced, and only after every event still in the old ring was read;
- after WriterGone, attach() again picks up the next writer's ring (a new
  generation) from its first event; events of that generation published
  before we attached and no longer in the ring are counted as missed;
- a writer given up because its heartbeat stopped (stopped with SIGSTOP,
  stuck) that comes back (same generation, its process alive, its heartbeat
  moving again) is attached again where we left it: what it published in
  between is delivered, or counted as missed if the ring no longer holds it;
- a ring truncated under the reader (native/kg_fault.h turns the SIGBUS into
  an error) is WriterGone(TRUNCATED) with the sentence of kindlyguard_monitor.ring.errors.

The Shield's own v1 ring (kindlyguard_monitor/ring/v1.py) has no generation: its writer
restarts on the same file and numbering (events_written) goes on. So a v1
ring is followed by file: attach() to the same file continues from our own
cursor (the C reader notices a reset there and counts what it took), a new
file starts like a new writer's ring. Its writer is judged alive from the
lock file and pids, at most once a second, and never while it is writing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import psutil

from kindlyguard_monitor import _ring
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.layout import STATE_CLOSED, read_header
from kindlyguard_monitor.ring.reader import DEFAULT_SPIN_NS, Event, Start, open_any

# A writer whose process is gone is believed gone once its heartbeat is also
# this old (the pid may be from another pid namespace, so it alone is not proof).
PID_GONE_HEARTBEAT_NS = 1_000_000_000
# An idle reader looks at the writer's health this often (a stat or two each time), and at once
# when a timed wait ended early with nothing (the writer closed or replaced the ring, or stop()).
# A writer that dies without closing is found from its heartbeat within this of its 1 s grace.
HEALTH_CHECK_INTERVAL_NS = 500_000_000
V1_LIVENESS_INTERVAL_NS = 1_000_000_000  # v1: how often to ask whether the writer's process is alive


class WriterGone(Exception):
    """The ring's writer closed, died or was replaced; everything it left was read."""

    def __init__(self, status: Status, reason: str):
        self.status = status
        super().__init__(reason)


@dataclass
class Counts:
    delivered: int = 0
    missed: int = 0
    corrupt: int = 0

    @property
    def accounted(self) -> int:
        return self.delivered + self.missed + self.corrupt


@dataclass
class _Stalled:
    """A ring left because its writer stopped its heartbeat: it may come back."""

    cursor: int  # the next event number not yet delivered or counted
    heartbeat_mono_ns: int | None  # the heartbeat when we left: it must move before we believe it again


@dataclass
class RingFollower:
    path: str
    start: Start = "oldest"
    spin_ns: int = DEFAULT_SPIN_NS
    adaptive: bool = True
    counts: Counts = field(default_factory=Counts)
    reader: _ring.Reader | None = None
    _attached_before: bool = False
    _last_health_ns: int = 0
    _base: Counts = field(default_factory=Counts)  # counts of readers already closed
    _seen_generations: set[int] = field(default_factory=set)  # writers attached to, or counted as missed
    _stalled: dict[int, _Stalled] = field(default_factory=dict)  # generation -> where a stalled writer was left
    _v1_resume: tuple | None = None  # v1: (file id, next event number, fingerprint) of the ring we left
    _v1_seen: tuple[int, int] = (-1, 0)  # v1: (events_written, when it last moved, mono ns)
    _v1_checked_ns: int = 0

    def attach(self, resume: Mapping[int, int] | None = None, started: bool | None = None,
               at_newest: bool = False) -> _ring.Reader:
        """Open the ring (RingError if it cannot be used).

        After WriterGone, only a new writer's ring is accepted: the ring of the
        writer we just gave up on (same generation) is refused with STALE
        until it is replaced, so its events are never delivered twice. A new
        writer's ring that already closed before we could attach has its
        events counted as missed (read from its header), never lost silently.

        resume maps a generation to the next event number another transport
        has not delivered yet: a ring of that generation is read from there.
        started says whether the consumer has been receiving already (default:
        whether this follower attached before); only then are the events a
        new writer published before we came counted as missed. at_newest
        starts at the newest event and counts nothing (for a consumer that
        cannot tell which events it already has)."""
        started = self._attached_before if started is None else started
        resume = resume or {}
        start = "newest" if at_newest else self.start if not started else "oldest"
        try:
            reader = open_any(self.path, start=start, spin_ns=self.spin_ns, adaptive=self.adaptive)
        except RingError as exc:
            if exc.status == Status.CLOSED and started:
                self._count_unseen_closed_ring(resume)
            raise
        if getattr(reader, "format", 2) == v1.VERSION:
            return self._attach_v1(reader, started, at_newest)
        if reader.generation in self._seen_generations:
            stalled = self._stalled.get(reader.generation)
            if stalled is None or not self._came_back(reader, stalled):
                reader.close()
                raise RingError(Status.STALE, self.path, "still the ring of the writer that went away; "
                                "waiting for a new writer")
            # The same writer, alive again: go on where we left it.
            del self._stalled[reader.generation]
            resume = {**resume, reader.generation: max(resume.get(reader.generation, 0), stalled.cursor)}
        self.reader = reader
        if reader.generation in resume:
            reader.seek(resume[reader.generation])  # what the ring no longer holds counts as missed
        elif started and not at_newest:
            # A new writer: its events before what the ring still holds were never seen.
            self._base.missed += reader.cursor
        self._attached_before = True
        self._seen_generations.add(reader.generation)
        self._sync_counts()
        return reader

    def _attach_v1(self, reader, started: bool, at_newest: bool):
        resume = self._v1_resume
        if resume is not None and resume[0] == reader.file_id and not at_newest:
            reader.seek(resume[1], resume[2])  # the same file: go on from our cursor
        elif started and not at_newest:
            self._base.missed += reader.cursor  # another file: what it no longer holds was never seen
        self.reader = reader
        self._attached_before = True
        self._v1_seen = (reader.write_seq, time.monotonic_ns())
        self._sync_counts()
        return reader

    @property
    def generation(self) -> int | None:
        return self.reader.generation if self.reader else None

    def poll(self, timeout: float = 0.1, max_events: int = 0) -> list[Event]:
        """Events since the last poll (at most max_events if > 0); [] if none
        came within `timeout`. Raises WriterGone when the writer is gone and
        its ring is drained."""
        reader = self.reader
        if reader is None:
            raise RuntimeError("attach() first")
        began = time.monotonic_ns()
        events = self._read(reader, timeout, max_events)
        if events:
            return events
        now = time.monotonic_ns()
        woken_early = timeout > 0 and now - began < timeout * 0.9e9
        if woken_early or now - self._last_health_ns >= HEALTH_CHECK_INTERVAL_NS:
            self._last_health_ns = now
            problem = self._problem(reader)
            if problem:
                # Hand out whatever the old ring still holds before saying it is gone;
                # the next empty poll finds the problem again.
                leftover = self._read(reader, 0, max_events)
                if leftover:
                    return leftover
                if problem[0] == Status.STALE and reader.generation is not None \
                        and _process_alive(reader.writer_pid):
                    # stopped or stuck, not dead: it may come back (attach() checks)
                    self._stalled[reader.generation] = _Stalled(reader.cursor, _heartbeat(self.path))
                self.close()
                raise WriterGone(*problem)
        return events

    def stop(self) -> None:
        """Make a poll() running in another thread return now."""
        if self.reader is not None:
            self.reader.stop()

    def close(self) -> None:
        if self.reader is not None:
            self._sync_counts()
            self._base = Counts(self.counts.delivered, self.counts.missed, self.counts.corrupt)
            if getattr(self.reader, "format", 2) == v1.VERSION and not self.reader.closed:
                self._v1_resume = (self.reader.file_id, self.reader.cursor, self.reader.fingerprint)
            self.reader.close()
            self.reader = None

    # -- internals

    def _read(self, reader: _ring.Reader, timeout: float, max_events: int) -> list[Event]:
        try:
            events = reader.poll(timeout, max_events)
        except _ring.Error as exc:  # the ring was truncated under us
            self.close()
            status = Status(exc.args[0])
            raise WriterGone(status, str(RingError(status, self.path, self._size_now()))) from None
        self._sync_counts()
        return events

    def _size_now(self) -> str:
        try:
            return f"the file is now {os.stat(self.path).st_size} bytes"
        except OSError as exc:
            return f"the file is gone: {exc.strerror}"

    def _came_back(self, reader: _ring.Reader, stalled: _Stalled) -> bool:
        """Is a writer we gave up on for its heartbeat alive again? Its process
        is there and its heartbeat moved since (a heartbeat frozen in the
        future must not bring a dead writer back)."""
        return _process_alive(reader.writer_pid) and _heartbeat(self.path) != stalled.heartbeat_mono_ns

    def _count_unseen_closed_ring(self, resume: Mapping[int, int]) -> None:
        """A writer came and went between two attach attempts: count its events as missed.
        The header is read again, by path: if a new writer has replaced the closed ring
        meanwhile (a restart), that ring is running and is not counted; the next attach takes it."""
        try:
            header = read_header(self.path)
        except RingError:
            return
        generation, published = header.get("generation"), header.get("write_seq")
        if not (header.get("header_crc_ok") and generation and published is not None
                and header.get("state") == STATE_CLOSED):
            return
        stalled = self._stalled.pop(generation, None)
        if stalled is not None:  # a writer we had left stalled came back and closed before we saw it
            self._base.missed += max(0, published - max(resume.get(generation, 0), stalled.cursor))
            self.counts.missed = self._base.missed
        elif generation not in self._seen_generations:
            self._seen_generations.add(generation)
            self._base.missed += max(0, published - resume.get(generation, 0))
            self.counts.missed = self._base.missed

    def _sync_counts(self) -> None:
        r = self.reader
        if r is not None:
            self.counts.delivered = self._base.delivered + r.delivered
            self.counts.missed = self._base.missed + r.missed
            self.counts.corrupt = self._base.corrupt + r.corrupt

    def _problem(self, reader: _ring.Reader) -> tuple[Status, str] | None:
        if getattr(reader, "format", 2) == v1.VERSION:
            return self._problem_v1(reader)
        status = Status(reader.health())
        if status == Status.OK and reader.heartbeat_age_ns() > PID_GONE_HEARTBEAT_NS:
            if not _process_alive(reader.writer_pid):
                status = Status.STALE
                return status, f"the writer (pid {reader.writer_pid}) has exited"
        if status == Status.OK:
            return None
        if status == Status.STALE:
            return status, (f"the writer (pid {reader.writer_pid}) stopped its heartbeat "
                            f"{reader.heartbeat_age_ns() / 1e9:.1f} s ago")
        if status == Status.BAD_HEADER:
            state = _header_field(self.path, "state")
            return status, str(RingError(status, self.path, f"state {state}"))
        if status == Status.TRUNCATED:
            return status, str(RingError(status, self.path, self._size_now()))
        reasons = {
            Status.CLOSED: "the writer closed the ring",
            Status.REPLACED: "the ring file was replaced (the writer restarted)",
        }
        return status, reasons.get(status, status.name.lower())

    def _problem_v1(self, reader) -> tuple[Status, str] | None:
        status = Status(reader.health())
        if status == Status.TRUNCATED:
            return status, str(RingError(status, self.path, self._size_now()))
        if status != Status.OK:
            reasons = {
                Status.REPLACED: "the ring file was replaced",
                Status.BAD_MAGIC: "the ring's header was overwritten",
                Status.BAD_VERSION: "the ring's header was rewritten in another format",
            }
            return status, reasons.get(status, status.name.lower())
        now = time.monotonic_ns()
        written = reader.write_seq
        if written != self._v1_seen[0]:
            self._v1_seen = (written, now)
        if now - self._v1_seen[1] < PID_GONE_HEARTBEAT_NS or now - self._v1_checked_ns < V1_LIVENESS_INTERVAL_NS:
            return None  # writing now, or asked less than a second ago
        self._v1_checked_ns = now
        state = v1.writer_state(self.path, reader.header())
        if state.alive:
            return None
        return (Status.CLOSED if state.closed else Status.STALE), state.reason


def _process_alive(pid: int) -> bool:
    """Is `pid` a live (not zombie) process here? Unknown counts as alive."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, ValueError, OSError):
        return True


def _header_field(path: str, name: str) -> int | None:
    """One header field read with a plain file read (never through a mapping)."""
    try:
        return read_header(path).get(name)
    except RingError:
        return None


def _heartbeat(path: str) -> int | None:
    return _header_field(path, "heartbeat_mono_ns")
