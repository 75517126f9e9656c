"""The fleet forwarder's line (issue 16): waiting, last acknowledged, why it is not forwarding.

Only when this history is forwarded (`kgmon forward` made its cursor table); read-only.
"""

from __future__ import annotations

import os

from kindlyguard_monitor.doctor.findings import Finding


def check_forwarding(path: str | os.PathLike | None = None) -> list[Finding]:
    from kindlyguard_monitor.fleet.status import doctor_finding
    from kindlyguard_monitor.history import db

    found = doctor_finding(db.history_path(path))
    return [] if found is None else [Finding("forwarding", *found)]
