"""The Shield's WebSocket, as a link that keeps itself connected.

`WsLink` owns one background thread that connects (the `websockets` library's
threading client), reconnects with capped, jittered back-off, and turns every
frame into a message on a queue. Whoever reads the queue (the transport
manager) never blocks on the network: a slow handshake, a slow drip or a dead
server only ever delays this thread.

- `subscribed` decides whether threats flow: the manager subscribes when the
  WebSocket is the transport, and unsubscribes while shared memory is, keeping
  the connection for commands and status.
- A bad frame (not JSON, unknown type, wrong field types, over 1 MiB) is
  counted by kind and reported; the connection stays up.
- `send_command()` may be called from any thread.

The real Shield's rules (docs/websocket.md, "The Shield as it is"):
- it drops, without a word, a connection whose frame is byte-identical to any
  frame seen in the last 5 minutes: every command carries a nonce
  (protocol.command);
- it rate-limits frames with one limiter for the whole server (burst 60, then
  one a second): our own bucket (pacing.TokenBucket) keeps us well inside it;
  a subscription the server refused is sent again once the bucket allows;
- it answers no command: the status it sends on connect is the one we use,
  and after toggle_protection a short second connection reads the new state
  (`_probe_status`), since nothing else would ever confirm it;
- a connection it drops soon after it opened is a failure for the back-off
  (pacing.Backoff: the delay grows until a connection stays up 30 s), and
  `Disconnected` says so, with how many times in a row.
Everything the thread hands over goes through a bounded queue (link_queue): a
reader too slow for the server loses threats, counted, never memory.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import NamedTuple
from urllib.parse import urlparse

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, WebSocketException
from websockets.frames import CloseCode, Opcode
from websockets.sync.client import ClientConnection, connect

from kindlyguard_monitor.transport import local_auth, protocol
from kindlyguard_monitor.transport.link_queue import LinkQueue
from kindlyguard_monitor.transport.pacing import Backoff, TokenBucket
from kindlyguard_monitor.transport.urls import default_ws_url  # noqa: F401 (its home: imported from here too)

RECEIVE_LIMIT = 16 << 20  # frames up to this are read (and those over 1 MiB counted bad); larger close the link
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 5.0
HEALTHY_S = 30.0  # a connection that stayed up this long resets the back-off
OPEN_TIMEOUT_S = 3.0
COMMAND_BURST = 10  # our share of the Shield's server-wide burst of 60 ...
COMMAND_PER_S = 0.5  # ... and of its one a second
MAX_PINGS_PER_S = 50  # a server pinging faster is flooding us: the connection is failed ...
FLOODED_RETRY_S = 30.0  # ... and not tried again for this long
CONFIRM_AFTER_S = 1.0  # after toggle_protection, wait this long for a status before reading one ourselves
RATE_LIMITED = "Rate limit exceeded"
SHIELD_DROPS = ("the Shield drops a client whose frame it rejects: a repeated frame, "
                "a suspicious pattern, over 1 MiB")


class Connected(NamedTuple):
    url: str


class Disconnected(NamedTuple):
    reason: str
    dropped: bool = False  # the server ended a connection that had not yet stayed up HEALTHY_S
    failures: int = 0  # connections in a row that failed or were dropped soon
    retry_s: float = 0.0  # the wait before the next attempt


def describe_error(exc: BaseException) -> str:
    """A connection failure in words."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, InvalidURI):
        return f"not a WebSocket URL ({exc})"
    if isinstance(exc, InvalidHandshake):
        return f"not a WebSocket server ({exc})"
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is not None:
            return f"closed by the server (code {exc.rcvd.code}{': ' + exc.rcvd.reason if exc.rcvd.reason else ''})"
        return "the connection dropped"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class GuardedConnection(ClientConnection):
    """The library's connection, failing a server that floods us with pings
    (1.3 M pings in 20 s cost 72% of a core, issue 11): after MAX_PINGS_PER_S
    in one second the connection is closed (1008) and the rest discarded."""

    flooded = False
    # The library parses a whole read before we see its first ping: smaller reads
    # bound what a flood costs before it is noticed (~5,000 pings, not ~20,000).
    recv_bufsize = 16384

    def process_event(self, event) -> None:
        if getattr(event, "opcode", None) is Opcode.PING and not self.flooded:
            now = time.monotonic()
            if now - getattr(self, "_ping_window", 0.0) >= 1.0:
                self._ping_window, self._pings = now, 0
            self._pings += 1
            if self._pings > MAX_PINGS_PER_S:
                self.flooded = True
                with self.protocol_mutex:  # stop parsing: what follows is discarded unread
                    self.protocol.fail(CloseCode.POLICY_VIOLATION, "too many pings")
                    try:
                        self.send_data()
                    except OSError:
                        pass
                self.close_socket()
                return
        super().process_event(event)


class WsLink:
    def __init__(self, url: str, subscribed: bool = True, events: LinkQueue | None = None):
        self.url = url
        parsed = urlparse(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise ValueError(f"{url!r} is not a ws:// URL")
        self.events: LinkQueue = events if events is not None else LinkQueue()
        self.bad_frames: Counter[str] = Counter()
        self.frames = 0
        self.connected = False
        self.last_status: protocol.Status | None = None
        self.last_error = ""
        self.last_refused = ""  # the last command our own bucket held back
        self.connections = 0  # opened
        self.dropped_soon = 0  # ended by the server before staying up HEALTHY_S
        self.backoff = Backoff(BACKOFF_START_S, BACKOFF_MAX_S, HEALTHY_S)
        self.commands = TokenBucket(COMMAND_BURST, COMMAND_PER_S)
        self._subscribed = subscribed  # what we want
        self._sent_subscribed: bool | None = False  # what this connection was last told (None: unknown)
        self._last_command = ("", 0.0)  # name, when: to tell what a rate-limit error refused
        self._confirm_due: float | None = None  # when to read the status ourselves after a toggle
        self._flooded = False  # the last connection ended because the server flooded us with pings
        self._conn: ClientConnection | None = None
        self._lock = threading.Lock()  # guards _conn, the subscription and the bucket against caller threads
        self._stop = threading.Event()
        self._ever_connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kg-websocket", daemon=True)

    # -- control, from any thread

    def start(self) -> WsLink:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.close()
        if self._thread.ident is not None:  # stopped before start(): no thread to wait for
            self._thread.join(timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    def set_subscribed(self, on: bool) -> None:
        """Ask for threats (or stop them) on this and every later connection."""
        with self._lock:
            self._subscribed = on
            conn = self._conn
        if conn is not None:
            self._sync_subscription(conn)

    def send_command(self, name: str) -> bool:
        """Send get_status / toggle_protection now; False if not connected or
        over our share of the Shield's rate limit."""
        with self._lock:
            conn = self._conn
        if conn is None or not self._send(conn, name):
            return False
        if name == "toggle_protection":
            self._confirm_due = time.monotonic() + CONFIRM_AFTER_S
        return True

    def wait_connected(self, timeout: float) -> bool:
        """Has the link connected (at least once) within `timeout`?"""
        return self._ever_connected.wait(timeout)

    # -- commands (any thread)

    def _command_frame(self, name: str) -> str:
        """The bytes of one command (one place, for whatever a server may ask us to add)."""
        return protocol.command(name)

    def _send(self, conn: ClientConnection, name: str) -> bool:
        with self._lock:
            if not self._take_token(name):
                return False
        return self._transmit(conn, name)

    def _take_token(self, name: str) -> bool:
        """Our share of the Shield's rate limit allows `name` now (called with the lock held)."""
        if not self.commands.take():
            self.last_refused = f"{name} not sent: over our share of the Shield's rate limit"
            return False
        self._last_command = (name, time.monotonic())
        return True

    def _transmit(self, conn: ClientConnection, name: str) -> bool:
        try:
            conn.send(self._command_frame(name))
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False

    def _sync_subscription(self, conn: ClientConnection) -> None:
        """Tell the server what we want, when it differs from what it was told and the bucket allows.
        The link's thread and a caller's both sync: the change is claimed under the lock before it
        is sent, so it goes once (a second subscribe would spend the server's shared rate limit)."""
        with self._lock:
            want = self._subscribed
            before = self._sent_subscribed
            name = "subscribe" if want else "unsubscribe"
            if before == want or not self._take_token(name):
                return
            self._sent_subscribed = want
        if not self._transmit(conn, name):
            with self._lock:
                if self._sent_subscribed == want:
                    self._sent_subscribed = before

    def _sync_wait(self) -> float:
        """How long the receive loop may block: until the bucket allows a pending subscription change."""
        with self._lock:
            if self._sent_subscribed == self._subscribed:
                return 0.5
            return min(0.5, max(0.01, self.commands.wait_s()))

    # -- the link's own thread

    def _run(self) -> None:
        while not self._stop.is_set():
            opened = False
            try:
                with connect(self.url, open_timeout=OPEN_TIMEOUT_S, proxy=None, compression=None,
                             max_size=RECEIVE_LIMIT, ping_interval=20, ping_timeout=20, close_timeout=2,
                             user_agent_header="kgmon", create_connection=GuardedConnection,
                             # our server's token; raises (OSError) if another user holds the port
                             additional_headers=local_auth.client_headers(self.url)) as conn:
                    opened = True
                    self.connections += 1
                    self.backoff.opened()
                    reason = self._session(conn)
            except (OSError, WebSocketException) as exc:  # refused, timed out, not a WebSocket server...
                reason = describe_error(exc)
            if self._stop.is_set():
                break
            healthy = self.backoff.healthy()
            wait = self.backoff.closed()
            if self._flooded:
                self._flooded = False
                wait = max(wait, FLOODED_RETRY_S)
            failures = self.backoff.failures
            if opened and not healthy:
                self.dropped_soon += 1
                reason += (f"; ended before it had stayed up {HEALTHY_S:g} s, {failures} time"
                           f"{'s' if failures != 1 else ''} in a row ({SHIELD_DROPS})")
            elif failures > 1:
                reason += f"; {failures} failures in a row"
            self.last_error = f"{reason}; next try in {wait:.1f} s"
            if opened:
                self.events.put(Disconnected(self.last_error, opened and not healthy, failures, wait))
            self._stop.wait(wait)

    def _session(self, conn: ClientConnection) -> str:
        """One connection, from the handshake to its end; returns why it ended."""
        with self._lock:
            self._conn = conn
            self._sent_subscribed = False  # a new connection starts unsubscribed
        self.connected = True
        self._ever_connected.set()
        self.events.put(Connected(self.url))
        try:
            self._sync_subscription(conn)
            return self._receive(conn)
        finally:
            with self._lock:
                self._conn = None
            self.connected = False

    def _receive(self, conn: ClientConnection) -> str:
        opened = time.monotonic()
        while not self._stop.is_set():
            try:
                frame = conn.recv(timeout=self._sync_wait())
            except TimeoutError:
                self._sync_subscription(conn)
                self._maybe_confirm()
                continue
            except ConnectionClosed as exc:
                if any(frame is not None and frame.code == 1009 for frame in (exc.sent, exc.rcvd)):
                    self.bad_frames["too_big"] += 1  # over RECEIVE_LIMIT: the library had to close
                    self.events.put(protocol.BadFrame("too_big", f"over {RECEIVE_LIMIT >> 20} MiB; reconnecting"))
                if getattr(conn, "flooded", False):
                    self._flooded = True
                    return f"the server sent over {MAX_PINGS_PER_S} pings in a second; closed"
                after = f" {time.monotonic() - opened:.1f} s after it opened"
                if exc.rcvd is None and exc.sent is None:
                    return f"the server dropped the connection{after}, without a close frame"
                return describe_error(exc) + after
            except (OSError, WebSocketException) as exc:  # a protocol error: report, reconnect
                return describe_error(exc)
            self._frame(frame)
            self._sync_subscription(conn)
            self._maybe_confirm()
        return "stopped"

    def _frame(self, frame) -> None:
        self.frames += 1
        message = protocol.parse_frame(frame, time.monotonic_ns())
        if isinstance(message, protocol.Threats):
            self.events.put_threats(message, message.threats, len(frame))
            return
        if isinstance(message, protocol.BadFrame):
            self.bad_frames[message.kind] += 1
            self.events.put(message, droppable=True)  # counted in bad_frames even if the report is dropped
            return
        if isinstance(message, protocol.Status):
            self.last_status = message
            self._confirm_due = None
        elif isinstance(message, protocol.ServerError) and message.message == RATE_LIMITED:
            self._refused()
        elif isinstance(message, protocol.Heartbeat):
            return
        self.events.put(message, droppable=not isinstance(message, protocol.Status))

    def _refused(self) -> None:
        """The server refused our last frame (its limit is shared with other clients):
        wait for a full token, and re-send a subscription change it may have refused."""
        with self._lock:
            self.commands.empty()
            name, when = self._last_command
            if name in ("subscribe", "unsubscribe") and time.monotonic() - when < 5.0:
                self._sent_subscribed = None

    def _maybe_confirm(self) -> None:
        due = self._confirm_due
        if due is not None and time.monotonic() >= due:
            self._confirm_due = None
            threading.Thread(target=self._probe_status, name="kg-websocket-status", daemon=True).start()

    def _probe_status(self) -> None:
        """Read the status a second connection gets on connect: the Shield answers
        no command, so this is how a toggle is confirmed. Sends nothing."""
        try:
            with connect(self.url, open_timeout=OPEN_TIMEOUT_S, proxy=None, compression=None,
                         max_size=protocol.MAX_FRAME_BYTES, close_timeout=1, user_agent_header="kgmon",
                         additional_headers=local_auth.client_headers(self.url)) as conn:
                message = protocol.parse_frame(conn.recv(timeout=OPEN_TIMEOUT_S))
        except (OSError, WebSocketException):
            return
        if isinstance(message, protocol.Status) and not self._stop.is_set():
            self.last_status = message
            self.events.put(message)
