"""VM snapshots: all of a VM's state as a versioned, checksummed file (DESIGN.md, "State,
snapshots and migration"), and the sections live migration sends (hvemu/migration.py).

`save(vm, path)` writes a snapshot, `restore(path)` makes a VM from one and
`restore_into(vm, path)` loads one into a VM built from the same configuration; a VM
saved at instruction N and restored goes on exactly as the run that was never
interrupted (same console output, same instret), since every piece of guest-visible
state is in the file and time is counted in instructions.

The format (version 1), little-endian throughout:

    header    8 bytes  magic b"HVEMUSNP"
              4 bytes  u32 format version (VERSION)
              4 bytes  u32 flags (bit 0: a migration stream, not a file; bit 1: its
                       RAM sections carry CRC 0, left to END's SHA-256, which is
                       cheaper in the downtime than a CRC-32 of every page)
    sections, each:
              4 bytes  tag (ASCII)
              8 bytes  u64 payload length
              4 bytes  u32 CRC-32 (zlib.crc32) of the payload
              payload

    "CONF"  JSON: what the VM is -- RAM size and base, vCPUs, clock, the kind of boot
            (firmware or the built-in SBI), and each image (firmware, kernel, initrd) by
            path, size and SHA-256, the kernel command line, and each disk (path, byte
            range, read-only, and its content identity: size and the SHA-256 of the
            first and the last MiB of its range).  A VM whose configuration differs in
            any of these refuses the snapshot with a one-line reason.  The disks'
            *contents* are not in a snapshot (like QEMU's external snapshots): they
            must be the same when it is restored, which the identity checks.  (A
            migration stream leaves the identity out: the target has the same shared
            file, or gets the disks copied in BLK sections.)
    "RAM "  touched guest frames, any number of sections: u32 flags (bit 0: zlib), u32
            pages with data, u32 pages of zeros, u32 page indices (from the RAM base) of
            the data pages, then those of the zero pages, then the data pages' 4 KiB
            each (zlib-compressed as one block with bit 0).  A file holds every page
            that has a frame and is not all zero; a migration stream sends pages again
            as the guest dirties them (zero pages too: the target may hold old data).
    "ROM "  the boot ROM, zlib-compressed.
    "STAT"  JSON: every vCPU -- x0-x31, f0-f31, fflags, frm, mstatus.FS, pc, instret,
            privilege, the LR reservation (as a guest-physical address), every virtual
            CSR (machine and supervisor, counters' offsets, PMP, the Sdtrig triggers),
            the SBI HSM state, whether it waits in WFI, the trap chain it is in -- the
            built-in SBI's per-hart timers, the devices (UART registers and receive
            FIFO, CLINT msip/mtimecmp, PLIC priorities/pending/claimed/enables/
            thresholds, the RTC's time, alarm and interrupt, each virtio-mmio
            transport's registers and virtqueues), the clock (its offset: time is
            instructions / (10 x harts) + offset), the power state, and where the
            scheduler's round goes on (the hart whose quantum was cut, and what is
            left of it: an SMP VM keeps its interleaving across a restore).  Virtio
            requests are served whole within the exit that notifies them, so a
            request in flight is one the driver has made available and the device has
            not taken yet: it is in guest RAM, and `last_avail` in the queue's state
            says where the device goes on.
    "BLK "  block migration only: u32 disk index, u64 byte offset in its range, u32
            flags (bit 1: all zero, no data follows), u32 length, then the bytes.
    "RND "  a migration stream's end of a round: JSON {"round": n}.
    "END "  the SHA-256 of every byte before this section: a file cut short, spliced
            or changed anywhere is refused.

A snapshot file is header, CONF, RAM..., ROM, STAT, END.  `SnapshotError` (an
`HvemuError`, exit 65) carries the one-line reason for refusing one.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from .errors import HvemuError, NoInputError

MAGIC = b"HVEMUSNP"
VERSION = 1
FLAG_STREAM = 1
FLAG_RAM_NO_CRC = 2
HEADER = struct.Struct("<8sII")
SECTION = struct.Struct("<4sQI")
RAM_HEAD = struct.Struct("<III")
RAM_ZLIB = 1
PAGE = 4096
CHUNK_PAGES = 2048                 # pages per RAM section of a file (8 MiB before zlib)
ZLIB_LEVEL = 1
MAX_SECTION = 1 << 31              # no section of a valid snapshot is this large
IDENTITY_SPAN = 1 << 20            # a disk's identity: SHA-256 of its first and last MiB

# the VirtualCsrFile attributes a snapshot holds (plain ints, or lists of ints)
CSR_FIELDS = ("mstatus", "medeleg", "mideleg", "mie", "mip_sw", "mip_hw", "mtvec", "mepc",
              "mcause", "mtval", "mscratch", "mcounteren", "mcountinhibit", "menvcfg",
              "stvec", "sepc", "scause", "stval", "sscratch", "scounteren", "senvcfg",
              "satp", "stimecmp", "cycle_offset", "instret_offset", "pmpcfg", "pmpaddr")
UART_FIELDS = ("ier", "lcr", "mcr", "scr", "fcr", "dll", "dlm", "thre_pending")
PLIC_FIELDS = ("priority", "level", "pending", "in_service", "enable", "threshold",
               "ctx_pending")
RTC_FIELDS = ("epoch_ns", "offset_ns", "high_latch", "set_high", "alarm", "alarm_armed",
              "irq_enabled", "irq_pending")
VIRTIO_FIELDS = ("status", "device_features_sel", "driver_features_sel", "driver_features",
                 "queue_sel", "interrupt_status", "config_generation")
QUEUE_FIELDS = ("num", "ready", "desc", "driver", "device", "last_avail")


class SnapshotError(HvemuError):
    """A snapshot (or migration stream) that cannot be used: the one-line reason."""


# ---------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------

def header(stream: bool = False, ram_crc: bool = True) -> bytes:
    return HEADER.pack(MAGIC, VERSION, (FLAG_STREAM if stream else 0)
                       | (0 if ram_crc else FLAG_RAM_NO_CRC))


def check_header(data: bytes, what: str) -> int:
    """The flags of a header; SnapshotError for anything else than this version's."""
    if len(data) < HEADER.size:
        raise SnapshotError(f"{what}: truncated (no complete header)")
    magic, version, flags = HEADER.unpack(data[:HEADER.size])
    if magic != MAGIC:
        raise SnapshotError(f"{what}: not an hvemu snapshot (bad magic)")
    if version != VERSION:
        raise SnapshotError(f"{what}: format version {version}, this hvemu reads version "
                            f"{VERSION} only")
    return flags


def section(tag: bytes, payload: bytes) -> bytes:
    return SECTION.pack(tag, len(payload), zlib.crc32(payload)) + payload


def json_section(tag: bytes, obj) -> bytes:
    return section(tag, json.dumps(obj, separators=(",", ":"), sort_keys=True).encode())


def ram_section(memory, pages, compress: bool, zero_pages=()) -> tuple[bytes, int]:
    """A RAM section of the given pages (and pages to be made zero); returns it and the
    number of data bytes it carries before compression."""
    import numpy as np  # (imported here: not needed to start hvemu)
    pages = np.asarray(pages, dtype=np.uint32)
    zero_pages = np.asarray(zero_pages, dtype=np.uint32)
    data = memory.read_pages(pages)
    raw = len(data)
    if compress:
        data = zlib.compress(data, ZLIB_LEVEL)
    payload = b"".join((RAM_HEAD.pack(RAM_ZLIB if compress else 0, len(pages), len(zero_pages)),
                        pages.tobytes(), zero_pages.tobytes(), data))
    return section(b"RAM ", payload), raw


def split_zero(memory, pages) -> tuple[np.ndarray, np.ndarray]:
    """pages split into (pages with data, pages that are all zero)."""
    import numpy as np  # (imported here: not needed to start hvemu)
    pages = np.asarray(pages, dtype=np.uint32)
    if not len(pages):
        return pages, pages
    words = np.frombuffer(memory.read_pages(pages), dtype=np.uint64).reshape(len(pages), 512)
    nonzero = words.any(axis=1)
    return pages[nonzero], pages[~nonzero]


def apply_ram(memory, payload: bytes, what: str) -> int:
    """Write a RAM section's pages into memory; returns how many pages it held."""
    import numpy as np  # (imported here: not needed to start hvemu)
    if len(payload) < RAM_HEAD.size:
        raise SnapshotError(f"{what}: a RAM section is cut short")
    flags, n, nz = RAM_HEAD.unpack_from(payload)
    at = RAM_HEAD.size
    if len(payload) < at + 4 * (n + nz):
        raise SnapshotError(f"{what}: a RAM section is cut short")
    pages = np.frombuffer(payload, dtype=np.uint32, count=n, offset=at)
    zeros = np.frombuffer(payload, dtype=np.uint32, count=nz, offset=at + 4 * n)
    data = payload[at + 4 * (n + nz):]
    if flags & RAM_ZLIB:
        try:
            data = zlib.decompress(data)
        except zlib.error:
            raise SnapshotError(f"{what}: a RAM section does not decompress") from None
    if len(data) != PAGE * n:
        raise SnapshotError(f"{what}: a RAM section holds {len(data)} bytes for {n} pages")
    limit = memory.pages
    if (n and int(pages.max()) >= limit) or (nz and int(zeros.max()) >= limit):
        raise SnapshotError(f"{what}: a RAM page beyond the VM's {limit} pages")
    memory.write_pages(pages, data)
    if nz:
        memory.write_pages(zeros, bytes(PAGE * nz))
    return n + nz


BLK_HEAD = struct.Struct("<IQII")          # disk, byte offset, flags, bytes


def blk_section(disk_index: int, offset: int, data: bytes) -> bytes:
    """A BLK section (block migration): bytes of a disk's range at offset; all zero
    ones are sent as their length only (flag bit 1)."""
    if not data.count(0) == len(data):
        return section(b"BLK ", BLK_HEAD.pack(disk_index, offset, 0, len(data)) + data)
    return section(b"BLK ", BLK_HEAD.pack(disk_index, offset, 2, len(data)))


def apply_blocks(vm, payload: bytes, what: str) -> None:
    if len(payload) < BLK_HEAD.size:
        raise SnapshotError(f"{what}: a BLK section is cut short")
    index, offset, flags, n = BLK_HEAD.unpack_from(payload)
    data = payload[BLK_HEAD.size:] if not flags & 2 else bytes(n)
    if index >= len(vm.disks) or len(data) != n or offset + n > vm.disks[index].size:
        raise SnapshotError(f"{what}: a BLK section outside this VM's disks")
    disk = vm.disks[index]
    if disk.readonly:
        raise SnapshotError(f"{what}: disk {index} ({disk.path}) is read-only here")
    disk.pwrite(offset, data)


class SectionReader:
    """Sections from a file-like `read(n)`, each checked against its CRC-32, and every
    byte hashed for the END section."""

    def __init__(self, read, what: str):
        self._read = read
        self.what = what
        self.sha = hashlib.sha256()
        self.bytes = 0
        self.ram_crc = True             # header flag bit 1 clear

    def exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            data = self._read(min(left, 1 << 20))
            if not data:
                raise SnapshotError(f"{self.what}: truncated ({self.bytes + n - left} bytes, "
                                    "then the end)")
            chunks.append(data)
            left -= len(data)
        out = b"".join(chunks)
        self.sha.update(out)
        self.bytes += n
        return out

    def header(self) -> int:
        flags = check_header(self.exactly(HEADER.size), self.what)
        self.ram_crc = not flags & FLAG_RAM_NO_CRC
        return flags

    def next(self) -> tuple[bytes, bytes]:
        """(tag, payload) of the next section; END's digest is checked here."""
        digest = self.sha.digest()
        tag, length, crc = SECTION.unpack(self.exactly(SECTION.size))
        if length > MAX_SECTION:
            raise SnapshotError(f"{self.what}: corrupt (a section of {length} bytes)")
        payload = self.exactly(length)
        if (self.ram_crc or tag != b"RAM ") and zlib.crc32(payload) != crc:
            raise SnapshotError(f"{self.what}: corrupt (the checksum of section "
                                f"{tag.decode('ascii', 'replace').strip()!r} does not match)")
        if tag == b"END " and payload != digest:
            raise SnapshotError(f"{self.what}: corrupt (the SHA-256 of the whole does not "
                                "match its END section)")
        return tag, payload


def parse_json(payload: bytes, what: str):
    try:
        return json.loads(payload)
    except ValueError:
        raise SnapshotError(f"{what}: corrupt (a JSON section does not parse)") from None


# ---------------------------------------------------------------------------
# what the VM is: its configuration's identity
# ---------------------------------------------------------------------------

def file_identity(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise NoInputError(f"{path}: {e.strerror}") from None
    return {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def disk_identity(path: str, offset: int, size: int) -> dict:
    """A disk's content identity: its size and the SHA-256 of the first and last MiB of
    its byte range (a full hash would read the whole disk at every save)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for start in sorted({0, max(0, size - IDENTITY_SPAN)}):
                f.seek(offset + start)
                h.update(f.read(min(IDENTITY_SPAN, size - start)))
    except OSError as e:
        raise NoInputError(f"disk {path}: {e.strerror}") from None
    return {"size": size, "sha256_ends": h.hexdigest()}


def machine(vm, disks: bool = True) -> dict:
    """The CONF section: everything a VM must match to take this VM's state."""
    cfg = vm.config
    out = {
        "memory": cfg.memory, "ram_base": vm.memory.ram_base, "vcpus": cfg.vcpus,
        "clock": cfg.clock, "boot": "sbi" if vm.sbi is not None else "firmware",
        "image": file_identity(cfg.image), "kernel": file_identity(cfg.kernel),
        "initrd": file_identity(cfg.initrd), "append": cfg.append,
        "disks": [{"path": str(d.path), "offset": d.offset, "size": d.size,
                   "readonly": d.readonly} for d in cfg.disks],
    }
    if disks:
        for entry, spec in zip(out["disks"], cfg.disks, strict=True):
            entry["identity"] = disk_identity(spec.path, spec.offset, spec.size)
    return out


def config_from(conf: dict, **overrides):
    """A VMConfig that builds the machine a CONF section describes."""
    from .disks import DiskSpec
    from .vm import VMConfig
    image = conf["image"]["path"] if conf.get("image") else None
    kernel = conf["kernel"]["path"] if conf.get("kernel") else None
    initrd = conf["initrd"]["path"] if conf.get("initrd") else None
    disks = [DiskSpec(d["path"], d["readonly"], d["offset"], d["size"]) for d in conf["disks"]]
    return VMConfig(image=image, kernel=kernel, initrd=initrd, append=conf["append"],
                    memory=conf["memory"], vcpus=conf["vcpus"], clock=conf["clock"],
                    disks=disks, **overrides)


def compare(saved: dict, mine: dict, what: str, disks: bool = True) -> None:
    """SnapshotError naming the first way in which this VM differs from the saved one."""
    for key in ("memory", "ram_base", "vcpus", "clock"):
        if saved.get(key) != mine.get(key):
            raise SnapshotError(f"{what}: made by a VM with {key} {saved.get(key)!r}, this "
                                f"one has {mine.get(key)!r}")
    for key in ("image", "kernel", "initrd"):
        a, b = saved.get(key), mine.get(key)
        if (a is None) != (b is None):
            raise SnapshotError(f"{what}: made by a VM {'with' if a else 'without'} a {key}"
                                f"{' (' + a['path'] + ')' if a else ''}, this one has "
                                f"{b['path'] if b else 'none'}")
        if a is not None and (a["sha256"] != b["sha256"] or a["size"] != b["size"]):
            raise SnapshotError(f"{what}: made from another {key} ({a['path']}, "
                                f"{a['size']} bytes, sha256 {a['sha256'][:12]}...) than "
                                f"{b['path']} (sha256 {b['sha256'][:12]}...)")
    for key in ("boot", "append"):
        if saved.get(key) != mine.get(key):
            raise SnapshotError(f"{what}: made by a VM with {key} {saved.get(key)!r}, this "
                                f"one has {mine.get(key)!r}")
    sd, md = saved.get("disks", []), mine.get("disks", [])
    if len(sd) != len(md):
        raise SnapshotError(f"{what}: made by a VM with {len(sd)} disks, this one has {len(md)}")
    for i, (a, b) in enumerate(zip(sd, md, strict=True)):
        for key in ("offset", "size", "readonly"):
            if a[key] != b[key]:
                raise SnapshotError(f"{what}: disk {i} ({b['path']}) has {key} {b[key]!r}, "
                                    f"the snapshot's has {a[key]!r}")
        if disks and "identity" in a and a["identity"] != b.get("identity"):
            raise SnapshotError(f"{what}: disk {i} ({b['path']}) is not the disk the "
                                "snapshot was made with (its size or contents differ)")


# ---------------------------------------------------------------------------
# the state: vCPUs, devices, clock
# ---------------------------------------------------------------------------

def _fields(obj, names) -> dict:
    out = {}
    for n in names:
        v = getattr(obj, n)
        out[n] = list(v) if isinstance(v, (list, tuple, deque)) else v
    return out


def _set_fields(obj, values: dict, names) -> None:
    for n in names:
        v = values[n]
        setattr(obj, n, list(v) if isinstance(v, list) else v)


def _schedule(vm):
    """Where the scheduler's round goes on: [hart, instructions left of its quantum] when
    a stop (--max-instructions) cut that hart's quantum, [hart, None] after a pause."""
    if vm.sched_at is not None:
        vc = vm.vcpus[vm.sched_at]
        return [vm.sched_at, max(0, vc.quantum_end - vc.vcpu.instret)]
    return list(vm.resume_point) if vm.resume_point is not None else None


def capture(vm) -> dict:
    """The STAT section: all state of a stopped VM (no vCPU running) but its memory."""
    vcpus = []
    for vc in vm.vcpus:
        v, hart, c = vc.vcpu, vc.hart, vc.hart.csr
        t = c.triggers
        vcpus.append({
            "x": v.x, "f": v.f, "fflags": v.fflags, "frm": v.frm, "fs": v.fs,
            "pc": v.pc, "instret": v.instret, "priv": hart.priv, "resv": v.reservation,
            "csr": _fields(c, CSR_FIELDS),
            "triggers": {"select": t.select, "tdata1": list(t.tdata1),
                         "tdata2": list(t.tdata2), "configured": t.configured},
            "last_trap": hart.last_trap, "first_trap": hart.first_trap,
            "hsm": vc.hsm, "waiting": vc.waiting,
        })
    clock = vm.clock
    state = {
        "vcpus": vcpus,
        "clock": {"offset": clock.offset, "now": clock.now()},
        "sbi": list(vm.sbi.timecmp) if vm.sbi is not None else None,
        "uart": _fields(vm.uart, UART_FIELDS) | {"rx": list(vm.uart.rx)},
        "clint": {"msip": list(vm.clint.msip), "mtimecmp": list(vm.clint.mtimecmp)},
        "plic": _fields(vm.plic, PLIC_FIELDS),
        "rtc": _fields(vm.rtc, RTC_FIELDS),
        "virtio": [_fields(dev, VIRTIO_FIELDS) | {"queues": [_fields(q, QUEUE_FIELDS)
                                                             for q in dev.queues]}
                   for dev in vm.virtio],
        "power": {"exit_code": vm.power.exit_code},
        "schedule": _schedule(vm),
        "instructions": vm.instructions,
    }
    return state


def apply(vm, state: dict, what: str) -> None:
    """Put a STAT section's state into vm (its RAM already loaded)."""
    try:
        _apply(vm, state)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as e:
        raise SnapshotError(f"{what}: corrupt or from another hvemu (its state does not "
                            f"fit this VM: {type(e).__name__} {e})") from None


def _apply(vm, state: dict) -> None:
    if len(state["vcpus"]) != len(vm.vcpus) or len(state["virtio"]) != len(vm.virtio):
        raise ValueError("vCPUs or devices differ")
    for vc, s in zip(vm.vcpus, state["vcpus"], strict=True):
        v, hart, c = vc.vcpu, vc.hart, vc.hart.csr
        for i in range(32):
            v.set_x(i, s["x"][i])
            v.set_f(i, s["f"][i])
        v.fflags, v.frm, v.fs = s["fflags"], s["frm"], s["fs"]
        v.pc, v.instret = s["pc"], s["instret"]
        _set_fields(c, s["csr"], CSR_FIELDS)
        t = s["triggers"]
        c.triggers.select = t["select"]
        c.triggers.tdata1, c.triggers.tdata2 = list(t["tdata1"]), list(t["tdata2"])
        c.triggers.configured = t["configured"]
        hart.priv = s["priv"]
        hart.last_trap = tuple(s["last_trap"]) if s["last_trap"] is not None else None
        hart.first_trap = tuple(s["first_trap"]) if s["first_trap"] is not None else None
        vc.hsm, vc.waiting = s["hsm"], s["waiting"]
        vc.fault = None
        vc.irq_dirty = True
        v.reservation = s["resv"]
        hart._triggers_live = True              # push the triggers whatever they are
        hart.sync_mode()
        hart.sync_envcfg()
        hart.sync_triggers()
    if (state["sbi"] is None) != (vm.sbi is None):
        raise ValueError("the built-in SBI is not in both")
    if vm.sbi is not None:
        vm.sbi.timecmp = list(state["sbi"])
    clock = vm.clock
    if clock.realtime:                           # host time: go on from the saved mtime
        clock.offset += state["clock"]["now"] - clock.now()
    else:
        clock.offset = state["clock"]["offset"]
    u = state["uart"]
    _set_fields(vm.uart, u, UART_FIELDS)
    vm.uart.rx.clear()
    vm.uart.rx.extend(u["rx"])
    vm.clint.msip = list(state["clint"]["msip"])
    vm.clint.mtimecmp = list(state["clint"]["mtimecmp"])
    if len(vm.clint.msip) != len(vm.vcpus) or len(vm.clint.mtimecmp) != len(vm.vcpus):
        raise ValueError("CLINT harts differ")
    _set_fields(vm.plic, state["plic"], PLIC_FIELDS)
    _set_fields(vm.rtc, state["rtc"], RTC_FIELDS)
    for dev, d in zip(vm.virtio, state["virtio"], strict=True):
        _set_fields(dev, d, VIRTIO_FIELDS)
        for q, qs in zip(dev.queues, d["queues"], strict=True):
            _set_fields(q, qs, QUEUE_FIELDS)
    vm.power.exit_code = state["power"]["exit_code"]
    sched = state["schedule"]
    vm.resume_point = (int(sched[0]), sched[1]) if sched is not None else None
    vm.sched_at = None
    if vm.resume_point is not None and not 0 <= vm.resume_point[0] < len(vm.vcpus):
        raise ValueError("the schedule names a hart that is not there")
    for vc in vm.vcpus:
        vc.hart.sync_counters()
    if vm.instructions != state["instructions"]:
        raise ValueError("instructions do not add up")


def clear_memory(vm) -> None:
    """Drop the VM's RAM (frames back to the pool) and every vCPU's shadow TLB."""
    vm.memory.clear()
    for vc in vm.vcpus:
        vc.vcpu.flush_all()


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def write_snapshot(vm, out) -> int:
    """Write vm's snapshot to the binary stream `out` (the VM must be stopped); returns
    the bytes written."""
    sha = hashlib.sha256()
    total = 0

    def put(data: bytes) -> None:
        nonlocal total
        sha.update(data)
        out.write(data)
        total += len(data)

    put(header())
    put(json_section(b"CONF", machine(vm)))
    pages, _ = split_zero(vm.memory, vm.memory.touched_indices())
    for i in range(0, len(pages), CHUNK_PAGES):
        put(ram_section(vm.memory, pages[i:i + CHUNK_PAGES], compress=True)[0])
    put(section(b"ROM ", zlib.compress(vm.memory.read(vm.memory.rom_base,
                                                      len(vm.memory.rom)))))
    put(json_section(b"STAT", capture(vm)))
    put(section(b"END ", sha.digest()))
    return total


def check_local(vm) -> None:
    """Refuse a VM whose state is not in this process: one a hosted hypervisor has run,
    asked from outside the hypervisor's process (its devices and CSRs live there; QMP,
    served from that process, may)."""
    from .hypervisor.hosted import HostedHypervisor
    hv = vm.hypervisor
    if isinstance(hv, HostedHypervisor) and vm.state != "created" and not hv.serving:
        raise HvemuError(f"the VM runs on a {hv.kind} hypervisor: its state is in the "
                         "hypervisor's process, not in this one (save or migrate it over "
                         "QMP: hvemu boot --qmp ...)")


def save(vm, path) -> int:
    """Save vm (stopped: paused, or not running) to path atomically (a temporary file,
    then a rename); returns its size in bytes."""
    from .errors import CantCreateError
    check_local(vm)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            n = write_snapshot(vm, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError):
            raise CantCreateError(f"{path}: cannot write the snapshot ({e.strerror})") from None
        raise
    return n


def read_conf(path) -> dict:
    """The CONF section of a snapshot file (its header and that section checked)."""
    what = f"snapshot {path}"
    try:
        with open(path, "rb") as f:
            r = SectionReader(f.read, what)
            r.header()
            tag, payload = r.next()
    except OSError as e:
        raise NoInputError(f"{what}: {e.strerror}") from None
    if tag != b"CONF":
        raise SnapshotError(f"{what}: corrupt (it does not begin with its configuration)")
    return parse_json(payload, what)


def load_stream(vm, reader: SectionReader, on_conf=None) -> dict:
    """Read sections (after the header) into vm: CONF is compared with vm's own (or
    handed to on_conf), RAM written as it comes, then ROM, STAT, END.  Returns the
    stats of what was read."""
    what = reader.what
    tag, payload = reader.next()
    if tag != b"CONF":
        raise SnapshotError(f"{what}: corrupt (it does not begin with its configuration)")
    conf = parse_json(payload, what)
    if on_conf is not None:
        on_conf(conf)
    else:
        compare(conf, machine(vm), what)
    clear_memory(vm)
    pages = sections = 0
    state = rom = None
    while True:
        tag, payload = reader.next()
        sections += 1
        if tag == b"RAM ":
            pages += apply_ram(vm.memory, payload, what)
        elif tag == b"ROM ":
            try:
                rom = zlib.decompress(payload)
            except zlib.error:
                raise SnapshotError(f"{what}: corrupt (the ROM does not decompress)") from None
        elif tag == b"STAT":
            state = parse_json(payload, what)
        elif tag == b"END ":
            break
        elif tag == b"RND ":
            pass                               # a migration round's end: nothing to do
        elif tag == b"BLK ":
            apply_blocks(vm, payload, what)
        else:
            raise SnapshotError(f"{what}: corrupt (an unknown section "
                                f"{tag.decode('ascii', 'replace')!r})")
    if state is None or rom is None:
        raise SnapshotError(f"{what}: incomplete (no {'device state' if state is None else 'ROM'})")
    for disk in vm.disks:                      # what block migration wrote is durable
        if disk.fd >= 0 and not disk.readonly:
            disk.flush()
    if len(rom) != len(vm.memory.rom):
        raise SnapshotError(f"{what}: its boot ROM has {len(rom)} bytes, this VM's "
                            f"{len(vm.memory.rom)}")
    vm.memory.write(vm.memory.rom_base, rom)
    apply(vm, state, what)
    return {"pages": pages, "sections": sections, "bytes": reader.bytes}


def verify(f, what: str) -> None:
    """Check a whole snapshot file (header, every section's CRC, END's SHA-256, nothing
    after it) without loading it."""
    reader = SectionReader(f.read, what)
    if reader.header() & FLAG_STREAM:
        raise SnapshotError(f"{what}: a migration stream, not a snapshot file")
    tags = []
    while True:
        tag, _ = reader.next()
        tags.append(tag)
        if tag == b"END ":
            break
    if f.read(1):
        raise SnapshotError(f"{what}: corrupt (bytes after its END section)")
    if tags[0] != b"CONF" or b"STAT" not in tags or b"ROM " not in tags:
        raise SnapshotError(f"{what}: incomplete (a section is missing)")


def restore_into(vm, path) -> dict:
    """Load the snapshot at path into vm, which was built from the same configuration
    (SnapshotError, one line, for one that is truncated, corrupt, of another version or
    from another VM; the VM's own state is then undefined: boot or discard it)."""
    what = f"snapshot {path}"
    try:
        f = open(path, "rb")
    except OSError as e:
        raise NoInputError(f"{what}: {e.strerror}") from None
    with f:
        verify(f, what)                          # all of it, before the VM is touched
        f.seek(0)
        reader = SectionReader(f.read, what)
        reader.header()
        info = load_stream(vm, reader)
    if vm.state == "shutdown":
        vm.state = "created"
    return info


def load(vm, path) -> dict:
    """loadvm: restore_into a VM that may be running (it is paused meanwhile, and goes
    on from the snapshot's state when resumed)."""
    with Stopped(vm):
        return restore_into(vm, path)


def restore(path, console=None, hypervisor=None, **overrides):
    """A new VM with the configuration and state of the snapshot at path (overrides:
    VMConfig fields that are not part of the machine, e.g. max_instructions, timeout)."""
    from .vm import VM
    conf = read_conf(path)
    vm = VM(config_from(conf, **overrides), console, hypervisor=hypervisor)
    restore_into(vm, path)
    return vm


# ---------------------------------------------------------------------------
# stopping a running VM at a safe point
# ---------------------------------------------------------------------------

class Stopped:
    """`with Stopped(vm):` -- the VM's vCPUs do not run inside (it is paused between two
    exits if its run loop is going, in whatever thread; resumed after, unless it was
    paused before).  `seconds` is how long the pause took to take hold."""

    def __init__(self, vm, timeout: float = 30.0):
        self.vm = vm
        self.timeout = timeout
        self.resume = False
        self.seconds = 0.0

    def __enter__(self):
        import threading
        import time
        vm = self.vm
        control = vm.control
        if vm.state not in ("running", "paused"):
            return self
        if getattr(vm, "_loop_thread", None) is threading.current_thread():
            return self                      # called from the VM's own loop: already stopped
        start = time.monotonic()
        if not (control.paused or control.request == "pause"):
            control.ask("pause")
            self.resume = True
        while not control.halted.wait(0.01):  # the scheduler has seen the pause (woken
            if vm.state == "shutdown":         # at once by it, not polling for the GIL)
                self.resume = False
                raise HvemuError("the VM stopped")
            if time.monotonic() - start > self.timeout:
                raise HvemuError("the VM did not pause")
        self.seconds = time.monotonic() - start
        return self

    def __exit__(self, *exc):
        if self.resume and self.vm.state != "shutdown":
            self.vm.resume()
        return False
