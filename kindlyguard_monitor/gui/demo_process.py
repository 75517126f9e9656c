"""The built-in demo writer (`kgmon --demo`, the tray's Demo toggle) as a child process.

The child is `kgmon demo --quiet --parent-pid <ours>`: it watches our pid and
stops if the app is killed, so it never outlives us; on a normal quit the app
sends SIGTERM and waits for it.
"""

from __future__ import annotations

import os
import subprocess

from kindlyguard_monitor import child_process


def demo_command(shm_path: str) -> list[str]:
    """How to start the demo writer, from a source tree, an install or a frozen app."""
    return child_process.kgmon_command("demo", "--quiet", "--shm-path", shm_path, "--parent-pid", str(os.getpid()))


class DemoWriter:
    """The built-in demo writer as a child process, stopped when the app quits."""

    def __init__(self, shm_path: str):
        self.shm_path = shm_path
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if not self.running:
            self.proc = subprocess.Popen(demo_command(self.shm_path), stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            child_process.end(self.proc, 5)
            self.proc = None
