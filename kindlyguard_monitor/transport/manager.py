"""One transport manager, free of Qt: threats from shared memory when it is
there and healthy, from the Shield's WebSocket when it is not, and back.

`TransportManager.poll()` is called in a loop by one thread (kgmon tail's
main thread, the GUI's reader thread). It returns what happened since the
last call: `Batch`es of events, `TransportChange`s (each with its reason) and
`ShieldStatus` updates. Rules:

- auto: attach to the ring when it passes every health check, else use the
  WebSocket, else report "disconnected" and keep retrying both. While on the
  WebSocket, probe the ring every second and switch back when it is healthy.
  Leave the ring when its writer closes it, dies, stops its heartbeat or is
  replaced (kindlyguard_monitor.ring.follow.RingFollower decides), after reading what it left.
- "shm" or "websocket": that transport only; start() raises
  TransportUnavailable if it is not there (kgmon tail exits 3).
- No event twice, none skipped uncounted: events are numbered (generation,
  seq) on the ring and on our writers' WebSocket; numbering.py decides what
  is a duplicate and what was missed. A switch back to the ring after
  unnumbered WebSocket threats (a Shield that does not send `seq`) starts at
  its newest event so nothing is shown twice.
- While on shared memory the WebSocket stays connected, unsubscribed, for
  commands (get_status, toggle_protection) and status.
"""

from __future__ import annotations

import queue
import time
from typing import Literal, NamedTuple

from kindlyguard_monitor import _ring
from kindlyguard_monitor.event import ThreatEvent, from_ring
from kindlyguard_monitor.ring.errors import RingError
from kindlyguard_monitor.ring.follow import RingFollower, WriterGone
from kindlyguard_monitor.transport import protocol
from kindlyguard_monitor.transport.items import (  # what poll() returns; importers take them from items.py
    BadFrameSeen,
    Batch,
    Item,
    ShieldError,
    ShieldStatus,
    TransportChange,
    TransportUnavailable,
    ring_label,
)
from kindlyguard_monitor.transport.link_queue import Overflow
from kindlyguard_monitor.transport.numbering import Numbering
from kindlyguard_monitor.transport.ws_client import OPEN_TIMEOUT_S, Connected, Disconnected, WsLink
from kindlyguard_monitor.vocabulary import DEFAULT_SPIN_NS, Transport

Mode = Literal["auto", "shm", "websocket"]  # vocabulary.MODES
SHM, WEBSOCKET, DISCONNECTED = Transport.SHM, Transport.WEBSOCKET, Transport.DISCONNECTED
PROBE_INTERVAL_S = 1.0  # on the WebSocket: how often to look for a healthy ring (the switch is due within 2 s)
RETRY_INTERVAL_S = 0.25  # disconnected: how often to try the ring again
CONNECT_GRACE_S = 1.5  # at start, how long to give the WebSocket before saying "disconnected"
CONFIRM_TIMEOUT_S = 5.0  # a requested protection state not confirmed by then is given up


class _Wake:
    """Put on the link's queue to end a poll() that waits on the WebSocket (see stop())."""


class _Toggled(NamedTuple):
    """Put on the link's queue by send_command("toggle_protection"), from any thread."""

    when: float


class TransportManager:
    def __init__(self, shm_path: str, ws_url: str, mode: Mode = "auto", start: str = "oldest",
                 spin_ns: int = DEFAULT_SPIN_NS, probe_interval: float = PROBE_INTERVAL_S):
        self.mode = mode
        self.shm_path = shm_path
        self.ws_url = ws_url
        self.transport = DISCONNECTED
        self.reason = "not started"
        self.status: ShieldStatus | None = None
        self.probe_interval = probe_interval
        self.follower = RingFollower(shm_path, start=start, spin_ns=spin_ns) if mode != WEBSOCKET else None
        self.link = WsLink(ws_url, subscribed=False) if mode != SHM else None
        self.numbers = Numbering()  # which events were delivered, missed or seen twice
        self.ws_counts = self.numbers.ws_counts
        self.ws_transport_latency = _ring.Histogram()  # mono_ns -> frame received (same host only)
        self.ws_delivery_latency = _ring.Histogram()  # mono_ns -> handed out by poll()
        self._pending: list[Item] = []
        self._next_attempt = 0.0
        self._stopping = False
        self._requested: tuple[bool, float] | None = None  # protection state asked for, when

    # -- life cycle

    def start(self) -> list[Item]:
        """Connect to what is there. Returns the first TransportChange; raises
        TransportUnavailable when a single named transport is not there."""
        if self.link is not None:
            self.link.start()
        if self.mode == WEBSOCKET:
            if not self.link.wait_connected(OPEN_TIMEOUT_S + 0.5):
                error = self.link.last_error or "no answer"
                self.link.stop()
                raise TransportUnavailable(f"cannot reach the Shield's WebSocket at {self.ws_url}: {error}")
            self._use_websocket(f"connected to {self.ws_url}")
        elif self.mode == SHM:
            try:
                self._attach_ring()
            except RingError as exc:
                raise TransportUnavailable(str(exc)) from None
        else:
            try:
                self._attach_ring()
            except RingError as exc:
                if self.link.wait_connected(CONNECT_GRACE_S):
                    self._use_websocket(f"{exc}; using the WebSocket at {self.ws_url}")
                else:
                    self._change(DISCONNECTED, f"{exc}; the WebSocket at {self.ws_url}: "
                                 f"{self.link.last_error or 'no answer'}; retrying both")
        return self._take_pending()

    def stop(self) -> None:
        """Make a poll() in another thread return promptly (thread-safe)."""
        self._stopping = True
        if self.follower is not None:
            self.follower.stop()
        if self.link is not None:
            self.link.events.put(_Wake())

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
        if self.link is not None:
            self.link.stop()

    def send_command(self, name: str) -> bool:
        """get_status / toggle_protection over the WebSocket, whatever carries the threats.
        After toggle_protection the requested state is pending (ShieldStatus.requested)
        until a status confirms it: the Shield itself sends none."""
        if self.link is None:
            return False
        if name != "toggle_protection":
            return self.link.send_command(name)
        # Noted by the polling thread, in order with the link's news: before the frame
        # leaves (a server that answers at once must not overtake the note), and noted
        # again (a flip back) if it could not be sent.
        self.link.events.put(_Toggled(time.monotonic()))
        if self.link.send_command(name):
            return True
        self.link.events.put(_Toggled(time.monotonic()))
        return False

    @property
    def commands_available(self) -> bool:
        return self.link is not None and self.link.connected

    # -- counts

    @property
    def delivered(self) -> int:
        return (self.follower.counts.delivered if self.follower else 0) + self.ws_counts.delivered

    @property
    def missed(self) -> int:
        return (self.follower.counts.missed if self.follower else 0) + self.ws_counts.missed

    @property
    def corrupt(self) -> int:
        return self.follower.counts.corrupt if self.follower else 0

    @property
    def bad_frames(self) -> int:
        return sum(self.link.bad_frames.values()) if self.link else 0

    @property
    def accounted(self) -> int:
        return self.delivered + self.missed + self.corrupt

    # -- the loop

    def poll(self, timeout: float = 0.1, max_events: int = 0) -> list[Item]:
        """What happened since the last call; waits up to `timeout` for it."""
        if self.link is not None:
            self._check_requested()
            self._drain_link(block=False, timeout=0)
        if self._pending:
            return self._take_pending()
        if self.transport == SHM:
            self._poll_ring(timeout, max_events)
        elif self.transport == WEBSOCKET:
            self._maybe_probe_ring()
            if not self._pending:
                self._drain_link(block=True, timeout=timeout, max_events=max_events)
        else:
            self._retry(timeout)
        return self._take_pending()

    # -- shared memory

    def _attach_ring(self, reason_prefix: str = "", at_newest: bool = False) -> None:
        numbers = self.numbers
        reader = self.follower.attach(resume=numbers.resume(), started=numbers.started, at_newest=at_newest)
        self.numbers.ws_unnumbered = False
        if self.link is not None:
            self.link.set_subscribed(False)  # threats now come from the ring; keep the link for commands
        if reader.generation is None:  # the Shield's v1 ring: no generation, numbered by events_written
            self._change(SHM, f"{reason_prefix}attached to {self.shm_path} ({ring_label(1)}, read-only)", 1)
        else:
            self._change(SHM, f"{reason_prefix}attached to {self.shm_path} (generation {reader.generation:#x})", 2)

    def _poll_ring(self, timeout: float, max_events: int) -> None:
        try:
            events = self.follower.poll(timeout, max_events)
        except WriterGone as gone:
            self._leave_ring(str(gone))
            return
        if events:
            generation = self.follower.generation
            self.numbers.ring_read(generation, events[-1].seq)
            self._pending.append(Batch(SHM, generation, from_ring(events, generation)))

    def _leave_ring(self, why: str) -> None:
        # A restarted writer's new ring is the best next source: try it first.
        try:
            self._attach_ring(f"{why}; ")
            return
        except RingError:
            pass
        if self.mode == "auto" and self.link.connected:
            self._use_websocket(f"{why}; switched to the WebSocket at {self.ws_url}")
            self._next_attempt = time.monotonic() + self.probe_interval
        else:
            self._change(DISCONNECTED, f"{why}; waiting for a writer")
            self._next_attempt = time.monotonic() + RETRY_INTERVAL_S

    def _maybe_probe_ring(self) -> None:
        if self.follower is None or time.monotonic() < self._next_attempt:
            return
        self._next_attempt = time.monotonic() + self.probe_interval
        # Without event numbers from the WebSocket there is nothing to resume
        # from: start at the ring's newest event rather than show anything twice.
        # (Nothing unnumbered came meanwhile, e.g. the Shield's server, which sends none: go on from our
        # position, which for its v1 ring on the same file is exact.)
        unnumbered = self.numbers.only_unnumbered()
        try:
            self._attach_ring("found a healthy ring: ", at_newest=unnumbered)
        except RingError:
            return

    # -- WebSocket

    def _use_websocket(self, reason: str) -> None:
        self.link.set_subscribed(True)
        self._change(WEBSOCKET, reason)

    def _drain_link(self, block: bool, timeout: float, max_events: int = 0) -> None:
        """Take what the WebSocket link queued. With block, wait up to timeout
        for the first item that matters, then take the rest without waiting."""
        events: list[ThreatEvent] = []
        deadline = time.monotonic() + timeout
        while not (max_events and len(events) >= max_events):
            try:
                if block and not events and not self._pending and not self._stopping:
                    item = self.link.events.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    item = self.link.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, protocol.Threats):
                if self.transport == WEBSOCKET:
                    events.extend(self.numbers.accept(item.threats))
                # else: threats still in flight after we unsubscribed; the ring delivers them
            elif isinstance(item, Overflow):
                if self.transport == WEBSOCKET:
                    self._flush(events)
                    events = []
                    self.numbers.skip(item)
            elif isinstance(item, protocol.Status):
                self._status(item)
            elif isinstance(item, _Toggled):
                self._toggled(item.when)
            elif isinstance(item, protocol.ServerError):
                self._pending.append(ShieldError(item.message))
            elif isinstance(item, protocol.BadFrame):
                self._pending.append(BadFrameSeen(item.kind, item.detail, self.bad_frames))
            elif isinstance(item, Connected):
                if self.transport == DISCONNECTED and self.mode != SHM:
                    self._use_websocket(f"connected to {self.ws_url}")
            elif isinstance(item, Disconnected) and (self.transport == WEBSOCKET or (
                    self.transport == DISCONNECTED and item.dropped and self.mode != SHM)):
                self._flush(events)
                events = []
                self._change(DISCONNECTED, f"the WebSocket at {self.ws_url}: {item.reason}")
            # _Wake and heartbeats need nothing more here
        self._flush(events)

    def _flush(self, events: list[ThreatEvent]) -> None:
        if not events:
            return
        now = time.monotonic_ns()
        for e in events:
            if e.exact_latency:
                self.ws_transport_latency.record(max(0, e.observe_mono_ns - e.publish_mono_ns))
                self.ws_delivery_latency.record(max(0, now - e.publish_mono_ns))
        # one Batch per run of the same generation
        start = 0
        for i in range(1, len(events) + 1):
            if i == len(events) or events[i].generation != events[start].generation:
                self._pending.append(Batch(WEBSOCKET, events[start].generation, events[start:i]))
                start = i

    def _status(self, item: protocol.Status) -> None:
        requested = None
        if self._requested is not None and item.protection_enabled != self._requested[0]:
            requested = self._requested[0]  # not yet: this status may predate the toggle
        else:
            self._requested = None
        self.status = ShieldStatus(item.protection_enabled, item.threats_blocked, requested)
        self._pending.append(self.status)

    def _toggled(self, when: float) -> None:
        current = self.status.protection_enabled if self.status is not None else None
        if current is None:
            return  # nothing known to show as changing
        wanted = not (self._requested[0] if self._requested is not None else current)
        if wanted == current:  # toggled twice: back to what the last status said
            self._requested = None
            self.status = self.status._replace(requested=None)
        else:
            self._requested = (wanted, when)
            self.status = self.status._replace(requested=wanted)
        self._pending.append(self.status)

    def _check_requested(self) -> None:
        """A requested protection state no status confirmed in time is given up, said as an error."""
        if self._requested is None or time.monotonic() - self._requested[1] < CONFIRM_TIMEOUT_S:
            return
        wanted = "on" if self._requested[0] else "off"
        self._requested = None
        self._pending.append(ShieldError(f"the Shield did not confirm protection {wanted} within "
                                         f"{CONFIRM_TIMEOUT_S:g} s; its last status stands"))
        if self.status is not None:
            self.status = self.status._replace(requested=None)
            self._pending.append(self.status)

    # -- neither

    def _retry(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._pending and not self._stopping:
            if self.follower is not None and time.monotonic() >= self._next_attempt:
                self._next_attempt = time.monotonic() + RETRY_INTERVAL_S
                try:
                    self._attach_ring("a writer is back: ")
                    return
                except RingError:
                    pass
            left = deadline - time.monotonic()
            if left <= 0:
                return
            nap = min(left, RETRY_INTERVAL_S)
            if self.follower is not None:
                nap = min(nap, max(0.0, self._next_attempt - time.monotonic()))
            if self.link is not None:
                self._drain_link(block=True, timeout=nap)
            else:
                time.sleep(nap)

    # -- helpers

    def _change(self, transport: str, reason: str, ring_format: int | None = None) -> None:
        self.transport, self.reason = transport, reason
        self._pending.append(TransportChange(transport, reason, ring_format))

    def _take_pending(self) -> list[Item]:
        out, self._pending = self._pending, []
        return out

