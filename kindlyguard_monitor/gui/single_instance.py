"""One app per desktop session: a second launch asks the first to show its window.

A QLocalServer named per desktop session (`default_name()`): the user, and the
display the app shows on ($WAYLAND_DISPLAY, else $DISPLAY; on Windows the
logon session's name), in $XDG_RUNTIME_DIR when there is one (private to the
user, emptied at logout), else in the temp folder. Two logins of one user on
two displays each get their app; a second launch on the same display raises
the first window. `acquire()` first tries to connect: if an instance answers,
it is sent "show" and acquire() returns False. Otherwise a socket left by a
killed instance is removed and this process listens; a later launch's "show" is
emitted as `activation_requested`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

CONNECT_MS = 500
WRITE_MS = 1000
MESSAGE = b"show\n"


def session_key(env=None) -> str:
    """What tells this desktop session from the user's others: the display the
    app shows on (Wayland, else X11), on Windows the logon session's name."""
    env = os.environ if env is None else env
    display = env.get("WAYLAND_DISPLAY") or env.get("DISPLAY") or env.get("SESSIONNAME") or "console"
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", display)[:24]
    return f"{readable}-{hashlib.sha256(display.encode()).hexdigest()[:8]}"  # ":0" and "_0" stay apart


def default_name(env=None) -> str:
    """The single-instance socket of this desktop session (a full path in
    $XDG_RUNTIME_DIR when it is set, else a name Qt puts in the temp folder)."""
    env = os.environ if env is None else env
    uid = os.getuid() if hasattr(os, "getuid") else env.get("USERNAME", "user")
    name = f"kindlyguard-monitor-{uid}-{session_key(env)}"
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and len(runtime) + len(name) < 100:  # sun_path holds 108 bytes
        return os.path.join(runtime, name)
    return name


class SingleInstance(QObject):
    activation_requested = Signal()

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or default_name()
        self.server: QLocalServer | None = None
        self._clients: list[QLocalSocket] = []

    def acquire(self) -> bool:
        """True: this is the only instance (and now listens). False: another
        instance answered and was asked to show itself."""
        if self.server is not None:
            return True
        if self._ask_other_to_show():
            return False
        QLocalServer.removeServer(self.name)  # a stale socket from a killed instance
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # Lost a race with another launch: ask the winner to show.
            log.warning("single instance: cannot listen on %s: %s", self.name, server.errorString())
            server.deleteLater()
            if self._ask_other_to_show():
                return False
            return True  # run anyway: better two windows than none
        server.newConnection.connect(self._on_connection)
        self.server = server
        return True

    def _ask_other_to_show(self) -> bool:
        sock = QLocalSocket()
        sock.connectToServer(self.name)
        if not sock.waitForConnected(CONNECT_MS):
            return False
        sock.write(MESSAGE)
        sock.flush()
        sock.waitForBytesWritten(WRITE_MS)
        sock.disconnectFromServer()
        return True

    @Slot()
    def _on_connection(self) -> None:
        while self.server is not None and self.server.hasPendingConnections():
            sock = self.server.nextPendingConnection()
            buf = bytearray()

            def read(sock=sock, buf=buf):
                buf.extend(bytes(sock.readAll()))
                if b"\n" in buf or len(buf) > 64:
                    if bytes(buf).split(b"\n", 1)[0].strip() == b"show":
                        self.activation_requested.emit()
                    buf.clear()
                    sock.disconnectFromServer()

            sock.readyRead.connect(read)
            # Not deleteLater() on `disconnected`: with PySide6 that crashed
            # when the deferred delete ran after release(). Closed sockets stay
            # children of the server (one per later launch) and go with it.
            self._clients = [c for c in self._clients if c.state() != QLocalSocket.LocalSocketState.UnconnectedState]
            self._clients.append(sock)
            if sock.bytesAvailable():
                read()

    def release(self) -> None:
        if self.server is not None:
            self.server.close()
            QLocalServer.removeServer(self.name)
            for sock in self._clients:
                sock.abort()
            self._clients.clear()
            self.server.setParent(None)  # Python owns it now: deleted with its last reference
            self.server = None
