"""Is a WebSocket URL one we can connect to? One sentence saying why not.

Checked where a URL enters (the --ws-url options, $KINDLYGUARD_WS_URL), so
a mistyped URL is a usage error with a sentence, never a traceback from a
connection thread. The URL is attacker-controllable text (an environment
variable): the sentence shows it with kindlyguard_monitor.textsafe.visible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.vocabulary import DEFAULT_WS_URL, ENV_WS_URL, WS_HOST, shield_ws_port

MAX_URL_CHARS = 2048


def ws_url_problem(url: str) -> str | None:
    """None when `url` is a ws:// or wss:// URL with a host and a valid port; else why not."""
    shown = visible(url if len(url) <= 200 else url[:199] + "…")
    if len(url) > MAX_URL_CHARS:
        return f"{shown} is not a WebSocket URL: longer than {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port  # raises ValueError when out of 0..65535 or not a number
    except ValueError as exc:
        return f"{shown} is not a WebSocket URL: its host or port cannot be read ({visible(str(exc))})"
    if parts.scheme.lower() not in ("ws", "wss"):
        return f"{shown} is not a WebSocket URL: it must start with ws:// (such as {DEFAULT_WS_URL})"
    if not host:
        return f"{shown} is not a WebSocket URL: it names no host (such as {DEFAULT_WS_URL})"
    if port == 0:
        return f"{shown} is not a WebSocket URL: port 0 cannot be connected to (1..65535)"
    if not url.isprintable() or any(ch.isspace() for ch in url):
        return f"{shown} is not a WebSocket URL: it contains blanks or invisible characters"
    return None


def default_ws_url(override: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """--ws-url, else $KINDLYGUARD_WS_URL, else ws://127.0.0.1:$SHIELD_WS_PORT (9955). Here, not in
    ws_client.py: the desktop app names its URL at start without importing websockets (the reader
    thread does, once it starts)."""
    env = os.environ if env is None else env
    if override:
        return override
    if env.get(ENV_WS_URL):
        return env[ENV_WS_URL]
    port = shield_ws_port(env)
    return f"ws://{WS_HOST}:{port}" if port is not None else DEFAULT_WS_URL
