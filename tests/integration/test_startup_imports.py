"""What the desktop app has imported when its window is first shown (docs/benchmarks.md,
start-up): nothing the first window does not need. Other commands' modules (the demo's
server, the bench, the doctor, export), the History and Settings windows, the fleet's
client and asyncio are imported when asked for, not at every start.

The real app (cli/main.py's parsing, gui/launch.py's run()) in a child process on the
offscreen platform, with its own history; the module list is taken on the event loop's
first turn after show(), where the app logs "window shown N ms after the process started"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import start_python

from kindlyguard_monitor.gui.startup import GC_THRESHOLDS, GIL_SWITCH_INTERVAL_S

SHOWN_MODULES = """
import gc, json, sys
from PySide6.QtCore import QTimer
from kindlyguard_monitor.cli.main import parse_args
from kindlyguard_monitor.gui import launch

def started(monitor):
    def shown():
        print(json.dumps({"visible": monitor.window.isVisible(), "modules": sorted(sys.modules),
                          "gc_threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                          "switch_interval": sys.getswitchinterval()}), flush=True)
        monitor.quit()
    QTimer.singleShot(0, shown)

sys.exit(launch.run(parse_args(sys.argv[1:]), started=started))
"""

NOT_AT_START = (
    # other commands: asyncio, websockets' server, the bench's writer, the doctor's checks
    "kindlyguard_monitor.cli.demo", "kindlyguard_monitor.cli.tail", "kindlyguard_monitor.cli.tail_fleet",
    "kindlyguard_monitor.cli.bench", "kindlyguard_monitor.cli.doctor", "kindlyguard_monitor.cli.export",
    "kindlyguard_monitor.demo", "kindlyguard_monitor.bench", "kindlyguard_monitor.doctor",
    # windows opened on demand, and the history's export
    "kindlyguard_monitor.gui.history_window", "kindlyguard_monitor.gui.settings_dialog",
    "kindlyguard_monitor.gui.autostart", "kindlyguard_monitor.history.export",
    # the fleet's client: only `kgmon --fleet` and a forwarding app need it
    "kindlyguard_monitor.fleet.forwarder", "kindlyguard_monitor.fleet.connect", "kindlyguard_monitor.fleet.source",
    "kindlyguard_monitor.fleet.viewer", "kindlyguard_monitor.fleet.otlp", "nats", "asyncio",
)


def test_the_first_window_is_shown_without_what_it_does_not_need(ring_path):
    proc = start_python(SHOWN_MODULES, "--shm-path", ring_path)  # no ring there: the app waits for one
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    shown = json.loads(out.splitlines()[-1])
    assert shown["visible"]
    loaded = set(shown["modules"])
    assert "kindlyguard_monitor.gui.main_window" in loaded  # the list is the app's, taken at the right time
    assert not _among(loaded, NOT_AT_START), "imported before the first window was shown"
    # prepared for floods (gui/startup.py): start-up's objects frozen, the collector and the GIL
    # set so that the reader thread is not stalled long enough to miss events
    assert shown["frozen"] > 10_000 and tuple(shown["gc_threshold"]) == GC_THRESHOLDS
    assert shown["switch_interval"] == pytest.approx(GIL_SWITCH_INTERVAL_S)


# The reader thread imports its transports itself (gui/reader_thread.py's run()): the GUI thread's
# modules do not import websockets (with ssl, http and email: ~60 ms) nor the ring's readers (psutil).
# Checked on the modules rather than at the window (the reader thread may start by then).
READER_THREADS_OWN = ("websockets", "psutil", "kindlyguard_monitor.transport.manager",
                      "kindlyguard_monitor.transport.ws_client", "kindlyguard_monitor.ring.follow")


def test_the_gui_threads_modules_leave_the_transports_to_the_reader_thread():
    code = ("import json, sys\n"
            "from kindlyguard_monitor.cli.main import parse_args\n"
            "parse_args(['--shm-path', '/tmp/x'])\n"
            "import kindlyguard_monitor.gui.launch\n"
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert "kindlyguard_monitor.gui.reader_thread" in loaded
    assert not _among(loaded, READER_THREADS_OWN + NOT_AT_START)


def _among(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    """The loaded modules that are one of `names` or inside one of them."""
    return sorted(m for m in loaded if m in names or m.startswith(tuple(n + "." for n in names)))
