"""The demo WebSocket's backlogs: what each client still has to get, and the bounds on it.

broadcast() encodes each threat once (server_frames.threat_json) in the calling
thread; every subscribed client gets the same strings appended to its
pending deque and its sender task woken. The sender sends what is pending
as ONE `threat` message; while that send is in flight (the socket's write
buffer is over the 32 KiB high-water mark, i.e. the client has not taken
it yet), new events queue up and leave together in the next message. At
low rates each threat goes out alone; under load messages grow (in a flood
a message that would follow the last one within LINGER_S waits out the rest of it). A message
carries at most MAX_MESSAGE_THREAT_BYTES of encoded threats (so it stays
under the 1 MiB a Shield client accepts); a longer backlog is split.
Each client's backlog is bounded (max_backlog events): a client that
falls further behind loses its OLDEST events, counted and logged once, and
never stalls the others (each has its own sender task). All clients
together are bounded too (max_buffered_bytes, as estimated by held()):
past it the client holding the most is disconnected (counted), since a
client that never reads would keep its backlog and a message forever.

`Backlogs` does that for DemoWsServer, in the server thread: `deliver` queues one
broadcast for every subscriber, `sender` (one task per client) sends what is due.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kindlyguard_monitor.transport.server_frames import threat_message

MAX_MESSAGE_THREAT_BYTES = 900 << 10  # encoded threats per `threat` message
MAX_BACKLOG_EVENTS = 200_000  # per client, then the oldest are dropped
MAX_BUFFERED_BYTES = 128 << 20  # what all clients' backlogs may hold together (held()), then the slowest is cut
# A flood (FLOOD_AFTER messages in a row each less than LINGER_S / 2 after the one before, until
# a pause of 2 * LINGER_S) leaves in at most about one message per LINGER_S per client, not one
# per broadcast: a message that would follow the last within LINGER_S waits out the rest of it
# (unless LINGER_FULL threats are waiting already). A client pays per message (a frame, a thread
# hand-off, a queue) as much as for tens of threats. Steady rates up to ~2,000 a second never
# wait: their messages are further apart.
LINGER_S = 0.001
LINGER_FULL = 1000
FLOOD_AFTER = 3
HEARTBEAT = json.dumps({"type": "heartbeat"})


class Client:
    """One connection's state; touched only in the server thread."""

    __slots__ = ("ws", "name", "subscribed", "pending", "pending_bytes", "inflight_bytes", "send_started", "cut",
                 "dropped", "status_due", "heartbeat_due", "wake", "sending", "commands", "frames_too_big", "sender",
                 "quick", "flood")

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        try:
            host, port = ws.remote_address[:2]
            self.name = f"{host}:{port}"
        except (TypeError, ValueError):
            self.name = "a client"
        self.subscribed = False
        self.pending: deque[str] = deque()  # encoded threats not yet sent (at most max_backlog)
        self.pending_bytes = 0  # their length
        self.inflight_bytes = 0  # the message being handed to the socket
        self.send_started = 0.0  # when that began (monotonic); when the last one began, after it
        self.cut = False  # disconnected for holding too much
        self.dropped = 0  # events dropped because this client fell behind
        self.status_due = False  # coalesced: at most one pending status broadcast
        self.heartbeat_due = False  # coalesced: at most one pending heartbeat
        self.wake = asyncio.Event()
        self.sending = False  # a threat message is being handed to the socket
        self.commands: deque[float] = deque()  # times of the accepted commands of the window
        self.frames_too_big = 0
        self.sender: asyncio.Task | None = None
        self.quick = 0  # threat messages in a row that followed the one before within LINGER_S / 2
        self.flood = False  # lingering (see LINGER_S)

    def idle(self) -> bool:
        return not (self.pending or self.sending or self.status_due)


class Backlogs:
    """Every client's pending threats, the per-client backlog bound and the memory bound."""

    def __init__(self, clients: set[Client], say: Callable[[str, str], None], status: Callable[[], str],
                 max_backlog: int = MAX_BACKLOG_EVENTS, max_buffered_bytes: int = MAX_BUFFERED_BYTES):
        self.clients = clients  # the server's set: the connections past their handshake
        self._say = say  # (kind, message): a RepeatLog
        self._status = status  # the status message, as it is now
        self._max_backlog = max_backlog
        self._max_buffered = max_buffered_bytes
        self.dropped_events = 0  # over all clients
        self.peak_buffered_bytes = 0  # the most held at once (see held()), after cutting
        self.slow_clients_cut = 0  # disconnected for holding more than max_buffered_bytes

    def deliver(self, encoded: list[str]) -> None:
        """In the server thread: queue one broadcast's threats for every subscribed client."""
        size = sum(map(len, encoded))  # threat_json is ASCII: len() is the byte count
        for c in self.clients:
            if not c.subscribed or c.cut:
                continue
            pending = c.pending
            lost = len(pending) + len(encoded) - self._max_backlog
            if lost > 0:  # the oldest go: first from what was pending, then from this batch
                old = min(lost, len(pending))
                freed = sum(len(pending.popleft()) for _ in range(old))
                c.pending_bytes -= freed
                batch = encoded[lost - old:]
                added = sum(map(len, batch))
                c.dropped += lost
                self.dropped_events += lost
                self._say("backlog", f"WebSocket client {c.name} fell more than {self._max_backlog:,} events "
                          "behind; its oldest events were dropped")
            else:
                batch, added = encoded, size
            pending.extend(batch)
            c.pending_bytes += added
            c.wake.set()
        self.check_memory()

    def check_memory(self) -> None:
        held = self.held()
        if held > self._max_buffered:
            held = self.shed()
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, held)

    def held(self) -> int:
        """What the clients' backlogs cost in memory, about: the threat text once (every client's
        backlog is a tail of the same broadcast strings, so the longest holds them all), a
        pointer per pending event per client, and each message in flight four times (our text,
        its UTF-8, the frame, the transport's buffer: measured with 200 clients that never read)."""
        longest = refs = inflight = 0
        for c in self.clients:
            longest = max(longest, c.pending_bytes)
            refs += len(c.pending)
            inflight += c.inflight_bytes
        return longest + 8 * refs + 4 * inflight

    def shed(self) -> int:
        """Over the memory bound: cut the clients holding the most until under it (a client that
        reads nothing, its socket full, would keep its backlog and a message forever). Returns
        what is held then."""
        held = self.held()
        while held > self._max_buffered:
            live = [c for c in self.clients if not c.cut]
            if not live:
                break
            # the client holding the most; of equals, the one whose socket has been stuck longest
            self.cut(max(live, key=lambda c: (c.pending_bytes + 4 * c.inflight_bytes, -c.send_started)))
            held = self.held()
        return held

    def cut(self, c: Client) -> None:
        c.cut = True
        c.dropped += len(c.pending)
        self.dropped_events += len(c.pending)
        self.release(c)
        self.slow_clients_cut += 1
        self._say("slow", f"WebSocket client {c.name} read too slowly: disconnected, its backlog dropped "
                  f"(all clients together may hold {self._max_buffered:,} bytes)")
        c.ws.transport.abort()  # a client that reads nothing would never read a close frame either

    def release(self, c: Client) -> None:
        """Forget what `c` holds (its pending events and the message in flight)."""
        c.pending.clear()
        c.pending_bytes = c.inflight_bytes = 0

    @staticmethod
    async def _linger(c: Client) -> bool:
        """In a flood, let the next message gather what comes within LINGER_S of the last
        (see LINGER_S). True when nothing is left to send after waiting."""
        gap = time.monotonic() - c.send_started
        if gap >= 2 * LINGER_S:
            c.quick, c.flood = 0, False
        elif gap < LINGER_S / 2:
            c.quick += 1
            c.flood = c.flood or c.quick >= FLOOD_AFTER
        else:
            c.quick = 0
        if not c.flood or gap >= LINGER_S or len(c.pending) >= LINGER_FULL:
            return False
        await asyncio.sleep(LINGER_S - gap)
        return not c.pending

    async def sender(self, c: Client) -> None:
        """One per client: heartbeats, status broadcasts and threats, one message at a time."""
        ws = c.ws
        try:
            while True:
                await c.wake.wait()
                c.wake.clear()
                while True:
                    if c.status_due:
                        c.status_due = False
                        await ws.send(self._status())
                    if c.heartbeat_due:
                        c.heartbeat_due = False
                        await ws.send(HEARTBEAT)
                    if not c.pending:
                        break
                    if await self._linger(c):
                        continue  # unsubscribed, or cut, meanwhile
                    chunk, size, taken = [], 0, 0
                    pending = c.pending
                    while pending and (not chunk or size + len(pending[0]) + 2 <= MAX_MESSAGE_THREAT_BYTES):
                        item = pending.popleft()  # threat_json is ASCII: len() is the byte count
                        chunk.append(item)
                        size += len(item) + 2
                        taken += len(item)
                    message = threat_message(chunk)
                    c.pending_bytes -= taken  # now held as the message in flight
                    c.inflight_bytes = len(message)
                    c.send_started = time.monotonic()
                    self.check_memory()  # a message costs more than its pending events did
                    c.sending = True
                    try:
                        # Returns once the socket's buffer is below its low-water mark:
                        # until then, new events pile up for the next message.
                        await ws.send(message)
                    finally:
                        c.sending = False
                        c.inflight_bytes = 0
        except ConnectionClosed:
            pass
