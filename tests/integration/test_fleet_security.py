"""The fleet's security (issue 16): TLS with a CA made here, and docs/fleet-server.conf's permissions.

The server runs the sample configuration from the docs, with a self-signed CA and a server
certificate for 127.0.0.1 made by the openssl command. A workstation publishes only under
its own subjects; a viewer reads and cannot publish; a password never reaches the output.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fleet_servers import NatsServer, env, free_ports, kgmon, make_ca, run
from history_data import make_history, ring_batch, ring_event

pytest.importorskip("nats")
SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "fleet-server.conf"


@pytest.fixture
def secure_server(tmp_path):
    ca, cert, key = make_ca(tmp_path / "pki")
    port = free_ports(1)[0]
    conf = SAMPLE.read_text()
    for old, new in (("0.0.0.0:4222", f"127.0.0.1:{port}"), ("/etc/nats/server-cert.pem", str(cert)),
                     ("/etc/nats/server-key.pem", str(key)), ("/etc/nats/ca.pem", str(ca)),
                     ("/var/lib/nats/jetstream", str(tmp_path / "js")), ("200GB", "1GB"),
                     ("WS1_PASSWORD", "ws1-secret-pw"), ("DESK1_PASSWORD", "desk1-secret-pw"),
                     ("ADMIN_PASSWORD", "admin-secret-pw")):
        assert old in conf, old
        conf = conf.replace(old, new)
    # One more workstation user, by NKey (the sample's comment says how): its seed in a 0600 file.
    import os

    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "ws1.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    admin_line = '{ user: admin, password: "admin-secret-pw" }'
    assert admin_line in conf
    conf = conf.replace(admin_line, admin_line + f"\n    {{ nkey: {public}, permissions: $WORKSTATION_WS1 }}")
    server = NatsServer(tmp_path / "nats", port=port)
    server.conf.write_text(conf)
    server.start()
    yield server, ca, port, seed_file
    server.kill()


def test_tls_and_the_sample_permissions(secure_server, tmp_path):
    server, ca, port, seed_file = secure_server
    admin = f"tls://admin:admin-secret-pw@127.0.0.1:{port}"
    hist = make_history(tmp_path / "h.sqlite3", [ring_batch([ring_event(i) for i in range(50)])])

    async def make():
        import ssl

        import nats

        ctx = ssl.create_default_context(cafile=str(ca))
        nc = await nats.connect(admin, tls=ctx)
        try:
            from kindlyguard_monitor.fleet.connect import ensure_stream
            assert "created" in await ensure_stream(nc.jetstream(), replicas=1)
        finally:
            await nc.close()

    run(make())

    def forward(user: str, host: str, *extra: str, history: Path = hist):
        return subprocess.run(kgmon("forward", "--nats", f"tls://{user}@127.0.0.1:{port}", "--history", str(history),
                                    "--host", host, "--once", *extra),
                              env=env(), capture_output=True, text=True, timeout=60)

    # Without the CA the server's certificate is not trusted: refused, said in one line, no password shown.
    untrusted = forward("ws1:ws1-secret-pw", "ws1")
    assert untrusted.returncode == 1 and "does not trust" in untrusted.stderr and "--ca" in untrusted.stderr
    assert "ws1-secret-pw" not in untrusted.stderr and "Traceback" not in untrusted.stderr
    # ws1 with the CA: every threat forwarded.
    ok = forward("ws1:ws1-secret-pw", "ws1", "--ca", str(ca))
    assert ok.returncode == 0, ok.stderr
    assert "ws1-secret-pw" not in ok.stderr
    # ws1's account publishing as ws2 is refused by the server: nothing lands, it says why.
    hist2 = make_history(tmp_path / "h2.sqlite3", [ring_batch([ring_event(i) for i in range(5)], generation=0x77)])
    spoof = forward("ws1:ws1-secret-pw", "ws2", "--ca", str(ca), history=hist2)
    assert spoof.returncode == 1 and "ermission" in spoof.stderr, spoof.stderr
    adm = f"tls://admin:admin-secret-pw@127.0.0.1:{port}"

    async def counts():
        import ssl

        import nats

        nc = await nats.connect(adm, tls=ssl.create_default_context(cafile=str(ca)))
        try:
            info = await nc.jetstream().stream_info("KINDLYGUARD_THREATS", subjects_filter="kindlyguard.threats.>")
            return {k.split(".")[2]: 0 for k in info.state.subjects} | {
                h: sum(v for k, v in info.state.subjects.items() if k.split(".")[2] == h)
                for h in {k.split(".")[2] for k in info.state.subjects}}
        finally:
            await nc.close()

    assert run(counts()) == {"ws1": 50}
    # The NKey user (the seed file signs the server's nonce): a new history of ws1's, 5 more threats.
    by_nkey = subprocess.run(kgmon("forward", "--nats", f"tls://127.0.0.1:{port}", "--nkey", str(seed_file), "--ca",
                                   str(ca), "--history", str(hist2), "--host", "ws1", "--once"),
                             env=env(), capture_output=True, text=True, timeout=60)
    assert by_nkey.returncode == 0 and "5 acknowledged, 0 waiting" in by_nkey.stderr, by_nkey.stderr
    assert seed_file.read_text().strip()[:12] not in by_nkey.stderr  # no seed in the output
    assert run(counts()) == {"ws1": 55}
    # The viewer reads everything over TLS with its own consumer ...
    shown = subprocess.run(kgmon("tail", "--fleet", f"tls://desk1:desk1-secret-pw@127.0.0.1:{port}", "--ca", str(ca),
                                 "--consumer", "desk1", "--json", "--count", "50", "--timeout", "30"),
                           env=env(), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert len([line for line in shown.stdout.splitlines() if json.loads(line)["type"] == "threat"]) == 50  # of 55
    # ... but may not publish a threat, nor use another viewer's consumer name.
    hist3 = make_history(tmp_path / "h3.sqlite3", [ring_batch([ring_event(i) for i in range(5)])])
    as_viewer = forward("desk1:desk1-secret-pw", "desk1", "--ca", str(ca), history=hist3)
    assert as_viewer.returncode == 1 and "ermission" in as_viewer.stderr, as_viewer.stderr
    other = subprocess.run(kgmon("tail", "--fleet", f"tls://desk1:desk1-secret-pw@127.0.0.1:{port}", "--ca", str(ca),
                                 "--consumer", "desk2", "--count", "1", "--timeout", "20"),
                           env=env(), capture_output=True, text=True, timeout=60)
    assert other.returncode == 3 and "refused this viewer" in other.stderr, other.stderr
    assert "desk1-secret-pw" not in other.stderr
    assert run(counts()) == {"ws1": 55}


def test_a_stream_without_fast_batches_is_forwarded_one_by_one_in_order(secure_server, tmp_path):
    """A stream an administrator made without `allow_batched` (by hand, or an older kgmon), which a
    workstation may not change (the sample permissions): the forwarder says so, publishes one by one,
    each waiting for its ack, and the stream holds every threat once, in row order. Checks the
    server's own answer 10205, "batch publish is disabled" (nats-server 2.14+), not ours."""
    server, ca, port, _ = secure_server
    admin = f"tls://admin:admin-secret-pw@127.0.0.1:{port}"
    n = 40

    async def admin_session(work):
        import ssl

        import nats

        nc = await nats.connect(admin, tls=ssl.create_default_context(cafile=str(ca)))
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    async def make(js):
        from nats.js import api

        from kindlyguard_monitor.fleet import subjects

        await js.add_stream(api.StreamConfig(name=subjects.STREAM, subjects=[subjects.ALL_SUBJECTS],
                                             duplicate_window=600.0))

    async def stored(js):
        from kindlyguard_monitor.fleet import message, subjects

        info = await js.stream_info(subjects.STREAM)
        out = []
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg(subjects.STREAM, seq)
            out.append(message.decode(msg.data, seq))
        return info.config.allow_batched, out

    run(admin_session(make))
    hist = make_history(tmp_path / "h.sqlite3", [ring_batch([ring_event(i) for i in range(n)])])
    done = subprocess.run(kgmon("forward", "--nats", f"tls://ws1:ws1-secret-pw@127.0.0.1:{port}", "--ca", str(ca),
                                "--history", str(hist), "--host", "ws1", "--once"),
                          env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "fast-ingest batches are off" in done.stderr and "allow_batched" in done.stderr
    assert "publishing one by one" in done.stderr
    assert f"{n} acknowledged (0 already in the stream), 0 waiting" in done.stderr
    allowed, items = run(admin_session(stored))
    assert not allowed  # the workstation changed nothing
    assert [t.seq for t in items] == list(range(n)) and all(t.host == "ws1" for t in items)
