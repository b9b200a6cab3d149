"""Signals: sigaction, sigprocmask, sigaltstack, kill and friends, rt_sigreturn,
sigsuspend, sigpending, sigtimedwait (the mechanics are in ../signals.py)."""
from __future__ import annotations

import errno
import os
import struct
import time

from .. import abi
from ..runtime import KEEP, Interrupted, abi_int
from ..signals import SigAction, bit, siginfo
from . import syscall

SIGSET_SIZE = 8


def _check_sig(sig: int) -> int:
    sig = abi_int(sig)
    if not 1 <= sig <= abi.NSIG:
        raise OSError(errno.EINVAL, "bad signal")
    return sig


@syscall("rt_sigaction", "sig p p u")
def sys_rt_sigaction(p, sig, act, oldact, sigsetsize, *_):
    if sigsetsize != SIGSET_SIZE:
        raise OSError(errno.EINVAL, "sigsetsize")
    sig = _check_sig(sig)
    current = p.sig.actions[sig]
    if oldact:
        p.mm.write(oldact, current.pack())
    if act:
        if sig in (abi.SIGKILL, abi.SIGSTOP):
            raise OSError(errno.EINVAL, "SIGKILL and SIGSTOP cannot be caught")
        new = SigAction.unpack(p.mm.read(act, 24))
        new.mask &= ~abi.UNBLOCKABLE
        p.sig.actions[sig] = new
        if new.handler == abi.SIG_IGN or (new.handler == abi.SIG_DFL and
                                          sig in abi.DEFAULT_IGNORE):
            if sig in p.sig.pending:            # a pending signal now ignored is dropped
                p.sig.pending.pop(sig)
                p.sig.pending_mask &= ~bit(sig)
                p.sig.set_blocked(p.sig.blocked)
        p.route(sig)
    return 0


@syscall("rt_sigprocmask", "i p p u")
def sys_rt_sigprocmask(p, how, set_ptr, oldset, sigsetsize, *_):
    if sigsetsize != SIGSET_SIZE:
        raise OSError(errno.EINVAL, "sigsetsize")
    old = p.sig.blocked
    if set_ptr:
        mask = int.from_bytes(p.mm.read(set_ptr, 8), "little")
        how = abi_int(how)
        if how == abi.SIG_BLOCK:
            p.sig.set_blocked(old | mask)
        elif how == abi.SIG_UNBLOCK:
            p.sig.set_blocked(old & ~mask)
        elif how == abi.SIG_SETMASK:
            p.sig.set_blocked(mask)
        else:
            raise OSError(errno.EINVAL, "how")
    if oldset:
        p.mm.write(oldset, old.to_bytes(8, "little"))
    return 0


@syscall("rt_sigpending", "p u")
def sys_rt_sigpending(p, set_ptr, sigsetsize, *_):
    p.mm.write(set_ptr, (p.sig.pending_mask & p.sig.blocked).to_bytes(8, "little"))
    return 0


@syscall("rt_sigreturn", "", "d")
def sys_rt_sigreturn(p, *_):
    return p.sigreturn()


@syscall("rt_sigsuspend", "p u")
def sys_rt_sigsuspend(p, mask_ptr, sigsetsize, *_):
    if sigsetsize != SIGSET_SIZE:
        raise OSError(errno.EINVAL, "sigsetsize")
    mask = int.from_bytes(p.mm.read(mask_ptr, 8), "little")
    old = p.sig.blocked
    p.sig.set_blocked(mask)
    try:
        while True:
            p.wait_event([], restartable=False)
    except Interrupted:
        p.saved_mask = old                      # the handler's frame restores it
        return -errno.EINTR


@syscall("rt_sigtimedwait", "p p p u")
def sys_rt_sigtimedwait(p, set_ptr, info_ptr, tmo, sigsetsize, *_):
    from .files import _timespec
    wanted = int.from_bytes(p.mm.read(set_ptr, 8), "little") & ~abi.UNBLOCKABLE
    timeout = _timespec(p, tmo)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        hit = p.sig.pending_mask & wanted
        if hit:
            sig = (hit & -hit).bit_length()
            info = p.sig.pending.pop(sig)
            p.sig.pending_mask &= ~bit(sig)
            p.sig.set_blocked(p.sig.blocked)
            if info_ptr:
                p.mm.write(info_ptr, info)
            return sig
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return -errno.EAGAIN
        p.wait_event([], left, restartable=False, wake_mask=wanted)


@syscall("sigaltstack", "p p")
def sys_sigaltstack(p, ss, old_ss, *_):
    sp = p.vcpu.get_x(2)
    cur_sp, cur_flags, cur_size = p.sig.altstack
    on = p.sig.on_altstack(sp)
    if old_ss:
        flags = abi.SS_ONSTACK if on else cur_flags
        p.mm.write(old_ss, struct.pack("<Qi4xQ", cur_sp, flags, cur_size))
    if ss:
        new_sp, flags, size = struct.unpack("<Qi4xQ", p.mm.read(ss, 24))
        if on:
            raise OSError(errno.EPERM, "on the alternate stack")
        if flags & ~(abi.SS_DISABLE | (1 << 31)):
            raise OSError(errno.EINVAL, "flags")
        if flags & abi.SS_DISABLE:
            p.sig.altstack = (0, abi.SS_DISABLE, 0)
        else:
            if size < abi.MINSIGSTKSZ:
                raise OSError(errno.ENOMEM, "too small")
            p.sig.altstack = (new_sp, 0, size)
    return 0


def _self_target(p, pid: int) -> bool:
    return pid == p.pid


@syscall("kill", "i sig")
def sys_kill(p, pid, sig, *_):
    pid, sig = abi_int(pid), abi_int(sig)
    if not 0 <= sig <= abi.NSIG:
        raise OSError(errno.EINVAL, "bad signal")
    if _self_target(p, pid) and sig:
        p.post_signal(sig, siginfo(sig, abi.SI_USER, pid=p.pid, uid=os.getuid()))
        return 0
    os.kill(pid, sig)
    return 0


@syscall("tkill", "i sig")
def sys_tkill(p, tid, sig, *_):
    return sys_tgkill(p, p.pid, tid, sig)


@syscall("tgkill", "i i sig")
def sys_tgkill(p, tgid, tid, sig, *_):
    tgid, tid, sig = abi_int(tgid), abi_int(tid), abi_int(sig)
    if not 0 <= sig <= abi.NSIG or tid <= 0:
        raise OSError(errno.EINVAL, "bad arguments")
    if tid == p.pid and tgid in (p.pid, -1):
        if sig:
            p.post_signal(sig, siginfo(sig, abi.SI_TKILL, pid=p.pid, uid=os.getuid()))
        return 0
    if tgid > 0:
        os.kill(tid if tid == tgid else tgid, sig)
        return 0
    raise OSError(errno.ESRCH, "no such thread")


@syscall("rt_sigqueueinfo", "i sig p")
def sys_rt_sigqueueinfo(p, pid, sig, info, *_):
    return sys_kill(p, pid, sig)


_ = KEEP
