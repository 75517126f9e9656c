"""The writer: who writes the ring and is it alive, read from the header without health checks."""

from __future__ import annotations

import time

from kindlyguard_monitor.doctor.findings import FAIL, INFO, OK, WARN, Finding, ago, counted
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.follow import PID_GONE_HEARTBEAT_NS, _process_alive
from kindlyguard_monitor.ring.layout import HEARTBEAT_STALE_NS, MAGIC, STATE_CLOSED, STATE_RUNNING, VERSION, read_header


def _process_facts(pid: int) -> str:
    import psutil

    try:
        p = psutil.Process(pid)
        name = p.name()
        try:
            user = p.username()
        except (psutil.AccessDenied, KeyError):
            user = "?"
        return f"{name}, user {user}"
    except psutil.NoSuchProcess:
        return "not running"
    except (psutil.AccessDenied, ValueError, OSError):
        return "process details hidden"


def check_v1_writer(path: str, ws_usable: bool = False) -> list[Finding]:
    """The Shield's v1 ring: who writes it (lock file, header), is it alive, and its own consumer."""
    try:
        h = v1.read_header(path)
    except RingError as exc:
        return [Finding("writer", INFO, f"cannot read the v1 header: {exc}")]
    state = v1.writer_state(path, h)
    pid = state.pid
    who = f"pid {pid} ({_process_facts(pid)})" if pid else "no pid"
    age = max(0, int(time.time()) - h["last_heartbeat"])
    consumer = (f"its own consuming reader has taken {h['events_read']} (read_pos {h['read_pos']}; "
                "the monitor never moves it)" if h["events_read"] or h["read_pos"]
                else "no consuming reader has taken any")
    base = (f"Shield format v1: writer {who}, last write {age} s ago (the v1 heartbeat moves only on writes), "
            f"{counted(h['events_written'], 'event')} written, {consumer}")
    if state.alive:
        return [Finding("writer", OK, f"{base}: {state.reason}")]
    if ws_usable:
        return [Finding("writer", INFO, f"{base}: {state.reason}; the Shield answers on the WebSocket")]
    return [Finding("writer", FAIL, f"{base}: {state.reason}",
                    "start the Shield's writer again (for example its shm_demo example)")]


def check_writer(path: str, ws_usable: bool = False, now_ns: int | None = None) -> list[Finding]:
    """Who writes the ring, and is it alive: from the header, without health checks."""
    if v1.peek_version(path) == v1.VERSION:
        return check_v1_writer(path, ws_usable)
    try:
        h = read_header(path)
    except RingError as exc:
        if exc.status == Status.NOT_FOUND:
            if ws_usable:
                return [Finding("writer", INFO, "no shared-memory writer; the Shield answers on the WebSocket")]
            return [Finding("writer", FAIL, "no Shield running: no ring, and nothing answers on the WebSocket",
                            "start the KindlyGuard Shield (or `kgmon demo` to try the monitor)")]
        return [Finding("writer", INFO, f"cannot read the ring's header: {exc}")]
    if h["magic"] != MAGIC or h["version"] != VERSION or h["heartbeat_mono_ns"] is None:
        return [Finding("writer", INFO, "the header is not a v2 KindlyGuard header; no writer details")]
    now = time.monotonic_ns() if now_ns is None else now_ns
    pid, state = h["writer_pid"], h["state"]
    age_ns = now - h["heartbeat_mono_ns"]
    alive = _process_alive(pid) if pid else False
    counters = (f"generation {h['generation']:#x}, {counted(h['write_seq'], 'event')} published, "
                f"{h['writer_dropped']} refused, {h['writer_truncated']} truncated")
    who = f"pid {pid} ({_process_facts(pid) if pid else 'no pid'})"
    heartbeat = f"heartbeat {ago(age_ns)}"
    state_name = {STATE_RUNNING: "running", STATE_CLOSED: "closed"}.get(state, f"state {state}")
    base = f"{who}, {heartbeat}, {state_name}, {counters}"
    findings = []
    if state == STATE_CLOSED:
        if ws_usable:
            findings.append(Finding("writer", INFO, f"{base}: the shared-memory writer shut down cleanly"))
        else:
            findings.append(Finding("writer", FAIL, f"{base}: the writer shut down; no Shield running",
                                    "start the KindlyGuard Shield (or `kgmon demo`)"))
    elif state != STATE_RUNNING:
        findings.append(Finding("writer", FAIL, f"{base}: the header's state is invalid",
                                "restart the Shield; it recreates the ring"))
    elif age_ns > HEARTBEAT_STALE_NS:
        if alive:
            findings.append(Finding("writer", FAIL, f"{base}: the process is alive but stuck (no heartbeat)",
                                    f"restart the Shield (`kill {pid}` if it does not stop)"))
        else:
            findings.append(Finding("writer", FAIL, f"{base}: the writer exited without closing the ring",
                                    "restart the Shield; it replaces the stale ring"))
    elif not alive and age_ns > PID_GONE_HEARTBEAT_NS:
        findings.append(Finding("writer", FAIL, f"{base}: the writer has exited",
                                "restart the Shield"))
    else:
        note = "" if alive else " (the process is not visible from here: another container?)"
        findings.append(Finding("writer", OK, base + note))
    if h["writer_dropped"]:
        n = h["writer_dropped"]
        findings.append(Finding("writer-dropped", WARN, f"the writer refused {counted(n, 'event')} (invalid input)",
                                "see the Shield's log: those threats never reached the ring"))
    if h["writer_truncated"]:
        n = h["writer_truncated"]
        findings.append(Finding("writer-truncated", WARN, f"the writer cut {n} {'text' if n == 1 else 'texts'} "
                                "to fit a slot", "restart the Shield with larger slots to keep whole details"))
    return findings
