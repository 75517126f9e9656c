"""A throw-away headless desktop for the end-to-end GUI tests.

    with DesktopSession(tray="sni") as desktop:   # or "xembed", "none"
        subprocess.Popen(cmd, env=desktop.env)
        desktop.notify_calls()                      # every Notify seen on the bus

Starts, in order, and stops in reverse (only what it started, by PID):
  Xvfb             on the first free display (-displayfd: never a fixed :99);
  dbus-daemon      a private session bus with no service activation, so only
                   what is started here exists on it (no stray dunst started by
                   the first Notify, no desktop's own services);
  the tray host    sni:    status-notifier-watcher, then gtk-sni-tray-standalone
                           (Qt then uses its StatusNotifierItem tray);
                   xembed: trayer (_NET_SYSTEM_TRAY_S0; Qt embeds its icon);
  dunst -print     the notification server; its log has one block per notification;
  dbus-monitor     every org.freedesktop.Notifications method call, as seen on the bus
                   (a Notify call is read once all of it is written: tests/dbus_notify.py).

What was learned building it (Debian 12; see also packaging/system-deps.sh,
which installs the packages): the watcher must run as its own process before
the SNI host (the host's --watcher flag crashes at start now and then); the
bus must not auto-start services; Qt needs the xcb platform here (offscreen has
no tray and grabs empty screens); PID 1 here does not reap orphans, so every
child is waited for.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kindlyguard_monitor import child_process
from dbus_notify import notify_blocks

TRAYS = ("sni", "xembed", "none")
PROGRAMS = {  # program -> Debian package
    "Xvfb": "xvfb",
    "dbus-daemon": "dbus",
    "dbus-monitor": "dbus",
    "dunst": "dunst",
    "xdotool": "xdotool",
    "status-notifier-watcher": "haskell-status-notifier-item-utils",
    "gtk-sni-tray-standalone": "haskell-gtk-sni-tray-utils",
    "trayer": "trayer",
}

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

DUNSTRC = """[global]
    font = Monospace 9
    origin = top-right
    offset = 10x42
    idle_threshold = 0
    history_length = 100
"""


def missing_programs(tray: str = "sni") -> list[str]:
    """The Debian packages still to install for a session with this tray."""
    need = ["Xvfb", "dbus-daemon", "dbus-monitor", "dunst", "xdotool"]
    need += {"sni": ["status-notifier-watcher", "gtk-sni-tray-standalone"], "xembed": ["trayer"]}.get(tray, [])
    return sorted({PROGRAMS[p] for p in need if shutil.which(p) is None})


class DesktopError(RuntimeError):
    """A part of the desktop did not come up; the message carries its log tail."""


def _wait(what: str, check, timeout: float, logs: list[Path] = ()) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    tails = []
    for log in logs:
        if log.exists() and log.stat().st_size:
            tails.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    raise DesktopError(f"{what} did not come up within {timeout:.0f} s\n" + "\n".join(tails))


class DesktopSession:
    def __init__(self, tray: str = "sni", notifier: bool = True, screen: str = "1280x800x24",
                 startup_timeout: float = 20.0):
        assert tray in TRAYS, tray
        self.tray = tray
        self.notifier = notifier
        self.screen = screen
        self.timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="kgmon-desktop-"))
        os.chmod(self.dir, 0o700)
        self.procs: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}
        self.tray_bar: tuple[int, int, int, int] | None = None  # x, y, w, h of the tray window at start
        self.notify_log = self.dir / "notifications.log"
        self.notify_calls_log = self.dir / "notify-calls.log"

    # -- life cycle

    def __enter__(self) -> "DesktopSession":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str], env: dict, **kw) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "wb")
        kw.setdefault("stdout", log)
        kw.setdefault("stderr", log)
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, **kw)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        missing = missing_programs(self.tray)
        if missing:
            raise DesktopError("missing Debian packages: " + " ".join(missing)
                               + " (bash packaging/system-deps.sh --test installs them)")
        d = self.dir
        for sub in ("config", "cache", "data", "runtime"):
            (d / sub).mkdir(mode=0o700)
        base = {k: v for k, v in os.environ.items()
                if k not in ("WAYLAND_DISPLAY", "SESSION_MANAGER", "DBUS_SESSION_BUS_PID", "DISPLAY",
                             "DBUS_SESSION_BUS_ADDRESS")}

        # 1. Xvfb on a free display: it writes the number to the pipe we give it
        read_fd, write_fd = os.pipe()
        self._spawn("xvfb", ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", self.screen,
                             "-nolisten", "tcp", "-noreset", "-dpi", "96"], base, pass_fds=(write_fd,))
        os.close(write_fd)
        number = b""
        end = time.monotonic() + self.timeout
        os.set_blocking(read_fd, False)
        while not number.endswith(b"\n") and time.monotonic() < end:
            try:
                chunk = os.read(read_fd, 16)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            if not chunk:
                break
            number += chunk
        os.close(read_fd)
        if not number.strip():
            raise DesktopError("Xvfb did not report a display\n" + (d / "xvfb.log").read_text(errors="replace"))
        display = f":{number.decode().strip()}"

        # 2. the private session bus
        (d / "bus.conf").write_text(BUS_CONF.format(path=d / "bus"))
        bus_address = f"unix:path={d / 'bus'}"
        self._spawn("dbus", ["dbus-daemon", f"--config-file={d / 'bus.conf'}", "--nofork", "--nopidfile"], base)
        env = dict(base, DISPLAY=display, DBUS_SESSION_BUS_ADDRESS=bus_address)
        self.env = env
        _wait("the session bus", lambda: self.bus_has("org.freedesktop.DBus"), self.timeout, [d / "dbus.log"])

        self._helper_env = dict(env, XDG_CONFIG_HOME=str(d / "config"), XDG_CACHE_HOME=str(d / "cache"),
                                XDG_DATA_HOME=str(d / "data"), XDG_RUNTIME_DIR=str(d / "runtime"),
                                NO_AT_BRIDGE="1", GSETTINGS_BACKEND="memory", GTK_A11Y="none")
        helper = self._helper_env
        # 3. the tray host
        if self.tray != "none":
            self.start_tray(self.tray)

        # 4. the notification server, and a recorder of every Notify call on the bus
        if self.notifier:
            (d / "config" / "dunst").mkdir()
            (d / "config" / "dunst" / "dunstrc").write_text(DUNSTRC)
            out = open(self.notify_log, "wb")
            dunst = self._spawn("dunst", ["stdbuf", "-oL", "dunst", "-print", "-config",
                                          str(d / "config" / "dunst" / "dunstrc")], helper, stdout=out)
            out.close()
            _wait("dunst", lambda: self.bus_pid("org.freedesktop.Notifications") == dunst.pid, self.timeout,
                  [d / "dunst.log"])
        out = open(self.notify_calls_log, "wb")
        self._spawn("monitor", ["dbus-monitor", "--session",
                                "type='method_call',interface='org.freedesktop.Notifications'"], env, stdout=out)
        out.close()
        _wait("dbus-monitor", lambda: self.notify_calls_log.stat().st_size > 0, self.timeout, [d / "monitor.log"])
        self.env = dict(env, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(d / "runtime"))

    def start_tray(self, kind: str) -> None:
        """Start a tray host now (at start, or later: a tray that appears after the app)."""
        d, helper = self.dir, self._helper_env
        if kind == "sni":
            if not self.bus_has("org.kde.StatusNotifierWatcher"):
                self._spawn("watcher", ["status-notifier-watcher"], helper)
                _wait("status-notifier-watcher", lambda: self.bus_has("org.kde.StatusNotifierWatcher"),
                      self.timeout, [d / "watcher.log"])
            host = self._spawn("tray", ["gtk-sni-tray-standalone", "--top", "--end", "--size", "32",
                                        "--color", "#2e3440"], helper)
            _wait("the StatusNotifier host", self._sni_host_registered, self.timeout, [d / "tray.log"])
        elif kind == "xembed":
            host = self._spawn("tray", ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
                                        "--height", "32", "--SetDockType", "true", "--transparent", "true",
                                        "--alpha", "0", "--tint", "0x2e3440"], helper)
            _wait("trayer (_NET_SYSTEM_TRAY_S0)", self._xembed_tray_owned, self.timeout, [d / "tray.log"])
        else:
            raise ValueError(kind)
        self.tray = kind
        _wait("the tray window", lambda: self._window_of(host.pid) is not None, self.timeout, [d / "tray.log"])
        self.tray_bar = self._geometry(self._window_of(host.pid))

    def stop(self) -> None:
        """TERM each process we started (newest first), KILL after 3 s, always reap."""
        for proc in reversed(self.procs):
            child_process.end(proc, 3)
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- what the tests ask

    def _run(self, *args: str, timeout: float = 5) -> str:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout).stdout

    def _bus_call(self, method: str, arg: str) -> str:
        return self._run("dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                         "/org/freedesktop/DBus", f"org.freedesktop.DBus.{method}", f"string:{arg}")

    def bus_has(self, name: str) -> bool:
        return "boolean true" in self._bus_call("NameHasOwner", name)

    def bus_pid(self, name: str) -> int | None:
        for line in self._bus_call("GetConnectionUnixProcessID", name).splitlines():
            if "uint32" in line:
                return int(line.split()[-1])
        return None

    def _sni_host_registered(self) -> bool:
        out = self._run("dbus-send", "--session", "--print-reply", "--dest=org.kde.StatusNotifierWatcher",
                        "/StatusNotifierWatcher", "org.freedesktop.DBus.Properties.Get",
                        "string:org.kde.StatusNotifierWatcher", "string:IsStatusNotifierHostRegistered")
        return "boolean true" in out

    def _sni_items(self) -> list[str]:
        """The items the StatusNotifierWatcher has registered: "service" or "service/path" (a bus name)."""
        out = self._run("dbus-send", "--session", "--print-reply", "--dest=org.kde.StatusNotifierWatcher",
                        "/StatusNotifierWatcher", "org.freedesktop.DBus.Properties.Get",
                        "string:org.kde.StatusNotifierWatcher", "string:RegisteredStatusNotifierItems")
        return [line.split('"')[1] for line in out.splitlines() if line.strip().startswith('string "')]

    def sni_item_pids(self) -> list[int | None]:
        """The process of each item the StatusNotifierWatcher has registered."""
        return [self.bus_pid(name.split("/", 1)[0]) for name in self._sni_items()]

    def sni_item_property(self, pid: int, name: str) -> str | None:
        """A property of the StatusNotifierItem that process `pid` registered, as the tray host
        reads it over the bus (dbus-send's printout); None when it has no item registered."""
        for item in self._sni_items():
            service, _, path = item.partition("/")
            if self.bus_pid(service) == pid:  # the reply without its header line (times, serials)
                return self._run("dbus-send", "--session", "--print-reply", f"--dest={service}",
                                 "/" + (path or "StatusNotifierItem"), "org.freedesktop.DBus.Properties.Get",
                                 "string:org.kde.StatusNotifierItem", f"string:{name}").partition("\n")[2]
        return None

    def _xembed_tray_owned(self) -> bool:
        """Is _NET_SYSTEM_TRAY_S0 owned? (libX11 through ctypes, no extra package)"""
        x = ctypes.cdll.LoadLibrary("libX11.so.6")
        x.XOpenDisplay.restype = ctypes.c_void_p
        x.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x.XInternAtom.restype = ctypes.c_ulong
        x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        x.XGetSelectionOwner.restype = ctypes.c_ulong
        x.XGetSelectionOwner.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
        x.XCloseDisplay.argtypes = [ctypes.c_void_p]
        dpy = x.XOpenDisplay(self.env["DISPLAY"].encode())
        if not dpy:
            return False
        try:
            return bool(x.XGetSelectionOwner(dpy, x.XInternAtom(dpy, b"_NET_SYSTEM_TRAY_S0", 0)))
        finally:
            x.XCloseDisplay(dpy)

    def _window_of(self, pid: int) -> str | None:
        out = self._run("xdotool", "search", "--onlyvisible", "--pid", str(pid)).split()
        return out[0] if out else None

    def _geometry(self, window: str) -> tuple[int, int, int, int]:
        values = {}
        for line in self._run("xdotool", "getwindowgeometry", "--shell", window).splitlines():
            k, _, v = line.partition("=")
            values[k] = int(v) if v.lstrip("-").isdigit() else v
        return values["X"], values["Y"], values["WIDTH"], values["HEIGHT"]

    def notify_calls(self) -> list[str]:
        """Each org.freedesktop.Notifications.Notify call dbus-monitor saw, as its text block:
        whole calls only (one still being written is left for the next look: tests/dbus_notify.py)."""
        return notify_blocks(self.notify_calls_log.read_text(errors="replace"))

    def notifications_shown(self) -> str:
        """What dunst printed: one block per notification it received."""
        return self.notify_log.read_text(errors="replace") if self.notify_log.exists() else ""
