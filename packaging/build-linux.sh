#!/usr/bin/env bash
# The Linux installers, in one command (`make dist` runs it):
#
#   dist/kgmon/                                          the PyInstaller onedir (build.spec)
#   dist/AppDir/                                         the AppImage's AppDir (usr/ is the .deb's /usr)
#   dist/kindlyguard-monitor_<version>_<arch>.deb        dpkg-deb, xz: /usr/bin/kgmon, /usr/lib/kindlyguard-monitor/
#   dist/kindlyguard-monitor-<version>-linux-<machine>.tar.gz   the onedir alone
#   dist/linux-artefacts.json                            their sizes (docs/packaging.md)
#
# The release workflow runs this too, then only adds appimagetool on dist/AppDir.
# Fails when the bundle is over its budget (build.spec, packaging/freeze.py) or
# the .deb over its own (DEB_BUDGET_MIB), or when a Linux file does not validate.
#
# Environment: PYTHON (default .venv/bin/python, with .[dist] installed),
# DEB_COMPRESSION (xz, the default, or zstd: larger but built in seconds; xz
# installs everywhere, zstd needs dpkg >= 1.21.18 / Ubuntu 21.10).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
DEB_COMPRESSION=${DEB_COMPRESSION:-xz}
DIST=$ROOT/dist

say() { echo "build-linux: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
freeze() { "$PYTHON" packaging/freeze.py "$@"; }

"$PYTHON" -c "import PyInstaller" 2>/dev/null || fail "PyInstaller is missing: $PYTHON -m pip install -e '.[dist]' (make dist does)"
for tool in dpkg-deb dpkg-shlibdeps desktop-file-validate appstreamcli; do
  command -v "$tool" >/dev/null || fail "$tool is missing (bash packaging/system-deps.sh --test installs it)"
done

VERSION=$(freeze version)
NAME=$("$PYTHON" -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print(freeze.PACKAGE_NAME)")
APPSTREAM_ID=$("$PYTHON" -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print(freeze.APPSTREAM_ID)")
DEB_BUDGET_MIB=$("$PYTHON" -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print(freeze.DEB_BUDGET_MIB)")
ARCH=$(dpkg --print-architecture)
MACHINE=$(uname -m)
start=$(date +%s)

# 0. the committed icons must be the ones the SVG renders to
QT_QPA_PLATFORM=offscreen "$PYTHON" packaging/icons.py --check || fail "run: $PYTHON packaging/icons.py"
desktop-file-validate resources/linux/$NAME.desktop || fail "resources/linux/$NAME.desktop does not validate"
appstreamcli validate --no-net resources/linux/$APPSTREAM_ID.metainfo.xml >/dev/null \
  || { appstreamcli validate --no-net resources/linux/$APPSTREAM_ID.metainfo.xml >&2; fail "the metainfo does not validate"; }

# 1. the onedir (the spec fails the build past its budget or with a part missing)
say "pyinstaller build.spec (kgmon $VERSION)"
rm -rf "$DIST/kgmon"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DIST" --workpath "$ROOT/build/pyinstaller" build.spec
freeze check "$DIST/kgmon"
"$DIST/kgmon/kgmon" --version | grep -qx "kgmon $VERSION" || fail "the frozen kgmon does not say its version"
# kgmon forward needs the NATS client in the bundle: without it, it says the build lacks "the NATS client"
if "$DIST/kgmon/kgmon" forward --nats nats://127.0.0.1:9 --history "$ROOT/build/no-such-history" --once 2>&1 \
    | grep -q "the NATS client"; then
  fail "the bundle lacks the NATS client (nats-py, the dist extra): kgmon forward would not work"
fi

# 2. the AppDir: usr/ is exactly the .deb's /usr
APPDIR=$DIST/AppDir
rm -rf "$APPDIR"
LIBDIR=$APPDIR/usr/lib/$NAME
mkdir -p "$APPDIR/usr/bin" "$APPDIR/usr/share/applications" "$APPDIR/usr/share/metainfo" "$(dirname "$LIBDIR")"
cp -a "$DIST/kgmon" "$LIBDIR"
ln -s "../lib/$NAME/kgmon" "$APPDIR/usr/bin/kgmon"
install -m 0644 resources/linux/$NAME.desktop "$APPDIR/usr/share/applications/$NAME.desktop"
install -m 0644 resources/linux/$APPSTREAM_ID.metainfo.xml "$APPDIR/usr/share/metainfo/$APPSTREAM_ID.metainfo.xml"
cp -r resources/linux/icons "$APPDIR/usr/share/icons"
install -D -m 0644 resources/icons/kindlyguard.svg "$APPDIR/usr/share/icons/hicolor/scalable/apps/$NAME.svg"
find "$APPDIR/usr/share" -type d -exec chmod 0755 {} + ; find "$APPDIR/usr/share" -type f -exec chmod 0644 {} +
# what appimagetool reads at the AppDir's top
ln -s "usr/share/applications/$NAME.desktop" "$APPDIR/$NAME.desktop"
ln -s "usr/share/icons/hicolor/256x256/apps/$NAME.png" "$APPDIR/$NAME.png"
ln -s "$NAME.png" "$APPDIR/.DirIcon"
cat > "$APPDIR/AppRun" <<'EOF'
#!/bin/sh
# AppImage entry: the frozen kgmon (it finds its _internal/ beside itself).
HERE=$(dirname "$(readlink -f "$0")")
exec "$HERE/usr/lib/kindlyguard-monitor/kgmon" "$@"
EOF
chmod 0755 "$APPDIR/AppRun"

# 3. the .deb
DEB_ROOT=$ROOT/build/deb-root
rm -rf "$DEB_ROOT"
mkdir -p "$DEB_ROOT/DEBIAN"
cp -a "$APPDIR/usr" "$DEB_ROOT/usr"
install -D -m 0644 /dev/stdin "$DEB_ROOT/usr/share/doc/$NAME/copyright" <<EOF
KindlyGuard Monitor $VERSION
Copyright: KindlyGuard. Bundles Python, Qt 6 / PySide6 (LGPLv3), psutil, websockets,
msgspec, platformdirs and jeepney under their own licences; see usr/lib/$NAME/_internal.
EOF
say "dpkg-shlibdeps (the system libraries the bundle links to)"
shl=$(mktemp -d)
mkdir "$shl/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" > "$shl/debian/control"
mapfile -t elves < <(find "$DEB_ROOT/usr/lib/$NAME" -type f \( -name '*.so*' -o -name kgmon \) | sort)
libdirs=()
while IFS= read -r d; do libdirs+=("-l$d"); done < <(printf '%s\n' "${elves[@]}" | xargs -n1 dirname | sort -u)
shlibs=$(cd "$shl" && dpkg-shlibdeps -O --ignore-missing-info "${libdirs[@]}" "${elves[@]}" 2>/dev/null) \
  || fail "dpkg-shlibdeps failed"
rm -rf "$shl"
DEPENDS=$("$PYTHON" packaging/debian.py depends "${shlibs#shlibs:Depends=}")
INSTALLED_KIB=$(du -sk --apparent-size "$DEB_ROOT/usr" | cut -f1)
"$PYTHON" packaging/debian.py control --version "$VERSION" --arch "$ARCH" --installed-size "$INSTALLED_KIB" \
  --depends "$DEPENDS" > "$DEB_ROOT/DEBIAN/control"
(cd "$DEB_ROOT" && find usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
DEB=$DIST/${NAME}_${VERSION}_${ARCH}.deb
rm -f "$DIST"/${NAME}_*.deb
say "dpkg-deb -Z$DEB_COMPRESSION"
deb_start=$(date +%s)
dpkg-deb --root-owner-group -Z"$DEB_COMPRESSION" --build "$DEB_ROOT" "$DEB" >/dev/null
deb_seconds=$(( $(date +%s) - deb_start ))
rm -rf "$DEB_ROOT"
deb_bytes=$(stat -c %s "$DEB")
if [ "$deb_bytes" -gt $(( DEB_BUDGET_MIB * 1024 * 1024 )) ]; then
  fail "$(basename "$DEB") is $(( deb_bytes / 1024 / 1024 )) MiB, over its budget of $DEB_BUDGET_MIB MiB (packaging/freeze.py DEB_BUDGET_MIB)"
fi

# 4. the .tar.gz of the onedir
TARBALL=$DIST/$NAME-$VERSION-linux-$MACHINE.tar.gz
rm -f "$DIST"/$NAME-*-linux-*.tar.gz
tar -C "$DIST" --transform "s,^kgmon,$NAME-$VERSION," --owner=0 --group=0 --numeric-owner -czf "$TARBALL" kgmon

# 5. the figures
"$PYTHON" - "$DIST" "$DEB" "$TARBALL" "$INSTALLED_KIB" "$deb_seconds" "$DEB_COMPRESSION" <<'EOF'
import json, os, sys
sys.path.insert(0, "packaging")
import freeze
dist, deb, tarball, installed_kib, deb_seconds, comp = sys.argv[1:]
figures = {
    "version": freeze.version(),
    "onedir_bytes": freeze.tree_size(os.path.join(dist, "kgmon")),
    "deb": os.path.basename(deb), "deb_bytes": os.path.getsize(deb), "deb_compression": comp,
    "deb_build_seconds": int(deb_seconds), "deb_installed_kib": int(installed_kib),
    "tarball": os.path.basename(tarball), "tarball_bytes": os.path.getsize(tarball),
}
with open(os.path.join(dist, "linux-artefacts.json"), "w") as f:
    json.dump(figures, f, indent=2)
mib = lambda n: f"{n / 2**20:.1f} MiB"
print(f"build-linux: onedir {mib(figures['onedir_bytes'])}; {figures['deb']} {mib(figures['deb_bytes'])} "
      f"({comp}, {deb_seconds} s; installed {mib(int(installed_kib) * 1024)}); "
      f"{figures['tarball']} {mib(figures['tarball_bytes'])}", file=sys.stderr)
EOF
say "done in $(( $(date +%s) - start )) s"
