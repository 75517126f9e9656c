"""Builds the C extension app._ring from native/ (everything else is in pyproject.toml)."""

import sys
from glob import glob

from setuptools import Extension, setup

sources = ["native/kgmon_ring_module.c", "native/kg_crc32c.c", "native/kg_hist.c", "native/kg_reader.c",
           "native/kg_writer.c", "native/kg_wait.c", "native/kg_fault.c",
           "native/kg_v1_reader.c"]
sources.append("native/kg_platform_win32.c" if sys.platform == "win32" else "native/kg_platform_posix.c")
compile_args = [] if sys.platform == "win32" else ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                                    "-Wno-missing-field-initializers", "-fno-strict-aliasing"]

setup(
    ext_modules=[
        Extension(
            "app._ring",
            sources=sources,
            include_dirs=["native"],
            depends=glob("native/*.h"),
            extra_compile_args=compile_args,
        )
    ]
)
