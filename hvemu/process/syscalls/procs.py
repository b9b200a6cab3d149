"""Processes: clone (fork and vfork), execve, wait4/waitid, exit; identity and limits.

fork is a host fork of the whole hvemu process (`Process.fork`): the child's guest
memory, registers and descriptors are a copy, its pid the host pid, so kill, wait4 and
the parent's view of the child's exit status are the host's own.  vfork's parent
waits until the child has exec'd or exited.  Threads -- clone with CLONE_VM and without
CLONE_VFORK -- are not supported: ENOSYS, with a one-line warning (glibc's
pthread_create returns it).
"""
from __future__ import annotations

import errno
import os
import resource
import struct

from .. import abi
from ..elf import ExecError
from ..runtime import ProcessExit, Reload, abi_int
from . import syscall

RUSAGE = struct.Struct("<qqqq14q")


def _rusage(r) -> bytes:
    def tv(t: float):
        return int(t), int((t - int(t)) * 1e6)
    return RUSAGE.pack(*tv(r.ru_utime), *tv(r.ru_stime), r.ru_maxrss, r.ru_ixrss,
                       r.ru_idrss, r.ru_isrss, r.ru_minflt, r.ru_majflt, r.ru_nswap,
                       r.ru_inblock, r.ru_oublock, r.ru_msgsnd, r.ru_msgrcv, r.ru_nsignals,
                       r.ru_nvcsw, r.ru_nivcsw)


@syscall("clone", "f p p p p")
def sys_clone(p, flags, newsp, ptid, ctid, tls, *_):
    vfork = bool(flags & abi.CLONE_VFORK)
    if flags & (abi.CLONE_THREAD | abi.CLONE_SIGHAND) or (flags & abi.CLONE_VM and not vfork):
        p.warn_once("threads", "clone: threads (CLONE_VM) are not supported; the call "
                    "fails with ENOSYS")
        return -errno.ENOSYS
    if flags & (abi.CLONE_NEWNS | 0x7E000000 & ~abi.CLONE_CHILD_SETTID & ~abi.CLONE_UNTRACED
                & ~abi.CLONE_DETACHED):
        return -errno.EINVAL
    pid = p.fork(vfork)
    if pid == 0:
        v = p.vcpu
        if newsp:
            v.set_x(2, newsp)
        if flags & abi.CLONE_SETTLS:
            v.set_x(4, tls)
        if flags & abi.CLONE_CHILD_SETTID and ctid:
            p.mm.write_u32(ctid, p.pid)
        if flags & abi.CLONE_CHILD_CLEARTID:
            p.tid_address = ctid
        return 0
    if flags & abi.CLONE_PARENT_SETTID and ptid:
        p.mm.write_u32(ptid, pid)
    return pid


@syscall("clone3", "p u")
def sys_clone3(p, *_):
    return -errno.ENOSYS                       # glibc falls back to clone


@syscall("execve", "s av av")
def sys_execve(p, path, argv, envp, *_):
    name = p.mm.read_cstr(path)
    args = [p.mm.read_cstr(a, 1 << 17) for a in p.mm.read_ptrs(argv)] if argv else []
    env = [p.mm.read_cstr(e, 1 << 17) for e in p.mm.read_ptrs(envp)] if envp else []
    try:
        p.execve(name, args, env)
    except ExecError as e:
        return -e.errno
    p.argv = args
    raise Reload


@syscall("exit", "i", "n")
def sys_exit(p, status, *_):
    raise ProcessExit(status & 0xFF)


@syscall("exit_group", "i", "n")
def sys_exit_group(p, status, *_):
    raise ProcessExit(status & 0xFF)


def _wait_flags(options: int) -> int:
    known = os.WNOHANG | os.WUNTRACED | os.WCONTINUED
    return options & known


@syscall("wait4", "i p x p")
def sys_wait4(p, pid, status_ptr, options, rusage_ptr, *_):
    pid = abi_int(pid)
    if options & ~(1 | 2 | 8 | 0x40000000 | 0x80000000 | 0x20000000):
        raise OSError(errno.EINVAL, "wait4 options")
    flags = _wait_flags(options)
    while True:
        got, status, ru = os.wait4(pid, flags | os.WNOHANG)
        if got or flags & os.WNOHANG:
            break
        p.wait_event([])                        # until SIGCHLD (or a guest signal)
    if got and status_ptr:
        p.mm.write_u32(status_ptr, status)
    if got and rusage_ptr:
        p.mm.write(rusage_ptr, _rusage(ru))
    return got


@syscall("waitid", "i i p x p")
def sys_waitid(p, idtype, id_, infop, options, rusage_ptr, *_):
    idtype = abi_int(idtype)
    which = {0: os.P_ALL, 1: os.P_PID, 2: os.P_PGID}.get(idtype)
    if which is None:
        raise OSError(errno.EINVAL, "idtype")
    flags = options & (os.WEXITED | os.WSTOPPED | os.WCONTINUED | os.WNOHANG | os.WNOWAIT)
    while True:
        res = os.waitid(which, abi_int(id_), flags | os.WNOHANG)
        if res is not None or flags & os.WNOHANG:
            break
        p.wait_event([])
    if infop:
        if res is None:
            p.mm.write(infop, bytes(128))
        else:
            from ..signals import siginfo
            p.mm.write(infop, siginfo(abi.SIGCHLD, res.si_code, pid=res.si_pid,
                                      uid=res.si_uid, status=res.si_status))
    if rusage_ptr:
        p.mm.write(rusage_ptr, _rusage(resource.getrusage(resource.RUSAGE_CHILDREN)))
    return 0


# ---- identity ----

@syscall("getpid")
def sys_getpid(p, *_):
    return p.pid


@syscall("gettid")
def sys_gettid(p, *_):
    return p.pid


@syscall("getppid")
def sys_getppid(p, *_):
    return os.getppid()


@syscall("getuid")
def sys_getuid(p, *_):
    return os.getuid()


@syscall("geteuid")
def sys_geteuid(p, *_):
    return os.geteuid()


@syscall("getgid")
def sys_getgid(p, *_):
    return os.getgid()


@syscall("getegid")
def sys_getegid(p, *_):
    return os.getegid()


@syscall("getresuid", "p p p")
def sys_getresuid(p, r, e, s, *_):
    for ptr, v in zip((r, e, s), os.getresuid(), strict=True):
        p.mm.write_u32(ptr, v)
    return 0


@syscall("getresgid", "p p p")
def sys_getresgid(p, r, e, s, *_):
    for ptr, v in zip((r, e, s), os.getresgid(), strict=True):
        p.mm.write_u32(ptr, v)
    return 0


@syscall("getgroups", "i p")
def sys_getgroups(p, size, lst, *_):
    groups = os.getgroups()
    size = abi_int(size)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise OSError(errno.EINVAL, "too small")
    p.mm.write(lst, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall("setuid", "i")
def sys_setuid(p, uid, *_):
    os.setuid(abi_int(uid))
    return 0


@syscall("setgid", "i")
def sys_setgid(p, gid, *_):
    os.setgid(abi_int(gid))
    return 0


@syscall("setreuid", "i i")
def sys_setreuid(p, r, e, *_):
    os.setreuid(abi_int(r), abi_int(e))
    return 0


@syscall("setregid", "i i")
def sys_setregid(p, r, e, *_):
    os.setregid(abi_int(r), abi_int(e))
    return 0


@syscall("setresuid", "i i i")
def sys_setresuid(p, r, e, s, *_):
    os.setresuid(abi_int(r), abi_int(e), abi_int(s))
    return 0


@syscall("setresgid", "i i i")
def sys_setresgid(p, r, e, s, *_):
    os.setresgid(abi_int(r), abi_int(e), abi_int(s))
    return 0


@syscall("setgroups", "i p")
def sys_setgroups(p, size, lst, *_):
    size = abi_int(size)
    if not 0 <= size <= 65536:
        raise OSError(errno.EINVAL, "size")
    os.setgroups(list(struct.unpack(f"<{size}I", p.mm.read(lst, 4 * size))) if size else [])
    return 0


@syscall("getpgid", "i")
def sys_getpgid(p, pid, *_):
    return os.getpgid(abi_int(pid))


@syscall("setpgid", "i i")
def sys_setpgid(p, pid, pgid, *_):
    os.setpgid(abi_int(pid), abi_int(pgid))
    return 0


@syscall("getsid", "i")
def sys_getsid(p, pid, *_):
    return os.getsid(abi_int(pid))


@syscall("setsid")
def sys_setsid(p, *_):
    return os.setsid()


@syscall("set_tid_address", "p")
def sys_set_tid_address(p, tidptr, *_):
    p.tid_address = tidptr
    return p.pid


@syscall("set_robust_list", "p u")
def sys_set_robust_list(p, head, length, *_):
    if length != 24:
        raise OSError(errno.EINVAL, "len")
    p.robust_list = (head, length)
    return 0


@syscall("get_robust_list", "i p p")
def sys_get_robust_list(p, pid, head_ptr, len_ptr, *_):
    if abi_int(pid) not in (0, p.pid):
        raise OSError(errno.EPERM, "not us")
    p.mm.write_u64(head_ptr, p.robust_list[0])
    p.mm.write_u64(len_ptr, p.robust_list[1])
    return 0


# ---- limits and usage ----

RLIMIT_STACK, RLIMIT_NOFILE, RLIMIT_AS = 3, 7, 9
RLIM_INFINITY = (1 << 64) - 1
_HOST_LIMITS = {0, 1, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15}    # passed to the host


def _host_limit(v: int) -> int:
    return resource.RLIM_INFINITY if v == RLIM_INFINITY or v < 0 else v


def _guest_limit(v: int) -> int:
    return RLIM_INFINITY if v == resource.RLIM_INFINITY or v < 0 else v


def get_limit(p, res: int) -> tuple[int, int]:
    if res in p.limits:
        return p.limits[res]
    if res == RLIMIT_STACK:
        from ..mm import STACK_SIZE
        return STACK_SIZE, RLIM_INFINITY
    if res == RLIMIT_NOFILE:
        soft, hard = resource.getrlimit(res)
        return min(_guest_limit(soft), p.fd_limit), min(_guest_limit(hard), p.fd_limit)
    if res in (RLIMIT_AS, 2, 9):              # data, address space: --memory bounds them
        return RLIM_INFINITY, RLIM_INFINITY
    soft, hard = resource.getrlimit(res)
    return _guest_limit(soft), _guest_limit(hard)


def set_limit(p, res: int, soft: int, hard: int) -> None:
    if soft > hard and hard != RLIM_INFINITY:
        raise OSError(errno.EINVAL, "soft above hard")
    if res in _HOST_LIMITS and res != RLIMIT_NOFILE:
        resource.setrlimit(res, (_host_limit(soft), _host_limit(hard)))
    else:
        old_soft, old_hard = get_limit(p, res)
        if hard > old_hard and old_hard != RLIM_INFINITY and os.geteuid() != 0:
            raise OSError(errno.EPERM, "raising the hard limit")
        if res == RLIMIT_NOFILE:
            soft, hard = min(soft, p.fd_limit), min(hard, p.fd_limit)
        p.limits[res] = (soft, hard)


@syscall("prlimit64", "i i p p")
def sys_prlimit64(p, pid, res, new, old, *_):
    if abi_int(pid) not in (0, p.pid):
        raise OSError(errno.EPERM, "another process")
    res = abi_int(res)
    if not 0 <= res < 16:
        raise OSError(errno.EINVAL, "resource")
    current = get_limit(p, res)
    if new:
        soft, hard = struct.unpack("<QQ", p.mm.read(new, 16))
        set_limit(p, res, soft, hard)
    if old:
        p.mm.write(old, struct.pack("<QQ", *current))
    return 0


@syscall("getrlimit", "i p")
def sys_getrlimit(p, res, old, *_):
    return sys_prlimit64(p, 0, res, 0, old)


@syscall("setrlimit", "i p")
def sys_setrlimit(p, res, new, *_):
    return sys_prlimit64(p, 0, res, new, 0)


@syscall("getrusage", "i p")
def sys_getrusage(p, who, usage, *_):
    who = {0: resource.RUSAGE_SELF, -1: resource.RUSAGE_CHILDREN,
           1: getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)}.get(abi_int(who))
    if who is None:
        raise OSError(errno.EINVAL, "who")
    p.mm.write(usage, _rusage(resource.getrusage(who)))
    return 0


@syscall("getpriority", "i i")
def sys_getpriority(p, which, who, *_):
    return 20 - os.getpriority(abi_int(which), abi_int(who))


@syscall("setpriority", "i i i")
def sys_setpriority(p, which, who, prio, *_):
    os.setpriority(abi_int(which), abi_int(who), abi_int(prio))
    return 0


@syscall("sched_getaffinity", "i u p")
def sys_sched_getaffinity(p, pid, size, mask, *_):
    cpus = os.sched_getaffinity(abi_int(pid) if abi_int(pid) != p.pid else 0)
    n = max(8, ((max(cpus) >> 6) + 1) * 8)
    if size < n:
        raise OSError(errno.EINVAL, "mask too small")
    value = sum(1 << c for c in cpus)
    p.mm.write(mask, value.to_bytes(n, "little"))
    return n


@syscall("sched_setaffinity", "i u p")
def sys_sched_setaffinity(p, *_):
    return 0


@syscall("sched_yield")
def sys_sched_yield(p, *_):
    os.sched_yield()
    return 0


@syscall("sched_getscheduler", "i")
def sys_sched_getscheduler(p, *_):
    return 0


@syscall("sched_getparam", "i p")
def sys_sched_getparam(p, pid, param, *_):
    p.mm.write_u32(param, 0)
    return 0


@syscall("prctl", "i x x x x")
def sys_prctl(p, option, a2, a3, a4, a5, *_):
    option = abi_int(option)
    if option == 15:                           # PR_SET_NAME
        p.name = p.mm.read_cstr(a2, 4096)[:15]
        return 0
    if option == 16:                           # PR_GET_NAME
        p.mm.write(a2, p.name.ljust(16, b"\0"))
        return 0
    if option in (1, 2):                       # PR_SET_PDEATHSIG, PR_GET_PDEATHSIG
        if option == 2:
            p.mm.write_u32(a2, 0)
        return 0
    if option in (3, 4):                       # PR_GET/SET_DUMPABLE
        return 1 if option == 3 else 0
    if option == 38 or option == 39:           # PR_SET/GET_NO_NEW_PRIVS
        return 0
    raise OSError(errno.EINVAL, "prctl option")


@syscall("personality", "x")
def sys_personality(p, persona, *_):
    return 0
