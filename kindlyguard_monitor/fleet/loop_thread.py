"""An asyncio loop on a thread of its own, stopped from any other thread.

The app runs two asyncio parts beside Qt: the forwarder (gui/app_fleet.py) and the fleet
viewer (fleet/source.py). Both need the same thing: `main(stop)` run by `asyncio.run` on a
daemon thread, and a `stop()` callable from the GUI or reader thread that sets `stop`
through `loop.call_soon_threadsafe` (an asyncio.Event is not thread-safe).

stop() may come before the loop exists (the thread is still starting) or after it ended;
either way it is not lost and never raises: a lock orders it with the loop's start, so the
event is set when the loop starts, or through call_soon_threadsafe once it runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class LoopThread:
    """`main(stop)` on a thread named `name`; start(), stop() (any thread), join(), alive.

    An exception out of `main` is logged and given to `on_error(exc)` when set; it never
    reaches the thread that started it."""

    def __init__(self, name: str, main: Callable[[asyncio.Event], Awaitable[object]],
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.name, self._main, self._on_error = name, main, on_error
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._stopping = False
        self._started = threading.Event()  # the loop runs (or the thread ended before it could)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self, wait_s: float | None = None) -> LoopThread:
        """Start the thread; with `wait_s`, wait up to that long for its loop to run."""
        self._thread.start()
        if wait_s is not None:
            self._started.wait(wait_s)
        return self

    def stop(self) -> None:
        """Thread-safe and idempotent: `stop` is set in the loop (now, or as soon as it starts)."""
        with self._lock:
            self._stopping = True
            loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has ended (closed): nothing left to stop
                pass

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True when it has."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            asyncio.run(self._body())
        except Exception as exc:
            log.exception("%s stopped", self.name)
            if self._on_error is not None:
                self._on_error(exc)
        finally:
            with self._lock:
                self._loop = self._event = None
            self._started.set()

    async def _body(self) -> None:
        event = asyncio.Event()
        with self._lock:
            self._loop, self._event = asyncio.get_running_loop(), event
            if self._stopping:  # stop() came before the loop was there
                event.set()
        self._started.set()
        await self._main(event)
