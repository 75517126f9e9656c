"""Our child processes: how to start `kgmon` as one (kgmon_command), and ending one
we started: ask it to end, give it a grace period, then kill it; always reaped (no
zombie, no process left behind)."""

from __future__ import annotations

import signal
import subprocess
import sys


def kgmon_command(*args: str) -> list[str]:
    """How to run `kgmon ARGS` as a child process, from a source tree, an install or a frozen app."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "kindlyguard_monitor", *args]


def end(proc: subprocess.Popen, grace_s: float, sig: int | None = signal.SIGTERM) -> int:
    """Send `sig` to `proc` while it runs (None: it was asked another way already, e.g.
    on its stdin), wait up to `grace_s` seconds, then SIGKILL it. Returns its exit status."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
