"""When to notify, and what to say: the desktop notification policy.

Pure Python, no Qt: the GUI offers threat events as they arrive and asks
`due()` (from a QTimer armed with `next_due_in()`) what to show; a Qt notifier
displays the returned `Notification` as plain text.

Flood control: never more than one notification per `min_interval_s` (20 s
by default: three a minute at most, what a person tolerates beside their
work). The first notification of a quiet period shows at once; whatever
arrives while the interval runs is merged into ONE notification shown when it
ends, whose title says what needs the user: "12 new threats, 3 critical, all
blocked". A notification is `urgent` (critical urgency: it stays until
dismissed) only when it holds a Critical threat the Shield did not block.

Do not disturb: while the desktop says so (`set_inhibited(True)`, from the
notification server's Inhibited property) nothing is shown; what arrives is
merged as usual and shown as one notification when it ends.

The fleet view (`kgmon --fleet`): each threat carries the workstation it came from (`host`).
A single threat's title starts with it ("ws-a: High threat detected: Injection attempt"); a
summary's title says how many hosts ("12 new threats from 3 hosts, …") and its body names the
busiest hosts before the sources. This machine's own threats have no host: nothing changes.

Text: the source, details and host are attacker-controlled. They are made visible
(textsafe.visible) and defanged (textsafe.defang: `hxxp[:]//evil[.]example`,
`file[:]///etc/passwd`), so a server that linkifies bodies finds no link.

Everything pending is kept as counters (per severity, per source, capped at
`MAX_SOURCES` distinct sources) plus the single most severe, newest event, so
offering an event is O(1) and memory is bounded whatever the flood; a batch is counted
per distinct (severity, blocked, source) in C, so its Python work is per group, not per event.

Muting a source or changing the threshold affects events offered afterwards.
Pausing drops what is pending (counted in `suppressed`): the user asked for
quiet, and the events are still in the window's feed.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from itertools import repeat
from dataclasses import dataclass
from operator import attrgetter
from typing import Callable, Hashable, Iterable

from kindlyguard_monitor.textsafe import defang, elide, visible
from kindlyguard_monitor.threats import CRITICAL, HIGH, severity_level, severity_name, threat_type_name

BODY_LIMIT = 200  # characters of a notification body
SOURCE_LIMIT = 60  # characters of one source in a summary body
HOST_LIMIT = 40  # characters of a host name in a title or a summary body
SOURCE_KEY_LIMIT = 200  # characters of a source kept as a counter key
MAX_SOURCES = 1000  # distinct sources counted per pending batch
TOP_SOURCES = 3  # sources named in a summary body
DEFAULT_MIN_INTERVAL_S = 20.0  # at most three notifications a minute
_SEVERITY, _BLOCKED, _SOURCE, _HOST = (attrgetter("severity"), attrgetter("blocked"), attrgetter("source"),
                                     attrgetter("host"))


def _groups(events: list) -> Counter:
    """The events counted per (severity, blocked, source, host), in C."""
    # A batch comes from one place: the fleet (every threat has its host) or this machine (none
    # has one, and the host costs nothing: its groups are counted as before the fleet existed).
    if getattr(events[0], "host", ""):
        return Counter(zip(map(_SEVERITY, events), map(_BLOCKED, events), map(_SOURCE, events),
                           map(_HOST, events)))
    return Counter(zip(map(_SEVERITY, events), map(_BLOCKED, events), map(_SOURCE, events), repeat("")))


@dataclass(frozen=True)
class Notification:
    """What to show. Every string is plain text: never markup."""

    title: str
    body: str
    severity: int  # the highest pending severity, 1..4
    count: int  # events merged into this notification
    key: Hashable  # key of the most severe (then newest) event: click opens it
    sources: tuple[str, ...]  # the top sources, most frequent first (raw)
    blocked: int = 0  # how many of the `count` threats the Shield blocked
    urgent: bool = False  # a Critical threat the Shield did not block is in it
    plain_text: bool = True
    hosts: tuple[str, ...] = ()  # the fleet view: the top hosts, most frequent first (raw); () otherwise


class NotificationPolicy:
    def __init__(
        self,
        threshold: int = HIGH,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = int(threshold)
        self.min_interval_s = float(min_interval_s)
        self._clock = clock
        self._muted: set[str] = set()
        self._paused_until: float | None = None
        self._last_shown: float | None = None
        self._inhibited = False
        self.offered = 0
        self.shown = 0
        self.suppressed = 0
        self._reset_pending()

    # -- pending batch ------------------------------------------------------

    def _reset_pending(self) -> None:
        self._count = 0
        self._by_severity = [0, 0, 0, 0, 0]
        self._blocked = 0
        self._critical_allowed = 0
        self._sources: Counter[str] = Counter()
        self._other_sources = 0  # events from sources beyond MAX_SOURCES
        self._hosts: Counter[str] = Counter()  # the fleet view's workstations ("" never counted)
        self._other_hosts = 0  # events from hosts beyond MAX_SOURCES
        self._best = None  # (severity, threat_type, blocked, source, details, key, host)

    def _now(self, now: float | None) -> float:
        now = self._clock() if now is None else now
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
        return now

    # -- input ----------------------------------------------------------------

    def offer(self, events: Iterable, now: float | None = None,
              key_of: Callable[[object], Hashable] | None = None) -> None:
        """Take threat events; the ones worth notifying join the pending batch.
        `key_of(event)` (default: the event's `key`) names what a click opens.
        The events are counted per distinct (severity, blocked, source) in C (Counter over
        attrgetters): under a flood most threats share these, so the Python work is per group."""
        now = self._now(now)
        events = events if isinstance(events, (list, tuple)) else list(events)
        self.offered += len(events)
        if not events:
            return
        if self._paused_until is not None:
            self.suppressed += len(events)
            return
        threshold = self.threshold
        muted = self._muted
        sources = self._sources
        by_severity = self._by_severity
        suppressed = count = blocked = critical_allowed = top = 0
        hosts = self._hosts
        for (raw_severity, is_blocked, source, host), n in _groups(events).items():
            sev = severity_level(raw_severity)
            if sev < threshold or source in muted:
                suppressed += n
                continue
            count += n
            by_severity[sev] += n
            if is_blocked:
                blocked += n
            elif sev >= CRITICAL:
                critical_allowed += n
            skey = source if len(source) <= SOURCE_KEY_LIMIT else source[:SOURCE_KEY_LIMIT]
            if skey in sources or len(sources) < MAX_SOURCES:
                sources[skey] += n
            else:
                self._other_sources += n
            if host:
                hkey = host if len(host) <= SOURCE_KEY_LIMIT else host[:SOURCE_KEY_LIMIT]
                if hkey in hosts or len(hosts) < MAX_SOURCES:
                    hosts[hkey] += n
                else:
                    self._other_hosts += n
            top = max(top, sev)
        best = self._best
        if count and top >= (best[0] if best is not None else 0):  # ties: the newest wins
            self._take_best(events, top, key_of)
        self.suppressed += suppressed
        self._count += count
        self._blocked += blocked
        self._critical_allowed += critical_allowed

    def _take_best(self, events: list, top: int, key_of) -> None:
        """The newest unmuted event of severity `top` becomes the one a click opens."""
        muted = self._muted
        for ev in reversed(events):
            if severity_level(ev.severity) == top and ev.source not in muted:
                self._best = (top, ev.threat_type, ev.blocked, ev.source, ev.details,
                              key_of(ev) if key_of is not None else getattr(ev, "key", None),
                              getattr(ev, "host", "") or "")
                break

    # -- output ---------------------------------------------------------------

    def next_due_in(self, now: float | None = None) -> float | None:
        """Seconds until due() may return something; None when nothing is pending."""
        now = self._now(now)
        if not self._count or self._inhibited:
            return None
        if self._last_shown is None:
            return 0.0
        return max(0.0, self._last_shown + self.min_interval_s - now)

    def due(self, now: float | None = None) -> Notification | None:
        """The notification to show now, or None."""
        now = self._now(now)
        if not self._count or self._paused_until is not None or self._inhibited:
            return None
        # Same expression as next_due_in(), so a timer armed with it never fires early.
        if self._last_shown is not None and now < self._last_shown + self.min_interval_s:
            return None
        note = self._build()
        self._reset_pending()
        self._last_shown = now
        self.shown += 1
        return note

    def _build(self) -> Notification:
        sev, threat_type, blocked, source, details, key, host = self._best
        top = self._sources.most_common(TOP_SOURCES)
        sources = tuple(s for s, _ in top)
        top_hosts = self._hosts.most_common(TOP_SOURCES)
        hosts = tuple(h for h, _ in top_hosts)
        if self._count == 1:
            title = (
                f"{severity_name(sev)} threat {'blocked' if blocked else 'detected'}: "
                f"{threat_type_name(threat_type)}"
            )
            if host:
                title = f"{_shown_host(host)}: {title}"
            # Cut before visible() so a megabyte of details costs nothing; cutting
            # one past the limit keeps elide()'s "…" when something was cut.
            src = defang(visible(str(source)[: BODY_LIMIT + 1]))
            det = defang(visible(str(details)[: BODY_LIMIT + 1]))
            body = elide(f"{src} — {det}", BODY_LIMIT)
            return Notification(title, body, sev, 1, key, sources, blocked=int(bool(blocked)),
                                urgent=sev >= CRITICAL and not blocked, hosts=hosts)
        n = self._count
        critical = self._by_severity[CRITICAL]
        title = f"{n} new threats" + self._from_hosts() + (f", {critical} critical" if critical else "") + ", " \
            + self._blocked_words()
        parts = []
        for s, c in top:
            shown = elide(defang(visible(s[: SOURCE_LIMIT + 1])), SOURCE_LIMIT)
            parts.append(f"{shown} ×{c}" if c > 1 else shown)
        if len(self._sources) > TOP_SOURCES or self._other_sources:
            parts.append("…")
        body = " · ".join(parts)
        if len(self._hosts) > 1 or self._other_hosts:  # which workstations, before the sources
            named = [f"{_shown_host(h)} ×{c}" if c > 1 else _shown_host(h) for h, c in top_hosts]
            if len(self._hosts) > TOP_SOURCES or self._other_hosts:
                named.append("…")
            body = " · ".join(named) + " — " + body
        body = elide(body, BODY_LIMIT)
        highest = max(i for i in range(1, 5) if self._by_severity[i])
        return Notification(title, body, highest, n, key, sources, blocked=self._blocked,
                            urgent=self._critical_allowed > 0, hosts=hosts)

    def _from_hosts(self) -> str:
        """" from ws-a" or " from 3 hosts" in the fleet view; "" for this machine's own threats."""
        n = len(self._hosts) + (1 if self._other_hosts else 0)
        if not n:
            return ""
        if n == 1:
            return " from " + _shown_host(next(iter(self._hosts)))
        return f" from {len(self._hosts):,}{'+' if self._other_hosts else ''} hosts"

    def _blocked_words(self) -> str:
        blocked, allowed = self._blocked, self._count - self._blocked
        if not allowed:
            return "all blocked"
        if not blocked:
            return "none blocked"
        return f"{blocked} blocked, {allowed} allowed"

    @property
    def pending(self) -> int:
        """Threats waiting to be shown (merged into the next notification)."""
        return self._count

    # -- user controls ----------------------------------------------------------

    def mute_source(self, source: str) -> None:
        self._muted.add(source)

    def unmute_source(self, source: str) -> None:
        self._muted.discard(source)

    @property
    def muted(self) -> frozenset[str]:
        return frozenset(self._muted)

    def pause(self, seconds: float | None, now: float | None = None) -> None:
        """Be quiet for `seconds` (None: until resume()). Drops what is pending."""
        now = self._now(now)
        if seconds is None:
            self._paused_until = math.inf
        elif seconds > 0:
            self._paused_until = now + float(seconds)
        else:
            self._paused_until = None
            return
        self.suppressed += self._count
        self._reset_pending()

    def resume(self) -> None:
        self._paused_until = None

    def set_inhibited(self, inhibited: bool) -> None:
        """The desktop's do-not-disturb: hold everything while on (merged as
        usual), show it as one notification when it ends."""
        self._inhibited = bool(inhibited)

    @property
    def inhibited(self) -> bool:
        return self._inhibited

    @property
    def paused_until(self) -> float | None:
        """None, a monotonic time, or float('inf') when paused until resumed."""
        self._now(None)
        return self._paused_until

    def set_threshold(self, severity: int) -> None:
        self.threshold = int(severity)


def _shown_host(host: str) -> str:
    """A workstation's name as a notification shows it: visible, defanged, at most HOST_LIMIT characters."""
    return elide(defang(visible(host[: HOST_LIMIT + 1])), HOST_LIMIT)
