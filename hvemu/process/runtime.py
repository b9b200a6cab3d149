"""The process VM's runtime: one guest process, its run loop, exits, signals and life.

`Process.start(path, argv, envp)` does what execve does (loader.py) and `run()` runs the
program until it ends, returning its exit status (128 + n when signal n killed it).
The loop is the whole machine: the core runs the guest in U-mode until something needs
the runtime --

* ECALL: a Linux system call.  a7 selects a handler from a dict prepared once
  (syscalls/), called with a0-a5; its int result goes to a0 (a negative errno on
  failure, as the kernel returns it) and the guest resumes after the ECALL.
* a page fault: demand paging (mm.py) or SIGSEGV; an illegal instruction: SIGILL (the
  user-level CSRs -- fflags, frm, fcsr and the counters -- are emulated); EBREAK:
  SIGTRAP; a misaligned atomic: SIGBUS.
* a kick: a host signal arrived (signals.py).

Pending signals are delivered before the guest resumes.  A process that forks is a host
fork of the whole hvemu process (the child's emulator state is a copy); execve builds a
fresh address space and vCPU in place; exit ends the host process with the guest's
status.  A guest killed by a signal ends hvemu with 128 + the signal number; a forked
child dies of the signal itself, so that its guest parent's wait4 sees what Linux shows.
"""
from __future__ import annotations

import errno
import os
import resource
import select
import signal
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from .. import _core
from . import abi, loader
from .elf import EX_NOINPUT, ExecError, read_elf
from .mm import BUS_ADRERR, SIGPAGE, AddressSpace, GuestFault, OutOfMemory
from .signals import (
    FORWARDED,
    HostSignals,
    SigAction,
    SignalState,
    bit,
    build_frame,
    parse_frame,
    siginfo,
)

MASK64 = (1 << 64) - 1
# The core returns at least every QUANTUM instructions, so that a host signal reaches
# a program spinning inside one page (the kick stops the core only at a page change).
QUANTUM = 1 << 24
ECALL, EBREAK = 0x00000073, 0x00100073
NOMEM = getattr(_core, "NOMEM", -1)         # EXIT_NOMEM: a first touch found no frame
MAX_SHEBANG_DEPTH = 4
FP = hasattr(_core.VCpu, "get_f")          # the core has the F and D extensions
HWCAP = abi.hwcap("imafdc" if FP else "imac")


class KEEP:
    """A handler's result: it set the registers itself (rt_sigreturn, execve)."""


class RESTART:
    """A handler's result: leave pc at the ECALL, so that it runs again (SA_RESTART)."""


class ProcessExit(Exception):
    def __init__(self, status: int = 0, sig: int = 0, detail: str = ""):
        super().__init__(status, sig)
        self.status = status
        self.sig = sig
        self.detail = detail


class Reload(Exception):
    """The vCPU was replaced (execve): the loop picks up the new one."""


@dataclass
class Options:
    sysroot: str | None = None
    memory: int = 4 << 30
    strace: bool = False
    stats: bool = False
    stats_dir: str | None = None        # where forked children leave their figures
    warn = None                         # one-line warnings go here (default: stderr)


@dataclass
class Figures:
    instructions: int = 0
    seconds: float = 0.0
    core_seconds: float = 0.0
    syscalls: Counter = field(default_factory=Counter)
    faults: int = 0
    signals: int = 0
    processes: int = 1
    execs: int = 0

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6 if self.seconds else 0.0

    def to_dict(self) -> dict:
        from .abi import SYSCALL_NAMES
        return {"instructions": self.instructions, "seconds": round(self.seconds, 6),
                "mips": round(self.mips, 3), "core_seconds": round(self.core_seconds, 6),
                "processes": self.processes, "execs": self.execs,
                "page_faults": self.faults, "signals_delivered": self.signals,
                "syscalls_total": sum(self.syscalls.values()),
                "syscalls": {SYSCALL_NAMES.get(nr, str(nr)): n
                             for nr, n in sorted(self.syscalls.items(),
                                                 key=lambda kv: (-kv[1], kv[0]))}}


def _high_fd_floor() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, min(soft, 4096) - 64)


class Process:
    """One guest process on this host (see the module docstring)."""

    def __init__(self, options: Options):
        from .syscalls import build_table
        self.opts = options
        self.sysroot = options.sysroot
        self.fd_limit = _high_fd_floor()        # guest fds stay below; hvemu's own above
        self.sig = SignalState()
        self.host: HostSignals | None = None
        self.cloexec: set[int] = set()
        self.dirs: dict[int, object] = {}       # fd -> directory listing (getdents64)
        self.fd_kind: dict[int, int] = {}       # fd -> its host status flags, -1: a file
        self.argv: list[bytes] = []
        self.auxv: list[tuple[int, int]] = []
        self.saved_mask: int | None = None      # sigsuspend/ppoll: the mask to restore
        self.mm: AddressSpace | None = None
        self.vcpu = None
        self.exe = ""                           # host path of the program (/proc/self/exe)
        self.pid = os.getpid()
        self.is_root = True
        self.vfork_fd: int | None = None
        self.tid_address = 0
        self.robust_list = (0, 0)
        self.name = b""
        self.limits: dict[int, tuple[int, int]] = {}
        self.fig = Figures()
        self.instret_base = 0                   # instructions before this vCPU
        self.t0 = time.perf_counter()
        self.warned: set[str] = set()
        self.table = build_table(self)

    # ---- start and exec ----

    def start(self, path: str, argv: list[str], envp: list[str]) -> None:
        """Load the program (the first execve); ExecError if it cannot run."""
        if self.sysroot is not None and not os.path.isdir(self.sysroot):
            raise ExecError(f"-L {self.sysroot}: no such directory", errno.ENOENT, EX_NOINPUT)
        self._init_signals()
        self.execve(path, [os.fsencode(a) for a in argv], [os.fsencode(e) for e in envp])

    def host_path(self, path: bytes | str) -> str:
        """The host path for a guest path: /proc/self/exe is the program; an absolute
        path that exists under the sysroot (-L) is taken from there, as QEMU does."""
        p = os.fsdecode(path)
        if p in ("/proc/self/exe", f"/proc/{self.pid}/exe", "/proc/thread-self/exe"):
            return self.exe
        if self.sysroot and p.startswith("/"):
            candidate = self.sysroot.rstrip("/") + p
            if os.path.lexists(candidate):
                return candidate
        return p

    def interpreter_path(self, interp: str) -> str | None:
        if self.sysroot:
            root = self.sysroot.rstrip("/")
            for candidate in (root + interp, root + "/usr" + interp):
                if os.path.exists(candidate):
                    return candidate
            return None
        return interp if os.path.exists(interp) else None

    def execve(self, path: bytes | str, argv: list[bytes], envp: list[bytes],
               depth: int = 0) -> None:
        """Replace the program (execve(2)); ExecError, with an errno, when it cannot."""
        shown = os.fsdecode(path)
        host = self.host_path(path)
        try:
            image = read_elf(host, shown)
        except ExecError as e:
            script = self._shebang(host)
            if script is None:
                raise
            if depth >= MAX_SHEBANG_DEPTH:
                raise ExecError(f"{shown}: too many levels of #! interpreters",
                                errno.ELOOP) from e
            interp, arg = script
            new_argv = [interp] + ([arg] if arg else []) + [os.fsencode(path)] + argv[1:]
            return self.execve(interp, new_argv, envp, depth + 1)
        interp = None
        if image.interp:
            ipath = self.interpreter_path(image.interp)
            if ipath is None:
                where = (f"in the sysroot {self.sysroot}" if self.sysroot else
                         "on this host: give a sysroot with -L SYSROOT (or QEMU_LD_PREFIX)")
                raise ExecError(f"{shown}: is dynamically linked, and its interpreter "
                                f"{image.interp} is not {where}", errno.ENOENT, EX_NOINPUT)
            interp = read_elf(ipath, image.interp)
            if interp.interp:
                raise ExecError(f"{image.interp}: an interpreter that needs an interpreter",
                                errno.ELIBBAD)
        try:
            loader.check_arguments(argv, envp, os.fsencode(shown))
        except OSError as e:
            raise ExecError(f"{shown}: {e.strerror}", e.errno) from None
        ids = (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
        if self.mm is None:                        # the first program: a new RAM
            try:
                mm = AddressSpace(self.opts.memory, self.fd_limit + 16)
            except OutOfMemory as e:
                raise ExecError(str(e), errno.ENOMEM, 71) from None   # EX_OSERR
        else:                                      # the point of no return: reuse the RAM
            self.mm.wipe()
            mm = AddressSpace(self.opts.memory, self.fd_limit + 16, memory=self.mm.memory)
        try:
            started = loader.load(mm, image, interp, argv, envp, os.fsencode(shown), HWCAP, ids)
        except OutOfMemory:
            if self.mm is None:
                raise ExecError(f"{shown}: does not fit in --memory", errno.ENOMEM) from None
            raise ProcessExit(sig=abi.SIGKILL, detail=f"execve {shown}: out of memory") \
                from None
        vcpu = _core.VCpu(mm.memory)
        vcpu.set_mode(0, 0, 8, mm.root, False, False)
        vcpu.set_counters(0b111, 10, 0, 0, 0)
        vcpu.stop_at = QUANTUM
        vcpu.pc = started.pc
        vcpu.set_x(2, started.sp)
        if FP:
            vcpu.fs = 1                          # Initial, as Linux starts a process
        if self.vcpu is not None:
            self.instret_base += self.vcpu.instret
            self.fig.core_seconds += self.vcpu.core_seconds
            self.fig.faults += self.mm.faults
            self.fig.execs += 1
        self.mm, self.vcpu = mm, vcpu
        mm.vcpu = vcpu
        self.argv = list(argv)
        self.auxv = started.auxv
        if self.host is not None:
            self.host.vcpu = vcpu
        self.exe = os.path.realpath(host)
        self.name = os.fsencode(os.path.basename(shown))[:15]
        for fd in sorted(self.cloexec):
            self.close_fd(fd)
        self.sig.exec_reset()
        for s in FORWARDED:
            self.route(s)
        self._vfork_release()

    @staticmethod
    def _shebang(host: str) -> tuple[bytes, bytes] | None:
        try:
            with open(host, "rb") as f:
                line = f.read(256)
        except OSError:
            return None
        if not line.startswith(b"#!"):
            return None
        line = line[2:].split(b"\n", 1)[0].strip()
        if not line:
            return None
        parts = line.split(None, 1)
        return parts[0], (parts[1].strip() if len(parts) > 1 else b"")

    # ---- file descriptors ----

    def check_fd(self, fd: int) -> int:
        fd = abi_int(fd)
        if not 0 <= fd < self.fd_limit:
            raise OSError(errno.EBADF, "bad file descriptor")
        return fd

    def new_fd(self, fd: int, cloexec: bool) -> int:
        """A host descriptor just made for the guest: its number, or EMFILE when it lands
        in hvemu's own range."""
        if fd >= self.fd_limit:
            os.close(fd)
            raise OSError(errno.EMFILE, "too many open files")
        self.dirs.pop(fd, None)
        self.fd_kind.pop(fd, None)
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)
        return fd

    def close_fd(self, fd: int) -> None:
        self.cloexec.discard(fd)
        self.dirs.pop(fd, None)
        self.fd_kind.pop(fd, None)
        os.close(fd)

    # ---- signals ----

    def _init_signals(self) -> None:
        self.host = HostSignals(self._host_signal, self.fd_limit)
        self.sig.set_blocked(_mask_of(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        for s in FORWARDED:
            if s in (abi.SIGPIPE, abi.SIGXFSZ):   # Python ignores these itself
                continue
            try:
                if signal.getsignal(s) == signal.SIG_IGN:
                    self.sig.actions[s].handler = abi.SIG_IGN
            except (OSError, ValueError):
                pass
        for s in FORWARDED:
            self.route(s)

    def route(self, sig: int) -> None:
        """Point host signal sig where the guest's disposition needs it."""
        if self.host is None:
            return
        h = self.sig.actions[sig].handler
        if sig == abi.SIGCHLD:
            self.host.set_disposition(sig, "catch")      # wait4 needs the wake-up
        elif h == abi.SIG_IGN:
            self.host.set_disposition(sig, "ignore")
        elif h == abi.SIG_DFL and sig in abi.DEFAULT_STOP:
            self.host.set_disposition(sig, "default")    # the host stops hvemu itself
        else:
            self.host.set_disposition(sig, "catch")

    def _host_signal(self, sig: int) -> None:
        h = self.sig.actions[sig].handler
        if h == abi.SIG_IGN or (h == abi.SIG_DFL and sig in abi.DEFAULT_IGNORE):
            return
        self.sig.post(sig, siginfo(sig, abi.SI_USER))

    def post_signal(self, sig: int, info: bytes | None = None) -> None:
        """A signal for this process from itself (raise, a failed write to a pipe)."""
        h = self.sig.actions[sig].handler
        if h == abi.SIG_IGN or (h == abi.SIG_DFL and sig in abi.DEFAULT_IGNORE):
            return
        self.sig.post(sig, info or siginfo(sig, abi.SI_USER, pid=self.pid, uid=os.getuid()))

    def force_signal(self, sig: int, info: bytes, detail: str = "") -> None:
        """A synchronous fault: delivered now; blocked or ignored, it kills (as Linux's
        force_sig does)."""
        act = self.sig.actions[sig]
        if self.sig.blocked & bit(sig) or act.handler == abi.SIG_IGN:
            act.handler = abi.SIG_DFL
            self.sig.set_blocked(self.sig.blocked & ~bit(sig))
        if act.handler == abi.SIG_DFL:
            raise ProcessExit(sig=sig, detail=detail)
        self.deliver(sig, info)

    def deliver_pending(self) -> None:
        while self.sig.ready:
            sig, info = self.sig.take()
            self.deliver(sig, info)
        if self.saved_mask is not None:         # nothing took it into a frame
            self.sig.set_blocked(self.saved_mask)
            self.saved_mask = None

    def deliver(self, sig: int, info: bytes) -> None:
        act = self.sig.actions[sig]
        h = act.handler
        if self.opts.strace:
            code, = struct.unpack_from("<i", info, 8)
            what = ("ignored" if h == abi.SIG_IGN else "default action" if h == abi.SIG_DFL
                    else f"handler {h:#x}")
            self.trace_line(f"--- {abi.signal_name(sig)} {{si_signo={abi.signal_name(sig)}, "
                            f"si_code={code}}} ({what}) ---")
        if h == abi.SIG_IGN:
            return
        if h == abi.SIG_DFL:
            if sig in abi.DEFAULT_IGNORE:
                return
            if sig in abi.DEFAULT_STOP:
                os.kill(os.getpid(), signal.SIGSTOP)
                return
            raise ProcessExit(sig=sig)
        self.fig.signals += 1
        v = self.vcpu
        regs = v.x
        sp = regs[2]
        on = self.sig.on_altstack(sp)
        ss_sp, ss_flags, ss_size = self.sig.altstack
        if act.flags & abi.SA_ONSTACK and not ss_flags & abi.SS_DISABLE and not on:
            sp = ss_sp + ss_size
        frame = (sp - abi.FRAME_SIZE) & ~15
        fregs, fcsr = (v.f, v.fflags | (v.frm << 5)) if FP else (None, 0)
        saved = self.sig.blocked if self.saved_mask is None else self.saved_mask
        self.saved_mask = None
        data = build_frame(regs, v.pc, fregs, fcsr, saved, self.sig.altstack, on, info)
        try:
            self.mm.write(frame, data)
        except (GuestFault, OutOfMemory):
            raise ProcessExit(sig=abi.SIGSEGV, detail="no room for a signal frame on the "
                              f"stack (sp {sp:#x})") from None
        mask = self.sig.blocked | act.mask
        if not act.flags & abi.SA_NODEFER:
            mask |= bit(sig)
        self.sig.set_blocked(mask)
        if act.flags & abi.SA_RESETHAND:
            self.sig.actions[sig] = SigAction()
            self.route(sig)
        v.pc = h
        v.set_x(1, SIGPAGE)
        v.set_x(2, frame)
        v.set_x(10, sig)
        v.set_x(11, frame)
        v.set_x(12, frame + abi.UC_OFFSET)

    def sigreturn(self) -> type[KEEP]:
        v = self.vcpu
        frame = v.get_x(2)
        try:
            data = self.mm.read(frame, abi.FRAME_SIZE)
        except GuestFault:
            raise ProcessExit(sig=abi.SIGSEGV, detail=f"rt_sigreturn: bad frame at {frame:#x}"
                              ) from None
        pc, regs, fregs, fcsr, mask, alt = parse_frame(data)
        for i in range(1, 32):
            v.set_x(i, regs[i])
        v.pc = pc
        if FP:
            for i in range(32):
                v.set_f(i, fregs[i])
            v.fflags = fcsr & 0x1F
            v.frm = (fcsr >> 5) & 7
        self.sig.set_blocked(mask)
        ss_sp, ss_flags, ss_size = alt
        if not self.sig.on_altstack(v.get_x(2)) and not ss_flags & ~abi.SS_DISABLE:
            self.sig.altstack = (ss_sp, ss_flags & abi.SS_DISABLE, ss_size)
        return KEEP

    def wait_event(self, fds: list[tuple[int, int]], timeout: float | None = None,
                   restartable: bool = True, wake_mask: int = 0):
        """Block until one of fds is ready (a list of (fd, poll events); returns the
        ready ones), a host signal arrives or timeout seconds pass (both: []), or a
        guest signal is deliverable (raises Interrupted, which handlers turn into EINTR
        or a restart).  A signal of wake_mask pending, even blocked, returns []."""
        if self.sig.ready:
            raise Interrupted(self._restart_ok() if restartable else False)
        if self.sig.pending_mask & wake_mask:
            return []
        poller = select.poll()
        for fd, ev in fds:
            poller.register(fd, ev)
        notify = self.host.notify_fd
        poller.register(notify, select.POLLIN)
        ready = poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        out = [(fd, ev) for fd, ev in ready if fd != notify]
        if len(out) != len(ready):
            self.host.drain()
            if self.sig.ready:
                raise Interrupted(self._restart_ok() if restartable else False)
        return out

    def wait_for(self, fds: list[tuple[int, int]], timeout: float | None = None,
                 restartable: bool = True) -> list[tuple[int, int]]:
        """wait_event until an fd is ready ([] only when timeout seconds have passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return []
            out = self.wait_event(fds, left, restartable)
            if out:
                return out

    def _restart_ok(self) -> bool:
        ready = self.sig.pending_mask & ~self.sig.blocked
        for s in range(1, abi.NSIG + 1):
            if ready & bit(s):
                a = self.sig.actions[s]
                if a.handler in (abi.SIG_DFL, abi.SIG_IGN) or not a.flags & abi.SA_RESTART:
                    return False
        return True

    # ---- processes ----

    def fork(self, vfork: bool) -> int:
        """A host fork of the whole emulator; in the child the emulator state is a copy."""
        sys.stderr.flush()
        if vfork:
            r, w = os.pipe2(os.O_CLOEXEC)
        # Signals wait (blocked) until the child's plumbing is ready: Python's own
        # after-fork code drops signals that arrive in the child before it has run.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:
            try:
                self._after_fork_child(vfork and w)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if vfork:
                os.close(r)
            return 0
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if vfork:
            os.close(w)
            try:
                while os.read(r, 1):           # until the child execs or exits
                    pass
            except OSError:
                pass
            finally:
                os.close(r)
        return pid

    def _after_fork_child(self, vfork_fd: int | None) -> None:
        self.pid = os.getpid()
        self.is_root = False
        self.host.after_fork()
        self.host.vcpu = self.vcpu
        self.instret_base = -self.vcpu.instret     # count only the child's own work
        self.fig = Figures()
        self.fig.core_seconds = -self.vcpu.core_seconds
        self.mm.faults = 0
        self.t0 = time.perf_counter()
        self.vfork_fd = vfork_fd or None

    def _vfork_release(self) -> None:
        if self.vfork_fd is not None:
            os.close(self.vfork_fd)
            self.vfork_fd = None

    # ---- the run loop ----

    def run(self) -> int:
        """Run the program to its end; its exit status (128 + n if killed by signal n)."""
        try:
            self._loop()
        except ProcessExit as e:
            return self._finish(e)
        except OutOfMemory:
            return self._finish(ProcessExit(sig=abi.SIGKILL, detail=(
                f"out of memory: the process used all of --memory "
                f"({self.opts.memory >> 20} MiB)")))
        raise AssertionError("the run loop returned")

    def _loop(self) -> None:
        SYSTEM, EXCEPTION = _core.SYSTEM, _core.EXCEPTION
        nosys = self.nosys
        while True:
            vcpu = self.vcpu
            run, get_x, set_x, complete = vcpu.run, vcpu.get_x, vcpu.set_x, vcpu.complete
            table = self.table
            sig = self.sig
            system_handlers: dict = {}      # per vCPU: handlers capture it
            try:
                while True:
                    if sig.ready:
                        self.deliver_pending()
                    r = run()
                    if r == SYSTEM and vcpu.exit_insn == ECALL:
                        nr = get_x(17)
                        try:
                            res = table.get(nr, nosys)(self, get_x(10), get_x(11), get_x(12),
                                                       get_x(13), get_x(14), get_x(15))
                        except OSError as e:
                            res = -(e.errno or errno.EIO)
                        except GuestFault:
                            res = -errno.EFAULT
                        except Interrupted as e:
                            res = RESTART if e.restart else -errno.EINTR
                        except (OverflowError, ValueError, struct.error):
                            res = -errno.EINVAL     # a value the host call cannot take
                        if res.__class__ is int:
                            set_x(10, res & MASK64)
                            complete()
                    elif r == EXCEPTION:
                        self.exception()
                    elif r == SYSTEM:
                        insn = vcpu.exit_insn
                        h = system_handlers.get(insn)
                        if h is None:
                            h = self.system_handler(insn)
                            if len(system_handlers) < 4096:
                                system_handlers[insn] = h
                        h()
                    elif r == _core.BUDGET:
                        vcpu.stop_at = vcpu.instret + QUANTUM
                    elif r == NOMEM:            # the frame pool (--memory) is empty
                        raise OutOfMemory()
                    else:                      # MMIO: nothing the guest maps is a device
                        self.force_signal(abi.SIGBUS, siginfo(abi.SIGBUS, 2,
                                                              addr=vcpu.exit_tval))
            except Reload:
                continue

    def nosys(self, *_args) -> int:
        return -errno.ENOSYS

    def exception(self) -> None:
        v = self.vcpu
        cause, tval, pc = v.exit_cause, v.exit_tval, v.exit_pc
        if cause in (12, 13, 15):
            code = self.mm.fault(tval, {12: 0, 13: 1, 15: 2}[cause])
            if code:
                what = {12: "execute", 13: "read", 15: "write"}[cause]
                sig = abi.SIGBUS if code == BUS_ADRERR else abi.SIGSEGV
                self.force_signal(sig, siginfo(sig, code & 0xFF, addr=tval),
                                  f"{what} of {tval:#x} at pc {pc:#x}"
                                  + (" (past the end of the mapped file)"
                                     if sig == abi.SIGBUS else ""))
        elif cause == 2:
            self.force_signal(abi.SIGILL, siginfo(abi.SIGILL, abi.ILL_ILLOPC, addr=pc),
                              f"illegal instruction {tval:#010x} at pc {pc:#x}")
        elif cause in (0, 4, 6):
            self.force_signal(abi.SIGBUS, siginfo(abi.SIGBUS, abi.BUS_ADRALN, addr=tval),
                              f"misaligned access to {tval:#x} at pc {pc:#x}")
        else:
            self.force_signal(abi.SIGSEGV, siginfo(abi.SIGSEGV, abi.SEGV_ACCERR, addr=tval),
                              f"access fault (cause {cause}) at {tval:#x}, pc {pc:#x}")

    def system_handler(self, insn: int):
        """A handler for this SYSTEM instruction word, specialised once: the reads of
        frm/fflags/fcsr that glibc makes in strtod and printf come back often."""
        v = self.vcpu
        f3, csr, rd, rs1 = (insn >> 12) & 7, insn >> 20, (insn >> 7) & 31, (insn >> 15) & 31
        pure_read = f3 in (2, 3, 6, 7) and rs1 == 0
        if FP and pure_read and csr in (1, 2, 3):
            complete_csr = v.complete_csr
            if csr == 1:
                return lambda: complete_csr(rd, v.fflags) if v.fs else \
                    self.system_instruction(insn)
            if csr == 2:
                return lambda: complete_csr(rd, v.frm) if v.fs else \
                    self.system_instruction(insn)
            return lambda: complete_csr(rd, v.fflags | (v.frm << 5)) if v.fs else \
                self.system_instruction(insn)
        return lambda: self.system_instruction(insn)

    def system_instruction(self, insn: int) -> None:
        v = self.vcpu
        pc = v.exit_pc
        if insn == EBREAK:
            self.force_signal(abi.SIGTRAP, siginfo(abi.SIGTRAP, abi.TRAP_BRKPT, addr=pc),
                              f"breakpoint at pc {pc:#x}")
            return
        f3 = (insn >> 12) & 7
        csr = insn >> 20
        if f3 in (1, 2, 3, 5, 6, 7) and self._csr(insn, f3, csr):
            return
        self.force_signal(abi.SIGILL, siginfo(abi.SIGILL, abi.ILL_ILLOPC, addr=pc),
                          f"illegal instruction {insn:#010x} at pc {pc:#x}")

    def _csr(self, insn: int, f3: int, csr: int) -> bool:
        """The CSRs user mode may touch: fflags, frm, fcsr; cycle, time, instret."""
        v = self.vcpu
        rd, rs1 = (insn >> 7) & 31, (insn >> 15) & 31
        src = rs1 if f3 >= 5 else v.get_x(rs1)
        writes = (f3 & 3) == 1 or rs1 != 0
        if csr in (0xC00, 0xC01, 0xC02):
            if writes:
                return False
            old = v.instret if csr != 0xC01 else v.instret // 10
        elif csr in (1, 2, 3) and FP and v.fs:
            old = (v.fflags, v.frm, v.fflags | (v.frm << 5))[csr - 1]
            if writes:
                op = f3 & 3
                new = src if op == 1 else (old | src if op == 2 else old & ~src)
                if csr == 1:
                    v.fflags = new & 0x1F
                elif csr == 2:
                    v.frm = new & 7
                else:
                    v.fflags = new & 0x1F
                    v.frm = (new >> 5) & 7
                v.fs = 3
        else:
            return False
        v.complete_csr(rd, old)
        return True

    # ---- the end ----

    def instructions(self) -> int:
        return self.instret_base + (self.vcpu.instret if self.vcpu is not None else 0)

    def figures(self) -> Figures:
        """This process's figures so far (since it was forked, for a child)."""
        import copy
        f = copy.deepcopy(self.fig)
        f.instructions = self.instructions()
        f.seconds = time.perf_counter() - self.t0
        if self.vcpu is not None:
            f.core_seconds += self.vcpu.core_seconds
            f.faults += self.mm.faults
        return f

    def _finish(self, e: ProcessExit) -> int:
        self._vfork_release()
        if self.opts.stats:
            self._save_figures()
        if e.sig:
            if e.detail and (self.is_root or e.sig in (abi.SIGSEGV, abi.SIGBUS, abi.SIGILL,
                                                       abi.SIGTRAP, abi.SIGKILL)):
                self.say(f"{os.path.basename(self.exe)}: killed by {abi.signal_name(e.sig)} "
                         f"({abi.signal_description(e.sig)}): {e.detail}")
            if not self.is_root:
                _die_by(e.sig)
            return 128 + e.sig
        if not self.is_root:
            os._exit(e.status & 0xFF)
        return e.status & 0xFF

    def _save_figures(self) -> None:
        f = self.figures()
        if not self.is_root and self.opts.stats_dir:
            import json
            path = os.path.join(self.opts.stats_dir, f"{self.pid}.{time.monotonic_ns()}.json")
            try:
                with open(path, "w") as out:
                    json.dump({"instructions": f.instructions, "core_seconds": f.core_seconds,
                               "syscalls": dict(f.syscalls), "faults": f.faults,
                               "signals": f.signals, "execs": f.execs}, out)
            except OSError:
                pass

    def trace_line(self, text: str) -> None:
        """A --strace line of this process."""
        try:
            os.write(2, f"{self.pid} {text}\n".encode(errors="replace"))
        except OSError:
            pass

    def say(self, text: str) -> None:
        """One line on stderr, `hvemu: ...` (hvemu's own voice, not the guest's)."""
        try:
            os.write(2, f"hvemu: {text}\n".encode(errors="replace"))
        except OSError:
            pass

    def warn_once(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.say(text)


class Interrupted(Exception):
    """A blocking system call was interrupted by a guest signal."""

    def __init__(self, restart: bool):
        super().__init__()
        self.restart = restart


def abi_int(v: int) -> int:
    """A 64-bit register as a C int (the low 32 bits, signed)."""
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v & 0x8000_0000 else v


def _mask_of(signals) -> int:
    m = 0
    for s in signals:
        if 0 < int(s) <= abi.NSIG:
            m |= bit(int(s))
    return m


def _die_by(sig: int) -> None:
    """End this (forked child) host process by signal sig, as the guest was."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    except (OSError, ValueError):
        pass
    try:
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    except (OSError, ValueError):
        pass
    os._exit(128 + sig)



