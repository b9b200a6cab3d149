"""Descriptors, files, directories, pipes, terminals and polling.

Guest descriptors are host descriptors with the same numbers, below `fd_limit`; hvemu's
own (the signal pipes, files behind mappings) live above it, where the guest cannot
name them.  close-on-exec is the runtime's bookkeeping (execve happens in place), so
host descriptors stay as Python makes them.  A call that may block -- a read from a
pipe or terminal, a write to a full pipe -- first polls, together with the signal
pipe, so that a guest signal interrupts it (EINTR, or a restart with SA_RESTART).
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
import struct

from .. import abi
from ..runtime import KEEP, abi_int
from . import fd_path, syscall

RW_MAX = 0x7FFF_F000            # Linux's MAX_RW_COUNT
READ_CHUNK = 16 << 20           # at most this much host memory per read ...
WRITE_CHUNK = 16 << 20          # ... and per write (a longer one is a short write)
IOV_MAX = 1024
IOVEC = struct.Struct("<QQ")
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _path(p, ptr: int) -> bytes:
    return p.mm.read_cstr(ptr)


def _at(p, dirfd: int, ptr: int):
    return fd_path(p, dirfd, _path(p, ptr))


# ---- blocking ----

def _may_block(p, fd: int, want: int) -> bool:
    """Whether I/O on fd can block, so that it must be polled (with the signal pipe)
    first: not for regular files, not when the guest asked for O_NONBLOCK, and not for
    a direction the descriptor cannot go (os.read of a write-only end says EBADF).
    want is os.O_RDONLY or os.O_WRONLY."""
    kind = p.fd_kind.get(fd)
    if kind is None:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode) or stat.S_ISBLK(mode) or stat.S_ISDIR(mode):
            kind = -1
        else:
            kind = fcntl.fcntl(fd, fcntl.F_GETFL)
        p.fd_kind[fd] = kind
    if kind < 0 or kind & os.O_NONBLOCK:
        return False
    access = kind & os.O_ACCMODE
    return access == os.O_RDWR or access == want


def _read(p, fd: int, n: int) -> bytes:
    if _may_block(p, fd, os.O_RDONLY):
        p.wait_for([(fd, select.POLLIN | select.POLLPRI)])
    return os.read(fd, min(n, READ_CHUNK))


def _write(p, fd: int, bufs) -> int:
    if _may_block(p, fd, os.O_WRONLY):
        p.wait_for([(fd, select.POLLOUT)])
    try:
        return os.writev(fd, bufs)
    except BrokenPipeError:
        p.post_signal(abi.SIGPIPE)
        raise


def _iovecs(p, iov: int, count: int) -> list[tuple[int, int]]:
    count = abi_int(count)
    if not 0 <= count <= IOV_MAX:
        raise OSError(errno.EINVAL, "bad iovec count")
    data = p.mm.read(iov, 16 * count) if count else b""
    out = [IOVEC.unpack_from(data, 16 * i) for i in range(count)]
    if sum(n for _, n in out) > RW_MAX or any(n >> 63 for _, n in out):
        raise OSError(errno.EINVAL, "iovec too long")
    return out


def _scatter(p, vecs, data: bytes) -> None:
    i = 0
    for base, n in vecs:
        if i >= len(data):
            break
        p.mm.write(base, data[i:i + n])
        i += n


# ---- reading and writing ----

@syscall("read", "i p u")
def sys_read(p, fd, buf, count, *_):
    fd = p.check_fd(fd)
    if count == 0:
        return 0
    data = _read(p, fd, min(count, RW_MAX))
    p.mm.write(buf, data)
    return len(data)


@syscall("write", "i p u")
def sys_write(p, fd, buf, count, *_):
    fd = p.check_fd(fd)
    if count == 0:
        return 0
    return _write(p, fd, p.mm.pieces(buf, min(count, WRITE_CHUNK)))


@syscall("readv", "i p i")
def sys_readv(p, fd, iov, iovcnt, *_):
    fd = p.check_fd(fd)
    vecs = _iovecs(p, iov, iovcnt)
    total = sum(n for _, n in vecs)
    if total == 0:
        return 0
    data = _read(p, fd, total)
    _scatter(p, vecs, data)
    return len(data)


@syscall("writev", "i p i")
def sys_writev(p, fd, iov, iovcnt, *_):
    fd = p.check_fd(fd)
    bufs, total = [], 0
    for base, n in _iovecs(p, iov, iovcnt):
        n = min(n, WRITE_CHUNK - total)
        bufs += p.mm.pieces(base, n)
        total += n
        if total >= WRITE_CHUNK:
            break
    if not bufs:
        return 0
    return _write(p, fd, bufs)


@syscall("pread64", "i p u d")
def sys_pread64(p, fd, buf, count, offset, *_):
    fd = p.check_fd(fd)
    data = os.pread(fd, min(count, READ_CHUNK), _off(offset))
    p.mm.write(buf, data)
    return len(data)


@syscall("pwrite64", "i p u d")
def sys_pwrite64(p, fd, buf, count, offset, *_):
    fd = p.check_fd(fd)
    data = p.mm.read(buf, min(count, WRITE_CHUNK))
    try:
        return os.pwrite(fd, data, _off(offset))
    except BrokenPipeError:
        p.post_signal(abi.SIGPIPE)
        raise


@syscall("preadv", "i p i d")
def sys_preadv(p, fd, iov, iovcnt, offset, *_):
    fd = p.check_fd(fd)
    vecs = _iovecs(p, iov, iovcnt)
    data = os.pread(fd, min(sum(n for _, n in vecs), READ_CHUNK), _off(offset))
    _scatter(p, vecs, data)
    return len(data)


@syscall("pwritev", "i p i d")
def sys_pwritev(p, fd, iov, iovcnt, offset, *_):
    fd = p.check_fd(fd)
    data = b"".join(p.mm.read(base, n) for base, n in _iovecs(p, iov, iovcnt))
    return os.pwrite(fd, data, _off(offset))


def _off(v: int) -> int:
    v = v - (1 << 64) if v >> 63 else v
    if v < 0:
        raise OSError(errno.EINVAL, "negative offset")
    return v


@syscall("lseek", "i d i")
def sys_lseek(p, fd, offset, whence, *_):
    fd = p.check_fd(fd)
    offset = offset - (1 << 64) if offset >> 63 else offset
    d = p.dirs.get(fd)
    if d is not None:
        if whence == os.SEEK_SET and offset >= 0:
            d.pos = offset
            if offset == 0:
                p.dirs.pop(fd)                 # rewinddir: list afresh
            return offset
        if whence == os.SEEK_CUR and offset == 0:
            return d.pos
        raise OSError(errno.EINVAL, "bad directory seek")
    return os.lseek(fd, offset, abi_int(whence))


@syscall("sendfile", "i i p u")
def sys_sendfile(p, out_fd, in_fd, offset_ptr, count, *_):
    out_fd, in_fd = p.check_fd(out_fd), p.check_fd(in_fd)
    count = min(count, READ_CHUNK)
    if _may_block(p, out_fd, os.O_WRONLY):
        p.wait_for([(out_fd, select.POLLOUT)])
    try:
        if offset_ptr:
            off = p.mm.read_u64(offset_ptr)
            n = os.sendfile(out_fd, in_fd, off, count)
            p.mm.write_u64(offset_ptr, off + n)
            return n
        return os.sendfile(out_fd, in_fd, None, count)
    except BrokenPipeError:
        p.post_signal(abi.SIGPIPE)
        raise


@syscall("copy_file_range", "i p i p u x")
def sys_copy_file_range(p, fd_in, off_in, fd_out, off_out, length, flags):
    fd_in, fd_out = p.check_fd(fd_in), p.check_fd(fd_out)
    if flags:
        raise OSError(errno.EINVAL, "flags")
    src = p.mm.read_u64(off_in) if off_in else None
    dst = p.mm.read_u64(off_out) if off_out else None
    n = os.copy_file_range(fd_in, fd_out, min(length, READ_CHUNK), src, dst)
    if off_in:
        p.mm.write_u64(off_in, src + n)
    if off_out:
        p.mm.write_u64(off_out, dst + n)
    return n


# ---- opening and closing ----

def _synthetic(p, name: str) -> bytes | None:
    """The /proc files that describe the guest, not hvemu."""
    me = (f"/proc/{p.pid}/", "/proc/self/", "/proc/thread-self/")
    for prefix in me:
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest == "maps":
                return p.mm.maps_text().encode()
            if rest == "cmdline":
                return b"".join(a + b"\0" for a in p.argv)
            if rest == "auxv":
                return b"".join(struct.pack("<QQ", k, v) for k, v in p.auxv)
            if rest == "comm":
                return p.name + b"\n"
    return None


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("hvemu-proc", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@syscall("openat", "fd s o m")
def sys_openat(p, dirfd, path, flags, mode, *_):
    name = _path(p, path)
    host, dfd = fd_path(p, dirfd, name)
    data = _synthetic(p, os.fsdecode(name)) if name.startswith(b"/proc/") else None
    if data is not None:
        return p.new_fd(_memfd(data), bool(flags & abi.O_CLOEXEC))
    fd = os.open(host, abi.host_open_flags(flags), mode & 0o7777, dir_fd=dfd)
    return p.new_fd(fd, bool(flags & abi.O_CLOEXEC))


@syscall("close", "i")
def sys_close(p, fd, *_):
    p.close_fd(p.check_fd(fd))
    return 0


@syscall("close_range", "u u x")
def sys_close_range(p, first, last, flags, *_):
    if first > last:
        raise OSError(errno.EINVAL, "first > last")
    for fd in range(first, min(last, p.fd_limit - 1) + 1):
        if flags & 4:                          # CLOSE_RANGE_CLOEXEC
            if _is_open(fd):
                p.cloexec.add(fd)
        else:
            try:
                p.close_fd(fd)
            except OSError:
                pass
    return 0


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@syscall("dup", "i")
def sys_dup(p, fd, *_):
    return p.new_fd(os.dup(p.check_fd(fd)), False)


@syscall("dup3", "i i of")
def sys_dup3(p, old, new, flags, *_):
    old, new = p.check_fd(old), p.check_fd(new)
    if old == new or flags & ~abi.O_CLOEXEC:
        raise OSError(errno.EINVAL, "dup3")
    os.dup2(old, new)
    return p.new_fd(new, bool(flags & abi.O_CLOEXEC))


@syscall("pipe2", "p of")
def sys_pipe2(p, fds, flags, *_):
    if flags & ~(abi.O_CLOEXEC | abi.O_NONBLOCK | abi.O_DIRECT):
        raise OSError(errno.EINVAL, "pipe2 flags")
    r, w = os.pipe2(abi.host_open_flags(flags & ~abi.O_CLOEXEC) | os.O_CLOEXEC)
    cloexec = bool(flags & abi.O_CLOEXEC)
    try:
        r = p.new_fd(r, cloexec)
    except OSError:
        os.close(w)
        raise
    w = p.new_fd(w, cloexec)
    p.mm.write(fds, struct.pack("<ii", r, w))
    return 0


@syscall("fcntl", "i i x")
def sys_fcntl(p, fd, cmd, arg, *_):
    fd = p.check_fd(fd)
    cmd = abi_int(cmd)
    if cmd in (abi.F_DUPFD, abi.F_DUPFD_CLOEXEC):
        if arg >= p.fd_limit:
            raise OSError(errno.EINVAL, "F_DUPFD beyond the limit")
        return p.new_fd(fcntl.fcntl(fd, fcntl.F_DUPFD, arg), cmd == abi.F_DUPFD_CLOEXEC)
    if cmd == abi.F_GETFD:
        fcntl.fcntl(fd, fcntl.F_GETFD)          # EBADF if not open
        return abi.FD_CLOEXEC if fd in p.cloexec else 0
    if cmd == abi.F_SETFD:
        fcntl.fcntl(fd, fcntl.F_GETFD)
        if arg & abi.FD_CLOEXEC:
            p.cloexec.add(fd)
        else:
            p.cloexec.discard(fd)
        return 0
    if cmd == abi.F_GETFL:
        return abi.guest_status_flags(fcntl.fcntl(fd, fcntl.F_GETFL))
    if cmd == abi.F_SETFL:
        keep = fcntl.fcntl(fd, fcntl.F_GETFL) & ~(os.O_APPEND | os.O_NONBLOCK)
        settable = arg & (abi.O_APPEND | abi.O_NONBLOCK | abi.O_ASYNC | abi.O_DIRECT |
                          abi.O_NOATIME)
        fcntl.fcntl(fd, fcntl.F_SETFL, keep | abi.host_open_flags(settable))
        p.fd_kind.pop(fd, None)
        return 0
    if cmd in (abi.F_GETLK, abi.F_SETLK, abi.F_SETLKW):
        lock = p.mm.read(arg, 32)                 # struct flock: the same on x86-64
        out = fcntl.fcntl(fd, {abi.F_GETLK: fcntl.F_GETLK, abi.F_SETLK: fcntl.F_SETLK,
                               abi.F_SETLKW: fcntl.F_SETLKW}[cmd], lock)
        if cmd == abi.F_GETLK:
            p.mm.write(arg, out)
        return 0
    if cmd in (abi.F_GETPIPE_SZ, abi.F_SETPIPE_SZ, abi.F_GETOWN, abi.F_SETOWN):
        host = {abi.F_GETPIPE_SZ: 1032, abi.F_SETPIPE_SZ: 1031, abi.F_GETOWN: fcntl.F_GETOWN,
                abi.F_SETOWN: fcntl.F_SETOWN}[cmd]
        return fcntl.fcntl(fd, host, abi_int(arg))
    raise OSError(errno.EINVAL, "fcntl command")


# terminal ioctls (asm-generic/ioctls.h, the same numbers and layouts on x86-64):
# request -> (bytes read from the guest's arg, bytes written back), or "int"
IOCTLS = {
    0x5401: (0, 36),    # TCGETS
    0x5402: (36, 0), 0x5403: (36, 0), 0x5404: (36, 0),      # TCSETS, TCSETSW, TCSETSF
    0x5413: (0, 8),     # TIOCGWINSZ
    0x5414: (8, 0),     # TIOCSWINSZ
    0x540F: (0, 4),     # TIOCGPGRP
    0x5410: (4, 0),     # TIOCSPGRP
    0x5429: (0, 4),     # TIOCGSID
    0x541B: (0, 4),     # FIONREAD
    0x5421: (4, 0),     # FIONBIO
    0x5409: "int", 0x540A: "int", 0x540B: "int",          # TCSBRK, TCXONC, TCFLSH
    0x540E: "int", 0x5422: "int",                         # TIOCSCTTY, TIOCNOTTY
}


@syscall("ioctl", "i x x")
def sys_ioctl(p, fd, request, arg, *_):
    fd = p.check_fd(fd)
    request &= 0xFFFF_FFFF
    if request in (0x5450, 0x5451):            # FIONCLEX, FIOCLEX
        fcntl.fcntl(fd, fcntl.F_GETFD)
        (p.cloexec.add if request == 0x5451 else p.cloexec.discard)(fd)
        return 0
    spec = IOCTLS.get(request)
    if spec is None:
        os.fstat(fd)
        raise OSError(errno.ENOTTY, "unsupported ioctl")
    if spec == "int":
        return fcntl.ioctl(fd, request, abi_int(arg))
    n_in, n_out = spec
    buf = p.mm.read(arg, n_in) if n_in else bytes(n_out)
    out = fcntl.ioctl(fd, request, buf)
    if request == 0x5421:
        p.fd_kind.pop(fd, None)
    if n_out:
        p.mm.write(arg, out[:n_out])
    return 0


# ---- metadata ----

def _stat(p, dirfd: int, path: int, flags: int) -> os.stat_result:
    name = _path(p, path)
    if not name:
        if flags & abi.AT_EMPTY_PATH:
            if abi_int(dirfd) == abi.AT_FDCWD:
                return os.stat(".")
            return os.fstat(p.check_fd(dirfd))
        raise OSError(errno.ENOENT, "empty path")
    host, dfd = fd_path(p, dirfd, name)
    return os.stat(host, dir_fd=dfd, follow_symlinks=not flags & abi.AT_SYMLINK_NOFOLLOW)


@syscall("fstat", "i p")
def sys_fstat(p, fd, buf, *_):
    p.mm.write(buf, abi.pack_stat(os.fstat(p.check_fd(fd))))
    return 0


@syscall("newfstatat", "fd s p x")
def sys_newfstatat(p, dirfd, path, buf, flags, *_):
    p.mm.write(buf, abi.pack_stat(_stat(p, dirfd, path, flags)))
    return 0


@syscall("statx", "fd s x x p")
def sys_statx(p, dirfd, path, flags, mask, buf, *_):
    p.mm.write(buf, abi.pack_statx(_stat(p, dirfd, path, flags)))
    return 0


STATFS = struct.Struct("<qqQQQQQiiqqq4q")


def _statfs(v: os.statvfs_result) -> bytes:
    return STATFS.pack(0, v.f_bsize, v.f_blocks, v.f_bfree, v.f_bavail, v.f_files,
                       v.f_ffree, v.f_fsid & 0xFFFF_FFFF if v.f_fsid < 1 << 31 else 0, 0,
                       v.f_namemax, v.f_frsize, v.f_flag, 0, 0, 0, 0)


@syscall("statfs", "s p")
def sys_statfs(p, path, buf, *_):
    p.mm.write(buf, _statfs(os.statvfs(p.host_path(_path(p, path)))))
    return 0


@syscall("fstatfs", "i p")
def sys_fstatfs(p, fd, buf, *_):
    p.mm.write(buf, _statfs(os.fstatvfs(p.check_fd(fd))))
    return 0


@syscall("readlinkat", "fd s p u")
def sys_readlinkat(p, dirfd, path, buf, size, *_):
    name = _path(p, path)
    if abi_int(size) <= 0:
        raise OSError(errno.EINVAL, "size")
    if name in (b"/proc/self/exe", f"/proc/{p.pid}/exe".encode(), b"/proc/thread-self/exe"):
        target = os.fsencode(p.exe)
    else:
        host, dfd = fd_path(p, dirfd, name)
        target = os.readlink(os.fsencode(host), dir_fd=dfd)
    target = target[:size]
    p.mm.write(buf, target)
    return len(target)


def _access(p, dirfd, path, mode, flags):
    host, dfd = _at(p, dirfd, path)
    os.stat(host, dir_fd=dfd, follow_symlinks=not flags & abi.AT_SYMLINK_NOFOLLOW)
    if not os.access(host, mode & 7, dir_fd=dfd, effective_ids=bool(flags & abi.AT_EACCESS),
                     follow_symlinks=not flags & abi.AT_SYMLINK_NOFOLLOW):
        raise OSError(errno.EACCES, "access")
    return 0


@syscall("faccessat", "fd s i")
def sys_faccessat(p, dirfd, path, mode, *_):
    return _access(p, dirfd, path, mode, 0)


@syscall("faccessat2", "fd s i x")
def sys_faccessat2(p, dirfd, path, mode, flags, *_):
    return _access(p, dirfd, path, mode, flags)


@syscall("mkdirat", "fd s m")
def sys_mkdirat(p, dirfd, path, mode, *_):
    host, dfd = _at(p, dirfd, path)
    os.mkdir(host, mode & 0o7777, dir_fd=dfd)
    return 0


@syscall("mknodat", "fd s m u")
def sys_mknodat(p, dirfd, path, mode, dev, *_):
    host, dfd = _at(p, dirfd, path)
    os.mknod(host, mode & 0xFFFF, dev, dir_fd=dfd)
    return 0


@syscall("unlinkat", "fd s x")
def sys_unlinkat(p, dirfd, path, flags, *_):
    host, dfd = _at(p, dirfd, path)
    if flags & abi.AT_REMOVEDIR:
        os.rmdir(host, dir_fd=dfd)
    else:
        os.unlink(host, dir_fd=dfd)
    return 0


@syscall("renameat2", "fd s fd s x")
def sys_renameat2(p, olddir, oldpath, newdir, newpath, flags, *_):
    src, sdfd = _at(p, olddir, oldpath)
    dst, ddfd = _at(p, newdir, newpath)
    if flags & ~1:
        raise OSError(errno.EINVAL, "only RENAME_NOREPLACE is supported")
    if flags & 1 and _exists(dst, ddfd):
        raise OSError(errno.EEXIST, "exists")
    os.rename(src, dst, src_dir_fd=sdfd, dst_dir_fd=ddfd)
    return 0


def _exists(path, dfd) -> bool:
    try:
        os.stat(path, dir_fd=dfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


@syscall("symlinkat", "s fd s")
def sys_symlinkat(p, target, newdir, linkpath, *_):
    host, dfd = _at(p, newdir, linkpath)
    os.symlink(_path(p, target), os.fsencode(host), dir_fd=dfd)
    return 0


@syscall("linkat", "fd s fd s x")
def sys_linkat(p, olddir, oldpath, newdir, newpath, flags, *_):
    src, sdfd = _at(p, olddir, oldpath)
    dst, ddfd = _at(p, newdir, newpath)
    os.link(src, dst, src_dir_fd=sdfd, dst_dir_fd=ddfd,
            follow_symlinks=bool(flags & abi.AT_SYMLINK_FOLLOW))
    return 0


@syscall("fchmod", "i m")
def sys_fchmod(p, fd, mode, *_):
    os.fchmod(p.check_fd(fd), mode & 0o7777)
    return 0


@syscall("fchmodat", "fd s m")
def sys_fchmodat(p, dirfd, path, mode, *_):
    host, dfd = _at(p, dirfd, path)
    os.chmod(host, mode & 0o7777, dir_fd=dfd)
    return 0


@syscall("fchown", "i i i")
def sys_fchown(p, fd, uid, gid, *_):
    os.fchown(p.check_fd(fd), abi_int(uid), abi_int(gid))
    return 0


@syscall("fchownat", "fd s i i x")
def sys_fchownat(p, dirfd, path, uid, gid, flags, *_):
    host, dfd = _at(p, dirfd, path)
    os.chown(host, abi_int(uid), abi_int(gid), dir_fd=dfd,
             follow_symlinks=not flags & abi.AT_SYMLINK_NOFOLLOW)
    return 0


@syscall("utimensat", "fd s p x")
def sys_utimensat(p, dirfd, path, times, flags, *_):
    if path:
        host, dfd = _at(p, dirfd, path)
        target = host
    else:
        target, dfd = p.check_fd(dirfd), None
    follow = not flags & abi.AT_SYMLINK_NOFOLLOW
    if times == 0:
        if dfd is None and isinstance(target, int):
            os.utime(target)
        else:
            os.utime(target, dir_fd=dfd, follow_symlinks=follow)
        return 0
    a_s, a_ns, m_s, m_ns = struct.unpack("<qqqq", p.mm.read(times, 32))
    if a_ns == UTIME_OMIT and m_ns == UTIME_OMIT:
        return 0
    kw = {} if isinstance(target, int) else {"dir_fd": dfd, "follow_symlinks": follow}
    old = os.stat(target, **kw)
    import time
    now = time.time_ns()

    def pick(s, ns, current):
        if ns == UTIME_NOW:
            return now
        if ns == UTIME_OMIT:
            return current
        return s * 10**9 + ns
    os.utime(target, ns=(pick(a_s, a_ns, old.st_atime_ns), pick(m_s, m_ns, old.st_mtime_ns)),
             **kw)
    return 0


@syscall("truncate", "s d")
def sys_truncate(p, path, length, *_):
    os.truncate(p.host_path(_path(p, path)), _off(length))
    return 0


@syscall("ftruncate", "i d")
def sys_ftruncate(p, fd, length, *_):
    os.ftruncate(p.check_fd(fd), _off(length))
    return 0


@syscall("fallocate", "i i d d")
def sys_fallocate(p, fd, mode, offset, length, *_):
    if mode:
        raise OSError(errno.EOPNOTSUPP, "fallocate mode")
    os.posix_fallocate(p.check_fd(fd), _off(offset), _off(length))
    return 0


@syscall("fsync", "i")
def sys_fsync(p, fd, *_):
    os.fsync(p.check_fd(fd))
    return 0


@syscall("fdatasync", "i")
def sys_fdatasync(p, fd, *_):
    os.fdatasync(p.check_fd(fd))
    return 0


@syscall("sync")
def sys_sync(p, *_):
    os.sync()
    return 0


@syscall("syncfs", "i")
def sys_syncfs(p, fd, *_):
    p.check_fd(fd)
    os.sync()
    return 0


@syscall("memfd_create", "s x")
def sys_memfd_create(p, name, flags, *_):
    if flags & ~7:                              # MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB
        raise OSError(errno.EINVAL, "memfd flags")
    fd = os.memfd_create(os.fsdecode(_path(p, name))[:249], flags & 2)
    return p.new_fd(fd, bool(flags & 1))


@syscall("fadvise64", "i d d i")
def sys_fadvise64(p, fd, *_):
    p.check_fd(fd)
    return 0


@syscall("flock", "i i")
def sys_flock(p, fd, op, *_):
    fcntl.flock(p.check_fd(fd), abi_int(op))
    return 0


# ---- directories ----

class DirList:
    """A directory's entries as getdents64 hands them out (listed at the first call)."""

    def __init__(self, fd: int):
        me = os.fstat(fd)
        if not stat.S_ISDIR(me.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory")
        try:
            parent = os.stat("..", dir_fd=fd).st_ino
        except OSError:
            parent = me.st_ino
        self.entries = [(me.st_ino, abi.DT_DIR, b"."), (parent, abi.DT_DIR, b"..")]
        with os.scandir(fd) as it:
            for e in it:
                self.entries.append((e.inode(), _d_type(e), os.fsencode(e.name)))
        self.pos = 0


def _d_type(e: os.DirEntry) -> int:
    try:
        if e.is_symlink():
            return abi.DT_LNK
        if e.is_dir(follow_symlinks=False):
            return abi.DT_DIR
        if e.is_file(follow_symlinks=False):
            return abi.DT_REG
        mode = e.stat(follow_symlinks=False).st_mode
    except OSError:
        return abi.DT_UNKNOWN
    for test, t in ((stat.S_ISFIFO, abi.DT_FIFO), (stat.S_ISCHR, abi.DT_CHR),
                    (stat.S_ISBLK, abi.DT_BLK), (stat.S_ISSOCK, abi.DT_SOCK)):
        if test(mode):
            return t
    return abi.DT_UNKNOWN


@syscall("getdents64", "i p u")
def sys_getdents64(p, fd, buf, count, *_):
    fd = p.check_fd(fd)
    d = p.dirs.get(fd)
    if d is None:
        d = p.dirs[fd] = DirList(fd)
    out = bytearray()
    count = min(count, 1 << 20)
    while d.pos < len(d.entries):
        ino, dtype, name = d.entries[d.pos]
        reclen = (19 + len(name) + 1 + 7) & ~7
        if len(out) + reclen > count:
            if not out:
                raise OSError(errno.EINVAL, "buffer too small")
            break
        rec = struct.pack("<QqHB", ino, d.pos + 1, reclen, dtype) + name
        out += rec + bytes(reclen - len(rec))
        d.pos += 1
    p.mm.write(buf, bytes(out))
    return len(out)


@syscall("getcwd", "p u")
def sys_getcwd(p, buf, size, *_):
    cwd = os.fsencode(os.getcwd()) + b"\0"
    if len(cwd) > size:
        raise OSError(errno.ERANGE, "buffer too small")
    p.mm.write(buf, cwd)
    return len(cwd)


@syscall("chdir", "s")
def sys_chdir(p, path, *_):
    os.chdir(p.host_path(_path(p, path)))
    return 0


@syscall("fchdir", "i")
def sys_fchdir(p, fd, *_):
    os.fchdir(p.check_fd(fd))
    return 0


@syscall("umask", "m")
def sys_umask(p, mask, *_):
    return os.umask(mask & 0o777)


# ---- polling ----

POLLFD = struct.Struct("<ihh")


def _poll(p, fds: int, nfds: int, timeout: float | None) -> int:
    if nfds > p.fd_limit:
        raise OSError(errno.EINVAL, "too many fds")
    raw = p.mm.read(fds, 8 * nfds) if nfds else b""
    entries = [POLLFD.unpack_from(raw, 8 * i) for i in range(nfds)]
    watch = {}
    for fd, events, _ in entries:
        if 0 <= fd < p.fd_limit:
            watch[fd] = watch.get(fd, 0) | (events & 0xFFFF) | select.POLLERR | select.POLLHUP
    ready = dict(p.wait_for(list(watch.items()), timeout, restartable=False)) \
        if watch or timeout != 0 else {}
    out = bytearray()
    n = 0
    for fd, events, _ in entries:
        rev = 0
        if fd >= p.fd_limit:
            rev = select.POLLNVAL
        elif fd >= 0:
            rev = ready.get(fd, 0) & ((events & 0xFFFF) | select.POLLERR | select.POLLHUP |
                                      select.POLLNVAL)
        n += bool(rev)
        out += POLLFD.pack(fd, events, rev - (1 << 16) if rev & 0x8000 else rev)
    if nfds:
        p.mm.write(fds, bytes(out))
    return n


def _timespec(p, ptr: int) -> float | None:
    if ptr == 0:
        return None
    sec, nsec = struct.unpack("<qq", p.mm.read(ptr, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise OSError(errno.EINVAL, "bad timespec")
    return sec + nsec / 1e9


@syscall("ppoll", "p u p p u")
def sys_ppoll(p, fds, nfds, tmo, sigmask, sigsetsize, *_):
    timeout = _timespec(p, tmo)
    with _temporary_mask(p, sigmask):
        return _poll(p, fds, nfds, timeout)


class _temporary_mask:
    """ppoll/pselect6's sigmask: in force while waiting; restored after (delivery of a
    signal it unblocked happens with the old mask saved in the frame, as in Linux)."""

    def __init__(self, p, ptr: int):
        self.p, self.ptr = p, ptr

    def __enter__(self):
        if self.ptr:
            self.old = self.p.sig.blocked
            self.p.sig.set_blocked(int.from_bytes(self.p.mm.read(self.ptr, 8), "little"))

    def __exit__(self, exc_type, exc, tb):
        if self.ptr:
            if exc_type is not None and self.p.sig.ready:
                self.p.saved_mask = self.old       # restored by the signal frame
            else:
                self.p.sig.set_blocked(self.old)
        return False


@syscall("pselect6", "i p p p p p")
def sys_pselect6(p, nfds, readfds, writefds, exceptfds, tmo, sigmask_arg):
    nfds = abi_int(nfds)
    if not 0 <= nfds <= p.fd_limit:
        raise OSError(errno.EINVAL, "nfds")
    words = (nfds + 63) // 64
    sets = []
    for ptr in (readfds, writefds, exceptfds):
        sets.append(int.from_bytes(p.mm.read(ptr, 8 * words), "little") if ptr and words
                    else 0)
    watch = {}
    for fd in range(nfds):
        ev = 0
        if sets[0] >> fd & 1:
            ev |= select.POLLIN
        if sets[1] >> fd & 1:
            ev |= select.POLLOUT
        if sets[2] >> fd & 1:
            ev |= select.POLLPRI
        if ev:
            os.fstat(fd)                               # EBADF for a closed one
            watch[fd] = ev
    timeout = _timespec(p, tmo)
    mask_ptr = 0
    if sigmask_arg:
        mask_ptr, _size = struct.unpack("<QQ", p.mm.read(sigmask_arg, 16))
    with _temporary_mask(p, mask_ptr):
        ready = dict(p.wait_for(list(watch.items()), timeout, restartable=False)) \
            if watch or timeout != 0 else {}
    out = [0, 0, 0]
    n = 0
    for fd, ev in ready.items():
        if sets[0] >> fd & 1 and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            out[0] |= 1 << fd
            n += 1
        if sets[1] >> fd & 1 and ev & (select.POLLOUT | select.POLLERR):
            out[1] |= 1 << fd
            n += 1
        if sets[2] >> fd & 1 and ev & select.POLLPRI:
            out[2] |= 1 << fd
            n += 1
    for ptr, value in zip((readfds, writefds, exceptfds), out, strict=True):
        if ptr and words:
            p.mm.write(ptr, value.to_bytes(8 * words, "little"))
    return n


_ = KEEP
