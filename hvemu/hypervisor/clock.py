"""Virtual time (DESIGN.md, "Time, idle and determinism").

mtime is derived from retired guest instructions, so runs are reproducible:
`INSNS_PER_TICK` instructions per tick of the 10 MHz timebase (a 100 MHz hart).
WFI with nothing pending skips time forward to the next deadline instead of
spinning, which moves `offset`.
"""
from __future__ import annotations

INSNS_PER_TICK = 10


class VirtualClock:
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

    def instret_at(self, t: int) -> int:
        """The retired-instruction count at which mtime reaches t."""
        ticks = t - self.offset
        return ticks * self.ipt if ticks > 0 else 0
