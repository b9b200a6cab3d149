"""The user-mode hosted system VM (README, "Hypervisor classes"): the hypervisor is an
unprivileged process of the host OS, and every exit reaches it through the host OS.

`HostedHypervisor.run` splits hvemu in two host processes:

- the **core process** (the one that called `run`) plays the hardware and the host OS:
  it runs guest code (`_core.serve_remote`) and, at each exit it cannot finish, wakes
  the hypervisor's process and sleeps until the answer -- the extra trap per privileged
  instruction that the seed charges a hosted VM;
- the **hypervisor's process** (forked, and killed with its parent: PR_SET_PDEATHSIG) is
  the whole Python hypervisor -- the scheduler, every exit handler, the devices, the
  consoles and the disks, which are host files it reads and writes with ordinary system
  calls.

What both must see is host memory they share (mmap'd MAP_SHARED, lazily backed): each
vCPU's `HartState` (registers, the exit record, the shadow TLB), every VM's P2M and boot
ROM, and the frames of a shared `FramePool`, so guest RAM costs the host only what the
guest touched.  The wake-up is a pipe pair: one byte (the vCPU's index) from the
hypervisor to run it, one byte (the exit reason) back; `VCpu.remote_hops` counts the
round trips.  Both processes are kept on one host CPU while they run: they take turns,
and a wake-up across CPUs costs ten times one on the same CPU.  Decoded code lives in
the core process only; the hypervisor marks pages it
writes (DMA, loaders) in a shared table that the core reads before it runs
(`GuestMemory.remote_code`).

When the hypervisor's process ends, `run` returns its outcomes (stats and each console's
kept output come back pickled over a third pipe); if it died (kill -9, a crash), the
core process raises `HypervisorLost` with one line saying how, and nothing is left
running.  Time stays virtual (instructions), so a run gives the same console output and
instret under every class.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import threading

from .. import _core
from ..errors import HvemuError, InternalError, UsageError
from . import CLASSES
from .hypervisor import Hypervisor

PR_SET_PDEATHSIG = 1


class HypervisorLost(InternalError):
    """The hosted hypervisor's process died while its VMs ran."""


class HostedHypervisor(Hypervisor):
    """A hypervisor whose exit handlers run in a process of their own (see module)."""

    kind = "hosted"
    privileged_part = False      # every exit the core cannot finish hops to the hypervisor

    def __init__(self, host_memory: int | None = None, reserve: int | None = None):
        """host_memory caps the frames, as for the native hypervisor; the shared pool
        is one region reserved at once (address space only), of host_memory bytes or,
        without a cap, `reserve` (the VMs' RAM added up; default 64 GiB)."""
        limit = host_memory or reserve or (64 << 30)
        super().__init__(pool=_core.FramePool(limit, shared=True))
        self.capped = host_memory is not None
        self.pid: int | None = None           # the hypervisor's process, while it runs
        self.last_pid: int | None = None      # ... and after
        self.serving = False                  # True in the hypervisor's process
        # called in the hypervisor's process before its VMs run: what must work on the
        # live VM (the QMP servers' threads: stop, cont, migrate, savevm, quit ...)
        self.in_process: list = []
        self.in_process_end: list = []       # ... and after they ran (the servers' close)

    @property
    def host_memory(self) -> int | None:
        return self.pool.limit if self.capped else None

    def run(self, vms=None) -> dict:
        vms = [vm for vm in (self.vms if vms is None else vms) if vm.state != "shutdown"]
        self.arm(vms)                          # (HartState is shared: before the fork)
        vcpus = [vc.vcpu for vm in vms for vc in vm.vcpus]
        if len(vcpus) > 255:
            raise HvemuError(f"{len(vcpus)} vCPUs: a hosted hypervisor runs at most 255")
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        res_r, res_w = os.pipe()
        affinity = _pin_to_this_cpu()          # the child inherits it
        pid = os.fork()
        if pid == 0:
            os.close(req_r)
            os.close(resp_w)
            os.close(res_r)
            self._hypervisor_process(vms, req_w, resp_r, res_w)   # never returns
        self.pid = self.last_pid = pid
        for fd in (req_w, resp_r, res_w):
            os.close(fd)
        main = threading.current_thread() is threading.main_thread()   # signals: only there
        if main:
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)   # the terminal's Ctrl-C
            old_term = signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
        try:
            _core.serve_remote(vcpus, [vm.memory for vm in vms], req_r, resp_w)
            result = _read_all(res_r)
        finally:
            os.close(req_r)
            os.close(resp_w)
            os.close(res_r)
            _, status = os.waitpid(pid, 0)
            self.pid = None
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
            if main:
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)
        if os.WIFSIGNALED(status):
            sig = signal.Signals(os.WTERMSIG(status)).name
            raise HypervisorLost(f"the hosted hypervisor's process (pid {pid}) was killed "
                                 f"by {sig}; its VMs stopped")
        try:
            payload = pickle.loads(result)
        except Exception:
            raise HypervisorLost(f"the hosted hypervisor's process (pid {pid}) ended with "
                                 f"status {os.WEXITSTATUS(status)} and no outcome") from None
        if isinstance(payload, BaseException):
            raise payload
        outcomes = {}
        for vm, (outcome, state, arch, dropped, output) in zip(vms, payload, strict=True):
            vm.state, vm.adopted_state = state, arch
            vm.console.adopt_output(dropped, output)
            outcomes[vm] = outcome
        return outcomes

    def _hypervisor_process(self, vms, req_w: int, resp_r: int, res_w: int) -> None:
        """The forked child: the Python hypervisor, each vCPU run by the core process."""
        code = 0
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == 1:              # the core process is already gone
                os._exit(1)
            # Ctrl-C and SIGTERM (forwarded by the core process) end the run here as they
            # would a native one: the caller's handlers, inherited
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.serving = True
            index = 0
            for vm in vms:
                vm.memory.remote_code = True
                for vc in vm.vcpus:
                    vc.vcpu.attach_remote(req_w, resp_r, index)
                    index += 1
            try:
                for hook in self.in_process:
                    hook()
                try:
                    outcomes = Hypervisor.run(self, vms)
                finally:
                    for hook in self.in_process_end:     # QMP's last events go out
                        hook()
                payload = [(outcomes[vm], vm.state, vm.architectural_state(),
                            vm.console.dropped, vm.console.output_bytes) for vm in vms]
            except BaseException as e:         # noqa: BLE001 -- handed to the core process
                payload = e if isinstance(e, (HvemuError, KeyboardInterrupt)) else \
                    InternalError(f"{type(e).__name__}: {e}")
            for vm in vms:
                vm.console.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os.close(req_w)                    # the core process's serve_remote returns
            data = pickle.dumps(payload)
            while data:
                data = data[os.write(res_w, data):]
        except BaseException:                  # noqa: BLE001 -- never return into the caller
            code = 70
        finally:
            os._exit(code)


class DualHypervisor(HostedHypervisor):
    """Dual-mode hosted: a hosted hypervisor plus a privileged part in the core's own
    context (core/privpart.pxi) that finishes the exits it can -- accesses to the plain
    CSRs -- without the hop; everything else, devices and I/O included, goes to the
    hypervisor's process as in the hosted class, as KVM + QEMU split the work."""

    kind = "dual"
    privileged_part = True


def _pin_to_this_cpu():
    """Keep this thread (and the hypervisor's process, forked from it) on the host CPU it
    runs on now; returns the affinity to restore.  The two processes strictly take
    turns, and a wake-up on another CPU costs tens of microseconds where one on the
    same CPU costs a few (csrloop: 51 s against 3.2 s on this 2-core machine)."""
    try:
        affinity = os.sched_getaffinity(0)
        with open("/proc/thread-self/stat") as f:
            cpu = int(f.read().rsplit(")", 1)[1].split()[36])   # field 39: processor
        if cpu not in affinity:
            cpu = min(affinity)
        os.sched_setaffinity(0, {cpu})
        return affinity
    except (OSError, ValueError, IndexError, AttributeError):
        return None                           # not Linux, or not allowed: unpinned


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


HANDLERS = "native-handlers"   # not a class: native with its privileged part off


def make_hypervisor(kind: str, host_memory: int | None = None, reserve: int | None = None):
    """The hypervisor of a class: native (default), hosted or dual; or HANDLERS, the
    native class with the core's privileged part off, so that every exit reaches the
    Python handlers on the fast path (the reference the part is tested against, and
    the perf gate's figures for those handlers)."""
    if kind == "native":
        return Hypervisor(host_memory=host_memory)
    if kind == HANDLERS:
        hv = Hypervisor(host_memory=host_memory)
        hv.privileged_part = False
        return hv
    if kind == "hosted":
        return HostedHypervisor(host_memory=host_memory, reserve=reserve)
    if kind == "dual":
        return DualHypervisor(host_memory=host_memory, reserve=reserve)
    raise UsageError(f"hypervisor class {kind!r}: give one of {', '.join(CLASSES)}")
