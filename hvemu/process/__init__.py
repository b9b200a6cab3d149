"""The process VM: `hvemu run PROG` runs a RISC-V 64 Linux program on this host, at the ABI.

A process VM supports one process for as long as it lives.  Its machine is a virtual
address space, the user-level registers and the instructions of one program; a runtime
placed at the ABI, on top of the host OS, emulates the instructions and the system
calls, so that a binary built for riscv64 runs as if it were a host process -- and the
VM ends when the process ends.  It is what qemu-riscv64 is, built on hvemu's core.

How the pieces map (the isomorphism, for this kind of VM):

    guest state                     host structure                       module
    x1-x31, f0-f31, pc              HartState in the core, U-mode        _core (VCpu)
    the virtual address space       Sv39 page tables the runtime writes  mm.py
                                    into a private GuestMemory; VMAs
    a system call (ECALL)           an exit; a handler on host calls     syscalls/
    a page fault                    demand paging, or SIGSEGV            mm.py, runtime.py
    a signal                        a frame pushed on the guest stack    signals.py
    a file descriptor               the host descriptor, same number     syscalls/files.py
    fork / execve / exit            host fork / a fresh address space    runtime.py
                                    in place / host exit with the status

Design decisions:

* The core runs the guest in U-mode with satp (Sv39) at page tables the runtime builds;
  there is no privileged layer and no kernel in the guest.  The guest reaches only its
  own address space: every pointer a system call gets is translated and checked page by
  page (EFAULT), never used as a host address.
* Guest "physical" memory is one GuestMemory whose pages get host frames on first touch
  (`--memory`, default 4 GiB, also the frame pool's limit): host memory is spent only on
  touched pages, it bounds what a guest can make hvemu allocate (beyond it the process
  is killed, as by the OOM killer), and execve gives every frame back.
* Paths go to the host file system as they are; with a sysroot (`-L`, QEMU_LD_PREFIX)
  an absolute path that exists under it is taken from there first, as QEMU does, so the
  dynamic loader and the libraries it opens come from the sysroot.
* fork is a host fork of the whole hvemu process; wait4 and kill are the host's, with
  host pids.  Threads (clone with CLONE_VM) fail with ENOSYS and a one-line warning.
* Host signals are queued and delivered at the guest's next exit; a thread watching
  Python's wake-up fd kicks the core out of a compute loop, and the core returns at
  least every 2^24 instructions anyway (a kick takes effect only at a page change).
  Blocking calls poll together with a pipe the signal handler writes, so a signal
  interrupts them (EINTR, or a restart with SA_RESTART).
* The exit status is the program's; a program killed by signal n ends hvemu with
  128 + n (a forked child dies of the signal itself, so the guest parent sees it).
* Guest descriptors are host descriptors, below the RLIMIT_NOFILE the guest is told;
  hvemu's own live above it, out of the guest's reach.  close-on-exec is kept by the
  runtime, since execve happens in place.
* execve of anything but a RISC-V 64 ELF (or a #! script) is ENOEXEC, as a riscv64
  kernel would say; host programs are not run natively (QEMU does run them).
* File mappings are private copies read page by page (a page wholly past EOF is
  SIGBUS); a shared writable file mapping is refused (ENODEV, with a warning).
* The user-level CSRs are emulated: cycle/time/instret natively (time counts
  instructions), fflags/frm/fcsr on an exit handled by a closure made once per
  instruction word (glibc's strtod reads frm every call).
"""
from __future__ import annotations

import os
import shutil
import tempfile

from .elf import ExecError
from .runtime import Figures, Options, Process

__all__ = ["ExecError", "Figures", "Options", "Process", "run_program"]


def run_program(prog: str, args: list[str], *, sysroot: str | None = None,
                env: dict[str, str] | None = None, strace: bool = False, stats: bool = False,
                memory: int = 4 << 30, argv0: str | None = None, report=None) -> int:
    """Run prog with args as a process VM; its exit status.  ExecError when it cannot
    start.  With stats, report(figures) is called at the end with the whole process
    tree's figures."""
    opts = Options(sysroot=sysroot, memory=memory, strace=strace, stats=stats)
    environment = dict(os.environ if env is None else env)
    stats_dir = tempfile.mkdtemp(prefix="hvemu-stats-") if stats else None
    opts.stats_dir = stats_dir
    me = os.getpid()
    proc = Process(opts)
    try:
        path = resolve_program(prog)
        proc.start(path, [argv0 if argv0 is not None else prog, *args],
                   [f"{k}={v}" for k, v in environment.items()])
        status = proc.run()
        if stats and report is not None:
            report(_gather(proc.figures(), stats_dir))
        return status
    finally:
        if os.getpid() == me:                    # not in a forked child
            if proc.host is not None:
                proc.host.close()
            if stats_dir:
                shutil.rmtree(stats_dir, ignore_errors=True)


def resolve_program(prog: str) -> str:
    """PROG as given; a bare name not in the working directory is looked up in PATH."""
    if "/" in prog or os.path.exists(prog):
        return prog
    for d in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(d or ".", prog)
        if os.path.isfile(candidate):
            return candidate
    return prog


def _gather(root: Figures, stats_dir: str | None) -> Figures:
    """The root process's figures plus those its forked descendants left behind."""
    import json
    total = root
    if not stats_dir:
        return total
    for name in sorted(os.listdir(stats_dir)):
        try:
            with open(os.path.join(stats_dir, name)) as f:
                d = json.load(f)
        except (OSError, ValueError):
            continue
        total.processes += 1
        total.instructions += d["instructions"]
        total.core_seconds += d["core_seconds"]
        total.faults += d["faults"]
        total.signals += d["signals"]
        total.execs += d["execs"]
        for nr, n in d["syscalls"].items():
            total.syscalls[int(nr)] += n
    return total
