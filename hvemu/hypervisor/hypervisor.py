"""The hypervisor: one per host process, below all VMs (DESIGN.md, "The hypervisor and
its VMs").

It owns the host's resources: a pool of host memory frames (`FramePool`, optionally
capped by `host_memory`, so the VMs' RAM may add up to more than the pool: overcommit)
and the host CPU time, which its scheduler shares among the vCPUs of all its VMs.
All vCPUs run on one host thread, round-robin, each for a quantum of guest
instructions (times its VM's `shares`), so runs are deterministic; a hart in WFI gives
its turn away, and when every hart of a VM waits, the VM's time moves on to the next
deadline (or, with the host clock, the host sleeps).  One VM stopping -- power off, a
crash, a reset, the pool running dry -- does not disturb the others.

A VM's requests (pause, reset, timeout, shutdown) come from any thread through its
`RunControl`; the core is kicked so that the running vCPU exits soon.
"""
from __future__ import annotations

import select
import threading
import time

from .. import _core
from .vcpu import STARTED, Paused, Preempt, Stop, VirtualCpu

# instructions per turn when several vCPUs share the host: ~0.35 ms of guest time at
# hvemu's speed (QEMU's round-robin TCG gives a vCPU up to 100 ms, TCG_KICK_PERIOD);
# 4 harts lose 9-14 % of one hart's speed to switching at 2^16, ~6 % at 2^18
# (bench/test_smp_speed.py)
QUANTUM = 1 << 18
SLICE = 1 << 22                 # ... and when one vCPU has it to itself
WATCHDOG_KICK = 0.01            # seconds between the watchdog's kicks once the deadline passed
IDLE_POLL = 0.05                # seconds a host wait lasts at most (requests, other consoles)


class RunControl:
    """A VM's requests, from any thread: pause, reset, timeout (its watchdog's) and
    shutdown.  A request never replaces one of a higher rank."""

    RANK = {None: 0, "pause": 1, "reset": 2, "timeout": 3, "shutdown": 4}

    def __init__(self, vm):
        self.vm = vm
        self.request: str | None = None
        self.paused = False
        self.halted = threading.Event()          # the scheduler saw the pause: no vCPU runs
        self._resumed = threading.Event()
        self._watchdog_done: threading.Event | None = None

    def ask(self, what: str) -> None:
        if self.RANK[what] > self.RANK[self.request]:
            self.request = what
        if what == "pause":
            self._resumed.clear()
        else:
            self._resumed.set()                  # a paused VM must see it
        for vc in self.vm.vcpus:
            vc.vcpu.kick()

    def resume(self) -> None:
        if self.request == "pause":
            self.request = None
        self.paused = False
        self.halted.clear()
        self._resumed.set()

    def serve_request(self) -> None:
        """Act on the pending request: raise Stop (shutdown, timeout, reset) or Paused."""
        what, self.request = self.request, None
        if what in ("shutdown", "timeout", "reset"):
            raise Stop(what, "requested" if what == "reset" else "")
        if what == "pause":
            self.paused = True
            self.vm.state = "paused"
            self.vm.notify("STOP")
            raise Paused

    def wait_resumed(self, seconds: float) -> bool:
        return self._resumed.wait(seconds)

    # ---- the host deadline (--timeout) ----
    def start_watchdog(self, deadline: float | None) -> None:
        """--timeout holds however the guest runs: a thread sleeps until the deadline, then
        asks for a stop and kicks the core every WATCHDOG_KICK seconds until the VM has
        stopped.  The run loop itself pays nothing per exit for it."""
        self.stop_watchdog()
        if deadline is None:
            return
        done = self._watchdog_done = threading.Event()

        def watch() -> None:
            while (left := deadline - time.monotonic()) > 0:
                if done.wait(min(left, 3600.0)):      # Event.wait refuses huge timeouts
                    return
            while True:
                self.ask("timeout")
                if done.wait(WATCHDOG_KICK):
                    return
        threading.Thread(target=watch, name="hvemu-watchdog", daemon=True).start()

    def stop_watchdog(self) -> None:
        if self._watchdog_done is not None:
            self._watchdog_done.set()
            self._watchdog_done = None
        if self.request == "timeout":            # a late kick must not outlive the run
            self.request = None

    def check_limits(self) -> None:
        """Stop (raise Stop) if the host deadline has passed or a shutdown is asked for:
        called by devices between bounded pieces of a long request."""
        if self.request in ("timeout", "shutdown"):
            self.serve_request()
        deadline = self.vm.deadline
        if deadline is not None and time.monotonic() >= deadline:
            raise Stop("timeout")


class Hypervisor:
    """Host frames and host CPU time for any number of VMs (`create_vm`), and the
    scheduler that runs them (`run`)."""

    kind = "native"              # the system-VM class (hvemu.hypervisor.CLASSES)
    # the privileged part in the core (core/privpart.pxi) finishes SFENCE.VMA, the plain
    # CSRs and the kernels' SIE masking where the exit happens, before the Python
    # handlers (as KVM's fastpath exits do in vcpu_enter_guest); off with --reference
    privileged_part = True

    def __init__(self, host_memory: int | None = None, pool=None):
        self.pool = pool if pool is not None else _core.FramePool(host_memory)
        self.vms: list = []

    @property
    def host_memory(self) -> int | None:
        """The cap on the host frames its VMs may hold together (None: no cap)."""
        return self.pool.limit

    def create_vm(self, config, console=None):
        """A new VM on this hypervisor (booted, not yet running)."""
        from ..vm import VM
        return VM(config, console, hypervisor=self)

    def add(self, vm) -> None:
        self.vms.append(vm)

    # ---- the scheduler ----
    def run(self, vms=None) -> dict:
        """Run VMs (default: all of this hypervisor's that have not stopped) until each
        has stopped; returns {vm: Outcome}.  Reboots happen inside."""
        live = [vm for vm in (self.vms if vms is None else vms) if vm.state != "shutdown"]
        self.arm(live)
        outcomes = {}
        for vm in live:
            vm.run_begin()
        try:
            while live:
                quantum = QUANTUM if sum(vm.runnable_harts() for vm in live) > 1 else SLICE
                ran, waits = False, []
                for vm in list(live):
                    try:
                        status = self.round(vm, quantum)
                    except Stop as stop:
                        if stop.reason == "reset":
                            vm.reboot()
                            vm.notify("RESET", guest=stop.detail != "requested")
                            ran = True
                            continue
                        live.remove(vm)
                        outcomes[vm] = vm.run_end(stop)
                        continue
                    if status is True:
                        ran = True
                    else:
                        waits.append((vm, status))
                if live and not ran:
                    self.wait(waits)
        finally:
            for vm in live:                    # an exception left them running
                outcomes[vm] = vm.run_end(Stop("shutdown", "the hypervisor stopped"))
        return outcomes

    def arm(self, vms) -> None:
        """Turn the core's privileged part on or off for every vCPU of vms, as this class
        has it (never under --reference: every exit through the Python handlers)."""
        for vm in vms:
            for vc in vm.vcpus:
                vc.vcpu.privileged_part = self.privileged_part and not vm.config.reference

    def round(self, vm, quantum: int):
        """One turn of every runnable vCPU of vm: True if one ran, else what the VM
        waits for: a host monotonic time (host clock), None (input), or "paused"."""
        control = vm.control
        if control.request is not None:
            try:
                control.serve_request()
            except Paused:
                pass
        if control.paused:
            control.halted.set()               # snapshots and migration wait for this
            vm.console.poll()                  # the console may resume (Ctrl-A p) or quit
            return "paused"
        vm.console.poll()
        started = time.perf_counter()
        clock = vm.clock
        ran = False
        several = len(vm.vcpus) > 1
        # a round may go on where the last one stopped (a pause, a restored snapshot):
        # from hart `start`, that one for `first` instructions (the rest of its quantum)
        start, first = vm.resume_point or (0, None)
        vm.resume_point = None
        try:
            for i, vc in enumerate(vm.vcpus):
                if i < start or vc.hsm != STARTED or vc.held:   # (held: by a debugger)
                    continue
                if vc.waiting:
                    if not vc.wakeable():
                        continue
                    vc.waiting = False
                clock.enter(vc)
                vm.sched_at = i                # still set if a Stop ends the run inside
                try:
                    vc.waiting = vc.run_quantum(first if i == start and first is not None
                                                else quantum * vm.shares)
                finally:
                    clock.leave(vc)
                vm.sched_at = None
                if several:                    # another hart runs next: its stores may
                    vc.vcpu.clear_reservation()   # break this one's LR reservation
                ran = True
                if control.paused:             # no other hart runs while paused, and
                    left = vc.quantum_end - vc.vcpu.instret     # this one goes on with
                    vm.resume_point = ((i, left) if left > 0 else  # the rest of its quantum
                                       (i + 1, None) if i + 1 < len(vm.vcpus) else None)
                    break
            if ran or start:                   # (the harts before start run next round)
                return True
            return self.vm_idle(vm)
        finally:
            vm.seconds += time.perf_counter() - started

    def vm_idle(self, vm):
        """Every started hart of vm waits for an interrupt: move its time on to the next
        timer deadline (virtual clock), or say when to look again (host clock), or wait
        for input; if nothing can ever wake it, the VM is idle for good."""
        clock = vm.clock
        waiting = [vc for vc in vm.vcpus if vc.hsm == STARTED]
        deadline = vm.next_timer_deadline()
        if deadline is not None:
            if not clock.realtime:
                clock.skip_to(deadline)
                vm.rtc.poll()
                return True
            if clock.now() >= deadline:
                return True
            return clock.host_time_of(deadline)
        if vm.console.can_receive() and any(vc.input_may_wake() for vc in waiting):
            return None
        if not waiting:
            raise Stop("idle", "every hart is stopped (SBI HSM hart_stop)")
        c = waiting[0].hart.csr
        raise Stop("idle", "the guest waits for an interrupt (WFI) that nothing can raise "
                   f"(mie={c.mie:#x}, no timer armed or no input possible)")

    def wait(self, waits: list) -> None:
        """No VM could run: sleep on the host until the earliest thing one waits for --
        a host time, console input, a resume -- or IDLE_POLL seconds at most."""
        until = min((s for _, s in waits if isinstance(s, float)), default=None)
        timeouts = [vm.deadline for vm, _ in waits if vm.deadline is not None]
        limit = time.monotonic() + IDLE_POLL
        for t in (until, *timeouts):
            if t is not None:
                limit = min(limit, t)
        if len(waits) == 1:
            vm, status = waits[0]
            if status == "paused":
                vm.control.wait_resumed(max(0.0, limit - time.monotonic()))
            else:
                vm.console.wait_input(limit, limit=IDLE_POLL)
            return
        fds = [vm.console.stdin_fd for vm, s in waits
               if s != "paused" and vm.console.stdin_fd is not None]
        left = max(0.0, limit - time.monotonic())
        if fds:
            try:
                select.select(fds, [], [], left)
            except (OSError, ValueError):
                time.sleep(left)
        else:
            time.sleep(left)


__all__ = ["Hypervisor", "RunControl", "Stop", "Preempt", "VirtualCpu", "QUANTUM", "SLICE"]
