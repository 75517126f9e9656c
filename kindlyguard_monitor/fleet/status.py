"""What the status bar and `kgmon doctor` say about forwarding, read from the history (no NATS needed).

"Forwarding: 12 waiting / last acknowledged at 10:41:07", and the forwarder's reason
when it is not forwarding. None when this history was never forwarded. `kgmon doctor`
also says it for the OpenTelemetry export (`kgmon forward --otlp`, its own cursor).
"""

from __future__ import annotations

import os
import time

from kindlyguard_monitor.fleet import outbox
from kindlyguard_monitor.fleet.subjects import STREAM
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import local_time

STALE_S = 300  # threats waiting and nothing acknowledged for this long: worth a warning


def status_text(history_path: str | os.PathLike) -> str | None:
    st = outbox.status(history_path, STREAM)
    return None if st is None else _describe(st)


def read(history_path: str | os.PathLike) -> tuple[str | None, int]:
    """(status_text, threats waiting) in one read: the app's worker thread asks this."""
    st = outbox.status(history_path, STREAM)
    return (None, 0) if st is None else (_describe(st), st.waiting)


OTLP = "OTLP"  # the OpenTelemetry exporter's cursor (fleet/otlp.py CURSOR)
_WORDS = {STREAM: ("Forwarding", "last acknowledged at", "kgmon forward --nats URL"),
          OTLP: ("OpenTelemetry export", "last accepted at", "kgmon forward --otlp URL")}


def _describe(st, stream: str = STREAM) -> str:
    """The status bar's line for one outbox status (read once by the caller)."""
    what, done, _ = _WORDS[stream]
    when = local_time(st.acked_at_us, fallback="?") if st.acked_at_us else "never"
    text = f"{what}: {st.waiting:,} waiting / {done} {when}"
    if st.state.startswith("not forwarding"):
        text += f" — {visible(st.state)}"
    return text


def doctor_finding(history_path: str | os.PathLike, stream: str = STREAM) -> tuple[str, str, str] | None:
    """(level "ok"/"warn", message, advice) for `kgmon doctor`, or None (never forwarded).
    stream: STREAM (NATS) or OTLP."""
    st = outbox.status(history_path, stream)
    if st is None:
        return None
    text = _describe(st, stream)
    stale = st.waiting and (not st.acked_at_us or time.time() - st.acked_at_us / 1e6 > STALE_S)
    if st.state.startswith("not forwarding") or stale:
        return ("warn", f"{text} ({st.forwarded:,} forwarded in all)",
                f"is `{_WORDS[stream][2]}` running? docs/fleet.md says what each reason means")
    return ("ok", f"{text} ({st.forwarded:,} forwarded in all)", "")
