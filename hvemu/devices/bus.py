"""The MMIO bus: guest-physical address -> device model.

Every guest load or store to an address that is not RAM exits from the core;
the hypervisor looks the device up here.  Devices implement
`read(offset, size) -> int` and `write(offset, size, value)`.
"""
from __future__ import annotations

from typing import Protocol


class MmioDevice(Protocol):
    name: str

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...


class MmioBus:
    """Devices mapped at page-aligned guest-physical ranges; lookup is one dict probe."""

    def __init__(self) -> None:
        self._pages: dict[int, list[tuple[int, int, MmioDevice]]] = {}
        self.regions: list[tuple[int, int, MmioDevice]] = []

    def map(self, base: int, size: int, device: MmioDevice) -> None:
        for b, s, d in self.regions:
            if base < b + s and b < base + size:
                raise ValueError(f"{device.name} at {base:#x} overlaps {d.name} at {b:#x}")
        self.regions.append((base, size, device))
        for page in range(base >> 12, (base + size + 0xFFF) >> 12):
            self._pages.setdefault(page, []).append((base, size, device))

    def find(self, addr: int) -> tuple[MmioDevice, int] | None:
        """(device, offset) for addr, or None if nothing is mapped there."""
        for base, size, dev in self._pages.get(addr >> 12, ()):
            if base <= addr < base + size:
                return dev, addr - base
        return None
