"""Signals: the guest's dispositions, mask and pending set; the RISC-V signal frame; and
the plumbing that turns host signals into guest signals.

Guest state is what Linux keeps per process: a sigaction per signal, the blocked mask,
the pending set (standard signals do not queue: one pending instance each), the
alternate stack.  A signal is delivered when the guest next leaves the core (after a
system call, a fault, or a kick): the runtime pushes an `rt_sigframe` (siginfo, then a
ucontext whose uc_mcontext holds pc, x1-x31, f0-f31 and fcsr) on the stack, or on the
sigaltstack with SA_ONSTACK, and enters the handler with a0 = signal, a1 = &siginfo,
a2 = &ucontext and ra = the trampoline; rt_sigreturn restores all of it.

Host signals (Ctrl-C's SIGINT, SIGPIPE, SIGCHLD, a kill(2) from another process) reach
hvemu's Python handler, which queues them for the guest.  The guest may be deep in a
compute loop inside the core, where Python handlers cannot run, so a helper thread
waits on `signal.set_wakeup_fd`'s pipe and kicks the vCPU (`VCpu.kick`: the core
returns at its next page change); a blocking system call polls a second pipe the
handler writes, so it can return EINTR (or restart, with SA_RESTART).
"""
from __future__ import annotations

import os
import signal
import struct
import threading

from . import abi

_SIGACTION = struct.Struct("<QQQ")          # handler, flags, mask (riscv: no sa_restorer)


def bit(sig: int) -> int:
    return 1 << (sig - 1)


class SigAction:
    __slots__ = ("handler", "flags", "mask")

    def __init__(self, handler: int = abi.SIG_DFL, flags: int = 0, mask: int = 0):
        self.handler = handler
        self.flags = flags
        self.mask = mask

    def pack(self) -> bytes:
        return _SIGACTION.pack(self.handler, self.flags, self.mask)

    @classmethod
    def unpack(cls, data: bytes) -> SigAction:
        return cls(*_SIGACTION.unpack(data))


class SignalState:
    """One process's signal dispositions, mask, pending signals and alternate stack."""

    def __init__(self):
        self.actions = [SigAction() for _ in range(abi.NSIG + 1)]
        self.blocked = 0
        self.pending: dict[int, bytes] = {}     # signal -> its siginfo (128 bytes)
        self.pending_mask = 0
        self.ready = False                      # a pending signal is not blocked
        self.altstack = (0, abi.SS_DISABLE, 0)  # ss_sp, ss_flags, ss_size

    def _update(self) -> None:
        self.ready = bool(self.pending_mask & ~self.blocked)

    def set_blocked(self, mask: int) -> None:
        self.blocked = mask & ~abi.UNBLOCKABLE & ((1 << abi.NSIG) - 1)
        self._update()

    def post(self, sig: int, info: bytes) -> None:
        if sig not in self.pending:
            self.pending[sig] = info
            self.pending_mask |= bit(sig)
            self._update()

    def take(self) -> tuple[int, bytes] | None:
        """The lowest-numbered pending, unblocked signal, removed from the pending set
        (synchronous faults are delivered at once and never wait here)."""
        ready = self.pending_mask & ~self.blocked
        if not ready:
            return None
        sig = (ready & -ready).bit_length()
        self.pending_mask &= ~bit(sig)
        info = self.pending.pop(sig)
        self._update()
        return sig, info

    def exec_reset(self) -> None:
        """execve: caught signals go back to SIG_DFL; ignored stay ignored; the mask and
        pending set survive; the alternate stack is gone."""
        for a in self.actions:
            if a.handler not in (abi.SIG_DFL, abi.SIG_IGN):
                a.handler, a.flags, a.mask = abi.SIG_DFL, 0, 0
        self.altstack = (0, abi.SS_DISABLE, 0)

    def on_altstack(self, sp: int) -> bool:
        ss_sp, flags, size = self.altstack
        return not flags & abi.SS_DISABLE and ss_sp < sp <= ss_sp + size


def siginfo(sig: int, code: int = abi.SI_USER, addr: int | None = None, pid: int = 0,
            uid: int = 0, status: int | None = None) -> bytes:
    """A struct siginfo (128 bytes) for sig: the fault address, or the sender."""
    head = struct.pack("<iii4x", sig, 0, code)
    if addr is not None:
        body = struct.pack("<Q", addr & 0xFFFF_FFFF_FFFF_FFFF)
    elif status is not None:
        body = struct.pack("<iIi4xqq", pid, uid, status, 0, 0)
    else:
        body = struct.pack("<iI", pid, uid)
    return (head + body).ljust(abi.SIGINFO_SIZE, b"\0")


# ---------------------------------------------------------------------------
# the frame (arch/riscv/kernel/signal.c)
# ---------------------------------------------------------------------------

def build_frame(regs: list[int], pc: int, fregs: list[int] | None, fcsr: int, mask: int,
                altstack: tuple[int, int, int], on_stack: bool, info: bytes) -> bytes:
    """The bytes of an rt_sigframe: siginfo, then the ucontext."""
    ss_sp, ss_flags, ss_size = altstack
    uc = struct.pack("<QQQi4xQQ", 0, 0, ss_sp, abi.SS_ONSTACK if on_stack else ss_flags,
                     ss_size, mask)
    uc = uc.ljust(abi.UC_MCONTEXT, b"\0")
    uc += struct.pack("<32Q", pc, *regs[1:32])
    uc += struct.pack("<32QI", *(fregs or [0] * 32), fcsr)
    uc = uc.ljust(960, b"\0")
    return info + uc


def parse_frame(data: bytes) -> tuple[int, list[int], list[int], int, int, tuple]:
    """(pc, x0..x31, f0..f31, fcsr, mask, altstack) from the ucontext bytes of a frame."""
    uc = data[abi.UC_OFFSET:]
    ss_sp, ss_flags, ss_size, mask = struct.unpack_from("<Qi4xQQ", uc, abi.UC_STACK)
    words = struct.unpack_from("<32Q", uc, abi.UC_MCONTEXT)
    fregs = list(struct.unpack_from("<32Q", uc, abi.UC_MCONTEXT + abi.MC_FPREGS))
    fcsr, = struct.unpack_from("<I", uc, abi.UC_MCONTEXT + abi.MC_FPREGS + 256)
    regs = [0, *words[1:]]
    return words[0], regs, fregs, fcsr, mask, (ss_sp, ss_flags, ss_size)


# ---------------------------------------------------------------------------
# host signals -> guest signals
# ---------------------------------------------------------------------------

# Signals that hvemu takes from the host for the guest.  The synchronous ones (SEGV, BUS,
# ILL, FPE) are left alone: on the host they would be hvemu's own faults; the guest's
# come from the core as exceptions, and a guest's kill(self, SIGSEGV) never leaves hvemu.
# Real-time signals come too, those the host's libc leaves to programs (34-64 with glibc).
FORWARDED = [s for s in sorted(int(x) for x in signal.valid_signals())
             if s <= abi.NSIG and s not in (abi.SIGKILL, abi.SIGSTOP, abi.SIGSEGV,
                                            abi.SIGBUS, abi.SIGILL, abi.SIGFPE)]


def _pipe(floor: int, blocking_read: bool) -> tuple[int, int]:
    import fcntl
    r, w = os.pipe2(os.O_CLOEXEC)
    hr = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, floor)
    hw = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, floor)
    os.close(r)
    os.close(w)
    os.set_blocking(hr, blocking_read)
    os.set_blocking(hw, False)
    return hr, hw


class HostSignals:
    """Host signal handlers, the kick thread and the notification pipe of one process.

    `on_signal(sig)` is called (in the main thread, from the Python signal handler)
    with each host signal; `notify_fd` becomes readable after each."""

    def __init__(self, on_signal, floor: int):
        self.on_signal = on_signal
        self.vcpu = None
        self.floor = floor
        self._open()

    def _open(self) -> None:
        self.wake_r, self.wake_w = _pipe(self.floor, blocking_read=True)
        self.notify_fd, self.notify_w = _pipe(self.floor, blocking_read=False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self.thread = threading.Thread(target=self._kicker, name="hvemu-kick", daemon=True)
        # the thread starts with every signal blocked, so that the main thread gets them
        # all (and its blocking calls are interrupted)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self.thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    @property
    def fds(self) -> tuple[int, ...]:
        return (self.wake_r, self.wake_w, self.notify_fd, self.notify_w)

    def after_fork(self) -> None:
        """In a forked child: its own pipes and kick thread (threads do not survive fork)."""
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._open()

    def close(self) -> None:
        """Give the host's signals back to Python (run_program returning in-process):
        the default handlers, no wake-up fd, the kick thread gone."""
        signal.set_wakeup_fd(-1)
        for sig in FORWARDED:
            try:
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else
                              signal.SIG_IGN if sig in (signal.SIGPIPE, signal.SIGXFSZ)
                              else signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        self.vcpu = None
        os.close(self.wake_w)                 # the kick thread reads EOF and ends
        self.thread.join(timeout=5)
        for fd in (self.wake_r, self.notify_fd, self.notify_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _kicker(self) -> None:
        wake_r, notify_w = self.wake_r, self.notify_w
        while True:
            try:
                data = os.read(wake_r, 256)
            except OSError:
                return
            if not data:
                return
            vcpu = self.vcpu
            if vcpu is not None:
                vcpu.kick()
            try:                        # and wake a blocking call, to run the handler
                os.write(notify_w, b"!")
            except OSError:
                pass

    def handler(self, signum, frame) -> None:
        self.on_signal(signum)
        if self.vcpu is not None:
            self.vcpu.kick()
        try:
            os.write(self.notify_w, b"!")
        except OSError:
            pass

    def drain(self) -> None:
        try:
            while os.read(self.notify_fd, 4096):
                pass
        except OSError:
            pass

    def set_disposition(self, sig: int, how: str) -> None:
        """Route host signal sig: "catch" (to the guest), "ignore" or "default"."""
        if sig not in FORWARDED:
            return
        target = {"catch": self.handler, "ignore": signal.SIG_IGN, "default": signal.SIG_DFL}
        try:
            signal.signal(sig, target[how])
        except (OSError, ValueError):
            pass
