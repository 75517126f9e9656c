"""What goes into the history and what comes out: keys, rows, StoredThreat, Gap.

A threat's key makes storing it idempotent (INSERT OR IGNORE): the same
threat replayed by the ring, or delivered again after a transport switch,
has the same key and is stored once.

The key is the threat's EventKey in its packed form (kindlyguard_monitor/event.py):
16 bytes (generation, seq) for a numbered threat, else a 20-byte digest of its content.

Text is untrusted and stored exactly as received, with one exception: a
WebSocket string can hold lone surrogates (JSON "\\ud800"), which SQLite's
UTF-8 cannot; each becomes U+FFFD.
"""

from __future__ import annotations

import marshal
from operator import attrgetter, itemgetter
from typing import Iterator, NamedTuple

from kindlyguard_monitor.event import I64_MAX, NUMBERED, U64, EventKey, ThreatEvent, clamp_i64, clean_text
from kindlyguard_monitor.vocabulary import Transport

# The threats columns a writer fills, in this order (see insert SQL in store.py).
THREAT_COLUMNS = ("key", "time_us", "type", "severity", "blocked", "flags", "source", "details",
                  "transport", "generation", "seq", "stored_at", "host")
# What readers select, in StoredThreat order of construction (see stored_threat()).
SELECT_COLUMNS = "id, key, time_us, type, severity, blocked, flags, source, details, transport, " \
                 "generation, seq, stored_at"  # + host where the file has it (query.py: schema 4)


class StoredThreat(NamedTuple):
    """A threat read back from the history, with where it is stored (row_id,
    stored_at_us: the paging cursor). `event()` is the threat itself."""

    seq: int | None
    timestamp_unix_us: int
    threat_type: int
    severity: int
    blocked: bool
    flags: int
    source: str  # raw, untrusted
    details: str  # raw, untrusted
    key: EventKey
    generation: int | None
    transport: str  # "shm" or "websocket": what delivered it
    row_id: int  # the history's own row number (with timestamp_unix_us: the paging cursor)
    stored_at_us: int
    host: str = ""  # the workstation it came from (a fleet history); "" for this machine's own

    @property
    def id(self) -> str:
        """"<generation hex>-<seq>" for a numbered threat (as kgmon tail prints), else "content-<hex>"."""
        return self.key.text_id()

    def event(self, transport: Transport | None = None) -> ThreatEvent:
        """The threat as the feed shows it: delivered by `transport` (default: what delivered
        it then); its monotonic clocks are not known after a restart (None)."""
        try:
            delivered = Transport(transport or self.transport)
        except ValueError:  # a name this version does not know (a newer writer): shown as stored
            delivered = transport or self.transport
        return ThreatEvent(self.key, delivered, self.generation, self.seq, None, None, self.timestamp_unix_us,
                           self.threat_type, self.severity, self.blocked, self.flags, self.source, self.details,
                           host=self.host)


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


def threat_rows(transport: str, generation: int | None, events, stored_at: int, careful: bool) -> Iterator[tuple]:
    """One row (THREAT_COLUMNS order) per ThreatEvent of a Batch; the key is the event's own.

    Ring events come from C: text valid UTF-8, so the fast path trusts them
    (a number SQLite cannot hold makes the insert fail, and the store redoes
    that batch carefully). `careful=True` (WebSocket threats, anything not
    from the ring) reads every field defensively, cleans text and clamps numbers.
    `stored_at`: when the store took the threats in (µs).
    """
    if not careful:
        gen_text = generation_text(generation)
        for e in events:
            yield (e.key.packed(), e.timestamp_unix_us, e.threat_type, e.severity, 1 if e.blocked else 0, e.flags,
                   e.source, e.details, transport, gen_text, e.seq, stored_at, e.host)
        return
    for e in events:
        gen, seq = e.generation, e.seq
        stored_seq = seq if type(seq) is int and 0 <= seq <= I64_MAX else None
        yield (e.key.packed(), clamp_i64(e.timestamp_unix_us or 0), clamp_i64(e.threat_type or 0),
               clamp_i64(e.severity or 0), 1 if e.blocked else 0, clamp_i64(e.flags or 0),
               clean_text(e.source), clean_text(e.details), transport,
               generation_text(gen) if type(gen) is int else None, stored_seq, stored_at, clean_text(e.host))


# A ring threat as it waits to be stored (compact()): an exact tuple of numbers and strings, which
# Python's cyclic GC stops tracking after its first look, where a waiting ThreatEvent (and its
# EventKey) is walked by every collection: a backlog of 100,000 of them made the reader's
# full collections take 0.2-0.3 s here (docs/benchmarks.md, history). The key's own generation
# and seq are kept, so the key stored is the event's, whatever the batch says.
COMPACT_FIELDS = ("timestamp_unix_us", "threat_type", "severity", "blocked", "flags", "source", "details", "seq",
                  "key.generation", "key.seq")
_compact_row = attrgetter(*COMPACT_FIELDS)
_BLOCKED = 3  # COMPACT_FIELDS' bool: bound as an int (sqlite3 looks up an adapter for a bool, per value)
_KEY_GENERATION, _KEY_SEQ = itemgetter(8), itemgetter(9)
# The threats columns compact_params() fills, a column at a time: the first 8 as they are (blocked
# as an int), then the key; then three the whole batch shares (transport, generation, stored_at).
COMPACT_COLUMNS = ("time_us", "type", "severity", "blocked", "flags", "source", "details", "seq", "key")
SHARED_COLUMNS = ("transport", "generation", "stored_at")


def compact(events) -> tuple:
    """Ring ThreatEvents (a Batch of one numbered generation) as compact rows (COMPACT_FIELDS), in C:
    a tuple of tuples, which the collector stops tracking at its first look (a list it walks every time)."""
    return tuple(map(_compact_row, events))


class PackedRows:
    """Compact rows packed into one bytes object: how a flood's backlog waits (HistoryStore.submit).

    Rows that wait as tuples are still walked once by the collector's young collection, with
    the GIL held: 20,000-40,000 waiting rows took 5-25 ms each time here (every field a cache
    miss on this VM), a stall that made the reader lose events at 200,000/s
    (docs/benchmarks.md, "The history beside the reader"). A bytes object is not tracked at
    all. marshal (C, in the standard library) packs ~0.3 µs and unpacks ~0.2 µs a row; the
    bytes never leave this process, so its format changing between Python versions does not matter.
    Slicing (a transaction taking part of a batch, the bounded queue dropping the oldest) unpacks
    and packs again: at most twice per transaction."""

    __slots__ = ("data", "count")

    def __init__(self, rows: tuple):
        self.data = marshal.dumps(rows)
        self.count = len(rows)

    @classmethod
    def of(cls, data: bytes, count: int) -> "PackedRows":
        """Rows packed before (`data`, as another PackedRows holds them)."""
        packed = cls.__new__(cls)
        packed.data, packed.count = data, count
        return packed

    def __len__(self) -> int:
        return self.count

    def rows(self) -> tuple:
        return marshal.loads(self.data)

    def __iter__(self):
        return iter(self.rows())

    def __getitem__(self, part: slice) -> "PackedRows":
        return PackedRows(self.rows()[part])


def compact_params(rows) -> list[list]:
    """The parameters of multi-row INSERTs of compact rows (kindlyguard_monitor.history.writer), a
    list per COMPACT_COLUMNS column, rows in order: values of the exact types sqlite3 binds without
    looking for an adapter (a bool and bytes are not: that lookup was 14% of the writer's time). Made in C
    (no Python code per row); raises struct.error for a key that is not numbered."""
    if type(rows) is PackedRows:
        rows = rows.rows()
    columns = [list(map(itemgetter(c), rows)) for c in range(len(COMPACT_COLUMNS) - 1)]
    columns[_BLOCKED] = list(map(int, columns[_BLOCKED]))
    # the key as a bytearray: sqlite3 binds it directly, where bytes go through the adapter lookup
    # (measured: 420 against 690-870 ns per 10-value row, the copy 57 ns)
    columns.append(list(map(bytearray, map(NUMBERED.pack, map(_KEY_GENERATION, rows), map(_KEY_SEQ, rows)))))
    return columns


def compact_rows(transport: str, generation: int | None, rows: list[tuple], stored_at: int) -> Iterator[tuple]:
    """Compact rows as THREAT_COLUMNS rows, read defensively (the careful path: a row SQLite would not
    bind). A key that is not numbered is the content digest, as EventKey.of makes it."""
    for time_us, threat_type, severity, blocked, flags, source, details, seq, kgen, kseq in rows:
        key = EventKey.of(kgen, kseq, time_us, threat_type, severity, blocked, source, details)
        yield sanitize_row((key.packed(), time_us, threat_type, severity, blocked, flags, source, details,
                            str(transport), generation_text(generation) if type(generation) is int else None,
                            seq, stored_at, ""))  # host: compact rows are this machine's ring threats


def sanitize_row(row: tuple) -> tuple:
    """A row SQLite can bind, from one it refused (a number beyond 64 bits, odd types)."""
    key, time_us, threat_type, severity, blocked, flags, source, details, transport, gen, seq, stored_at, host = row
    return (bytes(key), clamp_i64(time_us), clamp_i64(threat_type), clamp_i64(severity), 1 if blocked else 0,
            clamp_i64(flags), clean_text(source), clean_text(details), clean_text(transport),
            gen if type(gen) is str else None, seq if type(seq) is int and 0 <= seq <= I64_MAX else None,
            clamp_i64(stored_at), clean_text(host))


def stored_threat(row: tuple) -> StoredThreat:
    """A StoredThreat from a row selected as SELECT_COLUMNS."""
    row_id, key, time_us, threat_type, severity, blocked, flags, source, details, transport, gen, seq, stored = row[:13]
    event_key = EventKey.from_packed(key)
    if seq is None and event_key.numbered:  # a seq above 2**63 - 1 lives only in the key
        seq = event_key.seq
    return StoredThreat(seq, time_us, threat_type, severity, bool(blocked), flags, source, details, event_key,
                        generation_int(gen), transport, row_id, stored, row[13] if len(row) > 13 else "")


def gap(row: tuple) -> Gap:
    """A Gap from a row selected as GAP_COLUMNS."""
    row_id, time_us, transport, gen, missed, corrupt, kind = row
    return Gap(row_id, time_us, transport, generation_int(gen), missed, corrupt, kind)

