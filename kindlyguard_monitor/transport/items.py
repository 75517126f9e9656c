"""What TransportManager.poll() returns (Batch, TransportChange, ShieldStatus,
ShieldError, BadFrameSeen: together `Item`) and the error start() raises."""

from __future__ import annotations

from typing import NamedTuple

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.vocabulary import Transport


class TransportUnavailable(Exception):
    """The one transport asked for is not there; str() says why."""


class Batch(NamedTuple):
    transport: Transport
    generation: int | None
    events: list[ThreatEvent]  # oldest first


class TransportChange(NamedTuple):
    transport: Transport
    reason: str
    ring_format: int | None = None  # shm: 1 (the Shield's own ring, polled) or 2


def ring_label(ring_format: int | None) -> str:
    """How the badge, doctor and `kgmon tail` name the ring's format."""
    return "Shield format v1, polled" if ring_format == 1 else "format v2"


class ShieldStatus(NamedTuple):
    protection_enabled: bool | None
    threats_blocked: int | None
    requested: bool | None = None  # toggle_protection was sent for this state; no status has confirmed it yet


class ShieldError(NamedTuple):
    message: str


class BadFrameSeen(NamedTuple):
    """A frame from the WebSocket that could not be used (the connection stays up)."""

    kind: str  # too_big, not_json, unknown_type, wrong_types
    detail: str
    total: int  # bad frames so far


Item = Batch | TransportChange | ShieldStatus | ShieldError | BadFrameSeen
