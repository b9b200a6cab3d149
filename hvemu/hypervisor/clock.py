"""A VM's time (DESIGN.md, "Time, idle and determinism").

Two clocks with one interface, chosen with `--clock`:

* `VirtualClock` (the default): mtime is derived from the guest instructions the VM's
  harts retire, so runs are reproducible: `INSNS_PER_TICK` instructions per tick of
  the 10 MHz timebase (a 100 MHz hart).  With N harts time is their instructions
  summed and divided by N: one global, monotonic time that a single hart sees advance
  as before, whichever hart reads it.  WFI on every hart skips time forward to the
  next deadline instead of spinning, which moves `offset`.
* `HostClock` (`--clock host`): mtime follows the host's monotonic clock, and WFI
  sleeps on the host until the next deadline or input, so an idle guest costs the
  host next to nothing.

The scheduler brackets each vCPU's turn with `enter(vc)` and `leave(vc)`.  `now()` is
mtime; `instret_at(t)` is the running hart's instret at which mtime reaches t (where
the core should stop); `core_time()` gives what the core needs to read `time` itself
(its native twin of the CSR handler), or None when only the hypervisor can.
"""
from __future__ import annotations

import time

INSNS_PER_TICK = 10
TIMEBASE = 10_000_000              # mtime ticks per second
MASK64 = (1 << 64) - 1


class VirtualClock:
    realtime = False

    def __init__(self, vm, insns_per_tick: int = INSNS_PER_TICK, on_change=None):
        self.vm = vm
        self.ipt = insns_per_tick
        self.offset = 0          # ticks added by idle skips and mtime writes
        self.on_change = on_change or (lambda: None)   # the offset moved
        self.current = None      # the core VCpu of the hart running now
        self.others = 0          # the instructions the other harts have retired

    @property
    def divisor(self) -> int:
        """Instructions (of all harts together) per tick."""
        return self.ipt * self.vm.board.harts

    def enter(self, vc) -> None:
        self.others = self.vm.instructions - vc.vcpu.instret
        self.current = vc.vcpu
        vc.hart.sync_counters()

    def leave(self, vc) -> None:
        self.current = None

    def _insns(self) -> int:
        cur = self.current
        return self.others + cur.instret if cur is not None else self.vm.instructions

    def now(self) -> int:
        """The current mtime."""
        return self._insns() // self.divisor + self.offset

    def set(self, t: int) -> None:
        """A guest write of mtime."""
        self.offset += t - self.now()
        self.on_change()

    def skip_to(self, t: int) -> None:
        """Idle until mtime reaches t."""
        now = self.now()
        if t > now:
            self.offset += t - now
            self.on_change()

    def instret_at(self, t: int) -> int:
        """The running hart's instret at which mtime reaches t."""
        needed = (t - self.offset) * self.divisor - self.others
        return needed if needed > 0 else 0

    def core_time(self, vcpu):
        """(instructions per tick, instructions to add, ticks to add): the core reads
        time = (instret + added) / per_tick + ticks while `vcpu` runs."""
        others = self.others if vcpu is self.current else self.vm.instructions - vcpu.instret
        return self.divisor, others & MASK64, self.offset & MASK64


class HostClock:
    """mtime from the host's monotonic clock (10 MHz), for interactive use."""

    realtime = True
    ipt = INSNS_PER_TICK

    def __init__(self, vm, on_change=None):
        self.vm = vm
        self.start_ns = time.monotonic_ns()
        self.offset = 0
        self.on_change = on_change or (lambda: None)
        self.current = None
        self.per_tick = float(INSNS_PER_TICK)  # instructions retired per tick, estimated
        self._seen: tuple[int, int] | None = None

    def enter(self, vc) -> None:
        self.current = vc.vcpu
        vc.hart.sync_counters()

    def leave(self, vc) -> None:
        self.current = None

    def now(self) -> int:
        return (time.monotonic_ns() - self.start_ns) * TIMEBASE // 1_000_000_000 + self.offset

    def set(self, t: int) -> None:
        self.offset += t - self.now()
        self.on_change()

    def skip_to(self, t: int) -> None:
        """Host time cannot be skipped: a no-op (waiting is the scheduler's)."""

    def host_time_of(self, t: int) -> float:
        """The host monotonic time (seconds) at which mtime reaches t."""
        return time.monotonic() + max(0, t - self.now()) / TIMEBASE

    def instret_at(self, t: int) -> int:
        """Where the running hart should stop to see mtime t: estimated from the rate the
        guest has been retiring instructions, scaled down so that it stops a little early."""
        cur = self.current
        instret = cur.instret if cur is not None else 0
        now_ns = time.monotonic_ns()
        if self._seen is not None:
            spent_ns, retired = now_ns - self._seen[0], instret - self._seen[1]
            if spent_ns > 1_000_000 and retired > 0:
                per_tick = retired * 1e9 / TIMEBASE / spent_ns
                self.per_tick = max(1.0, (self.per_tick + per_tick) / 2)
        self._seen = (now_ns, instret)
        ticks = t - self.now()
        return instret + max(1, int(max(ticks, 1) * self.per_tick * 0.9))

    def core_time(self, vcpu):
        return None                    # every `time` read exits: the core cannot know it


def make_clock(kind: str, vm, on_change=None):
    if kind == "virtual":
        return VirtualClock(vm, on_change=on_change)
    if kind == "host":
        return HostClock(vm, on_change=on_change)
    raise ValueError(kind)
