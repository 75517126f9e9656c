"""org.freedesktop.Notifications.Notify calls read from `dbus-monitor`'s output (tests/desktop.py
watches the session bus with it), whole or not at all.

dbus-monitor writes to a file through a buffer: a reader may find a call whose arguments are
only partly written (once, a summary was looked up before it was there: an IndexError). So a
call counts only once its last argument (the expire timeout, `int32 N` and its newline) is
there; a call that a later message follows was written whole, and one that cannot be read
then is a real error, said with its text.

How dbus-monitor prints a Notify call (signature susssasa{sv}i): a header line, then one
argument per line at three spaces, arrays' items deeper, strings in double quotes with
neither their quotes nor their newlines escaped (a body of two lines takes two lines):

    method call time=... sender=:1.5 -> destination=org.freedesktop.Notifications serial=7
    path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
       string "KindlyGuard Monitor"
       uint32 0
       string ""
       string "High threat blocked: PathTraversal"
       string "mcp:fs ..."
       array [
          string "default"
          string "Open"
       ]
       array [
          dict entry(
             string "urgency"
             variant             byte 1
          )
       ]
       int32 -1
"""

from __future__ import annotations

import re
from typing import NamedTuple

BLOCK_START = "\nmethod call "
_STRING = '   string "'
_UINT32 = re.compile(r"   uint32 (\d+)\n")
_INT32 = re.compile(r"   int32 (-?\d+)\n")
_ACTION = re.compile(r'^      string "(.*)"$', re.M)


class NotifyCall(NamedTuple):
    app_name: str
    replaces_id: int
    icon: str
    summary: str
    body: str
    actions: list[str]
    hints: str  # the hints array as printed (tests look for a hint's name and value in it)
    expire_timeout: int


class _Partial(Exception):
    """The call is not all there (yet)."""


def _string(text: str, pos: int, followed_by: str) -> tuple[str, int]:
    """A string argument at `pos`: up to the quote that ends its line and is followed by
    the next argument's start (the string itself may hold quotes and newlines)."""
    if not text.startswith(_STRING, pos):
        raise _Partial
    start = pos + len(_STRING)
    end = text.find('"\n' + followed_by, start)
    if end < 0:
        raise _Partial
    return text[start:end], end + 2


def _array(text: str, pos: int, followed_by: str) -> tuple[str, int]:
    """An array argument at `pos`, as printed: up to its closing `   ]` line, which the next
    argument follows."""
    if not text.startswith("   array [\n", pos):
        raise _Partial
    inner = pos + len("   array [\n")
    close = "   ]\n" + followed_by
    end = inner if text.startswith(close, inner) else text.find("\n" + close, inner) + 1
    if end <= 0:
        raise _Partial
    return text[inner:end], end + len("   ]\n")


def _number(pattern: re.Pattern, text: str, pos: int) -> tuple[int, int]:
    found = pattern.match(text, pos)
    if found is None:
        raise _Partial
    return int(found.group(1)), found.end()


def parse_notify(block: str) -> NotifyCall | None:
    """The Notify call in `block` (its header line first), or None while not all of it is there."""
    header, newline, text = block.partition("\n")
    if not newline or not header.startswith("method call ") or not header.endswith("member=Notify"):
        return None
    try:
        app_name, pos = _string(text, 0, "   uint32 ")
        replaces_id, pos = _number(_UINT32, text, pos)
        icon, pos = _string(text, pos, _STRING)
        summary, pos = _string(text, pos, _STRING)
        body, pos = _string(text, pos, "   array [\n")
        actions, pos = _array(text, pos, "   array [\n")
        hints, pos = _array(text, pos, "   int32 ")
        expire_timeout, pos = _number(_INT32, text, pos)
    except _Partial:
        return None
    return NotifyCall(app_name, replaces_id, icon, summary, body, _ACTION.findall(actions), hints,
                      expire_timeout)


def notify_blocks(monitor_output: str) -> list[str]:
    """Each whole Notify call in dbus-monitor's output so far, as its text block: the last
    one only once all of it is there. A call followed by another message that cannot be
    read raises AssertionError (dbus-monitor printed something this reader does not know)."""
    parts = monitor_output.split(BLOCK_START)[1:]
    # each but the last ended with the newline the split took
    blocks = ["method call " + b + ("\n" if i < len(parts) - 1 else "") for i, b in enumerate(parts)]
    whole = []
    for i, block in enumerate(blocks):
        if not block.split("\n", 1)[0].endswith("member=Notify"):
            continue
        if parse_notify(block) is not None:
            whole.append(block)
        elif i < len(blocks) - 1:
            raise AssertionError(f"a Notify call dbus-monitor printed in full cannot be read:\n{block}")
    return whole


def notify_field(call: str, index: int) -> str:
    """The index-th string argument of a whole Notify call's text block (0 app name, 1 icon,
    2 summary, 3 body). A call not all there is an AssertionError that shows it, never an
    IndexError: DesktopSession.notify_calls() gives only whole ones."""
    parsed = parse_notify(call)
    if parsed is None:
        raise AssertionError(f"not a whole Notify call (still being written?):\n{call}")
    if not 0 <= index <= 3:
        raise ValueError(f"a Notify call has four string arguments (0-3), not {index}")
    return (parsed.app_name, parsed.icon, parsed.summary, parsed.body)[index]
