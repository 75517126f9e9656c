"""The .deb's control file (packaging/build-linux.sh calls this).

    python packaging/debian.py depends "SHLIBS"      the Depends line: dpkg-shlibdeps's
                                                     (versioned) + freeze.LINUX_DEPENDS
    python packaging/debian.py control --version V --arch A --installed-size KIB --depends D
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import freeze  # noqa: E402

# Debian 13 / Ubuntu 24.04 renamed some libraries for the 64-bit time_t
# transition (libfoo -> libfoot64): the old name alone would not install there.
T64_RENAMED = {"libglib2.0-0", "libssl3", "libgssapi-krb5-2"}


def _name(dep: str) -> str:
    return re.split(r"[\s(]", dep.strip(), maxsplit=1)[0]


def depends(shlibs: str, extra: list[str] | None = None) -> str:
    """dpkg-shlibdeps's list (kept as it is: its versions are what the bundle's
    symbols need), plus the packages Qt loads without linking (freeze.LINUX_DEPENDS),
    each once, sorted; renamed t64 libraries get the new name as an alternative."""
    deps: dict[str, str] = {}
    for dep in (d.strip() for d in shlibs.split(",")):
        if dep:
            deps[_name(dep)] = dep
    for name in extra if extra is not None else freeze.LINUX_DEPENDS:
        deps.setdefault(name, name)
    out = []
    for name in sorted(deps):
        dep = deps[name]
        if name in T64_RENAMED and "|" not in dep:
            dep = f"{dep} | {name}t64"
        out.append(dep)
    return ", ".join(out)


def control(version: str, arch: str, installed_kib: int, depends_line: str) -> str:
    description = freeze.SUMMARY
    return (
        f"Package: {freeze.PACKAGE_NAME}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {freeze.ORGANIZATION} <support@kindlyguard.invalid>\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {depends_line}\n"
        "Recommends: hicolor-icon-theme\n"
        "Section: utils\n"
        "Priority: optional\n"
        f"Description: {description}\n"
        " KindlyGuard Monitor sits in the system tray and shows each threat\n"
        " KindlyGuard Shield finds as it finds it, with desktop notifications\n"
        " for the ones that matter and a searchable history.\n"
        " .\n"
        " A self-contained build (Python and Qt 6 inside /usr/lib/kindlyguard-monitor);\n"
        " run it as kgmon, or from the desktop's application menu.\n"
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["depends"] and len(argv) == 2:
        print(depends(argv[1]))
        return 0
    if argv[:1] == ["control"]:
        p = argparse.ArgumentParser(prog="debian.py control")
        p.add_argument("--version", required=True)
        p.add_argument("--arch", required=True)
        p.add_argument("--installed-size", type=int, required=True)
        p.add_argument("--depends", required=True)
        a = p.parse_args(argv[1:])
        sys.stdout.write(control(a.version, a.arch, a.installed_size, a.depends))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
