#!/usr/bin/env bash
# macOS: the .app and the .dmg (on a macOS machine; the release workflow runs it).
#
#   bash packaging/build-macos.sh
#
#   dist/KindlyGuard Monitor.app                          build.spec's BUNDLE (LSUIElement, .icns, version)
#   dist/KindlyGuard-Monitor-<version>-macos-<arch>.dmg   the .app and a link to /Applications
#
# Signing and notarisation happen when their secrets are set (docs/packaging.md):
#   MACOS_SIGN_IDENTITY   "Developer ID Application: ... (TEAMID)" in the keychain
#   MACOS_NOTARY_PROFILE  a `xcrun notarytool store-credentials` profile name
# Signing is inside-out with the hardened runtime: every Mach-O file in the bundle
# (Python extensions, Qt plugins, libpython), then each Qt .framework, then the
# .app; the .dmg is signed, notarised and stapled last. Without the variables the
# .app is left ad-hoc signed (runs here; Gatekeeper warns elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VERSION=$("$PYTHON" packaging/freeze.py version)
APP_NAME=$("$PYTHON" -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print(freeze.APP_NAME)")
APP="dist/$APP_NAME.app"
DMG="dist/KindlyGuard-Monitor-$VERSION-macos-$(uname -m).dmg"
say() { echo "build-macos: $*" >&2; }

say "pyinstaller build.spec ($VERSION)"
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller build.spec
"$PYTHON" packaging/freeze.py check "$APP" "$("$PYTHON" -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print(freeze.budget_mib('darwin'))")"
"$APP/Contents/MacOS/kgmon" --version
/usr/libexec/PlistBuddy -c "Print :LSUIElement" "$APP/Contents/Info.plist" | grep -qx true

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  ENT=packaging/macos/entitlements.plist
  sign() { codesign --force --timestamp --options runtime --entitlements "$ENT" --sign "$MACOS_SIGN_IDENTITY" "$@"; }
  say "signing inside-out as $MACOS_SIGN_IDENTITY"
  # 1. every Mach-O file that is not a framework's main binary, deepest first
  while IFS= read -r -d '' f; do
    if file -b "$f" | grep -q "Mach-O"; then sign "$f"; fi
  done < <(find "$APP/Contents" -type f ! -path "*.framework/Versions/*/[A-Z]*[a-z]" -print0 | sort -rz)
  # 2. the Qt frameworks as wholes, 3. the app
  while IFS= read -r -d '' fw; do sign "$fw"; done < <(find "$APP/Contents" -name "*.framework" -type d -print0)
  sign "$APP"
  codesign --verify --deep --strict --verbose=2 "$APP"
else
  say "MACOS_SIGN_IDENTITY not set: ad-hoc signature only (not for distribution)"
fi

say "the .dmg"
staging=$(mktemp -d)
cp -R "$APP" "$staging/"
ln -s /Applications "$staging/Applications"
rm -f "$DMG"
hdiutil create -volname "$APP_NAME" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$DMG"
rm -rf "$staging"

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$DMG"
  if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
    say "notarising (xcrun notarytool, profile $MACOS_NOTARY_PROFILE)"
    xcrun notarytool submit "$DMG" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
    spctl --assess --type open --context context:primary-signature --verbose=2 "$DMG"
  fi
fi
say "done: $DMG ($(du -h "$DMG" | cut -f1))"
