"""The ring reader the app, `kgmon tail` and `kgmon bench` use: the C reader
(app._ring.Reader) with its errors turned into RingError sentences."""

from __future__ import annotations

import os
from typing import Literal

from app import _ring
from app.ring.errors import RingError, Status

Start = Literal["oldest", "newest"]
Event = _ring.Event  # seq, publish_mono_ns, observe_mono_ns, timestamp_unix_us, threat_type,
#                      severity, blocked, flags, source, details

DEFAULT_SPIN_NS = 50_000  # adaptive: the most a reader spins before it sleeps


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
    try:
        return _ring.Reader(os.fspath(path), start=start, spin_ns=spin_ns, adaptive=adaptive, batch=batch)
    except _ring.Error as exc:
        status, detail = exc.args
        raise RingError(status, os.fspath(path), detail) from None


def health(reader: _ring.Reader) -> Status:
    """OK, STALE (writer gone or stuck), CLOSED or REPLACED."""
    return Status(reader.health())
