"""Spike's HTIF (host-target interface) through the ELF's `tohost`/`fromhost` words.

Only the `tohost` word is watched: a guest store that touches it exits here (the
core keeps every other access to its page, `fromhost` included, in guest RAM).
Commands, as riscv-isa-sim's htif and the riscv-tests environment use them:
device 0 (syscall proxy) with bit 0 set is exit with code value >> 1; device 1
command 1 is console output of the low byte, acknowledged in `fromhost`.  Both
words must lie in guest RAM, 8-byte aligned (`check_htif_words`): a symbol the
image chooses never widens what the guest may write.
"""
from __future__ import annotations

from ..errors import ImageError

MASK64 = (1 << 64) - 1


def check_htif_words(path: str, memory, tohost: int, fromhost: int | None) -> None:
    """Refuse, with one line, tohost/fromhost words that are not 8 aligned bytes of RAM."""
    for name, addr in (("tohost", tohost), ("fromhost", fromhost)):
        if addr is None:
            continue
        if addr % 8 or not memory.contains_ram(addr, 8):
            raise ImageError(f"{path}: its {name} symbol at {addr:#x} is not an aligned "
                             f"8-byte word of guest RAM ({memory.ram_base:#x}-"
                             f"{memory.ram_base + memory.ram_size - 1:#x}), so HTIF cannot "
                             "use it")


class Htif:
    """Mapped on the MMIO bus over the 8 bytes of `tohost`."""

    name = "htif"

    def __init__(self, memory, tohost: int, fromhost: int | None, console, power):
        self.memory = memory
        self.tohost = tohost
        self.fromhost = fromhost
        self.console = console
        self.power = power

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.memory.read(self.tohost + offset, size), "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.memory.write(self.tohost + offset, (value & ((1 << (8 * size)) - 1))
                          .to_bytes(size, "little"))
        word = int.from_bytes(self.memory.read(self.tohost, 8), "little")
        if word == 0:
            return
        device, command, payload = word >> 56, (word >> 48) & 0xFF, word & ((1 << 48) - 1)
        self.memory.write(self.tohost, bytes(8))
        if device == 0 and payload & 1:
            self.power.poweroff(payload >> 1)
        elif device == 1 and command == 1:
            self.console.output(bytes((payload & 0xFF,)))
            if self.fromhost is not None:
                self.memory.write(self.fromhost, ((1 << 56) | (1 << 48)).to_bytes(8, "little"))
