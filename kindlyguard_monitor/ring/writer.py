"""The ring writer the demo uses: the C writer (kindlyguard_monitor._ring.Writer) fed with Threats."""

from __future__ import annotations

import os
from collections.abc import Iterable

from kindlyguard_monitor import _ring
from kindlyguard_monitor.ring.errors import RingError
from kindlyguard_monitor.threats import Threat


class RingWriter:
    """Creates the ring at `path` (temp file + rename, exclusive lock) and
    publishes Threats into it. close() marks it closed and wakes readers."""

    def __init__(self, path: str | os.PathLike, slot_size: int = 512, slot_count: int = 4096):
        self.path = os.fspath(path)
        try:
            self._w = _ring.Writer(self.path, slot_size=slot_size, slot_count=slot_count)
        except _ring.Error as exc:
            status, detail = exc.args
            raise RingError(status, self.path, detail) from None

    def publish(self, threats: Iterable[Threat]) -> int:
        """Publish as one batch (one wake-up for readers); returns how many were accepted.
        RingError(TRUNCATED) if the file was truncated under us (nothing more can be published)."""
        events = [(t.timestamp_unix_us, t.threat_type, t.severity, t.blocked, t.source, t.details) for t in threats]
        try:
            return self._w.publish(events)
        except _ring.Error as exc:
            raise self._error(exc) from None

    def tick(self) -> None:
        """Keep the heartbeat fresh; call at least every 500 ms when idle."""
        try:
            self._w.tick()
        except _ring.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: _ring.Error) -> RingError:
        status, _detail = exc.args
        try:
            detail = f"the file is now {os.stat(self.path).st_size} bytes"
        except OSError as e:
            detail = f"the file is gone: {e.strerror}"
        return RingError(status, self.path, detail)

    def close(self) -> None:
        self._w.close()

    @property
    def generation(self) -> int:
        return self._w.generation

    @property
    def write_seq(self) -> int:
        return self._w.write_seq

    @property
    def slot_count(self) -> int:
        return self._w.slot_count

    @property
    def dropped(self) -> int:
        return self._w.dropped

    @property
    def truncated(self) -> int:
        return self._w.truncated

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
