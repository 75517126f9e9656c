"""The ring: can the monitor's own (C) reader attach, what is the file, what did it miss.

The ring is judged by the real reader, so doctor and the monitor never disagree
about whether a ring can be used.
"""

from __future__ import annotations

import os
import shlex
import stat
import time
from typing import NamedTuple

from kindlyguard_monitor.doctor.findings import FAIL, INFO, OK, WARN, Finding, user_name
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.layout import VERSION

PROBE_BUDGET_S = 0.2


def ring_file_facts(path: str) -> str | None:
    """Owner, mode and kind of the ring file and its directory, or None if neither exists."""
    directory = os.path.dirname(os.path.abspath(path))
    parts = []
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            try:
                kind = f"a symbolic link to {os.readlink(path)}"
            except OSError:
                kind = "a symbolic link"
        elif stat.S_ISREG(st.st_mode):
            kind = "a regular file"
        elif stat.S_ISDIR(st.st_mode):
            kind = "a directory"
        else:
            kind = "not a regular file"
        parts.append(f"{path} is {kind}, owner {user_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}, "
                     f"{st.st_size} bytes")
    try:
        dst = os.stat(directory)
    except OSError as exc:
        if st is None:
            return None if isinstance(exc, FileNotFoundError) else f"directory {directory}: {exc.strerror}"
        parts.append(f"directory {directory}: {exc.strerror}")
    else:
        parts.append(f"directory {directory} owner {user_name(dst.st_uid)}, mode {stat.S_IMODE(dst.st_mode):04o}")
        if st is None:
            parts.append("holds no ring file")
    return "; ".join(parts)


def ring_advice(error: RingError, path: str) -> str:
    """The concrete next step for a ring the reader refused."""
    q = shlex.quote(path)
    directory = shlex.quote(os.path.dirname(os.path.abspath(path)))
    s = error.status
    if s == Status.NOT_FOUND:
        return ("start the KindlyGuard Shield (or `kgmon demo` to try the monitor); if it is running, "
                "point --shm-path or KINDLYGUARD_SHM_PATH at its ring")
    if s == Status.NOT_REGULAR:
        return f"remove it (`rm {q}`) and restart the Shield"
    if s == Status.WRONG_OWNER:
        try:
            owner = user_name(os.lstat(path).st_uid)
        except OSError:
            owner = "the Shield's user"
        return f"run the monitor as {owner}, the user the Shield runs as"
    if s == Status.UNSAFE_MODE:
        return f"run `chmod 600 {q}`, or restart the Shield (it recreates the file with mode 0600)"
    if s == Status.UNSAFE_DIR:
        try:
            owner = os.lstat(os.path.dirname(os.path.abspath(path))).st_uid
        except OSError:
            owner = None
        if owner is not None and hasattr(os, "geteuid") and owner != os.geteuid():
            # made first by another user, who can swap the ring inside: chmod is not ours to do
            return (f"the folder {directory} belongs to user {user_name(owner)}, not to you: not trusted; have it "
                    f"removed (by {user_name(owner)} or root) and restart the Shield")
        return f"`chmod 700 {directory}` (it must be yours), or remove it and restart the Shield"
    if s == Status.BAD_MAGIC:
        return "check --shm-path: this file is not the Shield's ring"
    if s == Status.BAD_VERSION:
        return ("check --shm-path: the monitor reads the Shield's own ring (format v1) and format v2 "
                "(`kgmon demo`), not this one")
    if s in (Status.STALE, Status.CLOSED) and v1.peek_version(path) == v1.VERSION:
        return ("start the Shield's writer again (for example its shm_demo example); the monitor reads the same "
                "file on, from where it stopped")
    if s in (Status.BAD_HEADER, Status.BAD_SIZE):
        return "restart the Shield; it recreates the ring"
    if s == Status.STALE:
        return "restart the Shield; it replaces the stale ring"
    if s == Status.CLOSED:
        return "start the Shield again (or `kgmon demo`)"
    if s == Status.REPLACED:
        return "run `kgmon doctor` again"
    if s == Status.IO:
        return "check that the ring's file system (/dev/shm on Linux) is mounted and readable"
    return ""


class RingCheck(NamedTuple):
    finding: Finding
    reader: object | None  # an open kindlyguard_monitor._ring.Reader (for the probe); the caller closes it
    error: RingError | None


def check_ring(path: str) -> RingCheck:
    """Attach with the real (C) reader: its verdict is the monitor's."""
    from kindlyguard_monitor.ring.reader import open_any  # the C extension; imported here so a broken build is a finding

    try:
        reader = open_any(path, start="oldest", spin_ns=0)
    except RingError as exc:
        return RingCheck(Finding("ring", FAIL, str(exc), ring_advice(exc, path)), None, exc)
    except (OSError, ValueError) as exc:
        err = RingError(Status.IO, path, str(exc))
        return RingCheck(Finding("ring", FAIL, str(err), ring_advice(err, path)), None, err)
    facts = ""
    try:
        st = os.stat(path)
        dst = os.stat(os.path.dirname(os.path.abspath(path)))
        facts = (f"; owner {user_name(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}, "
                 f"directory mode {stat.S_IMODE(dst.st_mode):04o}")
    except OSError:
        pass
    if getattr(reader, "format", 2) == v1.VERSION:
        size = v1.HEADER_SIZE + reader.data_size
        message = (f"{path}, Shield format v1, polled (no wake-up), read-only: its own reader keeps every event; "
                   f"{reader.capacity} events of {v1.EVENT_SIZE} B ({size / (1 << 20):.1f} MiB){facts}")
    else:
        size = 4096 + reader.slot_count * reader.slot_size
        message = (f"{path}, format v{VERSION}, {reader.slot_count} slots x {reader.slot_size} B "
                   f"({size / (1 << 20):.1f} MiB){facts}")
    return RingCheck(Finding("ring", OK, message), reader, None)


def import_problem() -> Finding | None:
    """The C extension must load for the monitor to read the ring at all."""
    try:
        from kindlyguard_monitor import _ring  # noqa: F401
    except ImportError as exc:
        return Finding("ring", FAIL, f"the ring reader (kindlyguard_monitor._ring) does not load: {exc}",
                       "rebuild the C extension: `make install` (or `pip install .`)")
    return None


# ---------------------------------------------------------------- missed events (a probe)


def probe_events(reader, budget_s: float = PROBE_BUDGET_S) -> Finding:
    """Read what the ring holds (from the oldest event) for up to budget_s."""
    start_seq = reader.cursor
    target = reader.write_seq
    t0 = time.monotonic()
    deadline = t0 + budget_s
    while reader.cursor < target:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        reader.poll(min(remaining, 0.05), 0)
    took_ms = (time.monotonic() - t0) * 1000
    delivered, missed, corrupt = reader.delivered, reader.missed, reader.corrupt
    published = reader.write_seq
    held = f"the ring holds events {start_seq}..{target - 1} of {published} published" if target > start_seq \
        else f"the ring holds no events ({published} published)"
    message = (f"a probe (up to {budget_s:g} s, from the oldest event) read {delivered + missed + corrupt} "
               f"events in {took_ms:.0f} ms: {delivered} delivered, {missed} missed, {corrupt} corrupt; {held}")
    if corrupt:
        return Finding("probe", WARN, message,
                       "corrupt events failed their CRC or length checks: restart the Shield; if it persists, "
                       "another process may be writing into the ring")
    if missed:
        return Finding("probe", INFO, message + " (the writer overwrote them while this probe read)",
                       "at this rate a reader that stalls loses events: a larger ring (more slots) gives it slack")
    return Finding("probe", OK, message)
