"""Settings (typed QSettings), start at login (autostart), and the Settings dialog."""

from __future__ import annotations

import configparser
import plistlib
import stat
import sys

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QDialog, QDialogButtonBox  # noqa: E402

from kindlyguard_monitor.gui import autostart  # noqa: E402
from kindlyguard_monitor.gui import settings as S  # noqa: E402
from kindlyguard_monitor.gui.settings import Settings  # noqa: E402
from kindlyguard_monitor.gui.settings_dialog import SettingsDialog, validate_ws_url  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    return h


@pytest.fixture
def ini(tmp_path, home):
    return tmp_path / "settings.ini"


@pytest.fixture
def settings(ini):
    return Settings(QSettings(str(ini), QSettings.Format.IniFormat))


def reopen(ini) -> Settings:
    return Settings(QSettings(str(ini), QSettings.Format.IniFormat))


# --- settings ---------------------------------------------------------------------------

def test_defaults(settings):
    assert settings.ring_path == ""
    assert settings.ws_url == ""
    assert settings.notify_threshold == 3
    assert settings.notify_interval_s == 20  # three notifications a minute at most
    assert settings.theme == "system"  # follow the desktop's colour scheme
    assert settings.spin_us == 50.0
    assert settings.feed_size == 10_000
    assert settings.start_at_login is False


def test_keys_defined_once():
    assert len(set(S.ALL_KEYS)) == len(S.ALL_KEYS) == 8


def test_default_store_uses_org_and_app_names():
    qs = Settings().qsettings
    assert qs.organizationName() == "KindlyGuard"
    assert qs.applicationName() == "KindlyGuard Monitor"


@pytest.mark.parametrize("name, value", [
    ("ring_path", "/tmp/some ring/kindly-guard.shm"),
    ("ws_url", "wss://shield.example:9955/ws"),
    ("notify_threshold", 1),
    ("notify_threshold", 4),
    ("notify_interval_s", 3),
    ("notify_interval_s", 3600),
    ("theme", "dark"),
    ("theme", "light"),
    ("theme", "system"),
    ("spin_us", 0.0),
    ("spin_us", 12.5),
    ("spin_us", 1000.0),
    ("feed_size", 100),
    ("feed_size", 1_000_000),
    ("start_at_login", True),
])
def test_round_trip(settings, ini, name, value):
    setattr(settings, name, value)
    settings.sync()
    assert getattr(settings, name) == value
    again = getattr(reopen(ini), name)  # read back from the file, as strings
    assert again == value and type(again) is type(value)


def test_setters_reject_out_of_range(settings):
    for name, bad in [("notify_threshold", 0), ("notify_threshold", 5), ("spin_us", -1),
                      ("notify_interval_s", 2), ("notify_interval_s", 3601),
                      ("spin_us", float("nan")), ("feed_size", 99), ("feed_size", 1_000_001)]:
        with pytest.raises(ValueError):
            setattr(settings, name, bad)


@pytest.mark.parametrize("key, raw", [
    (S.KEY_NOTIFY_THRESHOLD, "banana"), (S.KEY_NOTIFY_THRESHOLD, "0"), (S.KEY_NOTIFY_THRESHOLD, "5"),
    (S.KEY_NOTIFY_THRESHOLD, "2.5"), (S.KEY_NOTIFY_THRESHOLD, ["1", "2"]),
    (S.KEY_THEME, "purple"), (S.KEY_THEME, ["dark"]),
    (S.KEY_NOTIFY_INTERVAL, "soon"), (S.KEY_NOTIFY_INTERVAL, "0"), (S.KEY_NOTIFY_INTERVAL, "1e9"),
    (S.KEY_SPIN_US, "fast"), (S.KEY_SPIN_US, "-1"), (S.KEY_SPIN_US, "1e9"), (S.KEY_SPIN_US, "nan"),
    (S.KEY_SPIN_US, "inf"),
    (S.KEY_FEED_SIZE, "lots"), (S.KEY_FEED_SIZE, "99"), (S.KEY_FEED_SIZE, "99999999999999999999"),
    (S.KEY_START_AT_LOGIN, "maybe"), (S.KEY_START_AT_LOGIN, "2"), (S.KEY_START_AT_LOGIN, ["true"]),
    (S.KEY_RING_PATH, ["a", "b"]), (S.KEY_WS_URL, ["ws://a", "ws://b"]),
])
def test_garbage_reads_as_default(settings, ini, key, raw):
    fresh = Settings(QSettings(str(ini), QSettings.Format.IniFormat))
    expected = {name: getattr(fresh, name) for name in
                ("ring_path", "ws_url", "notify_threshold", "notify_interval_s", "spin_us", "feed_size",
                 "start_at_login", "theme")}
    settings.qsettings.setValue(key, raw)
    settings.sync()
    for s in (settings, reopen(ini)):
        for name, value in expected.items():
            assert getattr(s, name) == value


def test_garbage_ini_file(ini):
    ini.write_bytes(b"[feed]\nsize=\xff\xfe not a number\n[notify]\nthreshold=@Variant(\\0\\0\\0\\x7f)\n"
                    b"[reader]\nspin_us=\n[app]\nstart_at_login=@ByteArray(zz)\n[ring]\npath\n\x00\x01garbage\n")
    s = reopen(ini)
    assert (s.feed_size, s.notify_threshold, s.spin_us, s.start_at_login) == (10_000, 3, 50.0, False)
    assert (s.ring_path, s.ws_url) == ("", "")  # the defaults: the platform's ring, the built-in URL


# --- autostart: Linux -----------------------------------------------------------------------

def read_desktop(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def test_linux_autostart_writes_valid_desktop_file(home):
    path = home / ".config" / "autostart" / "kindlyguard-monitor.desktop"
    assert not autostart.is_enabled(platform="linux")
    autostart.enable(platform="linux")
    assert path.is_file()
    assert autostart.xdg_autostart_path() == path
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & ~0o644 == 0, oct(mode)  # 0644 or stricter
    entry = read_desktop(path)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "KindlyGuard Monitor"
    assert entry["Icon"] == "kindlyguard"
    assert entry["Terminal"] == "false"
    assert entry["X-GNOME-Autostart-enabled"] == "true"
    assert "--hidden" in entry["Exec"]
    assert autostart.parse_exec_value(entry["Exec"]) == [sys.executable, "-m", "kindlyguard_monitor", "--hidden"]
    assert autostart.is_enabled(platform="linux")

    autostart.disable(platform="linux")
    assert not path.exists()
    assert not autostart.is_enabled(platform="linux")
    autostart.disable(platform="linux")  # twice is fine


def test_linux_frozen_command(home, monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert autostart.default_command() == [sys.executable]
    autostart.enable(platform="linux")
    entry = read_desktop(autostart.xdg_autostart_path())
    assert autostart.parse_exec_value(entry["Exec"]) == [sys.executable, "--hidden"]


def test_linux_default_config_home(home, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    autostart.enable(["/opt/kg/kgmon"], platform="linux", home=home)
    assert (home / ".config" / "autostart" / "kindlyguard-monitor.desktop").is_file()


@pytest.mark.parametrize("command", [
    ["/opt/Kindly Guard/bin/kgmon"],
    ['/odd/"quoted" $HOME `x` back\\slash/py', "-m", "kindlyguard_monitor"],
    ["/usr/bin/python3", "50%done", "a;b&c|d", "~", "it's"],
])
def test_exec_quoting_round_trips(home, command):
    autostart.enable(command, platform="linux")
    entry = read_desktop(autostart.xdg_autostart_path())
    value = entry["Exec"]
    assert autostart.parse_exec_value(value) == command + ["--hidden"]
    if " " in command[0]:
        assert value.startswith('"')


def test_exec_rejects_newline(home):
    with pytest.raises(ValueError):
        autostart.enable(["/bin/kg\nX-Evil=1"], platform="linux")
    assert not autostart.xdg_autostart_path().exists()


def test_hidden_entry_reads_disabled(home):
    autostart.enable(platform="linux")
    path = autostart.xdg_autostart_path()
    path.write_text(path.read_text() + "Hidden=true\n")
    assert not autostart.is_enabled(platform="linux")


# --- autostart: macOS (content checked; written, not run on a Mac) -------------------------

def test_macos_launch_agent(tmp_path):
    mac_home = tmp_path / "machome"
    autostart.enable(["/Applications/KindlyGuard Monitor.app/Contents/MacOS/kgmon"], platform="darwin",
                     home=mac_home)
    path = mac_home / "Library" / "LaunchAgents" / "com.kindlyguard.monitor.plist"
    with open(path, "rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "com.kindlyguard.monitor"
    assert plist["RunAtLoad"] is True
    assert plist["ProgramArguments"] == ["/Applications/KindlyGuard Monitor.app/Contents/MacOS/kgmon", "--hidden"]
    assert stat.S_IMODE(path.stat().st_mode) & ~0o644 == 0
    assert autostart.is_enabled(platform="darwin", home=mac_home)
    autostart.disable(platform="darwin", home=mac_home)
    assert not path.exists()
    assert not autostart.is_enabled(platform="darwin", home=mac_home)


# --- autostart: Windows (through a fake winreg) ----------------------------------------------

class FakeWinreg:
    HKEY_CURRENT_USER = "HKCU"
    KEY_READ = 0x20019
    KEY_SET_VALUE = 0x0002
    REG_SZ = 1

    def __init__(self):
        self.keys: dict[tuple, dict] = {}
        self.calls: list[tuple] = []
        self.open_handles = 0

    def CreateKey(self, root, sub):
        self.keys.setdefault((root, sub), {})
        self.open_handles += 1
        return (root, sub)

    def OpenKey(self, root, sub, reserved=0, access=KEY_READ):
        if (root, sub) not in self.keys:
            raise FileNotFoundError(sub)
        self.open_handles += 1
        return (root, sub)

    def CloseKey(self, key):
        self.open_handles -= 1

    def SetValueEx(self, key, name, reserved, kind, value):
        self.calls.append(("SetValueEx", key, name, kind, value))
        self.keys[key][name] = (value, kind)

    def DeleteValue(self, key, name):
        self.calls.append(("DeleteValue", key, name))
        if name not in self.keys[key]:
            raise FileNotFoundError(name)
        del self.keys[key][name]

    def QueryValueEx(self, key, name):
        if name not in self.keys[key]:
            raise FileNotFoundError(name)
        return self.keys[key][name]


def test_windows_run_key():
    reg = FakeWinreg()
    assert not autostart.is_enabled(platform="win32", winreg=reg)
    autostart.disable(platform="win32", winreg=reg)  # no key yet: fine
    autostart.enable([r"C:\Program Files\KindlyGuard\kgmon.exe"], platform="win32", winreg=reg)
    key = ("HKCU", r"Software\Microsoft\Windows\CurrentVersion\Run")
    assert reg.calls == [("SetValueEx", key, "KindlyGuard Monitor", 1,
                          r'"C:\Program Files\KindlyGuard\kgmon.exe" --hidden')]
    assert autostart.is_enabled(platform="win32", winreg=reg)
    autostart.disable(platform="win32", winreg=reg)
    assert reg.calls[-1] == ("DeleteValue", key, "KindlyGuard Monitor")
    assert not autostart.is_enabled(platform="win32", winreg=reg)
    autostart.disable(platform="win32", winreg=reg)  # value gone: fine
    assert reg.open_handles == 0


# --- the dialog --------------------------------------------------------------------------------

class AutostartRecorder:
    def __init__(self):
        self.calls = []

    def __call__(self, on):
        self.calls.append(on)


def make_dialog(qtbot, settings, recorder=None):
    dlg = SettingsDialog(settings, autostart_apply=recorder)
    qtbot.addWidget(dlg)
    dlg.show()
    return dlg


def click(dlg, which):
    dlg.buttons.button(which).click()


def test_dialog_loads_values(qtbot, settings):
    settings.ring_path = "/tmp/r.shm"
    settings.ws_url = "ws://10.0.0.1:9955"
    settings.notify_threshold = 4
    settings.spin_us = 7.5
    settings.feed_size = 2500
    settings.start_at_login = True
    dlg = make_dialog(qtbot, settings, AutostartRecorder())
    assert dlg.ring_path_edit.text() == "/tmp/r.shm"
    assert dlg.ring_path_edit.placeholderText()  # shows the platform default
    assert dlg.ws_url_edit.text() == "ws://10.0.0.1:9955"
    assert dlg.threshold_combo.currentText() == "Critical"
    assert [dlg.threshold_combo.itemText(i) for i in range(4)] == ["Low", "Medium", "High", "Critical"]
    assert dlg.spin_us_spin.value() == 7.5
    assert dlg.feed_size_spin.value() == 2500
    assert dlg.start_at_login_check.isChecked()


@pytest.mark.parametrize("url", ["http://x:1", "localhost:9955", "ws://", "<b>wss</b>://x", "ws://a b"])
def test_dialog_rejects_bad_url(qtbot, settings, url):
    rec = AutostartRecorder()
    dlg = make_dialog(qtbot, settings, rec)
    dlg.ws_url_edit.setText(url)
    click(dlg, QDialogButtonBox.StandardButton.Ok)
    assert dlg.isVisible()
    assert dlg.result() != QDialog.DialogCode.Accepted
    assert dlg.error_text()
    assert not dlg.error_label.isHidden()
    assert dlg.error_label.textFormat() == dlg.error_label.textFormat().PlainText
    assert settings.ws_url == "" and rec.calls == []
    dlg.ws_url_edit.setText("wss://ok")  # editing clears the message
    assert dlg.error_text() == ""


def test_validate_ws_url():
    assert validate_ws_url("") is None
    assert validate_ws_url("ws://127.0.0.1:9955") is None
    assert validate_ws_url("WSS://host/path") is None
    assert validate_ws_url("https://host")


def test_dialog_saves_on_ok(qtbot, settings, ini):
    rec = AutostartRecorder()
    dlg = make_dialog(qtbot, settings, rec)
    dlg.ring_path_edit.setText("  /tmp/other.shm ")
    dlg.ws_url_edit.setText("wss://shield:1")
    dlg.threshold_combo.setCurrentIndex(0)
    dlg.spin_us_spin.setValue(200)
    dlg.feed_size_spin.setValue(500)
    dlg.start_at_login_check.setChecked(True)
    with qtbot.waitSignal(dlg.applied, timeout=2000) as blocker:
        click(dlg, QDialogButtonBox.StandardButton.Ok)
    assert blocker.args == [settings]
    assert dlg.result() == QDialog.DialogCode.Accepted and not dlg.isVisible()
    assert rec.calls == [True]
    s = reopen(ini)
    assert (s.ring_path, s.ws_url, s.notify_threshold, s.spin_us, s.feed_size, s.start_at_login) == (
        "/tmp/other.shm", "wss://shield:1", 1, 200.0, 500, True)


def test_dialog_ok_applies_real_autostart(qtbot, settings, home):
    dlg = make_dialog(qtbot, settings)  # the real autostart.apply, into $XDG_CONFIG_HOME
    dlg.start_at_login_check.setChecked(True)
    click(dlg, QDialogButtonBox.StandardButton.Ok)
    path = home / ".config" / "autostart" / "kindlyguard-monitor.desktop"
    if sys.platform.startswith("linux"):
        assert path.is_file()
    dlg2 = make_dialog(qtbot, settings)
    assert dlg2.start_at_login_check.isChecked()
    dlg2.start_at_login_check.setChecked(False)
    click(dlg2, QDialogButtonBox.StandardButton.Ok)
    assert not path.exists()
    assert settings.start_at_login is False


def test_dialog_autostart_failure_keeps_dialog_open(qtbot, settings):
    def boom(on):
        raise PermissionError("read-only home")

    dlg = make_dialog(qtbot, settings, boom)
    dlg.start_at_login_check.setChecked(True)
    click(dlg, QDialogButtonBox.StandardButton.Ok)
    assert dlg.isVisible() and "read-only home" in dlg.error_text()
    assert settings.start_at_login is False


def test_dialog_cancel_leaves_settings(qtbot, settings, ini):
    settings.feed_size = 3000
    settings.sync()
    before = ini.read_bytes()
    rec = AutostartRecorder()
    dlg = make_dialog(qtbot, settings, rec)
    applied = []
    dlg.applied.connect(applied.append)
    dlg.ws_url_edit.setText("ws://changed")
    dlg.feed_size_spin.setValue(100)
    dlg.start_at_login_check.setChecked(True)
    click(dlg, QDialogButtonBox.StandardButton.Cancel)
    assert dlg.result() == QDialog.DialogCode.Rejected
    assert rec.calls == [] and applied == []
    settings.sync()
    assert ini.read_bytes() == before
    assert reopen(ini).feed_size == 3000 and reopen(ini).ws_url == ""


def test_dialog_loads_and_saves_the_forwarding_files_as_paths(qtbot, settings, ini, tmp_path):
    """The forwarder's CA file and NKey seed file (`kgmon forward --ca/--nkey`): paths in, paths out."""
    ca, seed = tmp_path / "ca.pem", tmp_path / "me.nk"
    ca.write_text("not checked here")
    seed.write_text("SUASECRETSEEDTHATMUSTNOTLEAK\n")
    settings.forward_ca, settings.forward_nkey = str(ca), str(seed)
    dialog = SettingsDialog(settings, autostart_apply=lambda on: None)
    qtbot.addWidget(dialog)
    assert (dialog.forward_ca_edit.text(), dialog.forward_nkey_edit.text()) == (str(ca), str(seed))
    dialog.forward_check.setChecked(True)
    dialog.forward_url_edit.setText("tls://fleet.example:4222")
    dialog.accept()
    assert dialog.error_text() == "" and dialog.result() == QDialog.DialogCode.Accepted
    again = reopen(ini)
    assert (again.forward, again.forward_ca, again.forward_nkey) == (True, str(ca), str(seed))
    assert "SUASECRET" not in ini.read_text() and stat.S_IMODE(ini.stat().st_mode) == 0o600
    dialog2 = SettingsDialog(again, autostart_apply=lambda on: None)
    qtbot.addWidget(dialog2)
    dialog2.forward_nkey_edit.setText(str(tmp_path))
    dialog2.accept()
    assert dialog2.error_text() == f"The NKey seed file {tmp_path} is not a file."
    assert dialog2.result() != QDialog.DialogCode.Accepted
