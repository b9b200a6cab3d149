"""Build of hvemu's Cython fast path (hvemu._core).

Compiler flags are part of the design (../shared/CYTHON-NOTES.md): they are
benchmarked, and the default build stays portable (no -march=native).
Set HVEMU_CFLAGS to try others, e.g. HVEMU_CFLAGS="-O3 -march=native".
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

cflags = os.environ.get("HVEMU_CFLAGS", "-O2").split()


def expand_templates(directory: str = "hvemu/core") -> None:
    """Expand the core's Tempita templates (X.pxi.in -> X.pxi) when out of date."""
    from Cython import Tempita
    for name in os.listdir(directory):
        if not name.endswith(".pxi.in"):
            continue
        src = os.path.join(directory, name)
        dst = src[:-3]
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            continue
        with open(src) as f:
            text = Tempita.sub(f.read())
        with open(dst, "w") as f:
            f.write("# GENERATED from " + name + " by setup.py: edit that file instead.\n")
            f.write(text)


expand_templates()

extensions = [
    Extension(
        "hvemu._core",
        ["hvemu/_core.pyx"],
        include_dirs=[numpy.get_include(), "hvemu/core"],      # core/softfp.h
        extra_compile_args=cflags + ["-Wno-unused-function", "-Wno-unreachable-code"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    packages=["hvemu", "hvemu.hypervisor", "hvemu.devices", "hvemu.boot", "hvemu.firmware",
              "hvemu.process", "hvemu.process.syscalls", "hvemu.control"],
    package_dir={"hvemu.firmware": "firmware"},
    package_data={"hvemu": ["*.pxd", "*.pyx", "core/*.pxi", "core/*.pxi.in", "core/*.h"],
                  "hvemu.firmware": ["*.elf", "README.md", "kernel/*.elf", "disk/*.elf",
                                     "smp/*.elf"]},
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": 3},
        annotate=bool(os.environ.get("HVEMU_ANNOTATE")),
    ),
)
