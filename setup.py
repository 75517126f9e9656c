"""Builds the C extension kindlyguard_monitor._ring from native/ (everything else is in pyproject.toml),
ships resources/icons as package data (kindlyguard_monitor/resources/icons: found with
importlib.resources by kindlyguard_monitor/gui/resources.py), and says what to install when there
is no C compiler instead of pip's traceback."""

import sys
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

PACKAGE = "kindlyguard_monitor"  # the import package and its folder
ICONS = Path("resources") / "icons"

# the binding (kgpy.h: the module and one file per type), then the C library (kg_ring.h, no Python)
sources = ["native/kgmon_ring_module.c", "native/py_histogram.c", "native/py_writer.c", "native/py_poller.c",
           "native/py_reader.c", "native/py_v1_reader.c",
           "native/kg_crc32c.c", "native/kg_hist.c", "native/kg_reader.c", "native/kg_writer.c", "native/kg_wait.c",
           "native/kg_fault.c", "native/kg_v1_reader.c", "native/kg_bench.c"]
sources.append("native/kg_platform_win32.c" if sys.platform == "win32" else "native/kg_platform_posix.c")
compile_args = [] if sys.platform == "win32" else ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                                    "-Wno-missing-field-initializers", "-fno-strict-aliasing"]

NO_COMPILER = """
KindlyGuard Monitor: building its shared-memory core (native/*.c, the module {module}) failed:
{error}
It needs a C compiler and Python's headers. Install them, then run pip again:
  Debian, Ubuntu: sudo apt-get install gcc python3-dev
  Fedora:         sudo dnf install gcc python3-devel
  macOS:          xcode-select --install
  Windows:        the "Desktop development with C++" workload of Visual Studio Build Tools
"""


class BuildPyWithResources(build_py):
    """Also copy resources/icons/*.svg into the package (a wheel's kindlyguard_monitor/resources/icons).
    Editable installs read them from the source tree instead."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / PACKAGE / "resources" / "icons"
        self.mkpath(str(target))
        for svg in sorted(ICONS.glob("*.svg")):
            self.copy_file(str(svg), str(target / svg.name))


class BuildExtSaysWhatIsMissing(build_ext):
    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # CompileError, a missing compiler (DistutilsExecError, PlatformError), ...
            sys.stderr.write(NO_COMPILER.format(module=ext.name, error=str(e).strip() or type(e).__name__))
            raise SystemExit(1) from None


setup(
    cmdclass={"build_py": BuildPyWithResources, "build_ext": BuildExtSaysWhatIsMissing},
    ext_modules=[
        Extension(
            f"{PACKAGE}._ring",
            sources=sources,
            include_dirs=["native"],
            depends=glob("native/*.h"),
            extra_compile_args=compile_args,
        )
    ],
)
