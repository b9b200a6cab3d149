"""One vCPU's exits (DESIGN.md, "Execution model"): the core runs the hart until
something needs the hypervisor, and the exit is dispatched by reason here.

Privileged instructions go to handlers prepared once per instruction word
(privileged.py), MMIO to the device on the VM's bus, guest exceptions are reflected
into the guest's own trap handler, and budget exits give the hypervisor its turn:
timers, input, limits, requests and the end of the vCPU's quantum, which hands the
host CPU back to the scheduler (hypervisor.py).  Interrupts are checked whenever
something that could make one deliverable changes.  A vCPU is the core's hart state
(`vcpu`, a `_core.VCpu`), its virtual privileged state (`hart`, a `VirtualHart`) and
this exit handling.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import _core
from .csr import MEIP, MENVCFG_STCE, MSIP, MTIP, SEIP, SSIP, STIP
from .hart import PRIV_NAMES, VirtualHart, cause_name
from .privileged import prepare

BREAKPOINT = 3
ACCESS_FAULT = {False: 5, True: 7}
MASK64 = (1 << 64) - 1

# SBI HSM hart states (SBI spec, "Hart State Management Extension")
STARTED, STOPPED, START_PENDING, STOP_PENDING, SUSPENDED = 0, 1, 2, 3, 4


@dataclass
class GuestFault:
    """A guest fault the guest cannot handle (its trap handler faults in turn)."""
    cause: int
    pc: int
    tval: int
    priv: int
    insn: str

    def report(self) -> str:
        return (f"guest fault: {cause_name(self.cause)} (cause {self.cause}) at "
                f"pc {self.pc:#018x} in {PRIV_NAMES.get(self.priv, '?')}-mode, "
                f"tval {self.tval:#x}, instruction: {self.insn}; "
                f"the guest has no working trap handler for it")


class Stop(Exception):
    """Ends the VM's run; `reason` says why (poweroff, crash, idle, timeout, ...)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Preempt(Exception):
    """Ends the vCPU's quantum: its time is up, or it waits for an interrupt (WFI)."""

    def __init__(self, waiting: bool = False):
        super().__init__()
        self.waiting = waiting


class Paused(Exception):
    """The VM was paused: the scheduler skips it until it is resumed."""


class VirtualCpu:
    """One hart of a VM and its exit handlers."""

    def __init__(self, vm, hartid: int):
        self.vm = vm
        self.hartid = hartid
        self.vcpu = _core.VCpu(vm.memory)
        self.hart = VirtualHart(self.vcpu, hartid, vm.clock)
        self.clock = vm.clock
        self.bus = vm.bus
        self.clint = vm.clint
        self.plic = vm.plic
        self.stats = vm.stats
        self.tracer = None
        self.irq_dirty = False
        self.fault: GuestFault | None = None
        self.hsm = STARTED                       # the SBI HSM state
        self.waiting = False                     # in WFI, with nothing pending yet
        self.suspended = False                   # ... because of SBI HSM hart_suspend
        self.quantum_end = 0                     # instret at which the quantum is over
        self.handlers = [None, self.on_budget, self.on_system, self.on_exception,
                         self.on_mmio, self.on_nomem, self.on_debug]
        # a debugger (the gdb stub, hvemu/control/gdbstub.py): a single step ends when
        # instret reaches step_end; a held vCPU does not run while the others do
        self.step_end: int | None = None
        self.held = False
        self._system: dict = {}                  # instruction word -> prepared handler

    @property
    def sbi(self):
        return self.vm.sbi

    # ---- running a quantum ----
    def run_quantum(self, quantum: int) -> bool:
        """Run this vCPU for up to `quantum` instructions; True if it ended waiting for
        an interrupt (WFI).  A Stop ends the VM's run."""
        vcpu = self.vcpu
        self.suspended = False                   # running again: a suspend has ended
        self.quantum_end = vcpu.instret + quantum
        self.timers_changed()
        self.check_interrupts()
        run, handlers, exits = vcpu.run, self.handlers, self.stats.exits
        try:
            if vcpu.privileged_part:
                hold, trace, csr, run = self.sie_hold, self.tracer, self.hart.csr, vcpu.run_part
                while True:        # what the privileged part may not do alone
                    reason = run(csr, hold())
                    exits[reason] += 1
                    if trace is None:
                        handlers[reason]()
                    else:
                        trace.exit(self, reason, handlers[reason])
            elif self.tracer is None:
                while True:
                    reason = run()
                    exits[reason] += 1
                    handlers[reason]()
            else:
                while True:
                    reason = run()
                    exits[reason] += 1
                    self.tracer.exit(self, reason, handlers[reason])
        except Preempt as end:
            return end.waiting
        except Paused:
            return False

    def sie_hold(self) -> int:
        """The privileged part's sie_hold (core/privpart.pxi), asked before every run:
        1 if an S-level interrupt is pending and enabled in sie, so that setting
        sstatus.SIE must take it; 2 if debug triggers are configured (they depend on
        SIE).  mip as last sampled is current unless a device moved (irq_dirty) or the
        clock is the host's: every other change of an interrupt line samples it, and a
        timer deadline ends a run exactly where it falls."""
        csr, hart = self.hart.csr, self.hart
        pending = 0
        if csr.mie & csr.mideleg:
            if self.irq_dirty or self.clock.realtime:
                self.update_mip()
            pending = 1 if csr.mip & csr.mie & csr.mideleg else 0
        return pending | (2 if hart._triggers_live or csr.triggers.configured else 0)

    # ---- exits ----
    def on_budget(self) -> None:
        """stop_at reached: a timer deadline, the quantum's end, a limit or a request."""
        vm = self.vm
        if vm.control.request is not None:
            vm.control.serve_request()
        if vm.max_instructions is not None and vm.instructions >= vm.max_instructions:
            raise _max_instructions()
        vm.rtc.poll()
        if self.step_end is not None and self.vcpu.instret >= self.step_end:
            self.step_end = None
            vm.debugger.stopped(self, "step")
        if self.vcpu.instret >= self.quantum_end:
            raise Preempt()
        self.timers_changed()
        self.check_interrupts()

    def on_system(self) -> None:
        """A privileged instruction: its handler, specialised once per instruction word."""
        insn = self.vcpu.exit_insn
        handler = self._system.get(insn)
        if handler is None:
            handler = self._system[insn] = prepare(self, insn)
        handler()

    def on_exception(self) -> None:
        vcpu = self.vcpu
        cause = vcpu.exit_cause
        if cause == BREAKPOINT:          # raised by the core only for a debug trigger
            self.hart.csr.triggers.fired(vcpu.exit_value)
        self.deliver_exception(cause, vcpu.exit_tval, vcpu.exit_pc)

    def on_mmio(self) -> None:
        vcpu = self.vcpu
        addr = vcpu.exit_addr
        write = vcpu.exit_is_write
        hit = self.bus.find(addr)
        if hit is None:
            self.deliver_exception(ACCESS_FAULT[write], vcpu.exit_tval, vcpu.exit_pc)
            return
        dev, offset = hit
        self.stats.mmio[dev.name] += 1
        size = vcpu.exit_size
        if write:
            dev.write(offset, size, vcpu.exit_value)
            vcpu.complete()
        else:
            vcpu.complete_load(dev.read(offset, size))
        if self.irq_dirty:
            self.check_interrupts()

    def on_debug(self) -> None:
        """A debugger's breakpoint or watchpoint, before the instruction ran."""
        if self.vm.debugger is None:             # points left with no debugger: drop them
            self.vcpu.set_debug_points([])
            return
        self.vm.debugger.stopped(self, "debug")

    def on_nomem(self) -> None:
        """A RAM page was touched for the first time and the host frame pool is empty:
        this VM stops (the others, sharing the pool, go on)."""
        pool = self.vm.memory.pool
        raise Stop("nomem", f"the host frame pool is exhausted ({pool.in_use >> 20} MiB of "
                   f"{(pool.limit or 0) >> 20} MiB in use): hart {self.hartid} touched a new "
                   f"page at pc {self.vcpu.exit_pc:#x}")

    # ---- traps and interrupts ----
    def deliver_exception(self, cause: int, tval: int, pc: int) -> None:
        """Reflect a guest exception into the guest's trap handler (virtual M or S).

        The same exception at the same pc twice with no instruction retired in
        between means the guest's handler itself faults: the guest is dead."""
        hart = self.hart
        instret = self.vcpu.instret
        key = (cause, pc, instret)
        if hart.last_trap == key:
            first = hart.first_trap or (cause, pc, tval, hart.priv)
            raise Stop("crash", self._fault(*first).report())
        if hart.last_trap is None or hart.last_trap[2] != instret:
            hart.first_trap = (cause, pc, tval, hart.priv)
        hart.last_trap = key
        self.stats.exceptions[cause] += 1
        hart.take_trap(cause, tval, pc)

    def _fault(self, cause: int, pc: int, tval: int, priv: int) -> GuestFault:
        from ..disasm import disassemble_at
        self.fault = GuestFault(cause, pc, tval, priv,
                                disassemble_at(self.vm, pc, priv, self.vcpu))
        return self.fault

    def update_mip(self) -> None:
        """Sample the interrupt lines of the CLINT, PLIC and Sstc into mip."""
        h = self.hartid
        c = self.hart.csr
        now = self.clock.now()
        hw = 0
        if now >= self.clint.mtimecmp[h]:
            hw |= MTIP
        if self.clint.msip[h]:
            hw |= MSIP
        if self.plic.ctx_pending[2 * h]:
            hw |= MEIP
        if self.plic.ctx_pending[2 * h + 1]:
            hw |= SEIP
        if c.menvcfg & MENVCFG_STCE and now >= c.stimecmp:
            hw |= STIP
        sbi = self.vm.sbi
        if sbi is not None and now >= sbi.timecmp[h]:
            hw |= STIP
        c.mip_hw = hw

    def check_interrupts(self) -> None:
        """Deliver the highest-priority interrupt the guest can take now, if any."""
        self.irq_dirty = False
        self.update_mip()
        cause = self.hart.pending_interrupt()
        if cause is not None:
            self.stats.interrupts[cause] += 1
            self.hart.last_trap = None
            self.hart.take_trap(cause, 0, self.vcpu.pc)

    def wakeable(self) -> bool:
        """WFI ends: an interrupt is pending and enabled in mie, whatever the global
        enables (privileged spec, "Wait for Interrupt")."""
        self.update_mip()
        c = self.hart.csr
        return bool(c.mip & c.mie)

    def next_timer_deadline(self) -> int | None:
        """The next mtime at which a timer interrupt becomes pending for this hart."""
        now = self.clock.now()
        c = self.hart.csr
        sbi = self.vm.sbi
        first = None
        for t in (self.clint.mtimecmp[self.hartid],
                  c.stimecmp if c.menvcfg & MENVCFG_STCE else None,
                  sbi.timecmp[self.hartid] if sbi is not None else None,
                  self.vm.rtc.next_deadline()):
            if t is not None and now < t < (1 << 63) and (first is None or t < first):
                first = t
        return first

    def timer_armed(self) -> bool:
        """Whether a timer this hart can take (enabled in mie) will fire some time."""
        return self.next_timer_deadline() is not None and bool(self.hart.csr.mie & (MTIP | STIP))

    def timers_changed(self) -> None:
        """Recompute where the core must stop next: a timer deadline, the quantum's end
        or a limit (or at once, for a pending request)."""
        vcpu = self.vcpu
        vm = self.vm
        if vm.control.request is not None:
            vcpu.stop_at = 0
            return
        stop, exact = self.quantum_end, False
        deadline = self.next_timer_deadline()
        if deadline is not None:
            at = max(self.clock.instret_at(deadline), vcpu.instret + 1)
            if at <= stop:
                stop, exact = at, True
        if vm.max_instructions is not None:
            limit = vcpu.instret + max(0, vm.max_instructions - vm.instructions)
            if limit <= stop:
                stop, exact = limit, True
        if self.step_end is not None and self.step_end <= stop:
            stop, exact = self.step_end, True
        # the quantum's end may be overshot by a page of straight-line code at most (no
        # exact last stretch in the reference interpreter); deadlines, limits and steps
        # may not
        vcpu.stop_soft = not exact
        vcpu.stop_at = stop

    def idle(self) -> None:
        """WFI (retired): go on at once if an interrupt can be taken.  If every other hart
        of the VM waits too, none of them could take an interrupt now, and time is
        virtual, time skips to the next timer deadline right here (no host time passes).
        Otherwise the quantum ends with the hart waiting; the scheduler wakes it when an
        interrupt can be taken."""
        if self.wakeable():
            self.check_interrupts()
            return
        vm = self.vm
        if not vm.clock.realtime and all(o is self or o.hsm != STARTED
                                         or (o.waiting and not o.wakeable())
                                         for o in vm.vcpus):
            deadline = vm.next_timer_deadline()
            if deadline is not None:
                vm.clock.skip_to(deadline)
                vm.rtc.poll()
                if self.wakeable():
                    self.timers_changed()
                    self.check_interrupts()
                    return
        self.waiting = True
        raise Preempt(waiting=True)

    def input_may_wake(self) -> bool:
        """Whether console input could wake this hart (an external or software
        interrupt is enabled)."""
        return bool(self.hart.csr.mie & (MEIP | SEIP | MSIP | SSIP))


def _max_instructions() -> Stop:
    return Stop("max-instructions")


__all__ = ["VirtualCpu", "Stop", "Preempt", "Paused", "GuestFault", "STARTED", "STOPPED",
           "START_PENDING", "STOP_PENDING", "SUSPENDED"]
