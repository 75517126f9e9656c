"""The threat vocabulary shared by every transport: types, severities, one event.

Numbers are the ring's (docs/shm-ring-v2.md), names are the WebSocket
protocol's (docs/websocket.md). Unknown numbers read as Unknown; unknown
severity names read as Medium, as the protocol says.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import NamedTuple

THREAT_TYPES = (
    "Unknown",
    "UnicodeInvisible",
    "UnicodeBiDi",
    "UnicodeHomoglyph",
    "InjectionAttempt",
    "PathTraversal",
    "SuspiciousPattern",
    "RateLimitViolation",
)
THREAT_TYPE_NUMBER = {name: i for i, name in enumerate(THREAT_TYPES)}

SEVERITIES = (None, "Low", "Medium", "High", "Critical")  # index = ring number, 1..4
SEVERITY_NUMBER = {name: i for i, name in enumerate(SEVERITIES) if name}
LOW, MEDIUM, HIGH, CRITICAL = 1, 2, 3, 4


def threat_type_name(number: int) -> str:
    return THREAT_TYPES[number] if 0 <= number < len(THREAT_TYPES) else "Unknown"


def severity_level(number) -> int:
    """A severity number as one of LOW..CRITICAL: anything else (out of range,
    not a number) reads as MEDIUM, as the protocol says of unknown names."""
    if type(number) is not int:
        try:
            number = int(number)
        except (TypeError, ValueError):
            return MEDIUM
    return number if LOW <= number <= CRITICAL else MEDIUM


def severity_name(number: int) -> str:
    return SEVERITIES[severity_level(number)]


class Threat(NamedTuple):
    """One threat, whatever transport brought it. Text fields are untrusted."""

    threat_type: int  # ring number, 0..7
    severity: int  # 1..4
    blocked: bool
    source: str
    details: str
    timestamp_unix_us: int  # wall clock of the threat


class Published(NamedTuple):
    """A threat as one of our writers published it (the demo, the bench writer): numbered
    (generation, seq) as on its ring, with its monotonic clock at publish. What the demo
    WebSocket servers broadcast; readers see it as a kindlyguard_monitor.event.ThreatEvent."""

    generation: int
    seq: int
    threat: Threat
    mono_ns: int  # CLOCK_MONOTONIC at publish


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def format_timestamp(unix_us: int) -> str:
    """Microseconds since the epoch as RFC 3339 UTC with microseconds (the wire's form, tail's and export's)."""
    try:
        moment = _EPOCH + dt.timedelta(microseconds=unix_us)
    except (OverflowError, ValueError):
        return "1970-01-01T00:00:00.000000Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def local_time(timestamp_unix_us: int, fallback: str = "?") -> str:
    """A threat's wall-clock time as local HH:MM:SS.mmm (fallback when out of range)."""
    try:
        seconds, micros = divmod(int(timestamp_unix_us), 1_000_000)
        return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{micros // 1000:03d}"
    except (OverflowError, OSError, ValueError):
        return fallback
