"""NATS decentralised (JWT) auth for the fleet tests: an operator, accounts, users, creds files.

What `nsc` makes, made here with the `nkeys` package (no nsc binary, no network), following
github.com/nats-io/jwt v2 (claims.go, header.go, creds_utils.go):

- a JWT is base64url(header) "." base64url(claims) "." base64url(ed25519 signature of the
  first two parts), unpadded; the header is {"typ":"JWT","alg":"ed25519-nkey"};
- the claims are aud/exp/jti/iat/iss/name/nbf/sub plus "nats": {..., "type", "version": 2};
  `jti` is the unpadded base32 of SHA-512/256 over the JSON of those standard claims alone,
  serialised without `jti` (Go's json.Marshal of ClaimsData: that field order, empty ones left
  out, no spaces), after `iss` and `iat` are set;
- an operator signs itself, an operator signs accounts, an account signs its users;
- a creds file is the user JWT and the user's seed between the -----BEGIN ... ----- /
  ------END ...------ lines of FormatUserConfig.

`operator_conf()` is a server configuration in operator mode: the operator JWT, a system
account, `resolver: MEMORY` with every account's JWT preloaded, JetStream in a tmp folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nkeys

STREAM = "KINDLYGUARD_THREATS"


@dataclass(frozen=True)
class Key:
    seed: bytes  # S...
    public: str  # O..., A... or U...

    def sign(self, data: bytes) -> bytes:
        return nkeys.from_seed(bytearray(self.seed)).sign(data)


def new_key(prefix: int) -> Key:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    return Key(seed, nkeys.from_seed(bytearray(seed)).public_key.decode())


def operator_key() -> Key:
    return new_key(nkeys.PREFIX_BYTE_OPERATOR)


def account_key() -> Key:
    return new_key(nkeys.PREFIX_BYTE_ACCOUNT)


def user_key() -> Key:
    return new_key(nkeys.PREFIX_BYTE_USER)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _go_json(value) -> str:
    """JSON as Go's encoding/json writes it: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def encode(subject: str, name: str, nats: dict, signer: Key) -> str:
    """A v2 JWT of `subject` (a public key) signed by `signer`, as jwt.ClaimsData.doEncode makes it."""
    standard = {"iat": int(time.time()), "iss": signer.public, "name": name, "sub": subject}  # ClaimsData's order
    jti = base64.b32encode(hashlib.new("sha512_256", _go_json(standard).encode()).digest()).rstrip(b"=").decode()
    claims = {"jti": jti, **standard, "nats": {**nats, "version": 2}}
    claims = {k: claims[k] for k in ("jti", "iat", "iss", "name", "sub", "nats")}
    header = _b64(_go_json({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(_go_json(claims).encode())
    to_sign = f"{header}.{payload}"
    return f"{to_sign}.{_b64(signer.sign(to_sign.encode()))}"


def decode_claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def operator_jwt(op: Key, system_account: str, name: str = "KG_OPERATOR") -> str:
    return encode(op.public, name, {"system_account": system_account, "type": "operator"}, op)


UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
             "leaf": -1}
JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}  # as `nsc edit account --js-*` -1


def account_jwt(account: Key, op: Key, name: str, jetstream: bool = True) -> str:
    limits = {**UNLIMITED, **(JETSTREAM if jetstream else {})}
    return encode(account.public, name, {"limits": limits, "type": "account"}, op)


def user_jwt(user: Key, account: Key, name: str, pub: list[str] | None = None, sub: list[str] | None = None) -> str:
    """A user of `account`; `pub`/`sub` None: allowed everything (as `nsc add user` without permissions)."""
    nats: dict = {}
    if pub is not None:
        nats["pub"] = {"allow": pub}
    if sub is not None:
        nats["sub"] = {"allow": sub}
    nats |= {"subs": -1, "data": -1, "payload": -1, "type": "user"}
    return encode(user.public, name, nats, account)


def creds_text(jwt: str, seed: bytes) -> str:
    """A creds file's text, as jwt.FormatUserConfig writes it (what `nsc generate creds` prints)."""
    return (f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n")


def write_creds(path: Path, jwt: str, seed: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(creds_text(jwt, seed))
    path.chmod(0o600)
    return path


# -- the fleet's users, with docs/fleet-server.conf's permissions --------------------------------------

def workstation_permissions(host: str) -> dict:
    return {"pub": [f"kindlyguard.threats.{host}.>", f"$JS.API.STREAM.INFO.{STREAM}"], "sub": [f"_INBOX_{host}.>"]}


def viewer_permissions(consumer: str) -> dict:
    return {"pub": ["$JS.API.INFO", f"$JS.API.STREAM.INFO.{STREAM}", f"$JS.API.CONSUMER.INFO.{STREAM}.{consumer}",
                    f"$JS.API.CONSUMER.CREATE.{STREAM}.{consumer}.>",
                    f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}", f"$JS.ACK.{STREAM}.{consumer}.>"],
            "sub": ["_INBOX.>"]}


@dataclass
class Fleet:
    """An operator, its system account, a JetStream account KINDLYGUARD, and creds files for its users."""
    folder: Path
    operator: Key
    system: Key
    account: Key
    operator_jwt: str
    system_jwt: str
    account_jwt: str

    def user(self, name: str, pub: list[str] | None = None, sub: list[str] | None = None,
             account: Key | None = None) -> Path:
        """A creds file (0600) for a new user `name` of the fleet's account (or of `account`)."""
        key = user_key()
        return write_creds(self.folder / f"{name}.creds", user_jwt(key, account or self.account, name, pub, sub),
                           key.seed)

    def workstation(self, host: str) -> Path:
        return self.user(host, **workstation_permissions(host))

    def viewer(self, consumer: str) -> Path:
        return self.user(consumer, **viewer_permissions(consumer))

    def conf(self, port: int, store_dir: Path) -> str:
        """nats-server's configuration in operator mode (the JWTs inline, resolver MEMORY)."""
        return (f"server_name: kg_jwt\nlisten: 127.0.0.1:{port}\n"
                f"operator: {self.operator_jwt}\n"
                f"system_account: {self.system.public}\n"
                "resolver: MEMORY\n"
                "resolver_preload: {\n"
                f"  {self.system.public}: {self.system_jwt}\n"
                f"  {self.account.public}: {self.account_jwt}\n"
                "}\n"
                f"jetstream {{\n  store_dir: \"{store_dir}\"\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}}\n")


def make_fleet(folder: Path) -> Fleet:
    folder.mkdir(parents=True, exist_ok=True)
    op, system, account = operator_key(), account_key(), account_key()
    return Fleet(folder, op, system, account, operator_jwt(op, system.public),
                 account_jwt(system, op, "SYS", jetstream=False), account_jwt(account, op, "KINDLYGUARD"))
