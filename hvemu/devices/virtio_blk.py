"""virtio-blk backed by a host file (VIRTIO 1.1 specification, section 5.2).

A virtual disk is a byte range of a host file: the whole file, or a slice of it
(`offset`, `size`), so one physical disk can be carved into several virtual ones.
A read or write of the virtual disk becomes a `pread`/`pwrite` of that range;
FLUSH becomes `fsync`, so every write the guest has flushed survives a kill of the
emulator.  Requests are validated: out-of-range sectors, lengths that are not whole
sectors, buffers outside RAM, missing status bytes or a write to a read-only disk
complete with an error status for the guest.

A hostile request costs the host no more than an honest one: only the 16-byte
header is gathered, data moves between guest RAM and the file CHUNK bytes at a time
(host memory per request is bounded by CHUNK, whatever the descriptor lengths say),
DISCARD and WRITE_ZEROES take at most MAX_ZERO_SEGMENTS segments, as the
configuration space says, and between chunks the device lets the hypervisor stop
the run (`check`: --timeout and shutdown hold while a device works).
"""
from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterator

from .virtio_mmio import Buffer

SECTOR = 512
VIRTIO_ID_BLOCK = 2
# request types (5.2.6)
T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
# feature bits (5.2.3)
F_SEG_MAX, F_RO, F_BLK_SIZE, F_FLUSH = 1 << 2, 1 << 5, 1 << 6, 1 << 9
F_DISCARD, F_WRITE_ZEROES = 1 << 13, 1 << 14
SEG_MAX = 126
MAX_ZERO_SECTORS = 1 << 16          # per DISCARD / WRITE_ZEROES segment (32 MiB)
MAX_ZERO_SEGMENTS = 16              # segments per DISCARD / WRITE_ZEROES request
ZEROES_UNMAP = 1                    # the only flag defined for a segment (5.2.6)
HEADER = 16
CHUNK = 1 << 20                     # bytes moved between guest RAM and the file at a time
DIRTY_BLOCK = 1 << 16               # the unit of a disk's dirty log (block migration)
_ZEROS = bytes(CHUNK)


class DiskImage:
    """A byte range of a host file, opened for the VM's lifetime."""

    def __init__(self, path: str, offset: int = 0, size: int | None = None,
                 readonly: bool = False):
        self.path = path
        self.readonly = readonly
        flags = (os.O_RDONLY if readonly else os.O_RDWR) | os.O_NONBLOCK | os.O_CLOEXEC
        self.fd = os.open(path, flags)      # non-blocking: a FIFO swapped in cannot hang us
        mode = os.fstat(self.fd).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISBLK(mode):
            os.close(self.fd)
            self.fd = -1
            raise OSError(0, "not a regular file", path)
        self.offset = offset
        self.size = (os.fstat(self.fd).st_size - offset) if size is None else size
        self.reads = self.writes = self.flushes = 0
        self.dirty: set[int] | None = None   # block migration: DIRTY_BLOCK-sized pieces written
        self.bytes_read = self.bytes_written = 0

    @property
    def sectors(self) -> int:
        return self.size // SECTOR

    def pread(self, pos: int, n: int) -> bytes:
        self.reads += 1
        self.bytes_read += n
        data = os.pread(self.fd, n, self.offset + pos)
        return data.ljust(n, b"\0")            # a sparse or short file reads as zeros

    def pwrite(self, pos: int, data: bytes) -> None:
        self.writes += 1
        self.bytes_written += len(data)
        if self.dirty is not None and data:
            self.dirty.update(range(pos // DIRTY_BLOCK, (pos + len(data) - 1) // DIRTY_BLOCK + 1))
        view = memoryview(data)
        while view:
            done = os.pwrite(self.fd, view, self.offset + pos)
            view = view[done:]
            pos += done

    def flush(self) -> None:
        self.flushes += 1
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            if not self.readonly:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1


class VirtioBlk:
    """The block device model behind a virtio-mmio transport."""

    kind = "blk"
    device_id = VIRTIO_ID_BLOCK
    num_queues = 1

    def __init__(self, disk: DiskImage, serial: str = "",
                 check: Callable[[], None] | None = None):
        self.disk = disk
        self.serial = serial.encode()[:20]
        self.check = check or (lambda: None)   # between chunks: may stop the run
        self.features = F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_DISCARD | F_WRITE_ZEROES
        if disk.readonly:
            self.features |= F_RO

    def reset(self) -> None:
        pass

    def config(self) -> bytes:
        """Configuration space (5.2.4): capacity, seg_max, blk_size, discard/zeroes limits."""
        cfg = bytearray(0x3C)
        struct.pack_into("<Q", cfg, 0x00, self.disk.sectors)        # capacity
        struct.pack_into("<I", cfg, 0x0C, SEG_MAX)                 # seg_max
        struct.pack_into("<I", cfg, 0x14, SECTOR)                  # blk_size
        struct.pack_into("<H", cfg, 0x22, 1)                       # num_queues
        struct.pack_into("<III", cfg, 0x24, MAX_ZERO_SECTORS, MAX_ZERO_SEGMENTS, 1)  # discard
        struct.pack_into("<II", cfg, 0x30, MAX_ZERO_SECTORS, MAX_ZERO_SEGMENTS)  # write zeroes
        return bytes(cfg)

    def write_config(self, offset: int, size: int, value: int) -> None:
        pass                                   # nothing writable: no CONFIG_WCE

    # ---- requests (5.2.6) ----
    def process(self, queue: int, chain: list[Buffer], mem) -> int:
        """Serve one request; returns the bytes written into the guest's buffers."""
        readable = [b for b in chain if not b.writable]
        writable = [b for b in chain if b.writable]
        if not writable or writable[-1].length < 1:
            return 0                             # no status byte: nothing we can report
        status_buf = writable[-1]
        status_addr = status_buf.addr + status_buf.length - 1
        out_bufs = writable[:-1] + ([Buffer(status_buf.addr, status_buf.length - 1, True)]
                                    if status_buf.length > 1 else [])
        payload = list(_skip(readable, HEADER))  # what follows the header
        if not _in_ram(mem, readable) or sum(b.length for b in readable) < HEADER:
            return self._status(mem, status_addr, S_IOERR, 0)
        header = self._gather(mem, readable, HEADER)
        kind, _reserved, sector = struct.unpack("<IIQ", header)
        try:
            if kind == T_IN:
                return self._read(mem, sector, out_bufs, status_addr)
            if kind == T_OUT:
                return self._write(mem, sector, payload, status_addr)
            if kind == T_FLUSH:
                if not self.disk.readonly:
                    self.disk.flush()
                return self._status(mem, status_addr, S_OK, 0)
            if kind == T_GET_ID:
                ident = self.serial.ljust(20, b"\0")
                if not _in_ram(mem, out_bufs):
                    return self._status(mem, status_addr, S_IOERR, 0)
                n = self._scatter(mem, out_bufs, ident)
                return self._status(mem, status_addr, S_OK, n)
            if kind in (T_DISCARD, T_WRITE_ZEROES):
                return self._zero(mem, kind, payload, status_addr)
        except OSError:
            return self._status(mem, status_addr, S_IOERR, 0)
        return self._status(mem, status_addr, S_UNSUPP, 0)

    def _in_range(self, sector: int, nbytes: int) -> bool:
        return nbytes % SECTOR == 0 and sector * SECTOR + nbytes <= self.disk.size

    def _read(self, mem, sector: int, bufs: list[Buffer], status_addr: int) -> int:
        total = sum(b.length for b in bufs)
        if not self._in_range(sector, total) or not _in_ram(mem, bufs):
            return self._status(mem, status_addr, S_IOERR, 0)
        pos = sector * SECTOR
        data, start = memoryview(b""), 0          # the chunk of the disk read last
        done = 0
        for addr, length in _split(bufs, CHUNK):  # pieces never straddle two chunks
            if done == start + len(data):
                if done:
                    self.check()
                start = done
                data = memoryview(self.disk.pread(pos + done, min(CHUNK, total - done)))
            mem.dma_write(addr, data[done - start:done - start + length])
            done += length
        return self._status(mem, status_addr, S_OK, total)

    def _write(self, mem, sector: int, bufs: list[Buffer], status_addr: int) -> int:
        total = sum(b.length for b in bufs)
        if self.disk.readonly or not self._in_range(sector, total) or not _in_ram(mem, bufs):
            return self._status(mem, status_addr, S_IOERR, 0)
        pos = sector * SECTOR
        parts: list[bytes] = []
        size = 0
        for addr, length in _split(bufs, CHUNK):  # gather up to CHUNK, then one pwrite
            parts.append(mem.dma_read(addr, length))
            size += length
            if size == CHUNK:
                self.disk.pwrite(pos, b"".join(parts))
                pos += size
                parts, size = [], 0
                self.check()
        if parts:
            self.disk.pwrite(pos, b"".join(parts))
        return self._status(mem, status_addr, S_OK, 0)

    def _zero(self, mem, kind: int, payload: list[Buffer], status_addr: int) -> int:
        if self.disk.readonly:
            return self._status(mem, status_addr, S_IOERR, 0)
        size = sum(b.length for b in payload)
        if size < 16 or size % 16:
            return self._status(mem, status_addr, S_IOERR, 0)
        if size > 16 * MAX_ZERO_SEGMENTS:        # more segments than the config allows
            return self._status(mem, status_addr, S_UNSUPP, 0)
        table = self._gather(mem, payload, size)
        segments = list(struct.iter_unpack("<QII", table))
        for sector, count, flags in segments:
            if flags & ~ZEROES_UNMAP or (kind == T_DISCARD and flags):
                return self._status(mem, status_addr, S_UNSUPP, 0)
            if count > MAX_ZERO_SECTORS or not self._in_range(sector, count * SECTOR):
                return self._status(mem, status_addr, S_IOERR, 0)
        if kind == T_DISCARD:                    # a hint: kept data is allowed (as QEMU's
            return self._status(mem, status_addr, S_OK, 0)   # default discard=ignore)
        for sector, count, _flags in segments:
            pos, left = sector * SECTOR, count * SECTOR
            while left:
                n = min(CHUNK, left)
                self.disk.pwrite(pos, _ZEROS[:n] if n < CHUNK else _ZEROS)
                pos += n
                left -= n
                self.check()
        return self._status(mem, status_addr, S_OK, 0)

    @staticmethod
    def _gather(mem, bufs: list[Buffer], n: int) -> bytes:
        """The first n bytes of bufs (n is small: a header, a segment table)."""
        return b"".join(mem.dma_read(addr, length) for addr, length in _split(bufs, n, n))

    @staticmethod
    def _scatter(mem, bufs: list[Buffer], data: bytes) -> int:
        pos = 0
        for b in bufs:
            if pos >= len(data):
                break
            chunk = data[pos:pos + b.length]
            mem.dma_write(b.addr, chunk)
            pos += len(chunk)
        return pos

    @staticmethod
    def _status(mem, addr: int, status: int, written: int) -> int:
        try:
            mem.dma_write(addr, bytes((status,)))
        except (IndexError, OverflowError):
            return written
        return written + 1


def _in_ram(mem, bufs) -> bool:
    return all(mem.contains_ram(b.addr, b.length) for b in bufs)


def _skip(bufs: list[Buffer], n: int) -> Iterator[Buffer]:
    """The buffers with their first n bytes (all together) left out."""
    for b in bufs:
        if n >= b.length:
            n -= b.length
            continue
        yield Buffer(b.addr + n, b.length - n, b.writable)
        n = 0


def _split(bufs, chunk: int, limit: int | None = None) -> Iterator[tuple[int, int]]:
    """(addr, length) pieces of bufs, cut so that no piece crosses a multiple of chunk
    in the running total; stops after limit bytes."""
    total = 0
    for b in bufs:
        addr, length = b.addr, b.length
        while length:
            if limit is not None and total >= limit:
                return
            n = min(length, chunk - total % chunk)
            if limit is not None:
                n = min(n, limit - total)
            yield addr, n
            addr += n
            length -= n
            total += n
