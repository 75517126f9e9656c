"""The monitor's shared words, in one place: transport names, the Shield's
WebSocket port, environment variable names and defaults.

Threat types and severities (names, numbers, clamping) live beside the event
in kindlyguard_monitor/threats.py. Everything else that several modules must
agree on is spelled here once, so a change is one edit.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Mapping


class Transport(StrEnum):
    """What delivered a threat (or, for the connection, what delivers them now).
    A StrEnum: it compares equal to, prints and JSON-encodes as its value."""

    SHM = "shm"  # the shared-memory ring (either format)
    WEBSOCKET = "websocket"  # the Shield's WebSocket
    DISCONNECTED = "disconnected"  # neither: retrying both
    HISTORY = "history"  # restored from the threat history at start (no live transport)
    FLEET = "fleet"  # the fleet's NATS JetStream stream (`kgmon --fleet URL`)


# What a reader may be told to use ("auto": shared memory when healthy, else the WebSocket).
AUTO = "auto"
MODES = (AUTO, Transport.SHM.value, Transport.WEBSOCKET.value)

# The Shield's WebSocket: it listens on the loopback interface only.
WS_HOST = "127.0.0.1"
DEFAULT_WS_PORT = 9955
DEFAULT_WS_URL = f"ws://{WS_HOST}:{DEFAULT_WS_PORT}"

# Environment variables.
ENV_SHM_PATH = "KINDLYGUARD_SHM_PATH"  # the ring file
ENV_WS_URL = "KINDLYGUARD_WS_URL"  # the WebSocket URL
ENV_WS_PORT = "SHIELD_WS_PORT"  # the Shield's own: the port it serves on
ENV_READER_CPU = "KINDLYGUARD_READER_CPU"  # pin the GUI's reader thread to this CPU
ENV_HISTORY_PATH = "KINDLYGUARD_HISTORY_PATH"  # the history file
ENV_RESOURCES = "KINDLYGUARD_RESOURCES"  # the icons folder (packagers, tests)
ENV_RUNTIME_DIR = "KINDLYGUARD_RUNTIME_DIR"  # where WebSocket tokens live (tests)
ENV_BENCH_DIR = "KINDLYGUARD_BENCH_DIR"  # where the benchmark puts its rings

# kgmon's hidden command, not a user's: the app's history flood writer (history/flood_writer.py).
FLOOD_WRITER_COMMAND = "_history-writer"

# Defaults a setting, an option and a constructor share.
DEFAULT_SPIN_NS = 50_000  # adaptive: the most a ring reader spins before it sleeps on the futex
DEFAULT_SPIN_US = DEFAULT_SPIN_NS / 1000
DEFAULT_FEED_SIZE = 10_000  # threats kept in the window's live feed


def parse_port(text: str, lowest: int = 1) -> int:
    """A port number from text; ValueError with a sentence when it is not one in lowest..65535."""
    text = str(text).strip()
    value = int(text) if text.isdigit() else -1
    if not lowest <= value <= 65535:
        raise ValueError(f"must be a port number {lowest}..65535, not {text}")
    return value


def shield_ws_port(env: Mapping[str, str] | None = None, *, lowest: int = 1, strict: bool = False) -> int | None:
    """$SHIELD_WS_PORT as a port number; None when unset. Not a port (lowest..65535):
    None, or with strict=True a ValueError naming the variable."""
    text = (os.environ if env is None else env).get(ENV_WS_PORT, "").strip()
    if not text:
        return None
    try:
        return parse_port(text, lowest)
    except ValueError as exc:
        if strict:
            raise ValueError(f"{ENV_WS_PORT} {exc}") from None
        return None
