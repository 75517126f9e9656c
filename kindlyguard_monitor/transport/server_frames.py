"""What a server sends in the Shield's WebSocket protocol (docs/websocket.md): THREAT
objects, `threat` and `status` messages, and the id our writers give an event.

Our demo writer (demo/ws_server.py) and the tests' servers use it; a client
reads these frames with protocol.parse_frame(). THREATs are built by hand from
C-escaped strings, the part that depends on the threat alone cached: a writer
encodes hundreds of thousands a second and sends each to every subscriber.
"""

from __future__ import annotations

import json

from kindlyguard_monitor.threats import MEDIUM, THREAT_TYPES, Threat, format_timestamp, severity_name

_escape = json.encoder.encode_basestring_ascii  # the C string encoder json.dumps uses
_TYPE_JSON = [f'"{name}"' for name in THREAT_TYPES]
_SEVERITY_JSON = {n: f'"{severity_name(n)}"' for n in range(0, 256)}
_last_stamp: tuple[int, str] = (-1, "")


def _timestamp_json(unix_us: int) -> str:
    global _last_stamp
    if _last_stamp[0] != unix_us:  # a batch shares one timestamp: format it once
        _last_stamp = (unix_us, '"' + format_timestamp(unix_us) + '"')
    return _last_stamp[1]


_bodies: dict[Threat, str] = {}  # the part of a THREAT that depends on the threat alone (a batch repeats it)


def _threat_body(threat: Threat) -> str:
    """Everything of one THREAT's JSON between its id and its seq, cached: a server sends
    the same threat to every subscriber, and a burst often repeats one threat."""
    try:
        return _bodies[threat]
    except KeyError:
        pass
    except TypeError:  # a field that cannot be hashed: not cached
        return _make_body(threat)
    if len(_bodies) >= 4096:
        _bodies.clear()
    body = _bodies[threat] = _make_body(threat)
    return body


def _make_body(threat: Threat) -> str:
    kind = threat.threat_type if 0 <= threat.threat_type < len(_TYPE_JSON) else 0
    return "".join((
        ', "threat_type": ', _TYPE_JSON[kind],
        ', "severity": ', _SEVERITY_JSON.get(threat.severity, _SEVERITY_JSON[MEDIUM]),
        ', "source": ', _escape(threat.source),
        ', "details": ', _escape(threat.details),
        ', "timestamp": ', _timestamp_json(threat.timestamp_unix_us),
        ', "blocked": ', "true" if threat.blocked else "false",
        ', "context": null',
    ))


def threat_json(threat: Threat, event_id: str, seq: int | None = None, mono_ns: int | None = None) -> str:
    """One THREAT object, JSON-encoded (a server joins several into one message).
    Built by hand from C-escaped strings: a demo writer encodes hundreds of
    thousands a second, and json.dumps of a dict costs five times more."""
    parts = ['{"id": ', _escape(event_id), _threat_body(threat)]
    if seq is not None:
        parts.append(f', "seq": {int(seq)}')
    if mono_ns is not None:
        parts.append(f', "mono_ns": {int(mono_ns)}')
    parts.append("}")
    return "".join(parts)


def numbered_threats_json(events) -> list[str]:
    """threat_json(threat, event_id(generation, seq), seq, mono_ns) of each Published (generation, seq,
    threat, mono_ns) in `events`, the same bytes at a fifth of the cost: one format per event."""
    out = []
    append = out.append
    last = body = None
    for g, s, t, m in events:
        if t is not last:
            last, body = t, _threat_body(t)
        append(f'{{"id": "{g:016x}-{s:d}"{body}, "seq": {s:d}, "mono_ns": {m:d}}}')
    return out


def threat_message(encoded_threats: list[str]) -> str:
    """A `threat` message carrying threats already encoded by threat_json()."""
    return '{"type": "threat", "threats": [' + ", ".join(encoded_threats) + "]}"


def status_message(protection_enabled: bool, threats_blocked: int) -> str:
    return json.dumps({"type": "status", "protection_enabled": protection_enabled,
                       "threats_blocked": threats_blocked})


def event_id(generation: int, seq: int) -> str:
    """The id our writers give event `seq` of `generation` (kgmon tail prints the same)."""
    return f"{generation:016x}-{seq}"
