"""A small notification server that offers the specification's `Inhibited`
property (org.freedesktop.Notifications 1.3, as KDE Plasma and dunst >= 1.10
do), for the do-not-disturb test: dunst 1.9 on this machine has only its own
`paused` property.

    python tests/inhibiting_notify_server.py true|false    (DBUS_SESSION_BUS_ADDRESS set)

It owns org.freedesktop.Notifications on the session bus, answers
GetServerInformation, GetCapabilities, Notify (printing "notify SUMMARY" on
stdout) and Properties.Get/GetAll for Inhibited, prints "ready", and reads
commands on stdin: "inhibit true|false" sets the property and emits
PropertiesChanged; "invalidate true|false" sets it and emits PropertiesChanged
with the name in the invalidated list (no value), as the specification allows.
A real D-Bus service (jeepney), not a mock of one.
"""

from __future__ import annotations

import queue
import sys
import threading

from jeepney import DBusAddress, MessageType, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
PROPS = "org.freedesktop.DBus.Properties"


def main() -> int:
    inhibited = sys.argv[1] == "true"
    conn = open_dbus_connection("SESSION")
    conn.send_and_get_reply(message_bus.RequestName(NAME, 4))  # DO_NOT_QUEUE
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [commands.put(line.split()) for line in sys.stdin], daemon=True).start()
    print("ready", flush=True)
    next_id = 1
    while True:
        try:
            cmd = commands.get_nowait()
        except queue.Empty:
            cmd = None
        if cmd:
            inhibited = cmd[1] == "true"
            changed, invalid = ({"Inhibited": ("b", inhibited)}, []) if cmd[0] == "inhibit" else ({}, ["Inhibited"])
            conn.send(new_signal(DBusAddress(PATH, interface=PROPS), "PropertiesChanged", "sa{sv}as",
                                 (NAME, changed, invalid)))
            print("changed", flush=True)
        try:
            msg = conn.receive(timeout=0.05)
        except TimeoutError:
            continue
        h = msg.header
        if h.message_type != MessageType.method_call:
            continue
        member = h.fields.get(3)  # HeaderFields.member
        iface = h.fields.get(2)
        if member == "GetServerInformation":
            reply = new_method_return(msg, "ssss", ("stand-in", "tests", "1", "1.3"))
        elif member == "GetCapabilities":
            reply = new_method_return(msg, "as", (["body", "actions"],))
        elif member == "Notify":
            print("notify", msg.body[3], flush=True)
            reply = new_method_return(msg, "u", (next_id,))
            next_id += 1
        elif iface == PROPS and member == "Get" and msg.body == (NAME, "Inhibited"):
            reply = new_method_return(msg, "v", (("b", inhibited),))
        elif iface == PROPS and member == "GetAll":
            reply = new_method_return(msg, "a{sv}", ({"Inhibited": ("b", inhibited)},))
        else:
            reply = new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"no {iface}.{member}",))
        conn.send(reply)


if __name__ == "__main__":
    sys.exit(main())
