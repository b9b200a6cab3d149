"""The Linux riscv64 system calls the process VM implements, one module per concern:

    files.py     descriptors, files, directories, pipes, terminals, polling
    memory.py    brk, mmap, munmap, mprotect, mremap, madvise
    procs.py     clone (fork, vfork), execve, wait4/waitid, exit, identity, limits
    sigs.py      sigaction, sigprocmask, sigaltstack, kill, rt_sigreturn, sigsuspend
    misc.py      time, sleeping, uname, getrandom, sysinfo and the calls answered trivially

Each handler is `fn(process, a0, a1, a2, a3, a4, a5) -> int`, registered with
`@syscall(name, argument kinds, result kind)`: the kinds say how `--strace` prints the
call.  A handler returns the value for a0 -- a negative errno is an error, as the kernel
returns it -- or raises OSError (its errno is returned) or GuestFault (EFAULT).  The
table is a dict from number to handler built once per process; a number missing from
it is ENOSYS.  With --strace or --stats each handler is wrapped once, so the plain run
pays nothing for them.
"""
from __future__ import annotations

import errno
import os

from ..abi import SYSCALL_NAMES, SYSCALL_NUMBERS

HANDLERS: dict[int, object] = {}
SPECS: dict[int, tuple[tuple[str, ...], str]] = {}


def syscall(name: str, args: str = "", ret: str = "d"):
    """Register a handler for the system call `name` (asm-generic numbering)."""
    def deco(fn):
        nr = SYSCALL_NUMBERS[name]
        HANDLERS[nr] = fn
        SPECS[nr] = (tuple(args.split()), ret)
        return fn
    return deco


def _load() -> None:
    from . import files, memory, misc, procs, sigs  # noqa: F401  (they register handlers)


def implemented() -> list[str]:
    """The names of the system calls with a handler, sorted."""
    _load()
    return sorted(SYSCALL_NAMES[nr] for nr in HANDLERS)


def build_table(process) -> dict:
    """The dispatch table of one process (instrumented for --strace/--stats)."""
    _load()
    table = dict(HANDLERS)
    if process.opts.strace or process.opts.stats:
        from .trace import instrument
        table = {nr: instrument(process, nr, fn) for nr, fn in table.items()}
        process.nosys = instrument(process, None, _nosys)
    return table


def _nosys(process, *args) -> int:
    return -errno.ENOSYS


def fd_path(process, dirfd: int, path: bytes):
    """(host path, dir_fd) for a *at() call: dir_fd None for AT_FDCWD or absolute paths."""
    from ..runtime import abi_int
    dirfd = abi_int(dirfd)
    if path.startswith(b"/"):
        return process.host_path(path), None
    if dirfd == -100:
        return os.fsdecode(path), None
    return os.fsdecode(path), process.check_fd(dirfd)
