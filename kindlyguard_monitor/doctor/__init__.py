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

One module a subject: findings.py (the Finding and its levels), ring.py (attach,
the file, a probe of missed events), writer.py, websocket.py, cpu.py,
desktop.py, history.py, and report.py (diagnose: all of them in order; finding_line:
one as text). cli/doctor.py parses the options and prints.
"""

from kindlyguard_monitor.doctor.cpu import ENV_READER_CPU, check_affinity, check_governor
from kindlyguard_monitor.doctor.desktop import check_desktop
from kindlyguard_monitor.doctor.findings import FAIL, INFO, OK, WARN, Finding, failed
from kindlyguard_monitor.doctor.history import check_history
from kindlyguard_monitor.doctor.report import diagnose, finding_line
from kindlyguard_monitor.doctor.ring import check_ring, probe_events
from kindlyguard_monitor.doctor.websocket import DEFAULT_WS_TIMEOUT_S, check_websocket
from kindlyguard_monitor.doctor.writer import check_writer

__all__ = [
    "DEFAULT_WS_TIMEOUT_S", "ENV_READER_CPU", "FAIL", "INFO", "OK", "WARN", "Finding", "check_affinity",
    "check_desktop", "check_governor", "check_history", "check_ring", "check_websocket", "check_writer",
    "diagnose", "failed", "finding_line", "probe_events",
]
