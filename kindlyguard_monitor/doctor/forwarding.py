"""The fleet forwarder's line (issue 16): waiting, last acknowledged, why it is not forwarding;
and the same for the OpenTelemetry export (`kgmon forward --otlp`).

Only when this history is forwarded (`kgmon forward` made its cursor); read-only.
"""

from __future__ import annotations

import os

from kindlyguard_monitor.doctor.findings import Finding


def check_forwarding(path: str | os.PathLike | None = None) -> list[Finding]:
    from kindlyguard_monitor.fleet.status import OTLP, STREAM, doctor_finding
    from kindlyguard_monitor.history import db

    where = db.history_path(path)
    return [Finding(check, *found) for check, stream in (("forwarding", STREAM), ("otlp export", OTLP))
            if (found := doctor_finding(where, stream)) is not None]
