"""Threats and histories for the history tests (tests/test_history_*.py).

Ring events are real kindlyguard_monitor._ring.Event objects, converted as the transport
manager converts them (event.from_ring), and WebSocket threats ThreatEvents made as the
protocol parser makes them, so the store sees exactly what the transports deliver.
Times are relative to now (a day ago onwards): the store's default 90-day
retention keeps them.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from kindlyguard_monitor import _ring
from kindlyguard_monitor.history.store import HistoryStore
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.event import ThreatEvent, from_ring, threat_event
from kindlyguard_monitor.vocabulary import Transport

GEN = 0x0123_4567_89AB_CDEF
BASE_US = (time.time_ns() // 1000) - 86_400 * 1_000_000


def ring_event(seq: int, *, time_us: int | None = None, threat_type: int = 1, severity: int = 2,
               blocked: bool = False, flags: int = 0, source: str = "mcp:tools/call",
               details: str | None = None) -> _ring.Event:
    return _ring.Event((seq, 11, 22, BASE_US + seq * 1000 if time_us is None else time_us, threat_type, severity,
                        blocked, flags, source, f"threat {seq}" if details is None else details))


def ws_threat(seq: int | None, generation: int | None = GEN, *, time_us: int | None = None, threat_type: int = 1,
              severity: int = 2, blocked: bool = False, source: str = "mcp:tools/call",
              details: str | None = None) -> ThreatEvent:
    ident = f"{generation:016x}-{seq}" if generation is not None and seq is not None else "shield-id"
    return threat_event(transport=Transport.WEBSOCKET, generation=generation, seq=seq,
                        timestamp_unix_us=BASE_US + (seq or 0) * 1000 if time_us is None else time_us,
                        threat_type=threat_type, severity=severity, blocked=blocked, source=source,
                        details=f"threat {seq}" if details is None else details, publish_mono_ns=33,
                        observe_mono_ns=44, wire_id=ident, exact_latency=False)


def ring_batch(events: list, generation: int = GEN) -> Batch:
    """Ring events (_ring.Event, or ThreatEvents already converted) as the manager delivers them."""
    if events and not isinstance(events[0], ThreatEvent):
        events = from_ring(events, generation)
    return Batch(Transport.SHM, generation, events)


def ws_batch(threats: list) -> Batch:
    return Batch(Transport.WEBSOCKET, threats[0].generation if threats else None, threats)


def start_store(path: Path, **kw) -> HistoryStore:
    store = HistoryStore(path, **kw).start()
    assert store.wait_ready(60), store.error
    return store


def make_history(path: Path, batches: list, **kw) -> Path:
    """A history file at `path` holding `batches` (closed again)."""
    store = start_store(path, **kw)
    store.submit(batches)
    assert store.close(60), store.error
    return path


def rows(path: Path, sql: str = "SELECT seq, transport, time_us FROM threats ORDER BY id", params=()) -> list:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def damage_schema(conn: sqlite3.Connection) -> None:
    """Point the threats table at page 1 through a live connection (the store's own writer's):
    its next insert meets SQLITE_CORRUPT, as a damaged file does."""
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_schema SET rootpage = 1 WHERE name = 'threats'")
    conn.execute(f"PRAGMA schema_version = {version + 1}")
    conn.execute("PRAGMA writable_schema = OFF")


# A store flooded until killed (tests that SIGKILL it mid-flood): every write a flood's for the
# indexes (defer_waiting=-1), argv[2] the store's flood_waiting (-1: every transaction of ring
# threats the flood writer process's; 10**9: none); prints "<threats flushed> <flood writer pid>"
# after every 5,000.
FLOODER = r"""
import sys, time
from kindlyguard_monitor import _ring
from kindlyguard_monitor.history.store import HistoryStore
from kindlyguard_monitor.event import from_ring
from kindlyguard_monitor.transport.items import Batch
store = HistoryStore(sys.argv[1], defer_waiting=-1).start()
store.wait_ready(60)
store.flood_waiting = int(sys.argv[2])
base = time.time_ns() // 1000
seq = 0
while True:
    store.submit([Batch("shm", 7, from_ring([_ring.Event((s, 0, 0, base + s, 1, 2, False, 0, "src", "details " * 12))
                                             for s in range(seq, seq + 500)], 7))])
    seq += 500
    if seq % 5000 == 0:
        store.flush()
        print(seq, store._flood_writer.pid, flush=True)
"""
