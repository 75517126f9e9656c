"""The app's fleet view (issue 16 item 2): `kgmon --fleet` shows every workstation's threats.

A real nats-server on loopback (one per module), two simulated workstations whose histories are
forwarded by the real Forwarder (fleet/forwarder.py) under two host names, and the real app
reading the stream through its reader thread (fleet/source.py): every threat with its Host, the
host filter, (host, key) dedupe of a redelivered message, the fleet's own history file, and a
viewer restarted catching up from where it stopped.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import free_port, wait_reader_settled
from fleet_servers import NatsServer, create_stream, run
from history_data import make_history, ring_batch, ring_event, start_store

from kindlyguard_monitor.fleet import connect as fc
from kindlyguard_monitor.fleet import subjects
from kindlyguard_monitor.history import query
from kindlyguard_monitor.history.store import HistoryStore

pytest.importorskip("nats")


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory):
    s = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield s.url
    s.kill()


def forward(url: str, hist, host: str) -> None:
    """Everything in `hist` into the stream as workstation `host`, until acknowledged."""
    from kindlyguard_monitor.fleet.forwarder import Forwarder

    fwd = Forwarder(hist, fc.Options((url,)), host)

    async def main():
        return await fwd.run(asyncio.Event(), until_idle=True)

    assert run(main()), fwd.stats.state


def fleet_app(qapp, tmp_path, url: str, consumer: str, retry_s: float = 3.0):
    from kindlyguard_monitor.fleet.source import FleetSource
    from kindlyguard_monitor.gui.app import MonitorApp

    options = fc.Options((url,))
    return MonitorApp(qapp, str(tmp_path / "no-ring.shm"), f"ws://127.0.0.1:{free_port()}", demo=False,
                      history=HistoryStore(tmp_path / "fleet-history.sqlite3"),
                      source=lambda: FleetSource(options, consumer, subjects.ALL_SUBJECTS, retry_s))


def hosts_of(model) -> list[str]:
    return sorted(model.row_at(i).host for i in range(model.rowCount()))


def test_the_app_shows_the_fleet_by_host_dedupes_and_catches_up(qtbot, qapp, nats_url, tmp_path):
    # Two workstations with the same writer generation and seqs: their keys are equal locally.
    a = make_history(tmp_path / "a.sqlite3", [ring_batch([ring_event(i, severity=1 + i % 4) for i in range(6)])])
    b = make_history(tmp_path / "b.sqlite3", [ring_batch([ring_event(i, details=f"b {i}") for i in range(4)])])
    forward(nats_url, a, "ws-a")
    forward(nats_url, b, "ws-b")

    monitor = fleet_app(qapp, tmp_path, nats_url, "viewer-test-app")
    try:
        monitor.start()
        model, window = monitor.window.model, monitor.window
        qtbot.waitUntil(lambda: model.rowCount() == 10, timeout=15000)
        assert hosts_of(model) == ["ws-a"] * 6 + ["ws-b"] * 4
        assert not window.table.isColumnHidden(model.HOST)
        qtbot.waitUntil(lambda: window.status.badge.text() == f"Fleet: {nats_url} (2 hosts)", timeout=5000)
        assert monitor.feed.totals["total"] == 10
        # The desktop notification names where the threats came from (a host, or how many hosts).
        qtbot.waitUntil(lambda: monitor.notifier.last_notification is not None, timeout=5000)
        note = monitor.notifier.last_notification
        assert note.hosts and set(note.hosts) <= {"ws-a", "ws-b"}
        assert note.title.startswith(f"{note.hosts[0]}: ") or " from " in note.title, note.title
        # The host filter narrows the feed to one workstation.
        combo = window.filters.host_combo
        assert combo.isVisible() and [combo.itemData(i) for i in range(combo.count())] == [None, "ws-a", "ws-b"]
        window.filters.filter_host("ws-b")
        assert window.proxy.rowCount() == 4
        assert {window.proxy.data(window.proxy.index(i, model.HOST)) for i in range(4)} == {"ws-b"}
        window.filters.clear()
        assert window.proxy.rowCount() == 10
        window.show_event(model.row_at(0).key)
        assert window.details.text.toPlainText().startswith("Host:      ws-")

        # The same message delivered again (the stream holds it twice under another id): one threat.
        body = run(_first_body(nats_url, "kindlyguard.threats.ws-b.>"))
        run(_publish(nats_url, "kindlyguard.threats.ws-b.medium", body, "redelivered-1"))
        wait_reader_settled(qtbot, monitor.reader, 11)
        assert model.rowCount() == 10 and monitor.feed.totals["total"] == 10

        # The fleet's own history holds every threat with its host.
        assert monitor.history.flush(10)
        kept = query.recent(tmp_path / "fleet-history.sqlite3", 100)
        assert sorted(t.host for t in kept) == ["ws-a"] * 6 + ["ws-b"] * 4
        # ... and the History window shows and filters it by host.
        monitor.open_history()
        history = monitor.history_window
        qtbot.waitUntil(lambda: history.matching == 10, timeout=10000)
        assert history.host.isVisible() and not history.table.isColumnHidden(history.model.HOST)
        history.host.setText("ws-b")
        qtbot.waitUntil(lambda: history.matching == 4, timeout=10000)
        assert {history.model.data(history.model.index(i, history.model.HOST)) for i in range(4)} == {"ws-b"}
    finally:
        monitor.shutdown()

    # While the viewer is away, ws-a stores and forwards three more; the viewer comes back.
    store = start_store(a)
    store.submit([ring_batch([ring_event(i, details=f"later {i}") for i in range(6, 9)])])
    assert store.close(60), store.error
    forward(nats_url, a, "ws-a")
    monitor = fleet_app(qapp, tmp_path, nats_url, "viewer-test-app")
    try:
        monitor.start()
        model = monitor.window.model
        qtbot.waitUntil(lambda: model.rowCount() == 13, timeout=15000)
        wait_reader_settled(qtbot, monitor.reader, 3)
        assert monitor.feed.totals["total"] == 3, "only what came while away is news"
        assert sorted(model.row_at(i).details for i in range(3)) == ["later 6", "later 7", "later 8"]
        assert {model.row_at(i).host for i in range(3)} == {"ws-a"}
    finally:
        monitor.shutdown()


async def _first_body(url: str, subject: str) -> bytes:
    import nats
    from nats.js import api

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, stream=subjects.STREAM,
                                      config=api.ConsumerConfig(ack_policy=api.AckPolicy.NONE))
        return (await sub.fetch(1, timeout=5))[0].data
    finally:
        await nc.close()


async def _publish(url: str, subject: str, body: bytes, msg_id: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().publish(subject, body, headers={subjects.H_MSG_ID: msg_id})
    finally:
        await nc.close()


def test_kgmon_fleet_usage_errors_are_one_line(tmp_path, capsys):
    from kindlyguard_monitor.cli.main import build_parser, main
    from kindlyguard_monitor.gui.app_fleet import fleet_source

    with pytest.raises(SystemExit) as exit_:
        main(["--fleet", "http://x"])
    assert exit_.value.code == 2 and "nats:// or tls://" in capsys.readouterr().err
    args = build_parser().parse_args(["--fleet", "nats://127.0.0.1:1", "--creds", str(tmp_path / "missing.creds")])
    assert "creds file" in fleet_source(args) and "cannot be read" in fleet_source(args)
    args = build_parser().parse_args(["--fleet", "nats://127.0.0.1:1", "--consumer", "a.b"])
    assert "--consumer" in fleet_source(args)
    assert fleet_source(build_parser().parse_args([])) is None


def test_the_forwarding_setting_forwards_the_apps_own_history(qtbot, qapp, tmp_path):
    from PySide6.QtCore import QSettings

    from fleet_servers import stream_count
    from kindlyguard_monitor.gui.app import MonitorApp
    from kindlyguard_monitor.gui.settings import Settings

    server = NatsServer(tmp_path / "nats").start()  # its own: this machine's host name is not in the other's stream
    try:
        settings = Settings(QSettings(str(tmp_path / "kgmon.conf"), QSettings.Format.IniFormat))
        settings.forward, settings.forward_url, settings.forward_creds = True, server.url, ""
        settings.sync()
        conf = tmp_path / "kgmon.conf"
        assert conf.stat().st_mode & 0o777 == 0o600  # the settings file is its owner's only
        hist = make_history(tmp_path / "own.sqlite3", [ring_batch([ring_event(i) for i in range(5)])])
        monitor = MonitorApp(qapp, str(tmp_path / "no-ring.shm"), f"ws://127.0.0.1:{free_port()}", demo=False,
                             settings=settings, history=HistoryStore(hist))
        try:
            monitor.start()
            mine = subjects.host_filter(subjects.host_token())
            qtbot.waitUntil(lambda: run(stream_count(server.url, mine)) == 5, timeout=15000)
            # The status bar's line, read on the history's worker thread, says so.
            qtbot.waitUntil(lambda: "Forwarding: 0 waiting / last acknowledged at" in
                            monitor.window.status.history_label.text(), timeout=10000)
            # Turned off in the settings: the forwarder stops.
            settings.forward = False
            monitor.apply_changed_settings((settings.ring_path, settings.ws_url, settings.spin_us), settings)
            assert not monitor.forwarding.running
        finally:
            monitor.shutdown()
    finally:
        server.kill()


def test_the_badge_says_why_the_fleet_cannot_be_followed(qtbot, qapp, tmp_path):
    server = NatsServer(tmp_path / "nats")  # not started yet: nobody listens
    monitor = fleet_app(qapp, tmp_path, server.url, "viewer-lost-app", retry_s=0.2)
    try:
        monitor.start()
        status = monitor.window.status
        qtbot.waitUntil(lambda: "no NATS server answers" in status.reason, timeout=15000)
        assert status.transport == "disconnected" and status.reason.startswith(f"Fleet: {server.url} — ")
        # No Shield here: protection is said to be each workstation's, greyed out, never "not reachable".
        action = monitor.tray.action_protection
        assert action.text() == "Protection: switched on each workstation" and not action.isEnabled()
        assert "WebSocket" not in action.text() + action.toolTip()
        server.start()
        run(create_stream(server.url, 1))
        qtbot.waitUntil(lambda: status.transport == "fleet", timeout=15000)  # it tried again
        assert status.badge.text() == f"Fleet: {server.url} (0 hosts)"
        server.kill()  # the connection lost: said, and said again when it is back
        qtbot.waitUntil(lambda: "connection to the server was lost" in status.reason, timeout=15000)
        assert status.transport == "disconnected"
        server.start()
        qtbot.waitUntil(lambda: status.transport == "fleet", timeout=15000)
    finally:
        monitor.shutdown()
        server.kill()


def test_forwarding_settings_keep_secrets_out():
    from kindlyguard_monitor.gui.settings_dialog import validate_forwarding

    assert validate_forwarding(False, "", "") is None
    assert "URL" in validate_forwarding(True, "", "")
    assert "creds file, not in the URL" in validate_forwarding(True, "nats://me:secret@fleet:4222", "")
    assert "creds file, not in the URL" in validate_forwarding(True, "nats://token@fleet:4222", "")
    assert validate_forwarding(True, "nats://fleet:4222", "/nonexistent/x.creds") == \
        "The creds file /nonexistent/x.creds does not exist."
    assert validate_forwarding(True, "nats://fleet:4222", "", "/nonexistent/x.nk") == \
        "The NKey seed file /nonexistent/x.nk does not exist."
    assert "not both" in validate_forwarding(True, "nats://fleet:4222", "a.creds", "b.nk")
    assert validate_forwarding(True, "tls://fleet:4222", "") is None


def test_the_forwarding_setting_takes_a_ca_file_and_an_nkey_seed_file(qtbot, qapp, tmp_path):
    """Settings › forwarding with `kgmon forward`'s --ca and --nkey, through the dialog: a missing
    file is said plainly and nothing is saved; then the app forwards over TLS, signed with the
    seed, to a server that knows only that NKey. The settings file holds the paths, 0600, no seed."""
    from PySide6.QtCore import QSettings

    from fleet_servers import make_ca, make_nkey
    from kindlyguard_monitor.gui.app import MonitorApp
    from kindlyguard_monitor.gui.settings import Settings
    from kindlyguard_monitor.gui.settings_dialog import SettingsDialog

    ca, cert, key = make_ca(tmp_path / "pki")
    public, seed_file = make_nkey(tmp_path / "keys")
    server = NatsServer(tmp_path / "nats", extra=(
        f'tls {{\n  cert_file: "{cert}"\n  key_file: "{key}"\n  timeout: 2\n}}\n'
        f"authorization {{\n  users: [ {{ nkey: {public} }} ]\n}}\n")).start()
    url = f"tls://127.0.0.1:{server.port}"
    try:
        conf = tmp_path / "kgmon.conf"
        settings = Settings(QSettings(str(conf), QSettings.Format.IniFormat))
        dialog = SettingsDialog(settings, autostart_apply=lambda on: None)
        qtbot.addWidget(dialog)
        applied = []
        dialog.applied.connect(applied.append)
        dialog.forward_check.setChecked(True)
        dialog.forward_url_edit.setText(url)
        dialog.forward_nkey_edit.setText(str(seed_file))
        dialog.forward_ca_edit.setText(str(tmp_path / "pki" / "missing-ca.pem"))
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
        assert dialog.error_text() == f"The CA file {tmp_path / 'pki' / 'missing-ca.pem'} does not exist."
        assert applied == []
        assert settings.forward is False and settings.forward_ca == ""  # nothing saved
        dialog.forward_ca_edit.setText(str(tmp_path / "pki"))
        dialog.accept()
        assert dialog.error_text() == f"The CA file {tmp_path / 'pki'} is not a file."
        dialog.forward_creds_edit.setText(str(seed_file))
        dialog.forward_ca_edit.setText(str(ca))
        dialog.accept()
        assert "not both" in dialog.error_text()
        dialog.forward_creds_edit.clear()
        with qtbot.waitSignal(dialog.applied, timeout=5000):
            dialog.accept()
        assert (settings.forward, settings.forward_url, settings.forward_nkey, settings.forward_ca) == \
            (True, url, str(seed_file), str(ca))
        assert conf.stat().st_mode & 0o777 == 0o600
        text = conf.read_text()
        assert str(seed_file) in text and str(ca) in text
        assert seed_file.read_text().strip() not in text  # the path, never the seed

        hist = make_history(tmp_path / "own.sqlite3", [ring_batch([ring_event(i) for i in range(5)])])
        monitor = MonitorApp(qapp, str(tmp_path / "no-ring.shm"), f"ws://127.0.0.1:{free_port()}", demo=False,
                             settings=settings, history=HistoryStore(hist))
        try:
            monitor.start()
            assert monitor.forwarding.running
            qtbot.waitUntil(lambda: "Forwarding: 0 waiting / last acknowledged at" in
                            monitor.window.status.history_label.text(), timeout=20000)
            assert run(_count_over_tls(url, ca, seed_file)) == 5
        finally:
            monitor.shutdown()
    finally:
        server.kill()


async def _count_over_tls(url: str, ca, seed_file) -> int:
    """What the stream holds, read with nats-py directly (TLS with the CA, the NKey's seed)."""
    import ssl

    import nats

    nc = await nats.connect(url, tls=ssl.create_default_context(cafile=str(ca)), nkeys_seed=str(seed_file))
    try:
        info = await nc.jetstream().stream_info(subjects.STREAM)
        return info.state.messages
    finally:
        await nc.close()


def test_only_threats_delivered_live_count_in_the_latency(qtbot, qapp, nats_url, tmp_path):
    """Threats stored while the viewer was away are caught up, not delivered live: their "latency"
    is how long it was away (here three hours), so they get no publish time and the histogram does
    not count them. Threats stored while it follows do count."""
    import time as _time

    from kindlyguard_monitor.fleet.source import FleetSource
    from kindlyguard_monitor.transport.items import Batch

    hours_ago = _time.time_ns() // 1000 - 3 * 3600 * 1_000_000
    hist = make_history(tmp_path / "late.sqlite3", [ring_batch([ring_event(i, time_us=hours_ago + i)
                                                               for i in range(5)])])
    forward(nats_url, hist, "ws-late")  # while no viewer follows
    only_late = subjects.host_filter(subjects.host_token("ws-late"))

    # The reader thread's source on its own: every caught-up threat without a publish time.
    source = FleetSource(fc.Options((nats_url,)), "viewer-late-source", only_late)
    got = []
    try:
        source.start()
        wait = _time.monotonic() + 20
        while len(got) < 5 and _time.monotonic() < wait:
            got += [e for item in source.poll(0.2) if type(item) is Batch for e in item.events]
        assert len(got) == 5 and source.caught_up == 5
        assert [e.publish_mono_ns for e in got] == [None] * 5
        assert source.live_after >= max(e.seq for e in got)  # the stream's end when it opened

        # Stored while it follows: live, with a publish time from the threat's own clock.
        store = start_store(hist)
        store.submit([ring_batch([ring_event(i, details=f"live {i}") for i in range(5, 8)])])
        assert store.close(60), store.error
        forward(nats_url, hist, "ws-late")
        live = []
        wait = _time.monotonic() + 20
        while len(live) < 3 and _time.monotonic() < wait:
            live += [e for item in source.poll(0.2) if type(item) is Batch for e in item.events]
        assert [e.details for e in live] == ["live 5", "live 6", "live 7"] and source.caught_up == 5
        assert all(e.publish_mono_ns is not None for e in live)
    finally:
        source.close()

    # The app: a caught-up threat never reaches the latency histogram; the tooltip says the rule.
    monitor = fleet_app(qapp, tmp_path, nats_url, "viewer-late-app")
    try:
        monitor.start()
        model = monitor.window.model
        assert "delivered live" in monitor.window.histogram.toolTip()
        qtbot.waitUntil(lambda: sum(model.row_at(i).host == "ws-late" for i in range(model.rowCount())) == 8,
                        timeout=15000)
        wait_reader_settled(qtbot, monitor.reader, 8)
        h = monitor.screen_latency
        assert h.count == 0 or h.max < 3600 * 10**9, "a caught-up threat's hours counted as latency"
    finally:
        monitor.shutdown()
