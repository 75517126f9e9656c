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
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlparse

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect

from app.transport import local_auth, protocol

DEFAULT_URL = "ws://127.0.0.1:9955"
ENV_WS_URL = "KINDLYGUARD_WS_URL"
ENV_WS_PORT = "SHIELD_WS_PORT"
RECEIVE_LIMIT = 16 << 20  # frames up to this are read (and those over 1 MiB counted bad); larger close the link
BACKOFF_START_S = 0.25
BACKOFF_MAX_S = 5.0
OPEN_TIMEOUT_S = 3.0


class Connected(NamedTuple):
    url: str


class Disconnected(NamedTuple):
    reason: str




def shield_ws_port(env: Mapping[str, str] | None = None) -> int | None:
    """$SHIELD_WS_PORT as a port number; None when unset or not a port (1..65535)."""
    text = (os.environ if env is None else env).get(ENV_WS_PORT, "").strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def default_ws_url(override: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """--ws-url, else $KINDLYGUARD_WS_URL, else ws://127.0.0.1:$SHIELD_WS_PORT (9955)."""
    env = os.environ if env is None else env
    if override:
        return override
    if env.get(ENV_WS_URL):
        return env[ENV_WS_URL]
    port = shield_ws_port(env)
    return f"ws://127.0.0.1:{port}" if port is not None else DEFAULT_URL


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


class WsLink:
    def __init__(self, url: str, subscribed: bool = True, events: queue.SimpleQueue | None = None):
        self.url = url
        parsed = urlparse(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise ValueError(f"{url!r} is not a ws:// URL")
        self.events: queue.SimpleQueue = events if events is not None else queue.SimpleQueue()
        self.bad_frames: Counter[str] = Counter()
        self.frames = 0
        self.connected = False
        self.last_status: protocol.Status | None = None
        self.last_error = ""
        self._subscribed = subscribed
        self._conn: ClientConnection | None = None
        self._lock = threading.Lock()  # guards _conn and _subscribed against the caller threads
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
        self._thread.join(timeout)

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    def set_subscribed(self, on: bool) -> None:
        """Ask for threats (or stop them) on this and every later connection."""
        with self._lock:
            changed = on != self._subscribed
            self._subscribed = on
            conn = self._conn
        if changed and conn is not None:
            self._send(conn, "subscribe" if on else "unsubscribe")

    def send_command(self, name: str) -> bool:
        """Send get_status / toggle_protection now; False if not connected."""
        with self._lock:
            conn = self._conn
        return conn is not None and self._send(conn, name)

    def wait_connected(self, timeout: float) -> bool:
        """Has the link connected (at least once) within `timeout`?"""
        return self._ever_connected.wait(timeout)

    # -- the link's own thread

    def _send(self, conn: ClientConnection, name: str) -> bool:
        try:
            conn.send(protocol.command(name))
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stop.is_set():
            try:
                with connect(self.url, open_timeout=OPEN_TIMEOUT_S, proxy=None, compression=None,
                             max_size=RECEIVE_LIMIT, ping_interval=20, ping_timeout=20, close_timeout=2,
                             user_agent_header="kgmon",
                             # our server's token; raises (OSError) if another user holds the port
                             additional_headers=local_auth.client_headers(self.url)) as conn:
                    backoff = BACKOFF_START_S
                    reason = self._session(conn)
            except (OSError, WebSocketException) as exc:  # refused, timed out, not a WebSocket server...
                self.last_error = describe_error(exc)
                self._wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            self.last_error = reason
            if not self._stop.is_set():
                self.events.put(Disconnected(reason))
                self._wait(backoff)

    def _session(self, conn: ClientConnection) -> str:
        """One connection, from the handshake to its end; returns why it ended."""
        with self._lock:
            self._conn = conn
            subscribe = self._subscribed
        self.connected = True
        self._ever_connected.set()
        self.events.put(Connected(self.url))
        try:
            if subscribe:
                self._send(conn, "subscribe")
            return self._receive(conn)
        finally:
            with self._lock:
                self._conn = None
            self.connected = False

    def _receive(self, conn: ClientConnection) -> str:
        while not self._stop.is_set():
            try:
                frame = conn.recv(timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                if any(frame is not None and frame.code == 1009 for frame in (exc.sent, exc.rcvd)):
                    self.bad_frames["too_big"] += 1  # over RECEIVE_LIMIT: the library had to close
                    self.events.put(protocol.BadFrame("too_big", f"over {RECEIVE_LIMIT >> 20} MiB; reconnecting"))
                return describe_error(exc)
            except (OSError, WebSocketException) as exc:  # a protocol error: report, reconnect
                return describe_error(exc)
            self.frames += 1
            message = protocol.parse_frame(frame, time.monotonic_ns())
            if isinstance(message, protocol.BadFrame):
                self.bad_frames[message.kind] += 1
            elif isinstance(message, protocol.Status):
                self.last_status = message
            self.events.put(message)
        return "stopped"

    def _wait(self, seconds: float) -> None:
        """Back-off with ±50% jitter, so many clients do not reconnect in step."""
        self._stop.wait(seconds * random.uniform(0.5, 1.5))
