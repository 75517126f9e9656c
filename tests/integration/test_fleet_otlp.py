"""`kgmon forward --otlp URL` (issue 16, Beyond): every threat as an OpenTelemetry log record.

The receiver is a small OTLP/HTTP server on loopback that decodes each request with the
opentelemetry-proto package (the protobuf messages of the OTLP specification), so what is
checked is the exporter's real wire format; the forwarder is a real `kgmon forward` process.
"""

from __future__ import annotations

import gzip
import sqlite3
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleet_servers import env, kgmon
from history_data import GEN, ring_batch, ring_event, start_store

pytest.importorskip("opentelemetry.exporter.otlp.proto.http._log_exporter")
logs_service = pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")

N = 1200  # more than one batch (512)
HOSTILE = "rm -rf / \u202e\u200b {body} %s \"quoted\" \U0001F600"


class Receiver:
    """OTLP/HTTP logs on 127.0.0.1 (a port the kernel chose): keeps what it accepted; refuses
    (HTTP 400) the first `refuse` requests."""

    def __init__(self, refuse: int = 0):
        self.records: list[tuple[dict, object]] = []  # (resource attributes, LogRecord)
        self.requests = 0
        self.refuse = refuse
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    data = gzip.decompress(data)
                receiver.requests += 1
                if self.path.split("?")[0] != "/v1/logs" or receiver.refuse > 0:
                    receiver.refuse -= 1
                    self.send_response(400)
                    self.end_headers()
                    return
                req = logs_service.ExportLogsServiceRequest()
                req.ParseFromString(data)
                for rl in req.resource_logs:
                    res = {a.key: _value(a.value) for a in rl.resource.attributes}
                    for sl in rl.scope_logs:
                        receiver.records.extend((res, r) for r in sl.log_records)
                body = logs_service.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/logs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _history(path):
    store = start_store(path)
    events = [ring_event(i, severity=1 + i % 4, blocked=i % 3 == 0, details=HOSTILE if i == 7 else f"threat {i}")
              for i in range(N)]
    store.submit([ring_batch(events[:N // 2])])
    assert store.flush(60)
    store.record_counters(N // 2, 5, 0, "shm", GEN)
    assert store.flush(60)
    store.submit([ring_batch(events[N // 2:])])
    assert store.close(60), store.error
    return path


def _forward(url, hist, *extra):
    return subprocess.run(kgmon("forward", "--otlp", url, "--history", str(hist), "--host", "WS1.corp", "--once",
                                *extra), env=env(), capture_output=True, text=True, timeout=120)


def _attrs(record) -> dict:
    return {a.key: _value(a.value) for a in record.attributes}


def test_every_threat_arrives_once_as_a_log_record(receiver, tmp_path):
    hist = _history(tmp_path / "h.sqlite3")
    done = _forward(receiver.url, hist)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and f"{N + 1} sent" in done.stderr
    threats = [(res, r) for res, r in receiver.records if r.event_name == "kindlyguard.threat"]
    gaps = [r for _, r in receiver.records if r.event_name == "kindlyguard.gap"]
    assert len(threats) == N and len(gaps) == 1
    keys = [_attrs(r)["kindlyguard.threat.key"] for _, r in threats]
    conn = sqlite3.connect(hist)
    stored = [bytes(k).hex() for (k,) in conn.execute("SELECT key FROM threats ORDER BY id")]
    conn.close()
    assert keys == stored  # every threat once, in row order
    seqs = [_attrs(r)["kindlyguard.threat.seq"] for _, r in threats]
    assert seqs == list(range(N))
    res, r = threats[7]
    a = _attrs(r)
    assert res["host.name"] == "ws1_corp" and res["service.name"] == "kindlyguard-monitor"
    assert a["kindlyguard.threat.details"] == HOSTILE  # attacker text: a plain attribute value, exact
    assert HOSTILE not in r.body.string_value and r.body.string_value.startswith("Threat: ")
    assert (r.severity_number, r.severity_text) == (21, "Critical")  # seq 7: severity 4
    assert [x.severity_number for _, x in threats[:4]] == [9, 13, 17, 21]  # Low INFO .. Critical FATAL
    assert a["kindlyguard.threat.blocked"] is False and _attrs(threats[6][1])["kindlyguard.threat.blocked"] is True
    assert r.time_unix_nano > 0 and a["kindlyguard.threat.id"].startswith(f"{GEN:016x}-")
    assert _attrs(gaps[0])["kindlyguard.gap.missed"] == 5
    # Its own cursor: run again, nothing is sent; the NATS forwarder's cursor is not touched.
    again = _forward(receiver.url, hist)
    assert again.returncode == 0 and "0 sent" in again.stderr
    assert len(receiver.records) == N + 1
    conn = sqlite3.connect(hist)
    assert conn.execute("SELECT stream, threat_row, gap_row FROM fleet_forward").fetchall() == [("OTLP", N, 1)]
    conn.close()
    # What `kgmon doctor` says: the export's own line, no NATS line (that forwarder never ran).
    from kindlyguard_monitor.doctor.forwarding import check_forwarding

    (found,) = check_forwarding(hist)
    assert found.check == "otlp export" and found.level == "ok"
    assert found.message.startswith("OpenTelemetry export: 0 waiting / last accepted at ")


def test_a_refusal_keeps_the_cursor_and_a_retry_sends_each_once(tmp_path):
    r = Receiver(refuse=1)
    try:
        hist = _history(tmp_path / "h.sqlite3")
        url = r.url + "?api_key=SECRET-KEY"  # some receivers take a key in the query: never shown
        failed = _forward(url, hist)
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        assert f"not forwarding: the OTLP receiver at {r.url} did not take the records (" in failed.stderr
        assert "400" in failed.stderr and "SECRET" not in failed.stderr and f"{N + 1} waiting" in failed.stderr
        assert r.records == []
        from kindlyguard_monitor.fleet.status import OTLP, doctor_finding

        level, text, advice = doctor_finding(hist, OTLP)
        assert level == "warn" and "did not take the records" in text and "--otlp" in advice
        assert "SECRET" not in text
        done = _forward(url, hist)
        assert done.returncode == 0, done.stderr
        keys = [_attrs(x)["kindlyguard.threat.key"] for _, x in r.records if x.event_name == "kindlyguard.threat"]
        assert len(keys) == N == len(set(keys))
    finally:
        r.close()


def test_usage_errors_are_one_line(tmp_path):
    bad = subprocess.run(kgmon("forward", "--otlp", "ftp://x/v1/logs"), env=env(), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "OTLP/HTTP logs URL" in bad.stderr and "Traceback" not in bad.stderr
    both = subprocess.run(kgmon("forward", "--otlp", "http://127.0.0.1:9/v1/logs", "--nats", "nats://127.0.0.1:9"),
                          env=env(), capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not both" in both.stderr
