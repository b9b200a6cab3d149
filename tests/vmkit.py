"""Helpers for the virtio-blk, disk CLI and VM lifecycle tests.

* `IrqLine` records what a device drives on its interrupt line.
* `VirtioDriver` is a guest virtio-mmio driver written in Python: it talks to a
  `VirtioMmio` only through its registers (read/write at offsets, VIRTIO 1.1
  section 4.2.2/4.2.3) and lays out the split virtqueue (descriptor table,
  available and used rings) and request buffers in a `GuestMemory`.
* `Guest` encodes the few RV64 programs the lifecycle tests boot as raw images:
  spin forever, print a byte then spin, print a byte then reset, echo one byte.
"""
from __future__ import annotations

import struct
import time

from conftest import RV

RAM_BASE = 0x8000_0000
RAM_SIZE = 1 << 20
SECTOR = 512

# virtio-mmio register offsets (4.2.2)
MAGIC, VERSION, DEVICE_ID, VENDOR_ID = 0x000, 0x004, 0x008, 0x00C
DEV_FEATURES, DEV_FEATURES_SEL = 0x010, 0x014
DRV_FEATURES, DRV_FEATURES_SEL = 0x020, 0x024
QUEUE_SEL, QUEUE_NUM_MAX, QUEUE_NUM, QUEUE_READY, QUEUE_NOTIFY = 0x030, 0x034, 0x038, 0x044, 0x050
INT_STATUS, INT_ACK, STATUS = 0x060, 0x064, 0x070
QUEUE_DESC_LO, QUEUE_DESC_HI = 0x080, 0x084
QUEUE_DRIVER_LO, QUEUE_DRIVER_HI = 0x090, 0x094
QUEUE_DEVICE_LO, QUEUE_DEVICE_HI = 0x0A0, 0x0A4
CONFIG_GENERATION, CONFIG = 0x0FC, 0x100

ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK = 1, 2, 4, 8
NEEDS_RESET, FAILED = 64, 128
DESC_NEXT, DESC_WRITE, DESC_INDIRECT = 1, 2, 4

# virtio-blk (5.2)
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
F_VERSION_1 = 1 << 32
F_RO, F_FLUSH = 1 << 5, 1 << 9


class IrqLine:
    """An interrupt line that remembers every level driven on it."""

    def __init__(self) -> None:
        self.history: list[bool] = []

    def __call__(self, level: bool) -> None:
        self.history.append(bool(level))

    @property
    def level(self) -> bool:
        return bool(self.history) and self.history[-1]

    def clear(self) -> None:
        self.history.clear()


class VirtioDriver:
    """A guest driver for one virtio-mmio device, one virtqueue (queue 0).

    Layout in RAM: descriptor table at DESC, available ring at AVAIL, used ring at
    USED, request headers/status bytes from SCRATCH, data buffers from DATA."""

    DESC = RAM_BASE + 0x1000
    AVAIL = RAM_BASE + 0x2000
    USED = RAM_BASE + 0x3000
    SCRATCH = RAM_BASE + 0x4000
    DATA = RAM_BASE + 0x10000

    def __init__(self, dev, mem, qsize: int = 8):
        self.dev = dev
        self.mem = mem
        self.qsize = qsize
        self.next_desc = 0
        self.avail_idx = 0
        self.used_seen = 0
        self.scratch = self.SCRATCH

    # ---- registers ----
    def r(self, offset: int, size: int = 4) -> int:
        return self.dev.read(offset, size)

    def w(self, offset: int, value: int, size: int = 4) -> None:
        self.dev.write(offset, size, value)

    @property
    def status(self) -> int:
        return self.r(STATUS)

    def device_features(self) -> int:
        self.w(DEV_FEATURES_SEL, 0)
        lo = self.r(DEV_FEATURES)
        self.w(DEV_FEATURES_SEL, 1)
        hi = self.r(DEV_FEATURES)
        return lo | hi << 32

    def write_features(self, features: int) -> None:
        self.w(DRV_FEATURES_SEL, 0)
        self.w(DRV_FEATURES, features & 0xFFFFFFFF)
        self.w(DRV_FEATURES_SEL, 1)
        self.w(DRV_FEATURES, features >> 32)

    def negotiate(self, features: int | None = None) -> int:
        """Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns the status read back."""
        self.w(STATUS, 0)
        self.w(STATUS, ACKNOWLEDGE)
        self.w(STATUS, ACKNOWLEDGE | DRIVER)
        offered = self.device_features()
        self.write_features(offered if features is None else features)
        self.w(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK)
        return self.status

    def setup_queue(self, desc=None, avail=None, used=None) -> None:
        desc = self.DESC if desc is None else desc
        avail = self.AVAIL if avail is None else avail
        used = self.USED if used is None else used
        self.w(QUEUE_SEL, 0)
        assert self.r(QUEUE_READY) == 0
        assert self.r(QUEUE_NUM_MAX) >= self.qsize
        self.w(QUEUE_NUM, self.qsize)
        for lo, hi, addr in ((QUEUE_DESC_LO, QUEUE_DESC_HI, desc),
                             (QUEUE_DRIVER_LO, QUEUE_DRIVER_HI, avail),
                             (QUEUE_DEVICE_LO, QUEUE_DEVICE_HI, used)):
            self.w(lo, addr & 0xFFFFFFFF)
            self.w(hi, addr >> 32)
        self.w(QUEUE_READY, 1)
        self.desc_base, self.avail_base, self.used_base = desc, avail, used

    def init(self) -> None:
        """The whole driver initialisation (3.1.1): the device is then live."""
        status = self.negotiate()
        assert status & FEATURES_OK, f"device refused the features it offered: {status:#x}"
        self.setup_queue()
        self.w(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK)

    # ---- the virtqueue ----
    def put_desc(self, index: int, addr: int, length: int, flags: int = 0, nxt: int = 0) -> None:
        self.mem.write(self.desc_base + 16 * index, struct.pack("<QIHH", addr, length, flags, nxt))

    def make_avail(self, head: int, notify: bool = True, flags: int = 0) -> None:
        slot = self.avail_idx % self.qsize
        self.mem.write(self.avail_base + 4 + 2 * slot, struct.pack("<H", head))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.mem.write(self.avail_base, struct.pack("<HH", flags, self.avail_idx))
        if notify:
            self.w(QUEUE_NOTIFY, 0)

    def chain(self, buffers: list[tuple[int, int, bool]]) -> int:
        """Lay out a descriptor chain of (addr, length, device_writes) buffers; its head."""
        indices = [(self.next_desc + i) % self.qsize for i in range(len(buffers))]
        self.next_desc = (self.next_desc + len(buffers)) % self.qsize
        for i, (addr, length, writable) in enumerate(buffers):
            last = i == len(buffers) - 1
            flags = (DESC_WRITE if writable else 0) | (0 if last else DESC_NEXT)
            self.put_desc(indices[i], addr, length, flags, 0 if last else indices[i + 1])
        return indices[0]

    def used_idx(self) -> int:
        return struct.unpack("<H", self.mem.read(self.used_base + 2, 2))[0]

    def used_elem(self, n: int) -> tuple[int, int]:
        """(id, len) of used ring entry n (an index into the ring, mod queue size)."""
        return struct.unpack("<II", self.mem.read(self.used_base + 4 + 8 * (n % self.qsize), 8))

    def alloc(self, n: int) -> int:
        addr = self.scratch
        self.scratch += (n + 15) & ~15
        return addr

    # ---- virtio-blk requests ----
    def header(self, kind: int, sector: int = 0, extra: bytes = b"") -> int:
        data = struct.pack("<IIQ", kind, 0, sector) + extra
        addr = self.alloc(len(data))
        self.mem.write(addr, data)
        return addr

    def request(self, kind: int, sector: int = 0, *, out: bytes = b"", read_len: int = 0,
                status_with_data: bool = False, extra: bytes = b""):
        """Submit one request and return (status, used_len, data_read, head).

        out: data the device reads (OUT, in its own descriptor); read_len: bytes the
        device writes (IN, GET_ID); the status byte is in its own descriptor, or the
        last byte of the data buffer with status_with_data."""
        self.mem.write(self.DATA, bytes(max(read_len, len(out)) + 1))
        hdr = self.header(kind, sector, extra)
        bufs = [(hdr, 16 + len(extra), False)]
        if out:
            self.mem.write(self.DATA, out)
            bufs.append((self.DATA, len(out), False))
        status_addr = self.alloc(1)
        self.mem.write(status_addr, b"\xee")
        if read_len and status_with_data:
            bufs.append((self.DATA, read_len + 1, True))
            status_addr = self.DATA + read_len
            self.mem.write(status_addr, b"\xee")
        else:
            if read_len:
                bufs.append((self.DATA, read_len, True))
            bufs.append((status_addr, 1, True))
        head = self.chain(bufs)
        before = self.used_idx()
        self.make_avail(head)
        assert self.used_idx() == (before + 1) & 0xFFFF, "request not completed"
        used_id, used_len = self.used_elem(before)
        assert used_id == head
        status = self.mem.read(status_addr, 1)[0]
        data = self.mem.read(self.DATA, read_len) if read_len else b""
        return status, used_len, data, head

    def config(self, offset: int, size: int) -> int:
        return self.r(CONFIG + offset, size)


# ---------------------------------------------------------------------------
# Raw RV64 guests (loaded at 0x8000_0000, started in M-mode by the boot ROM)
# ---------------------------------------------------------------------------

UART_LUI = 0x10000          # lui imm of the UART at 0x1000_0000
FINISHER_LUI = 0x100        # lui imm of the test finisher at 0x10_0000


class Enc(RV):
    """More encoders than conftest.RV has."""

    @staticmethod
    def sb(rs2: int, rs1: int, imm: int) -> int:
        imm &= 0xFFF
        return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | ((imm & 31) << 7) | 0x23

    @staticmethod
    def lbu(rd: int, rs1: int, imm: int) -> int:
        return ((imm & 0xFFF) << 20) | (rs1 << 15) | (4 << 12) | (rd << 7) | 0x03

    @staticmethod
    def andi(rd: int, rs1: int, imm: int) -> int:
        return ((imm & 0xFFF) << 20) | (rs1 << 15) | (7 << 12) | (rd << 7) | 0x13

    @staticmethod
    def beq(rs1: int, rs2: int, offset: int) -> int:
        o = offset & 0x1FFF
        return ((((o >> 12) & 1) << 31) | (((o >> 5) & 0x3F) << 25) | (rs2 << 20)
                | (rs1 << 15) | (((o >> 1) & 0xF) << 8) | (((o >> 11) & 1) << 7) | 0x63)

    @staticmethod
    def bne(rs1: int, rs2: int, offset: int) -> int:
        return Enc.beq(rs1, rs2, offset) | (1 << 12)


class Guest:
    """Raw images for the lifecycle tests."""

    @staticmethod
    def spin() -> bytes:
        """`j .` forever."""
        return bytes.fromhex("6f000000")

    @staticmethod
    def print_char(ch: str) -> list[int]:
        return [Enc.lui(Enc.T2, UART_LUI), *Enc.li(Enc.T1, ord(ch)), Enc.sb(Enc.T1, Enc.T2, 0)]

    @classmethod
    def print_then_spin(cls, ch: str) -> bytes:
        return Enc.code(cls.print_char(ch), Enc.J_SELF)

    @classmethod
    def print_then_reset(cls, ch: str, delay: int = 0) -> bytes:
        """Print ch, count `delay` down to 0 (two instructions per step), then ask the
        test finisher for a reset (0x7777): every boot prints ch."""
        wait = [*Enc.li(Enc.T0, delay), Enc.addi(Enc.T0, Enc.T0, -1),
                Enc.bne(Enc.T0, Enc.ZERO, -4)] if delay else []
        return Enc.code(cls.print_char(ch), wait, Enc.lui(Enc.T2, FINISHER_LUI),
                        *Enc.li(Enc.T1, 0x7777), Enc.sw(Enc.T1, Enc.T2, 0), Enc.J_SELF)

    @classmethod
    def echo_one(cls) -> bytes:
        """Wait (WFI, woken by the UART's receive interrupt through the PLIC) for one
        input byte, write it back to the UART, power off."""
        t0, t1, t2, z = Enc.T0, Enc.T1, Enc.T2, Enc.ZERO
        setup = [
            Enc.lui(t2, UART_LUI),
            Enc.addi(t1, z, 1), Enc.sb(t1, t2, 1),              # IER: receive data available
            Enc.lui(t0, 0xC000), Enc.addi(t1, z, 1), Enc.sw(t1, t0, 4 * 10),   # prio[10] = 1
            Enc.lui(t0, 0xC002), *Enc.li(t1, 1 << 10), Enc.sw(t1, t0, 0),     # enable ctx 0
            *Enc.li(t1, 1 << 11), Enc.csrrs(z, 0x304, t1),     # mie.MEIE
        ]
        loop = [Enc.WFI, Enc.lbu(t1, t2, 5), Enc.andi(t1, t1, 1)]
        loop.append(Enc.beq(t1, z, -4 * len(loop)))
        tail = [Enc.lbu(t1, t2, 0), Enc.sb(t1, t2, 0), *Enc.poweroff(0)]
        return Enc.code(setup, loop, tail)


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.005) -> bool:
    """Poll predicate until it is true (True) or the timeout passes (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())

