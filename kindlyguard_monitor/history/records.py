"""What goes into the history and what comes out: keys, rows, StoredThreat, Gap.

A threat's key makes storing it idempotent (INSERT OR IGNORE): the same
threat replayed by the ring, or delivered again after a transport switch,
has the same key and is stored once.

- Numbered threats (the writer's generation and `seq` are known: a ring
  event's generation is its Batch's, a WebSocket threat carries its own)
  get 16 bytes: generation and seq as big-endian u64. The ring and our
  WebSocket writers number a threat the same, so either transport's copy
  has the same key.
- Any other threat (a Shield that sends no `seq`, or no generation) gets a
  20-byte BLAKE2b digest of its content: time, type, severity, blocked,
  source and details. Two such threats identical in all of these, to the
  microsecond, are stored once.

Text is untrusted and stored exactly as received, with one exception: a
WebSocket string can hold lone surrogates (JSON "\\ud800"), which SQLite's
UTF-8 cannot; each becomes U+FFFD.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import Iterator, NamedTuple

U64 = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)
_NUMBERED = struct.Struct(">QQ")
_CONTENT_HEAD = struct.Struct(">qqqBQ")
_SURROGATE = re.compile("[\ud800-\udfff]")

# The threats columns a writer fills, in this order (see insert SQL in store.py).
THREAT_COLUMNS = ("key", "time_us", "type", "severity", "blocked", "flags", "source", "details",
                  "transport", "generation", "seq", "stored_at")
# What readers select, in StoredThreat order of construction (see stored_threat()).
SELECT_COLUMNS = "id, key, time_us, type, severity, blocked, flags, source, details, transport, " \
                 "generation, seq, stored_at"


class StoredThreat(NamedTuple):
    """A threat read back from the history. The first ten fields have the names
    and order of a ring event (kindlyguard_monitor._ring.Event), so the feed, the details pane
    and `kgmon tail`'s formatting take either; the monotonic stamps mean nothing
    after a restart and are 0."""

    seq: int | None
    publish_mono_ns: int
    observe_mono_ns: int
    timestamp_unix_us: int
    threat_type: int
    severity: int
    blocked: bool
    flags: int
    source: str  # raw, untrusted
    details: str  # raw, untrusted
    id: str  # "<generation hex>-<seq>" for a numbered threat (as kgmon tail prints), else "content-<hex>"
    generation: int | None
    transport: str  # "shm" or "websocket": what delivered it
    row_id: int  # the history's own row number (with timestamp_unix_us: the paging cursor)
    stored_at_us: int


class Gap(NamedTuple):
    """A place where the history knows it has a hole."""

    row_id: int
    time_us: int  # when it was noticed (wall clock, µs)
    transport: str  # "shm", "websocket", or "store" for store_overflow
    generation: int | None
    missed: int
    corrupt: int
    kind: str  # "reader" or "store_overflow"


GAP_COLUMNS = "id, time_us, transport, generation, missed, corrupt, kind"


def generation_text(generation: int | None) -> str | None:
    return None if generation is None else f"{generation & U64:016x}"


def generation_int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text, 16)
    except (TypeError, ValueError):
        return None


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


def content_key(time_us: int, threat_type: int, severity: int, blocked: bool, source: str, details: str) -> bytes:
    """Length-prefixed, so no choice of source and details can imitate another's."""
    src = source.encode("utf-8", "surrogatepass")
    h = hashlib.blake2b(digest_size=20, person=b"kgmon-threat")
    h.update(_CONTENT_HEAD.pack(clamp_i64(time_us), clamp_i64(threat_type), clamp_i64(severity),
                                1 if blocked else 0, len(src)))
    h.update(src)
    h.update(details.encode("utf-8", "surrogatepass"))
    return h.digest()


def _numbered(generation, seq) -> bool:
    return type(generation) is int and type(seq) is int and 0 <= generation <= U64 and 0 <= seq <= U64


def threat_rows(transport: str, generation: int | None, events, stored_at: int, careful: bool) -> Iterator[tuple]:
    """One row (THREAT_COLUMNS order) per event of a Batch.

    Ring events come from C: text valid UTF-8, so the fast path trusts them
    (a number SQLite cannot hold makes the insert fail, and the store redoes
    that batch carefully). `careful=True` (WebSocket threats, anything not
    from the ring) reads every field defensively, cleans text and clamps numbers.
    `stored_at`: when the store took the threats in (µs).
    """
    gen_text = generation_text(generation)
    if not careful:
        numbered = type(generation) is int
        for e in events:
            seq = e.seq
            if numbered and seq is not None:
                key = _NUMBERED.pack(generation, seq)
            else:
                key = content_key(e.timestamp_unix_us, e.threat_type, e.severity, e.blocked, e.source, e.details)
            yield (key, e.timestamp_unix_us, e.threat_type, e.severity, 1 if e.blocked else 0, e.flags,
                   e.source, e.details, transport, gen_text, seq, stored_at)
        return
    for e in events:
        gen = getattr(e, "generation", generation)  # a WebSocket threat names its own
        seq = getattr(e, "seq", None)
        time_us = clamp_i64(getattr(e, "timestamp_unix_us", 0) or 0)
        threat_type = clamp_i64(getattr(e, "threat_type", 0) or 0)
        severity = clamp_i64(getattr(e, "severity", 0) or 0)
        blocked = bool(getattr(e, "blocked", False))
        source, details = clean_text(getattr(e, "source", "")), clean_text(getattr(e, "details", ""))
        if _numbered(gen, seq):
            key = _NUMBERED.pack(gen, seq)
        else:
            key = content_key(time_us, threat_type, severity, blocked, source, details)
        stored_seq = seq if type(seq) is int and 0 <= seq <= I64_MAX else None
        yield (key, time_us, threat_type, severity, 1 if blocked else 0, clamp_i64(getattr(e, "flags", 0) or 0),
               source, details, transport, generation_text(gen) if type(gen) is int else None, stored_seq,
               stored_at)


def sanitize_row(row: tuple) -> tuple:
    """A row SQLite can bind, from one it refused (a number beyond 64 bits, odd types)."""
    key, time_us, threat_type, severity, blocked, flags, source, details, transport, gen, seq, stored_at = row
    return (bytes(key), clamp_i64(time_us), clamp_i64(threat_type), clamp_i64(severity), 1 if blocked else 0,
            clamp_i64(flags), clean_text(source), clean_text(details), clean_text(transport),
            gen if type(gen) is str else None, seq if type(seq) is int and 0 <= seq <= I64_MAX else None,
            clamp_i64(stored_at))


def stored_threat(row: tuple) -> StoredThreat:
    """A StoredThreat from a row selected as SELECT_COLUMNS."""
    row_id, key, time_us, threat_type, severity, blocked, flags, source, details, transport, gen, seq, stored = row
    generation = generation_int(gen)
    if len(key) == _NUMBERED.size:
        g, s = _NUMBERED.unpack(key)
        ident = f"{g:016x}-{s}"
        if seq is None:  # a seq above 2**63 - 1 lives only in the key
            seq = s
    else:
        ident = "content-" + bytes(key).hex()
    return StoredThreat(seq, 0, 0, time_us, threat_type, severity, bool(blocked), flags, source, details, ident,
                        generation, transport, row_id, stored)


def gap(row: tuple) -> Gap:
    """A Gap from a row selected as GAP_COLUMNS."""
    row_id, time_us, transport, gen, missed, corrupt, kind = row
    return Gap(row_id, time_us, transport, generation_int(gen), missed, corrupt, kind)
