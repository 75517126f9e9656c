"""The usual WebSocket frame, a batch of threats of the usual shape, decoded and type-checked
in C (msgspec): what protocol.parse_frame() tries first. A frame of any other shape (another
message, a field of another JSON type, text that Python's json reads and msgspec does not) gives
None here and is read by protocol.parse_frame() the long way, so the result is the same."""

from __future__ import annotations

from typing import Any

import msgspec


class WireThreat(msgspec.Struct, gc=False):
    """A THREAT as the Shield and our servers send it, every field of its JSON type (fields
    not named here are ignored, as protocol._threat() ignores them)."""

    threat_type: str
    severity: str
    id: str = ""
    source: str | None = None
    details: str | None = None
    timestamp: str | None = None
    blocked: bool = False
    seq: int | None = None  # any integer: protocol's range checks apply
    mono_ns: int | None = None
    context: Any = None


class WireThreats(msgspec.Struct, gc=False):
    type: str
    threats: list[WireThreat]


_decode = msgspec.json.Decoder(WireThreats).decode


def decode_threats(frame: str | bytes) -> WireThreats | None:
    """The frame as WireThreats, or None when it is not of that shape (or not JSON msgspec reads)."""
    try:
        return _decode(frame)
    except (msgspec.DecodeError, ValueError, RecursionError):  # ValueError: a str with lone surrogates
        return None
