"""The desktop the GUI needs: a display, the session bus, a tray, a notification service."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from typing import Mapping

from kindlyguard_monitor.doctor.findings import INFO, OK, WARN, Finding

DBUS_TIMEOUT_S = 2.0
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
NOTIFICATIONS = "org.freedesktop.Notifications"


_XEMBED_PROBE = r"""
import ctypes, ctypes.util, sys
name = ctypes.util.find_library("X11") or "libX11.so.6"
try:
    x = ctypes.cdll.LoadLibrary(name)
except OSError:
    sys.exit(3)
x.XOpenDisplay.restype = ctypes.c_void_p; x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong; x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
x.XGetSelectionOwner.restype = ctypes.c_ulong; x.XGetSelectionOwner.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
x.XCloseDisplay.argtypes = [ctypes.c_void_p]
d = x.XOpenDisplay(None)
if not d:
    sys.exit(2)
owner = x.XGetSelectionOwner(d, x.XInternAtom(d, b"_NET_SYSTEM_TRAY_S0", 0))
x.XCloseDisplay(d)
sys.exit(0 if owner else 1)
"""


def xembed_tray(env: Mapping[str, str], timeout: float = DBUS_TIMEOUT_S) -> str:
    """'yes', 'no', 'no-display', 'no-libx11' or 'unknown' (the probe failed or timed out)."""
    try:
        r = subprocess.run([sys.executable, "-c", _XEMBED_PROBE], env=dict(env), timeout=timeout,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return {0: "yes", 1: "no", 2: "no-display", 3: "no-libx11"}.get(r.returncode, "unknown")


def _dbus_call(env: Mapping[str, str], dest: str, path: str, method: str, *args: str,
               timeout: float = DBUS_TIMEOUT_S) -> str | None:
    """dbus-send's reply text, or None if the call failed or timed out."""
    argv = ["dbus-send", "--session", "--print-reply", f"--reply-timeout={int(timeout * 1000)}",
            f"--dest={dest}", path, method, *args]
    try:
        r = subprocess.run(argv, env=dict(env), timeout=timeout + 0.5, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def bus_has(env: Mapping[str, str], name: str) -> bool | None:
    """Does `name` have an owner on the session bus? None if the bus did not answer."""
    reply = _dbus_call(env, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                       "org.freedesktop.DBus.NameHasOwner", f"string:{name}")
    if reply is None:
        return None
    return "boolean true" in reply


def bus_activatable(env: Mapping[str, str], name: str) -> bool:
    reply = _dbus_call(env, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                       "org.freedesktop.DBus.ListActivatableNames")
    return reply is not None and f'"{name}"' in reply


def sni_host_registered(env: Mapping[str, str]) -> bool | None:
    reply = _dbus_call(env, SNI_WATCHER, "/StatusNotifierWatcher", "org.freedesktop.DBus.Properties.Get",
                       f"string:{SNI_WATCHER}", "string:IsStatusNotifierHostRegistered")
    return None if reply is None else "boolean true" in reply


def _session_bus(env: dict) -> str | None:
    """The session bus address; found at $XDG_RUNTIME_DIR/bus when not set, and then set in `env`."""
    bus = env.get("DBUS_SESSION_BUS_ADDRESS")
    if not bus and env.get("XDG_RUNTIME_DIR"):
        sock = os.path.join(env["XDG_RUNTIME_DIR"], "bus")
        try:
            if stat.S_ISSOCK(os.stat(sock).st_mode):
                bus = env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={sock}"
        except OSError:
            pass
    return bus


def _check_bus(env: dict, bus: str | None, findings: list[Finding]) -> tuple[bool | None, bool | None]:
    """The dbus finding; (a tray host is there, a notification service is there), None if not asked."""
    have_sni = have_notify = None
    if not bus:
        findings.append(Finding("dbus", WARN, "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)",
                                "no StatusNotifierItem tray icon and no desktop notifications without it: "
                                "start the app from your desktop session"))
    elif shutil.which("dbus-send", path=env.get("PATH")) is None:
        findings.append(Finding("dbus", INFO, f"session bus {bus}; dbus-send is not installed, so the tray host "
                                "and the notification service were not checked",
                                "install dbus (Debian: `apt-get install dbus`) to let doctor check them"))
    else:
        have_sni = bus_has(env, SNI_WATCHER)
        if have_sni is None:
            findings.append(Finding("dbus", WARN, f"the session bus {bus} does not answer",
                                    "log out and in again, or start the app from your desktop session"))
        else:
            findings.append(Finding("dbus", OK, f"session bus {bus}"))
            have_notify = bus_has(env, NOTIFICATIONS)
            if have_sni:
                have_sni = sni_host_registered(env) is not False  # a watcher without a host shows nothing
    return have_sni, have_notify


def _tray(env: dict, display: str | None, have_sni: bool | None) -> Finding:
    xembed = xembed_tray(env) if display else "no-display"
    if have_sni:
        return Finding("tray", OK, f"a StatusNotifierItem host is there ({SNI_WATCHER})")
    if xembed == "yes":
        return Finding("tray", OK, "an XEmbed system tray owns _NET_SYSTEM_TRAY_S0")
    why = []
    if have_sni is False:
        why.append("no StatusNotifierItem host")
    if xembed == "no":
        why.append("no XEmbed tray")
    elif xembed == "no-display" and display:
        why.append(f"the X display {display} does not open")
    elif xembed == "no-libx11":
        why.append("libX11 is missing, XEmbed not checked")
    detail = f" ({', '.join(why)})" if why else ""
    return Finding("tray", WARN, f"no system tray found{detail}: the app will run as a normal window",
                   "enable your desktop's tray / StatusNotifierItem support (GNOME: the "
                   "AppIndicator extension) to get the tray icon")


def check_desktop(env: Mapping[str, str]) -> list[Finding]:
    display, wayland = env.get("DISPLAY"), env.get("WAYLAND_DISPLAY")
    if not display and not wayland:
        return [Finding("display", INFO, "no desktop session (neither DISPLAY nor WAYLAND_DISPLAY is set): "
                        "the GUI cannot start here; kgmon tail works")]
    shown = ", ".join(f"{k}={v}" for k, v in (("DISPLAY", display), ("WAYLAND_DISPLAY", wayland)) if v)
    findings = [Finding("display", OK, shown)]
    env = dict(env)
    bus = _session_bus(env)
    have_sni, have_notify = _check_bus(env, bus, findings)
    findings.append(_tray(env, display, have_sni))
    if have_notify is True:
        findings.append(Finding("notifications", OK, f"a notification service is there ({NOTIFICATIONS})"))
    elif have_notify is False:
        if bus_activatable(env, NOTIFICATIONS):
            findings.append(Finding("notifications", OK, f"{NOTIFICATIONS} starts on demand"))
        else:
            findings.append(Finding("notifications", WARN, f"no notification service ({NOTIFICATIONS}): "
                                    "threats show in the window only",
                                    "install or start a notification daemon (dunst, mako, your desktop's own)"))
    return findings
