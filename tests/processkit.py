"""Helpers for the process-VM tests (`hvemu run`): real programs, real tools.

* `compile_c(source, static=True)` compiles C source with Debian's
  riscv64-linux-gnu-gcc at test time (cached by content in the pytest cache
  directory) and returns the executable's path; `SYSROOT` is the cross libc that
  dynamically linked programs run against (`-L SYSROOT`).
* `hvemu_run(prog, *args, options=...)` runs `hvemu run [OPTIONS] PROG ARGS...` as a
  subprocess and returns the CompletedProcess (bytes of stdout/stderr decoded as
  text); `qemu_run` runs the same program on Debian's qemu-riscv64.
* Without the cross compiler or qemu-user the calling test is skipped -- or fails when
  the environment variable CI is set (conftest.require_tool).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require_tool

CC = "riscv64-linux-gnu-gcc"
QEMU = "qemu-riscv64"
SYSROOT = "/usr/riscv64-linux-gnu"
CACHE = REPO / ".pytest_cache" / "process-programs"
CROSS_PACKAGES = "gcc-riscv64-linux-gnu and libc6-dev-riscv64-cross"


def unavailable(message: str):
    """Skip the calling test -- or fail it when CI is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{message}; required when CI is set")
    pytest.skip(message)


def compile_c(source: str, static: bool = True, flags: tuple[str, ...] = ("-O2",),
              name: str = "prog", libc: str = "glibc") -> Path:
    """An executable built from C source for riscv64 Linux (lp64d): with glibc, static or
    dynamic; with libc="musl", static against Debian's riscv64 musl-dev."""
    cc = require_tool(CC, CROSS_PACKAGES)
    if not Path(SYSROOT, "lib", "libc.so.6").exists():
        unavailable(f"{SYSROOT}/lib/libc.so.6 not found (install {CROSS_PACKAGES})")
    key = hashlib.sha256(repr((source, static, flags, libc)).encode()).hexdigest()[:16]
    out = CACHE / f"{name}-{key}"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        src = CACHE / f"{name}-{key}.c"
        src.write_text(source)
        tmp = out.with_suffix(".tmp")
        if libc == "musl":
            cmds = _musl_commands(cc, src, tmp, flags)
        else:
            cmds = [[cc, *flags, *(["-static"] if static else []), "-o", str(tmp), str(src)]]
        for cmd in cmds:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            if proc.returncode:
                raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        tmp.rename(out)
    return out


def musl() -> Path:
    """Debian's riscv64 musl-dev (headers, crt*.o, libc.a), with the objects' debug
    sections stripped: trixie's carry relocations bookworm's cross ld 2.40 crashes on."""
    from linuxkit import debian_package
    root = debian_package("musl-dev")
    lib = root / "usr" / "lib" / "riscv64-linux-musl"
    done = CACHE / "musl" / root.name
    if not (done / "libc.a").exists():
        objcopy = require_tool("riscv64-linux-gnu-objcopy", "binutils-riscv64-linux-gnu")
        tmp = done.with_suffix(".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        for f in ("crt1.o", "crti.o", "crtn.o", "libc.a"):
            subprocess.run([objcopy, "--strip-debug", str(lib / f), str(tmp / f)], check=True,
                           timeout=300)
        (tmp / "include").symlink_to(root / "usr" / "include" / "riscv64-linux-musl")
        tmp.rename(done)
    return done


def _musl_commands(cc: str, src: Path, out: Path, flags) -> list[list[str]]:
    m = musl()
    gcc_include = subprocess.run([cc, "-print-file-name=include"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    libgcc = subprocess.run([cc, "-print-libgcc-file-name"], capture_output=True, text=True,
                            check=True).stdout.strip()
    obj = out.with_suffix(".o")
    return [[cc, *flags, "-nostdinc", "-isystem", str(m / "include"), "-isystem", gcc_include,
             "-c", "-o", str(obj), str(src)],
            [cc, "-static", "-nostdlib", "-o", str(out), str(m / "crt1.o"), str(m / "crti.o"),
             str(obj), str(m / "libc.a"), libgcc, str(m / "crtn.o")]]


def hvemu_run(prog, *args, options: tuple[str, ...] = (), cwd=None, env=None,
              input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`hvemu run OPTIONS PROG ARGS` as a subprocess; text output (undecodable bytes
    replaced), stdin from `input` (default /dev/null)."""
    environment = dict(os.environ if env is None else env)
    environment.pop("HVEMU_DEBUG", None)
    environment["PYTHONPATH"] = str(REPO) + os.pathsep + environment.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "hvemu.cli", "run", *map(str, options), str(prog),
           *map(str, args)]
    return _run(cmd, cwd, environment, input, timeout)


def qemu_run(prog, *args, sysroot: str | None = None, cwd=None, env=None,
             input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The same program on Debian's qemu-riscv64 (package qemu-user)."""
    qemu = require_tool(QEMU, "qemu-user")
    cmd = [qemu, *(["-L", sysroot] if sysroot else []), str(prog), *map(str, args)]
    return _run(cmd, cwd, dict(os.environ if env is None else env), input, timeout)


def _run(cmd, cwd, env, input, timeout) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, timeout=timeout,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)
    proc.stdout = proc.stdout.decode(errors="replace")
    proc.stderr = proc.stderr.decode(errors="replace")
    return proc
