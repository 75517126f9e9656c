"""Who may use the WebSocket (issue 11 item 10, issue 10 item 5; docs/security.md).

Our demo server admits only its own user (the token in a 0600 file, and on Linux
the peer socket's owner) and no web page (Origin); our client reads the token by
itself, still works with a server that asks for nothing, and never trusts (nor
sends its token to) a port that another user listens on. The other user is
`nobody`, reached as root with the system's Python (the venv's lives under /root).
"""

from __future__ import annotations

import json
import os
import pwd
import queue
import socket
import stat
import subprocess
import sys

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from kindlyguard_monitor.demo.ws_server import DemoWsServer
from kindlyguard_monitor.transport import local_auth
from kindlyguard_monitor.transport.local_auth import TOKEN_HEADER, ForeignServer, client_headers, token_path
from kindlyguard_monitor.transport.protocol import Status
from kindlyguard_monitor.transport.server_frames import status_message
from kindlyguard_monitor.transport.ws_client import WsLink
from conftest import OutputWatcher, run_kgmon, wait_for
from hostile_ws import HostileServer

SYSTEM_PYTHON = "/usr/bin/python3"
as_another_user = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root (to run a process as nobody) and /usr/bin/python3")


@pytest.fixture
def server():
    s = DemoWsServer(0)
    s.start()
    yield s
    s.stop(drain_s=0)


def refused(url: str, **kwargs) -> tuple[int, str]:
    with pytest.raises(InvalidStatus) as exc:
        with connect(url, proxy=None, open_timeout=30, **kwargs):
            pass
    response = exc.value.response
    return response.status_code, bytes(response.body).decode()


def first_frame(url: str, **kwargs) -> dict:
    with connect(url, proxy=None, open_timeout=30, **kwargs) as ws:
        return json.loads(ws.recv(timeout=30))


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def start_as_nobody(code: str, *args) -> subprocess.Popen:
    """The system's Python as user nobody (stdout/stderr PIPE, text); killed by the caller."""
    user = nobody()

    def drop():
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)

    return subprocess.Popen([SYSTEM_PYTHON, "-I", "-c", code, *map(str, args)], cwd="/", preexec_fn=drop,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin"})


# ---- the token ----


def test_token_file_is_private_and_goes_with_the_server(_private_runtime_dir):
    s = DemoWsServer(0)
    s.start()
    try:
        path = token_path(s.port)
        assert path == _private_runtime_dir / f"ws-{s.port}.token" and s.token.path == path
        st, dst = os.lstat(path), os.lstat(path.parent)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
        assert stat.S_IMODE(dst.st_mode) == 0o700 and dst.st_uid == os.geteuid()
        assert path.read_text() == s.token.value and len(s.token.value) == 64
        assert client_headers(s.url) == {TOKEN_HEADER: s.token.value}
    finally:
        s.stop(drain_s=0)
    assert not path.exists()


def test_only_a_client_with_the_token_is_admitted(server):
    code, why = refused(server.url)
    assert code == 403 and "no valid token" in why and str(server.token.path) in why
    code, _ = refused(server.url, additional_headers={TOKEN_HEADER: "0" * 64})
    assert code == 403
    code, _ = refused(server.url, additional_headers={TOKEN_HEADER: server.token.value[:-1]})
    assert code == 403
    assert first_frame(server.url, additional_headers={TOKEN_HEADER: server.token.value})["type"] == "status"
    # a webview cannot set headers: the token may come in the URL
    assert first_frame(f"{server.url}/?token={server.token.value}")["type"] == "status"
    assert server.refused == {403: 3}


def test_our_client_reads_the_token_by_itself(server):
    link = WsLink(server.url, subscribed=False).start()
    try:
        assert link.wait_connected(30), link.last_error
        wait_for(lambda: isinstance(link.last_status, Status), 30, "the server's status")
    finally:
        link.stop()
    assert server.refused == {}


def test_a_token_file_others_could_read_is_not_used(server):
    os.chmod(server.token.path, 0o644)
    assert client_headers(server.url) == {}
    os.chmod(server.token.path, 0o600)
    assert client_headers(server.url) == {TOKEN_HEADER: server.token.value}


def test_our_client_still_works_with_a_server_that_asks_for_nothing():
    """The upstream Shield: no token file, no check; our client sends nothing of ours."""
    seen: queue.SimpleQueue = queue.SimpleQueue()

    async def shield(ws, srv):
        seen.put(ws.request.headers.get(TOKEN_HEADER))
        await ws.send(status_message(True, 7))
        await srv.next_received(ws, 30)

    with HostileServer(shield) as srv:
        assert not token_path(srv.port).exists()
        link = WsLink(srv.url, subscribed=True).start()
        try:
            assert link.wait_connected(30), link.last_error
            wait_for(lambda: link.last_status is not None and link.last_status.threats_blocked == 7, 30, "the status")
            srv.wait_for(lambda: srv.received, 30, "the subscribe")
        finally:
            link.stop()
    assert seen.get(timeout=5) is None, "no token header sent to a server that wrote no token"


# ---- who owns a socket: /proc/net/tcp ----


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux only")
@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_the_owner_of_a_listener_and_of_a_peer_is_read_from_proc(family, host):
    try:
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    with listener:
        listener.listen(1)
        port = listener.getsockname()[1]
        assert local_auth.listener_uids(port) == {os.geteuid()}
        with socket.create_connection((host, port), timeout=30) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert local_auth.peer_uid(client.getsockname(), accepted.getsockname()) == os.geteuid()
                assert local_auth.peer_uid((host, 1), accepted.getsockname()) is None
    assert local_auth.listener_uids(port) == set()


# ---- Origin: the Shield's own webview yes, a web page no ----


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1:8000", "http://localhost:1420",
                                    "null", "file://", "chrome-extension://abcdefghijklmnop"])
def test_web_pages_are_refused_even_with_the_token(server, origin):
    code, why = refused(f"{server.url}/?token={server.token.value}", origin=origin)
    assert code == 403 and "Origin" in why


@pytest.mark.parametrize("origin", [None, "tauri://localhost", "http://tauri.localhost", "https://tauri.localhost"])
def test_the_shields_own_webview_and_native_clients_are_admitted(server, origin):
    url = f"{server.url}/?token={server.token.value}"
    assert first_frame(url, **({"origin": origin} if origin else {}))["type"] == "status"
    code, _ = refused(server.url, **({"origin": origin} if origin else {}))  # without the token: no
    assert code == 403


# ---- another user ----

RAW_HANDSHAKE = r"""
import socket, sys
port, token = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "X-KindlyGuard-Token: " + token + "\r\n\r\n").encode())
data = b""
while b"\r\n\r\n" not in data:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode("latin-1").replace("\r\n", " | "))
"""


@as_another_user
def test_another_user_is_refused_even_with_the_token(server):
    """The token leaked (a copy in a readable place): the peer's uid still keeps another user out."""
    proc = start_as_nobody(RAW_HANDSHAKE, server.port, server.token.value)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(30)
    assert out.startswith("HTTP/1.1 403"), (out, err)
    assert "only root may connect, not nobody" in out
    assert server.refused == {403: 1}
    assert first_frame(server.url, additional_headers=client_headers(server.url))["type"] == "status"


FOREIGN_LISTENER = r"""
import select, socket, sys
l = socket.socket()
l.bind(("127.0.0.1", 0))
l.listen(8)
print(l.getsockname()[1], flush=True)
accepted = 0
while True:
    ready = select.select([l, sys.stdin], [], [])[0]
    if l in ready:
        l.accept()[0].close()
        accepted += 1
    if sys.stdin in ready:  # closed: the test is done
        break
print("accepted", accepted, flush=True)
"""


@as_another_user
def test_a_port_held_by_another_user_is_reported_and_not_trusted(ring_path):
    proc = start_as_nobody(FOREIGN_LISTENER)
    watcher = OutputWatcher(proc)
    try:
        port = int(watcher.wait_lines(lambda lines: lines and lines[0], 30, "the listener's port"))
        url = f"ws://127.0.0.1:{port}"
        # a token of ours for that port (a server of ours ran there before): never sent to nobody
        local_auth.ServerToken(port)
        with pytest.raises(ForeignServer) as foreign:
            client_headers(url)
        assert str(foreign.value).startswith(f"the WebSocket on 127.0.0.1:{port} belongs to user nobody")

        link = WsLink(url).start()
        try:
            wait_for(lambda: "belongs to user nobody" in link.last_error, 30, "the link to say who holds the port")
        finally:
            link.stop()

        r = run_kgmon("tail", "--transport", "websocket", "--ws-url", url, "--timeout", "5")
        assert r.returncode == 3, r.stderr
        assert f"the WebSocket on 127.0.0.1:{port} belongs to user nobody" in r.stderr
        assert "Traceback" not in r.stderr

        r = run_kgmon("doctor", "--json", "--ws-url", url, "--timeout", "3", "--shm-path", ring_path)
        findings = json.loads(r.stdout)["findings"]
        ws = [f for f in findings if f["check"] == "websocket"]
        assert ws and ws[0]["level"] == "fail" and "belongs to user nobody" in ws[0]["message"], findings
        assert r.returncode == 1
        proc.stdin.close()
        assert watcher.wait_exit(30) == 0
        assert watcher.lines[-1][1] == "accepted 0", "nothing of ours ever connected to the other user's port"
    finally:
        proc.kill()
        proc.wait(30)


def test_doctor_says_why_our_server_refused(server, ring_path):
    """A token file that others could read is not used: the server refuses, doctor says why."""
    os.chmod(server.token.path, 0o644)
    r = run_kgmon("doctor", "--json", "--ws-url", server.url, "--timeout", "3", "--shm-path", ring_path)
    ws = [f for f in json.loads(r.stdout)["findings"] if f["check"] == "websocket"]
    assert ws and "refused the connection (HTTP 403): no valid token" in ws[0]["message"], ws
    assert "its own user" in ws[0]["advice"]
    assert "Traceback" not in r.stderr


@as_another_user
def test_a_token_folder_made_first_by_another_user_is_not_used(_private_runtime_dir):
    """<tmp>/kindly-guard-UID made by someone else before us (they could swap our token): the
    server does not start and says whose the folder is."""
    from kindlyguard_monitor.demo.ws_server import WsServerError

    os.mkdir(_private_runtime_dir, 0o777)
    os.chown(_private_runtime_dir, nobody().pw_uid, nobody().pw_gid)
    s = DemoWsServer(0)
    with pytest.raises(WsServerError) as exc:
        s.start()
    assert "belongs to user nobody" in str(exc.value) and str(_private_runtime_dir) in str(exc.value)
    assert os.listdir(_private_runtime_dir) == []


@as_another_user
def test_a_ring_folder_of_another_user_is_reported_with_whose_it_is(ring_dir, ring_path):
    """The ring's folder made first by someone else (who could swap the ring inside): the reader
    refuses it, and doctor says whose it is instead of advising a chmod that is not ours to do."""
    r = run_kgmon("demo", "--count", 3, "--no-ws", "--shm-path", ring_path)
    assert r.returncode == 0, r.stderr
    os.chown(ring_dir, nobody().pw_uid, -1)
    r = run_kgmon("doctor", "--json", "--shm-path", ring_path, "--timeout", "1")
    ring = [f for f in json.loads(r.stdout)["findings"] if f["check"] == "ring"][0]
    assert ring["level"] == "fail" and "unsafe" in ring["message"], ring
    assert f"the folder {ring_dir} belongs to user nobody, not to you" in ring["advice"], ring
    assert "chmod" not in ring["advice"]
    r = run_kgmon("tail", "--transport", "shm", "--shm-path", ring_path, "--timeout", "2")
    assert r.returncode == 3 and "owned by uid" in r.stderr and "Traceback" not in r.stderr, r.stderr
    os.chown(ring_dir, 0, -1)  # ours again, so the test's folder can be removed
