"""Why a ring cannot be used, in words a user can act on.

The C library (native/kg_status.h) and the pure-Python reader
(kindlyguard_monitor/ring/pyring.py) both report a numeric status; this module is the one
place that turns it into an exception with a sentence. `Status` is kg_status's list:
the C module exports each as `_ring.STATUS_<NAME>`, and tests/integration/test_native.py checks
the two are the same.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    OK = 0
    TIMEOUT = 1
    NOT_FOUND = 2
    NOT_REGULAR = 3
    WRONG_OWNER = 4
    UNSAFE_MODE = 5
    UNSAFE_DIR = 6
    BAD_MAGIC = 7
    BAD_VERSION = 8
    BAD_HEADER = 9
    BAD_SIZE = 10
    STALE = 11
    CLOSED = 12
    REPLACED = 13
    LOCKED = 14
    IO = 15
    INVALID = 16
    TRUNCATED = 17


# What to tell the user, and what they can do about it. "{path}" and
# "{detail}" are filled in; detail is the C library's or OS's own words.
_ADVICE = {
    Status.NOT_FOUND: "no ring at {path}: no KindlyGuard Shield (or `kgmon demo`) is running with shared memory",
    Status.NOT_REGULAR: "{path} is not a regular file ({detail}); refusing to map it. Remove it and restart the Shield",
    Status.WRONG_OWNER: "{path} belongs to another user ({detail}); run the monitor as the Shield's user",
    Status.UNSAFE_MODE: "{path} has unsafe permissions ({detail}); other users could forge threats. "
    "Restart the Shield, or `chmod 600` the file",
    Status.UNSAFE_DIR: "the ring's directory is unsafe ({detail}); it must be yours with mode 0700. "
    "`chmod 700` it or remove it and restart the Shield",
    Status.BAD_MAGIC: "{path} is not a KindlyGuard ring ({detail})",
    Status.BAD_VERSION: "{path} is a KindlyGuard ring of a format this monitor does not read ({detail}); "
    "it reads formats 1 (the Shield's own) and 2 (`kgmon demo`)",
    Status.BAD_HEADER: "{path} has a corrupt header ({detail}); restart the Shield to recreate it",
    Status.BAD_SIZE: "{path} has the wrong size ({detail}); it is truncated or corrupt. Restart the Shield",
    Status.STALE: "the writer of {path} is gone or stuck ({detail}); restart the Shield",
    Status.CLOSED: "the writer of {path} shut down",
    Status.REPLACED: "{path} was replaced by a new file (the writer restarted)",
    Status.LOCKED: "another writer already owns {path} ({detail}); stop it first",
    Status.IO: "cannot use {path}: {detail}",
    Status.INVALID: "invalid request for {path}: {detail}",
    Status.TRUNCATED: "the ring was truncated while in use ({path}: {detail}); another program shrank the file. "
    "Restart the Shield to recreate it",
}

class RingError(Exception):
    """A ring that cannot be used; `str()` is a sentence for the user."""

    def __init__(self, status: int, path: str, detail: str = ""):
        self.status = Status(status)
        self.path = str(path)
        self.detail = detail
        template = _ADVICE.get(self.status, "{path}: {detail}")
        super().__init__(template.format(path=self.path, detail=detail or self.status.name.lower()))
