"""The hypervisor's vCPU run loop and exit dispatch (DESIGN.md, "Execution model").

`run()` calls the core, which executes guest code until something needs the
hypervisor, then dispatches the exit by reason: privileged instructions to
`privileged.dispatch`, MMIO to the device on the bus, guest exceptions are
reflected into the guest's own trap handler, and budget exits give the hypervisor
its turn for timers, input and limits.  Interrupts are checked whenever something
that could make one deliverable changes.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .. import _core
from .csr import MEIP, MENVCFG_STCE, MSIP, MTIP, SEIP, SSIP, STIP
from .hart import INTERRUPT, PRIV_NAMES, VirtualHart, cause_name
from .privileged import prepare
from .stats import ExitStats

SLICE = 1 << 22                 # instructions between the hypervisor's polls
WATCHDOG_KICK = 0.01            # seconds between the watchdog's kicks once the deadline passed
BREAKPOINT = 3
ACCESS_FAULT = {False: 5, True: 7}


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
    """Ends the run loop; `reason` says why."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Hypervisor:
    """Runs one virtual hart of a VM and handles its exits."""

    def __init__(self, vm):
        self.vm = vm
        self.vcpu: _core.VCpu = vm.vcpu
        self.hart: VirtualHart = vm.hart
        self.clock = vm.clock
        self.bus = vm.bus
        self.clint = vm.clint
        self.plic = vm.plic
        self.sbi = None                      # the built-in SBI, when booting without firmware
        self.stats = ExitStats()
        self.max_instructions: int | None = None
        self.deadline: float | None = None   # host monotonic time at which to stop
        self.poll = None                     # called every slice (console input)
        self.tracer = None
        self.irq_dirty = False
        self.fault: GuestFault | None = None
        self._handlers = [None, self.on_budget, self.on_system, self.on_exception, self.on_mmio,
                          self.on_nomem]
        self._system: dict = {}              # instruction word -> prepared handler
        self._request: str | None = None     # pause, reset, timeout or shutdown, any thread
        self._resumed = threading.Event()
        self._watchdog_done: threading.Event | None = None
        self._run_started: float | None = None
        self._core_start = self._seconds_before = self._core_before = 0.0

    # ---- the run loop ----
    def run(self) -> Stop:
        """Run the guest until it stops; returns the Stop that ended it."""
        vcpu = self.vcpu
        handlers = self._handlers
        exits = self.stats.exits
        self.timers_changed()
        self.check_interrupts()
        start = time.perf_counter()
        core_start = vcpu.core_seconds
        self._run_started, self._core_start = start, core_start
        self._seconds_before, self._core_before = self.stats.seconds, self.stats.core_seconds
        run = vcpu.run
        if self.poll is not None:
            self.poll()                      # input (Ctrl-A keys) also across reboots
        if self._request is not None:
            try:
                self._serve_request()
            except Stop as stop:
                self._run_started = None
                return stop
        self._start_watchdog()
        try:
            if self.tracer is None:
                while True:
                    reason = run()
                    exits[reason] += 1
                    handlers[reason]()
            else:
                while True:
                    reason = run()
                    exits[reason] += 1
                    self.tracer.exit(self, reason, handlers[reason])
        except Stop as stop:
            return stop
        finally:
            self._stop_watchdog()
            self._run_started = None
            self.stats.seconds = self._seconds_before + time.perf_counter() - start
            self.stats.core_seconds = self._core_before + vcpu.core_seconds - core_start
            self.stats.instructions = vcpu.instret
            self.stats.shadow = vcpu.shadow_stats

    # ---- the host deadline (--timeout) ----
    def _start_watchdog(self) -> None:
        """--timeout holds however the guest runs: a thread sleeps until the deadline, then
        asks for a stop and kicks the core every WATCHDOG_KICK seconds until the run loop
        has stopped.  The loop itself pays nothing per exit for it."""
        if self.deadline is None:
            return
        done = self._watchdog_done = threading.Event()
        deadline = self.deadline

        def watch() -> None:
            while (left := deadline - time.monotonic()) > 0:
                if done.wait(min(left, 3600.0)):      # Event.wait refuses huge timeouts
                    return
            while True:
                self.request("timeout")
                if done.wait(WATCHDOG_KICK):
                    return
        threading.Thread(target=watch, name="hvemu-watchdog", daemon=True).start()

    def _stop_watchdog(self) -> None:
        if self._watchdog_done is not None:
            self._watchdog_done.set()
            self._watchdog_done = None
        if self._request == "timeout":       # a late kick must not outlive this run
            self._request = None

    def check_limits(self) -> None:
        """Stop (raise Stop) if the host deadline has passed or a shutdown is asked for:
        called by devices between bounded pieces of a long request."""
        if self._request in ("timeout", "shutdown"):
            self._serve_request()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise Stop("timeout")

    # ---- exits ----
    REQUEST_RANK = {None: 0, "pause": 1, "reset": 2, "timeout": 3, "shutdown": 4}

    def request(self, what: str) -> None:
        """Ask the run loop (possibly from another thread) to pause, reset, stop at the
        deadline or shut down; the core is kicked so that it exits soon.  A request is
        never replaced by one of a lower rank (shutdown > timeout > reset > pause)."""
        if self.REQUEST_RANK[what] > self.REQUEST_RANK[self._request]:
            self._request = what
        if what == "pause":
            self._resumed.clear()
        else:
            self._resumed.set()          # a paused loop must see it
        self.vcpu.kick()

    def resume(self) -> None:
        if self._request == "pause":
            self._request = None
        self._resumed.set()

    def live_stats(self) -> ExitStats:
        """The statistics so far, also in the middle of a run (Ctrl-A s)."""
        s = self.stats
        s.instructions = self.vcpu.instret
        s.shadow = self.vcpu.shadow_stats
        if self._run_started is not None:
            s.seconds = self._seconds_before + time.perf_counter() - self._run_started
            s.core_seconds = self._core_before + self.vcpu.core_seconds - self._core_start
        return s

    def _serve_request(self) -> None:
        what, self._request = self._request, None
        if what == "shutdown":
            raise Stop("shutdown")
        if what == "timeout":
            raise Stop("timeout")
        if what == "reset":
            raise Stop("reset")
        if what == "pause":
            self.vm.state = "paused"
            while not self._resumed.wait(0.05):
                if self.poll is not None:
                    self.poll()              # the console may resume (Ctrl-A p) or quit
                if self._request in ("shutdown", "timeout", "reset"):
                    return self._serve_request()
            self.vm.state = "running"

    def on_budget(self) -> None:
        """stop_at reached: a timer deadline, the end of a slice, a limit or a request."""
        vcpu = self.vcpu
        if self._request is not None:
            self._serve_request()
        if self.max_instructions is not None and vcpu.instret >= self.max_instructions:
            raise Stop("max-instructions")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise Stop("timeout")
        if self.poll is not None:
            self.poll()
        self.vm.rtc.poll()
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

    def on_nomem(self) -> None:
        """A RAM page was touched for the first time and the host frame pool is empty:
        this VM stops (the others, sharing the pool, go on)."""
        pool = self.vm.memory.pool
        raise Stop("nomem", f"the host frame pool is exhausted ({pool.in_use >> 20} MiB of "
                   f"{(pool.limit or 0) >> 20} MiB in use): the guest touched a new page at "
                   f"pc {self.vcpu.exit_pc:#x}")

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
        self.fault = GuestFault(cause, pc, tval, priv, disassemble_at(self.vm, pc, priv))
        return self.fault

    def update_mip(self) -> None:
        """Sample the interrupt lines of the CLINT, PLIC and Sstc into mip."""
        h = self.hart.hartid
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
        if self.sbi is not None and now >= self.sbi.timecmp:
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

    def next_timer_deadline(self) -> int | None:
        """The next mtime at which a timer interrupt becomes pending, if any is armed."""
        now = self.clock.now()
        c = self.hart.csr
        deadlines = [t for t in (self.clint.mtimecmp[self.hart.hartid],
                                 c.stimecmp if c.menvcfg & MENVCFG_STCE else None,
                                 self.sbi.timecmp if self.sbi is not None else None,
                                 self.vm.rtc.next_deadline())
                     if t is not None and t > now and t < (1 << 63)]
        return min(deadlines) if deadlines else None

    def timers_changed(self) -> None:
        """Recompute where the core must stop next: a timer deadline, a slice end or a limit."""
        vcpu = self.vcpu
        if self._request is not None:            # a pending request: stop at once
            vcpu.stop_at = 0
            return
        stop = vcpu.instret + SLICE
        deadline = self.next_timer_deadline()
        if deadline is not None:
            stop = min(stop, max(self.clock.instret_at(deadline), vcpu.instret + 1))
        if self.max_instructions is not None:
            stop = min(stop, self.max_instructions)
        vcpu.stop_at = stop

    def idle(self) -> None:
        """WFI: skip virtual time to the next timer deadline unless something is pending.

        WFI wakes on any interrupt pending and enabled in mie, whatever the global
        enables (privileged spec, "Wait for Interrupt").  If nothing enabled in mie
        could ever become pending, the guest is stopped as idle."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise Stop("timeout")
        self.update_mip()
        c = self.hart.csr
        if c.mip & c.mie:
            self.check_interrupts()
            return
        deadline = self.next_timer_deadline()
        if deadline is not None and c.mie & (MTIP | STIP):
            self.clock.wait_until(deadline, self.vm.console, self.deadline)
            if self.clock.realtime and self.poll is not None:
                self.poll()                  # input may have come while the host slept
            self.vm.rtc.poll()
            self.timers_changed()
            self.check_interrupts()
            return
        if c.mie & (MEIP | SEIP | MSIP | SSIP) and self.vm.console.can_receive():
            self.vm.console.wait_input(self.deadline)
            if self.poll is not None:
                self.poll()
            self.check_interrupts()
            return
        raise Stop("idle", "the guest waits for an interrupt (WFI) that nothing can raise "
                   f"(mie={c.mie:#x}, no timer armed or no input possible)")


__all__ = ["Hypervisor", "Stop", "GuestFault", "INTERRUPT"]
