"""Where the ring lives: the spec's per-platform path, unless overridden."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kindlyguard_monitor.vocabulary import ENV_SHM_PATH

FILE_NAME = "kindly-guard.shm"


def platform_ring_dir(platform: str = sys.platform) -> Path:
    """The directory the spec names for this platform."""
    if platform.startswith("linux"):
        return Path("/dev/shm/kindly-guard")
    if platform == "darwin":
        return Path("/tmp/kindly-guard-shm")
    if platform in ("win32", "cygwin"):
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "KindlyGuard" / "shm"
    return Path("/tmp/kindly-guard-shm")


def default_ring_path(override: str | os.PathLike | None = None) -> Path:
    """--shm-path, else $KINDLYGUARD_SHM_PATH, else the platform path."""
    if override:
        return Path(override)
    env = os.environ.get(ENV_SHM_PATH)
    if env:
        return Path(env)
    return platform_ring_dir() / FILE_NAME


def lock_path_for(ring_path: str | os.PathLike) -> Path:
    """The writer's lock file sits beside the ring: kindly-guard.shm -> kindly-guard.lock
    (the spec's name), any other NAME.shm -> NAME.lock, so test rings in one folder do
    not share a lock."""
    p = Path(ring_path)
    return p.with_suffix(".lock") if p.suffix else p.with_name(p.name + ".lock")
