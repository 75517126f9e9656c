"""A hostile WebSocket server for client tests.

    with HostileServer(send_frames(["garbage", status], then="abort")) as srv:
        client_under_test(srv.url)
        srv.wait_for(lambda: srv.connections >= 2, 5, "a reconnect")

A real `websockets` asyncio server on 127.0.0.1 (a free port the OS picks),
running on its own event loop in a background thread, so a test that drives a
*synchronous* client needs nothing else.

Two modes:

- `HostileServer(script)`: a WebSocket server. `script` is an async function
  `(ws, srv) -> None` run once per connection, after the handshake, with `ws`
  a `websockets.asyncio.server.ServerConnection`. What the client sends is
  read for the script (a reader runs beside it), recorded in `srv.received`
  (text frames) / `srv.received_binary`, and handed to the script by
  `await srv.next_received(ws, timeout)`; so a script must NOT call
  `ws.recv()` itself. When the script returns the connection is closed
  normally (close frame 1000). Scripting an abrupt end: `abort(ws)` (the TCP
  socket closed with no close frame); slow bytes: `await drip(ws.transport, data, delay)`.
- `HostileServer(raw=handler)`: a bare TCP server for what a WebSocket library
  would refuse to do, `handler` being `async (reader, writer, srv) -> None`.
  Helpers: `read_request`, `handshake_response`, `server_frame`,
  `read_client_frame`, `record_client(reader, writer, srv)` (records the
  client's frames until it leaves), `drip`.

Ready-made: `send_frames(frames, then=...)`, `drop_soon(first, after)` (scripts),
`slow_handshake()`, `slow_frame(frame)`, `raw_reply(data)`, `silent()`,
`ping_flood(before)` (raw handlers).

The server's `max_size` (what it RECEIVES) defaults to 64 MiB; sending is
unlimited, so 2 MiB and 20 MiB frames are just `send_frames(["x" * (20 << 20)])`.
Compression is off by default so a frame's size on the wire is its size;
keepalive pings are off unless asked for.

Recorded, readable from the test thread: `connections` (how many were
accepted: handshakes completed in WebSocket mode, TCP accepts in raw mode),
`live` (how many are open now), `received`, `received_binary`, `errors`
(exceptions a script raised, other than the connection closing). From the test
thread: `send_all(frame)`, `abort_all()`, `wait_for(condition, timeout, what)`.
Leaving the `with` block aborts every connection, cancels the scripts and
stops the loop within a second or so.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import threading
from typing import Any, Awaitable, Callable, NamedTuple

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from conftest import wait_for

MiB = 1 << 20
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Script = Callable[[ServerConnection, "HostileServer"], Awaitable[None]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "HostileServer"], Awaitable[None]]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class Pause(NamedTuple):
    """In `send_frames(frames)`: wait this long before the next frame."""

    seconds: float


class HostileServer:
    def __init__(self, script: Script | None = None, *, raw: RawHandler | None = None,
                 max_size: int | None = 64 * MiB, compression: str | None = None,
                 ping_interval: float | None = None, close_timeout: float = 2.0,
                 open_timeout: float = 10.0):
        if (script is None) == (raw is None):
            raise ValueError("give exactly one of script or raw=handler")
        self.script = script
        self.raw = raw
        self._serve_options = dict(max_size=max_size, compression=compression, ping_interval=ping_interval,
                                   close_timeout=close_timeout, open_timeout=open_timeout)
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.received: list[str] = []
        self.received_binary: list[bytes] = []
        self.connections = 0
        self.errors: list[BaseException] = []
        self._live: set[Any] = set()  # ServerConnection or StreamWriter
        self._inboxes: dict[ServerConnection, asyncio.Queue] = {}
        self._tasks: set[asyncio.Task] = set()  # scripts
        self._handlers: set[asyncio.Task] = set()  # connection handlers
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._start_error: BaseException | None = None

    # ---- for the test thread ----

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def live(self) -> int:
        return len(self._live)

    def __enter__(self) -> "HostileServer":
        self._thread = threading.Thread(target=self._run, name="hostile-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile server did not start within 10 s")
        if self._start_error is not None:
            raise self._start_error
        return self

    def __exit__(self, *exc_info) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
        if self._thread is not None:
            self._thread.join(15)

    def wait_for(self, condition: Callable[[], object], timeout: float = 10, what: str = "condition"):
        """Poll condition() until truthy (returned), or fail after timeout s; woken early by
        every change the server notifies (a connection, a frame received, an error)."""
        def pause(seconds: float) -> None:
            with self._cond:
                self._cond.wait(seconds)

        return wait_for(condition, timeout, what, 0.02, pause,
                        lambda: f"connections={self.connections}, received={self.received[-3:]!r}, "
                                f"errors={self.errors!r}")

    def call(self, coro_fn: Callable[[], Awaitable[Any]], timeout: float = 30) -> Any:
        """Run `await coro_fn()` on the server's loop; return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def send_all(self, frame: str | bytes, timeout: float = 30) -> int:
        """Send one frame to every open WebSocket connection; how many it went to."""
        async def send() -> int:
            sent = 0
            for conn in list(self._live):
                if isinstance(conn, ServerConnection):
                    try:
                        await conn.send(frame)
                        sent += 1
                    except ConnectionClosed:
                        pass
            return sent
        return self.call(send, timeout)

    def abort_all(self) -> None:
        """Drop every connection at once: TCP closed, no close frame."""
        async def drop() -> None:
            for conn in list(self._live):
                conn.transport.abort()
        self.call(drop)

    # ---- for scripts (on the server's loop) ----

    async def next_received(self, ws: ServerConnection, timeout: float = 10) -> str | bytes | None:
        """The next frame the client sends on `ws`; None once the connection has ended.
        Raises TimeoutError after `timeout` s."""
        inbox = self._inboxes[ws]
        async with asyncio.timeout(timeout):
            item = await inbox.get()
        if item is None:
            inbox.put_nowait(None)  # stays ended
        return item

    def record(self, frame: str | bytes) -> None:
        with self._cond:
            (self.received if isinstance(frame, str) else self.received_binary).append(frame)
            self._cond.notify_all()

    # ---- the loop ----

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # pragma: no cover - startup failed
            self._start_error = exc
            self._ready.set()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=5))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        if self.raw is not None:
            server = await asyncio.start_server(self._raw_handler, self.host, 0, limit=64 * MiB)
        else:
            server = await serve(self._ws_handler, self.host, 0, **self._serve_options)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop
        finally:
            for task in list(self._tasks):
                task.cancel()
            for conn in list(self._live):
                conn.transport.abort()
            if self._handlers:  # let every handler see its script end, so none is cancelled mid-way
                await asyncio.wait(list(self._handlers), timeout=5)
            server.close()
            try:
                async with asyncio.timeout(5):
                    await server.wait_closed()
            except TimeoutError:  # pragma: no cover
                pass

    def _connected(self, conn) -> None:
        self._handlers.add(asyncio.current_task())
        with self._cond:
            self.connections += 1
            self._live.add(conn)
            self._cond.notify_all()

    def _gone(self, conn) -> None:
        self._handlers.discard(asyncio.current_task())
        with self._cond:
            self._live.discard(conn)
            self._cond.notify_all()

    async def _run_script(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        try:
            await task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise
        except (ConnectionClosed, ConnectionError):
            pass
        except Exception as exc:
            with self._cond:
                self.errors.append(exc)
                self._cond.notify_all()
        finally:
            self._tasks.discard(task)

    async def _ws_handler(self, ws: ServerConnection) -> None:
        inbox: asyncio.Queue = asyncio.Queue()
        self._inboxes[ws] = inbox
        self._connected(ws)

        async def read() -> None:
            try:
                async for frame in ws:
                    self.record(frame)
                    inbox.put_nowait(frame)
            except ConnectionClosed:
                pass
            finally:
                inbox.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            await self._run_script(self.script(ws, self))
        finally:
            if ws.transport.is_closing():
                reader.cancel()
            self._gone(ws)

    async def _raw_handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connected(writer)
        try:
            await self._run_script(self.raw(reader, writer, self))
        finally:
            self._gone(writer)
            if self._stop.done():
                writer.transport.abort()
            else:
                writer.close()


# ---- WebSocket-mode scripts ----


def abort(ws: ServerConnection) -> None:
    """Close the TCP connection at once, without a close frame."""
    ws.transport.abort()


def send_frames(frames: list[str | bytes | Pause], then: str = "stay", delay: float = 0.0) -> Script:
    """A script: send each frame in order (str → text frame, bytes → binary frame,
    Pause(s) → wait), `delay` s apart, then:
    "stay" (keep the connection open until the client leaves or the test ends),
    "close" (a normal close, code 1000), or "abort" (TCP closed, no close frame)."""
    if then not in ("stay", "close", "abort"):
        raise ValueError(f"then must be stay, close or abort, not {then!r}")

    async def script(ws: ServerConnection, srv: HostileServer) -> None:
        for i, frame in enumerate(frames):
            if isinstance(frame, Pause):
                await asyncio.sleep(frame.seconds)
                continue
            if i and delay:
                await asyncio.sleep(delay)
            await ws.send(frame)
        if then == "abort":
            abort(ws)
        elif then == "close":
            await ws.close()
        else:
            await ws.wait_closed()

    return script


def drop_soon(first: list[str], after: float = 0.1) -> Script:
    """A script: send `first`, then drop the connection `after` s later with no
    close frame, every time (the Shield does that to a client it rejects)."""

    async def script(ws: ServerConnection, srv: HostileServer) -> None:
        for frame in first:
            await ws.send(frame)
        await asyncio.sleep(after)
        abort(ws)

    return script


async def drip(transport: asyncio.WriteTransport | asyncio.StreamWriter, data: bytes, delay: float,
               chunk: int = 1) -> None:
    """Write `data` `chunk` bytes at a time, `delay` s apart."""
    for i in range(0, len(data), chunk):
        if i:
            await asyncio.sleep(delay)
        if transport.is_closing():
            return
        transport.write(data[i:i + chunk])


# ---- raw mode: the bytes themselves ----


def server_frame(payload: str | bytes, opcode: int | None = None, fin: bool = True,
                 rsv: int = 0, mask: bytes | None = None) -> bytes:
    """The bytes of one frame (server frames are unmasked unless `mask` is given).
    Anything goes: wrong opcodes, reserved bits, a text frame of invalid UTF-8."""
    data = payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else bytes(payload)
    if opcode is None:
        opcode = OP_TEXT if isinstance(payload, str) else OP_BINARY
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF])
    mask_bit = 0x80 if mask else 0
    n = len(data)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask:
        head += mask
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + data


async def read_request(reader: asyncio.StreamReader) -> dict[str, str]:
    """Read the client's HTTP upgrade request; its headers (lower-case names),
    with the request line under "" ."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {"": lines[0]}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


def handshake_response(headers: dict[str, str]) -> bytes:
    """A valid 101 answer to the request `read_request()` returned."""
    key = headers.get("sec-websocket-key", "")
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode()


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes] | None:
    """(opcode, fin, unmasked payload) of the client's next frame; None at EOF."""
    try:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = await reader.readexactly(n)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return b0 & 0xF, bool(b0 & 0x80), bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def record_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, srv: HostileServer) -> None:
    """Record the client's frames (text in srv.received) until it closes or leaves;
    answer pings, and echo a close frame."""
    parts: list[bytes] = []
    first = OP_TEXT
    while True:
        frame = await read_client_frame(reader)
        if frame is None:
            return
        opcode, fin, data = frame
        if opcode == OP_CLOSE:
            if not writer.is_closing():
                writer.write(server_frame(data[:2], OP_CLOSE))
            return
        if opcode == OP_PING:
            writer.write(server_frame(data, OP_PONG))
            continue
        if opcode == OP_PONG:
            continue
        if opcode != OP_CONT:
            first, parts = opcode, []
        parts.append(data)
        if fin:
            whole = b"".join(parts)
            srv.record(whole.decode("utf-8", "replace") if first == OP_TEXT else whole)
            parts = []


async def complete_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> dict[str, str]:
    """Read the request and answer 101 at once; the request's headers."""
    headers = await read_request(reader)
    writer.write(handshake_response(headers))
    await writer.drain()
    return headers


# ---- ready-made raw handlers ----


def slow_handshake(delay: float = 0.5) -> RawHandler:
    """Accept the TCP connection, read the upgrade request, and send a valid
    101 response one byte every `delay` s; then record the client's frames."""

    async def handler(reader, writer, srv) -> None:
        headers = await read_request(reader)
        await drip(writer, handshake_response(headers), delay)
        await record_client(reader, writer, srv)

    return handler


def slow_frame(frame: str | bytes = '{"type": "heartbeat"}', delay: float = 0.5, chunk: int = 1,
               before: list[str | bytes] = ()) -> RawHandler:
    """Complete the handshake at once, send the frames in `before` whole, then
    send `frame`'s bytes (header included) `chunk` at a time, `delay` s apart;
    then record the client's frames until it leaves."""

    async def handler(reader, writer, srv) -> None:
        await complete_handshake(reader, writer)
        for f in before:
            writer.write(server_frame(f))
        recorder = asyncio.create_task(record_client(reader, writer, srv))
        try:
            await drip(writer, server_frame(frame), delay, chunk)
            await recorder
        finally:
            recorder.cancel()

    return handler


def raw_reply(data: bytes, then: str = "close") -> RawHandler:
    """Read the request, answer with these exact bytes (e.g. b"HTTP/1.1 200 OK..."
    or a 101 followed by broken frames), then "close", "abort" or "stay"."""

    async def handler(reader, writer, srv) -> None:
        await read_request(reader)
        writer.write(data)
        await writer.drain()
        if then == "abort":
            writer.transport.abort()
        elif then == "stay":
            await record_client(reader, writer, srv)

    return handler


def ping_flood(before: list[str | bytes] = (), batch: int = 4096) -> RawHandler:
    """Complete the handshake, send the frames in `before`, then ping frames as
    fast as the socket takes them until the client leaves; `srv.pings_sent`
    counts them."""

    async def handler(reader, writer, srv) -> None:
        await complete_handshake(reader, writer)
        for f in before:
            writer.write(server_frame(f))
        recorder = asyncio.create_task(record_client(reader, writer, srv))
        ping = server_frame(b"p", OP_PING)
        srv.pings_sent = getattr(srv, "pings_sent", 0)
        try:
            while not recorder.done() and not writer.is_closing():
                writer.write(ping * batch)
                srv.pings_sent += batch
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            recorder.cancel()

    return handler


def silent() -> RawHandler:
    """Accept the TCP connection and never answer (until the client leaves)."""

    async def handler(reader, writer, srv) -> None:
        while await reader.read(65536):
            pass

    return handler


# ---- frames ----


def json_frame_of_size(size: int, type: str = "heartbeat") -> str:
    """A valid JSON object frame of exactly `size` UTF-8 bytes (ASCII), `{"type": type, "pad": "xxx…"}`."""
    empty = json.dumps({"type": type, "pad": ""})
    if size < len(empty):
        raise ValueError(f"a frame of type {type!r} takes at least {len(empty)} bytes")
    return json.dumps({"type": type, "pad": "x" * (size - len(empty))})
