"""Test helper: an independent stand-in for the upstream Shield's v1 shared-memory writer.

tests/fixtures/shield_v1_writer.c was written from the v1 format's facts (docs/shm-ring-v1.md) and
the upstream Shield's source, without looking at this project's ring code, so a reader that passes
against it follows the real format and not our own assumptions. Usage:

    exe = build(tmp_path_factory.mktemp("v1writer"))
    proc = run(exe, ring_dir / "kindly-guard.shm", count=100, linger=-1, log=tmp_path / "log.jsonl")
    wait_done(proc)              # "done 100" on its stdout: every event attempted
    entries = read_log(tmp_path / "log.jsonl")
    stop(proc)                   # SIGTERM: the lock file is removed, the ring file kept; exit 0

Log entries (one per event attempted, flushed before the event is stored): n, written (false:
dropped by the full rule), offset (write_pos used, bytes from 896), bytes_written (344; 264 for
the event that runs past the file's end; 0 when dropped), timestamp_us, threat_type, severity,
blocked, source_hex (64 raw bytes), details_hex (256 raw bytes), checksum. For the cut event
(offset 2,095,992 on Linux) only its first 264 bytes are in the file: no checksum there.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "fixtures" / "shield_v1_writer.c"
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror"]

_built: dict[str, Path] = {}  # source digest -> binary, so a test session compiles once


def build(tmp_dir) -> Path:
    """Compile the writer into tmp_dir (once per session and source) and return the binary."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    cached = _built.get(digest)
    if cached is not None and cached.exists():
        return cached
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("shield_v1_writer needs a C compiler: no cc, gcc or clang on PATH (Debian: apt-get install gcc)")
    out = Path(tmp_dir) / f"shield_v1_writer-{digest}"
    done = subprocess.run([cc, *CFLAGS, "-o", str(out), str(SOURCE)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"compiling {SOURCE.name} failed:\n{done.stderr}")
    _built[digest] = out
    return out


def run(binary, path, count: int, rate: float = 0, seed: int = 1, linger: float = 0, log=None,
        umask: int | None = None) -> subprocess.Popen:
    """Start the writer on ring file `path` (its folder is created; the lock file goes beside it).

    rate: events/s, 0 = as fast as possible; linger: seconds to stay alive after "done N"
    (negative: until SIGTERM/SIGINT); log: a file for the per-event JSON lines; umask: the
    child's umask (None: inherited). stdout and stderr are pipes (text).
    """
    cmd = [str(binary), str(path), "--count", str(count), "--rate", str(rate), "--seed", str(seed),
           "--linger", str(linger)]
    if log is not None:
        cmd += ["--log", str(log)]
    extra = {} if umask is None else {"umask": umask}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **extra)


def wait_done(proc: subprocess.Popen, timeout: float = 30) -> int:
    """Wait for the writer's "done N" line and return N; fail with its stderr if it exits first."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"shield_v1_writer printed no 'done' line within {timeout} s")
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if line.startswith("done "):
                return int(line.split()[1])
            if line == "":
                proc.wait(timeout=5)
                raise AssertionError(f"shield_v1_writer exited ({proc.returncode}) before 'done': {proc.stderr.read()}")
    finally:
        sel.close()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Signal the writer (upstream's Drop then runs) and return its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()
    return proc.returncode


def read_log(path) -> list[dict]:
    """The log's entries; a last line still being written (no newline yet) is left out."""
    if not os.path.exists(path):
        return []
    text = Path(path).read_text(encoding="ascii")
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line]


def upstream_text(hex_field: str) -> str:
    """A source/details field as the upstream reader turns it into a string:
    String::from_utf8_lossy (a cut or invalid sequence becomes U+FFFD) with trailing NULs trimmed."""
    return bytes.fromhex(hex_field).decode("utf-8", errors="replace").rstrip("\0")
