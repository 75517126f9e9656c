"""The demo's WebSocket server under load and abuse (issue 11 item 9), on loopback, in seconds.

The numbers are scaled down through the server's own parameters (a few clients,
a few MiB, a low open-file limit in a child process) rather than by opening
thousands of sockets: the same code paths, bounded loops.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kindlyguard_monitor.demo.repeat_log import RepeatLog
from kindlyguard_monitor.demo.ws_server import DemoWsServer
from kindlyguard_monitor.threats import Published, Threat
from kindlyguard_monitor.transport.local_auth import TOKEN_HEADER, client_headers
from conftest import OutputWatcher, start_python, wait_for

THREAT = Threat(1, 3, True, "mcp:tools/call", "x" * 300, 1_700_000_000_000_000)


def open_client(url: str, **kwargs):
    kwargs.setdefault("open_timeout", 30)
    return connect(url, proxy=None, compression=None, close_timeout=1,
                   additional_headers=client_headers(url), **kwargs)


@pytest.fixture
def servers():
    """make(**kwargs): a started in-process DemoWsServer on a free port, stopped at the end."""
    made: list[DemoWsServer] = []

    def make(**kwargs) -> DemoWsServer:
        server = DemoWsServer(0, **kwargs)
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop(drain_s=0)


def raw_client(port: int, token: str, rcvbuf: int = 4096) -> socket.socket:
    """A WebSocket client by hand: a tiny receive buffer, the handshake, `subscribe`, and then it
    reads nothing ever again (a client that never reads)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{TOKEN_HEADER}: {token}\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = s.recv(1)  # byte by byte: nothing after the headers is taken from the socket
        assert chunk, "the server closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    payload = json.dumps({"type": "subscribe"}).encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return s


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Read (and throw away) until the server has closed the connection."""
    s.settimeout(timeout)
    try:
        while s.recv(1 << 20):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---- how many may connect ----


def test_clients_over_the_limit_get_503_until_one_leaves(servers):
    server = servers(max_clients=3)
    first, *others = [open_client(server.url).__enter__() for _ in range(3)]
    try:
        for ws in (first, *others):
            assert json.loads(ws.recv(timeout=30))["type"] == "status"
        with pytest.raises(InvalidStatus) as refused:
            with open_client(server.url):
                pass
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert b"3 clients already" in bytes(response.body)
        first.close()
        wait_for(lambda: server.clients == 2, 30, "the server to see the client go")
        with open_client(server.url) as late:
            assert json.loads(late.recv(timeout=30))["type"] == "status"
    finally:
        for ws in others:
            ws.close()
    assert server.refused == {503: 1}


# Runs the demo's server in a child with few file descriptors (as a user's 1,024 are few
# against thousands of sockets), logging to stderr as `kgmon demo` does.
LOW_FD_SERVER = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from kindlyguard_monitor.demo.ws_server import DemoWsServer
server = DemoWsServer(0, log=lambda m: print("kgmon demo:", m, file=sys.stderr, flush=True),
                      handshake_timeout_s=120)  # only the bound on handshakes can let a client in
server.start()
print(server.port, server.max_clients, server.max_handshakes, flush=True)
sys.stdin.read()
server.stop(drain_s=0)
print("cut", server.handshakes_cut, flush=True)
"""


def test_slow_handshakes_neither_lock_out_a_client_nor_flood_the_log():
    """300 handshakes that never finish, against a server allowed 256 open files: a client still
    gets in, and stderr says what happened in a line or two (before: accept() failed with
    'Too many open files', one traceback each, tens of thousands; the client timed out)."""
    proc = start_python(LOW_FD_SERVER, 256)
    watcher = OutputWatcher(proc)
    port, max_clients, max_handshakes = map(int, watcher.wait_lines(lambda lines: lines and lines[0], 60,
                                                                       "the server's port").split())
    assert max_clients + max_handshakes <= 256 - 128, "the limits fit the open-file limit"
    slow = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET / HTTP/1.1\r\n")  # ...and never the rest
            slow.append(s)
        with open_client(f"ws://127.0.0.1:{port}", open_timeout=20) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "status"
        proc.stdin.close()
        assert watcher.wait_exit(60) == 0, watcher.stderr[:2000]
    finally:
        for s in slow:
            s.close()
    cut = int(watcher.wait_lines(lambda lines: next((ln for ln in lines if ln.startswith("cut ")), None), 30,
                                 "the count").split()[1])
    assert cut >= 300 - max_handshakes
    err = watcher.stderr
    assert "Traceback" not in err and "Too many open files" not in err, err[:2000]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert 1 <= len(lines) <= 5, lines
    assert all("handshakes at once" in ln for ln in lines), lines
    counted = [int(ln.split("(")[-1].split(" more")[0].replace(",", "")) for ln in lines[1:]]
    assert 1 + sum(counted) == cut, lines


# ---- memory held for clients that never read ----


def test_clients_that_never_read_are_cut_and_memory_stays_bounded(servers):
    budget = 1 << 20
    logged: list[str] = []
    server = servers(max_buffered_bytes=budget, log=logged.append)
    hogs = [raw_client(server.port, server.token.value) for _ in range(3)]
    seqs: list[int] = []
    done = threading.Event()
    with open_client(server.url) as reader:
        assert json.loads(reader.recv(timeout=30))["type"] == "status"
        reader.send(json.dumps({"type": "subscribe"}))
        wait_for(lambda: server.subscribers == 4, 30, "four subscribers")

        def read():
            while not done.is_set():
                try:
                    msg = json.loads(reader.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if msg["type"] == "threat":
                    seqs.extend(t["seq"] for t in msg["threats"])

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        try:
            total, batch = 10_000, 100  # ~4 MB of threats: four times the budget, for each client
            for first in range(0, total, batch):
                server.broadcast([Published(1, s, THREAT, time.monotonic_ns()) for s in range(first, first + batch)])
                wait_for(lambda: len(seqs) >= first + batch, 30, "the reading client to keep up")
        finally:
            done.set()
            thread.join(10)
    assert seqs == list(range(total)), "the client that reads gets everything, in order"
    assert server.slow_clients_cut == 3, "each client that never read was cut"
    assert all(closed_by_server(h, 30) for h in hogs), "their connections were closed"
    for h in hogs:
        h.close()
    assert server.peak_buffered_bytes <= budget
    said = [m for m in logged if "read too slowly" in m]
    assert len(said) == 1, logged  # once, then counted


# ---- toggle_protection: one budget for the whole server ----


def test_toggle_protection_is_rate_limited_for_the_whole_server(servers):
    server = servers(toggle_burst=3, toggle_per_s=0.001)
    a, b, c = (open_client(server.url).__enter__() for _ in range(3))
    try:
        for ws in (a, b, c):
            assert json.loads(ws.recv(timeout=30))["type"] == "status"
        for ws, state in ((a, False), (a, True), (b, False)):  # three toggles from two connections
            ws.send(json.dumps({"type": "toggle_protection"}))
            wait_for(lambda: server.protection_enabled is state, 30, f"protection {state}")
        # a fourth, from a third connection whose own per-connection budget is untouched
        c.send(json.dumps({"type": "toggle_protection"}))
        seen = []
        while not seen or seen[-1]["type"] == "status":  # the others' toggles were broadcast to c first
            seen.append(json.loads(c.recv(timeout=30)))
        assert seen[-1] == {"type": "error", "message": "Rate limit exceeded"}, seen
        assert server.protection_enabled is False and server.toggles_refused == 1
        c.send(json.dumps({"type": "get_status"}))  # other commands are not held by the toggles' budget
        assert json.loads(c.recv(timeout=30)) == {"type": "status", "protection_enabled": False,
                                                  "threats_blocked": 0}
    finally:
        for ws in (a, b, c):
            ws.close()


# ---- a repeated message: once, then a count ----


def test_repeat_log_says_a_message_once_then_how_often():
    now = [0.0]
    lines: list[str] = []
    said = RepeatLog(lines.append, interval_s=10, clock=lambda: now[0])
    for i in range(84_154):
        now[0] = i * 0.0002  # 84,154 in about 17 s
        said("accept", "socket.accept() out of system resource: OSError: [Errno 24] Too many open files")
    said("other", "another kind\x1b]0;owned\x07")
    said.flush()
    assert lines[0] == "socket.accept() out of system resource: OSError: [Errno 24] Too many open files"
    assert len(lines) == 4, lines
    counted = [int(ln.split("(")[-1].split(" more")[0].replace(",", "")) for ln in lines[1:] if " more in " in ln]
    assert sum(counted) == 84_153
    assert "\x1b" not in "".join(lines) and "⟨U+001B⟩" in lines[2]


def test_refused_handshakes_are_logged_once_with_a_count(servers):
    logged: list[str] = []
    server = servers(log=logged.append)
    for _ in range(30):
        with pytest.raises(InvalidStatus), connect(server.url, proxy=None, open_timeout=30):  # no token
            pass
    assert server.refused == {403: 30}
    server.stop(drain_s=0)
    refusals = [m for m in logged if "refused (403)" in m]
    assert len(refusals) == 2, logged
    assert "no valid token" in refusals[0] and "(29 more in the last" in refusals[1]
