"""The Shield's WebSocket: the URL every client would use, on this machine, answering with a status."""

from __future__ import annotations

import contextlib
import ipaddress
import time
import urllib.parse
from typing import Mapping, NamedTuple

from kindlyguard_monitor.doctor.findings import FAIL, OK, WARN, Finding
from kindlyguard_monitor.transport.urls import ws_url_problem
from kindlyguard_monitor.vocabulary import DEFAULT_WS_PORT, ENV_WS_PORT, ENV_WS_URL, shield_ws_port
from kindlyguard_monitor.transport.ws_client import default_ws_url as client_default_ws_url

DEFAULT_WS_TIMEOUT_S = 2.0
STAY_S = 0.3  # after the status, how long doctor watches the connection stay up


def default_ws_url(env: Mapping[str, str]) -> tuple[str, Finding | None]:
    """The URL every client uses by default (kindlyguard_monitor.transport.ws_client), and a
    warning when $SHIELD_WS_PORT is set but is not a port number."""
    url = client_default_ws_url(None, env)
    port_text = env.get(ENV_WS_PORT)
    if not env.get(ENV_WS_URL) and port_text and shield_ws_port(env) is None:
        return url, Finding("websocket-port", WARN, f"{ENV_WS_PORT}={port_text!r} is not a port number; "
                            f"checking the default {DEFAULT_WS_PORT}", f"set {ENV_WS_PORT} to 1..65535 or unset it")
    return url, None


def check_ws_host(url: str) -> Finding | None:
    """The Shield only listens on the loopback interface."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None  # check_websocket reports the bad URL
    if not host or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    port = parts.port if parts.port else DEFAULT_WS_PORT
    return Finding("websocket-host", WARN, f"{host} is not this machine: the Shield only listens on 127.0.0.1",
                   f"use --ws-url ws://127.0.0.1:{port} on the Shield's machine")


class WsCheck(NamedTuple):
    finding: Finding
    usable: bool  # a status came back: the monitor can fall back to this


_START_ADVICE = (f"start the KindlyGuard Shield (it listens on ws://127.0.0.1:{DEFAULT_WS_PORT}; "
                 f"{ENV_WS_PORT} changes the port), or pass --ws-url")
_ANOTHER_PROGRAM = "another program answers on that port: check --ws-url or SHIELD_WS_PORT"


def check_websocket(url: str, timeout: float = DEFAULT_WS_TIMEOUT_S) -> WsCheck:
    """Connect, read the status the Shield sends first, ask get_status."""
    try:
        import websockets.exceptions  # noqa: F401
        import websockets.sync.client  # noqa: F401
    except ImportError as exc:
        return WsCheck(Finding("websocket", WARN, f"the websockets library does not load ({exc})",
                               "reinstall the monitor (`make install` or `pip install .`)"), False)
    t0 = time.monotonic()
    problem = ws_url_problem(url)  # $KINDLYGUARD_WS_URL is not checked by the option parser
    if problem is not None:
        return WsCheck(Finding("websocket", WARN, problem, "set KINDLYGUARD_WS_URL or --ws-url to "
                               f"ws://127.0.0.1:{DEFAULT_WS_PORT}, or unset it"), False)
    ws = _connect(url, timeout)
    if isinstance(ws, WsCheck):
        return ws
    connected_ms = (time.monotonic() - t0) * 1000
    return _verdict(url, timeout, connected_ms, _talk(ws, timeout, t0))


def _unreachable(url: str, reason: str, advice: str = _START_ADVICE) -> WsCheck:
    return WsCheck(Finding("websocket", WARN, f"{url}: {reason}", advice), False)


def _connect(url: str, timeout: float):
    """An open connection (websockets.sync), or the WsCheck that says why there is none."""
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, WebSocketException
    from websockets.sync.client import connect

    from kindlyguard_monitor.textsafe import visible
    from kindlyguard_monitor.transport import local_auth

    try:  # another user's socket on the port is reported, never sent our token
        headers = local_auth.client_headers(url)
    except local_auth.LocalAuthError as exc:
        return WsCheck(Finding("websocket", FAIL, f"{url}: {exc}",
                               "the monitor does not talk to another user's server: stop that program (or ask "
                               "its user to), then start the Shield as yourself"), False)
    try:
        return connect(url, open_timeout=timeout, close_timeout=min(timeout, 1.0), proxy=None, compression=None,
                       additional_headers=headers)
    except InvalidURI as exc:
        return _unreachable(url, f"not a WebSocket URL ({exc})", "pass --ws-url ws://127.0.0.1:PORT")
    except ConnectionRefusedError:
        return _unreachable(url, "connection refused: nothing listens there")
    except TimeoutError:
        return _unreachable(url, f"timed out after {timeout:g} s (no WebSocket handshake)",
                            "something holds the port but does not answer as the Shield: check what listens there")
    except InvalidStatus as exc:
        code = exc.response.status_code
        if code not in (403, 503):  # not a refusal of ours: another program
            return _unreachable(url, f"bad handshake: {exc}", _ANOTHER_PROGRAM)
        # our demo refusing: the body says why in one line
        why = visible(exc.response.body.decode("utf-8", "replace").strip())[:200] or f"HTTP {code}"
        advice = ("it admits only its own user, by the token in its file: run the monitor as the user who "
                  "started the server" if code == 403 else "the server is busy; try again in a moment")
        return _unreachable(url, f"the server refused the connection (HTTP {code}): {why}", advice)
    except InvalidHandshake as exc:
        return _unreachable(url, f"bad handshake: {exc}", _ANOTHER_PROGRAM)
    except (OSError, WebSocketException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return _unreachable(url, f"cannot connect: {reason}")


class _Talk(NamedTuple):
    first: object  # the first frame, parsed (None: nothing came)
    answer: object  # the status that answered get_status, if one was asked for
    notes: list[str]  # what else happened, one phrase each
    dropped: str  # how the server dropped the connection ("" if it did not)


def _talk(ws, timeout: float, t0: float) -> _Talk:
    """Read the first frame; ask get_status only if it was not a status; watch the connection stay."""
    from websockets.exceptions import ConnectionClosed, WebSocketException

    from kindlyguard_monitor.transport.protocol import BadFrame, ServerError, Status as WsStatus, command, parse_frame

    first = answer = None
    notes = []
    dropped = ""
    try:
        # The Shield sends its status first and answers no command (docs/websocket.md):
        # that first status is the answer. Only a server that sent something else is
        # asked (get_status, with a nonce: the Shield drops a frame it has seen before).
        deadline = time.monotonic() + timeout
        first = parse_frame(ws.recv(timeout=timeout))
        if isinstance(first, WsStatus):  # does the connection stay? (a client the Shield rejects is dropped)
            stay = min(time.monotonic() + STAY_S, deadline)
            with contextlib.suppress(TimeoutError):
                while time.monotonic() < stay:
                    ws.recv(timeout=max(0.0, stay - time.monotonic()))
        else:
            ws.send(command("get_status"))
        while answer is None and not isinstance(first, WsStatus):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            msg = parse_frame(ws.recv(timeout=remaining))
            if isinstance(msg, WsStatus):
                answer = msg
            elif isinstance(msg, ServerError):
                notes.append(f"the server said: {msg.message}")
            elif isinstance(msg, BadFrame):
                notes.append(f"a bad frame ({msg.kind}: {msg.detail})")
    except TimeoutError:
        pass
    except ConnectionClosed as exc:
        how = "without a close frame" if exc.rcvd is None else f"({exc})"
        dropped = f"the server dropped the connection {time.monotonic() - t0:.1f} s after it opened {how}"
        notes.append(dropped)
    except (OSError, WebSocketException) as exc:
        notes.append(f"the connection failed ({exc})")
    finally:
        try:
            ws.close()
        except (OSError, WebSocketException):
            pass
    return _Talk(first, answer, notes, dropped)


def _verdict(url: str, timeout: float, connected_ms: float, talk: _Talk) -> WsCheck:
    """What the conversation says about the WebSocket as the monitor's fallback."""
    from kindlyguard_monitor.transport.protocol import Status as WsStatus

    first, answer, notes, dropped = talk
    status = first if isinstance(first, WsStatus) else answer
    extra = ("; " + "; ".join(notes)) if notes else ""
    if status is None:
        got = "nothing" if first is None else type(first).__name__
        return WsCheck(Finding("websocket", WARN,
                               f"{url}: connected, but no status came within {timeout:g} s (got {got}){extra}",
                               "is that the KindlyGuard Shield? check --ws-url or SHIELD_WS_PORT"), False)
    enabled = status.protection_enabled
    state = {True: "protection enabled", False: "protection DISABLED", None: "protection unknown"}[enabled]
    blocked = "threats blocked unknown" if status.threats_blocked is None \
        else f"{status.threats_blocked} threats blocked"
    message = f"{url}: connected in {connected_ms:.0f} ms, {state}, {blocked}"
    if not isinstance(first, WsStatus):
        extra += "; the first frame was not a status"
    if dropped:
        return WsCheck(Finding("websocket", WARN, message + extra,
                               "the Shield drops a client whose frame it rejects (a repeated frame, a suspicious "
                               "pattern, over 1 MiB) and cuts off a repeated frame for 5 minutes: if another "
                               "client keeps reconnecting, stop it; the monitor retries with a growing delay"), True)
    if enabled is False:
        return WsCheck(Finding("websocket", WARN, message + extra,
                               "protection is off in the Shield: turn it on (toggle_protection)"), True)
    return WsCheck(Finding("websocket", OK, message + extra), True)
