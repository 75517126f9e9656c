"""A log that says a repeated message once, then how often it came.

Under load a server meets the same error thousands of times a second (an
accept() out of file descriptors, a refused handshake): one line each, with a
traceback, was 34 MB of stderr. `RepeatLog(log)` passes the first message of a
kind to `log`, counts the next ones, and says the count at most every
`interval_s` ("... (1,234 more in the last 10 s)") and at `flush()`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from kindlyguard_monitor.textsafe import elide, visible

_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+")
MAX_LINE = 300  # characters of one message; the rest of a long error is cut


class _Kind:
    __slots__ = ("message", "count", "since")

    def __init__(self, message: str, now: float):
        self.message, self.count, self.since = message, 0, now


class RepeatLog:
    def __init__(self, log: Callable[[str], None], interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self._log = log
        self._interval = interval_s
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self.total = 0  # every message, said or counted

    def __call__(self, key: str, message: str) -> None:
        """Say `message` if `key` is new, else count it (and say the count if one is due)."""
        self.total += 1
        key = _NUMBERS.sub("#", key)  # one kind, whatever object address or port it names
        message = elide(visible(message), MAX_LINE)  # may quote a client's bytes: made visible
        now = self._clock()
        kind = self._kinds.get(key)
        if kind is None:
            if len(self._kinds) >= 1000:  # keys come from our own code; bound them anyway
                self._report_all(now)
                self._kinds.clear()
            self._kinds[key] = _Kind(message, now)
            self._log(message)
            return
        kind.message = message
        kind.count += 1
        if now - kind.since >= self._interval:
            self._report(kind, now)

    def tick(self) -> None:
        """Say the counts that are due (call it now and then, so a burst that stopped is reported)."""
        now = self._clock()
        for kind in self._kinds.values():
            if kind.count and now - kind.since >= self._interval:
                self._report(kind, now)

    def flush(self) -> None:
        self._report_all(self._clock())

    def _report_all(self, now: float) -> None:
        for kind in self._kinds.values():
            if kind.count:
                self._report(kind, now)

    def _report(self, kind: _Kind, now: float) -> None:
        self._log(f"{kind.message} ({kind.count:,} more in the last {max(1.0, now - kind.since):.0f} s)")
        kind.count, kind.since = 0, now
