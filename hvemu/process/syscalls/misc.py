"""Time, sleeping, timers, uname, getrandom, sysinfo, futex and riscv's own calls."""
from __future__ import annotations

import errno
import os
import signal
import struct
import time

from ..runtime import abi_int
from . import syscall

TIMESPEC = struct.Struct("<qq")
CLOCKS = {0: time.CLOCK_REALTIME, 1: time.CLOCK_MONOTONIC, 2: time.CLOCK_PROCESS_CPUTIME_ID,
          3: time.CLOCK_THREAD_CPUTIME_ID, 4: getattr(time, "CLOCK_MONOTONIC_RAW", 1),
          5: 5, 6: 6, 7: getattr(time, "CLOCK_BOOTTIME", 7), 8: 8, 9: 9, 11: 11}
TIMER_ABSTIME = 1


def _clock(clk: int) -> int:
    clk = abi_int(clk)
    if clk not in CLOCKS:
        raise OSError(errno.EINVAL, "clock")
    return CLOCKS[clk]


@syscall("clock_gettime", "i p")
def sys_clock_gettime(p, clk, tp, *_):
    ns = time.clock_gettime_ns(_clock(clk))
    p.mm.write(tp, TIMESPEC.pack(ns // 10**9, ns % 10**9))
    return 0


@syscall("clock_getres", "i p")
def sys_clock_getres(p, clk, tp, *_):
    res = time.clock_getres(_clock(clk))
    if tp:
        ns = round(res * 1e9)
        p.mm.write(tp, TIMESPEC.pack(ns // 10**9, ns % 10**9))
    return 0


@syscall("gettimeofday", "p p")
def sys_gettimeofday(p, tv, tz, *_):
    ns = time.time_ns()
    if tv:
        p.mm.write(tv, struct.pack("<qq", ns // 10**9, (ns % 10**9) // 1000))
    if tz:
        p.mm.write(tz, bytes(8))
    return 0


def _read_ts(p, ptr: int) -> int:
    sec, nsec = TIMESPEC.unpack(p.mm.read(ptr, 16))
    if sec < 0 or not 0 <= nsec < 10**9:
        raise OSError(errno.EINVAL, "bad timespec")
    return sec * 10**9 + nsec


def _sleep(p, ns: int, rem_ptr: int) -> int:
    from ..runtime import Interrupted
    end = time.monotonic_ns() + ns
    try:
        while True:
            left = end - time.monotonic_ns()
            if left <= 0:
                return 0
            p.wait_event([], left / 1e9, restartable=False)
    except Interrupted:
        if rem_ptr:
            left = max(0, end - time.monotonic_ns())
            p.mm.write(rem_ptr, TIMESPEC.pack(left // 10**9, left % 10**9))
        return -errno.EINTR


@syscall("nanosleep", "p p")
def sys_nanosleep(p, req, rem, *_):
    return _sleep(p, _read_ts(p, req), rem)


@syscall("clock_nanosleep", "i x p p")
def sys_clock_nanosleep(p, clk, flags, req, rem, *_):
    clock = _clock(clk)
    ns = _read_ts(p, req)
    if flags & TIMER_ABSTIME:
        ns = max(0, ns - time.clock_gettime_ns(clock))
        rem = 0
    return _sleep(p, ns, rem)


ITIMERVAL = struct.Struct("<qqqq")


def _itimer(which: int) -> int:
    which = abi_int(which)
    if which not in (0, 1, 2):
        raise OSError(errno.EINVAL, "which")
    return (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)[which]


def _pack_itimer(value: float, interval: float) -> bytes:
    def tv(t):
        return int(t), int(round((t - int(t)) * 1e6))
    return ITIMERVAL.pack(*tv(interval), *tv(value))


@syscall("getitimer", "i p")
def sys_getitimer(p, which, curr, *_):
    value, interval = signal.getitimer(_itimer(which))
    p.mm.write(curr, _pack_itimer(value, interval))
    return 0


@syscall("setitimer", "i p p")
def sys_setitimer(p, which, new, old, *_):
    i_s, i_us, v_s, v_us = ITIMERVAL.unpack(p.mm.read(new, 32))
    value, interval = signal.setitimer(_itimer(which), v_s + v_us / 1e6, i_s + i_us / 1e6)
    if old:
        p.mm.write(old, _pack_itimer(value, interval))
    return 0


@syscall("times", "p")
def sys_times(p, buf, *_):
    t = os.times()
    hz = 100
    if buf:
        p.mm.write(buf, struct.pack("<qqqq", int(t.user * hz), int(t.system * hz),
                                    int(t.children_user * hz), int(t.children_system * hz)))
    return int(t.elapsed * hz) & 0x7FFF_FFFF_FFFF_FFFF


@syscall("uname", "p")
def sys_uname(p, buf, *_):
    u = os.uname()
    fields = [u.sysname, u.nodename, u.release, u.version, "riscv64", "(none)"]
    p.mm.write(buf, b"".join(os.fsencode(f)[:64].ljust(65, b"\0") for f in fields))
    return 0


@syscall("getrandom", "p u x")
def sys_getrandom(p, buf, count, flags, *_):
    n = min(count, 1 << 25)
    p.mm.write(buf, os.urandom(n))
    return n


@syscall("sysinfo", "p")
def sys_sysinfo(p, info, *_):
    with open("/proc/uptime") as f:
        uptime = int(float(f.read().split()[0]))
    loads = [int(x * 65536) for x in os.getloadavg()]
    total = p.opts.memory
    free = total - p.mm.frames_used * 4096
    data = struct.pack("<q3Q6QH6xQQI", uptime, *loads, total, free, 0, 0, 0, 0, 1, 0, 0, 1)
    p.mm.write(info, data.ljust(112, b"\0"))
    return 0


@syscall("getcpu", "p p p")
def sys_getcpu(p, cpu, node, *_):
    if cpu:
        p.mm.write_u32(cpu, 0)
    if node:
        p.mm.write_u32(node, 0)
    return 0


FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 0, 1, 9, 10


@syscall("futex", "p i i p p i")
def sys_futex(p, uaddr, op, val, timeout, uaddr2, val3):
    """One thread: WAKE wakes no one; WAIT on a matching word sleeps until a signal."""
    cmd = abi_int(op) & 0x7F
    if cmd in (FUTEX_WAKE, FUTEX_WAKE_BITSET):
        return 0
    if cmd in (FUTEX_WAIT, FUTEX_WAIT_BITSET):
        word = int.from_bytes(p.mm.read(uaddr, 4), "little")
        if word != val & 0xFFFF_FFFF:
            return -errno.EAGAIN
        seconds = None
        if timeout:
            ns = _read_ts(p, timeout)
            seconds = ns / 1e9 if cmd == FUTEX_WAIT else \
                max(0.0, (ns - time.clock_gettime_ns(time.CLOCK_MONOTONIC)) / 1e9)
        from ..runtime import Interrupted
        try:
            p.wait_for([], seconds, restartable=False)
        except Interrupted:
            return -errno.EINTR
        return -errno.ETIMEDOUT
    return -errno.ENOSYS


@syscall("riscv_flush_icache", "p p x")
def sys_riscv_flush_icache(p, *_):
    return 0                 # the core drops decoded code on every store already


@syscall("membarrier", "i x i")
def sys_membarrier(p, cmd, *_):
    return 0 if abi_int(cmd) == 0 else -errno.EINVAL
