"""`kgmon forward --otlp URL`: the history's threats as OpenTelemetry log records, to any OTLP receiver.

The same outbox as the NATS forwarder (outbox.py), with a cursor of its own (row
"OTLP" of the cursor table), so either may run without the other. Records are
made with the official SDK's types and sent by its OTLP/HTTP exporter
(opentelemetry-exporter-otlp-proto-http: protobuf over HTTP, no gRPC stack), in
batches of up to BATCH; the cursor moves past a batch once the receiver accepted
it (HTTP 2xx), and is saved at once.

One record per threat:
- timestamp: when the Shield saw it; observed timestamp: when it was stored here;
- severity_number: Low INFO (9), Medium WARN (13), High ERROR (17), Critical FATAL (21),
  severity_text the name;
- event_name `kindlyguard.threat` and a body made only of our own words
  ("Threat: CommandInjection, High, blocked"): no attacker text is ever put into a
  string of ours;
- attributes `kindlyguard.threat.*`: key (hex, the history's key: a receiver's dedupe
  key), id, type, severity, blocked, source, details (the attacker-controlled text,
  as plain attribute values, exactly as stored), transport, generation, seq, and
  `kindlyguard.history.row` / `kindlyguard.history.id`;
- resource: service.name `kindlyguard-monitor`, host.name the host token.
A gap the history recorded is one record too (event `kindlyguard.gap`, WARN).

Delivery is at least once: OTLP has no de-duplication, so a batch accepted by the
receiver just before a crash (before the cursor was saved) is sent again; the key
attribute tells the copies apart. Failures (no receiver, a refusal) keep the cursor
where it is and are retried with a growing pause; the reason is stored as the
NATS forwarder's is ("not forwarding: …").
"""

from __future__ import annotations

import logging
import threading

from kindlyguard_monitor.fleet import outbox
from kindlyguard_monitor.fleet import subjects as s
from kindlyguard_monitor.fleet.connect import safe_url
from kindlyguard_monitor.history.records import generation_int, generation_text
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import severity_level, severity_name, threat_type_name

log = logging.getLogger(__name__)

CURSOR = "OTLP"  # the cursor table's row for this forwarder
BATCH = 512
SCOPE = "kindlyguard_monitor.fleet.otlp"
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0
# OTel SeverityNumber per severity level (threats.LOW..CRITICAL = 1..4)
SEVERITY_NUMBER = {1: 9, 2: 13, 3: 17, 4: 21}


def shown_url(url: str) -> str:
    """The endpoint for messages: no user:password@, no ?query (where some receivers take a key)."""
    return safe_url(url).split("?", 1)[0].split("#", 1)[0]


def available() -> bool:
    try:
        import opentelemetry.exporter.otlp.proto.http._log_exporter  # noqa: F401
        import opentelemetry.sdk._logs  # noqa: F401
    except ImportError:
        return False
    return True


class _LastWords(logging.Handler):
    """Keeps the SDK's last warning (why an export failed) for our one sentence, instead of its
    own log lines; the text (a receiver's HTTP reason among it) is shown through textsafe."""

    def __init__(self, endpoint: str):
        super().__init__(logging.WARNING)
        self.text = ""
        self.secrets = [p for p in (endpoint.partition("?")[2], endpoint.partition("://")[2].partition("@")[0]
                                    if "@" in endpoint.partition("?")[0] else "") if p]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            for secret in self.secrets:  # the query (an API key?) and user:password never shown
                text = text.replace(secret, "***")
            self.text = visible(text)[:300]
        except Exception:  # a message that cannot be formatted: nothing to add
            self.text = ""


class OtlpForwarder:
    def __init__(self, history_path, endpoint: str, host: str | None = None, *, ca_file: str | None = None,
                 timeout_s: float = 10.0, batch: int = BATCH, poll_s: float = 0.5):
        self.history_path = history_path
        self.endpoint = endpoint
        self.host = s.host_token(host)
        self.ca_file = ca_file
        self.timeout_s = timeout_s
        self.batch = max(1, batch)
        self.poll_s = poll_s
        self.acked = 0
        self.waiting = 0
        self.state = "starting"
        self._conn = None
        self._cursor: outbox.Cursor | None = None
        self._exporter = None
        self._resource = self._scope = None

    def _say(self, text: str) -> None:
        if text == self.state:
            return
        (log.warning if text.startswith("not forwarding") else log.info)("%s", text)
        self.state = text
        if self._conn is not None:
            try:
                outbox.save_state(self._conn, CURSOR, text)
            except Exception as exc:  # busy: the next change says it
                log.debug("state not saved: %s", exc)

    def _setup(self) -> None:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from kindlyguard_monitor import __version__

        self._exporter = OTLPLogExporter(endpoint=self.endpoint, certificate_file=self.ca_file,
                                         timeout=self.timeout_s)
        self._resource = Resource.create({"service.name": "kindlyguard-monitor", "service.version": __version__,
                                          "host.name": self.host})
        self._scope = InstrumentationScope(SCOPE, __version__)

    def run(self, stop: threading.Event, until_idle: bool = False) -> bool:
        """Forward until `stop` is set; with until_idle, until nothing waits (True) or the first failure."""
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        self._setup()
        delay = RETRY_MIN_S
        sdk_log, said = logging.getLogger("opentelemetry"), _LastWords(self.endpoint)
        sdk_log.addHandler(said)
        sdk_log.propagate = False
        try:
            while not stop.is_set():
                if self._conn is None and not self._open():
                    if until_idle:
                        return False
                    stop.wait(1.0)
                    continue
                cur = self._cursor
                gaps = outbox.gaps_after(self._conn, cur.gap_row, self.batch)
                threats = outbox.threat_rows_after(self._conn, cur.threat_row, self.batch - len(gaps))
                if not gaps and not threats:
                    self.waiting = 0
                    self._say(f"forwarding to {shown_url(self.endpoint)}")
                    if until_idle:
                        return True
                    stop.wait(self.poll_s)
                    continue
                records = [self._gap_record(g, cur.history_id) for g in gaps] + \
                          [self._threat_record(r, cur.history_id) for r in threats]
                said.text = ""
                result = self._exporter.export(records)
                if result is not LogRecordExportResult.SUCCESS:
                    why = f"not forwarding: the OTLP receiver at {shown_url(self.endpoint)} did not take the records" \
                          + (f" ({said.text})" if said.text else "")
                    if until_idle:
                        self._say(why)
                        return False
                    self._say(why + "; retrying")
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                delay = RETRY_MIN_S
                self._advance(threats[-1][0] if threats else cur.threat_row, gaps[-1][0] if gaps else cur.gap_row,
                              len(records))
                self._say(f"forwarding to {shown_url(self.endpoint)}")
            return False
        finally:
            sdk_log.removeHandler(said)
            sdk_log.propagate = True
            if self._exporter is not None:
                self._exporter.shutdown()
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _open(self) -> bool:
        try:
            self._conn = outbox.open_outbox(self.history_path)
            self._cursor = outbox.load(self._conn, CURSOR)
            self.waiting = outbox.waiting(self._conn, self._cursor)
            return True
        except outbox.NotReady as exc:
            self._say(f"not forwarding: {exc}")
            return False

    def _advance(self, threat_row: int, gap_row: int, n: int) -> None:
        c = self._cursor
        self._cursor = outbox.Cursor(c.history_id, threat_row, gap_row, outbox.now_us(), c.forwarded + n)
        self.acked += n
        try:
            outbox.save(self._conn, CURSOR, self._cursor)
        except Exception as exc:  # the history busy: saved with the next batch (at worst this one is sent again)
            log.warning("the OTLP cursor could not be saved (%s); retrying", exc)
        self.waiting = outbox.waiting(self._conn, self._cursor)

    def _record(self, time_us: int, observed_us: int, severity: int, text: str, event: str, body: str,
                attributes: dict):
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord

        record = LogRecord(timestamp=time_us * 1000, observed_timestamp=observed_us * 1000,
                           severity_number=SeverityNumber(severity), severity_text=text, body=body,
                           attributes=attributes, event_name=event)
        return ReadableLogRecord(log_record=record, resource=self._resource, instrumentation_scope=self._scope)

    def _threat_record(self, row: tuple, history_id: str):
        row_id, key, time_us, threat_type, severity, blocked, flags, source, details, transport, gen, seq = row
        key = bytes(key)
        level = severity_level(severity)
        kind, sev = threat_type_name(threat_type), severity_name(severity)
        if len(key) == 16:
            g, n = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:], "big")
            text_id, seq = f"{g:016x}-{n}", n if seq is None else seq
        else:
            text_id = "content-" + key.hex()
        attributes = {
            "kindlyguard.threat.key": key.hex(), "kindlyguard.threat.id": text_id,
            "kindlyguard.threat.type": kind, "kindlyguard.threat.severity": sev,
            "kindlyguard.threat.blocked": bool(blocked), "kindlyguard.threat.source": source,
            "kindlyguard.threat.details": details, "kindlyguard.threat.transport": transport,
            "kindlyguard.threat.flags": flags, "kindlyguard.history.row": row_id,
            "kindlyguard.history.id": history_id,
        }
        generation = generation_text(generation_int(gen))
        if generation is not None:
            attributes["kindlyguard.threat.generation"] = generation
        if seq is not None:
            attributes["kindlyguard.threat.seq"] = seq if seq < 1 << 63 else str(seq)  # OTLP ints are signed 64-bit
        body = f"Threat: {kind}, {sev}, {'blocked' if blocked else 'not blocked'}"
        return self._record(time_us, time_us, SEVERITY_NUMBER[level], sev, "kindlyguard.threat", body, attributes)

    def _gap_record(self, row: tuple, history_id: str):
        row_id, time_us, transport, generation, missed, corrupt, kind = row
        attributes = {"kindlyguard.gap.missed": missed, "kindlyguard.gap.corrupt": corrupt,
                      "kindlyguard.gap.kind": kind, "kindlyguard.gap.transport": transport,
                      "kindlyguard.history.row": row_id, "kindlyguard.history.id": history_id}
        if generation is not None:
            attributes["kindlyguard.gap.generation"] = generation
        body = f"Gap: {missed} threat(s) missed, {corrupt} corrupt"
        return self._record(time_us, time_us, 13, "WARN", "kindlyguard.gap", body, attributes)


def forward_until(fwd: OtlpForwarder, until_idle: bool) -> bool:
    """Run `fwd` on this thread until SIGINT / SIGTERM (or idle with until_idle)."""
    import signal

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return fwd.run(stop, until_idle)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
