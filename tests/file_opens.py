"""Count how often other processes open a file, with Linux inotify (no polling, no sleep).

    with FileOpens(ring_path) as opens:
        ...
        opens.wait(3, 30, "the tail to open the ring three more times")

A test uses it to know that a process has looked at a file (e.g. a tail's retry
found a ring) without sleeping for "long enough". Opens by the test itself count
too: open nothing yourself while waiting.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import time
from pathlib import Path

IN_CLOSE_WRITE, IN_CLOSE_NOWRITE, IN_OPEN = 0x08, 0x10, 0x20
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name

_libc = ctypes.CDLL(None, use_errno=True)


class FileOpens:
    def __init__(self, path):
        self.path = Path(path)
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        # The folder, not the file: the file may be replaced (by rename) under us.
        # Closes too: inotify merges identical events in a row, and open, close, open do not merge.
        mask = IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE
        if _libc.inotify_add_watch(self.fd, os.fsencode(self.path.parent), mask) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {self.path.parent}")
        self.count = 0

    def _read(self, timeout: float) -> None:
        if not select.select([self.fd], [], [], max(0.0, timeout))[0]:
            return
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        at = 0
        while at < len(data):
            _, mask, _, size = _EVENT.unpack_from(data, at)
            name = data[at + _EVENT.size:at + _EVENT.size + size].rstrip(b"\0")
            at += _EVENT.size + size
            if mask & IN_OPEN and name == os.fsencode(self.path.name):
                self.count += 1

    def reset(self) -> None:
        """Forget the opens so far (those already queued included)."""
        self._read(0)
        self.count = 0

    def wait(self, n: int, timeout: float, what: str) -> None:
        """Wait until the file was opened n times since the last reset()."""
        deadline = time.monotonic() + timeout
        while self.count < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what} "
                                     f"({self.count} of {n} opens of {self.path})")
            self._read(left)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> "FileOpens":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
