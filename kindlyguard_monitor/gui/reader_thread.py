"""The GUI's only door to the transports: a QThread that runs the
TransportManager loop and hands the GUI thread signals.

The GUI thread never touches the ring or the socket: the manager is created,
started, polled and closed inside run(), on this thread. What comes out:

- `batches(list[Batch])`: every event delivered, in order, coalesced so the
  GUI gets at most `max_rate_hz` emissions a second. A batch is emitted at
  once when the previous emission was longer ago than 1/max_rate_hz, else it
  waits (accumulating) until that interval has passed. If more than
  `max_pending` events wait for one emission (a flood), only the newest
  `max_pending` are kept; the rest were delivered and counted, just not drawn
  (`dropped_for_display` in the counters).
- `transport_changed(transport, reason)`, `status(ShieldStatus)`,
  `shield_error(message)`: as they happen (pending batches are emitted first,
  so the GUI sees events and changes in order).
- `counters(ReaderCounters)` and `latency(LatencySnapshot)`: at most
  `stats_rate_hz` (4) times a second while something changes (one more with
  events/s 0 after the last event), plus once when the loop ends. A quiet ring
  costs no emission: the GUI thread is not woken when nothing happened. The
  histograms in a snapshot are copies, never the reader's live objects.
- `failed(message)`: the transport asked for is not there (TransportUnavailable)
  or the loop died; the thread then ends.

stop() is thread-safe and wakes a poll sleeping on the futex or the socket;
shutdown() = stop() + wait(). Optional CPU pinning: KINDLYGUARD_READER_CPU=<n>.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, NamedTuple

from PySide6.QtCore import QThread, Signal

from kindlyguard_monitor import _ring
from kindlyguard_monitor.transport.items import (
    BadFrameSeen, Batch, ShieldError, ShieldStatus, TransportChange, TransportUnavailable)
from kindlyguard_monitor.vocabulary import DEFAULT_SPIN_NS, ENV_READER_CPU, Transport

if TYPE_CHECKING:  # imported by run(), on this thread: websockets and the ring's readers are not
    # needed to show the first window (~60 ms of imports; docs/benchmarks.md, start-up)
    from kindlyguard_monitor.transport.manager import TransportManager

log = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 50_000  # events kept for one emission under a flood
STATS_RATE_HZ = 4.0
IDLE_POLL_S = 0.5  # longest poll when nothing waits to be emitted and the counters are quiet

_cpu_warned = False
_unfinished: set["ReaderThread"] = set()  # shutdown() timed out: kept alive until run() returns


class ReaderCounters(NamedTuple):
    delivered: int
    missed: int
    corrupt: int
    bad_frames: int
    dropped_for_display: int  # delivered and counted, but never emitted (the GUI was behind)
    events_per_s: float  # delivered per second since the previous counters
    transport: Transport


class LatencySnapshot(NamedTuple):
    transport: Transport  # SHM, WEBSOCKET or DISCONNECTED
    transport_latency: _ring.Histogram  # copies: safe to keep and read on any thread
    delivery_latency: _ring.Histogram


def _pin_cpu_from_env() -> int | None:
    """Pin the calling thread to the CPU named in KINDLYGUARD_READER_CPU, if valid."""
    global _cpu_warned
    raw = os.environ.get(ENV_READER_CPU, "").strip()
    if not raw:
        return None
    try:
        cpu = int(raw)
        if cpu < 0 or cpu not in os.sched_getaffinity(0):
            raise ValueError(f"CPU {cpu} is not available to this process")
        os.sched_setaffinity(0, {cpu})  # 0: the calling thread on Linux
        return cpu
    except (ValueError, OSError, AttributeError) as exc:
        if not _cpu_warned:
            _cpu_warned = True
            log.warning("ignoring %s=%r: %s", ENV_READER_CPU, raw, exc)
        return None


class ReaderThread(QThread):
    batches = Signal(object)  # list[Batch]
    transport_changed = Signal(str, str)  # transport, reason
    ring_format = Signal(int)  # 1 or 2: the format of the ring now read (emitted before its transport_changed)
    status = Signal(object)  # ShieldStatus
    shield_error = Signal(str)
    bad_frame = Signal(object)  # BadFrameSeen
    counters = Signal(object)  # ReaderCounters
    latency = Signal(object)  # LatencySnapshot
    failed = Signal(str)

    def __init__(self, shm_path: str, ws_url: str, mode: str = "auto", spin_ns: int = DEFAULT_SPIN_NS,
                 max_rate_hz: float = 60, parent=None, *, start: str = "oldest",
                 max_pending: int = MAX_PENDING_EVENTS, stats_rate_hz: float = STATS_RATE_HZ,
                 history=None, source=None):
        super().__init__(parent)
        # `source`: a callable making what run() polls instead of a TransportManager, with its
        # start/poll/stop/close and counters (the fleet: kindlyguard_monitor/fleet/source.py).
        self.source = source
        # Every batch goes to the history (a HistoryStore: submit() never blocks) from this
        # thread, before the GUI's coalescing, so what the GUI drops under a flood is still kept.
        self.history = history
        self.shm_path, self.ws_url, self.mode = str(shm_path), ws_url, mode
        self.spin_ns, self.start_at = spin_ns, start
        self.min_interval = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self.stats_interval = 1.0 / stats_rate_hz if stats_rate_hz > 0 else 0.25
        self.max_pending = max(1, int(max_pending))
        self._lock = threading.Lock()
        self._stop_requested = False
        self._manager: TransportManager | None = None
        self._running_manager = False  # start() returned: commands may go out
        self.pinned_cpu: int | None = None
        # Reader-thread state (only run() touches it)
        self._pending: list[Batch] = []
        self._pending_count = 0
        self._last_emit = 0.0
        self.dropped_for_display = 0
        self.emissions = 0

    # -- any thread

    def stop(self) -> None:
        """Ask run() to end and wake a poll that sleeps (thread-safe); then wait()."""
        with self._lock:
            self._stop_requested = True
            manager = self._manager
        if manager is not None:
            manager.stop()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """stop() and wait up to timeout_ms; True when the thread has finished.
        On a timeout the object is kept alive until run() returns, so Qt never
        destroys a running thread."""
        self.stop()
        if not self.isRunning() or self.wait(max(0, int(timeout_ms))):
            return True
        log.warning("reader thread still running %d ms after stop(); it will end on its own", timeout_ms)
        _unfinished.add(self)
        self.finished.connect(lambda: _unfinished.discard(self))
        if self.isFinished():  # it finished between wait() and connect()
            _unfinished.discard(self)
        return False

    def send_command(self, name: str) -> bool:
        """get_status / toggle_protection over the WebSocket; False when not started."""
        with self._lock:
            manager = self._manager if self._running_manager and not self._stop_requested else None
        if manager is None:
            return False
        try:
            return bool(manager.send_command(name))
        except Exception:  # pragma: no cover - a closing link
            log.exception("send_command(%r) failed", name)
            return False

    # -- the reader thread

    def run(self) -> None:
        self.pinned_cpu = _pin_cpu_from_env()
        try:
            from kindlyguard_monitor.transport.manager import TransportManager

            manager = self.source() if self.source is not None else TransportManager(
                self.shm_path, self.ws_url, mode=self.mode, start=self.start_at, spin_ns=self.spin_ns)
        except Exception as exc:
            self.failed.emit(f"cannot set up the transports: {exc}")
            return
        with self._lock:
            self._manager = manager
            stopping = self._stop_requested
        try:
            if stopping:
                return
            try:
                items = manager.start()
            except TransportUnavailable as exc:
                self.failed.emit(str(exc))
                return
            with self._lock:
                self._running_manager = True
            self._loop(manager, items)
        except Exception as exc:  # never let an exception escape into Qt
            log.exception("reader thread failed")
            self.failed.emit(f"the reader stopped: {exc}")
        finally:
            with self._lock:
                self._running_manager = False
            try:
                manager.close()
            except Exception:  # pragma: no cover
                log.exception("closing the transports failed")

    def _loop(self, manager: TransportManager, items: list) -> None:
        self._stats_init(manager)
        next_stats = time.monotonic() + self.stats_interval
        self._stats_key: tuple | None = None  # what the last counters said (None: nothing emitted yet)
        self._stats_quiet = False  # the last counters said "nothing moved": wait for news, not for a clock
        while True:
            self._handle(items)
            now = time.monotonic()
            if self._pending and self._may_emit(now):
                self._emit_pending(now)
            if now >= next_stats and not (self._stats_quiet and self._stats_unchanged(manager)):
                self._emit_stats(manager, now)
                next_stats = now + self.stats_interval
            if self._stop_requested:
                break
            if self._pending:
                timeout = max(0.0, self._last_emit + self.min_interval - now)
            else:
                timeout = IDLE_POLL_S
            if not self._stats_quiet:
                timeout = min(timeout, max(0.0, next_stats - now))
            items = manager.poll(timeout)
        if self._pending:
            self._emit_pending(time.monotonic())
        self._emit_stats(manager, time.monotonic())

    def _handle(self, items: list) -> None:
        for item in items:
            if isinstance(item, Batch):
                if item.events:
                    if self.history is not None:
                        self.history.submit(item)
                    self._add(item)
                continue
            # Keep the order the GUI sees: events before the change that followed them.
            if self._pending:
                self._emit_pending(time.monotonic())
            if isinstance(item, TransportChange):
                if item.ring_format:
                    self.ring_format.emit(item.ring_format)
                self.transport_changed.emit(item.transport, item.reason)
            elif isinstance(item, ShieldStatus):
                self.status.emit(item)
            elif isinstance(item, ShieldError):
                self.shield_error.emit(item.message)
            elif isinstance(item, BadFrameSeen):
                self.bad_frame.emit(item)

    def _add(self, batch: Batch) -> None:
        self._pending.append(batch)
        self._pending_count += len(batch.events)
        excess = self._pending_count - self.max_pending
        while excess > 0:  # keep the newest max_pending events
            first = self._pending[0]
            if len(first.events) <= excess:
                self._pending.pop(0)
                cut = len(first.events)
            else:
                cut = excess
                self._pending[0] = first._replace(events=first.events[cut:])
            self._pending_count -= cut
            self.dropped_for_display += cut
            excess -= cut

    def _may_emit(self, now: float) -> bool:
        return now - self._last_emit >= self.min_interval

    def _emit_pending(self, now: float) -> None:
        out, self._pending, self._pending_count = self._pending, [], 0
        self._last_emit = now
        self.emissions += 1
        self.batches.emit(out)

    # -- counters and latency

    def _stats_init(self, manager: TransportManager) -> None:
        self._stats_t = time.monotonic()
        self._stats_delivered = manager.delivered
        self._shm_base = (_ring.Histogram(), _ring.Histogram())  # readers already closed
        self._shm_last: tuple | None = None  # latest copies of the current reader's
        self._shm_reader = None

    def _shm_histograms(self, manager: TransportManager) -> tuple[_ring.Histogram, _ring.Histogram]:
        follower = manager.follower
        reader = follower.reader if follower is not None else None
        if reader is not self._shm_reader:
            if self._shm_last is not None:  # a reader was replaced: keep what it measured
                self._shm_base[0].merge(self._shm_last[0])
                self._shm_base[1].merge(self._shm_last[1])
            self._shm_reader, self._shm_last = reader, None
        if reader is not None:
            self._shm_last = (reader.transport_latency.copy(), reader.delivery_latency.copy())
        t, d = self._shm_base[0].copy(), self._shm_base[1].copy()
        if self._shm_last is not None:
            t.merge(self._shm_last[0])
            d.merge(self._shm_last[1])
        return t, d

    def _counters_key(self, manager: TransportManager) -> tuple:
        return (manager.delivered, manager.missed, manager.corrupt, manager.bad_frames,
                self.dropped_for_display, manager.transport)

    def _stats_unchanged(self, manager: TransportManager) -> bool:
        return self._counters_key(manager) == self._stats_key

    def _emit_stats(self, manager: TransportManager, now: float) -> None:
        delivered = manager.delivered
        elapsed = now - self._stats_t
        rate = (delivered - self._stats_delivered) / elapsed if elapsed > 0 else 0.0
        key = self._counters_key(manager)
        # Quiet: nothing moved since counters that already said 0 events/s. No more
        # emissions (nor timed wake-ups for them) until something changes.
        self._stats_quiet = key == self._stats_key and rate == 0.0
        self._stats_key = key
        self._stats_t, self._stats_delivered = now, delivered
        self.counters.emit(ReaderCounters(delivered, manager.missed, manager.corrupt, manager.bad_frames,
                                          self.dropped_for_display, rate, manager.transport))
        if self.history is not None:  # missed and corrupt become gap records in the history
            self.history.record_counters(delivered, manager.missed, manager.corrupt, manager.transport)
        shm = self._shm_histograms(manager)
        if manager.transport == Transport.SHM or manager.link is None:
            t, d = shm
        else:
            t, d = manager.ws_transport_latency.copy(), manager.ws_delivery_latency.copy()
        self.latency.emit(LatencySnapshot(manager.transport, t, d))
