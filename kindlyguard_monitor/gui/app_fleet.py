"""The app's fleet part (issue 16): `kgmon --fleet URL` (the reader thread's source and the
fleet's own history file) and the setting "Forward threats to a NATS server" (the forwarder
on a thread of its own, from this machine's history).

Nothing here reads the stream: fleet/source.py does, on the reader thread's side.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio's thread: imported when forwarding starts, not at every app start
    from kindlyguard_monitor.fleet.loop_thread import LoopThread

log = logging.getLogger(__name__)


def fleet_history_path(fleet=True):
    """The fleet view's history: fleet-history.sqlite3 beside this machine's own history file,
    so a workstation's own threats and the fleet's are never mixed (docs/fleet.md). None (the
    usual file) when `fleet` is None (not the fleet view)."""
    from kindlyguard_monitor.history.db import history_path

    if fleet is None:
        return None
    own = history_path()
    return own.with_name("fleet-" + own.name)


def instance_name(fleet) -> str | None:
    """The single-instance name: the fleet view is another instance than this machine's monitor."""
    from kindlyguard_monitor.gui.single_instance import default_name

    return None if fleet is None else default_name() + "-fleet"


def fleet_source(args):
    """`kgmon --fleet URL [...]`: a callable making the reader thread's FleetSource; None without
    --fleet; a sentence (str) when the options cannot work."""
    urls = getattr(args, "fleet", None)
    if not urls:
        return None
    try:
        from kindlyguard_monitor.cli.forward import connection_options
        from kindlyguard_monitor.fleet import subjects as s
        from kindlyguard_monitor.fleet.connect import BadOption, connect_kwargs
        from kindlyguard_monitor.fleet.source import FleetSource
        from kindlyguard_monitor.fleet.viewer import default_consumer
        import nats  # noqa: F401
    except ImportError:
        return "the NATS client is not installed: pip install 'kindlyguard-monitor[fleet]'"
    consumer = args.consumer or default_consumer() + "-app"  # not `kgmon tail --fleet`'s: each its own place
    if not s.valid_consumer_name(consumer):
        return f"--consumer {consumer!r} may hold only letters, digits, '-' and '_'"
    options = connection_options(args, urls, "kgmon --fleet")
    try:
        connect_kwargs(options)  # unreadable files and bad combinations, said now, not in the badge
    except BadOption as exc:
        return str(exc)
    filt = s.host_filter(s.host_token(args.fleet_host)) if args.fleet_host else s.ALL_SUBJECTS
    return lambda: FleetSource(options, consumer, filt)


class AppForwarder:
    """Settings › "Forward threats to a NATS server": fleet/forwarder.py's Forwarder, from this
    machine's history (the outbox), on a thread of its own with its own asyncio loop. Started
    and stopped from the GUI thread; stop() waits for it to save its cursor (what was not
    acknowledged goes again next time, and the stream drops a repeat: exactly once)."""

    def __init__(self):
        self._thread: LoopThread | None = None
        self.config: tuple | None = None  # (history path, url, creds, NKey seed, CA file) while running
        self.forwarder = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.alive

    def apply(self, history_path, enabled: bool, url: str, creds_file: str, nkey_file: str = "",
              ca_file: str = "") -> str | None:
        """Start, restart or stop to match the setting; a sentence when it cannot start. The files
        are paths (~ for the home folder), as `kgmon forward`'s --creds, --nkey and --ca."""
        config = (str(history_path), url, creds_file, nkey_file, ca_file) if enabled and url else None
        if config == self.config and (config is None or self.running):
            return None
        self.stop()
        if config is None:
            return None
        from kindlyguard_monitor.fleet.connect import BadOption, Options, connect_kwargs, split_urls, url_problem

        problem = url_problem(url)
        if problem is not None:
            return f"Not forwarding: {problem}."
        def path(p: str) -> str | None:
            return os.path.expanduser(p) if p else None

        options = Options(servers=tuple(split_urls(url)), creds_file=path(creds_file), nkey_file=path(nkey_file),
                          ca_file=path(ca_file), name="kgmon app forward")
        try:
            import nats  # noqa: F401

            from kindlyguard_monitor.fleet.forwarder import Forwarder
            connect_kwargs(options)
        except ImportError:
            return "Not forwarding: the NATS client is not installed (pip install 'kindlyguard-monitor[fleet]')."
        except BadOption as exc:
            return f"Not forwarding: {exc}."
        self.forwarder = Forwarder(history_path, options)
        self.config = config
        from kindlyguard_monitor.fleet.loop_thread import LoopThread

        self._thread = LoopThread("kgmon-forwarder", self.forwarder.run).start(wait_s=5.0)
        log.info("forwarding this machine's threats to %s", options.shown)
        return None

    def stop(self, timeout: float = 10.0) -> None:
        thread, self._thread, self.config = self._thread, None, None
        if thread is not None:
            thread.stop()
            thread.join(timeout)


def apply_forwarding(app) -> None:
    """The forwarding setting applied to the running app (at start and after the Settings dialog);
    not in the fleet view (its history holds other hosts' threats, never forwarded)."""
    settings, store = app.settings, app.history
    if settings is None or store is None or app.source is not None:
        return
    problem = app.forwarding.apply(store.path, settings.forward, settings.forward_url, settings.forward_creds,
                                   settings.forward_nkey, settings.forward_ca)
    app.app_history.forwarding_on = app.forwarding.running
    app.app_history.show_size()  # the status bar's forwarding line follows
    if problem:
        log.warning("%s", problem)
        app.window.show_message(problem, 30000)
