"""All the checks in order, the few verdicts that depend on each other (see the package's
docstring), and a finding as one line of text."""

from __future__ import annotations

import os
from typing import Mapping

from kindlyguard_monitor.doctor.cpu import check_affinity, check_governor
from kindlyguard_monitor.doctor.desktop import check_desktop
from kindlyguard_monitor.doctor.forwarding import check_forwarding
from kindlyguard_monitor.doctor.findings import FAIL, INFO, WARN, Finding
from kindlyguard_monitor.doctor.history import check_history
from kindlyguard_monitor.doctor.ring import RingCheck, check_ring, import_problem, probe_events, ring_file_facts
from kindlyguard_monitor.doctor.websocket import (
    DEFAULT_WS_TIMEOUT_S,
    WsCheck,
    check_websocket,
    check_ws_host,
    default_ws_url,
)
from kindlyguard_monitor.doctor.writer import check_writer
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.textsafe import visible

_LABELS = {"ok": "ok", "warn": "warn", "fail": "FAIL", "info": "info"}


def diagnose(path: str, ws_url: str | None = None, timeout: float = DEFAULT_WS_TIMEOUT_S,
             env: Mapping[str, str] | None = None) -> list[Finding]:
    env = os.environ if env is None else env
    findings: list[Finding] = []
    url_problem = None
    if not ws_url:
        ws_url, url_problem = default_ws_url(env)

    broken = import_problem()
    if broken is not None:
        ring = RingCheck(broken, None, RingError(Status.IO, path, "kindlyguard_monitor._ring does not load"))
    else:
        ring = check_ring(path)
    if check_ws_host(ws_url) is None:
        ws = check_websocket(ws_url, timeout)
    else:  # not this machine: the doctor reports it and sends nothing off the host
        ws = WsCheck(Finding("websocket", WARN, f"{ws_url}: not checked, it is not on this machine",
                             "the Shield's WebSocket is on 127.0.0.1"), False)
    ring_finding = ring.finding
    if ring.error is not None and ring.error.status in (Status.NOT_FOUND, Status.CLOSED) and ws.usable:
        ring_finding = ring_finding._replace(
            level=WARN, advice=f"the monitor falls back to the WebSocket at {ws_url} (slower); "
            "run the Shield with shared memory for the fast path")
    findings.append(ring_finding)
    if ring.error is not None and ring.error.status != Status.NOT_FOUND:
        facts = ring_file_facts(path)
        if facts:
            findings.append(Finding("ring-file", INFO, facts))
    if broken is None:
        findings.extend(check_writer(path, ws_usable=ws.usable))
    if ring.reader is not None:
        try:
            findings.append(probe_events(ring.reader))
        except (OSError, ValueError, RuntimeError) as exc:
            findings.append(Finding("probe", WARN, f"the probe could not read the ring: {exc}"))
        finally:
            ring.reader.close()
    ws_finding = ws.finding
    if not ws.usable and ring.error is not None and ws_finding.level == WARN:
        ws_finding = ws_finding._replace(level=FAIL)  # neither transport works: the monitor shows nothing
    findings.append(ws_finding)
    if url_problem is not None:
        findings.append(url_problem)
    host = check_ws_host(ws_url)
    if host is not None:
        findings.append(host)
    findings.append(check_governor())
    findings.extend(check_affinity(env))
    findings.extend(check_desktop(env))
    findings.append(check_history())
    findings.extend(check_forwarding())  # issue 16: only when this history is forwarded
    return findings


def finding_line(f: Finding) -> str:
    """One line: `ok    ring: ...` / `FAIL  ring: ... — advice`; hidden characters made visible."""
    text = f"{_LABELS.get(f.level, f.level):<6}{f.check}: {f.message}"
    if f.advice:
        text += f" — {f.advice}"
    return visible(text)  # newlines and controls from paths or server text become ⟨U+000A⟩ etc.
