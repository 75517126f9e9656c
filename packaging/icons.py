"""The app icon for the installers, rendered from resources/icons/kindlyguard.svg.

    python packaging/icons.py            # (re)write the committed icons below
    python packaging/icons.py --check    # exit 1 if a committed icon is missing or stale

--check compares pixels, not bytes: Qt's rasteriser rounds a few antialiased
edge pixels differently on another CPU (a level or two), so an icon matches
when every pixel's channels are within PIXEL_LEVELS of the committed one except
at most OUTLIERS of the pixels, none is off by more than MAX_LEVELS, and the
mean difference is under MEAN_LEVELS.
A different drawing or a colour change moves far more pixels far further
(tests/e2e/test_packaging.py checks both ways).

Writes, from the one SVG (Qt's SVG renderer on the offscreen platform, no
other tool):
  resources/linux/icons/hicolor/NxN/apps/kindlyguard-monitor.png   the .deb / AppDir
  resources/windows/kindlyguard.ico    PNG-compressed entries 16-256 px (Vista and later)
  resources/macos/kindlyguard.icns     PNG entries 16-1024 px (ic04..ic14 types)

.ico and .icns are plain containers of PNGs, written here byte by byte (no
Pillow). The readers (`read_ico`, `read_icns`) are what the tests check them with.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "resources" / "icons" / "kindlyguard.svg"
ICON_NAME = "kindlyguard-monitor"
HICOLOR = ROOT / "resources" / "linux" / "icons" / "hicolor"
ICO = ROOT / "resources" / "windows" / "kindlyguard.ico"
ICNS = ROOT / "resources" / "macos" / "kindlyguard.icns"

LINUX_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 20, 24, 32, 40, 48, 64, 128, 256)
# icns type -> pixel size (the @2x types hold the doubled size)
ICNS_TYPES = {
    b"icp4": 16, b"icp5": 32, b"icp6": 64, b"ic07": 128, b"ic08": 256, b"ic09": 512,
    b"ic10": 1024,  # 512@2x
    b"ic11": 32,    # 16@2x
    b"ic12": 64,    # 32@2x
    b"ic13": 256,   # 128@2x
    b"ic14": 512,   # 256@2x
}


_app = None  # the application object _qt_application() made, kept for the life of the process


def _qt_application():
    """The running Qt application, or a QApplication made once and kept (Qt's fonts and image
    plugins need one). A QApplication, not a QGuiApplication: in a process that shows widgets
    later (the test suite), a QGuiApplication made here would be the only application there can
    be, and the first widget would abort the process."""
    global _app
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        _app = QApplication([sys.argv[0]])
    return QApplication.instance()


def render_png(size: int, svg: Path = SVG) -> bytes:
    """The SVG rendered at size x size, antialiased, as PNG bytes."""
    _qt_application()
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"icons: {svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return png_bytes(image)


def png_bytes(image) -> bytes:
    """A QImage as PNG bytes (render_png; the tests' perturbed icons)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice

    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    return bytes(data)


# The tolerance of --check (see above).
PIXEL_LEVELS = 8      # of 255, per channel (alpha included)
OUTLIERS = 0.005      # fraction of the pixels that may differ by more
MAX_LEVELS = 48       # ... but never by more than this
MEAN_LEVELS = 0.5     # mean absolute difference per channel


def pixels(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, ARGB32 bytes) of a PNG, decoded by Qt."""
    _qt_application()
    from PySide6.QtGui import QImage

    image = QImage()
    if not image.loadFromData(png, "PNG"):
        raise ValueError("not a PNG Qt can read")
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return image.width(), image.height(), bytes(image.constBits())[: image.sizeInBytes()]


def png_difference(expected: bytes, actual: bytes) -> str | None:
    """None when the two PNGs show the same picture within the tolerance, else why not."""
    if expected == actual:
        return None
    w, h, a = pixels(expected)
    w2, h2, b = pixels(actual)
    if (w, h) != (w2, h2):
        return f"{w2}x{h2} instead of {w}x{h}"
    total = far = worst = 0
    pa, pb = memoryview(a).cast("I"), memoryview(b).cast("I")
    for i in (i for i, (x, y) in enumerate(zip(pa, pb)) if x != y):  # only the pixels that differ
        d = [abs(a[j] - b[j]) for j in range(4 * i, 4 * i + 4)]
        total += sum(d)
        worst = max(worst, max(d))
        far += max(d) > PIXEL_LEVELS
    mean = total / len(a)
    if far > OUTLIERS * w * h or worst > MAX_LEVELS or mean > MEAN_LEVELS:
        return (f"{far} of {w * h} pixels differ by more than {PIXEL_LEVELS} levels (up to {worst}), "
                f"mean difference {mean:.2f} levels")
    return None


def file_difference(path: Path, expected: bytes, actual: bytes) -> str | None:
    """Compare two versions of one icon file: a PNG, or each PNG in an .ico / .icns."""
    if expected == actual:
        return None
    if path.suffix == ".png":
        return png_difference(expected, actual)
    read = read_ico if path.suffix == ".ico" else read_icns
    try:
        want, got = read(expected), read(actual)
    except (ValueError, struct.error) as e:
        return f"unreadable: {e}"
    if sorted(want) != sorted(got):
        return f"entries {sorted(got)} instead of {sorted(want)}"
    for key in want:
        why = png_difference(want[key], got[key])
        if why:
            return f"entry {key!r}: {why}"
    return None


def png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", png[16:24])


def write_ico(pngs: dict[int, bytes]) -> bytes:
    """An .ico holding one PNG per size (ICONDIR + ICONDIRENTRY each + the PNGs)."""
    sizes = sorted(pngs)
    out = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    for s in sizes:
        dim = 0 if s >= 256 else s  # 0 means 256
        out += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(pngs[s]), offset)
        offset += len(pngs[s])
    return out + b"".join(pngs[s] for s in sizes)


def read_ico(data: bytes) -> dict[int, bytes]:
    """size -> PNG bytes of an .ico written by write_ico (PNG entries only)."""
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    if reserved != 0 or kind != 1 or count == 0:
        raise ValueError("not an .ico")
    out = {}
    for i in range(count):
        w, h, _c, _r, _planes, _bpp, length, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        png = data[offset:offset + length]
        if png_size(png) != (w or 256, h or 256):
            raise ValueError(f"entry {i}: directory says {w}x{h}, the PNG is {png_size(png)}")
        out[w or 256] = png
    return out


def write_icns(pngs: dict[int, bytes]) -> bytes:
    body = b""
    for kind, size in ICNS_TYPES.items():
        body += kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def read_icns(data: bytes) -> dict[bytes, bytes]:
    """type -> PNG bytes."""
    if data[:4] != b"icns" or struct.unpack(">I", data[4:8])[0] != len(data):
        raise ValueError("not an .icns (or its length is wrong)")
    out, pos = {}, 8
    while pos < len(data):
        kind, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        if length < 8 or pos + length > len(data):
            raise ValueError(f"bad entry {kind!r}")
        out[kind] = data[pos + 8:pos + length]
        pos += length
    return out


def outputs() -> dict[Path, bytes]:
    """Every icon file and the bytes it should hold."""
    sizes = sorted(set(LINUX_SIZES) | set(ICO_SIZES) | set(ICNS_TYPES.values()))
    pngs = {s: render_png(s) for s in sizes}
    files = {HICOLOR / f"{s}x{s}" / "apps" / f"{ICON_NAME}.png": pngs[s] for s in LINUX_SIZES}
    files[ICO] = write_ico({s: pngs[s] for s in ICO_SIZES})
    files[ICNS] = write_icns(pngs)
    return files


def main(argv: list[str]) -> int:
    files = outputs()
    if "--check" in argv:
        stale = []
        for p, data in files.items():
            why = file_difference(p, p.read_bytes(), data) if p.is_file() else "missing"
            if why:
                stale.append(f"{p.relative_to(ROOT)} ({why})")
        if stale:
            print("icons: stale or missing (run python packaging/icons.py): " + "; ".join(stale), file=sys.stderr)
            return 1
        return 0
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"icons: {path.relative_to(ROOT)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
