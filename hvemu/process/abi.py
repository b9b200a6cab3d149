"""The Linux riscv64 user ABI, as numbers: system calls, signals, flags, structure layouts.

riscv64 uses the kernel's generic tables (include/uapi/asm-generic/unistd.h, signal.h,
errno.h, fcntl.h, stat.h), so errno and signal numbers equal those of x86-64 and arm64
Linux hosts; open(2) flags differ between hosts (arm64 swaps O_DIRECTORY and friends),
so they are translated bit by bit.  Structure layouts are those of riscv64's headers
(checked against Debian's cross libc: struct stat is 128 bytes, the signal frame's
ucontext puts uc_mcontext at 176).
"""
from __future__ import annotations

import errno
import os
import signal
import struct

# ---------------------------------------------------------------------------
# system calls: number -> name (asm-generic/unistd.h; 258/259 are riscv's own)
# ---------------------------------------------------------------------------

SYSCALL_NAMES = {
    0: "io_setup", 1: "io_destroy", 2: "io_submit", 3: "io_cancel", 4: "io_getevents",
    5: "setxattr", 6: "lsetxattr", 7: "fsetxattr", 8: "getxattr", 9: "lgetxattr", 10: "fgetxattr",
    11: "listxattr", 12: "llistxattr", 13: "flistxattr", 14: "removexattr", 15: "lremovexattr",
    16: "fremovexattr", 17: "getcwd", 18: "lookup_dcookie", 19: "eventfd2", 20: "epoll_create1",
    21: "epoll_ctl", 22: "epoll_pwait", 23: "dup", 24: "dup3", 25: "fcntl", 26: "inotify_init1",
    27: "inotify_add_watch", 28: "inotify_rm_watch", 29: "ioctl", 30: "ioprio_set",
    31: "ioprio_get", 32: "flock", 33: "mknodat", 34: "mkdirat", 35: "unlinkat", 36: "symlinkat",
    37: "linkat", 39: "umount2", 40: "mount", 41: "pivot_root", 42: "nfsservctl", 43: "statfs",
    44: "fstatfs", 45: "truncate", 46: "ftruncate", 47: "fallocate", 48: "faccessat", 49: "chdir",
    50: "fchdir", 51: "chroot", 52: "fchmod", 53: "fchmodat", 54: "fchownat", 55: "fchown",
    56: "openat", 57: "close", 58: "vhangup", 59: "pipe2", 60: "quotactl", 61: "getdents64",
    62: "lseek", 63: "read", 64: "write", 65: "readv", 66: "writev", 67: "pread64",
    68: "pwrite64", 69: "preadv", 70: "pwritev", 71: "sendfile", 72: "pselect6", 73: "ppoll",
    74: "signalfd4", 75: "vmsplice", 76: "splice", 77: "tee", 78: "readlinkat", 79: "newfstatat",
    80: "fstat", 81: "sync", 82: "fsync", 83: "fdatasync", 84: "sync_file_range",
    85: "timerfd_create", 86: "timerfd_settime", 87: "timerfd_gettime", 88: "utimensat",
    89: "acct", 90: "capget", 91: "capset", 92: "personality", 93: "exit", 94: "exit_group",
    95: "waitid", 96: "set_tid_address", 97: "unshare", 98: "futex", 99: "set_robust_list",
    100: "get_robust_list", 101: "nanosleep", 102: "getitimer", 103: "setitimer",
    104: "kexec_load", 105: "init_module", 106: "delete_module", 107: "timer_create",
    108: "timer_gettime", 109: "timer_getoverrun", 110: "timer_settime", 111: "timer_delete",
    112: "clock_settime", 113: "clock_gettime", 114: "clock_getres", 115: "clock_nanosleep",
    116: "syslog", 117: "ptrace", 118: "sched_setparam", 119: "sched_setscheduler",
    120: "sched_getscheduler", 121: "sched_getparam", 122: "sched_setaffinity",
    123: "sched_getaffinity", 124: "sched_yield", 125: "sched_get_priority_max",
    126: "sched_get_priority_min", 127: "sched_rr_get_interval", 128: "restart_syscall",
    129: "kill", 130: "tkill", 131: "tgkill", 132: "sigaltstack", 133: "rt_sigsuspend",
    134: "rt_sigaction", 135: "rt_sigprocmask", 136: "rt_sigpending", 137: "rt_sigtimedwait",
    138: "rt_sigqueueinfo", 139: "rt_sigreturn", 140: "setpriority", 141: "getpriority",
    142: "reboot", 143: "setregid", 144: "setgid", 145: "setreuid", 146: "setuid",
    147: "setresuid", 148: "getresuid", 149: "setresgid", 150: "getresgid", 151: "setfsuid",
    152: "setfsgid", 153: "times", 154: "setpgid", 155: "getpgid", 156: "getsid", 157: "setsid",
    158: "getgroups", 159: "setgroups", 160: "uname", 161: "sethostname", 162: "setdomainname",
    163: "getrlimit", 164: "setrlimit", 165: "getrusage", 166: "umask", 167: "prctl",
    168: "getcpu", 169: "gettimeofday", 170: "settimeofday", 171: "adjtimex", 172: "getpid",
    173: "getppid", 174: "getuid", 175: "geteuid", 176: "getgid", 177: "getegid", 178: "gettid",
    179: "sysinfo", 180: "mq_open", 181: "mq_unlink", 182: "mq_timedsend", 183: "mq_timedreceive",
    184: "mq_notify", 185: "mq_getsetattr", 186: "msgget", 187: "msgctl", 188: "msgrcv",
    189: "msgsnd", 190: "semget", 191: "semctl", 192: "semtimedop", 193: "semop", 194: "shmget",
    195: "shmctl", 196: "shmat", 197: "shmdt", 198: "socket", 199: "socketpair", 200: "bind",
    201: "listen", 202: "accept", 203: "connect", 204: "getsockname", 205: "getpeername",
    206: "sendto", 207: "recvfrom", 208: "setsockopt", 209: "getsockopt", 210: "shutdown",
    211: "sendmsg", 212: "recvmsg", 213: "readahead", 214: "brk", 215: "munmap", 216: "mremap",
    217: "add_key", 218: "request_key", 219: "keyctl", 220: "clone", 221: "execve", 222: "mmap",
    223: "fadvise64", 224: "swapon", 225: "swapoff", 226: "mprotect", 227: "msync", 228: "mlock",
    229: "munlock", 230: "mlockall", 231: "munlockall", 232: "mincore", 233: "madvise",
    234: "remap_file_pages", 235: "mbind", 236: "get_mempolicy", 237: "set_mempolicy",
    238: "migrate_pages", 239: "move_pages", 240: "rt_tgsigqueueinfo", 241: "perf_event_open",
    242: "accept4", 243: "recvmmsg", 258: "riscv_hwprobe", 259: "riscv_flush_icache",
    260: "wait4", 261: "prlimit64", 262: "fanotify_init", 263: "fanotify_mark",
    264: "name_to_handle_at", 265: "open_by_handle_at", 266: "clock_adjtime", 267: "syncfs",
    268: "setns", 269: "sendmmsg", 270: "process_vm_readv", 271: "process_vm_writev", 272: "kcmp",
    273: "finit_module", 274: "sched_setattr", 275: "sched_getattr", 276: "renameat2",
    277: "seccomp", 278: "getrandom", 279: "memfd_create", 280: "bpf", 281: "execveat",
    282: "userfaultfd", 283: "membarrier", 284: "mlock2", 285: "copy_file_range", 286: "preadv2",
    287: "pwritev2", 288: "pkey_mprotect", 289: "pkey_alloc", 290: "pkey_free", 291: "statx",
    292: "io_pgetevents", 293: "rseq", 294: "kexec_file_load", 424: "pidfd_send_signal",
    425: "io_uring_setup", 426: "io_uring_enter", 427: "io_uring_register", 428: "open_tree",
    429: "move_mount", 430: "fsopen", 431: "fsconfig", 432: "fsmount", 433: "fspick",
    434: "pidfd_open", 435: "clone3", 436: "close_range", 437: "openat2", 438: "pidfd_getfd",
    439: "faccessat2", 440: "process_madvise", 441: "epoll_pwait2", 442: "mount_setattr",
    443: "quotactl_fd", 444: "landlock_create_ruleset", 445: "landlock_add_rule",
    446: "landlock_restrict_self", 447: "memfd_secret", 448: "process_mrelease",
    449: "futex_waitv", 450: "set_mempolicy_home_node",

}
SYSCALL_NUMBERS = {name: nr for nr, name in SYSCALL_NAMES.items()}

# ---------------------------------------------------------------------------
# signals (asm-generic/signal.h)
# ---------------------------------------------------------------------------

NSIG = 64
SIG_DFL, SIG_IGN = 0, 1
SIGHUP, SIGINT, SIGQUIT, SIGILL = 1, 2, 3, 4
SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2 = 9, 10, 11, 12
SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT = 13, 14, 15, 16
SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP = 17, 18, 19, 20
SIGTTIN, SIGTTOU, SIGURG, SIGXCPU = 21, 22, 23, 24
SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH = 25, 26, 27, 28
SIGIO, SIGPWR, SIGSYS = 29, 30, 31
SIGNAL_NAMES = {
    1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
    7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
    13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD",
    18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG",
    24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH",
    29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}

# What a signal does when its handler is SIG_DFL (signal(7)).
DEFAULT_IGNORE = frozenset({SIGCHLD, SIGURG, SIGWINCH, SIGCONT})
DEFAULT_STOP = frozenset({SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU})
DEFAULT_CORE = frozenset({SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV,
                          SIGXCPU, SIGXFSZ, SIGSYS})
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))

# sigaction flags
SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO = 1, 2, 4
SA_ONSTACK, SA_RESTART, SA_NODEFER, SA_RESETHAND = 0x08000000, 0x10000000, 0x40000000, 0x80000000
SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2
SS_ONSTACK, SS_DISABLE = 1, 2
MINSIGSTKSZ = 2048

# si_code values
SI_USER, SI_KERNEL, SI_TKILL = 0, 0x80, -6
SEGV_MAPERR, SEGV_ACCERR = 1, 2
ILL_ILLOPC, ILL_PRVOPC = 1, 5
BUS_ADRALN = 1
TRAP_BRKPT = 1
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 5, 6

# The signal frame (arch/riscv/kernel/signal.c, struct rt_sigframe): siginfo (128
# bytes), then struct ucontext: uc_flags, uc_link, uc_stack (24), uc_sigmask (8, then
# 120 unused), uc_mcontext at 176: pc, x1..x31, f0..f31, fcsr, and 12 reserved bytes
# up to the 528 bytes of the Q state; 1088 bytes in all, 16-aligned.
SIGINFO_SIZE = 128
UC_OFFSET = SIGINFO_SIZE
UC_STACK, UC_SIGMASK, UC_MCONTEXT = 16, 40, 176
MC_FPREGS = 256
FRAME_SIZE = SIGINFO_SIZE + 960

# ---------------------------------------------------------------------------
# errno: Linux's generic numbers, which the host's are (checked at import)
# ---------------------------------------------------------------------------

assert (errno.ENOSYS, errno.EAGAIN, errno.ENOTSUP, errno.ELOOP) == (38, 11, 95, 40), \
    "the process VM needs a Linux host with the generic errno numbers"
ERESTARTSYS = 512          # internal: restart the call after a SA_RESTART handler


def errno_name(e: int) -> str:
    return errno.errorcode.get(e, f"E{e}")


# ---------------------------------------------------------------------------
# files (asm-generic/fcntl.h): guest open flags -> host open flags
# ---------------------------------------------------------------------------

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW, AT_REMOVEDIR, AT_SYMLINK_FOLLOW = 0x100, 0x200, 0x400
AT_EACCESS, AT_NO_AUTOMOUNT, AT_EMPTY_PATH = 0x200, 0x800, 0x1000
O_ACCMODE = 3
O_CREAT, O_EXCL, O_NOCTTY, O_TRUNC = 0o100, 0o200, 0o400, 0o1000
O_APPEND, O_NONBLOCK = 0o2000, 0o4000
O_DSYNC, O_ASYNC, O_DIRECT, O_LARGEFILE = 0o10000, 0o20000, 0o40000, 0o100000
O_DIRECTORY, O_NOFOLLOW, O_NOATIME, O_CLOEXEC = 0o200000, 0o400000, 0o1000000, 0o2000000
O_SYNC, O_PATH, O_TMPFILE = 0o4010000, 0o10000000, 0o20200000
_OPEN_FLAGS = [(O_CREAT, "O_CREAT"), (O_EXCL, "O_EXCL"), (O_NOCTTY, "O_NOCTTY"),
               (O_TRUNC, "O_TRUNC"), (O_APPEND, "O_APPEND"), (O_NONBLOCK, "O_NONBLOCK"),
               (O_DSYNC, "O_DSYNC"), (O_ASYNC, "O_ASYNC"), (O_DIRECT, "O_DIRECT"),
               (O_LARGEFILE, "O_LARGEFILE"), (O_DIRECTORY, "O_DIRECTORY"),
               (O_NOFOLLOW, "O_NOFOLLOW"), (O_NOATIME, "O_NOATIME"), (O_CLOEXEC, "O_CLOEXEC"),
               (O_PATH, "O_PATH")]
_HOST_OPEN = {O_CREAT: os.O_CREAT, O_EXCL: os.O_EXCL, O_NOCTTY: os.O_NOCTTY,
              O_TRUNC: os.O_TRUNC, O_APPEND: os.O_APPEND, O_NONBLOCK: os.O_NONBLOCK,
              O_DSYNC: os.O_DSYNC, O_ASYNC: getattr(os, "O_ASYNC", 0),
              O_DIRECT: getattr(os, "O_DIRECT", 0), O_LARGEFILE: 0,
              O_DIRECTORY: os.O_DIRECTORY, O_NOFOLLOW: os.O_NOFOLLOW,
              O_NOATIME: getattr(os, "O_NOATIME", 0), O_PATH: getattr(os, "O_PATH", 0)}
_TMPFILE_BIT = O_TMPFILE & ~O_DIRECTORY


def host_open_flags(flags: int) -> int:
    """The host's open flags for the guest's (O_CLOEXEC is the runtime's own business)."""
    out = flags & O_ACCMODE
    for bit, host in _HOST_OPEN.items():
        if flags & bit:
            out |= host
    if flags & _TMPFILE_BIT:
        out |= getattr(os, "O_TMPFILE", 0)
    return out


def guest_status_flags(host: int) -> int:
    """F_GETFL: the host's status flags as the guest's bits."""
    out = host & O_ACCMODE
    for bit, h in _HOST_OPEN.items():
        if h and host & h:
            out |= bit
    return out | O_LARGEFILE


def open_flags_text(flags: int) -> str:
    parts = [("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[flags & 3]]
    rest = flags & ~3
    for bit, name in _OPEN_FLAGS:
        if rest & bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(f"{rest:#o}")
    return "|".join(parts)


F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL = 0, 1, 2, 3, 4
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7
F_SETOWN, F_GETOWN = 8, 9
F_DUPFD_CLOEXEC = 1030
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032
FD_CLOEXEC = 1

# struct stat (asm-generic/stat.h): dev, ino, mode, nlink, uid, gid, rdev, pad, size,
# blksize, pad, blocks, atime, atime_nsec, mtime, mtime_nsec, ctime, ctime_nsec, 2 unused
STAT = struct.Struct("<QQIIIIQQqiiqqQqQqQII")
assert STAT.size == 128


def pack_stat(st: os.stat_result) -> bytes:
    return STAT.pack(st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
                     st.st_rdev, 0, st.st_size, st.st_blksize, 0, st.st_blocks,
                     st.st_atime_ns // 10**9, st.st_atime_ns % 10**9,
                     st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9,
                     st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9, 0, 0)


# struct statx (linux/stat.h), 256 bytes: the basic fields, from the host's stat
STATX_BASIC_STATS = 0x7ff
STATX_HEAD = struct.Struct("<IIQIIIHHQQQQ")             # mask .. attributes_mask (0x40)
STATX_TS = struct.Struct("<qIi")


def pack_statx(st: os.stat_result) -> bytes:
    def ts(ns: int) -> bytes:
        return STATX_TS.pack(ns // 10**9, ns % 10**9, 0)
    head = STATX_HEAD.pack(STATX_BASIC_STATS, st.st_blksize, 0, st.st_nlink, st.st_uid,
                           st.st_gid, st.st_mode & 0xFFFF, 0, st.st_ino, st.st_size,
                           st.st_blocks, 0)
    times = ts(st.st_atime_ns) + ts(getattr(st, "st_birthtime_ns", 0) or 0) + \
        ts(st.st_ctime_ns) + ts(st.st_mtime_ns)
    devs = struct.pack("<IIII", os.major(st.st_rdev), os.minor(st.st_rdev),
                       os.major(st.st_dev), os.minor(st.st_dev))
    out = head + times + devs
    return out + bytes(256 - len(out))


# d_type of struct linux_dirent64
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12

# ---------------------------------------------------------------------------
# memory (asm-generic/mman-common.h)
# ---------------------------------------------------------------------------

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE, MAP_TYPE = 1, 2, 3, 0xF
MAP_FIXED, MAP_ANONYMOUS, MAP_NORESERVE, MAP_GROWSDOWN = 0x10, 0x20, 0x4000, 0x0100
MAP_POPULATE, MAP_STACK, MAP_FIXED_NOREPLACE = 0x8000, 0x20000, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MADV_DONTNEED, MADV_FREE = 4, 8

# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_PIDFD, CLONE_PTRACE, CLONE_VFORK, CLONE_PARENT = 0x1000, 0x2000, 0x4000, 0x8000
CLONE_THREAD, CLONE_NEWNS, CLONE_SYSVSEM, CLONE_SETTLS = 0x10000, 0x20000, 0x40000, 0x80000
CLONE_PARENT_SETTID, CLONE_CHILD_CLEARTID = 0x100000, 0x200000
CLONE_DETACHED, CLONE_UNTRACED, CLONE_CHILD_SETTID = 0x400000, 0x800000, 0x1000000
CLONE_NAMES = [(CLONE_VM, "CLONE_VM"), (CLONE_FS, "CLONE_FS"), (CLONE_FILES, "CLONE_FILES"),
               (CLONE_SIGHAND, "CLONE_SIGHAND"), (CLONE_VFORK, "CLONE_VFORK"),
               (CLONE_THREAD, "CLONE_THREAD"), (CLONE_SETTLS, "CLONE_SETTLS"),
               (CLONE_PARENT_SETTID, "CLONE_PARENT_SETTID"),
               (CLONE_CHILD_CLEARTID, "CLONE_CHILD_CLEARTID"),
               (CLONE_CHILD_SETTID, "CLONE_CHILD_SETTID")]

# auxiliary vector (linux/auxvec.h)
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ = 0, 3, 4, 5, 6
AT_BASE, AT_FLAGS, AT_ENTRY = 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51


def hwcap(extensions: str) -> int:
    """AT_HWCAP on riscv: bit (letter - 'a') for each single-letter extension."""
    return sum(1 << (ord(c) - ord("a")) for c in set(extensions))


def signal_name(sig: int) -> str:
    return SIGNAL_NAMES.get(sig, f"SIG{sig}")


def signal_description(sig: int) -> str:
    try:
        return signal.strsignal(sig) or signal_name(sig)
    except ValueError:
        return signal_name(sig)
