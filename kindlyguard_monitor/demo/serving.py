"""What both demo WebSocket servers share: serving 127.0.0.1 from a thread of their own.

`DemoWsServer` (ws_server.py, ours) and `LikeShieldServer` (like_shield.py, the
Shield as it really behaves) differ in what they say and whom they admit, not in
how they run: each serves from a background thread with its own asyncio event
loop, so the demo's main loop (plain, synchronous code that also feeds the ring)
only calls `broadcast()`; `start()` returns once the port is bound (or raises
WsServerError), `stop()` lets clients take what is pending and joins the thread.

Loopback only, by construction: there is no host parameter.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"  # loopback only; deliberately not configurable


class WsServerError(Exception):
    """The server could not start (for example: the port is taken)."""

    def __init__(self, message: str, port_in_use: bool = False):
        super().__init__(message)
        self.port_in_use = port_in_use


class ThreadedServer:
    """The thread, the event loop and the start/stop handshake with the main thread.
    A subclass writes `_main(loop)`: serve, then call `_started(loop)` (or `_failed(exc)`),
    await `self._stop_event`, let clients drain for `self._drain_s`, close."""

    thread_name = "kgmon-demo-ws"
    default_drain_s = 5.0  # stop()'s, unless told

    def __init__(self, port: int, protection_enabled: bool, log: Callable[[str], None] | None):
        self.port = port  # the bound port after start() (port 0 picks a free one)
        self._protection = bool(protection_enabled)
        self.threats_blocked = 0  # written by the broadcasting thread only
        self._log = log or (lambda message: None)
        self._clients: set = set()  # touched only in the server thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._drain_s = 0.0

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

    def start(self, timeout: float = 30.0) -> None:
        """Bind and serve in a background thread; raises WsServerError if that fails."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise WsServerError(f"the WebSocket server on {HOST}:{self.port} did not start in {timeout:g} s")
        exc = self._start_error
        if exc is not None:
            self._thread.join(timeout)
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise WsServerError(f"{HOST}:{self.port} is already in use (a Shield or another demo?)",
                                    port_in_use=True) from None
            why = self._start_problem(exc)
            if why is not None:
                raise WsServerError(why) from None
            raise WsServerError(f"cannot serve on {HOST}:{self.port}: {exc}") from None

    def stop(self, drain_s: float | None = None, timeout: float = 30.0) -> None:
        """Let clients take what is pending (at most drain_s, default_drain_s unless given),
        close every connection, stop the loop and join the thread."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._drain_s = self.default_drain_s if drain_s is None else drain_s
        if loop is not None and self._stop_event is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        self._stopped()

    # ---- for the subclass ----

    def _start_problem(self, exc: BaseException) -> str | None:
        """A start-up failure in the subclass's own words, or None for the generic one."""
        return None

    def _stopped(self) -> None:
        """After the server thread has ended (or stop() gave up waiting for it)."""

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError

    def _started(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serving: broadcast() may hand events to the loop, start() returns."""
        self._loop = loop
        self._ready.set()

    def _failed(self, exc: BaseException) -> None:
        """Could not serve: start() raises WsServerError for exc."""
        self._start_error = exc
        self._ready.set()

    @staticmethod
    async def _answer(ws: ServerConnection, reply_to: Callable[[bytes | str], str | None],
                      decode: bool | None = None) -> None:
        """Read the client's frames until it goes (ConnectionClosed), sending what reply_to returns."""
        while True:
            reply = reply_to(await ws.recv(decode=decode))
            if reply is not None:
                await ws.send(reply)

    @staticmethod
    async def _end_sender(sender: asyncio.Task) -> None:
        """A client's sender task, cancelled and waited for (its connection is over)."""
        sender.cancel()
        try:
            await sender
        except (asyncio.CancelledError, ConnectionClosed):
            pass

    # ---- the server thread ----

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(loop))
        except BaseException as exc:  # pragma: no cover - never expected
            if not self._ready.is_set():
                self._failed(exc)
        finally:
            self._loop = None
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
