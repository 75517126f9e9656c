"""What the app tells the operating system about itself, per platform.

- Windows: the AppUserModelID, so the taskbar groups the app's windows under
  its own name and icon and toast notifications carry "KindlyGuard Monitor"
  rather than "python" (the installer's Start-menu shortcut carries the same ID:
  packaging/windows/kindlyguard-monitor.nsi);
- macOS: the Dock icon, hidden by the bundle's LSUIElement (a menu-bar app),
  shown while the window is open.

Each function does nothing (and returns False) on the other platforms, and
never raises: the app runs the same without them. Call set_windows_app_id()
before the first window is created.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

WINDOWS_APP_ID = "KindlyGuard.Monitor"  # also packaging/freeze.py WINDOWS_APP_ID and the installer's shortcut


def set_windows_app_id(app_id: str = WINDOWS_APP_ID, shell32=None) -> bool:
    """SetCurrentProcessExplicitAppUserModelID(app_id) on Windows; False elsewhere
    or when the call fails. `shell32` is for tests (the real one is ctypes.windll.shell32)."""
    if shell32 is None:
        if sys.platform != "win32":
            return False
        try:
            shell32 = ctypes.windll.shell32  # type: ignore[attr-defined]
        except (AttributeError, OSError):
            return False
    try:
        return shell32.SetCurrentProcessExplicitAppUserModelID(ctypes.c_wchar_p(app_id)) == 0  # S_OK
    except (AttributeError, OSError):
        return False


# NSApplicationActivationPolicy
_REGULAR, _ACCESSORY = 0, 1


def set_macos_dock_icon(visible: bool) -> bool:
    """Show (visible=True: NSApplicationActivationPolicyRegular) or hide
    (Accessory, what LSUIElement starts with) the Dock icon. Call it after the
    QApplication exists (Qt has loaded AppKit), e.g. when the window is shown
    and hidden. False on other platforms or if the Objective-C runtime is not there."""
    if sys.platform != "darwin":
        return False
    try:
        objc = ctypes.cdll.LoadLibrary(ctypes.util.find_library("objc") or "libobjc.dylib")
        objc.objc_getClass.restype = ctypes.c_void_p
        objc.objc_getClass.argtypes = [ctypes.c_char_p]
        objc.sel_registerName.restype = ctypes.c_void_p
        objc.sel_registerName.argtypes = [ctypes.c_char_p]
        msg_send = ctypes.cast(objc.objc_msgSend, ctypes.c_void_p).value
        # objc_msgSend must be called through the exact prototype (arm64 has no varargs here)
        get = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(msg_send)
        set_policy = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long)(msg_send)
        cls = objc.objc_getClass(b"NSApplication")
        if not cls:
            return False
        app = get(cls, objc.sel_registerName(b"sharedApplication"))
        if not app:
            return False
        return bool(set_policy(app, objc.sel_registerName(b"setActivationPolicy:"),
                               _REGULAR if visible else _ACCESSORY))
    except (AttributeError, OSError, TypeError, ValueError):
        return False
