"""One threat, one shape: `ThreatEvent`, and its identity, `EventKey`.

Whatever brought a threat (the ring, the WebSocket, the history at start),
the rest of the monitor sees a ThreatEvent: the feed, the table, the details
pane, the notifier, the history writer, `kgmon tail` and `kgmon export`. The
ring's C events (kindlyguard_monitor._ring.Event) are converted once, where
the transport manager takes them in (`from_ring`); the WebSocket parser builds
ThreatEvents directly; the history turns its rows into them (`restored`).

Identity is computed once per event, when the event is made:

- numbered: the writer's generation and `seq` (both u64) are known. The ring
  and our WebSocket writers number a threat the same, so either transport's
  copy has the same key. Packed: 16 bytes, two big-endian u64.
- otherwise (the Shield's v1 ring has no generation, a Shield's WebSocket may
  send no `seq`): a 20-byte BLAKE2b digest of the content (time, type,
  severity, blocked, source, details). Two such threats identical in all of
  these, to the microsecond, are one threat.
- from the fleet (`kgmon --fleet`): a digest of the host and the threat's own
  key as its history gave it (`fleet_key`), so identity is (host, key).

The packed form is the history's primary key; the text id is what `kgmon
tail` and `kgmon export` print ("<generation hex>-<seq>", else "content-<hex>").

Text fields are untrusted and kept exactly as received (show them with
kindlyguard_monitor.textsafe.visible).
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Any, NamedTuple

from kindlyguard_monitor._ring import Event as _RingEvent
from kindlyguard_monitor._ring import threat_events as _threat_events
from kindlyguard_monitor.threats import format_timestamp, severity_name, threat_type_name
from kindlyguard_monitor.vocabulary import Transport

U64 = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)
NUMBERED = struct.Struct(">QQ")
_CONTENT_HEAD = struct.Struct(">qqqBQ")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value) -> str:
    """`value` as a str SQLite can store: lone surrogates become U+FFFD, other types str()."""
    if type(value) is not str:
        if isinstance(value, (bytes, bytearray)):
            return bytes(value).decode("utf-8", "replace")
        value = "" if value is None else str(value)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)


def clamp_i64(value) -> int:
    value = int(value)
    return I64_MIN if value < I64_MIN else I64_MAX if value > I64_MAX else value


def content_digest(time_us: int, threat_type: int, severity: int, blocked: bool, source: str, details: str) -> bytes:
    """Length-prefixed, so no choice of source and details can imitate another's."""
    src = source.encode("utf-8", "surrogatepass")
    h = hashlib.blake2b(digest_size=20, person=b"kgmon-threat")
    h.update(_CONTENT_HEAD.pack(clamp_i64(time_us), clamp_i64(threat_type), clamp_i64(severity),
                                1 if blocked else 0, len(src)))
    h.update(src)
    h.update(details.encode("utf-8", "surrogatepass"))
    return h.digest()


def is_numbered(generation, seq) -> bool:
    return type(generation) is int and type(seq) is int and 0 <= generation <= U64 and 0 <= seq <= U64


class EventKey(NamedTuple):
    """A threat's identity: (generation, seq) when numbered, else its content digest."""

    generation: int | None
    seq: int | None
    digest: bytes | None = None  # set only when not numbered

    @classmethod
    def of(cls, generation, seq, timestamp_unix_us, threat_type, severity, blocked, source, details) -> EventKey:
        if is_numbered(generation, seq):
            return cls(generation, seq)
        # The digest of the text as the history stores it (lone surrogates replaced):
        # a threat has the same key live and restored.
        return cls(None, None, content_digest(clamp_i64(timestamp_unix_us or 0), clamp_i64(threat_type or 0),
                                              clamp_i64(severity or 0), bool(blocked), clean_text(source),
                                              clean_text(details)))

    @classmethod
    def from_packed(cls, packed: bytes) -> EventKey:
        packed = bytes(packed)
        if len(packed) == NUMBERED.size:
            return cls(*NUMBERED.unpack(packed))
        return cls(None, None, packed)

    @property
    def numbered(self) -> bool:
        return self.digest is None

    def packed(self) -> bytes:
        """16 bytes (generation, seq) or the 20-byte digest: the history's key."""
        return NUMBERED.pack(self.generation, self.seq) if self.digest is None else self.digest

    def text_id(self) -> str:
        """"<generation hex>-<seq>" (as our WebSocket writers name it), else "content-<hex>"."""
        if self.digest is None:
            return f"{self.generation:016x}-{self.seq}"
        return "content-" + self.digest.hex()


class ThreatEvent(NamedTuple):
    """One threat, from any transport. `key` is computed once, when it is made.
    From `seq` to `details` the fields are the ring's C event's, in its order, so
    from_ring() copies them in one step."""

    key: EventKey
    transport: Transport  # what delivered it (HISTORY: restored from the history at start)
    generation: int | None  # the writer's generation, when known
    seq: int | None  # the writer's event number, when known
    publish_mono_ns: int | None  # the writer's monotonic clock; None when not known (restored)
    observe_mono_ns: int | None  # when this process read it; None when not known (restored)
    timestamp_unix_us: int  # wall clock of the threat
    threat_type: int  # ring number, 0..7
    severity: int  # 1..4 (others read as Medium: threats.severity_level)
    blocked: bool
    flags: int
    source: str  # raw, untrusted
    details: str  # raw, untrusted
    wire_id: str = ""  # the id a WebSocket server gave it ("" from the ring)
    exact_latency: bool = True  # publish_mono_ns is the writer's (False: estimated from the wall clock)
    context: Any = None  # the WebSocket's `context`, as sent
    host: str = ""  # the workstation it came from (the fleet view); "" for this machine's own

    @property
    def latency_ns(self) -> int | None:
        """Publish to read, when both are known."""
        if self.publish_mono_ns is None or self.observe_mono_ns is None:
            return None
        return max(0, self.observe_mono_ns - self.publish_mono_ns)

    def text_id(self) -> str:
        """The id shown to people and scripts: the server's when it gave one, else the key's."""
        return self.wire_id or self.key.text_id()

    def to_dict(self) -> dict:
        """The fields `kgmon tail --json` and `kgmon export` share (names, not numbers)."""
        return {
            "transport": str(self.transport),
            "generation": self.generation,
            "seq": self.seq,
            "id": self.text_id(),
            "threat_type": threat_type_name(self.threat_type),
            "severity": severity_name(self.severity),
            "blocked": bool(self.blocked),
            "source": self.source,
            "details": self.details,
            "timestamp": format_timestamp(self.timestamp_unix_us),
        }


def fleet_key(host: str, text_id: str) -> EventKey:
    """A fleet threat's identity: its host with the key its own history gave it (its text id),
    so two workstations' seq 1 are two threats and a redelivered message is one. A 20-byte
    digest, like a content key (another personalisation: the two cannot imitate each other)."""
    h = hashlib.blake2b(digest_size=20, person=b"kgmon-fleet")
    host_b = clean_text(host).encode("utf-8")
    h.update(len(host_b).to_bytes(4, "big"))
    h.update(host_b)
    h.update(clean_text(text_id).encode("utf-8"))
    return EventKey(None, None, h.digest())


def threat_event(*, transport: Transport, generation: int | None, seq: int | None, timestamp_unix_us: int,
                 threat_type: int, severity: int, blocked: bool, source: str, details: str, flags: int = 0,
                 publish_mono_ns: int | None = None, observe_mono_ns: int | None = None, wire_id: str = "",
                 exact_latency: bool = True, context: Any = None) -> ThreatEvent:
    """A ThreatEvent with its key computed."""
    key = EventKey.of(generation, seq, timestamp_unix_us, threat_type, severity, blocked, source, details)
    return ThreatEvent(key, transport, generation, seq, publish_mono_ns, observe_mono_ns, timestamp_unix_us,
                       threat_type, severity, blocked, flags, source, details, wire_id, exact_latency, context)


_RING_TAIL = ("", True, None, "")  # wire_id, exact_latency, context, host


def from_ring(events, generation: int | None, transport: Transport = Transport.SHM) -> list[ThreatEvent]:
    """The ring reader's C events (kindlyguard_monitor._ring.Event, a struct sequence: seq,
    publish_mono_ns, observe_mono_ns, timestamp_unix_us, threat_type, severity, blocked, flags,
    source, details) of one writer generation as ThreatEvents: the one conversion, where the
    transport manager takes them in: one tuple copy per event, no attribute reads."""
    if events and type(events[0]) is not _RingEvent:  # another reader's events (pyring's): field by field
        return [threat_event(transport=transport, generation=generation, seq=e.seq,
                             timestamp_unix_us=e.timestamp_unix_us, threat_type=e.threat_type, severity=e.severity,
                             blocked=e.blocked, flags=e.flags, source=e.source, details=e.details,
                             publish_mono_ns=e.publish_mono_ns, observe_mono_ns=getattr(e, "observe_mono_ns", None))
                for e in events]
    # In C, and out of the cyclic GC's sight (they can hold no cycle): a flood's events are
    # otherwise most of what each young collection walks, in whichever thread allocates.
    if type(generation) is int and 0 <= generation <= U64:
        return _threat_events(events, generation, transport, _RING_TAIL, ThreatEvent, EventKey)
    keys = [EventKey.of(generation, e.seq, e.timestamp_unix_us, e.threat_type, e.severity, e.blocked,
                        e.source, e.details) for e in events]  # the Shield's v1 ring: keyed by content
    return _threat_events(events, generation, transport, _RING_TAIL, ThreatEvent, EventKey, keys)
