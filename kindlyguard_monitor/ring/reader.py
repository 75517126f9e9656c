"""The ring reader the app, `kgmon tail` and `kgmon bench` use: the C reader
(kindlyguard_monitor._ring.Reader for format v2, kindlyguard_monitor._ring.V1Reader for the Shield's own v1
ring) with its errors turned into RingError sentences. open_any() picks the
reader by the header's version."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Literal

from kindlyguard_monitor import _ring
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.vocabulary import DEFAULT_SPIN_NS

Start = Literal["oldest", "newest"]
Event = _ring.Event  # seq, publish_mono_ns, observe_mono_ns, timestamp_unix_us, threat_type,
#                      severity, blocked, flags, source, details


@contextlib.contextmanager
def _sentences(path: str | os.PathLike) -> Iterator[None]:
    """The C reader's errors (status, detail) as a RingError that says what to do."""
    try:
        yield
    except _ring.Error as exc:
        status, detail = exc.args
        raise RingError(status, os.fspath(path), detail) from None


def open_reader(
    path: str | os.PathLike,
    start: Start = "oldest",
    spin_ns: int = DEFAULT_SPIN_NS,
    adaptive: bool = True,
    batch: int = 2048,
) -> _ring.Reader:
    """Attach to the ring at `path` after every health check of the spec.

    Raises RingError (with a sentence a user can act on) when the ring cannot
    be used. spin_ns=0 sleeps on the futex at once; adaptive=False spins the
    full budget every time (a huge budget busy-polls)."""
    with _sentences(path):
        return _ring.Reader(os.fspath(path), start=start, spin_ns=spin_ns, adaptive=adaptive, batch=batch)


def open_v1_reader(
    path: str | os.PathLike,
    start: Start = "oldest",
    poll_min_ns: int | None = None,
    poll_max_ns: int | None = None,
    batch: int = 2048,
    require_writer: bool = True,
) -> _ring.V1Reader:
    """Attach read-only to the Shield's v1 ring at `path` (never consuming it).

    With require_writer, a ring whose writer is gone is refused as v2's are:
    CLOSED (it shut down: no lock file) or STALE (it died)."""
    kw = {k: v for k, v in (("poll_min_ns", poll_min_ns), ("poll_max_ns", poll_max_ns)) if v is not None}
    with _sentences(path):
        reader = _ring.V1Reader(os.fspath(path), start=start, batch=batch, **kw)
    if require_writer:
        state = v1.writer_state(path, reader.header())
        if not state.alive:
            reader.close()
            raise RingError(Status.CLOSED if state.closed else Status.STALE, os.fspath(path), state.reason)
    return reader


def open_any(
    path: str | os.PathLike,
    start: Start = "oldest",
    spin_ns: int = DEFAULT_SPIN_NS,
    adaptive: bool = True,
    batch: int = 2048,
) -> _ring.Reader | _ring.V1Reader:
    """The reader for the ring's format: v1 (the Shield's shm_demo) or v2 (ours)."""
    if v1.peek_version(path) == v1.VERSION:
        return open_v1_reader(path, start=start, batch=batch)
    return open_reader(path, start=start, spin_ns=spin_ns, adaptive=adaptive, batch=batch)


def ring_format(reader) -> int:
    """1 or 2."""
    return getattr(reader, "format", 2)
