"""The app's settings: every key in one place, typed accessors over QSettings.

Invalid stored values (wrong type, out of range, garbage strings) read as the
default; nothing here raises on bad stored data.
"""

from __future__ import annotations

import json
import math
import os

from PySide6.QtCore import QSettings

from kindlyguard_monitor.vocabulary import DEFAULT_FEED_SIZE, DEFAULT_SPIN_US

ORGANIZATION = "KindlyGuard"
APPLICATION = "KindlyGuard Monitor"

# Every settings key, in one place.
KEY_RING_PATH = "ring/path"
KEY_WS_URL = "transport/ws_url"
KEY_NOTIFY_THRESHOLD = "notify/threshold"
KEY_NOTIFY_INTERVAL = "notify/min_interval_s"
KEY_THEME = "appearance/theme"
KEY_SPIN_US = "reader/spin_us"
KEY_FEED_SIZE = "feed/size"
KEY_START_AT_LOGIN = "app/start_at_login"
KEY_MUTED_SOURCES = "notify/muted_sources"
# Forwarding this machine's threats to the fleet (issue 16): the URL and the *paths* of a NATS
# creds file or NKey seed file and of a TLS CA file (`kgmon forward`'s --creds, --nkey, --ca);
# never a secret itself (a URL with user:password@ is refused by the dialog).
KEY_FORWARD = "fleet/forward"
KEY_FORWARD_URL = "fleet/nats_url"
KEY_FORWARD_CREDS = "fleet/creds_file"
KEY_FORWARD_NKEY = "fleet/nkey_file"
KEY_FORWARD_CA = "fleet/ca_file"
MAX_MUTED_SOURCES = 500
MAX_MUTED_SOURCE_LEN = 4096  # a longer (hostile) source is muted for this session only

ALL_KEYS = (KEY_RING_PATH, KEY_WS_URL, KEY_NOTIFY_THRESHOLD, KEY_SPIN_US, KEY_FEED_SIZE, KEY_START_AT_LOGIN,
            KEY_NOTIFY_INTERVAL, KEY_THEME)

# Defaults and ranges.
DEFAULT_RING_PATH = ""  # "" = the platform default (kindlyguard_monitor.ring.paths.default_ring_path)
DEFAULT_WS_URL = ""  # "" = the built-in default
THRESHOLD_MIN, THRESHOLD_MAX, DEFAULT_NOTIFY_THRESHOLD = 1, 4, 3  # 1 Low .. 4 Critical; 3 High
# seconds between two notifications at least: 20 s is three a minute at most
INTERVAL_MIN, INTERVAL_MAX, DEFAULT_NOTIFY_INTERVAL = 3, 3600, 20
SPIN_US_MIN, SPIN_US_MAX = 0.0, 1000.0  # DEFAULT_SPIN_US: kindlyguard_monitor.vocabulary
FEED_SIZE_MIN, FEED_SIZE_MAX = 100, 1_000_000  # DEFAULT_FEED_SIZE: kindlyguard_monitor.vocabulary
DEFAULT_START_AT_LOGIN = False
THEMES, DEFAULT_THEME = ("system", "light", "dark"), "system"  # system: follow the desktop's colour scheme

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _to_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            return None
    return None


def _to_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _to_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0 if value in (0, 1) else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


class Settings:
    """Typed access to the app's settings. Pass `qsettings` to use another store (tests)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._qs = qsettings if qsettings is not None else QSettings(ORGANIZATION, APPLICATION)

    @property
    def qsettings(self) -> QSettings:
        return self._qs

    def _raw(self, key: str) -> object:
        try:
            return self._qs.value(key, None)
        except Exception:  # a broken store reads as "not set"
            return None

    def _str(self, key: str, default: str) -> str:
        value = self._raw(key)
        if isinstance(value, str) and "\x00" not in value:
            return value.strip()
        return default

    def _int(self, key: str, default: int, lo: int, hi: int) -> int:
        value = _to_int(self._raw(key))
        return value if value is not None and lo <= value <= hi else default

    def _float(self, key: str, default: float, lo: float, hi: float) -> float:
        value = _to_float(self._raw(key))
        return value if value is not None and lo <= value <= hi else default

    def sync(self) -> None:
        """Write the settings; the file readable by its owner only (0600): it names where the NATS
        credentials are and which sources are muted, nobody else's business."""
        self._qs.sync()
        name = self._qs.fileName()
        try:  # (on Windows the native store is the registry: no file)
            if name and os.path.isfile(name) and os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except OSError:
            pass

    # forward: "Forward threats to a NATS server" (on: the app runs the forwarder from its history)
    @property
    def forward(self) -> bool:
        return bool(_to_bool(self._raw(KEY_FORWARD)))

    @forward.setter
    def forward(self, value: bool) -> None:
        self._qs.setValue(KEY_FORWARD, bool(value))

    @property
    def forward_url(self) -> str:
        return self._str(KEY_FORWARD_URL, "")

    @forward_url.setter
    def forward_url(self, value: str) -> None:
        self._qs.setValue(KEY_FORWARD_URL, str(value or "").strip())

    @property
    def forward_creds(self) -> str:
        """The path of a NATS creds file ("" none): the file stays where it is, never read into settings."""
        return self._str(KEY_FORWARD_CREDS, "")

    @forward_creds.setter
    def forward_creds(self, value: str) -> None:
        self._qs.setValue(KEY_FORWARD_CREDS, str(value or "").strip())

    @property
    def forward_nkey(self) -> str:
        """The path of an NKey seed file ("" none): named here, read only by the NATS client."""
        return self._str(KEY_FORWARD_NKEY, "")

    @forward_nkey.setter
    def forward_nkey(self, value: str) -> None:
        self._qs.setValue(KEY_FORWARD_NKEY, str(value or "").strip())

    @property
    def forward_ca(self) -> str:
        """The path of the CA file the NATS server's TLS certificate is checked against ("": the system's)."""
        return self._str(KEY_FORWARD_CA, "")

    @forward_ca.setter
    def forward_ca(self, value: str) -> None:
        self._qs.setValue(KEY_FORWARD_CA, str(value or "").strip())

    # ring_path
    @property
    def ring_path(self) -> str:
        return self._str(KEY_RING_PATH, DEFAULT_RING_PATH)

    @ring_path.setter
    def ring_path(self, value: str) -> None:
        self._qs.setValue(KEY_RING_PATH, str(value or "").strip())

    # ws_url
    @property
    def ws_url(self) -> str:
        return self._str(KEY_WS_URL, DEFAULT_WS_URL)

    @ws_url.setter
    def ws_url(self, value: str) -> None:
        self._qs.setValue(KEY_WS_URL, str(value or "").strip())

    # notify_threshold
    @property
    def notify_threshold(self) -> int:
        return self._int(KEY_NOTIFY_THRESHOLD, DEFAULT_NOTIFY_THRESHOLD, THRESHOLD_MIN, THRESHOLD_MAX)

    @notify_threshold.setter
    def notify_threshold(self, value: int) -> None:
        value = int(value)
        if not THRESHOLD_MIN <= value <= THRESHOLD_MAX:
            raise ValueError(f"notify_threshold must be {THRESHOLD_MIN}..{THRESHOLD_MAX}, not {value}")
        self._qs.setValue(KEY_NOTIFY_THRESHOLD, value)

    # notify_interval_s: at most one notification per this many seconds (the rest merged)
    @property
    def notify_interval_s(self) -> int:
        return self._int(KEY_NOTIFY_INTERVAL, DEFAULT_NOTIFY_INTERVAL, INTERVAL_MIN, INTERVAL_MAX)

    @notify_interval_s.setter
    def notify_interval_s(self, value: int) -> None:
        value = int(value)
        if not INTERVAL_MIN <= value <= INTERVAL_MAX:
            raise ValueError(f"notify_interval_s must be {INTERVAL_MIN}..{INTERVAL_MAX}, not {value}")
        self._qs.setValue(KEY_NOTIFY_INTERVAL, value)

    # theme: "system", "light" or "dark"
    @property
    def theme(self) -> str:
        value = self._str(KEY_THEME, DEFAULT_THEME).lower()
        return value if value in THEMES else DEFAULT_THEME

    @theme.setter
    def theme(self, value: str) -> None:
        value = str(value).strip().lower()
        if value not in THEMES:
            raise ValueError(f"theme must be one of {', '.join(THEMES)}, not {value!r}")
        self._qs.setValue(KEY_THEME, value)

    # spin_us
    @property
    def spin_us(self) -> float:
        return self._float(KEY_SPIN_US, DEFAULT_SPIN_US, SPIN_US_MIN, SPIN_US_MAX)

    @spin_us.setter
    def spin_us(self, value: float) -> None:
        value = float(value)
        if not (math.isfinite(value) and SPIN_US_MIN <= value <= SPIN_US_MAX):
            raise ValueError(f"spin_us must be {SPIN_US_MIN}..{SPIN_US_MAX}, not {value}")
        self._qs.setValue(KEY_SPIN_US, value)

    # muted_sources: sources whose threats never notify (still shown and stored)
    @property
    def muted_sources(self) -> list[str]:
        try:
            value = json.loads(self._str(KEY_MUTED_SOURCES, "[]"))
        except ValueError:
            return []
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str)][:MAX_MUTED_SOURCES]

    @muted_sources.setter
    def muted_sources(self, sources) -> None:
        kept = sorted({str(s) for s in sources if len(str(s)) <= MAX_MUTED_SOURCE_LEN})[:MAX_MUTED_SOURCES]
        self._qs.setValue(KEY_MUTED_SOURCES, json.dumps(kept))

    # feed_size
    @property
    def feed_size(self) -> int:
        return self._int(KEY_FEED_SIZE, DEFAULT_FEED_SIZE, FEED_SIZE_MIN, FEED_SIZE_MAX)

    @feed_size.setter
    def feed_size(self, value: int) -> None:
        value = int(value)
        if not FEED_SIZE_MIN <= value <= FEED_SIZE_MAX:
            raise ValueError(f"feed_size must be {FEED_SIZE_MIN}..{FEED_SIZE_MAX}, not {value}")
        self._qs.setValue(KEY_FEED_SIZE, value)

    # start_at_login
    @property
    def start_at_login(self) -> bool:
        value = _to_bool(self._raw(KEY_START_AT_LOGIN))
        return DEFAULT_START_AT_LOGIN if value is None else value

    @start_at_login.setter
    def start_at_login(self, value: bool) -> None:
        self._qs.setValue(KEY_START_AT_LOGIN, bool(value))
