"""The demo writer's stand-in for the Shield's WebSocket (docs/websocket.md).

`DemoWsServer` serves `ws://127.0.0.1:PORT` from a background thread with its
own asyncio event loop, so the demo's main loop (plain, synchronous code that
also feeds the ring) only calls `broadcast()`.

Loopback only, by construction: there is no host parameter; the server binds
127.0.0.1 and checks the bound address. Handshakes that carry an Origin header
(a web page in a browser: cross-site WebSocket hijacking, DNS rebinding) are
refused with HTTP 403; monitors send no Origin.

Threads
    main thread  -- the demo loop: broadcast(), protection_enabled,
                    threats_blocked; start()/stop().
    server thread -- the event loop: one handler task per connection (reads
                    commands, answers them), one sender task per connection
                    (threats, heartbeats, status broadcasts), one heartbeat
                    task. Every piece of per-client state lives in this
                    thread; broadcast() hands it encoded threats with
                    loop.call_soon_threadsafe. The two values the main thread
                    reads (protection_enabled, a client count) and the one it
                    writes (threats_blocked) are single-writer ints/bools.

Batching by load, not by count
    broadcast() encodes each threat once (protocol.threat_json) in the calling
    thread; every subscribed client gets the same strings appended to its
    pending deque and its sender task woken. The sender sends what is pending
    as ONE `threat` message; while that send is in flight (the socket's write
    buffer is over the 32 KiB high-water mark, i.e. the client has not taken
    it yet), new events queue up and leave together in the next message. At
    low rates each threat goes out alone; under load messages grow. A message
    carries at most MAX_MESSAGE_THREAT_BYTES of encoded threats (so it stays
    under the 1 MiB a Shield client accepts); a longer backlog is split.
    Each client's backlog is bounded (max_backlog events, a deque with
    maxlen): a client that falls further behind loses its OLDEST events,
    counted and logged once, so a slow client never grows memory without
    bound and never stalls the others (each has its own sender task).

Commands and the rate limit
    Every frame a client sends that is not dropped for size counts as one
    command, valid or not (so `{"type":"bogus"}` and non-JSON count too).
    Limit: 60 commands in any 60 s, per connection, a sliding-window log
    (the times of the accepted commands of the last 60 s): command n is
    refused when 60 commands were accepted in the 60 s before it. Refused
    commands are answered {"type":"error","message":"Rate limit exceeded"}
    and do not use up the window.

Frame sizes
    A frame over 1 MiB (protocol.MAX_FRAME_BYTES) is dropped silently, the
    connection stays open (as the Shield does). The library's own limit
    (max_size) is set higher, MAX_FRAME_LIBRARY_BYTES = 4 MiB, because a frame
    over max_size makes websockets CLOSE the connection (1009, message too
    big): so frames between 1 and 4 MiB are dropped, frames over 4 MiB end the
    connection. (Reading a frame of any size whole before dropping it would
    let one client make the server buffer unbounded memory.)
"""

from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from app.threats import Threat
from app.transport.protocol import MAX_FRAME_BYTES, event_id, status_message, threat_json, threat_message

HOST = "127.0.0.1"  # loopback only; deliberately not configurable
DEFAULT_PORT = 9955  # the Shield's; $SHIELD_WS_PORT overrides it (read by the CLI)
HEARTBEAT_S = 5.0
RATE_LIMIT_COMMANDS = 60
RATE_LIMIT_WINDOW_S = 60.0
MAX_FRAME_LIBRARY_BYTES = 4 << 20  # over this websockets closes the connection (1009)
MAX_MESSAGE_THREAT_BYTES = 900 << 10  # encoded threats per `threat` message
MAX_BACKLOG_EVENTS = 200_000  # per client, then the oldest are dropped
CLOSE_TIMEOUT_S = 2.0  # a client that does not answer our close frame is cut off after this

# What the server answers to bad commands. docs/websocket.md only fixes
# "Rate limit exceeded"; it does not say what the Shield answers to a frame
# that is not JSON or to an unknown command: these two texts are our guess.
RATE_LIMITED = json.dumps({"type": "error", "message": "Rate limit exceeded"})
INVALID_JSON = json.dumps({"type": "error", "message": "Invalid JSON"})
HEARTBEAT = json.dumps({"type": "heartbeat"})

Event = tuple[int, int, Threat, int]  # (generation, seq, threat, mono_ns at publish)


class WsServerError(Exception):
    """The server could not start (for example: the port is taken)."""

    def __init__(self, message: str, port_in_use: bool = False):
        super().__init__(message)
        self.port_in_use = port_in_use


def unknown_command(kind) -> str:
    text = kind if isinstance(kind, str) else json.dumps(kind)
    return json.dumps({"type": "error", "message": f"Unknown command: {text[:64]}"})


class _Client:
    """One connection's state; touched only in the server thread."""

    __slots__ = ("ws", "name", "subscribed", "pending", "dropped", "logged_drop", "status_due",
                 "heartbeat_due", "wake", "sending", "commands", "frames_too_big", "sender")

    def __init__(self, ws: ServerConnection, max_backlog: int):
        self.ws = ws
        try:
            host, port = ws.remote_address[:2]
            self.name = f"{host}:{port}"
        except (TypeError, ValueError):
            self.name = "a client"
        self.subscribed = False
        self.pending: deque[str] = deque(maxlen=max_backlog)  # encoded threats not yet sent
        self.dropped = 0  # events dropped because this client fell behind
        self.logged_drop = False
        self.status_due = False  # coalesced: at most one pending status broadcast
        self.heartbeat_due = False  # coalesced: at most one pending heartbeat
        self.wake = asyncio.Event()
        self.sending = False  # a threat message is being handed to the socket
        self.commands: deque[float] = deque()  # times of the accepted commands of the window
        self.frames_too_big = 0
        self.sender: asyncio.Task | None = None

    def idle(self) -> bool:
        return not (self.pending or self.sending or self.status_due)


class DemoWsServer:
    """The Shield's WebSocket, served by the demo writer on 127.0.0.1:port."""

    def __init__(self, port: int = DEFAULT_PORT, *, protection_enabled: bool = True,
                 heartbeat_s: float = HEARTBEAT_S, max_backlog: int = MAX_BACKLOG_EVENTS,
                 rate_limit: int = RATE_LIMIT_COMMANDS, rate_window_s: float = RATE_LIMIT_WINDOW_S,
                 log: Callable[[str], None] | None = None):
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        self.port = port  # the bound port after start() (port 0 picks a free one)
        self._protection = bool(protection_enabled)
        self.threats_blocked = 0  # written by the broadcasting thread only
        self._heartbeat_s = heartbeat_s
        self._max_backlog = max_backlog
        self._rate_limit = rate_limit
        self._rate_window_s = rate_window_s
        self._log = log or (lambda message: None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._drain_s = 0.0
        self._clients: set[_Client] = set()
        self._subscribers = 0  # read (racily, harmlessly) by broadcast() to skip encoding
        self._closing = False
        self.dropped_events = 0  # over all clients
        self.frames_too_big = 0

    # ---- the main thread's API ----

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def protection_enabled(self) -> bool:
        return self._protection

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def subscribers(self) -> int:
        return self._subscribers

    def start(self, timeout: float = 30.0) -> None:
        """Bind and serve in a background thread; raises WsServerError if that fails."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name="kgmon-demo-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise WsServerError(f"the WebSocket server on {HOST}:{self.port} did not start in {timeout:g} s")
        exc = self._start_error
        if exc is not None:
            self._thread.join(timeout)
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise WsServerError(f"{HOST}:{self.port} is already in use (a Shield or another demo?)",
                                    port_in_use=True) from None
            raise WsServerError(f"cannot serve on {HOST}:{self.port}: {exc}") from None

    def broadcast(self, events: Iterable[Event]) -> None:
        """Publish threats: to every subscribed client, in order. Thread-safe, never blocks
        on a client. Events are (generation, seq, Threat, mono_ns at publish)."""
        events = list(events)
        self.threats_blocked += sum(1 for e in events if e[2].blocked)
        loop = self._loop
        if not events or loop is None or self._closing or self._subscribers == 0:
            return  # nobody to send to: do not even encode
        encoded = [threat_json(t, event_id(g, s), seq=s, mono_ns=m) for g, s, t, m in events]
        try:
            loop.call_soon_threadsafe(self._deliver, encoded)
        except RuntimeError:  # the loop is gone (stopping)
            pass

    def stop(self, drain_s: float = 5.0, timeout: float = 30.0) -> None:
        """Let clients take what is pending (at most drain_s), close every connection
        with 1001 (going away), stop the loop and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._drain_s = drain_s
        if loop is not None and self._stop_event is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                pass
        thread.join(timeout)

    # ---- the server thread ----

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(loop))
        except BaseException as exc:  # pragma: no cover - never expected
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
        finally:
            self._loop = None
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop_event = asyncio.Event()
        try:
            server = await serve(
                self._handle, HOST, self.port,
                compression=None,  # loopback: latency over bytes
                # No Origin header only: a monitor sends none, a web page in the user's browser
                # always does, so no site can reach this loopback server and toggle protection.
                origins=[None],
                max_size=MAX_FRAME_LIBRARY_BYTES,
                close_timeout=CLOSE_TIMEOUT_S,
            )
        except OSError as exc:
            self._start_error = exc
            self._ready.set()
            return
        bound = [s.getsockname() for s in server.sockets]
        if not bound or any(addr[0] != HOST for addr in bound):  # pragma: no cover - by construction
            server.close()
            await server.wait_closed()
            self._start_error = RuntimeError(f"bound {bound}, not {HOST} only")
            self._ready.set()
            return
        self.port = bound[0][1]
        self._loop = loop
        self._ready.set()
        heartbeat = asyncio.create_task(self._heartbeats())
        try:
            await self._stop_event.wait()
            self._closing = True  # broadcast() stops handing over events
            await self._drain(self._drain_s)
        finally:
            heartbeat.cancel()
            server.close()  # every connection: close frame 1001 (going away)
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT_S + 5)
            except asyncio.TimeoutError:  # pragma: no cover
                pass

    async def _drain(self, seconds: float) -> None:
        """Wait until every client has been handed what was pending, for at most `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not all(c.idle() for c in self._clients):
            await asyncio.sleep(0.02)

    def _status(self) -> str:
        return status_message(self._protection, self.threats_blocked)

    def _deliver(self, encoded: list[str]) -> None:
        """In the server thread: queue one broadcast's threats for every subscribed client."""
        for c in self._clients:
            if not c.subscribed:
                continue
            before = len(c.pending)
            c.pending.extend(encoded)  # a deque with maxlen: the oldest fall off the front
            lost = before + len(encoded) - len(c.pending)
            if lost > 0:
                c.dropped += lost
                self.dropped_events += lost
                if not c.logged_drop:
                    c.logged_drop = True
                    self._log(f"WebSocket client {c.name} fell more than {self._max_backlog:,} events "
                              "behind; dropping its oldest events (logged once per client)")
            c.wake.set()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            for c in self._clients:
                c.heartbeat_due = True
                c.wake.set()

    async def _sender(self, c: _Client) -> None:
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
                    chunk, size = [], 0
                    pending = c.pending
                    while pending and (not chunk or size + len(pending[0]) + 2 <= MAX_MESSAGE_THREAT_BYTES):
                        item = pending.popleft()  # threat_json is ASCII: len() is the byte count
                        chunk.append(item)
                        size += len(item) + 2
                    c.sending = True
                    try:
                        # Returns once the socket's buffer is below its low-water mark:
                        # until then, new events pile up for the next message.
                        await ws.send(threat_message(chunk))
                    finally:
                        c.sending = False
        except ConnectionClosed:
            pass

    async def _handle(self, ws: ServerConnection) -> None:
        c = _Client(ws, self._max_backlog)
        try:
            await ws.send(self._status())  # the Shield sends status first
        except ConnectionClosed:
            return
        self._clients.add(c)
        c.sender = asyncio.create_task(self._sender(c))
        try:
            while True:
                frame = await ws.recv(decode=False)  # bytes: the size check counts bytes
                reply = self._command(c, frame)
                if reply is not None:
                    await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(c)
            if c.subscribed:
                c.subscribed = False
                self._subscribers -= 1
            c.pending.clear()
            c.sender.cancel()
            try:
                await c.sender
            except (asyncio.CancelledError, ConnectionClosed):
                pass

    def _rate_ok(self, c: _Client) -> bool:
        now = time.monotonic()
        window = c.commands
        while window and now - window[0] >= self._rate_window_s:
            window.popleft()
        if len(window) >= self._rate_limit:
            return False
        window.append(now)
        return True

    def _command(self, c: _Client, frame: bytes | str) -> str | None:
        """One frame from a client: the reply to send it, if any."""
        if len(frame) > MAX_FRAME_BYTES:  # dropped, as the Shield does; not counted as a command
            c.frames_too_big += 1
            self.frames_too_big += 1
            return None
        if not self._rate_ok(c):
            return RATE_LIMITED
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError):  # includes bad UTF-8
            return INVALID_JSON
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "subscribe":
            if not c.subscribed:
                c.subscribed = True
                self._subscribers += 1
            return None
        if kind == "unsubscribe":
            if c.subscribed:
                c.subscribed = False
                self._subscribers -= 1
                c.pending.clear()
            return None
        if kind == "get_status":
            return self._status()
        if kind == "toggle_protection":
            self._protection = not self._protection
            for other in self._clients:
                if other is not c:
                    other.status_due = True
                    other.wake.set()
            return self._status()  # the toggler's copy, in order with its other answers
        return unknown_command(kind)
