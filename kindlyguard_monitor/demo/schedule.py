"""When the demo writer publishes: how many threats are due at a given monotonic time.

RateSchedule: a calm Poisson trickle with bursts now and then by default, or a
steady rate. Deterministic for a seed and the sequence of `now`s.
"""

from __future__ import annotations

import math
import random
from collections import deque

DEMO_RATE = 3.0  # calm events per second, on average (Poisson arrivals)
DEMO_FIRST_BURST_S = (5.0, 15.0)  # the first burst comes early, so a new user sees one
DEMO_BURST_EVERY_S = (20.0, 40.0)  # then one every 20-40 s
DEMO_BURST_SIZE = (10, 60)
DEMO_BURST_SPREAD_S = 0.45  # a burst's events all fall within this long
CATCH_UP_S = 0.25  # a late caller gets at most this much backlog; older is dropped
MAX_CATCH_UP = 10_000  # and never more than this many events from one call
MAX_WAKEUP_S = 0.25  # next_wakeup() never asks to sleep longer (heartbeat)


class RateSchedule:
    """How many events are due, for a writer that calls due() in a loop.

    rate=None: the demo mode, about DEMO_RATE events/s with Poisson jitter plus a
    burst of 10-60 events within half a second every 20-40 s. rate=R: a steady R
    events/s; at huge rates due() returns counts, so nobody sleeps per event.
    Time is whatever monotonic seconds the caller passes; the first call starts it.
    """

    def __init__(self, rate: float | None = None, seed: int | None = None):
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of events per second, not {rate!r}")
        self.rate = rate
        self._rng = random.Random(seed)
        self._start: float | None = None
        # steady mode: events counted (published or dropped) since start
        self._counted = 0
        # demo mode: the next calm event, and the pending events of the next burst
        self._calm_next = 0.0
        self._burst_start = 0.0
        self._burst: deque[float] = deque()

    def due(self, now_mono_s: float) -> int:
        """How many events to publish now, since the last call. Never negative."""
        self._begin(now_mono_s)
        count = self._due_steady(now_mono_s) if self.rate else self._due_demo(now_mono_s)
        return min(count, MAX_CATCH_UP)

    def next_wakeup(self, now_mono_s: float) -> float:
        """Seconds until the next event is due: 0 if due now, at most MAX_WAKEUP_S."""
        self._begin(now_mono_s)
        return min(max(self._next_event_time() - now_mono_s, 0.0), MAX_WAKEUP_S)

    # -- both modes

    def _begin(self, now: float) -> None:
        if self._start is not None:
            return
        self._start = now
        if not self.rate:
            self._calm_next = now + self._rng.expovariate(DEMO_RATE)
            self._plan_burst(now + self._rng.uniform(*DEMO_FIRST_BURST_S))

    def _next_event_time(self) -> float:
        if self.rate:
            return self._start + (self._counted + 1) / self.rate
        return min(self._calm_next, self._burst[0])

    # -- steady mode

    def _due_steady(self, now: float) -> int:
        total = math.floor((now - self._start) * self.rate + 1e-9)
        backlog = total - self._counted
        if backlog <= 0:  # not yet, or the clock went back
            return 0
        self._counted = total  # a backlog past the cap is dropped, not owed
        return min(backlog, max(1, math.ceil(self.rate * CATCH_UP_S)))

    # -- demo mode

    def _due_demo(self, now: float) -> int:
        self._drop_stale(now - CATCH_UP_S)
        count = 0
        while self._next_event_time() <= now:
            self._pop_demo_event()
            count += 1
        return count

    def _pop_demo_event(self) -> None:
        if self._burst[0] <= self._calm_next:
            self._burst.popleft()
            if not self._burst:
                self._plan_burst(self._burst_start + self._rng.uniform(*DEMO_BURST_EVERY_S))
        else:
            self._calm_next += self._rng.expovariate(DEMO_RATE)

    def _drop_stale(self, cutoff: float) -> None:
        """After a stall, forget events older than cutoff instead of replaying them."""
        if self._calm_next < cutoff:  # Poisson arrivals are memoryless: restart them
            self._calm_next = cutoff + self._rng.expovariate(DEMO_RATE)
        while self._burst and self._burst[0] < cutoff:
            self._burst.popleft()
        if not self._burst:
            self._plan_burst(max(self._burst_start, cutoff) + self._rng.uniform(*DEMO_BURST_EVERY_S))

    def _plan_burst(self, start: float) -> None:
        size = self._rng.randint(*DEMO_BURST_SIZE)
        self._burst_start = start
        self._burst = deque(sorted(start + self._rng.uniform(0.0, DEMO_BURST_SPREAD_S) for _ in range(size)))
