"""The boot ROM at 0x1000, like QEMU virt's reset vector.

    auipc t0, 0           t0 = 0x1000
    addi  a2, t0, 40      a2 = &fw_dynamic_info (OpenSBI fw_dynamic)
    csrr  a0, mhartid     (a CSR read: the ROM's first exit to the hypervisor)
    ld    a1, 32(t0)      a1 = device-tree address
    ld    t0, 24(t0)      t0 = entry
    jr    t0

followed by the entry and device-tree addresses, then OpenSBI's fw_dynamic_info
(magic "OSBI", version 2, next_addr, next_mode, options, boot_hart).
"""
from __future__ import annotations

import struct

ROM_BASE = 0x1000
ROM_CODE = (0x00000297, 0x02828613, 0xF1402573, 0x0202B583, 0x0182B283, 0x00028067)
FW_DYNAMIC_MAGIC = 0x4942534F
NEXT_MODE_S = 1


def boot_rom(entry: int, fdt_addr: int, next_addr: int = 0) -> bytes:
    """The ROM image: code, then entry and fdt addresses, then fw_dynamic_info."""
    code = struct.pack("<6I", *ROM_CODE)
    info = struct.pack("<6Q", FW_DYNAMIC_MAGIC, 2, next_addr, NEXT_MODE_S, 0, (1 << 64) - 1)
    return code + struct.pack("<2Q", entry, fdt_addr) + info
