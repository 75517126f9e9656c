"""Around the app's start: which WebSocket URL it uses, the objects start-up
leaves behind taken out of the garbage collector's sight, and how long the
process took to show its window (`kgmon bench --gui` reads that log line).
Used by kindlyguard_monitor.gui.launch.run()."""

from __future__ import annotations

import gc
import logging
import os
import sys
import time

from kindlyguard_monitor.transport.urls import default_ws_url, ws_url_problem

log = logging.getLogger(__name__)
# The collector's thresholds once started (Python's default: 700, 10, 10). Under the
# 100,000/s flood the reader thread made ~300,000 tracked objects a second, queued for
# the GUI thread a moment: with the default, ~1,000 young collections a second promoted
# them, and the full collections that followed (up to 400 ms each, the GIL held) stalled
# the GUI thread and the reader alike (`kgmon bench --gui`, docs/benchmarks.md). The ring's
# events themselves are untracked now (event.from_ring); what the flood still makes is not.
GC_THRESHOLDS = (20_000, 20, 100)
# How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The
# reader thread needs the GIL back after every poll, and under a flood the GUI thread and the
# history's writer thread both want it: with 5 ms the reader's longest stall in the 100,000/s
# flood was 18-30 ms (median 24 of 7 runs; once 5,943 events missed), with 1 ms 13-20 ms (median
# 16 of 5, none missed), the event loop's lateness p99 35 -> 31 ms (docs/benchmarks.md).
GIL_SWITCH_INTERVAL_S = 0.001


def prepare_for_floods() -> None:
    """Move everything alive after start-up (modules, Qt wrappers: ~40,000 objects)
    out of the garbage collector's sight, collect less often (GC_THRESHOLDS), and let
    a thread waiting for the GIL have it sooner (GIL_SWITCH_INTERVAL_S). Under a flood
    the full collections then scan only what the flood made, and seldom: such a pause,
    or a wait for the GIL, stalls the reader, and a long enough stall loses events."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def ms_since_process_start() -> float:
    if sys.platform.startswith("linux"):
        # /proc start ticks against CLOCK_BOOTTIME: psutil's create_time() rests on the boot
        # time rounded to whole seconds, which put ~150 ms of error into this figure.
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000
    import psutil

    return (time.time() - psutil.Process().create_time()) * 1000


def choose_ws_url(option: str | None, saved: str | None) -> str:
    """--ws-url (checked by the parser), else the saved setting, else the default; a saved
    URL the client cannot use (a settings file edited by hand) is ignored, with a warning."""
    if not option and saved:
        problem = ws_url_problem(saved)
        if problem is not None:
            log.warning("ignoring the WebSocket URL in the settings: %s", problem)
            saved = None
    return default_ws_url(option or saved or None)
