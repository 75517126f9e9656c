"""What `kgmon doctor` checks when the monitor shows nothing or is slow.

Every check is a small function that returns `Finding`s (never raises for
what it expects to meet: a missing file, a refused connection, a missing
tool); `diagnose()` runs them in order and settles the few verdicts that
depend on each other:

- the ring is judged by the real (C) reader, so doctor and the monitor never
  disagree about whether a ring can be used;
- a missing (or cleanly closed) ring is a warning, not a failure, when the
  Shield answers on the WebSocket, since the monitor then falls back to it;
- an unreachable WebSocket is a failure only when the ring is unusable too.

Levels: "ok", "warn", "fail", "info". Anything "fail" means the monitor cannot
show threats (or must not be trusted to) until the advice is followed.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import os
import pwd
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Mapping, NamedTuple

from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.follow import PID_GONE_HEARTBEAT_NS, _process_alive
from kindlyguard_monitor.ring.pyring import MAGIC, STATE_CLOSED, STATE_RUNNING, VERSION, HEARTBEAT_STALE_NS, read_header
from kindlyguard_monitor.transport.urls import ws_url_problem
from kindlyguard_monitor.transport.ws_client import default_ws_url as client_default_ws_url
from kindlyguard_monitor.vocabulary import DEFAULT_WS_PORT, ENV_READER_CPU, ENV_WS_PORT, ENV_WS_URL, shield_ws_port

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"
LEVELS = (OK, WARN, FAIL, INFO)

DEFAULT_WS_TIMEOUT_S = 2.0
STAY_S = 0.3  # after the status, how long doctor watches the connection stay up
PROBE_BUDGET_S = 0.2
DBUS_TIMEOUT_S = 2.0
CPU_ROOT = "/sys/devices/system/cpu"
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"


class Finding(NamedTuple):
    check: str  # a short name: "ring", "writer", "websocket", ...
    level: str  # ok | warn | fail | info
    message: str  # what was found, one sentence
    advice: str = ""  # what to do about it ("" when nothing)

    def as_dict(self) -> dict:
        return {"check": self.check, "level": self.level, "message": self.message, "advice": self.advice}


def failed(findings: list[Finding]) -> bool:
    return any(f.level == FAIL for f in findings)


# ---------------------------------------------------------------- small helpers


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return f"uid {uid}"


def _cpu_list(cpus) -> str:
    """{0, 1, 2, 5} -> "0-2,5"."""
    out, run = [], []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _age(ns: int) -> str:
    if ns < 0:
        return "just now"
    return f"{ns / 1e9:.1f} s ago"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------- 1. the ring file


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
        parts.append(f"{path} is {kind}, owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}, "
                     f"{st.st_size} bytes")
    try:
        dst = os.stat(directory)
    except OSError as exc:
        if st is None:
            return None if isinstance(exc, FileNotFoundError) else f"directory {directory}: {exc.strerror}"
        parts.append(f"directory {directory}: {exc.strerror}")
    else:
        parts.append(f"directory {directory} owner {_user(dst.st_uid)}, mode {stat.S_IMODE(dst.st_mode):04o}")
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
            owner = _user(os.lstat(path).st_uid)
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
            return (f"the folder {directory} belongs to user {_user(owner)}, not to you: not trusted; have it "
                    f"removed (by {_user(owner)} or root) and restart the Shield")
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
        facts = (f"; owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}, "
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


# ---------------------------------------------------------------- 2. the writer


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
            f"{_count(h['events_written'], 'event')} written, {consumer}")
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
    counters = (f"generation {h['generation']:#x}, {_count(h['write_seq'], 'event')} published, "
                f"{h['writer_dropped']} refused, {h['writer_truncated']} truncated")
    who = f"pid {pid} ({_process_facts(pid) if pid else 'no pid'})"
    heartbeat = f"heartbeat {_age(age_ns)}"
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
        findings.append(Finding("writer-dropped", WARN, f"the writer refused {_count(n, 'event')} (invalid input)",
                                "see the Shield's log: those threats never reached the ring"))
    if h["writer_truncated"]:
        n = h["writer_truncated"]
        findings.append(Finding("writer-truncated", WARN, f"the writer cut {n} {'text' if n == 1 else 'texts'} "
                                "to fit a slot", "restart the Shield with larger slots to keep whole details"))
    return findings


# ---------------------------------------------------------------- 3. missed events (a probe)


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


# ---------------------------------------------------------------- 4. WebSocket


def default_ws_url(env: Mapping[str, str]) -> tuple[str, Finding | None]:
    """The URL every client uses by default (kindlyguard_monitor.transport.ws_client), and a
    warning when $SHIELD_WS_PORT is set but is not a port number."""
    url = client_default_ws_url(None, env)
    port_text = env.get(ENV_WS_PORT)
    if not env.get(ENV_WS_URL) and port_text and shield_ws_port(env) is None:
        return url, Finding("websocket-port", WARN, f"{ENV_WS_PORT}={port_text!r} is not a port number; "
                            f"checking the default {DEFAULT_WS_PORT}", f"set {ENV_WS_PORT} to 1..65535 or unset it")
    return url, None


def check_ws_host(url: str) -> Finding | None:
    """The Shield only listens on the loopback interface."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None  # check_websocket reports the bad URL
    if not host or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    port = parts.port if parts.port else DEFAULT_WS_PORT
    return Finding("websocket-host", WARN, f"{host} is not this machine: the Shield only listens on 127.0.0.1",
                   f"use --ws-url ws://127.0.0.1:{port} on the Shield's machine")


class WsCheck(NamedTuple):
    finding: Finding
    usable: bool  # a status came back: the monitor can fall back to this


def check_websocket(url: str, timeout: float = DEFAULT_WS_TIMEOUT_S) -> WsCheck:
    """Connect, read the status the Shield sends first, ask get_status."""
    try:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, WebSocketException
        from websockets.sync.client import connect
    except ImportError as exc:
        return WsCheck(Finding("websocket", WARN, f"the websockets library does not load ({exc})",
                               "reinstall the monitor (`make install` or `pip install .`)"), False)

    from kindlyguard_monitor.transport.protocol import BadFrame, ServerError, Status as WsStatus, command, parse_frame

    start_advice = (f"start the KindlyGuard Shield (it listens on ws://127.0.0.1:{DEFAULT_WS_PORT}; "
                    f"{ENV_WS_PORT} changes the port), or pass --ws-url")
    t0 = time.monotonic()

    def unreachable(reason: str, advice: str = start_advice) -> WsCheck:
        return WsCheck(Finding("websocket", WARN, f"{url}: {reason}", advice), False)

    problem = ws_url_problem(url)  # $KINDLYGUARD_WS_URL is not checked by the option parser
    if problem is not None:
        return WsCheck(Finding("websocket", WARN, problem, "set KINDLYGUARD_WS_URL or --ws-url to "
                               f"ws://127.0.0.1:{DEFAULT_WS_PORT}, or unset it"), False)

    from websockets.exceptions import InvalidStatus

    from kindlyguard_monitor.textsafe import visible
    from kindlyguard_monitor.transport import local_auth

    try:  # another user's socket on the port is reported, never sent our token
        headers = local_auth.client_headers(url)
    except local_auth.LocalAuthError as exc:
        return WsCheck(Finding("websocket", FAIL, f"{url}: {exc}",
                               "the monitor does not talk to another user's server: stop that program (or ask "
                               "its user to), then start the Shield as yourself"), False)
    try:
        ws = connect(url, open_timeout=timeout, close_timeout=min(timeout, 1.0), proxy=None, compression=None,
                     additional_headers=headers)
    except InvalidURI as exc:
        return unreachable(f"not a WebSocket URL ({exc})", "pass --ws-url ws://127.0.0.1:PORT")
    except ConnectionRefusedError:
        return unreachable("connection refused: nothing listens there")
    except TimeoutError:
        return unreachable(f"timed out after {timeout:g} s (no WebSocket handshake)",
                           "something holds the port but does not answer as the Shield: check what listens there")
    except InvalidStatus as exc:
        code = exc.response.status_code
        if code not in (403, 503):  # not a refusal of ours: another program
            return unreachable(f"bad handshake: {exc}",
                               "another program answers on that port: check --ws-url or SHIELD_WS_PORT")
        # our demo refusing: the body says why in one line
        why = visible(exc.response.body.decode("utf-8", "replace").strip())[:200] or f"HTTP {code}"
        advice = ("it admits only its own user, by the token in its file: run the monitor as the user who "
                  "started the server" if code == 403 else "the server is busy; try again in a moment")
        return unreachable(f"the server refused the connection (HTTP {code}): {why}", advice)
    except InvalidHandshake as exc:
        return unreachable(f"bad handshake: {exc}",
                           "another program answers on that port: check --ws-url or SHIELD_WS_PORT")
    except (OSError, WebSocketException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return unreachable(f"cannot connect: {reason}")
    connected_ms = (time.monotonic() - t0) * 1000
    first = answer = None
    notes = []
    dropped = ""
    try:
        # The Shield sends its status first and answers no command (docs/websocket.md):
        # that first status is the answer. Only a server that sent something else is
        # asked (get_status, with a nonce: the Shield drops a frame it has seen before).
        deadline = time.monotonic() + timeout
        first = parse_frame(ws.recv(timeout=timeout))
        if isinstance(first, WsStatus):  # does the connection stay? (a client the Shield rejects is dropped)
            stay = min(time.monotonic() + STAY_S, deadline)
            with contextlib.suppress(TimeoutError):
                while time.monotonic() < stay:
                    ws.recv(timeout=max(0.0, stay - time.monotonic()))
        else:
            ws.send(command("get_status"))
        while answer is None and not isinstance(first, WsStatus):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            msg = parse_frame(ws.recv(timeout=remaining))
            if isinstance(msg, WsStatus):
                answer = msg
            elif isinstance(msg, ServerError):
                notes.append(f"the server said: {msg.message}")
            elif isinstance(msg, BadFrame):
                notes.append(f"a bad frame ({msg.kind}: {msg.detail})")
    except TimeoutError:
        pass
    except ConnectionClosed as exc:
        how = "without a close frame" if exc.rcvd is None else f"({exc})"
        dropped = f"the server dropped the connection {time.monotonic() - t0:.1f} s after it opened {how}"
        notes.append(dropped)
    except (OSError, WebSocketException) as exc:
        notes.append(f"the connection failed ({exc})")
    finally:
        try:
            ws.close()
        except (OSError, WebSocketException):
            pass
    status = first if isinstance(first, WsStatus) else answer
    extra = ("; " + "; ".join(notes)) if notes else ""
    if status is None:
        got = "nothing" if first is None else type(first).__name__
        return WsCheck(Finding("websocket", WARN,
                               f"{url}: connected, but no status came within {timeout:g} s (got {got}){extra}",
                               "is that the KindlyGuard Shield? check --ws-url or SHIELD_WS_PORT"), False)
    enabled = status.protection_enabled
    state = {True: "protection enabled", False: "protection DISABLED", None: "protection unknown"}[enabled]
    blocked = "threats blocked unknown" if status.threats_blocked is None \
        else f"{status.threats_blocked} threats blocked"
    message = f"{url}: connected in {connected_ms:.0f} ms, {state}, {blocked}"
    if not isinstance(first, WsStatus):
        extra += "; the first frame was not a status"
    if dropped:
        return WsCheck(Finding("websocket", WARN, message + extra,
                               "the Shield drops a client whose frame it rejects (a repeated frame, a suspicious "
                               "pattern, over 1 MiB) and cuts off a repeated frame for 5 minutes: if another "
                               "client keeps reconnecting, stop it; the monitor retries with a growing delay"), True)
    if enabled is False:
        return WsCheck(Finding("websocket", WARN, message + extra,
                               "protection is off in the Shield: turn it on (toggle_protection)"), True)
    return WsCheck(Finding("websocket", OK, message + extra), True)


# ---------------------------------------------------------------- 5. CPU


def check_governor(cpu_root: str = CPU_ROOT) -> Finding:
    governors: dict[str, list[int]] = {}
    for p in glob.glob(os.path.join(cpu_root, "cpu[0-9]*", "cpufreq", "scaling_governor")):
        try:
            with open(p, encoding="ascii", errors="replace") as f:
                gov = f.read().strip()
            cpu = int(os.path.basename(os.path.dirname(os.path.dirname(p)))[3:])
        except (OSError, ValueError):
            continue
        governors.setdefault(gov, []).append(cpu)
    if not governors:
        return Finding("cpu-governor", INFO, "no CPU frequency governor is readable here (a VM or container?)")
    desc = ", ".join(f"{g} on CPU {_cpu_list(c)}" for g, c in sorted(governors.items()))
    advice = "for the lowest latency: `sudo cpupower frequency-set -g performance`"
    if "powersave" in governors:
        return Finding("cpu-governor", WARN, f"{desc}: latency may be higher while the CPU clocks down", advice)
    if set(governors) - {"performance"}:
        return Finding("cpu-governor", INFO, f"{desc}: latency may be higher at low load", advice)
    return Finding("cpu-governor", OK, desc)


def check_affinity(env: Mapping[str, str]) -> list[Finding]:
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    findings = []
    if allowed is None:
        findings.append(Finding("cpu-affinity", INFO, "CPU affinity cannot be read on this platform"))
    else:
        findings.append(Finding("cpu-affinity", INFO, f"this process may run on CPU {_cpu_list(allowed)} "
                                f"({len(allowed)} of {os.cpu_count() or '?'})"))
    value = env.get(ENV_READER_CPU)
    if value is None or value == "":
        findings.append(Finding("reader-cpu", INFO, f"{ENV_READER_CPU} is not set: the reader thread is not pinned",
                                f"to pin it, set {ENV_READER_CPU} to a CPU number"
                                + (f" ({_cpu_list(allowed)})" if allowed else "")))
        return findings
    try:
        cpu = int(value.strip())
    except ValueError:
        cpu = None
    valid = cpu is not None and cpu >= 0 and (allowed is None or cpu in allowed)
    if not valid:
        choices = f"one of {_cpu_list(allowed)}" if allowed else "a CPU number"
        findings.append(Finding("reader-cpu", WARN, f"{ENV_READER_CPU}={value!r} is not a CPU this process may use; "
                                "the reader thread will not be pinned", f"set it to {choices}, or unset it"))
    else:
        findings.append(Finding("reader-cpu", OK, f"{ENV_READER_CPU}={cpu}: the reader thread may be pinned to CPU {cpu}"))
    return findings


# ---------------------------------------------------------------- 6. desktop


_XEMBED_PROBE = r"""
import ctypes, ctypes.util, sys
name = ctypes.util.find_library("X11") or "libX11.so.6"
try:
    x = ctypes.cdll.LoadLibrary(name)
except OSError:
    sys.exit(3)
x.XOpenDisplay.restype = ctypes.c_void_p; x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong; x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XGetSelectionOwner.restype = ctypes.c_ulong; x.XGetSelectionOwner.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
x.XCloseDisplay.argtypes = [ctypes.c_void_p]
d = x.XOpenDisplay(None)
if not d:
    sys.exit(2)
owner = x.XGetSelectionOwner(d, x.XInternAtom(d, b"_NET_SYSTEM_TRAY_S0", 0))
x.XCloseDisplay(d)
sys.exit(0 if owner else 1)
"""


def xembed_tray(env: Mapping[str, str], timeout: float = DBUS_TIMEOUT_S) -> str:
    """'yes', 'no', 'no-display', 'no-libx11' or 'unknown' (the probe failed or timed out)."""
    try:
        r = subprocess.run([sys.executable, "-c", _XEMBED_PROBE], env=dict(env), timeout=timeout,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return {0: "yes", 1: "no", 2: "no-display", 3: "no-libx11"}.get(r.returncode, "unknown")


def _dbus_call(env: Mapping[str, str], dest: str, path: str, method: str, *args: str,
               timeout: float = DBUS_TIMEOUT_S) -> str | None:
    """dbus-send's reply text, or None if the call failed or timed out."""
    argv = ["dbus-send", "--session", "--print-reply", f"--reply-timeout={int(timeout * 1000)}",
            f"--dest={dest}", path, method, *args]
    try:
        r = subprocess.run(argv, env=dict(env), timeout=timeout + 0.5, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def bus_has(env: Mapping[str, str], name: str) -> bool | None:
    """Does `name` have an owner on the session bus? None if the bus did not answer."""
    reply = _dbus_call(env, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                       "org.freedesktop.DBus.NameHasOwner", f"string:{name}")
    if reply is None:
        return None
    return "boolean true" in reply


def bus_activatable(env: Mapping[str, str], name: str) -> bool:
    reply = _dbus_call(env, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                       "org.freedesktop.DBus.ListActivatableNames")
    return reply is not None and f'"{name}"' in reply


def sni_host_registered(env: Mapping[str, str]) -> bool | None:
    reply = _dbus_call(env, SNI_WATCHER, "/StatusNotifierWatcher", "org.freedesktop.DBus.Properties.Get",
                       f"string:{SNI_WATCHER}", "string:IsStatusNotifierHostRegistered")
    return None if reply is None else "boolean true" in reply


def check_desktop(env: Mapping[str, str]) -> list[Finding]:
    display, wayland = env.get("DISPLAY"), env.get("WAYLAND_DISPLAY")
    if not display and not wayland:
        return [Finding("display", INFO, "no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set): "
                        "the GUI cannot start here; kgmon tail works")]
    shown = ", ".join(f"{k}={v}" for k, v in (("DISPLAY", display), ("WAYLAND_DISPLAY", wayland)) if v)
    findings = [Finding("display", OK, shown)]
    env = dict(env)
    bus = env.get("DBUS_SESSION_BUS_ADDRESS")
    if not bus and env.get("XDG_RUNTIME_DIR"):
        sock = os.path.join(env["XDG_RUNTIME_DIR"], "bus")
        try:
            if stat.S_ISSOCK(os.stat(sock).st_mode):
                bus = env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={sock}"
        except OSError:
            pass
    have_sni = have_notify = None
    if not bus:
        findings.append(Finding("dbus", WARN, "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)",
                                "no StatusNotifierItem tray icon and no desktop notifications without it: "
                                "start the app from your desktop session"))
    elif shutil.which("dbus-send", path=env.get("PATH")) is None:
        findings.append(Finding("dbus", INFO, f"session bus {bus}; dbus-send is not installed, so the tray host "
                                "and the notification service were not checked",
                                "install dbus (Debian: `apt-get install dbus`) to let doctor check them"))
    else:
        have_sni = bus_has(env, SNI_WATCHER)
        if have_sni is None:
            findings.append(Finding("dbus", WARN, f"the session bus {bus} does not answer",
                                    "log out and in again, or start the app from your desktop session"))
        else:
            findings.append(Finding("dbus", OK, f"session bus {bus}"))
            have_notify = bus_has(env, NOTIFICATIONS)
            if have_sni:
                have_sni = sni_host_registered(env) is not False  # a watcher without a host shows nothing
    xembed = xembed_tray(env) if display else "no-display"
    if have_sni:
        findings.append(Finding("tray", OK, f"a StatusNotifierItem host is there ({SNI_WATCHER})"))
    elif xembed == "yes":
        findings.append(Finding("tray", OK, "an XEmbed system tray owns _NET_SYSTEM_TRAY_S0"))
    else:
        why = []
        if have_sni is False:
            why.append("no StatusNotifierItem host")
        if xembed == "no":
            why.append("no XEmbed tray")
        elif xembed == "no-display" and display:
            why.append(f"the X display {display} does not open")
        elif xembed == "no-libx11":
            why.append("libX11 is missing, XEmbed not checked")
        detail = f" ({', '.join(why)})" if why else ""
        findings.append(Finding("tray", WARN, f"no system tray found{detail}: the app will run as a normal window",
                                "enable your desktop's tray / StatusNotifierItem support (GNOME: the "
                                "AppIndicator extension) to get the tray icon"))
    if have_notify is True:
        findings.append(Finding("notifications", OK, f"a notification service is there ({NOTIFICATIONS})"))
    elif have_notify is False:
        if bus_activatable(env, NOTIFICATIONS):
            findings.append(Finding("notifications", OK, f"{NOTIFICATIONS} starts on demand"))
        else:
            findings.append(Finding("notifications", WARN, f"no notification service ({NOTIFICATIONS}): "
                                    "threats show in the window only",
                                    "install or start a notification daemon (dunst, mako, your desktop's own)"))
    return findings


# ---------------------------------------------------------------- all of it


def check_history(path: str | os.PathLike | None = None) -> Finding:
    """The threat history: there, a history, readable, intact (quick_check), writable, how big.
    It only reads: what the app would refuse or move aside is said, never done here."""
    from kindlyguard_monitor.history import db, query
    from kindlyguard_monitor.history.schema import NewerSchema

    where = db.history_path(path)
    elsewhere = f"or set {db.PATH_ENV} to another file"
    try:
        exists = db.check_path(where)
    except db.Refused as exc:
        return Finding("history", FAIL, str(exc), f"point {db.PATH_ENV} at a file, such as "
                       f"{where / db.FILE_NAME if where.is_dir() else '~/kindlyguard-history.sqlite3'}")
    except OSError as exc:
        return Finding("history", FAIL, f"the threat history {where} cannot be looked at: {exc.strerror or exc}",
                       f"check the folders above it, {elsewhere}")
    if not exists:
        if os.access(_nearest_dir(where), os.W_OK):
            return Finding("history", INFO, f"no threat history yet at {where}; kgmon starts it when it starts")
        return Finding("history", FAIL, f"the threat history cannot be created at {where}: the folder is not "
                       "writable", f"make {_nearest_dir(where)} writable, {elsewhere}")
    if not db.is_sqlite(where):
        if db.is_ours(where):
            return Finding("history", FAIL, f"the threat history {where} is damaged (not an SQLite database)",
                           "kgmon moves it aside (history.sqlite3.corrupt-<time>) and starts a new one at its "
                           "next start")
        return Finding("history", FAIL, f"the threat history {where} is not an SQLite database; kgmon leaves "
                       "it as it is and keeps no history", f"move that file away, {elsewhere}")
    try:
        with contextlib.closing(db.open_reader(where)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            db.check_contents(conn)  # ours, and a version this kgmon knows
            rows = query.count(conn)
            holes = conn.execute("SELECT count(*), coalesce(sum(missed), 0), coalesce(sum(corrupt), 0) "
                                 "FROM gaps").fetchone()
    except NewerSchema as exc:
        return Finding("history", FAIL, f"the threat history {where}: {exc}; kgmon leaves it as it is",
                       f"use that newer kgmon, {elsewhere}")
    except db.Unusable as exc:
        return Finding("history", FAIL, f"the threat history {where}: {exc}; kgmon leaves it as it is",
                       f"point {db.PATH_ENV} at another file")
    except sqlite3.Error as exc:
        if db.is_ours(where) and db.writable(where):
            advice = "kgmon moves it aside (history.sqlite3.corrupt-<time>) and starts a new one at its next start"
        else:
            advice = f"kgmon leaves it as it is (not provably its own file, or read-only): move it away, {elsewhere}"
        return Finding("history", FAIL, f"the threat history at {where} cannot be read: {exc}", advice)
    if not db.writable(where):
        real = Path(os.path.realpath(where))
        return Finding("history", FAIL, f"the threat history at {where} is read-only: shown, not saved "
                       f"(new threats are not kept)",
                       f"make {real.parent} and {real.name} writable for this user, {elsewhere}")
    message = (f"threat history {where}: {_count(rows, 'threat')}, "
               f"{db.size_bytes(where) / 2**20:.1f} MiB, intact")
    if holes[0]:
        message += f"; {_count(holes[0], 'known hole')} ({holes[1]} missed, {holes[2]} corrupt events not kept)"
    return Finding("history", OK, message)


def _nearest_dir(path) -> str:
    """The nearest existing folder at or above path's folder."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def diagnose(path: str, ws_url: str | None = None, timeout: float = DEFAULT_WS_TIMEOUT_S,
             env: Mapping[str, str] | None = None) -> list[Finding]:
    env = os.environ if env is None else env
    findings: list[Finding] = []
    url_problem = None
    if not ws_url:
        ws_url, url_problem = default_ws_url(env)

    broken = import_problem()
    if broken is not None:
        ring = RingCheck(broken, None, RingError(Status.IO, path, "kindlyguard_monitor._ring does not load"))
    else:
        ring = check_ring(path)
    if check_ws_host(ws_url) is None:
        ws = check_websocket(ws_url, timeout)
    else:  # not this machine: the doctor reports it and sends nothing off the host
        ws = WsCheck(Finding("websocket", WARN, f"{ws_url}: not checked, it is not on this machine",
                             "the Shield's WebSocket is on 127.0.0.1"), False)
    ring_finding = ring.finding
    if ring.error is not None and ring.error.status in (Status.NOT_FOUND, Status.CLOSED) and ws.usable:
        ring_finding = ring_finding._replace(
            level=WARN, advice=f"the monitor falls back to the WebSocket at {ws_url} (slower); "
            "run the Shield with shared memory for the fast path")
    findings.append(ring_finding)
    if ring.error is not None and ring.error.status != Status.NOT_FOUND:
        facts = ring_file_facts(path)
        if facts:
            findings.append(Finding("ring-file", INFO, facts))
    if broken is None:
        findings.extend(check_writer(path, ws_usable=ws.usable))
    if ring.reader is not None:
        try:
            findings.append(probe_events(ring.reader))
        except (OSError, ValueError, RuntimeError) as exc:
            findings.append(Finding("probe", WARN, f"the probe could not read the ring: {exc}"))
        finally:
            ring.reader.close()
    ws_finding = ws.finding
    if not ws.usable and ring.error is not None and ws_finding.level == WARN:
        ws_finding = ws_finding._replace(level=FAIL)  # neither transport works: the monitor shows nothing
    findings.append(ws_finding)
    if url_problem is not None:
        findings.append(url_problem)
    host = check_ws_host(ws_url)
    if host is not None:
        findings.append(host)
    findings.append(check_governor())
    findings.extend(check_affinity(env))
    findings.extend(check_desktop(env))
    findings.append(check_history())
    return findings
