"""The CLINT (SiFive core-local interruptor): msip, mtimecmp and mtime.

Layout as on QEMU's virt board: msip[hart] at 0x0000 (4 bytes each),
mtimecmp[hart] at 0x4000 (8 bytes each), mtime at 0xBFF8.  Registers may be
accessed as 32-bit halves.  The timer interrupt (mip.MTIP) is level: pending
while mtime >= mtimecmp; the hypervisor samples it (`timer_pending`).
"""
from __future__ import annotations

MSIP_BASE, MTIMECMP_BASE, MTIME = 0x0000, 0x4000, 0xBFF8
MASK64 = (1 << 64) - 1


class Clint:
    name = "clint"

    def __init__(self, clock, harts: int = 1, on_change=None):
        self.clock = clock
        self.harts = harts
        self.on_change = on_change or (lambda: None)
        self.reset()

    def reset(self) -> None:
        self.msip = [0] * self.harts
        self.mtimecmp = [MASK64] * self.harts

    def timer_pending(self, hart: int) -> bool:
        return self.clock.now() >= self.mtimecmp[hart]

    def _reg(self, offset: int) -> tuple[str, int, int] | None:
        """(register, hart, byte offset within it) for offset."""
        if offset < MSIP_BASE + 4 * self.harts:
            return "msip", offset // 4, offset % 4
        if MTIMECMP_BASE <= offset < MTIMECMP_BASE + 8 * self.harts:
            return "mtimecmp", (offset - MTIMECMP_BASE) // 8, (offset - MTIMECMP_BASE) % 8
        if MTIME <= offset < MTIME + 8:
            return "mtime", 0, offset - MTIME
        return None

    def read(self, offset: int, size: int) -> int:
        reg = self._reg(offset)
        if reg is None:
            return 0
        name, hart, byte = reg
        if name == "msip":
            return self.msip[hart] if byte == 0 else 0
        value = self.mtimecmp[hart] if name == "mtimecmp" else self.clock.now()
        return (value >> (8 * byte)) & ((1 << (8 * size)) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        reg = self._reg(offset)
        if reg is None:
            return
        name, hart, byte = reg
        if name == "msip":
            if byte == 0:
                self.msip[hart] = value & 1
        else:
            old = self.mtimecmp[hart] if name == "mtimecmp" else self.clock.now()
            mask = ((1 << (8 * size)) - 1) << (8 * byte)
            new = (old & ~mask) | ((value << (8 * byte)) & mask)
            if name == "mtimecmp":
                self.mtimecmp[hart] = new & MASK64
            else:
                self.clock.set(new & MASK64)
        self.on_change()
