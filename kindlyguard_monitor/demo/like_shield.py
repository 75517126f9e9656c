"""A stand-in for the KindlyGuard Shield's own WebSocket server (`kgmon demo --like-shield`).

Our demo server (kindlyguard_monitor/demo/ws_server.py) is friendly: it answers every command,
sends heartbeats, numbers its threats. The Shield that people run is not. This
server behaves as the Shield does, as docs/websocket.md ("The Shield as it is",
read from the upstream source: websocket/mod.rs and security/mod.rs) describes it, so that the monitor can be tested against those
rules. Each rule below is numbered; tests/integration/test_like_shield.py names the rule it
checks as [S1] ... [S12].

[S1]  On connect: exactly one frame, `{"type":"status","protection_enabled":B,"threats_blocked":N}`
      (compact JSON, that field order).
[S2]  No heartbeats, no pings of its own, never a close frame of its own: a
      connection it dislikes is dropped (TCP closed, no close frame).
[S3]  ONE validator for the whole server, shared by every connection; every text
      frame from a client passes it, in the upstream order:
      size -> rate limit -> duplicate -> patterns -> command.
[S4]  A frame over 1 MiB: the connection is dropped.
[S5]  One rate limiter for the whole server (governor's GCRA, 60 a minute: a
      burst of 60, then one a second). Over it: `{"type":"error","message":"Rate
      limit exceeded"}`; the frame goes no further (it is not remembered as seen).
[S6]  The SHA-256 of the raw frame bytes, remembered 300 s: a frame seen before,
      from ANY connection, drops the connection ("Duplicate message"). A frame is
      remembered before its patterns are checked.
[S7]  The lower-cased text containing `<script`, `javascript:`, `onerror=`,
      `onclick=`, `../`, `..\\`, a NUL, `%00`, the four characters `\\x00`, or a bidi
      control (U+202A/B/D/E, U+2066/7): the connection is dropped.
[S8]  Commands (`{"type": ...}`, internally tagged, extra fields ignored):
      `subscribe`, `unsubscribe`, `get_status`: no reply; `toggle_protection`:
      the flag flips, no reply (the status is sent on connect only).
[S9]  Anything else: `{"type":"error","message":"Command error: <serde_json's text>"}`
      (the text is our approximation of serde_json's wording).
[S10] Binary frames are ignored (not validated); pings are answered.
[S11] Threats (the upstream server has no code path that sends them; this
      stand-in does, so clients can be tested): `{"type":"threat","threats":[{"id":
      "threat_<unix ms>","threat_type":..,"severity":..,"source":..,"details":..,
      "timestamp":"<RFC 3339, Z, 0/3/6/9 fraction digits as chrono prints>",
      "blocked":..}]}`: compact, that field order, no `context`, no `seq`; ids
      repeat within a millisecond. Sent to connections that subscribed (upstream's
      "you'd add this client to a subscription list").
[S12] Any Origin is accepted.

Where this differs from the Rust server (the libraries differ): a frame over
16 MiB (tungstenite's frame limit) makes `websockets` close with 1009 and a
close frame, where tungstenite would just drop; a client's close frame is
answered by `websockets`. Each client has a bounded queue of threat messages
(like upstream's channel of 100): a client that falls behind loses its oldest
messages, counted in `dropped_events`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kindlyguard_monitor.demo.serving import HOST, ThreadedServer
from kindlyguard_monitor.threats import Published, Threat, severity_name, threat_type_name
from kindlyguard_monitor.vocabulary import DEFAULT_WS_PORT

MAX_MESSAGE_BYTES = 1 << 20  # [S4] SecurityConfig::max_message_size
LIBRARY_MAX_BYTES = 16 << 20  # tungstenite's default max_frame_size
RATE_PER_MINUTE = 60  # [S5] SecurityConfig::rate_limit_per_minute
DUPLICATE_WINDOW_S = 300.0  # [S6]
HANDSHAKE_TIMEOUT_S = 10.0
PATTERNS = ("<script", "javascript:", "onerror=", "onclick=", "../", "..\\", "\0", "%00", "\\x00")  # [S7]
BIDI = frozenset("\u202a\u202b\u202d\u202e\u2066\u2067")  # [S7]
COMMANDS = ("subscribe", "unsubscribe", "get_status", "toggle_protection")  # [S8]
MAX_CLIENT_MESSAGES = 1000  # threat messages queued per client, then the oldest go
MAX_THREATS_PER_MESSAGE = 1000
RATE_LIMITED = '{"type":"error","message":"Rate limit exceeded"}'

# What the validator decided about one frame.
OK, TOO_BIG, RATE, DUPLICATE, PATTERN = "ok", "too_big", "rate_limited", "duplicate", "pattern"


class Gcra:
    """governor's direct rate limiter with Quota::per_minute(n): a burst of n,
    then one cell every 60/n s (the generic cell rate algorithm)."""

    def __init__(self, per_minute: int = RATE_PER_MINUTE, clock: Callable[[], float] = time.monotonic):
        self.interval = 60.0 / per_minute
        self.tolerance = self.interval * (per_minute - 1)
        self.clock = clock
        self.tat = 0.0  # theoretical arrival time of the next cell

    def check(self) -> bool:
        now = self.clock()
        tat = max(self.tat, now)
        if tat - now > self.tolerance:
            return False
        self.tat = tat + self.interval
        return True


class ShieldValidator:
    """security::SecurityValidator::validate_message, one for the whole server [S3]."""

    def __init__(self, per_minute: int = RATE_PER_MINUTE, window_s: float = DUPLICATE_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.limiter = Gcra(per_minute, clock)
        self.window_s = window_s
        self.clock = clock
        self.seen: dict[bytes, float] = {}  # SHA-256 -> when

    def validate(self, frame: bytes) -> str:
        if len(frame) > MAX_MESSAGE_BYTES:
            return TOO_BIG  # [S4]
        if not self.limiter.check():
            return RATE  # [S5]
        digest = hashlib.sha256(frame).digest()  # [S6]
        now = self.clock()
        if len(self.seen) > 0:
            self.seen = {h: t for h, t in self.seen.items() if now - t < self.window_s}
        if digest in self.seen:
            return DUPLICATE
        self.seen[digest] = now
        try:
            text = frame.decode("utf-8")
        except UnicodeDecodeError:
            return OK  # upstream skips pattern detection for what is not UTF-8
        lowered = text.lower()  # [S7]
        if any(p in lowered for p in PATTERNS) or not BIDI.isdisjoint(text):
            return PATTERN
        return OK


def serde_error(text: str) -> str | None:
    """None for a known command, else our approximation of serde_json's message
    for `WsCommand` (an internally tagged enum) [S9]."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"expected value at line {exc.lineno} column {exc.colno}"
    except (ValueError, RecursionError):
        return "recursion limit exceeded at line 1 column 1"
    end = f"at line 1 column {len(text)}"
    if not isinstance(obj, dict):
        kind = {list: "sequence", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "integer")
        return f"invalid type: {kind}, expected internally tagged enum WsCommand {end}"
    if "type" not in obj:
        return f"missing field `type` {end}"
    kind = obj["type"]
    if not isinstance(kind, str):
        return f"invalid type: {type(kind).__name__}, expected variant identifier {end}"
    if kind not in COMMANDS:
        expected = ", ".join(f"`{c}`" for c in COMMANDS)
        return f"unknown variant `{kind[:64]}`, expected one of {expected} {end}"
    return None


def rfc3339_nanos(unix_ns: int) -> str:
    """chrono's DateTime<Utc> as serde writes it: Z, and 0, 3, 6 or 9 fraction digits [S11]."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{base}.{nanos // 1000:06d}Z"
    return f"{base}.{nanos:09d}Z"


def threat_object(threat: Threat, unix_ns: int) -> dict:
    """One threat as the Shield's `Threat` struct serialises (field order kept by dict) [S11]."""
    return {
        "id": f"threat_{unix_ns // 1_000_000}",
        "threat_type": threat_type_name(threat.threat_type),
        "severity": severity_name(threat.severity),
        "source": threat.source,
        "details": threat.details,
        "timestamp": rfc3339_nanos(unix_ns),
        "blocked": bool(threat.blocked),
    }


def compact(obj) -> str:
    """serde_json::to_string: no spaces, UTF-8 kept as it is."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Client:
    __slots__ = ("ws", "subscribed", "outbox", "wake", "sender")

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.subscribed = False
        self.outbox: deque[tuple[str, int]] = deque()  # (threat message, how many threats)
        self.wake = asyncio.Event()
        self.sender: asyncio.Task | None = None


class LikeShieldServer(ThreadedServer):
    """The Shield's WebSocket as it really behaves, on 127.0.0.1:port, from a
    background thread (serving.py). The same interface as DemoWsServer (start,
    broadcast, stop, protection_enabled, subscribers, url, dropped_events), so
    `kgmon demo` can serve either."""

    thread_name = "kgmon-like-shield"
    default_drain_s = 1.0

    def __init__(self, port: int = DEFAULT_WS_PORT, *, protection_enabled: bool = True,
                 per_minute: int = RATE_PER_MINUTE, log: Callable[[str], None] | None = None):
        super().__init__(port, protection_enabled, log)
        self.validator = ShieldValidator(per_minute)
        self._lock = threading.Lock()  # guards the counters the test/main thread reads
        self.connections = 0  # handshakes completed
        self.drops: Counter[str] = Counter()  # connections dropped, by validator verdict
        self.commands: Counter[str] = Counter()  # commands accepted, by name
        self.errors_sent: Counter[str] = Counter()  # "rate_limited", "command_error"
        self.dropped_events = 0

    # ---- the main thread's API (url, protection_enabled, clients, start, stop: serving.py) ----

    @property
    def subscribers(self) -> int:
        return sum(1 for c in list(self._clients) if c.subscribed)

    def summary(self) -> str:
        with self._lock:
            drops = ", ".join(f"{k} {v}" for k, v in sorted(self.drops.items())) or "none"
            n = self.connections
            return (f"{n} connection{'s' if n != 1 else ''}, dropped: {drops}, "
                    f"rate-limited frames: {self.errors_sent['rate_limited']}")

    def broadcast(self, events: Iterable[Published]) -> None:
        threats = [e.threat for e in events]
        self.threats_blocked += sum(1 for t in threats if t.blocked)
        loop = self._loop
        if not threats or loop is None:
            return
        unix_ns = time.time_ns()
        chunks = [threats[i:i + MAX_THREATS_PER_MESSAGE] for i in range(0, len(threats), MAX_THREATS_PER_MESSAGE)]
        messages = [(compact({"type": "threat", "threats": [threat_object(t, unix_ns) for t in chunk]}), len(chunk))
                    for chunk in chunks]
        try:
            loop.call_soon_threadsafe(self._deliver, messages)
        except RuntimeError:
            pass

    # ---- the server thread (stop() lets subscribers take what is queued for at most drain_s, then
    # drops every connection: no close frame, the Shield sends none) ----

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop_event = asyncio.Event()
        try:
            server = await serve(self._handle, HOST, self.port, compression=None,
                                 ping_interval=None,  # [S2] no pings, no heartbeats
                                 max_size=LIBRARY_MAX_BYTES, open_timeout=HANDSHAKE_TIMEOUT_S)
        except OSError as exc:
            self._failed(exc)
            return
        self.port = server.sockets[0].getsockname()[1]
        self._started(loop)
        try:
            await self._stop_event.wait()
            deadline = time.monotonic() + self._drain_s
            while time.monotonic() < deadline and any(c.outbox for c in self._clients if c.subscribed):
                await asyncio.sleep(0.02)
        finally:
            for c in list(self._clients):
                c.ws.transport.abort()  # [S2] no close frame
            server.close(close_connections=False)
            try:
                await asyncio.wait_for(server.wait_closed(), 5)
            except asyncio.TimeoutError:  # pragma: no cover
                pass

    def _deliver(self, messages: list[tuple[str, int]]) -> None:
        for c in self._clients:
            if not c.subscribed:
                continue
            c.outbox.extend(messages)
            while len(c.outbox) > MAX_CLIENT_MESSAGES:
                self.dropped_events += c.outbox.popleft()[1]  # the client fell behind
            c.wake.set()

    async def _sender(self, c: _Client) -> None:
        try:
            while True:
                await c.wake.wait()
                c.wake.clear()
                while c.outbox:
                    await c.ws.send(c.outbox.popleft()[0])
        except ConnectionClosed:
            pass

    def _drop(self, c: _Client, verdict: str) -> None:
        with self._lock:
            self.drops[verdict] += 1
        c.ws.transport.abort()  # [S2] TCP closed, no close frame

    async def _handle(self, ws: ServerConnection) -> None:
        c = _Client(ws)
        with self._lock:
            self.connections += 1
        self._clients.add(c)
        c.sender = asyncio.create_task(self._sender(c))
        try:
            await ws.send(compact({"type": "status", "protection_enabled": self._protection,
                                   "threats_blocked": self.threats_blocked}))  # [S1]
            # [S10] binary frames are ignored
            await self._answer(ws, lambda frame: None if isinstance(frame, bytes) else self._frame(c, frame))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(c)
            await self._end_sender(c.sender)

    def _frame(self, c: _Client, text: str) -> str | None:
        """One text frame: the reply, if any (dropping the connection when the validator says so)."""
        verdict = self.validator.validate(text.encode("utf-8", "surrogatepass"))
        if verdict == RATE:
            with self._lock:
                self.errors_sent["rate_limited"] += 1
            return RATE_LIMITED  # [S5]
        if verdict != OK:
            self._drop(c, verdict)  # [S4] [S6] [S7]
            return None
        error = serde_error(text)
        if error is not None:
            with self._lock:
                self.errors_sent["command_error"] += 1
            return compact({"type": "error", "message": f"Command error: {error}"})  # [S9]
        kind = json.loads(text)["type"]
        with self._lock:
            self.commands[kind] += 1
        if kind == "subscribe":
            c.subscribed = True
        elif kind == "unsubscribe":
            c.subscribed = False
            c.outbox.clear()
        elif kind == "toggle_protection":
            self._protection = not self._protection  # [S8] silently
        return None  # [S8] no reply to any command
