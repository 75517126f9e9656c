"""Start KindlyGuard Monitor at login.

- Linux (and other XDG desktops): an autostart entry
  $XDG_CONFIG_HOME/autostart/kindlyguard-monitor.desktop (default ~/.config);
- macOS: a LaunchAgent ~/Library/LaunchAgents/com.kindlyguard.monitor.plist;
- Windows: the value "KindlyGuard Monitor" under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run.

The app is started with --hidden (straight to the tray). Only the Linux writer has been
run for real; the macOS plist is checked through an injected home, and the Windows
writer through a fake winreg module (pass `winreg=`).
"""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

APP_NAME = "KindlyGuard Monitor"
DESKTOP_FILE_NAME = "kindlyguard-monitor.desktop"
LAUNCH_AGENT_LABEL = "com.kindlyguard.monitor"
LAUNCH_AGENT_FILE_NAME = LAUNCH_AGENT_LABEL + ".plist"
WINDOWS_RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
WINDOWS_VALUE_NAME = APP_NAME
HIDDEN_FLAG = "--hidden"
ICON_NAME = "kindlyguard"

# Desktop Entry spec, "The Exec key": arguments holding any of these must be quoted.
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_EXEC_ESCAPE_IN_QUOTES = re.compile(r'(["`$\\])')


# --- the command ------------------------------------------------------------------

def default_command() -> list[str]:
    """The program to start: the frozen executable itself, else `<python> -m kindlyguard_monitor`."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "kindlyguard_monitor"]


def _full_command(command: list[str] | None) -> list[str]:
    args = list(command) if command else default_command()
    if not args or not all(isinstance(a, str) and a for a in args):
        raise ValueError(f"autostart command must be a list of non-empty strings, not {command!r}")
    if HIDDEN_FLAG not in args:
        args.append(HIDDEN_FLAG)
    return args


# --- Linux / XDG --------------------------------------------------------------------

def quote_exec_arg(arg: str) -> str:
    """One argument of a Desktop Entry Exec line, quoted per the spec (before the
    file-level escaping of backslashes, which `exec_value` adds)."""
    if any(ch in arg for ch in "\n\r\x00"):
        raise ValueError(f"an Exec argument cannot hold a newline or NUL: {arg!r}")
    arg = arg.replace("%", "%%")  # a literal % must be doubled (field codes)
    if arg and not any(ch in _EXEC_RESERVED for ch in arg):
        return arg
    return '"' + _EXEC_ESCAPE_IN_QUOTES.sub(r"\\\1", arg) + '"'


def exec_value(args: list[str]) -> str:
    """The Exec= value as written in the file: quoted arguments, then the string-value
    escaping of the Desktop Entry spec (a backslash is written as \\\\)."""
    line = " ".join(quote_exec_arg(a) for a in args)
    return line.replace("\\", "\\\\")


def parse_exec_value(value: str) -> list[str]:
    """The inverse of `exec_value` (for checks): file-level unescape, then split."""
    unescaped = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            unescaped.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        unescaped.append(ch)
        i += 1
    line = "".join(unescaped)
    args: list[str] = []
    cur: list[str] = []
    in_arg = in_quotes = False
    i = 0
    while i < len(line):
        ch = line[i]
        if in_quotes:
            if ch == "\\" and i + 1 < len(line) and line[i + 1] in '"`$\\':
                cur.append(line[i + 1])
                i += 2
                continue
            if ch == '"':
                in_quotes = False
            else:
                cur.append(ch)
        elif ch == '"':
            in_quotes = in_arg = True
        elif ch == " ":
            if in_arg:
                args.append("".join(cur))
                cur, in_arg = [], False
        else:
            cur.append(ch)
            in_arg = True
        i += 1
    if in_quotes:
        raise ValueError(f"unterminated quote in Exec value: {value!r}")
    if in_arg:
        args.append("".join(cur))
    return [a.replace("%%", "%") for a in args]


def xdg_autostart_path(home: str | os.PathLike | None = None) -> Path:
    config = os.environ.get("XDG_CONFIG_HOME", "")
    # the spec: a relative $XDG_CONFIG_HOME is invalid and ignored
    base = Path(config) if config and os.path.isabs(config) else Path(home or Path.home()) / ".config"
    return base / "autostart" / DESKTOP_FILE_NAME


def desktop_entry(args: list[str]) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={APP_NAME}\n"
        f"Exec={exec_value(args)}\n"
        f"Icon={ICON_NAME}\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def _write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write atomically (temp file in the same folder, then rename), mode `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _xdg_is_enabled(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip().lower()
        if key == "Hidden" and value == "true":
            return False
        if key == "X-GNOME-Autostart-enabled" and value == "false":
            return False
    return True


# --- macOS --------------------------------------------------------------------------

def launch_agent_path(home: str | os.PathLike | None = None) -> Path:
    return Path(home or Path.home()) / "Library" / "LaunchAgents" / LAUNCH_AGENT_FILE_NAME


def launch_agent_plist(args: list[str]) -> dict[str, Any]:
    return {
        "Label": LAUNCH_AGENT_LABEL,
        "ProgramArguments": list(args),
        "RunAtLoad": True,
        "ProcessType": "Interactive",
    }


# --- Windows ------------------------------------------------------------------------

def _winreg(module: Any = None) -> Any:
    if module is not None:
        return module
    import winreg  # type: ignore[import-not-found]  # Windows only

    return winreg


def windows_command_line(args: list[str]) -> str:
    return subprocess.list2cmdline(args)


# --- the API --------------------------------------------------------------------------

def _kind(platform: str) -> str:
    if platform == "darwin":
        return "macos"
    if platform in ("win32", "cygwin"):
        return "windows"
    return "xdg"


def enable(command: list[str] | None = None, platform: str = sys.platform,
           home: str | os.PathLike | None = None, winreg: Any = None) -> None:
    """Start the app (with --hidden) at login. `command` defaults to `default_command()`."""
    args = _full_command(command)
    kind = _kind(platform)
    if kind == "macos":
        _write_file(launch_agent_path(home), plistlib.dumps(launch_agent_plist(args)))
    elif kind == "windows":
        reg = _winreg(winreg)
        key = reg.CreateKey(reg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY)
        try:
            reg.SetValueEx(key, WINDOWS_VALUE_NAME, 0, reg.REG_SZ, windows_command_line(args))
        finally:
            reg.CloseKey(key)
    else:
        _write_file(xdg_autostart_path(home), desktop_entry(args).encode("utf-8"))


def disable(platform: str = sys.platform, home: str | os.PathLike | None = None, winreg: Any = None) -> None:
    """Stop starting the app at login (nothing happens if it was not set up)."""
    kind = _kind(platform)
    if kind == "macos":
        _remove(launch_agent_path(home))
    elif kind == "windows":
        reg = _winreg(winreg)
        try:
            key = reg.OpenKey(reg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, reg.KEY_SET_VALUE)
        except FileNotFoundError:
            return
        try:
            reg.DeleteValue(key, WINDOWS_VALUE_NAME)
        except FileNotFoundError:
            pass
        finally:
            reg.CloseKey(key)
    else:
        _remove(xdg_autostart_path(home))


def is_enabled(platform: str = sys.platform, home: str | os.PathLike | None = None, winreg: Any = None) -> bool:
    kind = _kind(platform)
    if kind == "macos":
        return launch_agent_path(home).is_file()
    if kind == "windows":
        reg = _winreg(winreg)
        try:
            key = reg.OpenKey(reg.HKEY_CURRENT_USER, WINDOWS_RUN_KEY, 0, reg.KEY_READ)
        except FileNotFoundError:
            return False
        try:
            reg.QueryValueEx(key, WINDOWS_VALUE_NAME)
            return True
        except FileNotFoundError:
            return False
        finally:
            reg.CloseKey(key)
    return _xdg_is_enabled(xdg_autostart_path(home))


def apply(enabled: bool, command: list[str] | None = None, platform: str = sys.platform,
          home: str | os.PathLike | None = None, winreg: Any = None) -> None:
    if enabled:
        enable(command, platform=platform, home=home, winreg=winreg)
    else:
        disable(platform=platform, home=home, winreg=winreg)
