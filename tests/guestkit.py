"""Raw guests built in Python, for the hostile-guest and fuzz tests.

A `RawGuest` is machine code at 0x8000_0000 (straight-line stores and loads, no
assembler needed) followed by data at DATA (descriptor tables, rings, request
headers) that the code refers to by address.  `virtio_blk_guest()` builds a guest
that sets up virtio-blk slot 0 through its registers, as a driver would, makes one
descriptor chain available `count` times in one notify, and prints the status byte
the device wrote ("status=0".."status=2"; "status=e" if it never wrote one) before it
powers off with 0.
"""
from __future__ import annotations

import struct

from vmkit import (
    ACKNOWLEDGE,
    DRIVER,
    DRIVER_OK,
    DRV_FEATURES,
    DRV_FEATURES_SEL,
    FEATURES_OK,
    QUEUE_DESC_HI,
    QUEUE_DESC_LO,
    QUEUE_DEVICE_HI,
    QUEUE_DEVICE_LO,
    QUEUE_DRIVER_HI,
    QUEUE_DRIVER_LO,
    QUEUE_NOTIFY,
    QUEUE_NUM,
    QUEUE_READY,
    QUEUE_SEL,
    STATUS,
    UART_LUI,
    Enc,
)

RAM_BASE = 0x8000_0000
DATA = RAM_BASE + 0x10000        # the data area (the code stays below it)
VIRTIO0 = 0x1000_1000            # virtio-mmio slot 0
UART = UART_LUI << 12
T0, T1, T2 = Enc.T0, Enc.T1, Enc.T2


def li32(rd: int, value: int) -> list[int]:
    """rd = value's low 32 bits, sign-extended (enough for a 32-bit store or an address
    below 0x8000_0000; RAM addresses are formed with a shift, see `li_addr`)."""
    value &= 0xFFFFFFFF
    return Enc.li(rd, value - (1 << 32) if value & 0x8000_0000 else value)


def li_addr(rd: int, addr: int) -> list[int]:
    """rd = a 32-bit unsigned address (RAM at 0x8000_0000 included)."""
    if addr < 0x8000_0000:
        return li32(rd, addr)
    # addr = 0x8000_0000 + off: 1 << 31, plus off
    return [Enc.addi(rd, 0, 1), Enc.slli(rd, rd, 31), *li32(T0, addr - 0x8000_0000),
            0x00000033 | (rd << 7) | (rd << 15) | (T0 << 20)]           # add rd, rd, t0


class RawGuest:
    def __init__(self) -> None:
        self.code: list[int] = []
        self.data = bytearray()

    def place(self, data: bytes, align: int = 16) -> int:
        """Put data in the data area; its guest-physical address."""
        self.data += bytes(-len(self.data) % align)
        addr = DATA + len(self.data)
        self.data += data
        return addr

    def reserve(self, n: int, align: int = 16) -> int:
        return self.place(bytes(n), align)

    def store32(self, addr: int, value: int) -> None:
        self.code += [*li_addr(T2, addr), *li32(T1, value), Enc.sw(T1, T2, 0)]

    def store8(self, addr: int, value: int) -> None:
        self.code += [*li_addr(T2, addr), *li32(T1, value), Enc.sb(T1, T2, 0)]

    def print(self, text: str) -> None:
        self.code += [Enc.lui(T2, UART_LUI)]
        for ch in text.encode():
            self.code += [*li32(T1, ch), Enc.sb(T1, T2, 0)]

    def print_hex_digit_at(self, addr: int) -> None:
        """Print the low nibble of the byte at addr as a hex digit."""
        self.code += [*li_addr(T2, addr), Enc.lbu(T1, T2, 0), Enc.andi(T1, T1, 15),
                      Enc.addi(T0, 0, 10),
                      _blt(T1, T0, 8),                  # below 10: skip the next one
                      Enc.addi(T1, T1, ord("a") - ord("0") - 10),
                      Enc.addi(T1, T1, ord("0")), Enc.lui(T2, UART_LUI), Enc.sb(T1, T2, 0)]

    def poweroff(self, code: int = 0) -> None:
        self.code += Enc.poweroff(code)

    def image(self) -> bytes:
        code = Enc.code(self.code + [Enc.J_SELF])
        assert len(code) <= DATA - RAM_BASE, "code overlaps the data area"
        return code.ljust(DATA - RAM_BASE, b"\0") + bytes(self.data)


def _blt(rs1: int, rs2: int, offset: int) -> int:
    return Enc.beq(rs1, rs2, offset) | (4 << 12)


def virtio_blk_guest(chain: list[tuple[int, int, bool]], *, count: int = 1,
                     qsize: int = 256, status_addr: int | None = None,
                     guest: RawGuest | None = None) -> RawGuest:
    """A guest that makes `chain` ((addr, length, device_writes) buffers) available
    `count` times in one notify of virtio-blk slot 0, then prints `status=<status byte>`
    (status_addr: the byte to print; default: the last byte of the last writable buffer).
    Addresses in chain are guest-physical (use guest.place() for the data area)."""
    g = guest or RawGuest()
    desc = g.reserve(16 * qsize, 16)
    for i, (addr, length, writable) in enumerate(chain):
        last = i == len(chain) - 1
        flags = (2 if writable else 0) | (0 if last else 1)
        g.data[desc - DATA + 16 * i:desc - DATA + 16 * i + 16] = struct.pack(
            "<QIHH", addr, length, flags, 0 if last else i + 1)
    ring = struct.pack("<HH", 0, count) + struct.pack(f"<{qsize}H", *([0] * qsize))
    avail = g.place(ring, 2)
    used = g.reserve(4 + 8 * qsize, 4)
    if status_addr is None:
        last = [b for b in chain if b[2]][-1]
        status_addr = last[0] + last[1] - 1
    g.store8(status_addr, 0x0E)                       # "e": the device never answered
    regs = [(STATUS, 0), (STATUS, ACKNOWLEDGE), (STATUS, ACKNOWLEDGE | DRIVER),
            (DRV_FEATURES_SEL, 1), (DRV_FEATURES, 1), (DRV_FEATURES_SEL, 0),
            (DRV_FEATURES, 0), (STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK),
            (QUEUE_SEL, 0), (QUEUE_NUM, qsize),
            (QUEUE_DESC_LO, desc), (QUEUE_DESC_HI, 0), (QUEUE_DRIVER_LO, avail),
            (QUEUE_DRIVER_HI, 0), (QUEUE_DEVICE_LO, used), (QUEUE_DEVICE_HI, 0),
            (QUEUE_READY, 1), (STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK),
            (QUEUE_NOTIFY, 0)]
    for offset, value in regs:
        g.store32(VIRTIO0 + offset, value)
    g.print("status=")
    g.print_hex_digit_at(status_addr)
    g.print("\n")
    g.poweroff(0)
    return g


def blk_header(kind: int, sector: int = 0) -> bytes:
    return struct.pack("<IIQ", kind, 0, sector)
