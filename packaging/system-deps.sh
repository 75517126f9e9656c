#!/usr/bin/env bash
# Debian packages the app and its tests need beyond Python: Qt's runtime
# libraries (the offscreen and xcb platforms); with --test also the throw-away
# desktop the end-to-end tests run on (tests/desktop.py: Xvfb, a D-Bus bus, a
# StatusNotifierItem host, an XEmbed tray, the dunst notification server).
# Installs what is missing when run as root with apt-get; otherwise prints the
# command to run. Idempotent.
set -euo pipefail
packages=(libegl1 libgl1 libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3
          libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
          libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 fonts-dejavu-core)
if [ "${1:-}" = --test ]; then
  packages+=(xvfb dbus xdotool dunst x11-utils
             haskell-status-notifier-item-utils haskell-gtk-sni-tray-utils trayer
             dpkg-dev binutils xz-utils desktop-file-utils appstream nsis gcc-mingw-w64-x86-64 wine64)
fi
command -v dpkg-query >/dev/null || { echo "system-deps: not a Debian system; install Qt 6's runtime libraries yourself" >&2; exit 0; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "system-deps: installing ${missing[*]}" >&2
  log=$(mktemp)
  apt-get update -qq >"$log" 2>&1 || true
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
else
  echo "system-deps: missing ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
fi
