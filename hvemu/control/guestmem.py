"""Guest memory as a debugger sees it: virtual addresses translated through the hart's
own page tables (Sv39/Sv48) by a read-only walk that, unlike the core's, sets no A/D bit
and fills no shadow entry, so that looking at a guest does not change it."""
from __future__ import annotations

PTE_V, PTE_R, PTE_W, PTE_X = 1, 2, 4, 8
LEVELS = {8: 3, 9: 4}          # satp.MODE -> page-table levels (Sv39, Sv48)


class Unmapped(Exception):
    """A virtual address the guest's page tables do not map."""


def translation(vc, priv: int | None = None):
    """(mode, root) the hart translates data accesses with at privilege priv (default:
    its own, MPRV applied): mode 0 is bare."""
    hart = vc.hart
    c = hart.csr
    p = hart.priv if priv is None else priv
    if priv is None and p == 3 and c.mstatus & (1 << 17):       # MPRV: as MPP
        p = (c.mstatus >> 11) & 3
    if p == 3:
        return 0, 0
    return c.satp >> 60, (c.satp & ((1 << 44) - 1)) << 12


def virt_to_phys(vc, va: int, priv: int | None = None) -> int:
    """The guest-physical address of virtual address va; Unmapped if none."""
    mode, root = translation(vc, priv)
    if mode == 0:
        return va
    levels = LEVELS.get(mode)
    if levels is None:
        raise Unmapped(f"{va:#x}: satp mode {mode} is not Sv39 or Sv48")
    bits = 12 + 9 * levels
    top = va >> (bits - 1)
    if top not in (0, (1 << (64 - bits + 1)) - 1):
        raise Unmapped(f"{va:#x}: not a canonical Sv{bits} address")
    memory = vc.vm.memory
    table = root
    for level in range(levels - 1, -1, -1):
        index = (va >> (12 + 9 * level)) & 0x1FF
        try:
            pte = int.from_bytes(memory.read(table + 8 * index, 8), "little")
        except IndexError:
            raise Unmapped(f"{va:#x}: a page table at {table:#x} is outside memory") from None
        if not pte & PTE_V or (pte & PTE_W and not pte & PTE_R):
            raise Unmapped(f"{va:#x}: not mapped")
        ppn = (pte >> 10) & ((1 << 44) - 1)
        if pte & (PTE_R | PTE_X):
            span = 12 + 9 * level
            return ((ppn << 12) & ~((1 << span) - 1)) | (va & ((1 << span) - 1))
        table = ppn << 12
    raise Unmapped(f"{va:#x}: not mapped")


def read_virtual(vc, va: int, size: int, priv: int | None = None) -> bytes:
    """size bytes at virtual address va, page by page; Unmapped or IndexError."""
    out = bytearray()
    while size > 0:
        chunk = min(size, 4096 - (va & 0xFFF))
        pa = virt_to_phys(vc, va, priv)
        try:
            out += vc.vm.memory.read(pa, chunk)
        except IndexError:
            raise Unmapped(f"{va:#x}: physical {pa:#x} is not memory") from None
        va = (va + chunk) & ((1 << 64) - 1)
        size -= chunk
    return bytes(out)


def write_virtual(vc, va: int, data: bytes, priv: int | None = None) -> None:
    """Write data at virtual address va (RAM or ROM; decoded code it covers is dropped)."""
    done = 0
    while done < len(data):
        chunk = min(len(data) - done, 4096 - (va & 0xFFF))
        pa = virt_to_phys(vc, va, priv)
        try:
            vc.vm.memory.write(pa, data[done:done + chunk])
        except IndexError:
            raise Unmapped(f"{va:#x}: physical {pa:#x} is not memory") from None
        va = (va + chunk) & ((1 << 64) - 1)
        done += chunk
