"""The fleet as the app's reader source (`kgmon --fleet URL`): the items TransportManager.poll() gives.

The GUI's reader thread (gui/reader_thread.py) polls this instead of the
TransportManager; the viewer (viewer.py: a durable pull consumer) runs with
asyncio on a thread of its own and hands its messages over a queue. What
poll() returns:

- Batch(Transport.FLEET, None, [ThreatEvent, ...]): each threat with its `host`
  and the key `fleet_key(host, id)` (event.py), so two workstations' seq 1 are
  two threats and a redelivered message is one (the feed and the history
  dedupe by it);
- TransportChange(FLEET, "Fleet: nats://… (N hosts)") once the consumer is
  open and whenever the number of hosts seen changes (at most once a second),
  or TransportChange(DISCONNECTED, "Fleet: nats://… — why") while it cannot
  follow (the first connection failed: it tries again every RETRY_S; or the
  connection was lost: the client reconnects, and the badge says Fleet again).

Gaps from the stream add to `missed`/`corrupt`; a message that is not ours to
`bad_frames` (BadFrameSeen, its reason attacker-controlled: shown through
textsafe.visible). The latency of a fleet threat is estimated from its wall
clock (exact_latency False): the workstations' monotonic clocks mean nothing here.

Live or caught up: when the consumer opens, and after every reconnection, the
viewer asks the stream for its last sequence (viewer.follow's on_backlog). A
threat at or before it was stored while this viewer was away: it is caught up,
not delivered live, and its "latency" would be how long the viewer was away.
Such a threat gets no publish time (publish_mono_ns None: not known), so the
latency histogram counts only live threats (LIVE_RULE says it in the window).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import queue
import time

from kindlyguard_monitor import _ring
from kindlyguard_monitor.event import ThreatEvent, fleet_key
from kindlyguard_monitor.fleet import connect as fc
from kindlyguard_monitor.fleet import subjects as s
from kindlyguard_monitor.fleet.loop_thread import LoopThread
from kindlyguard_monitor.fleet.message import FleetGap, FleetThreat
from kindlyguard_monitor.fleet.viewer import BadFleetMessage
from kindlyguard_monitor.transport.items import BadFrameSeen, Batch, TransportChange
from kindlyguard_monitor.vocabulary import Transport

log = logging.getLogger(__name__)

RETRY_S = 3.0
HOSTS_EVERY_S = 1.0
_OPEN = object()  # the consumer is open
_WAKE = object()  # stop() was called


class _Failure(str):
    pass


class _Backlog(int):
    """The stream's last sequence when the consumer (re)opened: what is at or before it is caught up."""


def fleet_event(t, now_mono_ns: int, now_wall_us: int, live: bool = True) -> ThreatEvent:
    """A FleetThreat (message.py) as the feed's ThreatEvent; a caught-up one (live False) without a
    publish time, so no latency is counted for it."""
    age_ns = max(0, now_wall_us - t.timestamp_unix_us) * 1000
    return ThreatEvent(fleet_key(t.host, t.id), Transport.FLEET, None, t.seq, now_mono_ns - age_ns if live else None,
                       now_mono_ns, t.timestamp_unix_us, t.threat_type, t.severity, t.blocked, t.flags, t.source,
                       t.details, t.id, False, None, t.host)


class FleetSource:
    """start() / poll(timeout) / stop() / close(), and the counters the reader thread reads."""

    def __init__(self, options: fc.Options, consumer: str, filter_subject: str = s.ALL_SUBJECTS,
                 retry_s: float = RETRY_S):
        self.options, self.consumer, self.filter_subject, self.retry_s = options, consumer, filter_subject, retry_s
        self.label = "Fleet: " + options.shown
        self.delivered = self.missed = self.corrupt = self.bad_frames = 0
        self.transport = Transport.DISCONNECTED
        self.follower = self.link = None  # (what the reader thread asks a TransportManager)
        self.ws_transport_latency = _ring.Histogram()
        self.ws_delivery_latency = _ring.Histogram()
        self.hosts: set[str] = set()
        self._shown_hosts = -1
        self._hosts_at = 0.0
        self.live_after = 0  # the stream's last sequence when the consumer (re)opened (module docstring)
        self.caught_up = 0  # threats delivered after the viewer was away (no latency counted)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = LoopThread("kgmon-fleet-viewer", self._main, on_error=self._died)

    # -- the reader thread's side

    def start(self) -> list:
        self._thread.start()
        return [TransportChange(Transport.DISCONNECTED, f"{self.label} — connecting")]

    def poll(self, timeout: float) -> list:
        try:
            first = self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return self._hosts_change([])
        out: list = []
        events: list[ThreatEvent] = []
        mono, wall = time.monotonic_ns(), time.time_ns() // 1000
        item = first
        while True:
            if type(item) is FleetThreat:
                live = item.stream_seq > self.live_after
                events.append(fleet_event(item, mono, wall, live))
                self.caught_up += not live
                self.hosts.add(item.host)
            else:
                if events:
                    out.append(Batch(Transport.FLEET, None, events))
                    events = []
                self._other(item, out)
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
        if events:
            out.append(Batch(Transport.FLEET, None, events))
        self.delivered += sum(len(b.events) for b in out if type(b) is Batch)
        return self._hosts_change(out)

    def _other(self, item, out: list) -> None:
        if item is _OPEN:
            self.transport = Transport.FLEET
            self._shown_hosts = len(self.hosts)
            self._hosts_at = time.monotonic()
            out.append(TransportChange(Transport.FLEET, self._status()))
        elif type(item) is _Backlog:
            self.live_after = int(item)
        elif isinstance(item, _Failure):
            self.transport = Transport.DISCONNECTED
            out.append(TransportChange(Transport.DISCONNECTED, f"{self.label} — {item}"))
        elif type(item) is FleetGap:
            self.missed += item.missed
            self.corrupt += item.corrupt
            self.hosts.add(item.host)
        elif type(item) is BadFleetMessage:
            self.bad_frames += 1
            out.append(BadFrameSeen("not_ours", f"stream sequence {item.stream_seq} ({item.subject}): "
                                    f"{item.reason}", self.bad_frames))

    def _status(self) -> str:
        n = len(self.hosts)
        return f"{self.label} ({n} host{'' if n == 1 else 's'})"

    def _hosts_change(self, out: list) -> list:
        if self.transport == Transport.FLEET and len(self.hosts) != self._shown_hosts:
            now = time.monotonic()
            if now - self._hosts_at >= HOSTS_EVERY_S or self._shown_hosts <= 0:
                self._shown_hosts, self._hosts_at = len(self.hosts), now
                out.append(TransportChange(Transport.FLEET, self._status()))
        return out

    def send_command(self, name: str) -> bool:
        return False  # no Shield to command: the fleet is read only

    def stop(self) -> None:
        """Thread-safe: end the viewer (it gives back what it fetched and did not hand on) and wake poll()."""
        self._thread.stop()
        self._q.put(_WAKE)

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        self._thread.join(timeout)

    # -- the viewer's thread (fleet/loop_thread.py)

    def _died(self, exc: BaseException) -> None:  # pragma: no cover - never let it die silently
        self._q.put(_Failure(f"the fleet viewer stopped: {exc}"))

    def _backlog(self, last_seq: int | None) -> None:
        # Unknown (the stream could not be asked): everything from now on counts as live.
        self._q.put(_Backlog(last_seq or 0))

    async def _main(self, stop: asyncio.Event) -> None:
        from kindlyguard_monitor.fleet.viewer import Unavailable, follow

        put = self._q.put

        async def lost():
            if not stop.is_set():
                put(_Failure("the connection to the server was lost; reconnecting"))

        async def back():
            put(_OPEN)

        options = dataclasses.replace(self.options, extra={**self.options.extra, "disconnected_cb": lost,
                                                           "reconnected_cb": back})
        while not stop.is_set():
            try:
                async for item in follow(options, self.consumer, stop, self.filter_subject,
                                         on_open=lambda: put(_OPEN), on_backlog=self._backlog):
                    put(item)
            except (Unavailable, fc.BadOption) as exc:
                put(_Failure(str(exc)))
            except Exception as exc:
                log.warning("fleet viewer: %s", exc)
                put(_Failure(f"{exc.__class__.__name__}: {exc}"))
            try:
                await asyncio.wait_for(stop.wait(), self.retry_s)
            except asyncio.TimeoutError:
                pass
