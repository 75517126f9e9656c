"""What build.spec needs beyond PyInstaller itself: the app's identity, which
Qt files a tray app keeps, the system libraries a Linux bundle leaves to the
system, the Windows version resource, and the bundle's size budget.

Plain Python (no PyInstaller import at module level), so the tests and the
packaging scripts use the same rules as the spec:

    python packaging/freeze.py check dist/kgmon      # budget + required files
    python packaging/freeze.py version               # the app's version
    python packaging/freeze.py winversion OUT.txt    # PyInstaller version file
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --- identity: one place, used by the spec, the .deb, the metainfo checks, the workflow
APP_NAME = "KindlyGuard Monitor"
EXE_NAME = "kgmon"                       # the executable, /usr/bin/kgmon, the onedir's name
PACKAGE_NAME = "kindlyguard-monitor"     # the .deb, /opt/kindlyguard-monitor, the icon name
DESKTOP_ID = "kindlyguard-monitor"       # the .desktop file (QGuiApplication.setDesktopFileName)
APPSTREAM_ID = "com.kindlyguard.Monitor"  # AppStream component id and macOS bundle identifier
WINDOWS_APP_ID = "KindlyGuard.Monitor"   # AppUserModelID (kindlyguard_monitor/platform_integration.py)
ORGANIZATION = "KindlyGuard"
SUMMARY = "See the threats KindlyGuard Shield finds, the moment it finds them"

# --- budgets (MiB): the build fails past these (issue 6)
ONEDIR_BUDGET_MIB = 110  # the Linux onedir, unpacked (measured: docs/packaging.md)
DEB_BUDGET_MIB = 35      # the .deb download
# macOS and Windows have not been measured here (no such machine): ceilings that
# catch a runaway bundle (a PySide6 metapackage, WebEngine) until the first release
# run gives real figures to tighten them to.
OTHER_BUDGETS_MIB = {"darwin": 300, "win32": 250}


def budget_mib(platform: str = sys.platform) -> int:
    return ONEDIR_BUDGET_MIB if platform.startswith("linux") else OTHER_BUDGETS_MIB.get(platform, ONEDIR_BUDGET_MIB)


def version() -> str:
    """kindlyguard_monitor.__version__, read without importing the app."""
    text = (ROOT / "kindlyguard_monitor" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not m:
        raise SystemExit("freeze: no __version__ in kindlyguard_monitor/__init__.py")
    return m.group(1)


def version_tuple(v: str | None = None) -> tuple[int, int, int, int]:
    """"0.1.0" -> (0, 1, 0, 0); a suffix such as rc1 or .dev2 is dropped (Windows wants 4 numbers)."""
    nums = [int(re.match(r"\d+", part).group()) if re.match(r"\d+", part) else 0
            for part in (v or version()).split(".")[:4]]
    return tuple((nums + [0, 0, 0, 0])[:4])  # type: ignore[return-value]


# --- which Qt files a tray app keeps
# Plugin families (folder names under Qt/plugins) and, inside each, the plugins kept.
# Everything not listed is dropped. "*" keeps the family whole.
QT_PLUGINS = {
    # xcb: X11 and XWayland (a tray app on Wayland runs fine through XWayland, and
    # the tray itself is StatusNotifierItem over D-Bus either way); offscreen and
    # minimal: headless use and tests; cocoa/windows: the other platforms.
    "platforms": ["*qxcb*", "*qoffscreen*", "*qminimal.*", "*qminimal.so", "*qcocoa*", "*qwindows*",
                  "*qwayland*"],
    "imageformats": ["*qsvg*", "*qico*"],   # PNG is built into QtGui; the icons are SVG
    "iconengines": ["*qsvgicon*"],          # QIcon(file.svg) renders through this engine
    "platforminputcontexts": ["*compose*", "*ibus*"],  # typing in the search field (dead keys, IMEs)
    "platformthemes": ["*xdgdesktopportal*"],  # not gtk3: it pulls GTK from the system into the bundle
    "styles": ["*"],                        # macOS / Windows native styles
    "xcbglintegrations": ["*"],
    "wayland-decoration-client": ["*"],
    "wayland-graphics-integration-client": ["*"],
    "wayland-shell-integration": ["*"],
}
WAYLAND_FAMILIES = ("wayland-decoration-client", "wayland-graphics-integration-client", "wayland-shell-integration")
# Whether the native Wayland platform is kept (+ libQt6WaylandClient and its plugins).
# Off: the app runs on XWayland under a Wayland session (see docs/packaging.md).
KEEP_WAYLAND = False


def _parts(dest: str) -> list[str]:
    return dest.replace("\\", "/").split("/")


def qt_file_kept(dest: str) -> bool:
    """Whether a collected file (its path inside the bundle) is kept: Qt translations
    and plugins outside QT_PLUGINS are dropped; everything else is kept here (the
    libraries nothing links to any more go in `unlinked`)."""
    parts = _parts(dest)
    if "PySide6" not in parts:
        return True
    rest = parts[parts.index("PySide6") + 1:]
    if rest[:1] == ["Qt"]:
        rest = rest[1:]
    if rest[:1] == ["translations"]:
        return False
    if rest[:1] == ["plugins"] and len(rest) >= 3:
        family, name = rest[1], rest[-1]
        if family in WAYLAND_FAMILIES and not KEEP_WAYLAND:
            return False
        if family == "platforms" and "qwayland" in name and not KEEP_WAYLAND:
            return False
        return any(fnmatch.fnmatch(name, pattern) for pattern in QT_PLUGINS.get(family, []))
    if rest[:1] in (["qml"], ["resources"]):
        return False  # QML modules and WebEngine's resources: the app uses neither
    return True


# System libraries a Linux bundle does not carry: the graphics and desktop stack
# must match the running system (Mesa, the X server, fontconfig's configuration
# format, the D-Bus daemon); the .deb declares their packages instead
# (`linux_depends`). PyInstaller already leaves out glibc, libGL/libEGL,
# libxcb.so.1 and libwayland-*.
LINUX_SYSTEM_LIBS = [
    "libxcb*.so*", "libX11*.so*", "libXau.so*", "libXdmcp.so*", "libXext.so*", "libXrender.so*",
    "libxkbcommon*.so*", "libfontconfig.so*", "libfreetype.so*", "libexpat.so*", "libdbus-1.so*",
    "libglib-2.0.so*", "libgthread-2.0.so*", "libgobject-2.0.so*", "libgio-2.0.so*", "libgmodule-2.0.so*",
    "libpng16.so*", "libbrotli*.so*", "libbz2.so*", "libz.so*", "libharfbuzz.so*", "libgraphite2.so*",
    "libpcre2-*.so*", "libffi.so*", "libuuid.so*", "libsystemd.so*", "libcap.so*", "libgcrypt.so*",
    "libgpg-error.so*", "liblzma.so*", "libzstd.so*", "liblz4.so*", "libmd.so*", "libbsd.so*",
    "libselinux.so*", "libmount.so*", "libblkid.so*", "libGLdispatch.so*", "libGLX.so*", "libOpenGL.so*",
    "libgcc_s.so*", "libstdc++.so*",
    # Kerberos (QtNetwork's Negotiate authentication links it)
    "libgssapi_krb5.so*", "libkrb5.so*", "libk5crypto.so*", "libkrb5support.so*", "libcom_err.so*",
    "libkeyutils.so*",
]

# The Debian packages the .deb always depends on: what Qt 6's xcb platform and
# the app load (the same list as packaging/system-deps.sh's run-time packages).
# More are added from the bundle's own links (build-linux.sh: dpkg -S).
LINUX_DEPENDS = [
    "libegl1", "libgl1", "libfontconfig1", "libfreetype6", "libxkbcommon0", "libxkbcommon-x11-0",
    "libdbus-1-3", "libglib2.0-0", "libx11-6", "libx11-xcb1", "libxcb1",
    "libxcb-cursor0", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1", "libxcb-randr0",
    "libxcb-render-util0", "libxcb-render0", "libxcb-shape0", "libxcb-shm0", "libxcb-sync1",
    "libxcb-xfixes0", "libxcb-xkb1", "libxcb-util1", "libgssapi-krb5-2",
]


def is_linux_system_lib(dest: str) -> bool:
    name = _parts(dest)[-1]
    return any(fnmatch.fnmatch(name, p) for p in LINUX_SYSTEM_LIBS)


def trim(analysis, platform: str = sys.platform) -> dict:
    """Filter a PyInstaller Analysis in place: Qt translations, unused plugins,
    QML; on Linux the system libraries above; then every library that nothing
    kept links to any more. Returns what was dropped, by reason (for the log)."""
    dropped: dict[str, list[str]] = {"qt": [], "system": [], "unlinked": []}

    def keep(entry) -> bool:
        dest = entry[0]
        if not qt_file_kept(dest):
            dropped["qt"].append(dest)
            return False
        if platform.startswith("linux") and entry[2] == "BINARY" and is_linux_system_lib(dest):
            dropped["system"].append(dest)
            return False
        return True

    analysis.binaries = type(analysis.binaries)([e for e in analysis.binaries if keep(e)])
    analysis.datas = type(analysis.datas)([e for e in analysis.datas if keep(e)])
    gone = unlinked(analysis.binaries)
    dropped["unlinked"] = sorted(gone)
    analysis.binaries = type(analysis.binaries)([e for e in analysis.binaries if e[0] not in gone])
    # PyInstaller's links to libraries moved elsewhere in the bundle: drop those left pointing at nothing
    kept = {_norm(e[0]) for e in (*analysis.binaries, *analysis.datas) if e[2] != "SYMLINK"}
    for attr in ("binaries", "datas"):  # PyInstaller files its SYMLINK entries under datas
        toc = getattr(analysis, attr)
        dangling = [e for e in toc if e[2] == "SYMLINK"
                    and _norm(os.path.join(os.path.dirname(e[0]), e[1])) not in kept]
        dropped["unlinked"] += [e[0] for e in dangling]
        setattr(analysis, attr, type(toc)([e for e in toc if e not in dangling]))
    return dropped


def _norm(dest: str) -> str:
    return os.path.normpath(dest.replace("\\", "/")).replace("\\", "/")


def unlinked(binaries) -> set[str]:
    """The shared libraries in `binaries` that no other kept binary links to
    (extension modules and Qt plugins are roots: Python and Qt load them by
    name). PyInstaller's own link reader, so it works for ELF, Mach-O and PE."""
    from PyInstaller.depend import bindepend

    by_name: dict[str, str] = {}
    roots, libs = [], {}
    for dest, src, kind in binaries:
        if kind == "SYMLINK":  # a link to a library elsewhere in the bundle: judged by its target
            continue
        parts = _parts(dest)
        name = parts[-1]
        is_plugin = "plugins" in parts
        is_extension = kind == "EXTENSION" or ".cpython-" in name or name.endswith((".pyd", ".abi3.so"))
        if is_plugin or is_extension or not _looks_like_library(name):
            roots.append((dest, src))
        else:
            libs[dest] = src
            by_name.setdefault(name.lower(), dest)
    needed: set[str] = set()
    todo = [src for _, src in roots]
    seen: set[str] = set()
    while todo:
        src = todo.pop()
        if src in seen or not os.path.exists(src):
            continue
        seen.add(src)
        try:
            imports = bindepend.get_imports(src)
        except Exception:  # unreadable: keep everything it might need
            return set()
        for ref, path in imports:
            dest = by_name.get(os.path.basename(ref).lower())
            if dest is not None and dest not in needed:
                needed.add(dest)
                todo.append(libs[dest])
    return {d for d in libs if d not in needed and not _always_kept(d)}


def _looks_like_library(name: str) -> bool:
    n = name.lower()
    return ".so" in n or n.endswith((".dll", ".dylib")) or "." not in n  # macOS frameworks: "QtCore"


def _always_kept(dest: str) -> bool:
    """libpython (loaded by the bootloader, not linked) and its Windows helpers."""
    name = _parts(dest)[-1].lower()
    return name.startswith(("libpython", "python3", "python", "vcruntime", "msvcp", "ucrtbase", "api-ms-"))


# --- Windows version resource

def windows_version_info(v: str | None = None) -> str:
    """The text of a PyInstaller version file (a VSVersionInfo expression) for kindlyguard_monitor.__version__."""
    v = v or version()
    nums = version_tuple(v)
    strings = {
        "CompanyName": ORGANIZATION,
        "FileDescription": APP_NAME,
        "FileVersion": v,
        "InternalName": EXE_NAME,
        "LegalCopyright": f"© {ORGANIZATION}",
        "OriginalFilename": f"{EXE_NAME}.exe",
        "ProductName": APP_NAME,
        "ProductVersion": v,
    }
    table = ",\n          ".join(f"StringStruct({k!r}, {val!r})" for k, val in strings.items())
    return f"""# UTF-8: generated by packaging/freeze.py from kindlyguard_monitor.__version__; do not edit
VSVersionInfo(
  ffi=FixedFileInfo(filevers={nums}, prodvers={nums}, mask=0x3f, flags=0x0, OS=0x40004,
                    fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
          {table}])]),
    VarFileInfo([VarStruct('Translation', [0x0409, 1200])])
  ]
)
"""


# --- the bundle's check: the build fails past the budget or with a part missing

def tree_size(path: Path) -> int:
    """Bytes in the files under path (symlinks counted once, as links)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def required_files(platform: str = sys.platform) -> dict[str, list[str]]:
    """What a working bundle must hold (glob patterns under its _internal folder)."""
    if platform.startswith("linux"):
        return {
            "the ring extension kindlyguard_monitor._ring": ["kindlyguard_monitor/_ring.*.so", "kindlyguard_monitor/_ring.abi3.so"],
            "Qt's xcb platform plugin": ["PySide6/Qt/plugins/platforms/libqxcb.so"],
            "Qt's offscreen platform plugin": ["PySide6/Qt/plugins/platforms/libqoffscreen.so"],
            "Qt's SVG image format plugin": ["PySide6/Qt/plugins/imageformats/libqsvg.so"],
            "Qt's SVG icon engine": ["PySide6/Qt/plugins/iconengines/libqsvgicon.so"],
            "Qt's xcb library": ["PySide6/Qt/lib/libQt6XcbQpa.so.6"],
            "the app's icons": ["resources/icons/kindlyguard.svg"],
        }
    if platform == "darwin":
        return {
            "the ring extension kindlyguard_monitor._ring": ["kindlyguard_monitor/_ring.*.so"],
            "Qt's cocoa platform plugin": ["PySide6/Qt/plugins/platforms/libqcocoa.dylib"],
            "Qt's SVG image format plugin": ["PySide6/Qt/plugins/imageformats/libqsvg.dylib"],
            "the app's icons": ["resources/icons/kindlyguard.svg"],
        }
    return {
        "the ring extension kindlyguard_monitor._ring": ["kindlyguard_monitor/_ring.*.pyd"],
        "Qt's windows platform plugin": ["PySide6/plugins/platforms/qwindows.dll"],
        "Qt's SVG image format plugin": ["PySide6/plugins/imageformats/qsvg.dll"],
        "the app's icons": ["resources/icons/kindlyguard.svg"],
    }


def forbidden_files() -> dict[str, list[str]]:
    """What must not be in the bundle (would mean the trimming stopped working)."""
    return {
        "Qt translations": ["PySide6/Qt/translations/*"],
        "QML / Quick": ["PySide6/Qt/lib/libQt6Qml.so*", "PySide6/Qt/lib/libQt6Quick.so*", "PySide6/Qt/qml/*"],
        "WebEngine": ["PySide6/Qt/lib/libQt6WebEngine*"],
        "GTK (from the gtk3 platform theme)": ["libgtk-3.so*"],
        "the virtual keyboard": ["PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so"],
    }


def check_bundle(onedir: Path, budget: float | None = None, platform: str = sys.platform) -> list[str]:
    """Problems with a built onedir (empty: fine). Looks under <onedir>/_internal
    (macOS .app: Contents/Frameworks and Contents/Resources)."""
    onedir = Path(onedir)
    budget = budget_mib(platform) if budget is None else budget
    problems = []
    if not onedir.is_dir():
        return [f"{onedir} is not a folder"]
    roots = [onedir / "_internal", onedir / "Contents" / "Frameworks", onedir / "Contents" / "Resources"]
    roots = [r for r in roots if r.is_dir()] or [onedir]
    size = tree_size(onedir)
    if size > budget * 2**20:
        problems.append(f"the bundle is {size / 2**20:.1f} MiB, over its budget of {budget} MiB "
                        "(packaging/freeze.py budget_mib; trim it, or raise the budget on purpose)")
    for what, patterns in required_files(platform).items():
        if not any(list(r.glob(p)) for r in roots for p in patterns):
            problems.append(f"{what} is missing ({' or '.join(patterns)})")
    dangling = [str(p.relative_to(onedir)) for p in onedir.rglob("*") if p.is_symlink() and not p.exists()]
    if dangling:
        problems.append(f"links to nothing in the bundle: {', '.join(sorted(dangling)[:5])}")
    for what, patterns in forbidden_files().items():
        found = [str(f.relative_to(onedir)) for r in roots for p in patterns for f in r.glob(p)]
        if found:
            problems.append(f"{what} should not be in the bundle: {', '.join(found[:3])}")
    return problems


def _main(argv: list[str]) -> int:
    if argv[:1] == ["version"]:
        print(version())
        return 0
    if argv[:1] == ["winversion"] and len(argv) == 2:
        Path(argv[1]).parent.mkdir(parents=True, exist_ok=True)
        Path(argv[1]).write_text(windows_version_info(), encoding="utf-8")
        return 0
    if argv[:1] == ["check"] and len(argv) in (2, 3):
        budget = float(argv[2]) if len(argv) == 3 else budget_mib()
        problems = check_bundle(Path(argv[1]), budget)
        size = tree_size(Path(argv[1])) / 2**20 if Path(argv[1]).is_dir() else 0
        for p in problems:
            print(f"freeze check: {p}", file=sys.stderr)
        print(f"freeze check: {argv[1]}: {size:.1f} MiB (budget {budget} MiB): "
              + ("FAILED" if problems else "ok"), file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
