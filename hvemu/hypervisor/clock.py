"""Virtual time (DESIGN.md, "Time, idle and determinism").

Two clocks with one interface, chosen with `--clock`:

* `VirtualClock` (the default): mtime is derived from retired guest instructions, so
  runs are reproducible: `INSNS_PER_TICK` instructions per tick of the 10 MHz
  timebase (a 100 MHz hart).  WFI with nothing pending skips time forward to the next
  deadline instead of spinning, which moves `offset`.
* `HostClock` (`--clock host`): mtime follows the host's monotonic clock, and WFI
  sleeps on the host until the next deadline or input, so an idle guest costs the
  host next to nothing.

`now()` is mtime; `instret_at(t)` is where the core should stop so that the
hypervisor sees deadline t in time; `wait_until(t, console, deadline)` idles.
`native_time` says whether the core may compute `time` from instret itself;
`realtime`, whether time passes while the guest waits.
"""
from __future__ import annotations

import time

INSNS_PER_TICK = 10
TIMEBASE = 10_000_000              # mtime ticks per second


class VirtualClock:
    native_time = True
    realtime = False

    def __init__(self, vcpu, insns_per_tick: int = INSNS_PER_TICK, on_change=None):
        self.vcpu = vcpu
        self.ipt = insns_per_tick
        self.offset = 0          # ticks added by idle skips and mtime writes
        self.on_change = on_change or (lambda: None)   # the offset moved

    def now(self) -> int:
        """The current mtime."""
        return self.vcpu.instret // self.ipt + self.offset

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

    def wait_until(self, t: int, console, deadline: float | None) -> None:
        """WFI until mtime t: virtual time jumps there at once."""
        self.skip_to(t)

    def instret_at(self, t: int) -> int:
        """The retired-instruction count at which mtime reaches t."""
        ticks = t - self.offset
        return ticks * self.ipt if ticks > 0 else 0


class HostClock:
    """mtime from the host's monotonic clock (10 MHz), for interactive use."""

    native_time = False            # every `time` read exits: the core cannot know it
    realtime = True
    ipt = INSNS_PER_TICK           # unused by the core's counters while native_time is off
    def __init__(self, vcpu, on_change=None):
        self.vcpu = vcpu
        self.start_ns = time.monotonic_ns()
        self.offset = 0
        self.on_change = on_change or (lambda: None)
        self.per_tick = float(INSNS_PER_TICK)  # instructions retired per tick, estimated
        self._seen: tuple[int, int] | None = None

    def now(self) -> int:
        return (time.monotonic_ns() - self.start_ns) * TIMEBASE // 1_000_000_000 + self.offset

    def set(self, t: int) -> None:
        self.offset += t - self.now()
        self.on_change()

    def skip_to(self, t: int) -> None:
        """Host time cannot be skipped: a no-op (an SBI suspend waits as WFI does)."""

    def wait_until(self, t: int, console, deadline: float | None) -> None:
        """Sleep on the host until mtime t, guest input, or the --timeout deadline."""
        seconds = (t - self.now()) / TIMEBASE
        if seconds <= 0:
            return
        until = time.monotonic() + seconds
        if deadline is not None:
            until = min(until, deadline)
        console.wait_input(until, limit=min(seconds, 0.05))

    def instret_at(self, t: int) -> int:
        """Where the core should stop to see mtime t: estimated from the rate the guest has
        been retiring instructions, scaled down so that the core stops a little early."""
        now_ns, instret = time.monotonic_ns(), self.vcpu.instret
        if self._seen is not None:
            spent_ns, retired = now_ns - self._seen[0], instret - self._seen[1]
            if spent_ns > 1_000_000 and retired > 0:
                per_tick = retired * 1e9 / TIMEBASE / spent_ns
                self.per_tick = max(1.0, (self.per_tick + per_tick) / 2)
        self._seen = (now_ns, instret)
        ticks = t - self.now()
        return instret + max(1, int(max(ticks, 1) * self.per_tick * 0.9))


def make_clock(kind: str, vcpu, on_change=None):
    if kind == "virtual":
        return VirtualClock(vcpu, on_change=on_change)
    if kind == "host":
        return HostClock(vcpu, on_change=on_change)
    raise ValueError(kind)
