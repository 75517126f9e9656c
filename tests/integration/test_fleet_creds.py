"""The fleet with NATS decentralised auth (issue 16): `--creds FILE` against a server in operator mode.

An operator, a JetStream account and its users are made here (tests/fleet_jwt.py, as `nsc`
makes them); the real nats-server trusts the operator and has the account preloaded. The
users carry docs/fleet-server.conf's permissions in their JWTs: workstation ws1 publishes only
under its own subjects, viewer desk1 only reads through its own consumer, admin may do all.
No seed and no JWT reaches any output; a creds file the server does not accept is one clear line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fleet_servers import NatsServer, env, kgmon, run
from history_data import make_history, ring_batch, ring_event

pytest.importorskip("nats")
pytest.importorskip("nkeys")  # nats-py[nkeys]
import fleet_jwt  # noqa: E402

N = 40


@pytest.fixture
def jwt_server(tmp_path):
    fleet = fleet_jwt.make_fleet(tmp_path / "keys")
    server = NatsServer(tmp_path / "nats")
    server.conf.write_text(fleet.conf(server.port, tmp_path / "nats" / "js"))
    server.start()
    yield server, fleet
    server.kill()


def block(creds: Path, begin: str) -> str:
    lines = creds.read_text().splitlines()
    return lines[lines.index(f"-----BEGIN {begin}-----") + 1]


def secrets_of(*creds: Path) -> list[str]:
    """What must never be printed: each creds file's JWT (and its parts) and seed (and its start)."""
    out = []
    for path in creds:
        jwt, seed = block(path, "NATS USER JWT"), block(path, "USER NKEY SEED")
        out += [jwt, jwt.split(".")[1][:24], jwt.split(".")[2], seed, seed[:12]]
    return out


def assert_no_secret(result: subprocess.CompletedProcess, secrets: list[str]) -> None:
    text = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in text
    assert "Traceback" not in text


def stream_hosts(url: str, admin: Path) -> dict[str, int]:
    async def count():
        import nats

        nc = await nats.connect(url, user_credentials=str(admin))
        try:
            info = await nc.jetstream().stream_info(fleet_jwt.STREAM, subjects_filter="kindlyguard.threats.>")
            hosts: dict[str, int] = {}
            for subject, n in (info.state.subjects or {}).items():
                hosts[subject.split(".")[2]] = hosts.get(subject.split(".")[2], 0) + n
            return hosts
        finally:
            await nc.close()

    return run(count())


async def refused_publish(url: str, creds: Path, subject: str) -> str:
    """What the server says when this user publishes on `subject` (its error), or '' when it says nothing."""
    import asyncio

    import nats

    said: asyncio.Queue = asyncio.Queue()

    async def on_error(exc):
        said.put_nowait(str(exc))

    nc = await nats.connect(url, user_credentials=str(creds), error_cb=on_error, allow_reconnect=False)
    try:
        await nc.publish(subject, b"{}")
        await nc.flush()
        return await asyncio.wait_for(said.get(), 10)
    except asyncio.TimeoutError:
        return ""
    finally:
        await nc.close()


def test_creds_files_with_the_sample_permissions(jwt_server, tmp_path):
    server, fleet = jwt_server
    admin, ws1, desk1 = fleet.user("admin"), fleet.workstation("ws1"), fleet.viewer("desk1")
    secrets = secrets_of(admin, ws1, desk1)
    # The JWT says what docs/fleet-server.conf's WORKSTATION_WS1 says, and the file is the user's own.
    claims = fleet_jwt.decode_claims(block(ws1, "NATS USER JWT"))
    assert claims["nats"]["pub"]["allow"] == ["kindlyguard.threats.ws1.>", "$JS.API.STREAM.INFO.KINDLYGUARD_THREATS"]
    assert claims["iss"] == fleet.account.public and (ws1.stat().st_mode & 0o077) == 0

    async def make():
        import nats

        from kindlyguard_monitor.fleet.connect import ensure_stream

        nc = await nats.connect(server.url, user_credentials=str(admin))
        try:
            return await ensure_stream(nc.jetstream(), replicas=1)
        finally:
            await nc.close()

    assert "created" in run(make())

    def forward(creds: Path, host: str, history: Path):
        return subprocess.run(kgmon("forward", "--nats", server.url, "--creds", str(creds), "--history", str(history),
                                    "--host", host, "--once"),
                              env=env(), capture_output=True, text=True, timeout=60)

    # ws1 forwards every threat, by its creds file.
    hist = make_history(tmp_path / "h.sqlite3", [ring_batch([ring_event(i) for i in range(N)])])
    ok = forward(ws1, "ws1", hist)
    assert ok.returncode == 0 and f"{N} acknowledged" in ok.stderr and "0 waiting" in ok.stderr, ok.stderr
    assert_no_secret(ok, secrets)
    assert stream_hosts(server.url, admin) == {"ws1": N}
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("h.sqlite3*"))  # the history keeps the state sentence
    for secret in secrets:
        assert secret.encode() not in stored
    # ws1's creds publishing as ws2: the server refuses (its JWT allows only ws1's subjects).
    hist2 = make_history(tmp_path / "h2.sqlite3", [ring_batch([ring_event(i) for i in range(5)], generation=0x77)])
    spoof = forward(ws1, "ws2", hist2)
    assert spoof.returncode == 1 and "ermission" in spoof.stderr, spoof.stderr
    assert_no_secret(spoof, secrets)
    # (kgmon forward is stopped at its ack inbox _INBOX_ws2; ws1's JWT refuses ws2's subjects too.)
    said = run(refused_publish(server.url, ws1, "kindlyguard.threats.ws2.high"))
    assert 'permissions violation for publish to "kindlyguard.threats.ws2.high"' in said.lower(), said
    # The viewer desk1 reads all of them through its own consumer ...
    shown = subprocess.run(kgmon("tail", "--fleet", server.url, "--creds", str(desk1), "--consumer", "desk1", "--json",
                                 "--count", str(N), "--timeout", "30"),
                           env=env(), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    threats = [o for o in map(json.loads, shown.stdout.splitlines()) if o["type"] == "threat"]
    assert [(t["host"], t["seq"]) for t in threats] == [("ws1", i) for i in range(N)]
    assert_no_secret(shown, secrets)
    # ... but may not forward, nor use another viewer's consumer.
    as_viewer = forward(desk1, "desk1", hist2)
    assert as_viewer.returncode == 1 and "ermission" in as_viewer.stderr, as_viewer.stderr
    assert_no_secret(as_viewer, secrets)
    other = subprocess.run(kgmon("tail", "--fleet", server.url, "--creds", str(desk1), "--consumer", "desk2",
                                 "--count", "1", "--timeout", "20"),
                           env=env(), capture_output=True, text=True, timeout=60)
    assert other.returncode == 3 and "refused this viewer" in other.stderr, other.stderr
    assert_no_secret(other, secrets)
    assert stream_hosts(server.url, admin) == {"ws1": N}


def test_creds_the_server_does_not_accept(jwt_server, tmp_path):
    """A user signed by an account this server does not know, and a creds file pairing a good JWT with
    another user's seed: the forwarder and the viewer say in one sentence that the server refused these
    credentials (the forwarder: exit status 1; the viewer: 3, cannot reach the stream), no traceback."""
    server, fleet = jwt_server
    stranger = fleet.user("stranger", **fleet_jwt.workstation_permissions("ws1"), account=fleet_jwt.account_key())
    ws1 = fleet.workstation("ws1")
    mismatched = fleet_jwt.write_creds(tmp_path / "keys" / "mismatched.creds", block(ws1, "NATS USER JWT"),
                                       fleet_jwt.user_key().seed)
    no_jwt = tmp_path / "keys" / "no-jwt.creds"  # nats-py looped for ever on this one
    no_jwt.write_text(ws1.read_text().split("------END NATS USER JWT------")[1])
    hist = make_history(tmp_path / "h.sqlite3", [ring_batch([ring_event(i) for i in range(3)])])
    refused = f"the NATS server at {server.url} refused these credentials (authorization violation)"
    for creds in (stranger, mismatched):
        fwd = subprocess.run(kgmon("forward", "--nats", server.url, "--creds", str(creds), "--history", str(hist),
                                   "--host", "ws1", "--once"),
                             env=env(), capture_output=True, text=True, timeout=60)
        assert fwd.returncode == 1, fwd.stderr
        # Its log line and its last line give the same one sentence, besides the counts.
        said = {line.split(": ", 1)[1] for line in fwd.stderr.splitlines() if "acknowledged" not in line}
        assert said == {f"not forwarding: {refused}"}, fwd.stderr
        assert_no_secret(fwd, secrets_of(creds))
        tail = subprocess.run(kgmon("tail", "--fleet", server.url, "--creds", str(creds), "--consumer", "desk1",
                                    "--count", "1", "--timeout", "20"),
                              env=env(), capture_output=True, text=True, timeout=60)
        assert tail.returncode == 3 and tail.stderr.splitlines() == [f"kgmon tail: {refused}"], tail.stderr
        assert_no_secret(tail, secrets_of(creds))
    # A creds file nats-py cannot use: said before connecting, in one sentence, exit 1 / 3.
    fwd = subprocess.run(kgmon("forward", "--nats", server.url, "--creds", str(no_jwt), "--history", str(hist),
                               "--host", "ws1", "--once"),
                         env=env(), capture_output=True, text=True, timeout=60)
    assert fwd.returncode == 1 and "Traceback" not in fwd.stderr, fwd.stderr
    assert fwd.stderr.splitlines()[-1] == f"kgmon forward: not forwarding: the creds file {no_jwt} holds no user JWT " \
                                          "(a -----BEGIN NATS USER JWT----- block, as `nsc generate creds` writes)"
    tail = subprocess.run(kgmon("tail", "--fleet", server.url, "--creds", str(no_jwt), "--consumer", "desk1",
                                "--count", "1", "--timeout", "20"),
                          env=env(), capture_output=True, text=True, timeout=60)
    assert tail.returncode == 3 and len(tail.stderr.splitlines()) == 1 and "holds no user JWT" in tail.stderr
