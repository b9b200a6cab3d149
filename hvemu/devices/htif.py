"""Spike's HTIF (host-target interface) through the ELF's `tohost`/`fromhost` words.

The page holding them is trapped (never cached in the shadow TLB), so guest
accesses exit here; everything but a write to `tohost` is passed through to RAM.
Commands, as riscv-isa-sim's htif and the riscv-tests environment use them:
device 0 (syscall proxy) with bit 0 set is exit with code value >> 1; device 1
command 1 is console output of the low byte.
"""
from __future__ import annotations


class Htif:
    name = "htif"

    def __init__(self, memory, page: int, tohost: int, fromhost: int | None, console, power):
        self.memory = memory
        self.page = page                # guest-physical base of the trapped page
        self.tohost = tohost
        self.fromhost = fromhost
        self.console = console
        self.power = power

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.memory.read(self.page + offset, size), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        addr = self.page + offset
        self.memory.write(addr, value.to_bytes(size, "little"))
        if addr != self.tohost or value == 0:
            return
        device, command, payload = value >> 56, (value >> 48) & 0xFF, value & ((1 << 48) - 1)
        if device == 0 and payload & 1:
            self.power.poweroff(payload >> 1)
        elif device == 1 and command == 1:
            self.console.output(bytes((payload & 0xFF,)))
            if self.fromhost is not None:
                self.memory.write(self.fromhost, ((1 << 56) | (1 << 48)).to_bytes(8, "little"))
        self.memory.write(self.tohost, bytes(8))
