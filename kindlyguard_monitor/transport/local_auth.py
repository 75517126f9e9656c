"""Who may use a WebSocket on this machine: the same user only (docs/security.md).

The ring is 0600, so only the Shield's user reads the threats from it. The
WebSocket on 127.0.0.1 is open to every local user and to every web page the
user's browser shows, so our demo server admits a client only when:

- it presents the server's token: 32 random bytes (hex) that the server writes,
  when it starts, into a 0600 file in a 0700 folder of its user,
  `token_path(port)`; the client reads that file itself and sends the token in
  the `X-KindlyGuard-Token` header (a webview, which cannot set headers, may
  put it in the URL as `?token=`). Only the same user (or root) can read it;
- and, on Linux, the client's socket belongs to the server's user: the uid of
  the client's end of the connection, read from /proc/net/tcp (the kernel's
  table of TCP sockets, which names each socket's owner). SO_PEERCRED exists
  only for Unix sockets. Where the table cannot be read (another OS, another
  network namespace) the token alone decides.

The client side, `client_headers(url)`, first asks who owns the socket that
listens on a loopback URL's port: a listener of another user is reported
("the WebSocket on 127.0.0.1:9955 belongs to user mallory") and never sent the
token nor trusted. With no token file (the upstream Shield asks for nothing and
writes none) the client sends no header, so it still works with the Shield.

Files: `$KINDLYGUARD_RUNTIME_DIR` if set (tests), else `$XDG_RUNTIME_DIR/kindly-guard`
(a per-login tmpfs, 0700, emptied at logout), else `<tmp>/kindly-guard-<uid>` (made
0700; refused if it exists and is not ours and private). One file per port:
`ws-<port>.token`.
"""

from __future__ import annotations

import errno
import hmac
import os
import secrets
import socket
import stat
import struct
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from kindlyguard_monitor.vocabulary import ENV_RUNTIME_DIR

TOKEN_HEADER = "X-KindlyGuard-Token"
TOKEN_QUERY = "token"
TOKEN_BYTES = 32
_MAX_TOKEN_FILE = 256
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_TCP_LISTEN = "0A"
_PROC_TCP = ("/proc/net/tcp", "/proc/net/tcp6")
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP = 4, 20, 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_LISTEN_STATE = 10


class LocalAuthError(OSError):
    """Something another user made or holds stands where ours should be: one sentence."""

    def __init__(self, message: str):
        super().__init__(errno.EACCES, message)

    def __str__(self) -> str:
        return self.strerror


class ForeignServer(LocalAuthError):
    """The socket listening on a loopback port belongs to another user."""

    def __init__(self, host: str, port: int, uid: int):
        self.host, self.port, self.uid = host, port, uid
        super().__init__(f"the WebSocket on {host}:{port} belongs to user {user_name(uid)}, not to you "
                         f"({user_name(os.geteuid())}): not trusted, not connected to")


def user_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError, OverflowError):
        return f"uid {uid}"


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


# ---- where the token lives ----


def runtime_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_RUNTIME_DIR):
        return Path(env[ENV_RUNTIME_DIR])
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "kindly-guard"
    if sys.platform == "win32":  # pragma: no cover - not run here
        return Path(env.get("LOCALAPPDATA") or tempfile.gettempdir()) / "KindlyGuard" / "run"
    return Path(tempfile.gettempdir()) / f"kindly-guard-{os.geteuid()}"


def token_path(port: int, env: Mapping[str, str] | None = None) -> Path:
    return runtime_dir(env) / f"ws-{int(port)}.token"


def _private_dir(path: Path) -> None:
    """Make `path` (one level) 0700, or check that it is a real folder of ours that nobody else can
    enter; a folder another user made first is refused, never used."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise LocalAuthError(f"{path} is not a folder (a link or a file stands there); remove it")
    euid = _euid()
    if euid is not None and st.st_uid != euid:
        raise LocalAuthError(f"the folder {path} belongs to user {user_name(st.st_uid)}, not to you: "
                             "not trusted; remove it or set XDG_RUNTIME_DIR")
    if euid is not None and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours: make it private


class ServerToken:
    """The token a server admits clients by, and its 0600 file (removed by `remove()`)."""

    def __init__(self, port: int, env: Mapping[str, str] | None = None, value: str | None = None):
        self.value = value or secrets.token_hex(TOKEN_BYTES)
        self.path = token_path(port, env)
        _private_dir(self.path.parent)
        # Written to a fresh temp file (O_EXCL, 0600) and renamed over the path: a client never
        # reads half a token, and a stale file from a killed server is replaced whole.
        fd, tmp = tempfile.mkstemp(prefix=".ws-token-", dir=self.path.parent)
        try:
            if hasattr(os, "fchmod"):  # mkstemp makes it 0600 already; not on Windows
                os.fchmod(fd, 0o600)
            os.write(fd, self.value.encode("ascii"))
            os.close(fd)
            fd = -1
            os.replace(tmp, self.path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode("utf-8", "replace"),
                                                             self.value.encode("ascii"))

    def remove(self) -> None:
        """Remove the file if it still holds this token (a later server may have replaced it)."""
        if read_token_file(self.path) == self.value:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def read_token_file(path: Path) -> str | None:
    """The token in `path` if it is a regular file of ours that no one else can read; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        euid = _euid()
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_TOKEN_FILE:
            return None
        if euid is not None and (st.st_uid != euid or stat.S_IMODE(st.st_mode) & 0o077):
            return None
        text = os.read(fd, _MAX_TOKEN_FILE).decode("ascii", "replace").strip()
        return text if text.isalnum() else None
    finally:
        os.close(fd)


def presented_token(headers: Mapping[str, str], path: str) -> str | None:
    """The token a handshake request carries: the header, else `?token=` in its path."""
    value = headers.get(TOKEN_HEADER)
    if value:
        return value
    values = parse_qs(urlparse(path).query).get(TOKEN_QUERY)
    return values[0] if values else None


# ---- who owns a TCP socket (Linux: /proc/net/tcp) ----


def _address(hex_addr: str) -> tuple[str, int] | None:
    """'0100007F:2693' (the kernel's host-order words, port in hex) as ('127.0.0.1', 9875)."""
    try:
        ip_hex, port_hex = hex_addr.split(":")
        words = [struct.pack("=I", int(ip_hex[i:i + 8], 16)) for i in range(0, len(ip_hex), 8)]
        raw = b"".join(words)
        ip = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
        return ip, int(port_hex, 16)
    except (ValueError, OSError, struct.error):
        return None


def _tcp_sockets():
    """(local (ip, port), remote (ip, port), state hex, uid) for every TCP socket this network
    namespace has; nothing where /proc/net/tcp is not there."""
    for table in _PROC_TCP:
        try:
            with open(table, encoding="ascii", errors="replace") as f:
                next(f, None)  # the header line
                for line in f:
                    fields = line.split()
                    if len(fields) < 8:
                        continue
                    local, remote = _address(fields[1]), _address(fields[2])
                    if local is None or remote is None or not fields[7].isdigit():
                        continue
                    yield local, remote, fields[3], int(fields[7])
        except OSError:
            continue


def _normal_ip(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") else ip


def _listening_sockets() -> list[tuple[tuple[str, int], int]] | None:
    """(local (ip, port), uid) of every listening TCP socket, asked of the kernel over netlink
    (sock_diag, as `ss -lt` does): only the listening hash is walked. Reading /proc/net/tcp and
    tcp6 instead walks every bucket of the established hash too, 6-13 ms of CPU per call on a
    24 GiB machine, paid by each of the WebSocket link's reconnect attempts while no Shield
    listens: an idle app's largest cost. None where netlink cannot answer (not Linux, refused)."""
    if not hasattr(socket, "AF_NETLINK"):
        return None
    found = []
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
                # inet_diag_req_v2: family, protocol, ext, pad, states (a bit mask), an empty socket id
                req = struct.pack("=BBBBI48x", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN_STATE)
                nl.send(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, seq, 0)
                        + req)
                done = False
                while not done:
                    data = nl.recv(65536)
                    offset = 0
                    while offset + 16 <= len(data):
                        length, kind = struct.unpack_from("=IH", data, offset)
                        if length < 16:
                            return None
                        if kind == _NLMSG_DONE:
                            done = True
                            break
                        if kind == _NLMSG_ERROR:
                            return None
                        if length >= 16 + 72:  # inet_diag_msg
                            fam, state = struct.unpack_from("=BB", data, offset + 16)
                            sport = struct.unpack_from(">H", data, offset + 20)[0]
                            raw = data[offset + 24:offset + 24 + (4 if fam == socket.AF_INET else 16)]
                            uid = struct.unpack_from("=I", data, offset + 16 + 64)[0]
                            if state == _TCP_LISTEN_STATE:
                                found.append(((socket.inet_ntop(fam, raw), sport), uid))
                        offset += (length + 3) & ~3
    except (OSError, struct.error, ValueError):
        return None
    return found


def listener_uids(port: int) -> set[int]:
    """The owners of the sockets listening on `port` for loopback (127.0.0.1, ::1 or a wildcard:
    "localhost" may reach either family); empty when there is none or the table cannot be read."""
    loopback = ("127.0.0.1", "0.0.0.0", "::1", "::")
    listening = _listening_sockets()
    if listening is not None:
        return {uid for (ip, lport), uid in listening if lport == port and _normal_ip(ip) in loopback}
    return {uid for (ip, lport), _remote, state, uid in _tcp_sockets()
            if state == _TCP_LISTEN and lport == port and _normal_ip(ip) in loopback}


def peer_uid(client: tuple, server: tuple) -> int | None:
    """The owner of the client's end of an accepted connection (the socket whose local address is
    the client's and whose remote address is ours); None when it cannot be found."""
    try:
        want_local = (_normal_ip(str(client[0])), int(client[1]))
        want_remote = (_normal_ip(str(server[0])), int(server[1]))
    except (TypeError, ValueError, IndexError):
        return None
    for (ip, lport), (rip, rport), state, uid in _tcp_sockets():
        if state != _TCP_LISTEN and (_normal_ip(ip), lport) == want_local and (_normal_ip(rip), rport) == want_remote:
            return uid
    return None


# ---- the client's side ----


def is_loopback_url(url: str) -> bool:
    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        return False
    return host in _LOOPBACK_NAMES or host.startswith("127.")


def check_server_owner(url: str) -> None:
    """Raise ForeignServer if the socket listening on a loopback URL's port is another user's."""
    euid = _euid()
    if euid is None or not is_loopback_url(url):
        return
    parts = urlparse(url)
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        return
    foreign = sorted(listener_uids(port) - {euid})
    if foreign:
        raise ForeignServer(parts.hostname or "127.0.0.1", port, foreign[0])


def client_headers(url: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The handshake headers our client sends to `url`: our server's token when a file of ours
    holds one for that port, else none (the upstream Shield asks for nothing). Raises
    ForeignServer (an OSError, one sentence) when another user's socket listens there."""
    check_server_owner(url)
    if not is_loopback_url(url):
        return {}
    parts = urlparse(url)
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        return {}
    token = read_token_file(token_path(port, env))
    return {TOKEN_HEADER: token} if token else {}
