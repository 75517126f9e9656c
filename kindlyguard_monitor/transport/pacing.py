"""How often the WebSocket client may act: commands and reconnects.

`TokenBucket`: the Shield rate-limits every client frame with ONE limiter for
the whole server (a burst of 60, then one a second, shared with every other
client, the Shield's own window included). A frame over it is answered with an
error and otherwise lost. Our client keeps a bucket of its own well inside
that, so it never spends the server's whole burst by itself.

`Backoff`: how long to wait before the next connection attempt. A connection
that failed, or that the server dropped soon after it opened (the Shield drops
without a word a client whose frame it rejects), is a failure: the delay
doubles, with jitter, up to a cap. Only a connection that stayed up for
`healthy_s` resets it, so a server that keeps dropping us sees one attempt
every few seconds, never a storm.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, burst: int, per_s: float, clock: Callable[[], float] = time.monotonic):
        self.burst = float(burst)
        self.per_s = per_s
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now

    def take(self) -> bool:
        """Spend one token if there is one."""
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until a token is there (0 when one is)."""
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.per_s

    def empty(self) -> None:
        """The server said we were over its limit: wait for a full token before trying again."""
        self._refill()
        self.tokens = min(self.tokens, 0.0)


class Backoff:
    def __init__(self, start_s: float, max_s: float, healthy_s: float,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] | None = None):
        self.start_s = start_s
        self.max_s = max_s
        self.healthy_s = healthy_s
        self.clock = clock
        self.jitter = jitter or (lambda: random.uniform(0.5, 1.5))
        self.delay_s = start_s
        self.failures = 0  # in a row
        self._opened: float | None = None

    def opened(self) -> None:
        """A connection is up (the delay is kept until it has stayed up healthy_s)."""
        self._opened = self.clock()

    def healthy(self) -> bool:
        return self._opened is not None and self.clock() - self._opened >= self.healthy_s

    def closed(self) -> float:
        """The connection ended (or never opened): the wait before the next attempt."""
        if self.healthy():
            self.delay_s, self.failures = self.start_s, 0
        else:
            self.failures += 1
        self._opened = None
        wait = self.delay_s * self.jitter()
        if self.failures:
            self.delay_s = min(self.max_s, self.delay_s * 2)
        return wait
