"""Finding the app's icons, wherever the app runs from.

One lookup, the same for every way of running the app. The resources folder is
the first of these that holds an `icons/` folder:

1. `$KINDLYGUARD_RESOURCES` (an override: packagers, tests);
2. the package's own `resources/` (importlib.resources): an installed wheel or
   `pip install .`, where setup.py ships resources/icons as package data;
3. `<repo>/resources`: the source tree (two levels up from `kindlyguard_monitor/gui/`), which
   an editable install (`make install`) reads;
4. `sys._MEIPASS/resources`: a PyInstaller bundle (add
   `datas=[("resources", "resources")]` to the spec).

QIcon reads SVG through Qt's `qsvg` image-format plugin, which
PySide6-Essentials ships; a PyInstaller bundle must keep
`PySide6/Qt/plugins/imageformats/libqsvg*`.
"""

from __future__ import annotations

import importlib.resources
import os
import sys
from pathlib import Path

from kindlyguard_monitor.vocabulary import ENV_RESOURCES as ENV_VAR

_GUI_DIR = Path(__file__).resolve().parent
_PACKAGE_DIR = _GUI_DIR.parent
_PACKAGE = __name__.split(".")[0]


def _package_data() -> Path | None:
    """The installed package's resources/ folder, when it is a real folder."""
    try:
        data = importlib.resources.files(_PACKAGE) / "resources"
    except (ModuleNotFoundError, TypeError):
        return None
    return data if isinstance(data, Path) else None


def resource_dirs() -> list[Path]:
    """The candidate resource folders, in lookup order."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env))
    package_data = _package_data()
    if package_data is not None:
        dirs.append(package_data)
    dirs.append(_PACKAGE_DIR.parent / "resources")
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        dirs.append(Path(meipass) / "resources")
    return dirs


def resources_dir() -> Path:
    """The first candidate folder that has an `icons/` folder."""
    dirs = resource_dirs()
    for d in dirs:
        if (d / "icons").is_dir():
            return d
    raise FileNotFoundError(
        "KindlyGuard Monitor's resources were not found; looked in: "
        + ", ".join(str(d) for d in dirs)
        + f". Set {ENV_VAR} to the folder that holds icons/."
    )


def icon_path(name: str) -> Path:
    """Path of icon `name` ("shield-protected" or "shield-protected.svg")."""
    if not name.endswith(".svg"):
        name += ".svg"
    path = resources_dir() / "icons" / name
    if not path.is_file():
        raise FileNotFoundError(f"icon {name!r} is missing from {path.parent}")
    return path


def icon(name: str):
    """QIcon of icon `name` (needs a QGuiApplication for pixmaps)."""
    from PySide6.QtGui import QIcon

    return QIcon(str(icon_path(name)))
