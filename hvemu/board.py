"""The guest machine's board: QEMU virt's memory map and interrupt numbers (DESIGN.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ._core import CBO_BLOCK_SIZE

BOOT_ROM = 0x1000
FINISHER = 0x100000
RTC = 0x101000
RTC_IRQ = 11
CLINT = 0x2000000
PLIC = 0xC000000
UART = 0x10000000
UART_IRQ = 10
VIRTIO_BASE = 0x10001000
VIRTIO_SLOTS = 8
RAM_BASE = 0x80000000
TIMEBASE = 10_000_000          # mtime ticks per second
# The ISA string: the device tree's riscv,isa, and the source of misa's letters (csr.py):
# single letters, then the Z extensions by their category letter (i, then b) and name,
# then the S ones, as the ISA manual orders them
ISA = ("rv64imafdc_zicbom_zicbop_zicboz_zicond_zicsr_zifencei_zihintpause"
       "_zba_zbb_zbc_zbs_sdtrig_sstc")
CACHE_BLOCK = CBO_BLOCK_SIZE    # bytes: cbo.* block size (riscv,cbom/cbop/cboz-block-size)


@dataclass
class Board:
    ram_size: int
    harts: int = 1
    ram_base: int = RAM_BASE
    bootargs: str = ""
    initrd: tuple[int, int] | None = None     # guest-physical [start, end) of the initrd
    rng_seed: bytes = b""                     # /chosen/rng-seed
    finisher: int = FINISHER
    rtc: int = RTC
    rtc_irq: int = RTC_IRQ
    clint: int = CLINT
    plic: int = PLIC
    plic_sources: int = 96
    uart: int = UART
    uart_irq: int = UART_IRQ
    timebase: int = TIMEBASE
    isa: str = ISA
    virtio_slots_used: list[int] = field(default_factory=list)

    @property
    def isa_extensions(self) -> list[str]:
        """The ISA string as the device tree's riscv,isa-extensions list: single letters,
        then the multi-letter extensions (the one source of truth is `isa`)."""
        base, *multi = self.isa.split("_")
        return list(base[len("rv64"):]) + multi

    @staticmethod
    def virtio_irq(base: int) -> int:
        return 1 + (base - VIRTIO_BASE) // 0x1000

    def fdt_address(self, fdt_size: int) -> int:
        """Where the device tree goes: QEMU's choice, 2 MiB-aligned below the end of RAM."""
        end = min(self.ram_base + self.ram_size, 3 << 30 if self.ram_base < 3 << 30 else 1 << 64)
        return (end - fdt_size) & ~((2 << 20) - 1)
