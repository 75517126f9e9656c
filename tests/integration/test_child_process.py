"""child_process.end: a child that obeys SIGTERM ends by it; one that ignores it is
killed after the grace period; either way it is reaped."""

from __future__ import annotations

import signal
import subprocess
import sys

from kindlyguard_monitor import child_process

IGNORES_TERM = ("import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); sys.stdin.read()")


def test_a_child_that_obeys_ends_by_sigterm():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert child_process.end(proc, 30) == -signal.SIGTERM
    assert proc.poll() == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period():
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "ready\n"  # its handler is in place
    assert child_process.end(proc, 0.2) == -signal.SIGKILL
    proc.stdout.close()
    proc.stdin.close()


def test_no_signal_waits_for_a_child_asked_another_way():
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    proc.stdin.close()  # EOF: it ends by itself
    assert child_process.end(proc, 30, sig=None) == 0
