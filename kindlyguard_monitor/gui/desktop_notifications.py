"""Desktop notifications straight to org.freedesktop.Notifications (Linux).

Why not only QSystemTrayIcon.showMessage(): Qt sends a real D-Bus Notify only
when it uses its StatusNotifierItem tray; with an XEmbed tray it draws its own
balloon, and with no tray at all it silently shows nothing. Talking to the
notification server ourselves gives the same real notification on every Linux
desktop, with the app's name, urgency and a click action, tray or not.

The D-Bus client is `jeepney` (pure Python, no libdbus, maintained; the same
library `keyring` and `secretstorage` use). PySide6's QtDBus cannot build the
Notify call from Python: its uint32 and a{sv} arguments come out with an empty
signature.

Nothing here blocks the GUI thread: one worker thread owns the connection,
makes the calls, and answers with Qt signals (queued to the GUI thread). A hung
notification server costs a timeout on that thread, never a frozen window.

Threat text is attacker-controlled. Servers that announce "body-markup" parse
the body as a small HTML subset, so the body is escaped for them; the summary
is plain text by the specification and holds only our own words. (The policy
has already defanged URLs in the body: servers linkify even plain text.)

Do not disturb: where the server offers the specification's `Inhibited`
property (1.3; KDE Plasma, dunst ≥ 1.10), it is read at connect and followed
through PropertiesChanged; dunst before 1.10 offers the same switch as its own
`paused` property (org.dunstproject.cmd0, what `dunstctl set-paused` sets),
followed the same way. `inhibited_changed(bool)` tells the notifier. Servers
with neither (GNOME, mako) keep their do-not-disturb to themselves: they hold
or hide what we send, as they do for every app.
"""

from __future__ import annotations

import html
import logging
import os
import queue
import sys
import threading
import time

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"
APP_NAME = "KindlyGuard Monitor"
DESKTOP_ENTRY = "kindlyguard-monitor"
CALL_TIMEOUT_S = 2.0  # one Notify call; a server slower than this is treated as gone
RETRY_AFTER_S = 30.0  # after a failure, how long before the server is tried again
URGENCY_NORMAL, URGENCY_CRITICAL = 1, 2
EXPIRE_MS = 8000
PROPERTIES = "org.freedesktop.DBus.Properties"
DUNST_INTERFACE = "org.dunstproject.cmd0"
# Where the desktop's do-not-disturb can be read, first that answers: (interface, property).
INHIBIT_PROPERTIES = ((BUS_NAME, "Inhibited"), (DUNST_INTERFACE, "paused"))


def supported() -> bool:
    """Is there a session bus to talk to (Linux and friends, jeepney installed)?"""
    if sys.platform in ("darwin", "win32") or not os.environ.get("DBUS_SESSION_BUS_ADDRESS", "").strip():
        # Without DBUS_SESSION_BUS_ADDRESS jeepney would guess a path; a desktop session always sets it.
        return False
    try:
        import jeepney  # noqa: F401
    except ImportError:
        return False
    return True


class _Stop:
    """Ends the worker's job loop."""


class DesktopNotifications(QObject):
    """Sends notifications to the session's notification server from a worker thread.

    `notify()` returns at once; a notification the server did not take comes
    back as `not_sent(title, body, critical, key)` (the caller falls back).
    `clicked(key)` is emitted when the user clicks one of ours (the "default"
    action), with the key given to `notify()`.
    """

    not_sent = Signal(str, str, bool, object)  # a queued notify() that failed: title, body, critical, key
    clicked = Signal(object)  # the key of the clicked notification
    inhibited_changed = Signal(bool)  # the desktop's do-not-disturb went on (True) or off

    def __init__(self, icon_path: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.icon_path = icon_path
        self.server: tuple[str, str, str, str] | None = None  # name, vendor, version, spec version
        self.capabilities: frozenset[str] = frozenset()
        self.available = False  # a server answered the last call
        self.error = ""  # why the last call failed, for the UI and logs
        self.inhibit_source: tuple[str, str] | None = None  # (interface, property) followed, if any
        self.inhibited = False  # the desktop's do-not-disturb, as last read
        self._jobs: queue.Queue = queue.Queue()
        self._keys: dict[int, object] = {}  # notification id -> our key (bounded below)
        self._router = None
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._work, name="kgmon-notifications", daemon=True)
        self._thread.start()
        self._jobs.put(("connect",))

    # -- GUI thread

    def notify(self, title: str, body: str, critical: bool, key: object) -> bool:
        """Queue a notification. False when the server is known to be unusable
        right now (the caller falls back); True means handed to the worker."""
        if not self.available and time.monotonic() < self._retry_at:
            return False
        self._jobs.put(("notify", title, body, critical, key))
        return True

    def close(self) -> None:
        self._jobs.put((_Stop,))
        self._thread.join(timeout=CALL_TIMEOUT_S + 1)

    # -- worker thread

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job[0] is _Stop:
                break
            try:
                if job[0] == "connect":
                    self._connect()
                elif job[0] == "notify" and not self._notify(*job[1:]):
                    self.not_sent.emit(*job[1:])
                elif job[0] == "inhibit":
                    self._read_inhibited()
            except Exception as exc:  # any D-Bus or socket failure: report, drop the connection, go on
                self._fail(f"{type(exc).__name__}: {exc}")
                if job[0] == "notify":
                    self.not_sent.emit(*job[1:])
        self._disconnect()

    def _connect(self) -> bool:
        if self._router is not None:
            return True
        try:
            from jeepney import DBusAddress, MatchRule, message_bus, new_method_call
            from jeepney.io.threading import DBusRouter, open_dbus_connection
            from jeepney.wrappers import unwrap_msg

            conn = open_dbus_connection("SESSION")
            router = DBusRouter(conn)
            try:
                addr = DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=BUS_NAME)
                # Both calls also start a server that the bus activates on demand.
                info = unwrap_msg(router.send_and_get_reply(new_method_call(addr, "GetServerInformation"),
                                                            timeout=CALL_TIMEOUT_S))
                caps = unwrap_msg(router.send_and_get_reply(new_method_call(addr, "GetCapabilities"),
                                                            timeout=CALL_TIMEOUT_S))
                # The bus delivers ActionInvoked only from the server itself (sender= resolves the
                # well-known name there); jeepney's local filter sees unique names, so it has no sender.
                rule = MatchRule(type="signal", interface=BUS_NAME, path=OBJECT_PATH, member="ActionInvoked")
                on_bus = MatchRule(type="signal", sender=BUS_NAME, interface=BUS_NAME, path=OBJECT_PATH,
                                   member="ActionInvoked")
                unwrap_msg(router.send_and_get_reply(message_bus.AddMatch(on_bus), timeout=CALL_TIMEOUT_S))
                router.filter(rule, queue=_ClickSink(self), bufsize=0)
                changed = MatchRule(type="signal", interface=PROPERTIES, path=OBJECT_PATH,
                                    member="PropertiesChanged")
                on_bus = MatchRule(type="signal", sender=BUS_NAME, interface=PROPERTIES, path=OBJECT_PATH,
                                   member="PropertiesChanged")
                unwrap_msg(router.send_and_get_reply(message_bus.AddMatch(on_bus), timeout=CALL_TIMEOUT_S))
                router.filter(changed, queue=_PropertiesSink(self), bufsize=0)
            except BaseException:
                router.close()
                conn.close()
                raise
        except Exception as exc:
            self._fail(f"no notification server on the session bus ({type(exc).__name__}: {exc})")
            return False
        self._router, self._conn, self._addr = router, conn, addr
        self.server = tuple(str(x) for x in info[:4])
        self.capabilities = frozenset(caps[0])
        self.available, self.error = True, ""
        log.info("notifications go to %s %s", self.server[0], self.server[2])
        self._find_inhibit_property()
        return True

    def _get_property(self, interface: str, name: str):
        from jeepney import DBusAddress, new_method_call
        from jeepney.wrappers import unwrap_msg

        props = DBusAddress(OBJECT_PATH, bus_name=BUS_NAME, interface=PROPERTIES)
        msg = new_method_call(props, "Get", "ss", (interface, name))
        return unwrap_msg(self._router.send_and_get_reply(msg, timeout=CALL_TIMEOUT_S))[0][1]

    def _find_inhibit_property(self) -> None:
        """The first do-not-disturb property the server answers for, and its value."""
        self.inhibit_source = None
        for interface, name in INHIBIT_PROPERTIES:
            try:
                value = self._get_property(interface, name)
            except Exception:  # no such property or interface: try the next
                continue
            if isinstance(value, bool):
                self.inhibit_source = (interface, name)
                log.info("following the notification server's do-not-disturb (%s.%s)", interface, name)
                self._set_inhibited(value)
                return
        self._set_inhibited(False)

    def _read_inhibited(self) -> None:
        if self._router is None or self.inhibit_source is None:
            return
        try:
            self._set_inhibited(bool(self._get_property(*self.inhibit_source)))
        except Exception as exc:
            log.warning("could not read the notification server's do-not-disturb: %s", exc)

    def _set_inhibited(self, value: bool) -> None:
        if value != self.inhibited:
            self.inhibited = value
            log.info("desktop do-not-disturb is %s", "on: notifications held" if value else "off")
            self.inhibited_changed.emit(value)

    def _properties_changed(self, interface: str, changed: dict, invalidated) -> None:
        """On the router's receiver thread: a property of the server changed."""
        if self.inhibit_source is None or interface != self.inhibit_source[0]:
            return
        name = self.inhibit_source[1]
        if name in changed and isinstance(changed[name][1], bool):
            self._set_inhibited(changed[name][1])
        elif name in invalidated:  # changed without its value: read it on the worker
            self._jobs.put(("inhibit",))

    def _notify(self, title: str, body: str, critical: bool, key: object) -> bool:
        if not self._connect():
            return False
        from jeepney import new_method_call
        from jeepney.wrappers import unwrap_msg

        if "body-markup" in self.capabilities:
            body = html.escape(body, quote=False)
        actions = ["default", "Show in KindlyGuard Monitor"] if "actions" in self.capabilities else []
        hints = {
            "urgency": ("y", URGENCY_CRITICAL if critical else URGENCY_NORMAL),
            "desktop-entry": ("s", DESKTOP_ENTRY),
        }
        msg = new_method_call(self._addr, "Notify", "susssasa{sv}i",
                              (APP_NAME, 0, self.icon_path, title, body, actions, hints, EXPIRE_MS))
        nid = int(unwrap_msg(self._router.send_and_get_reply(msg, timeout=CALL_TIMEOUT_S))[0])
        self._keys[nid] = key
        if len(self._keys) > 256:  # old notifications are long gone from the screen
            for old in list(self._keys)[:128]:
                del self._keys[old]
        return True

    def _clicked(self, nid: int, action: str) -> None:
        if action == "default" and nid in self._keys:  # ours, and the notification itself was clicked
            self.clicked.emit(self._keys[nid])

    def _fail(self, message: str) -> None:
        if self.available or message != self.error:
            log.warning("desktop notifications: %s", message)
        self.available, self.error = False, message
        self._retry_at = time.monotonic() + RETRY_AFTER_S
        self._disconnect()

    def _disconnect(self) -> None:
        router, self._router = self._router, None
        if router is not None:
            try:
                router.close()
                self._conn.close()
            except Exception:
                pass


class _ClickSink:
    """Stands in for the queue jeepney's router fills with matching signals: it
    runs on the router's receiver thread and hands clicks to the notifier."""

    def __init__(self, owner: DesktopNotifications) -> None:
        self.owner = owner

    def put_nowait(self, msg) -> None:
        try:
            nid, action = msg.body[0], msg.body[1]
        except (IndexError, TypeError):
            return
        self.owner._clicked(int(nid), str(action))



class _PropertiesSink:
    """Like _ClickSink, for PropertiesChanged (interface, changed a{sv}, invalidated as)."""

    def __init__(self, owner: DesktopNotifications) -> None:
        self.owner = owner

    def put_nowait(self, msg) -> None:
        try:
            interface, changed, invalidated = msg.body[0], dict(msg.body[1]), list(msg.body[2])
        except (IndexError, TypeError, ValueError):
            return
        self.owner._properties_changed(str(interface), changed, invalidated)
