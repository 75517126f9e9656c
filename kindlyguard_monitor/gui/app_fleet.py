"""The app's fleet part (issue 16): `kgmon --fleet URL` (the reader thread's source and the
fleet's own history file) and the setting "Forward threats to a NATS server" (the forwarder
on a thread of its own, from this machine's history).

Nothing here reads the stream: fleet/source.py does, on the reader thread's side.
"""

from __future__ import annotations

def fleet_history_path():
    """The fleet view's history: fleet-history.sqlite3 beside this machine's own history file,
    so a workstation's own threats and the fleet's are never mixed (docs/fleet.md)."""
    from kindlyguard_monitor.history.db import history_path

    own = history_path()
    return own.with_name("fleet-" + own.name)


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
