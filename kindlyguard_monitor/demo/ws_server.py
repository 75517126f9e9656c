"""The demo writer's stand-in for the Shield's WebSocket (docs/websocket.md).

`DemoWsServer` serves `ws://127.0.0.1:PORT` from a background thread with its
own asyncio event loop (serving.py, shared with like_shield.py), so the demo's
main loop (plain, synchronous code that also feeds the ring) only calls
`broadcast()`. Loopback only, by construction: the server binds 127.0.0.1 and
checks the bound address.

This module is the server itself: the connection handler, the commands and
their rate limits, heartbeats, start and stop. Who is admitted is
ws_admission.py (`Gate`; docs/security.md); what each client still has to get,
batched by load and bounded, is ws_backlog.py (`Backlogs`).

Threads
    main thread  -- the demo loop: broadcast(), protection_enabled,
                    threats_blocked; start()/stop().
    server thread -- the event loop: one handler task per connection (reads
                    commands, answers them), one sender task per connection
                    (threats, heartbeats, status broadcasts), one heartbeat
                    task. Every piece of per-client state lives in this
                    thread; broadcast() hands it encoded threats with
                    loop.call_soon_threadsafe (once for all the broadcasts
                    made before the loop takes them). The two values the main thread
                    reads (protection_enabled, a client count) and the one it
                    writes (threats_blocked) are single-writer ints/bools.

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
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kindlyguard_monitor.demo.repeat_log import RepeatLog
from kindlyguard_monitor.demo.serving import HOST, ThreadedServer, WsServerError
from kindlyguard_monitor.demo.ws_admission import (
    ACCEPT_BACKLOG,
    ALLOWED_ORIGINS,
    HANDSHAKE_TIMEOUT_S,
    MAX_CLIENTS,
    MAX_HANDSHAKES,
    Gate,
)
from kindlyguard_monitor.demo.ws_backlog import MAX_BACKLOG_EVENTS, MAX_BUFFERED_BYTES, Backlogs, Client
from kindlyguard_monitor.threats import Published
from kindlyguard_monitor.transport import local_auth
from kindlyguard_monitor.transport.protocol import MAX_FRAME_BYTES
from kindlyguard_monitor.transport.server_frames import numbered_threats_json, status_message
from kindlyguard_monitor.vocabulary import DEFAULT_WS_PORT

__all__ = ["DEFAULT_PORT", "DemoWsServer", "WsServerError"]

DEFAULT_PORT = DEFAULT_WS_PORT  # the Shield's; $SHIELD_WS_PORT overrides it (read by the CLI)
HEARTBEAT_S = 5.0
RATE_LIMIT_COMMANDS = 60
RATE_LIMIT_WINDOW_S = 60.0
MAX_FRAME_LIBRARY_BYTES = 4 << 20  # over this websockets closes the connection (1009)
CLOSE_TIMEOUT_S = 2.0  # a client that does not answer our close frame is cut off after this
TOGGLE_BURST = 60  # toggle_protection, for the whole server: a burst of 60,
TOGGLE_PER_S = 1.0  # then one a second (the Shield's limiter: burst 60, about one a second)

# What the server answers to bad commands. docs/websocket.md only fixes
# "Rate limit exceeded"; it does not say what the Shield answers to a frame
# that is not JSON or to an unknown command: these two texts are our guess.
RATE_LIMITED = json.dumps({"type": "error", "message": "Rate limit exceeded"})
INVALID_JSON = json.dumps({"type": "error", "message": "Invalid JSON"})


def encode_events(events: list[Published]) -> list[str]:
    """The JSON of each event's THREAT, as every subscriber gets it."""
    return numbered_threats_json(events)


def unknown_command(kind) -> str:
    text = kind if isinstance(kind, str) else json.dumps(kind)
    return json.dumps({"type": "error", "message": f"Unknown command: {text[:64]}"})


class DemoWsServer(ThreadedServer):
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
        super().__init__(port, protection_enabled, log)
        self._heartbeat_s = heartbeat_s
        self._rate_limit = rate_limit
        self._rate_window_s = rate_window_s
        self._said = RepeatLog(self._log)  # repeated messages: once, then counted
        self._require_token = require_token
        self._env = env
        self._gate = Gate(self._said, max_clients, max_handshakes)  # the token is made at start()
        self._handshake_timeout_s = handshake_timeout_s
        self._backlogs = Backlogs(self._clients, self._said, self._status, max_backlog, max_buffered_bytes)
        self._toggle_burst = float(toggle_burst)
        self._toggle_per_s = toggle_per_s
        self._toggle_tokens = float(toggle_burst)
        self._toggle_at = time.monotonic()
        self.toggles_refused = 0
        self._subscribers = 0  # read (racily, harmlessly) by broadcast() to skip encoding
        # broadcast() -> the server thread: encoded threats not yet handed over, and whether a
        # hand-off is scheduled (a flood of small broadcasts wakes the loop once, not each time)
        self._handoff_lock = threading.Lock()
        self._handoff: list[str] = []
        self._handoff_due = False
        self._closing = False
        self.frames_too_big = 0

    # ---- the main thread's API (url, protection_enabled, clients, start, stop: serving.py) ----

    @property
    def subscribers(self) -> int:
        return self._subscribers

    # What the gate and the feed count (the demo's summary and the tests read them).
    token = property(lambda self: self._gate.token, doc="the token file's, once started (None without one)")
    max_clients = property(lambda self: self._gate.max_clients)
    max_handshakes = property(lambda self: self._gate.max_handshakes)
    refused = property(lambda self: self._gate.refused, doc="handshakes refused, by HTTP status")
    handshakes_cut = property(lambda self: self._gate.handshakes_cut, doc="cut to make room for newer ones")
    dropped_events = property(lambda self: self._backlogs.dropped_events, doc="over all clients")
    peak_buffered_bytes = property(lambda self: self._backlogs.peak_buffered_bytes)
    slow_clients_cut = property(lambda self: self._backlogs.slow_clients_cut)

    def broadcast(self, events: Iterable[Published]) -> None:
        """Publish threats: to every subscribed client, in order. Thread-safe, never blocks
        on a client."""
        events = list(events)
        self.threats_blocked += sum(1 for e in events if e.threat.blocked)
        loop = self._loop
        if not events or loop is None or self._closing or self._subscribers == 0:
            return  # nobody to send to: do not even encode
        encoded = encode_events(events)
        with self._handoff_lock:  # one wake-up of the loop for all that comes before it runs
            self._handoff.extend(encoded)
            if self._handoff_due:
                return
            self._handoff_due = True
        try:
            loop.call_soon_threadsafe(self._take_handoff)
        except RuntimeError:  # the loop is gone (stopping)
            pass

    def _take_handoff(self) -> None:
        """In the server thread: every broadcast since the last call, for every subscriber, in order."""
        with self._handoff_lock:
            encoded, self._handoff, self._handoff_due = self._handoff, [], False
        if encoded:
            self._backlogs.deliver(encoded)

    def _start_problem(self, exc: BaseException) -> str | None:
        if isinstance(exc, local_auth.LocalAuthError):
            return f"cannot write the WebSocket's token: {exc}"
        return None

    def _stopped(self) -> None:
        self._said.flush()
        if self.token is not None:
            self.token.remove()

    # ---- the server thread ----

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop_event = asyncio.Event()
        loop.set_exception_handler(self._loop_error)  # accept() errors: said once, then counted
        server = await self._listen()
        if server is None:
            return
        self._started(loop)
        heartbeat = asyncio.create_task(self._heartbeats())
        try:
            await self._stop_event.wait()
            self._closing = True  # broadcast() stops handing over events
            await self._drain(self._drain_s)
        finally:
            await self._shut(server, heartbeat)

    async def _listen(self):
        """The listening server on HOST only, its port and token set; None (said) when it cannot be."""
        try:
            server = await serve(
                self._handle, HOST, self.port,
                compression=None,  # loopback: latency over bytes
                process_request=self._gate.admit,  # token, Origin, same user, capacity
                # A second guard on the Origin (the library's own 403), in case Gate.admit is changed.
                origins=list(ALLOWED_ORIGINS),
                max_size=MAX_FRAME_LIBRARY_BYTES,
                close_timeout=CLOSE_TIMEOUT_S,
                open_timeout=self._handshake_timeout_s,
                backlog=ACCEPT_BACKLOG,
                create_connection=self._gate.connection_class(),
                logger=self._library_logger(),
            )
        except OSError as exc:
            self._failed(exc)
            return None
        bound = [s.getsockname() for s in server.sockets]
        if not bound or any(addr[0] != HOST for addr in bound):  # pragma: no cover - by construction
            server.close()
            await server.wait_closed()
            self._failed(RuntimeError(f"bound {bound}, not {HOST} only"))
            return None
        self.port = bound[0][1]
        if self._require_token:
            try:
                self._gate.token = local_auth.ServerToken(self.port, self._env)
            except OSError as exc:
                server.close()
                await server.wait_closed()
                self._failed(exc)
                return None
        return server

    async def _shut(self, server, heartbeat: asyncio.Task) -> None:
        """Stop the heartbeats, close every connection (cut those that cannot take a close frame), end every task."""
        heartbeat.cancel()
        for conn in list(self._gate.handshaking):  # unfinished handshakes: nothing to say goodbye to
            conn.transport.abort()
        server.close()  # every connection: close frame 1001 (going away)
        try:
            await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT_S + 1)
        except asyncio.TimeoutError:
            # Clients that read nothing cannot take a close frame: cut them, so that no
            # handler is left pending when the loop closes (each would print a traceback).
            for conn in [*self._gate.handshaking, *self._gate.admitted, *(c.ws for c in self._clients)]:
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

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            self._said.tick()
            for c in self._clients:
                c.heartbeat_due = True
                c.wake.set()

    async def _handle(self, ws: ServerConnection) -> None:
        self._gate.handshaking.pop(ws, None)  # past its handshake: a client now
        c = Client(ws)
        try:
            await ws.send(self._status())  # the Shield sends status first
        except ConnectionClosed:
            return
        self._clients.add(c)
        c.sender = asyncio.create_task(self._backlogs.sender(c))
        try:
            # bytes (decode=False): the size check counts bytes
            await self._answer(ws, lambda frame: self._command(c, frame), decode=False)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(c)
            if c.subscribed:
                c.subscribed = False
                self._subscribers -= 1
            self._backlogs.release(c)
            await self._end_sender(c.sender)

    def _rate_ok(self, c: Client) -> bool:
        now = time.monotonic()
        window = c.commands
        while window and now - window[0] >= self._rate_window_s:
            window.popleft()
        if len(window) >= self._rate_limit:
            return False
        window.append(now)
        return True

    def _command(self, c: Client, frame: bytes | str) -> str | None:
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
