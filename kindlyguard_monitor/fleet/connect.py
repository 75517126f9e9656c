"""Connecting to NATS: server URLs, TLS, credentials; creating the stream when it is missing.

Secrets stay in their files: a creds file or an NKey seed file is named, never
read into settings or logs (nats-py reads it when it signs the server's
nonce). A `tls://` URL or a CA file turns TLS on; the server's certificate is
checked against the CA file (else the system's CAs) and its host name.
Nothing here logs a URL's user:password part (`safe_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kindlyguard_monitor.fleet import subjects as s
from kindlyguard_monitor.fleet.message import MAX_BODY

log = logging.getLogger(__name__)
_warned_open: set[str] = set()  # secret files already said to be readable by others (once per process)

DUPLICATE_WINDOW_S = 2 * 3600.0  # a retry within two hours of the first attempt is dropped by the stream
MAX_AGE_S = 90 * 86400.0  # as long as the local history keeps a threat
SCHEMES = ("nats", "tls")


class BadOption(ValueError):
    """An option that cannot work; str() says which and why (one sentence)."""


class Unreachable(Exception):
    """A first connection that cannot be made; str() says why (one sentence)."""


@dataclass(frozen=True)
class Options:
    servers: tuple[str, ...]
    ca_file: str | None = None
    cert_file: str | None = None  # client certificate (mutual TLS), with key_file
    key_file: str | None = None
    creds_file: str | None = None
    nkey_file: str | None = None
    name: str = "kgmon"
    extra: dict = field(default_factory=dict)  # passed to nats.connect as it is (tests)

    @property
    def shown(self) -> str:
        """The servers for messages and logs: comma-separated, without any user:password part."""
        return ", ".join(map(safe_url, self.servers))

    @property
    def tls(self) -> bool:
        return bool(self.ca_file or self.cert_file) or any(u.startswith("tls://") for u in self.servers)


def url_problem(text: str) -> str | None:
    """Why `text` (one URL or several, comma-separated) is not a NATS server list; None when it is."""
    for url in split_urls(text):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            return f"{safe_url(url)!r} is not a URL ({exc})"
        if parts.scheme not in SCHEMES:
            return f"{safe_url(url)!r} must start with nats:// or tls://"
        if not parts.hostname:
            return f"{safe_url(url)!r} has no host"
        if port == 0:
            return f"{safe_url(url)!r} has port 0"
    if not split_urls(text):
        return "no server URL given"
    return None


def split_urls(text: str) -> list[str]:
    return [u.strip() for u in text.split(",") if u.strip()]


def safe_url(url: str) -> str:
    """The URL without any user:password@ part, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://***@{host}{port}{parts.path}"


def connect_deadline(o: Options, per_server_s: float = 2.0) -> float:
    """How long a first connection may take: every server tried once, with its TLS handshake."""
    return per_server_s * len(o.servers) + 1.0


async def first_connection(kw: dict, o: Options):
    """nats.connect(**kw), bounded by connect_deadline(o), for a first connection.

    nats-py retries a refused first connection until the deadline; an answer no retry
    can change (a certificate this machine does not trust, credentials the server
    refuses) ends the attempt at once with a sentence that says what to do.
    Raises Unreachable."""
    import nats
    from nats.errors import Error as NatsError

    hopeless: asyncio.Future = asyncio.get_running_loop().create_future()
    theirs = kw.get("error_cb")

    async def on_error(exc):
        if not hopeless.done() and _hopeless(exc):
            hopeless.set_result(exc)
        if theirs is not None:
            await theirs(exc)

    where = o.shown
    deadline = connect_deadline(o)
    attempt = asyncio.ensure_future(nats.connect(**{**kw, "error_cb": on_error}))
    done, _ = await asyncio.wait({attempt, hopeless}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED)
    if attempt in done:
        try:
            return attempt.result()
        except (OSError, NatsError, ValueError) as exc:
            if _hopeless(exc):
                raise Unreachable(_hopeless_sentence(exc, where)) from None
            raise Unreachable(f"no NATS server answers at {where} ({_why(exc)})") from None
    attempt.cancel()
    with contextlib.suppress(BaseException):
        await attempt
    if hopeless.done():
        raise Unreachable(_hopeless_sentence(hopeless.result(), where)) from None
    raise Unreachable(f"no NATS server answers at {where} (no answer in {deadline:g} s)")


def _hopeless(exc) -> bool:
    return isinstance(exc, ssl.SSLCertVerificationError) or "authorization violation" in str(exc).lower()


def _hopeless_sentence(exc, where: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the NATS server at {where} has a TLS certificate this machine does not trust "
                f"({exc.verify_message or exc}); give its CA file with --ca")
    return f"the NATS server at {where} refused these credentials (authorization violation)"


def _why(exc) -> str:
    text = getattr(exc, "description", None) or str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text


def _readable(path: str | None, what: str) -> None:
    if path is not None and not os.access(path, os.R_OK):
        raise BadOption(f"the {what} {path} cannot be read")


def _seed_problem(seed: bytes) -> str | None:
    """Why `seed` is not a user's NKey seed (SU...), without quoting it; None when it is one."""
    try:
        import nkeys
    except ImportError:
        return "cannot be used without the nkeys package (pip install 'nats-py[nkeys]')"
    if not seed.startswith(b"SU"):
        return "holds no user NKey seed (one starting with SU)"
    buf = bytearray(seed)
    try:
        nkeys.from_seed(buf).wipe()
    except Exception:  # nkeys' own errors, or a ValueError from base32: the seed is damaged
        return "holds a damaged NKey seed"
    finally:
        buf[:] = bytes(len(buf))
    return None


def _after(lines: list[bytes], marker: bytes) -> bytes | None:
    """The line after the first one holding `marker` (how nats-py reads a creds file), stripped."""
    for i, line in enumerate(lines[:-1]):
        if marker in line:
            return lines[i + 1].strip()
    return None


def _secret_file_problem(path: str, creds: bool) -> str | None:
    """Why nats-py could not use this creds file (or NKey seed file): nats-py reads it only when it
    signs the server's nonce, and fails there with a traceback, or loops for ever on a creds file
    without a JWT block. Checked first, as nats-py reads it; nothing of its text goes in the answer."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not creds:
        return _seed_problem(text.strip())
    lines = text.splitlines()
    jwt = _after(lines, b"BEGIN NATS USER JWT")
    if jwt is None or jwt.count(b".") != 2:
        return "holds no user JWT (a -----BEGIN NATS USER JWT----- block, as `nsc generate creds` writes)"
    seed = _after(lines, b"BEGIN USER NKEY SEED")
    if seed is None:
        return "holds no NKey seed (a -----BEGIN USER NKEY SEED----- block, as `nsc generate creds` writes)"
    return _seed_problem(seed)


def connect_kwargs(o: Options) -> dict:
    """The nats.connect() arguments for these options; raises BadOption for unreadable or unusable files."""
    for path, what in ((o.ca_file, "CA file"), (o.cert_file, "certificate file"), (o.key_file, "key file"),
                       (o.creds_file, "creds file"), (o.nkey_file, "NKey seed file")):
        _readable(path, what)
    if bool(o.cert_file) != bool(o.key_file):
        raise BadOption("--tls-cert and --tls-key go together")
    if o.creds_file and o.nkey_file:
        raise BadOption("give --creds or --nkey, not both")
    for path, what, creds in ((o.creds_file, "creds file", True), (o.nkey_file, "NKey seed file", False)):
        problem = path and _secret_file_problem(path, creds)
        if problem:
            raise BadOption(f"the {what} {path} {problem}")
        if path and os.name == "posix" and path not in _warned_open and os.stat(path).st_mode & 0o077:
            _warned_open.add(path)  # as ssh says of a private key; a warning, not a refusal
            log.warning("the %s %s can be read by other users of this machine; make it yours alone: chmod 600 %s",
                        what, path, path)
    kw: dict = {"servers": list(o.servers), "name": o.name}
    if o.tls:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=o.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if o.cert_file:
            try:
                ctx.load_cert_chain(o.cert_file, o.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise BadOption(f"the client certificate {o.cert_file} cannot be used: {exc}") from None
        kw["tls"] = ctx
    if o.creds_file:
        kw["user_credentials"] = o.creds_file
    if o.nkey_file:
        kw["nkeys_seed"] = o.nkey_file
    kw.update(o.extra)
    return kw


async def ensure_stream(js, replicas: int = 1, duplicate_window_s: float = DUPLICATE_WINDOW_S) -> str:
    """Create KINDLYGUARD_THREATS if it is missing; returns what happened, one sentence.

    An existing stream is used as it is (its owner may have chosen other limits, and a
    workstation may not change it): without fast-ingest batches the forwarder publishes
    one by one, and the answer says so.
    A workstation whose permissions do not allow creating streams gets an answer
    saying so and goes on: publishing works if an administrator created the stream.
    """
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js import api
    from nats.js.errors import APIError, NotFoundError

    try:
        info = await js.stream_info(s.STREAM)
        there = (f"stream {s.STREAM} is there ({info.config.num_replicas or 1} replica(s), "
                 f"duplicate window {info.config.duplicate_window or 0:g} s)")
        return there + _batches_note(info.config)
    except NotFoundError:
        pass
    except APIError as exc:
        return f"stream {s.STREAM} could not be looked at ({exc.description or exc}); publishing anyway"
    except NatsTimeout:  # no permission for the JetStream API (a denied request gets no answer), or no leader yet
        return f"stream {s.STREAM} could not be looked at (no answer); publishing anyway"
    config = api.StreamConfig(
        name=s.STREAM, subjects=[s.ALL_SUBJECTS], storage=api.StorageType.FILE, num_replicas=replicas,
        duplicate_window=duplicate_window_s, max_age=MAX_AGE_S, max_msg_size=MAX_BODY,
        retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.OLD, allow_direct=True,
        allow_batched=True,  # fast-ingest batches (publish.py); a server before 2.14 ignores it
    )
    try:
        await js.add_stream(config)
    except APIError as exc:
        if "already in use" in str(exc.description or ""):
            return f"stream {s.STREAM} is there (made meanwhile by another host)"
        return f"stream {s.STREAM} could not be created ({exc.description or exc}); publishing anyway"
    return f"stream {s.STREAM} created ({replicas} replica(s), duplicate window {duplicate_window_s:g} s)"


def _batches_note(config) -> str:
    """What the forwarder will do about fast-ingest batches on an existing stream (publish.py)."""
    if config.allow_batched:
        return ""
    return ("; its fast-ingest batches are off, so threats go one by one (slower): its administrator can "
            "turn on allow_batched (nats-server 2.14 or later)")
