"""A creds file or NKey seed file nats-py could not use is refused before connecting, in one sentence.

nats-py reads these files only when it signs the server's nonce: a creds file without a JWT block
made it loop for ever, a damaged seed ended in a traceback. connect_kwargs checks them first, as
nats-py reads them, and says what is wrong without quoting the file.
"""

from __future__ import annotations

import pytest

pytest.importorskip("nkeys")
import fleet_jwt  # noqa: E402

from kindlyguard_monitor.fleet.connect import BadOption, Options, connect_kwargs  # noqa: E402


@pytest.fixture
def good(tmp_path):
    fleet = fleet_jwt.make_fleet(tmp_path)
    return fleet.workstation("ws1")


def refusal(**files) -> str:
    with pytest.raises(BadOption) as caught:
        connect_kwargs(Options(("nats://127.0.0.1:4222",), **files))
    return str(caught.value)


def test_good_files_are_named_not_copied(good, tmp_path):
    assert connect_kwargs(Options(("nats://127.0.0.1:4222",), creds_file=str(good)))["user_credentials"] == str(good)
    seed_file = tmp_path / "ws1.nk"
    seed_file.write_bytes(fleet_jwt.user_key().seed + b"\n")
    assert connect_kwargs(Options(("nats://h:4222",), nkey_file=str(seed_file)))["nkeys_seed"] == str(seed_file)


@pytest.mark.parametrize("damage, said", [
    (lambda t: "\n".join(ln for ln in t.splitlines() if "USER JWT" not in ln and not ln.startswith("eyJ")),
     "holds no user JWT (a -----BEGIN NATS USER JWT----- block"),
    (lambda t: "not a creds file\n", "holds no user JWT"),
    (lambda t: t.split("*****")[0], "holds no NKey seed (a -----BEGIN USER NKEY SEED----- block"),
    (lambda t: t.replace("SEED-----\nSU", "SEED-----\nSA"), "holds no user NKey seed (one starting with SU)"),
    (lambda t: t.replace("SEED-----\nSU", "SEED-----\nSU2"), "holds a damaged NKey seed"),
])
def test_an_unusable_creds_file_is_one_sentence_without_its_text(good, tmp_path, damage, said):
    text = good.read_text()
    bad = tmp_path / "bad.creds"
    bad.write_text(damage(text))
    why = refusal(creds_file=str(bad))
    assert why.startswith(f"the creds file {bad} ") and said in why and "\n" not in why
    seed = next(ln for ln in text.splitlines() if ln.startswith("SU"))
    assert seed[2:14] not in why and "eyJ" not in why


def test_an_unusable_nkey_seed_file(tmp_path, good):
    damaged = tmp_path / "damaged.nk"
    damaged.write_text("SUnotaseed\n")
    assert refusal(nkey_file=str(damaged)) == f"the NKey seed file {damaged} holds a damaged NKey seed"
    assert "holds no user NKey seed" in refusal(nkey_file=str(good))  # a creds file given as --nkey
    folder = tmp_path / "folder"
    folder.mkdir()
    assert "cannot be read" in refusal(creds_file=str(folder))


def test_the_helper_signs_as_the_nats_jwt_library(tmp_path):
    """tests/fleet_jwt.py's JWTs as github.com/nats-io/jwt v2 makes them (checked by hand against JWTs
    made by nsc): the issuer's signature over header.claims, jti the base32 SHA-512/256 of the standard
    claims, the chain operator -> account -> user."""
    import base64
    import hashlib

    import nacl.signing

    fleet = fleet_jwt.make_fleet(tmp_path)
    user = fleet_jwt.decode_claims(jwt := block_of(fleet.workstation("ws1")))
    assert jwt.split(".")[0] == "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ"  # {"typ":"JWT","alg":"ed25519-nkey"}
    head, body, sig = jwt.split(".")
    issuer = base64.b32decode(user["iss"] + "=" * (-len(user["iss"]) % 8))[1:-2]  # prefix byte, key, CRC16
    nacl.signing.VerifyKey(issuer).verify(f"{head}.{body}".encode(), base64.urlsafe_b64decode(sig + "=="))
    standard = {k: user[k] for k in ("iat", "iss", "name", "sub")}
    digest = hashlib.new("sha512_256", fleet_jwt._go_json(standard).encode()).digest()
    assert user["jti"] == base64.b32encode(digest).decode().rstrip("=")
    assert '"kindlyguard.threats.ws1.\\u003e"' in base64.urlsafe_b64decode(body + "==").decode()  # Go's escaping
    account = fleet_jwt.decode_claims(fleet.account_jwt)
    operator = fleet_jwt.decode_claims(fleet.operator_jwt)
    assert (user["iss"], account["iss"], operator["iss"]) == (account["sub"], operator["sub"], operator["sub"])
    assert user["nats"]["type"] == "user" and account["nats"]["limits"]["disk_storage"] == -1
    assert operator["nats"] == {"system_account": fleet.system.public, "type": "operator", "version": 2}


def block_of(creds) -> str:
    lines = creds.read_text().splitlines()
    return lines[lines.index("-----BEGIN NATS USER JWT-----") + 1]


def test_the_jwt_permissions_are_the_sample_configurations():
    """The users' JWTs in test_fleet_creds.py (and docs/fleet-jwt.md's nsc commands) carry the permissions
    of docs/fleet-server.conf's WORKSTATION_WS1 and VIEWER_DESK1 blocks, subject for subject."""
    import re
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    conf = (docs / "fleet-server.conf").read_text()

    def block(name: str) -> dict:
        body = conf[conf.index(f"{name} = {{"):]
        body = body[:body.index("\n}\n")]
        lists = {kind: re.findall(r'"([^"]+)"', re.search(kind + r": \{\s*allow: \[(.*?)\]", body, re.S).group(1))
                 for kind in ("publish", "subscribe")}
        return {"pub": lists["publish"], "sub": lists["subscribe"]}

    assert block("WORKSTATION_WS1") == fleet_jwt.workstation_permissions("ws1")
    assert block("VIEWER_DESK1") == fleet_jwt.viewer_permissions("desk1")
    guide = (docs / "fleet-jwt.md").read_text()
    for subject in fleet_jwt.workstation_permissions("ws1")["pub"] + fleet_jwt.viewer_permissions("desk1")["pub"]:
        assert subject in guide


def test_a_secret_file_others_can_read_is_said_once(good, tmp_path, caplog):
    """As ssh says of a private key: a creds or seed file readable by other users is named with the
    command that fixes it (a warning, once per file; the connection still goes ahead)."""
    import logging

    key = fleet_jwt.user_key()
    seed_file = tmp_path / "open.nk"
    seed_file.write_bytes(key.seed + b"\n")
    seed_file.chmod(0o644)
    good.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="kindlyguard_monitor.fleet.connect"):
        connect_kwargs(Options(("nats://h:4222",), creds_file=str(good)))
        assert not caplog.records  # 0600: nothing to say
        for _ in range(2):
            connect_kwargs(Options(("nats://h:4222",), nkey_file=str(seed_file)))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and f"chmod 600 {seed_file}" in said[0] and "other users" in said[0]
    assert key.seed.decode()[:10] not in said[0]
