"""The demo writer's stand-in for the Shield's WebSocket (docs/websocket.md).

`DemoWsServer` serves `ws://127.0.0.1:PORT` from a background thread with its
own asyncio event loop, so the demo's main loop (plain, synchronous code that
also feeds the ring) only calls `broadcast()`.

Loopback only, by construction: there is no host parameter; the server binds
127.0.0.1 and checks the bound address.

Who is admitted (_admit; docs/security.md)
    Its own user only: the handshake must carry the token the server wrote
    into a 0600 file (kindlyguard_monitor/transport/local_auth.py), and on Linux the client's
    socket must belong to the server's uid. No web page: an Origin other than
    none or the Shield's Tauri webview is refused, token or not. At most
    max_clients past the handshake (HTTP 503 beyond) and max_handshakes still
    in it (a new socket cuts the oldest unfinished one), both fitted under the
    open-file limit; a handshake has handshake_timeout_s. Refusals, cuts and
    the library's and event loop's errors go through one RepeatLog: said once,
    then counted.

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
    Each client's backlog is bounded (max_backlog events): a client that
    falls further behind loses its OLDEST events, counted and logged once, and
    never stalls the others (each has its own sender task). All clients
    together are bounded too (max_buffered_bytes, as estimated by _held):
    past it the client holding the most is disconnected (counted), since a
    client that never reads would keep its backlog and a message forever.

Commands and the rate limit
    Every frame a client sends that is not dropped for size counts as one
    command, valid or not (so `{"type":"bogus"}` and non-JSON count too).
    Limit: 60 commands in any 60 s, per connection, a sliding-window log
    (the times of the accepted commands of the last 60 s): command n is
    refused when 60 commands were accepted in the 60 s before it. Refused
    commands are answered {"type":"error","message":"Rate limit exceeded"}
    and do not use up the window. toggle_protection also draws on one token
    bucket for the whole server (toggle_burst, then toggle_per_s), as the
    Shield's single limiter does.

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
import http
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kindlyguard_monitor.demo.repeat_log import RepeatLog
from kindlyguard_monitor.threats import Threat
from kindlyguard_monitor.transport import local_auth
from kindlyguard_monitor.transport.protocol import MAX_FRAME_BYTES, event_id, status_message, threat_json, threat_message
from kindlyguard_monitor.vocabulary import DEFAULT_WS_PORT

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

HOST = "127.0.0.1"  # loopback only; deliberately not configurable
DEFAULT_PORT = DEFAULT_WS_PORT  # the Shield's; $SHIELD_WS_PORT overrides it (read by the CLI)
HEARTBEAT_S = 5.0
RATE_LIMIT_COMMANDS = 60
RATE_LIMIT_WINDOW_S = 60.0
MAX_FRAME_LIBRARY_BYTES = 4 << 20  # over this websockets closes the connection (1009)
MAX_MESSAGE_THREAT_BYTES = 900 << 10  # encoded threats per `threat` message
MAX_BACKLOG_EVENTS = 200_000  # per client, then the oldest are dropped
CLOSE_TIMEOUT_S = 2.0  # a client that does not answer our close frame is cut off after this
MAX_CLIENTS = 64  # connections past their handshake; more are refused with HTTP 503
MAX_HANDSHAKES = 64  # sockets still in their handshake; a new one cuts the oldest
HANDSHAKE_TIMEOUT_S = 5.0  # a handshake not done by then is cut (a local client needs milliseconds)
ACCEPT_BACKLOG = 64  # the listen queue; asyncio accepts up to this many sockets in one go
# File descriptors kept for everything else (ring, logs, imports) and for the sockets asyncio
# accepts in one go before any of them reaches us (up to two rounds of the backlog).
FD_RESERVE = 32 + 2 * ACCEPT_BACKLOG
MAX_BUFFERED_BYTES = 128 << 20  # what all clients' backlogs may hold together (_held), then the slowest is cut
TOGGLE_BURST = 60  # toggle_protection, for the whole server: a burst of 60,
TOGGLE_PER_S = 1.0  # then one a second (the Shield's limiter: burst 60, about one a second)
RETRY_AFTER_S = 1
# Origins a browser-like client may send: none (a monitor, a script) or the Shield's own UI in its
# Tauri 2 webview (tauri://localhost on Linux and macOS, http(s)://tauri.localhost on Windows),
# which no page in a browser can claim. Every other Origin is a web page: refused (docs/websocket.md).
ALLOWED_ORIGINS = (None, "tauri://localhost", "http://tauri.localhost", "https://tauri.localhost")

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

    __slots__ = ("ws", "name", "subscribed", "pending", "pending_bytes", "inflight_bytes", "send_started", "cut",
                 "dropped", "status_due", "heartbeat_due", "wake", "sending", "commands", "frames_too_big", "sender")

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
        self.send_started = 0.0  # when that began (monotonic)
        self.cut = False  # disconnected for holding too much
        self.dropped = 0  # events dropped because this client fell behind
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
                 log: Callable[[str], None] | None = None,
                 require_token: bool = True, env: Mapping[str, str] | None = None,
                 max_clients: int = MAX_CLIENTS, max_handshakes: int = MAX_HANDSHAKES,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 max_buffered_bytes: int = MAX_BUFFERED_BYTES,
                 toggle_burst: int = TOGGLE_BURST, toggle_per_s: float = TOGGLE_PER_S):
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, not {port}")
        if min(max_clients, max_handshakes, max_backlog, max_buffered_bytes, toggle_burst) < 1:
            raise ValueError("limits must be at least 1")
        self.port = port  # the bound port after start() (port 0 picks a free one)
        self._protection = bool(protection_enabled)
        self.threats_blocked = 0  # written by the broadcasting thread only
        self._heartbeat_s = heartbeat_s
        self._max_backlog = max_backlog
        self._rate_limit = rate_limit
        self._rate_window_s = rate_window_s
        self._log = log or (lambda message: None)
        self._said = RepeatLog(self._log)  # repeated messages: once, then counted
        self._require_token = require_token
        self._env = env
        self.token: local_auth.ServerToken | None = None  # made at start() (the file names the port)
        self.max_clients, self.max_handshakes = _fit_descriptors(max_clients, max_handshakes)
        self._handshake_timeout_s = handshake_timeout_s
        self._max_buffered = max_buffered_bytes
        self._toggle_burst = float(toggle_burst)
        self._toggle_per_s = toggle_per_s
        self._toggle_tokens = float(toggle_burst)
        self._toggle_at = time.monotonic()
        self._handshaking: dict[ServerConnection, None] = {}  # sockets in their handshake, oldest first
        self._admitted: set[ServerConnection] = set()  # handshakes accepted, until the socket closes
        self.peak_buffered_bytes = 0  # the most held at once (see _held), after cutting
        self.refused: dict[int, int] = {}  # handshakes refused, by HTTP status
        self.handshakes_cut = 0  # cut to make room for newer ones
        self.slow_clients_cut = 0  # disconnected for holding more than max_buffered_bytes
        self.toggles_refused = 0
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
            if isinstance(exc, local_auth.LocalAuthError):
                raise WsServerError(f"cannot write the WebSocket's token: {exc}") from None
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
        self._said.flush()
        if self.token is not None:
            self.token.remove()

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
        loop.set_exception_handler(self._loop_error)  # accept() errors: said once, then counted
        try:
            server = await serve(
                self._handle, HOST, self.port,
                compression=None,  # loopback: latency over bytes
                process_request=self._admit,  # token, Origin, same user, capacity
                # A second guard on the Origin (the library's own 403), in case _admit is changed.
                origins=list(ALLOWED_ORIGINS),
                max_size=MAX_FRAME_LIBRARY_BYTES,
                close_timeout=CLOSE_TIMEOUT_S,
                open_timeout=self._handshake_timeout_s,
                backlog=ACCEPT_BACKLOG,
                create_connection=self._connection_class(),
                logger=self._library_logger(),
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
        if self._require_token:
            try:
                self.token = local_auth.ServerToken(self.port, self._env)
            except OSError as exc:
                server.close()
                await server.wait_closed()
                self._start_error = exc
                self._ready.set()
                return
        self._loop = loop
        self._ready.set()
        heartbeat = asyncio.create_task(self._heartbeats())
        try:
            await self._stop_event.wait()
            self._closing = True  # broadcast() stops handing over events
            await self._drain(self._drain_s)
        finally:
            heartbeat.cancel()
            for conn in list(self._handshaking):  # unfinished handshakes: nothing to say goodbye to
                conn.transport.abort()
            server.close()  # every connection: close frame 1001 (going away)
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT_S + 1)
            except asyncio.TimeoutError:
                # Clients that read nothing cannot take a close frame: cut them, so that no
                # handler is left pending when the loop closes (each would print a traceback).
                for conn in [*self._handshaking, *self._admitted, *(c.ws for c in self._clients)]:
                    conn.transport.abort()
                try:
                    await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT_S)
                except asyncio.TimeoutError:  # pragma: no cover
                    pass
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    async def _drain(self, seconds: float) -> None:
        """Wait until every client has been handed what was pending, for at most `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not all(c.idle() for c in self._clients):
            await asyncio.sleep(0.02)

    def _status(self) -> str:
        return status_message(self._protection, self.threats_blocked)

    def _deliver(self, encoded: list[str]) -> None:
        """In the server thread: queue one broadcast's threats for every subscribed client."""
        size = sum(map(len, encoded))  # threat_json is ASCII: len() is the byte count
        for c in self._clients:
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
                self._said("backlog", f"WebSocket client {c.name} fell more than {self._max_backlog:,} events "
                           "behind; its oldest events were dropped")
            else:
                batch, added = encoded, size
            pending.extend(batch)
            c.pending_bytes += added
            c.wake.set()
        self._check_memory()

    def _check_memory(self) -> None:
        held = self._held()
        if held > self._max_buffered:
            held = self._shed()
        self.peak_buffered_bytes = max(self.peak_buffered_bytes, held)

    def _held(self) -> int:
        """What the clients' backlogs cost in memory, about: the threat text once (every client's
        backlog is a tail of the same broadcast strings, so the longest holds them all), a
        pointer per pending event per client, and each message in flight four times (our text,
        its UTF-8, the frame, the transport's buffer: measured with 200 clients that never read)."""
        longest = refs = inflight = 0
        for c in self._clients:
            longest = max(longest, c.pending_bytes)
            refs += len(c.pending)
            inflight += c.inflight_bytes
        return longest + 8 * refs + 4 * inflight

    def _shed(self) -> int:
        """Over the memory bound: cut the clients holding the most until under it (a client that
        reads nothing, its socket full, would keep its backlog and a message forever). Returns
        what is held then."""
        held = self._held()
        while held > self._max_buffered:
            live = [c for c in self._clients if not c.cut]
            if not live:
                break
            # the client holding the most; of equals, the one whose socket has been stuck longest
            self._cut(max(live, key=lambda c: (c.pending_bytes + 4 * c.inflight_bytes, -c.send_started)))
            held = self._held()
        return held

    def _cut(self, c: _Client) -> None:
        c.cut = True
        c.dropped += len(c.pending)
        self.dropped_events += len(c.pending)
        self._release(c)
        self.slow_clients_cut += 1
        self._said("slow", f"WebSocket client {c.name} read too slowly: disconnected, its backlog dropped "
                   f"(all clients together may hold {self._max_buffered:,} bytes)")
        c.ws.transport.abort()  # a client that reads nothing would never read a close frame either

    def _release(self, c: _Client) -> None:
        """Forget what `c` holds (its pending events and the message in flight)."""
        c.pending.clear()
        c.pending_bytes = c.inflight_bytes = 0

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            self._said.tick()
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
                    self._check_memory()  # a message costs more than its pending events did
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

    async def _handle(self, ws: ServerConnection) -> None:
        self._handshaking.pop(ws, None)  # past its handshake: a client now
        c = _Client(ws)
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
            self._release(c)
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
                c.pending_bytes = 0
            return None
        if kind == "get_status":
            return self._status()
        if kind == "toggle_protection":
            if not self._toggle_ok():  # one budget for the whole server, as the Shield's
                self.toggles_refused += 1
                return RATE_LIMITED
            self._protection = not self._protection
            for other in self._clients:
                if other is not c:
                    other.status_due = True
                    other.wake.set()
            return self._status()  # the toggler's copy, in order with its other answers
        return unknown_command(kind)

    def _toggle_ok(self) -> bool:
        """A token bucket shared by every connection: toggle_burst at once, then toggle_per_s."""
        now = time.monotonic()
        self._toggle_tokens = min(self._toggle_burst,
                                  self._toggle_tokens + (now - self._toggle_at) * self._toggle_per_s)
        self._toggle_at = now
        if self._toggle_tokens < 1.0:
            return False
        self._toggle_tokens -= 1.0
        return True

    # ---- who is admitted, and how many ----

    def _connection_class(self) -> type[ServerConnection]:
        """ServerConnection that tells us when its socket opens and closes: sockets still in their
        handshake are bounded (the oldest is cut when a new one comes), so slow or silent
        handshakes can neither exhaust the file descriptors nor keep a real client out."""
        server = self

        class Connection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                server._opened(self)

            def connection_lost(self, exc: Exception | None) -> None:
                server._handshaking.pop(self, None)
                server._admitted.discard(self)
                super().connection_lost(exc)

        return Connection

    def _opened(self, conn: ServerConnection) -> None:
        self._handshaking[conn] = None
        while len(self._handshaking) > self.max_handshakes:
            oldest = next(iter(self._handshaking))
            del self._handshaking[oldest]
            self.handshakes_cut += 1
            self._said("cut", f"more than {self.max_handshakes} WebSocket handshakes at once: the oldest "
                       "unfinished one was cut")
            oldest.transport.abort()

    def _admit(self, conn: ServerConnection, request: Request) -> Response | None:
        """process_request: None admits; a Response (403/503) refuses, with one line why."""
        headers: Headers = request.headers
        origin = headers.get("Origin")
        if origin not in ALLOWED_ORIGINS:
            return self._refuse(conn, http.HTTPStatus.FORBIDDEN, "origin",
                                "web pages may not connect (Origin not allowed)")
        if self.token is not None:
            if not self.token.matches(local_auth.presented_token(headers, request.path)):
                return self._refuse(conn, http.HTTPStatus.FORBIDDEN, "token",
                                    f"no valid token: send the one in {self.token.path} "
                                    f"({local_auth.TOKEN_HEADER} header)")
            owner = local_auth.peer_uid(conn.remote_address, conn.local_address)
            mine = os.geteuid() if hasattr(os, "geteuid") else None
            if owner is not None and mine is not None and owner != mine:
                return self._refuse(conn, http.HTTPStatus.FORBIDDEN, "user",
                                    f"only {local_auth.user_name(mine)} may connect, not "
                                    f"{local_auth.user_name(owner)}")
        if len(self._admitted) >= self.max_clients:
            response = self._refuse(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "full",
                                    f"the server has {self.max_clients} clients already; try again later")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        self._admitted.add(conn)
        return None

    def _refuse(self, conn: ServerConnection, status: http.HTTPStatus, key: str, why: str) -> Response:
        self.refused[status.value] = self.refused.get(status.value, 0) + 1
        self._said(f"refused-{key}", f"WebSocket handshake refused ({status.value}): {why}")
        return conn.respond(status, why + "\n")

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """The event loop's errors (accept() out of file descriptors...): one line per kind."""
        exc = context.get("exception")
        message = str(context.get("message") or "error")
        what = f"{message}: {type(exc).__name__}: {exc}" if exc is not None else message
        self._said(f"loop-{message}-{type(exc).__name__}", f"WebSocket server: {what}")

    def _library_logger(self) -> logging.Logger:
        """The websockets library's warnings and errors, through the RepeatLog, without tracebacks."""
        logger = logging.getLogger(f"kgmon.demo.ws.{id(self):x}")
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        said = self._said

        class ToRepeatLog(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                exc = record.exc_info[1] if record.exc_info else None
                text = record.getMessage() + (f": {type(exc).__name__}: {exc}" if exc is not None else "")
                said(f"lib-{record.msg}-{type(exc).__name__}", f"WebSocket server: {text}")

        logger.handlers[:] = [ToRepeatLog()]
        return logger


def _fit_descriptors(max_clients: int, max_handshakes: int) -> tuple[int, int]:
    """Clients and handshakes, shrunk to fit the open-file limit (less a reserve): a server that
    runs out of descriptors can accept no one, not even its own monitor."""
    if resource is None:  # pragma: no cover - Windows
        return max_clients, max_handshakes
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_clients, max_handshakes
    budget = max(8, soft - FD_RESERVE)
    if max_clients + max_handshakes <= budget:
        return max_clients, max_handshakes
    handshakes = max(4, min(max_handshakes, budget // 2))
    return max(4, min(max_clients, budget - handshakes)), handshakes
