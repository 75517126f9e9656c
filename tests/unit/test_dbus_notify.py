"""Reading Notify calls from dbus-monitor's output (tests/dbus_notify.py, used by the desktop
end-to-end tests): a call counts only when all of it is there, so a test reading the file while
dbus-monitor is still writing a call never sees part of one (once: an IndexError in a helper
looking for the summary). Fed dbus-monitor's real output cut at every byte."""

from __future__ import annotations

import pytest

from dbus_notify import notify_blocks, notify_field, parse_notify

# Real `dbus-monitor --session "type='method_call',interface='org.freedesktop.Notifications'"` output
# (dbus 1.14, Debian 12): two Notify calls sent with jeepney as the app sends them, a CloseNotification
# between them. Strings are printed raw: the second body has a newline, quotes, and a line that looks
# like an argument.
MONITOR_OUTPUT = """\
signal time=1796219872.493001 sender=org.freedesktop.DBus -> destination=:1.0 serial=2 path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameAcquired
   string ":1.0"
signal time=1796219872.493056 sender=org.freedesktop.DBus -> destination=:1.0 serial=4 path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameLost
   string ":1.0"
method call time=1796219873.027087 sender=:1.1 -> destination=org.freedesktop.Notifications serial=2 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
   string "KindlyGuard Monitor"
   uint32 0
   string "dialog-warning"
   string "3 new threats, 1 critical, 2 blocked, 1 allowed"
   string "mcp:fs ×2 · mcp:tools/⟨U+202E⟩call"
   array [
      string "default"
      string "Open"
   ]
   array [
      dict entry(
         string "urgency"
         variant             byte 2
      )
      dict entry(
         string "desktop-entry"
         variant             string "kindlyguard-monitor"
      )
   ]
   int32 -1
method call time=1796219873.027132 sender=:1.1 -> destination=org.freedesktop.Notifications serial=3 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=CloseNotification
   uint32 7
method call time=1796219873.027135 sender=:1.1 -> destination=org.freedesktop.Notifications serial=4 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
   string "KindlyGuard Monitor"
   uint32 7
   string ""
   string "High threat blocked: PathTraversal"
   string "a body of two lines, "quoted"
   string "not an argument""
   array [
   ]
   array [
   ]
   int32 8000
"""
FIRST_END = MONITOR_OUTPUT.index("   int32 -1\n") + len("   int32 -1\n")
SECOND_END = len(MONITOR_OUTPUT)
FIRST_END_BYTES = MONITOR_OUTPUT[:FIRST_END].encode()
SECOND_END_BYTES = MONITOR_OUTPUT[:SECOND_END].encode()


def test_both_calls_are_read_whole():
    first, second = (parse_notify(b) for b in notify_blocks(MONITOR_OUTPUT))
    assert first.app_name == "KindlyGuard Monitor" and first.replaces_id == 0 and first.icon == "dialog-warning"
    assert first.summary == "3 new threats, 1 critical, 2 blocked, 1 allowed"
    assert first.body == "mcp:fs ×2 · mcp:tools/⟨U+202E⟩call"
    assert first.actions == ["default", "Open"] and first.expire_timeout == -1
    assert 'string "urgency"\n         variant             byte 2' in first.hints
    assert second.replaces_id == 7 and second.icon == "" and second.summary == "High threat blocked: PathTraversal"
    assert second.body == 'a body of two lines, "quoted"\n   string "not an argument"'
    assert second.actions == [] and second.hints == "" and second.expire_timeout == 8000


def test_output_cut_anywhere_gives_only_whole_calls():
    data = MONITOR_OUTPUT.encode()
    whole = notify_blocks(MONITOR_OUTPUT)
    for cut in range(len(data) + 1):
        text = data[:cut].decode(errors="replace")  # as DesktopSession reads it: a character may be cut too
        blocks = notify_blocks(text)
        expected = 2 if cut >= len(SECOND_END_BYTES) else 1 if cut >= len(FIRST_END_BYTES) else 0
        assert len(blocks) == expected, (cut, text[-80:])
        for block, full in zip(blocks, whole):  # the whole call, field for field
            assert parse_notify(block) == parse_notify(full), cut


def test_a_call_not_all_there_is_never_an_index_error():
    second = MONITOR_OUTPUT[MONITOR_OUTPUT.rindex("method call "):]
    for cut in range(len(second)):
        with pytest.raises(AssertionError, match="not a whole Notify call"):
            notify_field(second[:cut], 2)
    assert notify_field(second, 2) == "High threat blocked: PathTraversal"
    assert notify_field(second, 0) == "KindlyGuard Monitor"
    assert notify_field(second, 1) == ""
    assert notify_field(second, 3).endswith('"not an argument"')


def test_a_whole_call_that_cannot_be_read_is_said_not_skipped():
    # a Notify call followed by another message was written in full: not readable is an error
    broken = MONITOR_OUTPUT.replace("   uint32 0\n", "   int64 0\n")
    with pytest.raises(AssertionError, match="cannot be read"):
        notify_blocks(broken)
