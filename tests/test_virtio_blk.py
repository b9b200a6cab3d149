"""virtio-mmio (v2) + virtio-blk, driven only through the transport's registers.

A Python guest driver (tests/vmkit.VirtioDriver) lays out descriptor tables and
rings in a GuestMemory and talks to `VirtioMmio` at register offsets, as a guest
kernel would (VIRTIO 1.1 sections 2, 4.2.2, 4.2.3 and 5.2).  Every request's effect
is checked on the host file behind the disk.
"""
from __future__ import annotations

import os
import struct

import pytest
from hvemu._core import GuestMemory
from vmkit import (
    ACKNOWLEDGE,
    CONFIG_GENERATION,
    DESC_INDIRECT,
    DESC_NEXT,
    DESC_WRITE,
    DEV_FEATURES,
    DEV_FEATURES_SEL,
    DEVICE_ID,
    DRIVER,
    DRIVER_OK,
    F_FLUSH,
    F_RO,
    F_VERSION_1,
    FAILED,
    FEATURES_OK,
    INT_ACK,
    INT_STATUS,
    MAGIC,
    NEEDS_RESET,
    QUEUE_DESC_HI,
    QUEUE_DESC_LO,
    QUEUE_DEVICE_LO,
    QUEUE_DRIVER_LO,
    QUEUE_NOTIFY,
    QUEUE_NUM_MAX,
    QUEUE_READY,
    QUEUE_SEL,
    RAM_BASE,
    RAM_SIZE,
    S_IOERR,
    S_OK,
    S_UNSUPP,
    SECTOR,
    STATUS,
    T_DISCARD,
    T_FLUSH,
    T_GET_ID,
    T_IN,
    T_OUT,
    T_WRITE_ZEROES,
    VENDOR_ID,
    VERSION,
    IrqLine,
    VirtioDriver,
)

from hvemu.devices.virtio_blk import CHUNK, MAX_ZERO_SEGMENTS, DiskImage, VirtioBlk
from hvemu.devices.virtio_mmio import VirtioMmio

DISK_SECTORS = 64
INT_USED, INT_CONFIG = 1, 2


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


class Rig:
    """A disk file, the device on it, guest memory, the interrupt line and a driver."""

    def __init__(self, path, *, readonly=False, offset=0, size=None, serial="", init=True):
        self.path = path
        self.mem = GuestMemory(RAM_BASE, RAM_SIZE)
        self.irq = IrqLine()
        self.disk = DiskImage(str(path), offset, size, readonly)
        self.blk = VirtioBlk(self.disk, serial=serial)
        self.dev = VirtioMmio(self.mem, self.blk, irq=self.irq)
        self.drv = VirtioDriver(self.dev, self.mem)
        if init:
            self.drv.init()

    def file(self) -> bytes:
        return self.path.read_bytes()

    def close(self) -> None:
        self.disk.close()


@pytest.fixture
def disk_file(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(pattern(DISK_SECTORS * SECTOR))
    return path


@pytest.fixture
def rig(disk_file):
    r = Rig(disk_file)
    yield r
    r.close()


@pytest.fixture
def make_rig():
    rigs = []

    def make(*args, **kw):
        r = Rig(*args, **kw)
        rigs.append(r)
        return r
    yield make
    for r in rigs:
        r.close()


# ---------------------------------------------------------------------------
# Identification, features, status (4.2.2, 2.1, 2.2)
# ---------------------------------------------------------------------------

def test_identification_registers(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    d = r.drv
    assert d.r(MAGIC) == 0x74726976                 # "virt"
    assert d.r(VERSION) == 2                        # modern virtio-mmio
    assert d.r(DEVICE_ID) == 2                      # block device
    assert d.r(VENDOR_ID) != 0
    assert d.status == 0
    assert r.irq.level is False


def test_device_features_offer_version_1_and_flush(rig):
    d = rig.drv
    feats = d.device_features()
    assert feats & F_VERSION_1
    assert feats & F_FLUSH
    assert not feats & F_RO                         # a writable disk
    d.w(DEV_FEATURES_SEL, 2)
    assert d.r(DEV_FEATURES) == 0                   # no feature bits beyond 63


def test_readonly_disk_offers_ro(make_rig, disk_file):
    r = make_rig(disk_file, readonly=True, init=False)
    assert r.drv.device_features() & F_RO


def test_feature_negotiation_accepts_offered_subset(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    status = r.drv.negotiate(F_VERSION_1 | F_FLUSH)
    assert status == ACKNOWLEDGE | DRIVER | FEATURES_OK


def test_features_ok_refused_for_unoffered_feature(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    offered = r.drv.device_features()
    indirect = 1 << 28                              # VIRTIO_F_INDIRECT_DESC: not offered
    assert not offered & indirect
    status = r.drv.negotiate(offered | indirect)
    assert not status & FEATURES_OK
    assert status & (ACKNOWLEDGE | DRIVER) == ACKNOWLEDGE | DRIVER


def test_driver_without_version_1_still_gets_the_modern_device(make_rig, disk_file):
    """As on QEMU (xv6's driver accepts no VERSION_1): FEATURES_OK is kept, and the
    device keeps working as a version 2 (modern) device."""
    r = make_rig(disk_file, init=False)
    d = r.drv
    offered = d.device_features()
    assert d.negotiate(offered & ~F_VERSION_1) & FEATURES_OK
    d.setup_queue()
    d.w(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK)
    status, _, data, _ = d.request(T_IN, 0, read_len=SECTOR)
    assert status == S_OK and data == pattern(SECTOR)


def test_driver_sets_failed_after_a_refusal(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    d = r.drv
    assert not d.negotiate(1 << 28) & FEATURES_OK
    # a driver that gives up after the refusal sets FAILED (3.1.1)
    d.w(STATUS, ACKNOWLEDGE | DRIVER | FAILED)
    assert d.status & FAILED


def test_queue_registers(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    d = r.drv
    d.negotiate()
    d.w(QUEUE_SEL, 0)
    assert d.r(QUEUE_NUM_MAX) >= 8
    assert d.r(QUEUE_READY) == 0
    d.w(QUEUE_SEL, 1)                               # virtio-blk here has one queue
    assert d.r(QUEUE_NUM_MAX) == 0
    d.w(QUEUE_SEL, 0)
    d.setup_queue()
    assert d.r(QUEUE_READY) == 1
    assert d.r(QUEUE_DESC_LO) == d.DESC & 0xFFFFFFFF
    assert d.r(QUEUE_DESC_HI) == d.DESC >> 32
    assert d.r(QUEUE_DRIVER_LO) == d.AVAIL & 0xFFFFFFFF
    assert d.r(QUEUE_DEVICE_LO) == d.USED & 0xFFFFFFFF


def test_config_space_capacity_and_block_size(rig):
    d = rig.drv
    assert d.config(0, 8) == DISK_SECTORS
    lo, hi = d.config(0, 4), d.config(4, 4)         # as a 32-bit driver reads it
    assert lo | hi << 32 == DISK_SECTORS
    assert d.config(0x14, 4) == SECTOR              # blk_size
    assert d.r(CONFIG_GENERATION) == d.r(CONFIG_GENERATION)


def test_config_capacity_of_a_carved_range(make_rig, tmp_path):
    path = tmp_path / "big.img"
    path.write_bytes(bytes(64 * SECTOR))
    r = make_rig(path, offset=8 * SECTOR, size=24 * SECTOR)
    assert r.drv.config(0, 8) == 24


def test_no_requests_served_before_driver_ok(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    d = r.drv
    assert d.negotiate() & FEATURES_OK
    d.setup_queue()
    hdr = d.header(T_OUT, 0)
    d.mem.write(d.DATA, b"\xaa" * SECTOR)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (d.DATA, SECTOR, False), (st, 1, True)])
    d.make_avail(head)
    assert d.used_idx() == 0
    assert r.file() == pattern(DISK_SECTORS * SECTOR)


# ---------------------------------------------------------------------------
# Requests (5.2.6)
# ---------------------------------------------------------------------------

def test_read_sector(rig):
    status, used_len, data, _ = rig.drv.request(T_IN, 3, read_len=2 * SECTOR)
    assert status == S_OK
    assert data == pattern(DISK_SECTORS * SECTOR)[3 * SECTOR:5 * SECTOR]
    assert used_len == 2 * SECTOR + 1               # data + status byte written


def test_read_with_status_in_the_data_descriptor(rig):
    status, used_len, data, _ = rig.drv.request(T_IN, 5, read_len=SECTOR, status_with_data=True)
    assert status == S_OK
    assert data == pattern(DISK_SECTORS * SECTOR)[5 * SECTOR:6 * SECTOR]
    assert used_len == SECTOR + 1


def test_read_scattered_over_several_descriptors(rig):
    d = rig.drv
    hdr = d.header(T_IN, 2)
    a, b = d.DATA, d.DATA + 0x2000
    d.mem.write(a, bytes(SECTOR))
    d.mem.write(b, bytes(SECTOR))
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (a, 100, True), (b, 412, True), (st, 1, True)])
    d.make_avail(head)
    assert d.mem.read(st, 1)[0] == S_OK
    want = pattern(DISK_SECTORS * SECTOR)[2 * SECTOR:3 * SECTOR]
    assert d.mem.read(a, 100) + d.mem.read(b, 412) == want
    assert d.used_elem(0) == (head, SECTOR + 1)


def test_write_sector_reaches_the_host_file(rig):
    data = b"\x5a" * SECTOR + b"\xa5" * SECTOR
    status, used_len, _, _ = rig.drv.request(T_OUT, 7, out=data)
    assert status == S_OK
    assert used_len == 1                            # only the status byte was written
    want = bytearray(pattern(DISK_SECTORS * SECTOR))
    want[7 * SECTOR:9 * SECTOR] = data
    assert rig.file() == bytes(want)
    assert rig.disk.writes == 1 and rig.disk.bytes_written == 2 * SECTOR


def test_write_then_read_back(rig):
    data = pattern(SECTOR, seed=99)
    assert rig.drv.request(T_OUT, DISK_SECTORS - 1, out=data)[0] == S_OK
    status, _, back, _ = rig.drv.request(T_IN, DISK_SECTORS - 1, read_len=SECTOR)
    assert status == S_OK and back == data


def test_write_with_header_and_data_in_one_descriptor(rig):
    d = rig.drv
    data = b"\x33" * SECTOR
    hdr = d.header(T_OUT, 1, extra=data)            # header + payload, one readable buffer
    st = d.alloc(1)
    head = d.chain([(hdr, 16 + SECTOR, False), (st, 1, True)])
    d.make_avail(head)
    assert d.mem.read(st, 1)[0] == S_OK
    assert rig.file()[SECTOR:2 * SECTOR] == data


def test_flush_calls_fsync(rig, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    status, used_len, _, _ = rig.drv.request(T_FLUSH)
    assert status == S_OK and used_len == 1
    assert rig.disk.flushes == 1
    assert synced == [rig.disk.fd]


def test_get_id_returns_the_serial(make_rig, disk_file):
    r = make_rig(disk_file, serial="hvemu-test-serial")
    status, used_len, data, _ = r.drv.request(T_GET_ID, read_len=20)
    assert status == S_OK
    assert data == b"hvemu-test-serial".ljust(20, b"\0")
    assert used_len == 21


def test_write_zeroes(rig):
    seg = struct.pack("<QII", 4, 3, 0)              # sectors 4..6
    status, _, _, _ = rig.drv.request(T_WRITE_ZEROES, extra=seg)
    assert status == S_OK
    want = bytearray(pattern(DISK_SECTORS * SECTOR))
    want[4 * SECTOR:7 * SECTOR] = bytes(3 * SECTOR)
    assert rig.file() == bytes(want)


def test_write_zeroes_several_segments(rig):
    segs = struct.pack("<QII", 0, 1, 0) + struct.pack("<QII", 10, 2, 0)
    assert rig.drv.request(T_WRITE_ZEROES, extra=segs)[0] == S_OK
    want = bytearray(pattern(DISK_SECTORS * SECTOR))
    want[0:SECTOR] = bytes(SECTOR)
    want[10 * SECTOR:12 * SECTOR] = bytes(2 * SECTOR)
    assert rig.file() == bytes(want)


def test_write_zeroes_with_more_segments_than_max_write_zeroes_seg_is_unsupp(rig):
    """The config says how many segments a request may have (max_write_zeroes_seg);
    more is refused as QEMU refuses it, before any of them is done."""
    assert rig.drv.config(0x34, 4) == MAX_ZERO_SEGMENTS
    assert rig.drv.config(0x28, 4) == MAX_ZERO_SEGMENTS            # max_discard_seg
    segs = struct.pack("<QII", 0, 1, 0) * (MAX_ZERO_SEGMENTS + 1)
    assert rig.drv.request(T_WRITE_ZEROES, extra=segs)[0] == S_UNSUPP
    assert rig.drv.request(T_DISCARD, extra=segs)[0] == S_UNSUPP
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)
    assert rig.disk.writes == 0


@pytest.mark.parametrize("kind, flags", [(T_WRITE_ZEROES, 2), (T_WRITE_ZEROES, 1 << 31),
                                         (T_DISCARD, 1)])
def test_unknown_segment_flags_and_unmap_on_discard_are_unsupp(rig, kind, flags):
    """5.2.6.2: unknown flags, and the unmap flag on a DISCARD, are UNSUPP."""
    seg = struct.pack("<QII", 0, 1, flags)
    assert rig.drv.request(kind, extra=seg)[0] == S_UNSUPP
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_write_zeroes_with_the_unmap_flag_zeroes(rig):
    assert rig.drv.request(T_WRITE_ZEROES, extra=struct.pack("<QII", 2, 1, 1))[0] == S_OK
    assert rig.file()[2 * SECTOR:3 * SECTOR] == bytes(SECTOR)


def test_a_header_split_over_two_descriptors(rig):
    d = rig.drv
    hdr = d.header(T_IN, 6)
    st = d.alloc(1)
    head = d.chain([(hdr, 8, False), (hdr + 8, 8, False), (d.DATA, SECTOR, True), (st, 1, True)])
    d.make_avail(head)
    assert d.mem.read(st, 1)[0] == S_OK
    assert d.mem.read(d.DATA, SECTOR) == pattern(DISK_SECTORS * SECTOR)[6 * SECTOR:7 * SECTOR]


def test_requests_larger_than_a_chunk_over_odd_descriptors_move_every_byte(tmp_path):
    """Data moves CHUNK bytes at a time; descriptors of odd sizes straddle the chunks."""
    mem = GuestMemory(RAM_BASE, 8 << 20)
    path = tmp_path / "big.img"
    path.write_bytes(bytes(4 << 20))
    disk = DiskImage(str(path))
    dev = VirtioMmio(mem, VirtioBlk(disk), irq=IrqLine())
    d = VirtioDriver(dev, mem, qsize=16)
    d.init()
    sizes = [100, CHUNK - 100 + 512 * 3, 7 * 512 + 12, CHUNK + 500, 3 * 512 - 12 - 500 + 512]
    total = sum(sizes)
    assert total % SECTOR == 0 and total > 2 * CHUNK
    data = pattern(total, seed=5)
    base = RAM_BASE + (1 << 20)
    mem.write(base, data)
    bufs, at = [], base
    for n in sizes:                                 # adjacent pieces, in order
        bufs.append((at, n, False))
        at += n
    st = d.alloc(1)
    head = d.chain([(d.header(T_OUT, 8), 16, False), *bufs, (st, 1, True)])
    d.make_avail(head)
    assert mem.read(st, 1)[0] == S_OK
    assert path.read_bytes()[8 * SECTOR:8 * SECTOR + total] == data
    mem.write(base, bytes(total))
    head = d.chain([(d.header(T_IN, 8), 16, False), *[(a, n, True) for a, n, _ in bufs],
                    (st, 1, True)])
    d.make_avail(head)
    assert mem.read(st, 1)[0] == S_OK
    assert mem.read(base, total) == data
    assert d.used_elem(1) == (head, total + 1)
    disk.close()


def test_discard_stays_in_its_range(rig):
    seg = struct.pack("<QII", 20, 2, 0)
    assert rig.drv.request(T_DISCARD, extra=seg)[0] == S_OK
    before = pattern(DISK_SECTORS * SECTOR)
    after = rig.file()
    assert len(after) == len(before)
    assert after[:20 * SECTOR] == before[:20 * SECTOR]
    assert after[22 * SECTOR:] == before[22 * SECTOR:]
    # discarded sectors read back as zeros or as the old data, nothing else
    assert after[20 * SECTOR:22 * SECTOR] in (bytes(2 * SECTOR), before[20 * SECTOR:22 * SECTOR])


def test_used_ring_entries_and_index_wrap_around_the_queue(rig):
    d = rig.drv
    for i in range(3 * d.qsize + 1):
        status, _, _, head = d.request(T_OUT, i % DISK_SECTORS, out=bytes([i]) * SECTOR)
        assert status == S_OK
        assert d.used_elem(i) == (head, 1)
    assert d.used_idx() == 3 * d.qsize + 1
    assert rig.file()[SECTOR * 5:SECTOR * 6] == bytes([5]) * SECTOR


def test_several_requests_in_one_notify(rig):
    d = rig.drv
    heads = []
    for i in range(3):                              # 2 descriptors each: header+data, status
        hdr = d.header(T_OUT, 30 + i, extra=bytes([0xC0 + i]) * SECTOR)
        st = d.alloc(1)
        heads.append(d.chain([(hdr, 16 + SECTOR, False), (st, 1, True)]))
        d.make_avail(heads[-1], notify=False)
    assert d.used_idx() == 0
    rig.irq.clear()
    d.w(QUEUE_NOTIFY, 0)
    assert d.used_idx() == 3
    assert [d.used_elem(i)[0] for i in range(3)] == heads
    for i in range(3):
        assert rig.file()[(30 + i) * SECTOR:(31 + i) * SECTOR] == bytes([0xC0 + i]) * SECTOR
    assert rig.irq.level is True


# ---------------------------------------------------------------------------
# Interrupts (4.2.2 InterruptStatus / InterruptACK)
# ---------------------------------------------------------------------------

def test_used_buffer_interrupt_and_ack(rig):
    d = rig.drv
    assert rig.irq.level is False
    assert d.r(INT_STATUS) == 0
    d.request(T_IN, 0, read_len=SECTOR)
    assert rig.irq.level is True
    assert d.r(INT_STATUS) & INT_USED
    d.w(INT_ACK, INT_USED)
    assert d.r(INT_STATUS) == 0
    assert rig.irq.level is False


def test_no_interrupt_when_driver_suppresses_it(rig):
    d = rig.drv
    hdr = d.header(T_IN, 0)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (d.DATA, SECTOR, True), (st, 1, True)])
    d.make_avail(head, flags=1)                     # VIRTQ_AVAIL_F_NO_INTERRUPT
    assert d.used_idx() == 1
    assert rig.irq.level is False
    assert d.r(INT_STATUS) == 0


# ---------------------------------------------------------------------------
# Bad requests: an error status, never an exception, never the host file
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sector,nbytes", [
    (DISK_SECTORS, SECTOR),                         # first sector past the end
    (DISK_SECTORS - 1, 2 * SECTOR),                 # runs past the end
    (1 << 60, SECTOR),                              # far away
    ((1 << 64) - 1, SECTOR),                        # the largest sector number
])
def test_read_out_of_range_is_ioerr(rig, sector, nbytes):
    status, used_len, _, _ = rig.drv.request(T_IN, sector, read_len=nbytes)
    assert status == S_IOERR
    assert used_len == 1
    assert rig.disk.reads == 0


@pytest.mark.parametrize("sector", [DISK_SECTORS, DISK_SECTORS - 1, (1 << 64) - 1])
def test_write_out_of_range_is_ioerr_and_file_unchanged(rig, sector):
    status, _, _, _ = rig.drv.request(T_OUT, sector, out=b"\xff" * 2 * SECTOR)
    assert status == S_IOERR
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)
    assert rig.disk.writes == 0


@pytest.mark.parametrize("nbytes", [1, 100, SECTOR + 1, SECTOR - 1])
def test_length_not_a_multiple_of_512(rig, nbytes):
    assert rig.drv.request(T_IN, 0, read_len=nbytes)[0] == S_IOERR
    assert rig.drv.request(T_OUT, 0, out=b"\x11" * nbytes)[0] == S_IOERR
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_write_to_readonly_disk_is_ioerr(make_rig, disk_file):
    r = make_rig(disk_file, readonly=True)
    assert r.drv.request(T_OUT, 0, out=b"\x11" * SECTOR)[0] == S_IOERR
    seg = struct.pack("<QII", 0, 4, 0)
    assert r.drv.request(T_WRITE_ZEROES, extra=seg)[0] in (S_IOERR, S_UNSUPP)
    assert r.drv.request(T_DISCARD, extra=seg)[0] in (S_IOERR, S_UNSUPP)
    assert r.file() == pattern(DISK_SECTORS * SECTOR)
    # reads still work, and a flush is harmless
    status, _, data, _ = r.drv.request(T_IN, 1, read_len=SECTOR)
    assert status == S_OK and data == pattern(DISK_SECTORS * SECTOR)[SECTOR:2 * SECTOR]
    assert r.drv.request(T_FLUSH)[0] == S_OK


@pytest.mark.parametrize("kind", [2, 3, 7, 99, 0xFFFFFFFF])
def test_unknown_request_type_is_unsupp(rig, kind):
    status, used_len, _, _ = rig.drv.request(kind, 0, out=b"\x22" * SECTOR)
    assert status == S_UNSUPP
    assert used_len == 1
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_write_zeroes_out_of_range_changes_nothing(rig):
    segs = struct.pack("<QII", 0, 1, 0) + struct.pack("<QII", DISK_SECTORS - 1, 2, 0)
    assert rig.drv.request(T_WRITE_ZEROES, extra=segs)[0] == S_IOERR
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_write_zeroes_with_a_truncated_segment(rig):
    assert rig.drv.request(T_WRITE_ZEROES, extra=b"\0" * 10)[0] == S_IOERR
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_short_header_is_ioerr(rig):
    d = rig.drv
    hdr = d.header(T_OUT, 0)
    st = d.alloc(1)
    head = d.chain([(hdr, 8, False), (st, 1, True)])
    d.make_avail(head)
    assert d.used_idx() == 1
    assert d.mem.read(st, 1)[0] == S_IOERR
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_request_without_a_status_byte_completes(rig):
    d = rig.drv
    hdr = d.header(T_OUT, 0)
    d.mem.write(d.DATA, b"\x44" * SECTOR)
    head = d.chain([(hdr, 16, False), (d.DATA, SECTOR, False)])
    d.make_avail(head)                              # no writable buffer at all
    assert d.used_idx() == 1
    assert d.used_elem(0) == (head, 0)
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_bad_request_does_not_stop_the_queue(rig):
    assert rig.drv.request(T_IN, DISK_SECTORS, read_len=SECTOR)[0] == S_IOERR
    assert rig.drv.request(77)[0] == S_UNSUPP
    status, _, data, _ = rig.drv.request(T_IN, 0, read_len=SECTOR)
    assert status == S_OK and data == pattern(SECTOR)
    assert not rig.drv.status & NEEDS_RESET


def test_data_buffer_outside_ram_never_reaches_the_host(rig):
    """A buffer outside guest memory: the request fails or the device asks for a reset,
    and the host file is left alone either way."""
    d = rig.drv
    hdr = d.header(T_OUT, 0)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (0x4000_0000, SECTOR, False), (st, 1, True)])
    d.make_avail(head)
    assert d.mem.read(st, 1)[0] == S_IOERR or d.status & NEEDS_RESET
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)
    assert rig.disk.writes == 0


def test_read_into_buffer_outside_ram(rig):
    d = rig.drv
    hdr = d.header(T_IN, 0)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (RAM_BASE + RAM_SIZE - 256, SECTOR, True),
                    (st, 1, True)])                 # half in RAM, half past its end
    d.make_avail(head)
    assert d.mem.read(st, 1)[0] == S_IOERR or d.status & NEEDS_RESET
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)


def test_data_descriptor_outside_ram_completes_with_ioerr(rig):
    """hvemu's choice where the spec allows either: the request fails, the device lives."""
    d = rig.drv
    hdr = d.header(T_OUT, 0)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (0x4000_0000, SECTOR, False), (st, 1, True)])
    d.make_avail(head)
    assert d.mem.read(st, 1)[0] == S_IOERR
    assert not d.status & NEEDS_RESET


@pytest.mark.parametrize("addr,length", [
    (0xFFFF_FFFF_FFFF_FF00, 0x1300),                # wraps in the ROM check: reads ROM[0:512]
    (0xFFFF_FFFF_FFFF_F000, 0x8000_1000),           # wraps in the RAM check: reads b""
])
def test_write_from_wrapping_descriptor_is_an_error(rig, addr, length):
    d = rig.drv
    d.mem.write(0x1000, b"\x5e" * SECTOR)           # something recognisable in the ROM
    hdr = d.header(T_OUT, 0)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (addr, length, False), (st, 1, True)])
    d.make_avail(head)
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)
    assert d.mem.read(st, 1)[0] == S_IOERR or d.status & NEEDS_RESET


def test_read_into_boot_rom_does_not_modify_it(rig):
    d = rig.drv
    rom = d.mem.read(0x1000, SECTOR)
    hdr = d.header(T_IN, 1)
    st = d.alloc(1)
    head = d.chain([(hdr, 16, False), (0x1000, SECTOR, True), (st, 1, True)])
    d.make_avail(head)
    assert d.mem.read(0x1000, SECTOR) == rom
    assert d.mem.read(st, 1)[0] != S_OK or d.status & NEEDS_RESET


# ---------------------------------------------------------------------------
# A malformed ring: DEVICE_NEEDS_RESET, a config interrupt, the host file untouched
# ---------------------------------------------------------------------------

def _out_header(d, sector=0):
    hdr = d.header(T_OUT, sector)
    d.mem.write(d.DATA, b"\xbb" * SECTOR)
    st = d.alloc(1)
    return hdr, st


def _expect_needs_reset(rig, used_before=0):
    d = rig.drv
    assert d.status & NEEDS_RESET
    assert d.r(INT_STATUS) & INT_CONFIG
    assert rig.irq.level is True
    assert d.used_idx() == used_before
    assert rig.file() == pattern(DISK_SECTORS * SECTOR)
    assert rig.disk.writes == 0


def test_head_index_beyond_the_queue(rig):
    d = rig.drv
    _out_header(d)
    d.make_avail(d.qsize + 3)
    _expect_needs_reset(rig)


def test_next_index_beyond_the_queue(rig):
    d = rig.drv
    hdr, st = _out_header(d)
    d.put_desc(0, hdr, 16, DESC_NEXT, 1)
    d.put_desc(1, d.DATA, SECTOR, DESC_NEXT, d.qsize)
    d.make_avail(0)
    _expect_needs_reset(rig)


def test_looping_chain(rig):
    d = rig.drv
    hdr, st = _out_header(d)
    d.put_desc(0, hdr, 16, DESC_NEXT, 1)
    d.put_desc(1, d.DATA, SECTOR, DESC_NEXT, 2)
    d.put_desc(2, st, 1, DESC_WRITE | DESC_NEXT, 0)     # back to the head
    d.make_avail(0)
    _expect_needs_reset(rig)


def test_self_looping_descriptor(rig):
    d = rig.drv
    hdr, st = _out_header(d)
    d.put_desc(0, hdr, 16, DESC_NEXT, 1)
    d.put_desc(1, d.DATA, SECTOR, DESC_NEXT, 1)
    d.make_avail(0)
    _expect_needs_reset(rig)


def test_indirect_descriptor_not_negotiated(rig):
    d = rig.drv
    hdr, st = _out_header(d)
    table = d.alloc(48)
    d.mem.write(table, struct.pack("<QIHH", hdr, 16, DESC_NEXT, 1)
                + struct.pack("<QIHH", d.DATA, SECTOR, DESC_NEXT, 2)
                + struct.pack("<QIHH", st, 1, DESC_WRITE, 0))
    d.put_desc(0, table, 48, DESC_INDIRECT)
    d.make_avail(0)
    _expect_needs_reset(rig)


def test_descriptor_table_outside_ram(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    d = r.drv
    assert d.negotiate() & FEATURES_OK
    d.setup_queue(desc=0x4000_0000)
    d.w(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK)
    d.make_avail(0)
    _expect_needs_reset(r)


def test_used_ring_outside_ram(make_rig, disk_file):
    r = make_rig(disk_file, init=False)
    d = r.drv
    assert d.negotiate() & FEATURES_OK
    d.setup_queue(used=RAM_BASE + RAM_SIZE)
    d.w(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK)
    hdr = d.header(T_IN, 0)
    st = d.alloc(1)
    d.make_avail(d.chain([(hdr, 16, False), (d.DATA, SECTOR, True), (st, 1, True)]))
    assert d.status & NEEDS_RESET
    assert d.r(INT_STATUS) & INT_CONFIG
    assert r.file() == pattern(DISK_SECTORS * SECTOR)


def test_avail_index_more_than_a_queue_ahead(rig):
    d = rig.drv
    hdr = d.header(T_OUT, 0, extra=b"\x11" * SECTOR)
    st = d.alloc(1)
    head = d.chain([(hdr, 16 + SECTOR, False), (st, 1, True)])
    d.mem.write(d.AVAIL + 4, struct.pack(f"<{d.qsize}H", *[head] * d.qsize))
    d.mem.write(d.AVAIL, struct.pack("<HH", 0, 1000))  # 1000 "new" buffers in an 8-slot ring
    d.w(QUEUE_NOTIFY, 0)
    assert rig.disk.writes == 0
    assert d.status & NEEDS_RESET


def test_status_zero_resets_the_device(rig):
    d = rig.drv
    d.make_avail(d.qsize + 1)                       # malformed: needs reset
    assert d.status & NEEDS_RESET and rig.irq.level
    d.w(STATUS, 0)
    assert d.status == 0
    assert d.r(INT_STATUS) == 0
    assert rig.irq.level is False
    d.w(QUEUE_SEL, 0)
    assert d.r(QUEUE_READY) == 0
    assert d.r(QUEUE_DESC_LO) == 0
    # a fresh driver initialisation works, from avail/used index 0 again
    for addr in (d.DESC, d.AVAIL, d.USED):
        d.mem.write(addr, bytes(0x1000))
    d2 = VirtioDriver(rig.dev, rig.mem)
    rig.drv = d2
    d2.init()
    status, _, data, _ = d2.request(T_IN, 0, read_len=SECTOR)
    assert status == S_OK and data == pattern(SECTOR)


def test_status_zero_resets_features(rig):
    d = rig.drv
    d.write_features(d.device_features() | 1 << 28)   # an unoffered feature, then a reset
    d.w(STATUS, 0)
    # after the reset the stale driver features are gone: accepting nothing is fine
    d.w(STATUS, ACKNOWLEDGE)
    d.w(STATUS, ACKNOWLEDGE | DRIVER)
    d.w(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK)
    assert d.status & FEATURES_OK


# ---------------------------------------------------------------------------
# Disks carved from one host file
# ---------------------------------------------------------------------------

def test_two_disks_on_one_file_stay_in_their_ranges(make_rig, tmp_path):
    path = tmp_path / "shared.img"
    half = 16 * SECTOR
    path.write_bytes(bytes(SECTOR) + b"\x01" * half + b"\x02" * half + bytes(SECTOR))
    a = make_rig(path, offset=SECTOR, size=half)
    b = make_rig(path, offset=SECTOR + half, size=half)
    assert a.drv.config(0, 8) == 16 and b.drv.config(0, 8) == 16

    # each sees only its own bytes
    assert a.drv.request(T_IN, 15, read_len=SECTOR)[2] == b"\x01" * SECTOR
    assert b.drv.request(T_IN, 0, read_len=SECTOR)[2] == b"\x02" * SECTOR

    # writes to a never show in b, nor before a's offset
    assert a.drv.request(T_OUT, 15, out=b"\xaa" * SECTOR)[0] == S_OK
    assert a.drv.request(T_OUT, 16, out=b"\xee" * SECTOR)[0] == S_IOERR
    assert a.drv.request(T_WRITE_ZEROES, extra=struct.pack("<QII", 0, 16, 0))[0] == S_OK
    assert a.drv.request(T_WRITE_ZEROES, extra=struct.pack("<QII", 15, 2, 0))[0] == S_IOERR
    assert b.drv.request(T_IN, 0, read_len=half)[2] == b"\x02" * half

    # and writes to b never show in a, nor after b's end
    assert b.drv.request(T_OUT, 0, out=b"\xbb" * half)[0] == S_OK
    assert b.drv.request(T_OUT, 15, out=b"\xee" * 2 * SECTOR)[0] == S_IOERR
    assert a.drv.request(T_IN, 0, read_len=half)[2] == bytes(half)

    data = path.read_bytes()
    assert data[:SECTOR] == bytes(SECTOR)
    assert data[SECTOR:SECTOR + half] == bytes(half)
    assert data[SECTOR + half:SECTOR + 2 * half] == b"\xbb" * half
    assert data[SECTOR + 2 * half:] == bytes(SECTOR)
    assert len(data) == 2 * SECTOR + 2 * half


def test_carved_disk_read_out_of_range(make_rig, tmp_path):
    path = tmp_path / "f.img"
    path.write_bytes(b"\x07" * 4 * SECTOR)
    r = make_rig(path, offset=SECTOR, size=2 * SECTOR)
    assert r.drv.request(T_IN, 2, read_len=SECTOR)[0] == S_IOERR
    assert r.drv.request(T_IN, 1, read_len=2 * SECTOR)[0] == S_IOERR
    assert r.drv.request(T_IN, 1, read_len=SECTOR)[0] == S_OK


def test_disk_image_close_is_idempotent(disk_file):
    disk = DiskImage(str(disk_file))
    fd = disk.fd
    assert fd >= 0
    disk.close()
    assert disk.fd == -1
    disk.close()
    with pytest.raises(OSError):
        os.fstat(fd)
