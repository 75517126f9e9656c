"""Who the demo's WebSocket admits, and how many at once (docs/security.md).

Its own user only: the handshake must carry the token the server wrote
into a 0600 file (kindlyguard_monitor/transport/local_auth.py), and on Linux the client's
socket must belong to the server's uid. No web page: an Origin other than
none or the Shield's Tauri webview is refused, token or not. At most
max_clients past the handshake (HTTP 503 beyond) and max_handshakes still
in it (a new socket cuts the oldest unfinished one), both fitted under the
open-file limit; a handshake has handshake_timeout_s. Refusals, cuts and
the library's and event loop's errors go through one RepeatLog: said once,
then counted.

`Gate` holds that state for DemoWsServer: `admit` is the server's process_request,
`connection_class` its create_connection.
"""

from __future__ import annotations

import asyncio
import http
import os
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from kindlyguard_monitor.transport import local_auth

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

MAX_CLIENTS = 64  # connections past their handshake; more are refused with HTTP 503
MAX_HANDSHAKES = 64  # sockets still in their handshake; a new one cuts the oldest
HANDSHAKE_TIMEOUT_S = 5.0  # a handshake not done by then is cut (a local client needs milliseconds)
ACCEPT_BACKLOG = 64  # the listen queue; asyncio accepts up to this many sockets in one go
# File descriptors kept for everything else (ring, logs, imports) and for the sockets asyncio
# accepts in one go before any of them reaches us (up to two rounds of the backlog).
FD_RESERVE = 32 + 2 * ACCEPT_BACKLOG
RETRY_AFTER_S = 1
# Origins a browser-like client may send: none (a monitor, a script) or the Shield's own UI in its
# Tauri 2 webview (tauri://localhost on Linux and macOS, http(s)://tauri.localhost on Windows),
# which no page in a browser can claim. Every other Origin is a web page: refused (docs/websocket.md).
ALLOWED_ORIGINS = (None, "tauri://localhost", "http://tauri.localhost", "https://tauri.localhost")


class Gate:
    """The token, the same-user check, the Origin, and the bounds on clients and handshakes.
    Touched only in the server thread (the counters are read by tests and the demo's summary)."""

    def __init__(self, say: Callable[[str, str], None], max_clients: int = MAX_CLIENTS,
                 max_handshakes: int = MAX_HANDSHAKES):
        self._say = say  # (kind, message): a RepeatLog, so a flood of refusals is one line and a count
        self.max_clients, self.max_handshakes = _fit_descriptors(max_clients, max_handshakes)
        self.token: local_auth.ServerToken | None = None  # set once the port is known (the file names it)
        self.handshaking: dict[ServerConnection, None] = {}  # sockets in their handshake, oldest first
        self.admitted: set[ServerConnection] = set()  # handshakes accepted, until the socket closes
        self.refused: dict[int, int] = {}  # handshakes refused, by HTTP status
        self.handshakes_cut = 0  # cut to make room for newer ones

    def connection_class(self) -> type[ServerConnection]:
        """ServerConnection that tells us when its socket opens and closes: sockets still in their
        handshake are bounded (the oldest is cut when a new one comes), so slow or silent
        handshakes can neither exhaust the file descriptors nor keep a real client out."""
        gate = self

        class Connection(ServerConnection):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                gate.opened(self)

            def connection_lost(self, exc: Exception | None) -> None:
                gate.handshaking.pop(self, None)
                gate.admitted.discard(self)
                super().connection_lost(exc)

        return Connection

    def opened(self, conn: ServerConnection) -> None:
        self.handshaking[conn] = None
        while len(self.handshaking) > self.max_handshakes:
            oldest = next(iter(self.handshaking))
            del self.handshaking[oldest]
            self.handshakes_cut += 1
            self._say("cut", f"more than {self.max_handshakes} WebSocket handshakes at once: the oldest "
                      "unfinished one was cut")
            oldest.transport.abort()

    def admit(self, conn: ServerConnection, request: Request) -> Response | None:
        """process_request: None admits; a Response (403/503) refuses, with one line why."""
        headers: Headers = request.headers
        origin = headers.get("Origin")
        if origin not in ALLOWED_ORIGINS:
            return self._refuse(conn, http.HTTPStatus.FORBIDDEN, "origin",
                                "web pages may not connect (Origin not allowed)")
        if self.token is not None:
            if not self.token.matches(local_auth.presented_token(headers, request.path)):
                return self._refuse(conn, http.HTTPStatus.FORBIDDEN, "token",
                                    f"no valid token: send the one in {self.token.path} "
                                    f"({local_auth.TOKEN_HEADER} header)")
            owner = local_auth.peer_uid(conn.remote_address, conn.local_address)
            mine = os.geteuid() if hasattr(os, "geteuid") else None
            if owner is not None and mine is not None and owner != mine:
                return self._refuse(conn, http.HTTPStatus.FORBIDDEN, "user",
                                    f"only {local_auth.user_name(mine)} may connect, not "
                                    f"{local_auth.user_name(owner)}")
        if len(self.admitted) >= self.max_clients:
            response = self._refuse(conn, http.HTTPStatus.SERVICE_UNAVAILABLE, "full",
                                    f"the server has {self.max_clients} clients already; try again later")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        self.admitted.add(conn)
        return None

    def _refuse(self, conn: ServerConnection, status: http.HTTPStatus, key: str, why: str) -> Response:
        self.refused[status.value] = self.refused.get(status.value, 0) + 1
        self._say(f"refused-{key}", f"WebSocket handshake refused ({status.value}): {why}")
        return conn.respond(status, why + "\n")


def _fit_descriptors(max_clients: int, max_handshakes: int) -> tuple[int, int]:
    """Clients and handshakes, shrunk to fit the open-file limit (less a reserve): a server that
    runs out of descriptors can accept no one, not even its own monitor."""
    if resource is None:  # pragma: no cover - Windows
        return max_clients, max_handshakes
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_clients, max_handshakes
    budget = max(8, soft - FD_RESERVE)
    if max_clients + max_handshakes <= budget:
        return max_clients, max_handshakes
    handshakes = max(4, min(max_handshakes, budget // 2))
    return max(4, min(max_clients, budget - handshakes)), handshakes
