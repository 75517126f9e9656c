"""`kgmon doctor` as a user runs it: a real process against a real ring and a
real WebSocket server.

The ring is written by this test process (kindlyguard_monitor.ring.pyring.PyWriter, its
heartbeat kept in a thread), so the writer the doctor reports is our own pid;
one case uses `kgmon demo` (the C writer) instead. The WebSocket is a tiny
websockets server on 127.0.0.1:0 that speaks the Shield's protocol (status
first, then an answer to get_status). "Refused" is a TCP socket that is bound
but not listening: the kernel refuses connections to it, and no other process
can take the port while the test holds it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve

from kindlyguard_monitor.doctor import check_governor
from kindlyguard_monitor.ring.pyring import (
    OFF_HEARTBEAT_MONO,
    OFF_WRITER_DROPPED,
    SLOT_TEXT_OFFSET,
    PyWriter,
)
from kindlyguard_monitor.threats import HIGH, Threat
from conftest import OutputWatcher, run_kgmon, start_kgmon, wait_for, wait_for_file

LINE = re.compile(r"^(ok {4}|warn  |FAIL  |info  )[a-z][a-z-]*: \S")
# Variables a developer's shell may hold that would change what doctor finds.
_SCRUB = ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "KINDLYGUARD_READER_CPU",
          "KINDLYGUARD_WS_URL", "SHIELD_WS_PORT")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(extra)
    return env


def doctor(ring_path, ws_url: str | None, *args, env: dict | None = None) -> tuple[int, dict, str]:
    """Run `kgmon doctor --json`; (exit status, parsed output, stderr)."""
    argv = ["doctor", "--json", "--shm-path", ring_path, "--timeout", "3", *args]
    if ws_url is not None:
        argv += ["--ws-url", ws_url]
    r = run_kgmon(*argv, env=env if env is not None else clean_env(), timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"findings", "ok"}
    for f in out["findings"]:
        assert set(f) == {"check", "level", "message", "advice"}, f
        assert f["level"] in ("ok", "warn", "fail", "info"), f
    assert out["ok"] == (r.returncode == 0), (r.returncode, out)
    return r.returncode, out, r.stderr


def by_check(out: dict, check: str) -> dict:
    found = [f for f in out["findings"] if f["check"] == check]
    assert len(found) == 1, (check, out["findings"])
    return found[0]


def levels(out: dict) -> dict:
    return {f["check"]: f["level"] for f in out["findings"]}


# ---- the ring, written by this process ----


@contextmanager
def py_ring(path, events: int = 5, heartbeat: bool = True):
    """A healthy v2 ring at path, `events` threats published, the heartbeat kept fresh."""
    w = PyWriter.create(path, slot_size=512, slot_count=64)
    stop = threading.Event()
    beat = threading.Thread(target=lambda: [w.heartbeat() for _ in iter(lambda: stop.wait(0.1), True)],
                            daemon=True)
    try:
        if events:
            w.publish([Threat(4, HIGH, True, "mcp:tools/call", f"threat {i}", 1_700_000_000_000_000 + i)
                       for i in range(events)])
        if heartbeat:
            beat.start()
        yield w
    finally:
        stop.set()
        if beat.is_alive():
            beat.join(5)
        w.close()


# ---- the WebSocket ----


class ShieldStandIn:
    """Speaks the Shield's protocol: status on connect, status again for get_status."""

    def __init__(self, protection_enabled: bool = True, threats_blocked: int = 3):
        self.status = json.dumps({"type": "status", "protection_enabled": protection_enabled,
                                  "threats_blocked": threats_blocked})
        self.commands: list[str] = []
        self.server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.port = self.server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle(self, ws) -> None:
        try:
            ws.send(self.status)
            for message in ws:
                kind = json.loads(message).get("type")
                self.commands.append(kind)
                if kind == "get_status":
                    ws.send(self.status)
        except (ConnectionClosed, ValueError):
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def shield():
    s = ShieldStandIn()
    yield s
    s.close()


@pytest.fixture
def refused_url():
    """A loopback port that refuses connections for as long as the test runs."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))  # bound, never listening: connect() gets ECONNREFUSED
    yield f"ws://127.0.0.1:{s.getsockname()[1]}"
    s.close()


# ---- the cases ----


def test_healthy_ring_and_websocket_exit_0(ring_path, shield):
    with py_ring(ring_path, events=5):
        code, out, _ = doctor(ring_path, shield.url)
    assert code == 0 and out["ok"] is True, out
    ring = by_check(out, "ring")
    assert ring["level"] == "ok"
    assert f"{ring_path}, format v2, 64 slots x 512 B (0.0 MiB)" in ring["message"]
    assert "mode 0600" in ring["message"] and "directory mode 0700" in ring["message"]
    writer = by_check(out, "writer")
    assert writer["level"] == "ok", writer
    assert f"pid {os.getpid()} " in writer["message"] and "running" in writer["message"]
    assert "5 events published" in writer["message"]
    probe = by_check(out, "probe")
    assert probe["level"] == "ok" and "5 delivered, 0 missed, 0 corrupt" in probe["message"], probe
    ws = by_check(out, "websocket")
    assert ws["level"] == "ok", ws
    assert "protection enabled" in ws["message"] and "3 threats blocked" in ws["message"], ws
    assert shield.commands == []  # the status sent on connect is the answer: the Shield answers no command
    assert not any(f["level"] == "fail" for f in out["findings"])


def test_nothing_running_exit_1(ring_path, refused_url):
    code, out, _ = doctor(ring_path, refused_url)
    assert code == 1 and out["ok"] is False
    ring = by_check(out, "ring")
    assert ring["level"] == "fail" and "no KindlyGuard Shield" in ring["message"], ring
    assert "kgmon demo" in ring["advice"]
    writer = by_check(out, "writer")
    assert writer["level"] == "fail" and "no Shield running" in writer["message"], writer
    ws = by_check(out, "websocket")
    assert ws["level"] == "fail" and "connection refused" in ws["message"], ws  # neither transport works
    assert not any(f["check"] == "probe" for f in out["findings"])


def test_missing_ring_with_websocket_is_only_a_warning(ring_path, shield):
    code, out, _ = doctor(ring_path, shield.url)
    assert code == 0, out
    ring = by_check(out, "ring")
    assert ring["level"] == "warn" and "no KindlyGuard Shield" in ring["message"], ring
    assert "falls back to the WebSocket" in ring["advice"]
    assert by_check(out, "writer")["level"] == "info"
    assert by_check(out, "websocket")["level"] == "ok"


def test_unsafe_permissions_fail_with_chmod_advice(ring_path, refused_url):
    with py_ring(ring_path):
        os.chmod(ring_path, 0o644)
        code, out, _ = doctor(ring_path, refused_url)
    assert code == 1
    ring = by_check(out, "ring")
    assert ring["level"] == "fail" and "permissions" in ring["message"] and "0644" in ring["message"], ring
    assert f"chmod 600 {ring_path}" in ring["advice"], ring
    facts = by_check(out, "ring-file")  # what the file is, for whoever fixes it
    assert "mode 0644" in facts["message"] and "a regular file" in facts["message"]
    assert by_check(out, "writer")["level"] == "ok"  # the writer itself is fine


def test_symlink_ring_is_refused(ring_dir, refused_url):
    target = ring_dir / "real.shm"
    link = ring_dir / "kindly-guard.shm"
    with py_ring(target):
        link.symlink_to(target)
        code, out, _ = doctor(link, refused_url)
    assert code == 1
    ring = by_check(out, "ring")
    assert ring["level"] == "fail" and "not a regular file" in ring["message"], ring
    assert "symbolic link" in by_check(out, "ring-file")["message"]


def test_stale_heartbeat_fails_gone_or_stuck(ring_path, refused_url):
    with py_ring(ring_path, heartbeat=False) as w:
        w.set_header_field(OFF_HEARTBEAT_MONO, "Q", time.monotonic_ns() - 10_000_000_000)
        code, out, _ = doctor(ring_path, refused_url)
    assert code == 1
    ring = by_check(out, "ring")
    assert ring["level"] == "fail" and "gone or stuck" in ring["message"], ring
    writer = by_check(out, "writer")
    # Our own pid: alive, so the writer is stuck rather than gone.
    assert writer["level"] == "fail" and f"pid {os.getpid()} " in writer["message"], writer
    assert "stuck" in writer["message"]


def test_websocket_refused_with_healthy_ring_is_a_warning(ring_path, refused_url):
    with py_ring(ring_path):
        code, out, _ = doctor(ring_path, refused_url)
    assert code == 0, out
    assert by_check(out, "ring")["level"] == "ok"
    ws = by_check(out, "websocket")
    assert ws["level"] == "warn" and "connection refused" in ws["message"], ws
    assert ws["advice"]


def test_websocket_that_never_answers_times_out(ring_path):
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the TCP handshake; nobody ever speaks HTTP
    try:
        with py_ring(ring_path):
            r = run_kgmon("doctor", "--json", "--shm-path", ring_path, "--timeout", "0.5",
                          "--ws-url", f"ws://127.0.0.1:{silent.getsockname()[1]}", env=clean_env())
    finally:
        silent.close()
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    ws = by_check(json.loads(r.stdout), "websocket")
    assert ws["level"] == "warn" and "timed out" in ws["message"], ws


def test_http_server_is_a_bad_handshake(ring_path):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def answer():
        try:
            conn, _ = srv.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        with py_ring(ring_path):
            code, out, _ = doctor(ring_path, f"ws://127.0.0.1:{srv.getsockname()[1]}")
    finally:
        srv.close()
        t.join(5)
    assert code == 0
    ws = by_check(out, "websocket")
    assert ws["level"] == "warn" and "bad handshake" in ws["message"] and "404" in ws["message"], ws


def test_protection_disabled_is_a_warning(ring_path):
    off = ShieldStandIn(protection_enabled=False, threats_blocked=0)
    try:
        with py_ring(ring_path):
            code, out, _ = doctor(ring_path, off.url)
    finally:
        off.close()
    assert code == 0
    ws = by_check(out, "websocket")
    assert ws["level"] == "warn" and "protection DISABLED" in ws["message"], ws


def test_shield_ws_port_sets_the_default_url(ring_path, shield):
    code, out, _ = doctor(ring_path, None, env=clean_env(SHIELD_WS_PORT=str(shield.port)))
    ws = by_check(out, "websocket")
    assert ws["level"] == "ok" and ws["message"].startswith(f"ws://127.0.0.1:{shield.port}:"), ws
    code, out, _ = doctor(ring_path, None, env=clean_env(KINDLYGUARD_WS_URL=shield.url, SHIELD_WS_PORT="1"))
    assert by_check(out, "websocket")["message"].startswith(shield.url + ":")


def test_non_loopback_url_warns(ring_path):
    with py_ring(ring_path):
        r = run_kgmon("doctor", "--json", "--shm-path", ring_path, "--timeout", "0.5",
                      "--ws-url", "ws://192.0.2.1:9955", env=clean_env())  # TEST-NET-1: nobody
    assert "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    host = by_check(out, "websocket-host")
    assert host["level"] == "warn" and "only listens on 127.0.0.1" in host["message"], host


def test_writer_dropped_and_truncated_warn(ring_path, shield):
    with py_ring(ring_path, events=0) as w:
        w.publish([Threat(1, HIGH, False, "s", "x" * 5000, 1)])  # details over a 512-byte slot: cut
        w.set_header_field(OFF_WRITER_DROPPED, "Q", 7)
        code, out, _ = doctor(ring_path, shield.url)
    assert code == 0, out
    dropped = by_check(out, "writer-dropped")
    assert dropped["level"] == "warn" and "refused 7 events" in dropped["message"], dropped
    truncated = by_check(out, "writer-truncated")
    assert truncated["level"] == "warn" and "cut 1 text" in truncated["message"], truncated
    assert "7 refused, 1 truncated" in by_check(out, "writer")["message"]


def test_corrupt_event_in_probe_warns(ring_path, shield):
    with py_ring(ring_path, events=8) as w:
        raw = bytearray(w.read_raw_slot(2))
        raw[SLOT_TEXT_OFFSET] ^= 0xFF  # the text no longer matches the slot's CRC
        w.write_raw_slot(2, bytes(raw))
        code, out, _ = doctor(ring_path, shield.url)
    assert code == 0
    probe = by_check(out, "probe")
    assert probe["level"] == "warn" and "7 delivered, 0 missed, 1 corrupt" in probe["message"], probe
    assert "probe" in probe["message"]


@pytest.mark.parametrize("value", ["abc", "99999", "-1"])
def test_invalid_reader_cpu_warns(ring_path, shield, value):
    code, out, _ = doctor(ring_path, shield.url, env=clean_env(KINDLYGUARD_READER_CPU=value))
    cpu = by_check(out, "reader-cpu")
    assert cpu["level"] == "warn" and "KINDLYGUARD_READER_CPU" in cpu["message"], cpu
    assert "cpu-affinity" in levels(out)


def test_valid_reader_cpu_is_ok(ring_path, shield):
    first = min(os.sched_getaffinity(0))
    code, out, _ = doctor(ring_path, shield.url, env=clean_env(KINDLYGUARD_READER_CPU=str(first)))
    cpu = by_check(out, "reader-cpu")
    assert cpu["level"] == "ok" and f"CPU {first}" in cpu["message"], cpu
    code, out, _ = doctor(ring_path, shield.url)
    assert by_check(out, "reader-cpu")["level"] == "info"  # unset: just said


def test_no_display_is_info_about_the_gui(ring_path, shield):
    code, out, _ = doctor(ring_path, shield.url)  # clean_env has no DISPLAY
    display = by_check(out, "display")
    assert display["level"] == "info", display
    assert "GUI cannot start here" in display["message"] and "kgmon tail works" in display["message"]
    assert not {"tray", "dbus", "notifications"} & set(levels(out))


def test_desktop_without_tray_or_notifier_warns(ring_path, shield, tmp_path):
    """A display and a private session bus with nothing on it: no tray, no notifications."""
    if not (shutil.which("dbus-daemon") and shutil.which("dbus-send")):
        pytest.skip("dbus-daemon / dbus-send not installed")
    sock = tmp_path / "bus"
    conf = tmp_path / "bus.conf"
    conf.write_text(f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={sock}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
</busconfig>
""")
    bus = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={conf}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for_file(sock, 10)
        # DISPLAY names an X server that does not exist: the XEmbed check finds no tray.
        env = clean_env(DISPLAY=":93571", DBUS_SESSION_BUS_ADDRESS=f"unix:path={sock}")
        code, out, _ = doctor(ring_path, shield.url, env=env)
    finally:
        bus.kill()
        bus.wait(10)
    assert by_check(out, "display")["level"] == "ok"
    assert by_check(out, "dbus")["level"] == "ok"
    tray = by_check(out, "tray")
    assert tray["level"] == "warn" and "normal window" in tray["message"], tray
    assert by_check(out, "notifications")["level"] == "warn"


def test_display_without_session_bus_warns(ring_path, shield, tmp_path):
    env = clean_env(DISPLAY=":93571", XDG_RUNTIME_DIR=str(tmp_path))  # no bus socket there either
    code, out, _ = doctor(ring_path, shield.url, env=env)
    assert by_check(out, "dbus")["level"] == "warn"
    assert "normal window" in by_check(out, "tray")["message"]


def test_text_output_one_line_per_finding_no_traceback(ring_path, shield, refused_url):
    for url, want in ((refused_url, 1), (shield.url, 0)):
        with py_ring(ring_path) if want == 0 else _nothing():
            r = run_kgmon("doctor", "--shm-path", ring_path, "--ws-url", url, env=clean_env())
            _, out, _ = doctor(ring_path, url)
        assert r.returncode == want, (r.stdout, r.stderr)
        assert "Traceback" not in r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == len(out["findings"]), (lines, out)
        for line in lines:
            assert LINE.match(line), line
        assert [line.split(":")[0].split()[-1] for line in lines] == [f["check"] for f in out["findings"]]
        if want == 0:
            assert lines[0].startswith(f"ok    ring: {ring_path}, format v2, 64 slots x 512 B")
        else:
            assert lines[0].startswith("FAIL  ring: no ring at") and " — " in lines[0]
            assert "problem" in r.stderr


@contextmanager
def _nothing():
    yield None


def test_real_c_writer(ring_path, refused_url):
    """`kgmon demo` (the C writer) as the Shield: the doctor names its pid."""
    help_text = run_kgmon("demo", "--help").stdout
    extra = ["--no-ws"] if "--no-ws" in help_text else []
    demo = start_kgmon("demo", "--shm-path", ring_path, "--rate", "50", "--quiet", *extra)
    wait_for_file(ring_path)

    def published():
        code, out, _ = doctor(ring_path, refused_url)
        return out if "events published" in by_check(out, "writer")["message"] \
            and by_check(out, "probe")["level"] == "ok" and not out["findings"][0]["level"] == "fail" else None

    out = wait_for(published, 30, "doctor to see the demo writer", interval=0.2)
    writer = by_check(out, "writer")
    assert writer["level"] == "ok" and f"pid {demo.pid} " in writer["message"], writer
    assert by_check(out, "ring")["level"] == "ok"
    demo.terminate()
    demo.wait(30)
    code, out, _ = doctor(ring_path, refused_url)  # closed cleanly, and nothing else runs
    assert code == 1
    assert by_check(out, "ring")["level"] == "fail" and "shut down" in by_check(out, "ring")["message"]
    assert by_check(out, "writer")["level"] == "fail" and "closed" in by_check(out, "writer")["message"]


def test_real_demo_ring_and_websocket(ring_path):
    """`kgmon demo` serving both transports: everything ok, exit 0."""
    if "--ws-port" not in run_kgmon("demo", "--help").stdout:
        pytest.skip("kgmon demo cannot serve the WebSocket yet")
    demo = start_kgmon("demo", "--shm-path", ring_path, "--ws-port", "0", "--rate", "20")
    watcher = OutputWatcher(demo)
    url = watcher.wait_stderr(lambda err: (re.search(r"ws://127\.0\.0\.1:\d+", err) or [None])[0], 30,
                              "the demo to name its WebSocket")
    wait_for_file(ring_path)
    code, out, _ = doctor(ring_path, url)
    assert code == 0, out
    assert levels(out)["ring"] == levels(out)["writer"] == levels(out)["websocket"] == "ok", out
    assert f"pid {demo.pid} " in by_check(out, "writer")["message"]
    assert "protection enabled" in by_check(out, "websocket")["message"]


def test_governor_levels(tmp_path):
    assert check_governor(str(tmp_path)).level == "info"  # nothing readable
    for cpu, gov in ((0, "performance"), (1, "performance")):
        d = tmp_path / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text(gov + "\n")
    f = check_governor(str(tmp_path))
    assert f.level == "ok" and "performance on CPU 0-1" in f.message, f
    (tmp_path / "cpu1" / "cpufreq" / "scaling_governor").write_text("schedutil\n")
    assert check_governor(str(tmp_path)).level == "info"
    (tmp_path / "cpu1" / "cpufreq" / "scaling_governor").write_text("powersave\n")
    f = check_governor(str(tmp_path))
    assert f.level == "warn" and "latency may be higher" in f.message and "performance" in f.advice, f


def test_history_check(tmp_path):
    """The doctor's view of the threat history: absent, healthy (with known holes), damaged."""
    from kindlyguard_monitor.doctor import FAIL, INFO, OK, check_history
    from kindlyguard_monitor.history.store import HistoryStore
    from kindlyguard_monitor.transport.items import Batch

    path = tmp_path / "h" / "history.sqlite3"
    found = check_history(path)
    assert found.level == INFO and "no threat history yet" in found.message

    from history_data import ring_batch, ring_event

    store = HistoryStore(path).start()
    store.submit(ring_batch([ring_event(i) for i in range(3)], 5))
    store.record_counters(3, 0, 0, "shm")
    store.record_counters(10, 4, 1, "shm")
    assert store.flush(10)
    store.close()
    found = check_history(path)
    assert found.level == OK, found
    assert "3 threats" in found.message and "intact" in found.message
    assert "1 known hole (4 missed, 1 corrupt" in found.message

    data = path.read_bytes()
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        side.unlink(missing_ok=True)
    path.write_bytes(data[:100] + b"\xff" * (len(data) - 100))  # our header, pages scribbled over
    found = check_history(path)
    assert found.level == FAIL and "moves it aside" in found.advice, found

    path.write_bytes(b"garbage" * 1000)  # not SQLite at a path the user named: not ours to move
    found = check_history(path)
    assert found.level == FAIL and "not an SQLite database" in found.message and "leaves it" in found.message
