"""The virtio-mmio transport, modern (version 2), with split virtqueues.

Follows the Virtual I/O Device (VIRTIO) 1.1 specification: section 4.2.2 (the
MMIO register layout), 2.1 (device status), 2.2 (feature bits) and 2.6 (split
virtqueues: descriptor table, available and used rings).  The device model behind
a transport (`VirtioBlk`, ...) sees only descriptor chains.  Guest memory is
reached through `GuestMemory`; a descriptor that points outside RAM, a chain that
loops or runs past the queue, or a malformed ring never reaches the host: the
request completes with an error, or the device asks the driver for a reset
(DEVICE_NEEDS_RESET), as section 2.1.1 allows.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC, VERSION = 0x74726976, 2
VENDOR_ID = 0x554D4551     # "QEMU": the vendor ID guests written for QEMU virt check for
VIRTIO_F_VERSION_1 = 1 << 32
QUEUE_MAX = 256

# device status bits (2.1)
ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, NEEDS_RESET, FAILED = 1, 2, 4, 8, 64, 128
# descriptor flags (2.6.5)
DESC_NEXT, DESC_WRITE, DESC_INDIRECT = 1, 2, 4
AVAIL_NO_INTERRUPT = 1
INT_USED, INT_CONFIG = 1, 2


class VirtioError(Exception):
    """The driver broke the virtqueue protocol: the device needs a reset."""


@dataclass
class Buffer:
    addr: int
    length: int
    writable: bool


class Virtqueue:
    """One split virtqueue, as configured by the driver."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.num = 0
        self.ready = False
        self.desc = self.driver = self.device = 0
        self.last_avail = 0


class VirtioMmio:
    """The transport registers of one slot; `backend` is the device model."""

    name = "virtio-mmio"

    def __init__(self, memory, backend, irq):
        self.memory = memory
        self.backend = backend
        self.irq = irq
        self.name = f"virtio-{backend.kind}"
        self.queues = [Virtqueue() for _ in range(backend.num_queues)]
        self.reset()

    def reset(self) -> None:
        self.status = 0
        self.device_features_sel = self.driver_features_sel = 0
        self.driver_features = 0
        self.queue_sel = 0
        self.interrupt_status = 0
        self.config_generation = 0
        for q in self.queues:
            q.reset()
        self.irq(False)

    @property
    def device_features(self) -> int:
        return self.backend.features | VIRTIO_F_VERSION_1

    def _queue(self) -> Virtqueue | None:
        return self.queues[self.queue_sel] if self.queue_sel < len(self.queues) else None

    # ---- registers (4.2.2) ----
    def read(self, offset: int, size: int) -> int:
        if offset >= 0x100:
            data = self.backend.config()
            chunk = data[offset - 0x100:offset - 0x100 + size]
            return int.from_bytes(chunk.ljust(size, b"\0"), "little")
        q = self._queue()
        if offset == 0x000:
            return MAGIC
        if offset == 0x004:
            return VERSION
        if offset == 0x008:
            return self.backend.device_id
        if offset == 0x00C:
            return VENDOR_ID
        if offset == 0x010:
            return (self.device_features >> (32 * self.device_features_sel)) & 0xFFFFFFFF \
                if self.device_features_sel < 2 else 0
        if offset == 0x034:
            return QUEUE_MAX if q is not None else 0
        if offset == 0x044:
            return int(q.ready) if q is not None else 0
        if offset == 0x060:
            return self.interrupt_status
        if offset == 0x070:
            return self.status
        if offset == 0x0FC:
            return self.config_generation
        if q is not None and 0x080 <= offset < 0x0A8:
            field = {0x080: ("desc", 0), 0x084: ("desc", 32), 0x090: ("driver", 0),
                     0x094: ("driver", 32), 0x0A0: ("device", 0), 0x0A4: ("device", 32)}
            if offset in field:
                name, shift = field[offset]
                return (getattr(q, name) >> shift) & 0xFFFFFFFF
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFFFFFFFF
        q = self._queue()
        if offset == 0x014:
            self.device_features_sel = value
        elif offset == 0x020:
            if self.driver_features_sel < 2:
                shift = 32 * self.driver_features_sel
                self.driver_features = ((self.driver_features & ~(0xFFFFFFFF << shift))
                                        | (value << shift))
        elif offset == 0x024:
            self.driver_features_sel = value
        elif offset == 0x030:
            self.queue_sel = value
        elif offset == 0x038:
            if q is not None and 0 < value <= QUEUE_MAX and value & (value - 1) == 0:
                q.num = value
        elif offset == 0x044:
            if q is not None:
                q.ready = bool(value & 1)
        elif offset == 0x050:
            self.notify(value)
        elif offset == 0x064:
            self.interrupt_status &= ~value
            self.irq(bool(self.interrupt_status))
        elif offset == 0x070:
            self._set_status(value)
        elif offset >= 0x100:
            self.backend.write_config(offset - 0x100, size, value)
        elif q is not None and 0x080 <= offset < 0x0A8:
            field = {0x080: ("desc", 0), 0x084: ("desc", 32), 0x090: ("driver", 0),
                     0x094: ("driver", 32), 0x0A0: ("device", 0), 0x0A4: ("device", 32)}
            if offset in field and not q.ready:
                name, shift = field[offset]
                old = getattr(q, name)
                setattr(q, name, (old & ~(0xFFFFFFFF << shift)) | (value << shift))

    def _set_status(self, value: int) -> None:
        if value == 0:
            self.reset()
            self.backend.reset()
            return
        if value & FEATURES_OK and not self.status & FEATURES_OK:
            # the driver may accept only what we offer (2.2).  A driver that does not
            # accept VERSION_1 still gets the modern device, as on QEMU (xv6 does this)
            if self.driver_features & ~self.device_features:
                value &= ~FEATURES_OK
        self.status = value & 0xFF

    # ---- queue processing (2.6) ----
    def notify(self, index: int) -> None:
        """The driver made buffers available in queue `index`: process them all."""
        if index >= len(self.queues) or not self.status & DRIVER_OK:
            return
        q = self.queues[index]
        if not q.ready or not q.num:
            return
        mem = self.memory
        completed = 0
        try:
            avail_flags, avail_idx = struct.unpack("<HH", self._read(q.driver, 4))
            if (avail_idx - q.last_avail) & 0xFFFF > q.num:
                raise VirtioError("available index more than a queue ahead")
            while q.last_avail != avail_idx:
                slot = q.last_avail % q.num
                head = struct.unpack("<H", self._read(q.driver + 4 + 2 * slot, 2))[0]
                chain = self._chain(q, head)
                written = self.backend.process(index, chain, mem)
                used_idx = struct.unpack("<H", self._read(q.device + 2, 2))[0]
                self._write(q.device + 4 + 8 * (used_idx % q.num),
                            struct.pack("<II", head, written))
                self._write(q.device + 2, struct.pack("<H", (used_idx + 1) & 0xFFFF))
                q.last_avail = (q.last_avail + 1) & 0xFFFF
                completed += 1
        except VirtioError:
            self.status |= NEEDS_RESET
            self.interrupt_status |= INT_CONFIG
            self.irq(True)
            return
        if completed and not avail_flags & AVAIL_NO_INTERRUPT:
            self.interrupt_status |= INT_USED
            self.irq(True)

    def _chain(self, q: Virtqueue, head: int) -> list[Buffer]:
        """The buffers of the descriptor chain starting at head (2.6.5)."""
        chain = []
        index = head
        for _ in range(q.num):
            if index >= q.num:
                raise VirtioError(f"descriptor index {index} beyond the queue")
            addr, length, flags, nxt = struct.unpack("<QIHH", self._read(q.desc + 16 * index, 16))
            if flags & DESC_INDIRECT:
                raise VirtioError("indirect descriptors were not negotiated")
            chain.append(Buffer(addr, length, bool(flags & DESC_WRITE)))
            if not flags & DESC_NEXT:
                return chain
            index = nxt
        raise VirtioError("descriptor chain loops")

    def _read(self, addr: int, n: int) -> bytes:
        try:
            return self.memory.dma_read(addr, n)
        except (IndexError, OverflowError):
            raise VirtioError(f"ring at {addr:#x} is not in RAM") from None

    def _write(self, addr: int, data: bytes) -> None:
        try:
            self.memory.dma_write(addr, data)
        except (IndexError, OverflowError):
            raise VirtioError(f"ring at {addr:#x} is not in RAM") from None


class EmptyVirtioSlot:
    """A virtio-mmio slot with no device behind it: magic and version, device ID 0
    (section 4.2.2.1: "a device ID of zero means the slot is unused"), as on QEMU."""

    name = "virtio-empty"

    def read(self, offset: int, size: int) -> int:
        return {0x000: MAGIC, 0x004: VERSION, 0x00C: VENDOR_ID}.get(offset, 0)

    def write(self, offset: int, size: int, value: int) -> None:
        pass
