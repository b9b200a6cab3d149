"""brk, mmap, munmap, mprotect, mremap, madvise, msync, mlock: the address space (mm.py).

Private file mappings read the file page by page as the guest touches them; a shared
writable file mapping is refused (ENODEV, with a one-line warning), since the guest's
RAM is private to hvemu.  Shared anonymous memory is private memory here: it stays
shared only until a fork.
"""
from __future__ import annotations

import errno

from .. import abi
from ..runtime import abi_int
from . import syscall

PROT_ALL = abi.PROT_READ | abi.PROT_WRITE | abi.PROT_EXEC


@syscall("brk", "p", "x")
def sys_brk(p, addr, *_):
    return p.mm.set_brk(addr) if addr else p.mm.brk


@syscall("mmap", "p u x x i x", "x")
def sys_mmap(p, addr, length, prot, flags, fd, offset):
    if prot & ~PROT_ALL & ~0x3000000:     # PROT_GROWSDOWN/UP are accepted and ignored
        raise OSError(errno.EINVAL, "prot")
    kind = flags & abi.MAP_TYPE
    if kind not in (abi.MAP_SHARED, abi.MAP_PRIVATE, abi.MAP_SHARED_VALIDATE):
        raise OSError(errno.EINVAL, "neither MAP_SHARED nor MAP_PRIVATE")
    mf = None
    if not flags & abi.MAP_ANONYMOUS:
        fd = p.check_fd(fd)
        if kind != abi.MAP_PRIVATE and prot & abi.PROT_WRITE:
            p.warn_once("mmap-shared", "mmap: shared writable file mappings are not "
                        "supported (ENODEV)")
            raise OSError(errno.ENODEV, "shared writable file mapping")
        import fcntl
        import os
        import stat
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.ENODEV, "only regular files can be mapped")
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            raise OSError(errno.EACCES, "write-only descriptor")
        mf = p.mm.mapped_file(fd, _fd_name(fd))
    return p.mm.mmap(addr, length, prot & PROT_ALL, flags, mf, offset)


def _fd_name(fd: int) -> str:
    import os
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@syscall("munmap", "p u")
def sys_munmap(p, addr, length, *_):
    p.mm.munmap(addr, length)
    return 0


@syscall("mprotect", "p u x")
def sys_mprotect(p, addr, length, prot, *_):
    if prot & ~PROT_ALL & ~0x3000000:
        raise OSError(errno.EINVAL, "prot")
    p.mm.mprotect(addr, length, prot & PROT_ALL)
    return 0


@syscall("mremap", "p u u x p", "x")
def sys_mremap(p, old, old_len, new_len, flags, new_addr, *_):
    if flags & ~(abi.MREMAP_MAYMOVE | abi.MREMAP_FIXED):
        raise OSError(errno.EINVAL, "mremap flags")
    return p.mm.mremap(old, old_len, new_len, flags, new_addr)


@syscall("madvise", "p u i")
def sys_madvise(p, addr, length, advice, *_):
    if addr & 0xFFF:
        raise OSError(errno.EINVAL, "unaligned")
    if abi_int(advice) in (abi.MADV_DONTNEED, abi.MADV_FREE):
        p.mm.madvise_dontneed(addr, length)
    return 0


@syscall("msync", "p u x")
def sys_msync(p, addr, length, flags, *_):
    if addr & 0xFFF:
        raise OSError(errno.EINVAL, "unaligned")
    return 0


@syscall("mlock", "p u")
def sys_mlock(p, *_):
    return 0


@syscall("munlock", "p u")
def sys_munlock(p, *_):
    return 0


@syscall("mlockall", "x")
def sys_mlockall(p, *_):
    return 0


@syscall("munlockall")
def sys_munlockall(p, *_):
    return 0


@syscall("mincore", "p u p")
def sys_mincore(p, addr, length, vec, *_):
    if addr & 0xFFF:
        raise OSError(errno.EINVAL, "unaligned")
    n = (length + 0xFFF) >> 12
    out = bytes(1 if (addr >> 12) + i in p.mm.pages else 0 for i in range(min(n, 1 << 20)))
    for i in range(n):
        if p.mm.find(addr + (i << 12)) is None:
            raise OSError(errno.ENOMEM, "not mapped")
    p.mm.write(vec, out)
    return 0
