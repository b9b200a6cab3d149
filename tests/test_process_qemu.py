"""Side by side with Debian's qemu-riscv64 (package qemu-user): the same binaries (glibc
static and dynamic, musl static) give the same output and exit status on hvemu as on
QEMU."""
from __future__ import annotations

import hashlib

import pytest
import test_process_programs as programs
from linuxkit import debian_busybox
from processkit import SYSROOT, compile_c, hvemu_run, qemu_run

# Programs whose output does not depend on the emulator (no addresses, no pids).
# PROCESSES is not among them: on qemu-riscv64 7.2 an exec of /proc/self/exe fails.
SAME_ON_BOTH = {
    "files": programs.FILES,
    "directories": programs.DIRS,
    "memory": programs.MEMORY,
    "signals": programs.SIGNALS,
    "pipes": programs.PIPES,
    "auxv": programs.AUXV,
    "arguments": programs.ARGS_ENV,
}


def status(proc) -> int:
    """The exit status as a shell shows it: 128 + n for a process killed by signal n
    (QEMU kills itself with the guest's signal; hvemu exits with 128 + n)."""
    return 128 - proc.returncode if proc.returncode < 0 else proc.returncode


def both(prog, *args, sysroot=None, cwd_factory=None, **kw):
    """(hvemu's, QEMU's) CompletedProcess for the same program, each in a fresh cwd."""
    q = qemu_run(prog, *args, sysroot=sysroot, cwd=cwd_factory() if cwd_factory else None, **kw)
    h = hvemu_run(prog, *args, options=("-L", sysroot) if sysroot else (),
                  cwd=cwd_factory() if cwd_factory else None, **kw)
    return h, q


@pytest.mark.parametrize("linkage", programs.LINKAGES)
@pytest.mark.parametrize("name", sorted(SAME_ON_BOTH))
def test_c_programs_print_the_same_on_hvemu_and_qemu(name, linkage, tmp_path_factory):
    prog = compile_c(SAME_ON_BOTH[name], static=linkage != "dynamic",
                     libc="musl" if linkage == "musl" else "glibc")
    h, q = both(prog, "x", "y", sysroot=SYSROOT if linkage == "dynamic" else None,
                cwd_factory=lambda: tmp_path_factory.mktemp(name))
    assert h.stdout == q.stdout
    assert status(h) == status(q)


@pytest.fixture(scope="module")
def busybox():
    return debian_busybox()


@pytest.mark.parametrize("argv", [
    ["md5sum", "data.bin"],
    ["sort", "-n", "-r", "numbers"],
    ["sed", "-e", "s/1/one/g", "-e", "/5/d", "numbers"],
    ["find", "."],
    ["ls", "-la", "--color=never", "."],
    ["wc", "numbers", "data.bin"],
    ["sh", "-c", "i=0; s=0; while [ $i -lt 300 ]; do s=$((s + i * i)); i=$((i + 1)); done; "
                 "echo $s; printf '%x %s\\n' 255 done; exit 3"],
    ["false"],
])
def test_busybox_applets_print_the_same_on_hvemu_and_qemu(busybox, argv, tmp_path):
    (tmp_path / "numbers").write_text("".join(f"{i * 37 % 101}\n" for i in range(500)))
    (tmp_path / "data.bin").write_bytes(hashlib.sha512(b"x").digest() * 5000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f").write_text("f\n")
    h, q = both(busybox, *argv, cwd_factory=lambda: tmp_path)
    assert h.stdout == q.stdout
    assert status(h) == status(q)
