"""The fuzz worker: many generated cases in one process, each checked, one JSON line
per case.  tests/test_fuzz.py runs it as a supervised child (an address-space limit,
a time limit, its peak memory measured); run it by hand to reproduce a case:

    python tests/fuzzkit.py --seed 1234 --only 17        # the case a report names

Case kinds (every VM runs on both engines, the pre-decoded fast path and the reference
interpreter, and the two must agree on how the run ended, the console output, every
register, pc, instret, all of RAM and the disk):

* random-bytes    a raw image of random bytes
* random-program  random RV64IMAC instructions (ALU, M, loads/stores, AMOs, LR/SC,
                  branches, CSRs, ecall/ebreak/wfi/mret/sret/sfence.vma, compressed
                  forms, MMIO to every device) behind a trap handler that skips
                  whatever faults
* virtio-blk      a driver-shaped guest (tests/guestkit.py) with random descriptor
                  chains: lengths up to 4 GiB, addresses in and out of RAM, loops,
                  random flags, types, sectors, queue sizes and avail counts
* mmio-storm      random register writes to every device, virtio setup included
* bad-image       ELF and raw images mutated at random (header fields, bit flips,
                  truncation): refused with an HvemuError, or booted and compared
* bad-cli         `hvemu boot` command lines with values mutated at random: an exit
                  status of the documented table, one `hvemu:` line for a failure

A case fails on any exception that is not the documented refusal (a traceback), an
"internal error" from the CLI, an engine disagreement, or a run that needed the
safety timeout (a hang).  A crash of the process (a signal) or a hang of Python code
is seen by the supervisor.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import io
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corekit as K  # noqa: E402
from conftest import RV  # noqa: E402
from guestkit import RAM_BASE, RawGuest, blk_header, virtio_blk_guest  # noqa: E402

MEMORY = 16 << 20
DISK = 64 * 1024
MAX_INSNS = 30_000
SAFETY_TIMEOUT = 20.0            # seconds: a run that needs it is a hang
KINDS = ("random-bytes", "random-program", "virtio-blk", "mmio-storm", "bad-image", "bad-cli")
SHORT = {"random-bytes": 12, "random-program": 24, "virtio-blk": 24, "mmio-storm": 12,
         "bad-image": 40, "bad-cli": 40}
DEVICES = (0x0010_0000, 0x0200_0000, 0x0200_4000, 0x0200_BFF8, 0x0C00_0000, 0x0C20_0000,
           0x1000_0000, 0x1000_1000, 0x1000_2000, 0x1000_8000)
NOT_DEVICES = (0x0000_1000, 0x4000_0000)          # the boot ROM, nothing: access faults


class CaseFailure(Exception):
    """The case found a bug: a disagreement, an internal error, a hang."""


# ---------------------------------------------------------------------------
# Running a guest on both engines
# ---------------------------------------------------------------------------

def run_engine(image: Path, reference: bool, disk: Path | None, memory: int = MEMORY):
    from hvemu.console import Console
    from hvemu.disks import DiskSpec
    from hvemu.vm import VM, VMConfig
    disks = [DiskSpec(str(disk))] if disk is not None else []
    vm = VM(VMConfig(image=str(image), memory=memory, max_instructions=MAX_INSNS,
                     timeout=SAFETY_TIMEOUT, reference=reference, disks=disks),
            Console(keep=1 << 16))
    out = vm.run()
    if out.reason == "timeout":
        raise CaseFailure(f"the run needed the {SAFETY_TIMEOUT} s safety timeout (a hang) "
                          f"on the {'reference' if reference else 'fast'} engine")
    ram = hashlib.sha256(vm.memory.read(RAM_BASE, memory)).hexdigest()
    state = {"reason": out.reason, "exit_code": out.exit_code, "detail": out.detail,
             "console": vm.console.output_bytes.hex(), "position": vm.console.position,
             "instret": vm.vcpu.instret, "pc": vm.vcpu.pc, "x": vm.vcpu.x, "ram": ram,
             "disk": hashlib.sha256(disk.read_bytes()).hexdigest() if disk else None}
    return state


def both_engines(image: Path, tmp: Path, disk_bytes: bytes | None = None) -> dict:
    """Run image on the fast path and on the reference interpreter (each on its own copy
    of the disk); CaseFailure if they disagree."""
    states = []
    for reference in (False, True):
        disk = None
        if disk_bytes is not None:
            disk = tmp / f"disk-{int(reference)}.img"
            disk.write_bytes(disk_bytes)
        states.append(run_engine(image, reference, disk))
    fast, ref = states
    for key in fast:
        if fast[key] != ref[key]:
            raise CaseFailure(f"fast path and reference disagree on {key}: "
                              f"{str(fast[key])[:200]} != {str(ref[key])[:200]}")
    return {"reason": fast["reason"], "instret": fast["instret"]}


# ---------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------

def csr_op(f3: int, rd: int, csr: int, rs1: int) -> int:
    return (csr << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73


CSRS = (0x300, 0x301, 0x302, 0x303, 0x304, 0x305, 0x340, 0x341, 0x342, 0x343, 0x344,
        0x100, 0x104, 0x105, 0x140, 0x141, 0x142, 0x143, 0x144, 0x180, 0x30A, 0x10A,
        0x14D, 0xB00, 0xB02, 0xC00, 0xC01, 0xC02, 0xF11, 0xF12, 0xF13, 0xF14, 0x7A0,
        0x3A0, 0x3B0, 0x320, 0x306, 0x106)
SYSTEM = (K.ECALL, K.EBREAK, 0x10500073, 0x30200073, 0x10200073, 0x12000073, K.FENCE,
          K.FENCE_I, 0x00000073 | (0x105 << 20))
FREE = [r for r in range(1, 32) if r not in (K.SP, K.S0, K.T6)]   # the body's registers


MRET = 0x30200073


def trap_handler() -> list[int]:
    """An interrupt: mask it in mie (MTIE) and return.  An exception: skip the
    instruction that trapped (2 or 4 bytes) and return."""
    t0, t1, t2 = K.T0, K.T1, K.T2
    return [csr_op(2, t1, 0x342, 0),                # csrr t1, mcause
            K.bge(t1, 0, 16),                       # an exception: on to the skip
            K.addi(t2, 0, 0x80), csr_op(3, 0, 0x304, t2), MRET,   # csrc mie, t2
            csr_op(2, t0, 0x341, 0),                # csrr t0, mepc
            K.lhu(t1, t0, 0), K.andi(t1, t1, 3), K.addi(t2, 0, 3),
            K.bne(t1, t2, 8),                       # compressed: 2 bytes
            K.addi(t0, t0, 2), K.addi(t0, t0, 2),
            csr_op(1, 0, 0x341, t0), MRET]          # csrw mepc, t0


def load_addr(rd: int, addr: int) -> list[int]:
    """rd = a 32-bit unsigned address (t0 is clobbered above 0x7fff_ffff)."""
    if addr >= 0x8000_0000:
        return [*_li32(rd, addr - 0x8000_0000), K.addi(K.T0, 0, 1), K.slli(K.T0, K.T0, 31),
                K.add(rd, rd, K.T0)]
    return _li32(rd, addr)


def _li32(rd: int, value: int) -> list[int]:
    lo = ((value & 0xFFF) ^ 0x800) - 0x800
    hi = ((value - lo) >> 12) & 0xFFFFF
    return [K.lui(rd, hi), K.addi(rd, rd, lo)] if hi else [K.addi(rd, 0, lo)]


def random_instruction(rng: random.Random) -> list[int]:
    r = lambda: rng.choice(FREE)                     # noqa: E731
    roll = rng.random()
    if roll < 0.30:
        op = rng.choice([K.add, K.sub, K.sll, K.slt, K.sltu, K.xor, K.srl, K.sra, K.or_,
                         K.and_, K.addw, K.subw, K.sllw, K.srlw, K.sraw, K.mul, K.mulh,
                         K.mulhsu, K.mulhu, K.div, K.divu, K.rem, K.remu, K.mulw, K.divw,
                         K.divuw, K.remw, K.remuw])
        return [op(r(), r(), r())]
    if roll < 0.45:
        op = rng.choice([K.addi, K.slti, K.sltiu, K.xori, K.ori, K.andi, K.addiw])
        return [op(r(), r(), rng.randrange(-2048, 2048))]
    if roll < 0.50:
        return [rng.choice([K.lui, K.auipc])(r(), rng.randrange(1 << 20))]
    if roll < 0.62:
        load = rng.choice([K.lb, K.lh, K.lw, K.ld, K.lbu, K.lhu, K.lwu])
        store = rng.choice([K.sb, K.sh, K.sw, K.sd])
        base = K.S0 if rng.random() < 0.85 else r()
        off = rng.randrange(-2048, 2048)
        return [load(r(), base, off) if rng.random() < 0.5 else store(r(), base, off)]
    if roll < 0.67:
        name = rng.choice(K.AMO_NAMES)
        return [K.addi(K.T6, K.S0, rng.randrange(0, 256, 8)),
                K.amo(name, rng.choice("wd"), r(), r(), K.T6)]
    if roll < 0.69:
        return [K.addi(K.T6, K.S0, 64), K.lr_d(r(), K.T6), K.sc_d(r(), r(), K.T6)]
    if roll < 0.76:
        op = rng.choice([K.beq, K.bne, K.blt, K.bge, K.bltu, K.bgeu])
        return [op(r(), r(), rng.choice([-8, -4, 8, 12, 16, 24]))]
    if roll < 0.78:
        return [K.jal(rng.choice([0, K.RA]), rng.choice([8, 12, 16, -12]))]
    if roll < 0.84:
        f3 = rng.choice([1, 2, 3, 5, 6, 7])
        return [csr_op(f3, r(), rng.choice(CSRS), rng.choice(FREE) if f3 < 4 else
                       rng.randrange(32))]
    if roll < 0.88:
        return [rng.choice(SYSTEM)]
    if roll < 0.95:
        dev = rng.choice(DEVICES + NOT_DEVICES) + rng.randrange(0, 0x100, 4)
        op = rng.choice([K.lw, K.lbu, K.ld, K.sw, K.sb, K.sd])
        return [*_li32(K.T6, dev), op(r(), K.T6, 0)]
    rd = rng.choice([8, 9, 10, 11, 12, 13, 14, 15])
    c = rng.choice([K.c_addi(rd, rng.randrange(1, 32)), K.c_li(rd, rng.randrange(-32, 32)),
                    K.c_mv(rd, rng.choice(FREE)), K.c_add(rd, rng.choice(FREE)),
                    K.c_sub(rd, rng.choice(range(8, 16))), K.c_lw(rd, 8, rng.randrange(0, 128, 4)),
                    K.c_sd(rd, 8, rng.randrange(0, 256, 8)), K.c_nop(), K.c_ebreak()])
    return [c, K.c_nop()] if rng.random() < 0.5 else [c]


def random_program(rng: random.Random) -> bytes:
    handler_at = RAM_BASE + 0x8000
    data = RAM_BASE + 0x10000
    prologue = [*load_addr(K.T1, handler_at), csr_op(1, 0, 0x305, K.T1),   # mtvec
                *load_addr(K.S0, data), *load_addr(K.SP, RAM_BASE + MEMORY - 16)]
    if rng.random() < 0.5:                       # a timer interrupt now and then
        prologue += [*_li32(K.T6, 0x0200_4000), K.addi(K.T1, 0, rng.randrange(50, 2000)),
                     K.sd(K.T1, K.T6, 0), K.addi(K.T1, 0, 0x80), csr_op(2, 0, 0x304, K.T1),
                     K.addi(K.T1, 0, 8), csr_op(2, 0, 0x300, K.T1)]
    body: list[int] = []
    for _ in range(rng.randrange(20, 400)):
        body += random_instruction(rng)
    body += [K.jal(0, -4 * rng.randrange(1, 8))] if rng.random() < 0.3 else []
    code = K.code_bytes(prologue + body + [K.ECALL]) + K.code_bytes(RV.poweroff(0))
    image = bytearray(code.ljust(0x8000, b"\0"))
    image += K.code_bytes(trap_handler())
    image = image.ljust(0x10000, b"\0")
    image += bytes(rng.getrandbits(8) for _ in range(4096))
    return bytes(image)


def virtio_case(rng: random.Random) -> RawGuest:
    return (honest_virtio_case if rng.random() < 0.3 else hostile_virtio_case)(rng)


def honest_virtio_case(rng: random.Random) -> RawGuest:
    """A well-formed request (READ, WRITE, FLUSH, GET_ID, WRITE_ZEROES) over a few
    descriptors: the data paths, compared between the engines."""
    g = RawGuest()
    kind = rng.choice([0, 1, 4, 8, 13])
    sectors = rng.randrange(1, 17)
    sector = rng.randrange(DISK // 512 - sectors + 1)
    extra = struct.pack("<QII", sector, sectors, rng.choice([0, 1])) if kind == 13 else b""
    header = g.place(blk_header(kind, sector) + extra)
    data = g.place(bytes(rng.getrandbits(8) for _ in range(sectors * 512)))
    chain = [(header, 16 + len(extra), False)]
    if kind in (0, 1, 8):
        cuts = sorted(rng.sample(range(1, sectors * 512), rng.randrange(0, 4)))
        for lo, hi in zip([0, *cuts], [*cuts, sectors * 512], strict=True):
            chain.append((data + lo, hi - lo, kind != 1))
    status = g.reserve(1)
    chain.append((status, 1, True))
    return virtio_blk_guest(chain, guest=g, status_addr=status)


def hostile_virtio_case(rng: random.Random) -> RawGuest:
    g = RawGuest()
    kind = rng.choice([0, 1, 4, 8, 11, 13, rng.randrange(1 << 32)])
    sector = rng.choice([0, 1, DISK // 512 - 1, DISK // 512, rng.randrange(1 << 64)])
    extra = b""
    if kind in (11, 13):
        extra = b"".join(struct.pack("<QII", rng.randrange(DISK // 512 + 2),
                                     rng.choice([0, 1, 8, 1 << 16, (1 << 32) - 1]),
                                     rng.choice([0, 0, 1, 2]))
                         for _ in range(rng.choice([0, 1, 2, 16, 17, 300])))
    header = g.place(blk_header(kind, sector) + extra)
    buf = g.reserve(8192)

    def addr() -> int:
        return rng.choice([buf, buf + rng.randrange(8192), RAM_BASE, RAM_BASE + MEMORY - 256,
                           RAM_BASE + MEMORY, 0x1000, 0x4000_0000, (1 << 64) - 512,
                           rng.randrange(1 << 64)])

    def length() -> int:
        return rng.choice([0, 1, 15, 16, 511, 512, 4096, 8192, MEMORY, 128 << 20,
                           (1 << 32) - 1, rng.randrange(1 << 32)])
    chain = [(header, rng.choice([16, 16 + len(extra), 8, 0, length()]), False)]
    for _ in range(rng.choice([0, 1, 1, 2, 2, 5, 60, 250])):
        chain.append((addr(), length(), rng.random() < 0.5))
    status = g.reserve(1)
    chain.append((status, rng.choice([1, 1, 0, 2]), True))
    qsize = rng.choice([256, 256, 256, 128, 8, 2, 1])
    chain = chain[:qsize]
    table = len(g.data) + (-len(g.data) % 16)       # where virtio_blk_guest puts it
    guest = virtio_blk_guest(chain, count=rng.choice([1, 1, 1, 2, qsize, qsize + 1, 0xFFFF]),
                             qsize=qsize, guest=g, status_addr=status)
    if rng.random() < 0.3:                           # a descriptor that loops or jumps away
        i = rng.randrange(len(chain))
        struct.pack_into("<HH", guest.data, table + 16 * i + 12, 1 | rng.choice([0, 2, 4]),
                         rng.randrange(qsize + 2))
    return guest


def mmio_storm(rng: random.Random) -> bytes:
    g = RawGuest()
    g.place(bytes(rng.getrandbits(8) for _ in range(8192)))
    base = rng.choice([0x1000_1000, 0x1000_2000, 0x1000_0000, 0x0C00_0000, 0x0200_0000])
    for _ in range(rng.randrange(10, 120)):
        offset = rng.choice([0x000, 0x014, 0x020, 0x024, 0x030, 0x038, 0x044, 0x050, 0x064,
                             0x070, 0x080, 0x084, 0x090, 0x094, 0x0A0, 0x0A4, 0x100,
                             rng.randrange(0, 0x1000, 4)])
        value = rng.choice([0, 1, 0xF, 0xB, 8, 256, 0x80010000, 0x80012000,
                            rng.getrandbits(32)])
        g.store32((rng.choice([base, rng.choice(DEVICES)]) + offset) & 0xFFFF_FFFC, value)
    g.print("storm\n")
    g.poweroff(0)
    return g.image()


ELF_FIELDS = [(24, "<Q"), (32, "<Q"), (40, "<Q"), (52, "<H"), (54, "<H"), (56, "<H"),
              (58, "<H"), (60, "<H"), (62, "<H")]
PHDR_FIELDS = [(0, "<I"), (8, "<Q"), (16, "<Q"), (24, "<Q"), (32, "<Q"), (40, "<Q")]
INTERESTING = [0, 1, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 63, (1 << 64) - 1,
               0x8000_0000, 0x8000_1000, 0x8800_0000, 64, 56, 4096]


def bad_image(rng: random.Random, hello: bytes) -> bytes:
    data = bytearray(hello)
    for _ in range(rng.randrange(1, 4)):
        roll = rng.random()
        if roll < 0.35:
            offset, fmt = rng.choice(ELF_FIELDS)
        elif roll < 0.7:
            field_offset, fmt = rng.choice(PHDR_FIELDS)
            offset = 64 + 56 * rng.randrange(3) + field_offset
        elif roll < 0.85:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
            continue
        else:
            del data[rng.randrange(len(data)):]
            if not data:
                data = bytearray(b"\x7f")
            continue
        size = struct.calcsize(fmt)
        if offset + size <= len(data):
            value = rng.choice(INTERESTING + [rng.getrandbits(8 * size)]) % (1 << (8 * size))
            struct.pack_into(fmt, data, offset, value)
    if rng.random() < 0.1:                             # not an ELF at all
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
    return bytes(data)


def bad_cli_args(rng: random.Random, tmp: Path, image: Path) -> list[str]:
    def number() -> str:
        return rng.choice(["0", "1", "64", "128M", "1G", "65G", "4095", "4096B", " 1", "1 ",
                           "1_0", "\u0661\u0662", "\uff11", "-1", "+1", "1e3", "0x10", "1.5",
                           "", "nan", "inf", "18446744073709551615", "18446744073709551616",
                           "9" * 40, "128MB", "128MiB", "1k", "2t", "0.0001", "12abc"])
    args = ["boot"]
    pool = [["--memory", number()], ["-m", number()], ["--max-instructions", number()],
            ["--timeout", number()], ["--disk", rng.choice([
                str(tmp / "disk.img"), f"{tmp / 'disk.img'},readonly",
                f"{tmp / 'disk.img'},offset={number()}", f"{tmp / 'disk.img'},size={number()}",
                f"{tmp / 'nope.img'}", ",ro", f"{tmp / 'disk.img'},bogus", "/dev/zero",
                str(tmp)])],
            ["-bios", rng.choice(["none", str(image), str(tmp / "nope")])],
            ["-kernel", rng.choice([str(image), "kernel", str(tmp / "nope")])],
            ["--stats-json", rng.choice([str(tmp / "s.json"), "/dev/full",
                                         str(tmp / "no" / "s.json")])],
            ["--reference"], ["--stats"], ["--no-such-option"], ["-x"], [str(image)],
            ["extra", "args"], ["--bios", str(image)]]
    for _ in range(rng.randrange(1, 5)):
        args += rng.choice(pool)
    if "--max-instructions" not in args:
        args += ["--max-instructions", "20000"]
    return args


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------

def case_random_bytes(rng, tmp):
    image = tmp / "random.bin"
    image.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randrange(2, 8192))))
    return both_engines(image, tmp)


def case_random_program(rng, tmp):
    image = tmp / "program.bin"
    image.write_bytes(random_program(rng))
    return both_engines(image, tmp)


def case_virtio_blk(rng, tmp):
    image = tmp / "virtio.bin"
    image.write_bytes(virtio_case(rng).image())
    disk = bytes(rng.getrandbits(8) for _ in range(256)) * (DISK // 256)
    return both_engines(image, tmp, disk)


def case_mmio_storm(rng, tmp):
    image = tmp / "storm.bin"
    image.write_bytes(mmio_storm(rng))
    return both_engines(image, tmp, bytes(DISK))


def case_bad_image(rng, tmp):
    from hvemu.errors import HvemuError
    hello = (HERE.parent / "firmware" / "hello.elf").read_bytes()
    image = tmp / "mutant.elf"
    image.write_bytes(bad_image(rng, hello))
    try:
        return both_engines(image, tmp)
    except HvemuError as e:
        message = str(e)
        if "\n" in message or not message:
            raise CaseFailure(f"a refusal that is not one line: {message!r}") from None
        return {"refused": message[:120]}


def case_bad_cli(rng, tmp):
    from hvemu import cli
    disk = tmp / "disk.img"
    if not disk.exists():
        disk.write_bytes(bytes(DISK))
    image = tmp / "tiny.bin"
    image.write_bytes(K.code_bytes(RV.poweroff(0)))
    args = bad_cli_args(rng, tmp, image)
    out = io.TextIOWrapper(io.BytesIO(), write_through=True)
    err = io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(args)
        except SystemExit as e:
            code = e.code
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    documented = {0, 64, 65, 66, 69, 71, 73, 74, 120, 121, 124, 125}
    if code not in documented:
        raise CaseFailure(f"{args}: exit status {code} is not in the table; stderr {lines}")
    if any("internal error" in line or "Traceback" in line for line in lines):
        raise CaseFailure(f"{args}: {lines}")
    if code in (64, 65, 66, 69, 71, 73, 74) and (len(lines) != 1
                                                 or not lines[0].startswith("hvemu: ")):
        raise CaseFailure(f"{args}: a failure must be one `hvemu:` line, got {lines}")
    return {"exit": code}


RUNNERS = {"random-bytes": case_random_bytes, "random-program": case_random_program,
           "virtio-blk": case_virtio_blk, "mmio-storm": case_mmio_storm,
           "bad-image": case_bad_image, "bad-cli": case_bad_cli}


def plan(seed: int, scale: float, kinds=KINDS) -> list[tuple[int, str, int]]:
    """(index, kind, case seed) of every case, interleaved by kind."""
    master = random.Random(seed)
    per_kind = {k: max(1, round(SHORT[k] * scale)) for k in kinds}
    order = [k for k in kinds for _ in range(per_kind[k])]
    master.shuffle(order)
    return [(i, kind, master.getrandbits(48)) for i, kind in enumerate(order)]


# ---------------------------------------------------------------------------
# The supervisor (the parent side, used by tests/test_fuzz.py)
# ---------------------------------------------------------------------------

class Findings:
    """What a supervised run found: problems (one line each, with how to reproduce),
    the records the worker wrote, its exit status and its peak resident memory."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.records: list[dict] = []
        self.status: int | None = None
        self.peak_rss = 0
        self.seconds = 0.0


def supervise(cmd: list[str], report: Path, *, address_space: int, time_limit: float,
              env=None) -> Findings:
    """Run cmd (a worker writing JSON lines to report) with RLIMIT_AS = address_space;
    a signal is a host crash, running past time_limit a hang, a non-zero exit or a
    failed case a problem."""
    import resource
    import subprocess

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    f = Findings()
    started = time.monotonic()
    with open(report.with_suffix(".out"), "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, preexec_fn=limit)
        hung = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > time_limit:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                hung = True
                break
            time.sleep(0.02)
    f.seconds = time.monotonic() - started
    f.status = os.waitstatus_to_exitcode(status)
    f.peak_rss = usage.ru_maxrss * 1024
    if report.exists():
        for line in report.read_text().splitlines():
            with contextlib.suppress(ValueError):
                f.records.append(json.loads(line))
    started_cases = {r["index"]: r for r in f.records if r.get("event") == "start"}
    finished = {r["index"] for r in f.records if r.get("event") == "done"}
    running = [started_cases[i] for i in started_cases if i not in finished]
    where = (f" in case {running[0]['index']} ({running[0]['kind']}, seed "
             f"{running[0]['seed']})" if running else "")
    output = report.with_suffix(".out").read_bytes().decode(errors="replace")[-1500:]
    if hung:
        f.problems.append(f"a hang: still running after {time_limit:.0f} s{where}")
    elif f.status < 0:
        f.problems.append(f"a host crash: killed by signal {-f.status}{where}; "
                          f"output: {output}")
    for r in f.records:
        if r.get("event") == "done" and not r["ok"]:
            f.problems.append(f"case {r['index']} ({r['kind']}): {r['detail']} "
                              f"[reproduce: {r['reproduce']}]")
    if not hung and f.status > 0 and not any(not r.get("ok", True) for r in f.records):
        f.problems.append(f"the worker exited {f.status}{where}; output: {output}")
    return f


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0, help="cases per kind, times this")
    ap.add_argument("--only", type=int, default=None, help="run only the case of this index")
    ap.add_argument("--report", default=None, help="JSON lines here (default: stdout)")
    args = ap.parse_args(argv)
    report = open(args.report, "w") if args.report else sys.stdout   # noqa: SIM115
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    def emit(**record) -> None:
        report.write(json.dumps(record) + "\n")
        report.flush()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="hvemu-fuzz-") as top:
        for index, kind, case_seed in plan(args.seed, args.scale):
            if args.only is not None and index != args.only:
                continue
            emit(event="start", index=index, kind=kind, seed=case_seed)
            tmp = Path(top) / str(index)
            tmp.mkdir()
            started = time.monotonic()
            try:
                result = RUNNERS[kind](random.Random(case_seed), tmp)
                emit(event="done", index=index, kind=kind, ok=True, result=result,
                     seconds=round(time.monotonic() - started, 3))
            except Exception as e:   # a bug found: report it, carry on with the next case
                failures += 1
                detail = (str(e) if isinstance(e, CaseFailure)
                          else "".join(traceback.format_exception(e))[-3000:])
                emit(event="done", index=index, kind=kind, ok=False, detail=detail,
                     reproduce=f"python tests/fuzzkit.py --seed {args.seed} "
                               f"--scale {args.scale} --only {index}")
            shutil.rmtree(tmp, ignore_errors=True)
            gc.collect()
    emit(event="end", failures=failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
