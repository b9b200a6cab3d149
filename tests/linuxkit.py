"""Debian's riscv64 Linux kernel and busybox, for the tests and benchmarks that boot Linux.

* `debian_kernel()` is the path of Debian's riscv64 kernel Image (package
  linux-image-riscv64 of `SUITE`), `debian_busybox()` that of busybox-static's
  binary, `debian_package(name)` the directory any riscv64 package is unpacked into.
  They are fetched with the host's apt, as foreign-architecture packages, through a
  sources list and state of their own (the host's apt configuration is not
  touched), and unpacked with dpkg-deb into a cache directory (`HVEMU_TEST_CACHE`,
  default ~/.cache/hvemu-tests) reused by later runs.
* `initramfs(init)` builds a gzipped cpio (newc) archive at test time: busybox as
  /bin/busybox and the shell script `init` as /init (cached by content).
* Without apt or the network the calling test is skipped — or fails when the
  environment variable CI is set.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
CACHE = Path(os.environ.get("HVEMU_TEST_CACHE", Path.home() / ".cache" / "hvemu-tests"))

# An /init that gives an interactive shell on the console.
SHELL_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "hvemu-linux: shell ready"
exec setsid cttyhack sh
"""


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(f"{message}; required when CI is set")
    pytest.skip(message)


def _apt(*args: str) -> subprocess.CompletedProcess:
    root = CACHE / "apt"
    opts = [f"-oDir={root}", f"-oDir::State::status={root}/status",
            "-oAPT::Architecture=riscv64", "-oAPT::Architectures=riscv64",
            "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root", "-q"]
    return subprocess.run([args[0], *opts, *args[1:]], capture_output=True, text=True,
                          timeout=600)


def _fetch(packages: list[str]) -> list[Path]:
    """Download packages (riscv64, from SUITE) into the cache; their .deb paths."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not found: the Linux tests fetch Debian's riscv64 packages")
    root = CACHE / "apt"
    for d in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
              "var/lib/apt/lists/partial", "var/cache/apt/archives/partial"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    (root / "etc/apt/sources.list").write_text(
        f"deb [arch=riscv64 signed-by={KEYRING}] {MIRROR} {SUITE} main\n")
    if not list((root / "var/lib/apt/lists").glob("*Packages*")):
        proc = _apt("apt-get", "update")
        if proc.returncode:
            _unavailable(f"apt-get update for Debian {SUITE} riscv64 failed: "
                         f"{proc.stderr.strip()[-300:]}")
    debs = CACHE / "debs"
    debs.mkdir(exist_ok=True)
    out = []
    for package in packages:
        found = sorted(debs.glob(f"{package}_*_riscv64.deb"))
        if not found:
            proc = subprocess.run(["apt-get", f"-oDir={root}",
                                   f"-oDir::State::status={root}/status",
                                   "-oAPT::Architecture=riscv64", "-oAPT::Architectures=riscv64",
                                   "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root", "-q",
                                   "download", package], cwd=debs, capture_output=True,
                                  text=True, timeout=600)
            found = sorted(debs.glob(f"{package}_*_riscv64.deb"))
            if proc.returncode or not found:
                _unavailable(f"apt-get download {package} (riscv64) failed: "
                             f"{proc.stderr.strip()[-300:]}")
        out.append(found[-1])
    return out


def _kernel_package() -> str:
    """The real package behind the linux-image-riscv64 metapackage."""
    proc = _apt("apt-cache", "depends", "linux-image-riscv64")
    for line in proc.stdout.splitlines():
        word = line.strip().split()
        if len(word) == 2 and word[0] == "Depends:" and word[1].startswith("linux-image-"):
            return word[1]
    _unavailable(f"linux-image-riscv64 has no kernel dependency in Debian {SUITE}")


def _unpack(deb: Path) -> Path:
    dest = CACHE / "unpacked" / deb.stem
    if not dest.exists():
        tmp = dest.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, timeout=300)
        tmp.rename(dest)
    return dest


class _Lock:
    """One fetcher at a time (tests in parallel processes share the cache)."""

    def __enter__(self):
        CACHE.mkdir(parents=True, exist_ok=True)
        self.f = open(CACHE / ".lock", "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def debian_kernel() -> Path:
    """Debian's riscv64 kernel Image (with its EFI stub), e.g. vmlinux-6.12.*-riscv64."""
    with _Lock():
        _fetch([])                                   # sources and lists first
        deb, = _fetch([_kernel_package()])
        images = sorted((_unpack(deb) / "boot").glob("vmlinu*"))
        if not images:
            _unavailable(f"{deb.name} holds no kernel image")
        return images[-1]


def debian_busybox() -> Path:
    with _Lock():
        deb, = _fetch(["busybox-static"])
        path = _unpack(deb) / "usr" / "bin" / "busybox"
        if not path.exists():
            path = _unpack(deb) / "bin" / "busybox"
        return path


def debian_package(name: str) -> Path:
    """The directory a Debian riscv64 package (e.g. libc6) is unpacked into."""
    with _Lock():
        deb, = _fetch([name])
        return _unpack(deb)


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks: (name, mode, data) each."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        out += ("070701" + "".join(f"{v:08X}" for v in fields)).encode() + encoded
        out += bytes(-len(out) % 4)          # the header and name, then the data, 4-aligned
        out += data
        out += bytes(-len(out) % 4)
    return bytes(out)


def initramfs(init: str = SHELL_INIT, extra: dict[str, bytes] | None = None) -> Path:
    """A gzipped newc initramfs: busybox, /init = init, and extra files (path -> bytes)."""
    busybox = debian_busybox().read_bytes()
    entries = [("bin", stat.S_IFDIR | 0o755, b""), ("dev", stat.S_IFDIR | 0o755, b""),
               ("bin/busybox", stat.S_IFREG | 0o755, busybox),
               ("init", stat.S_IFREG | 0o755, init.encode())]
    for path, data in (extra or {}).items():
        entries.append((path, stat.S_IFREG | 0o644, data))
    archive = gzip.compress(cpio_newc(entries), mtime=0)
    path = CACHE / "initramfs" / f"{hashlib.sha256(archive).hexdigest()[:16]}.cpio.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(archive)
        tmp.rename(path)
    return path
