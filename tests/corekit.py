"""A tiny harness for testing hvemu's fast path (hvemu._core) without an assembler.

* Encoders for RV64IMAC instructions returning ints: 32-bit instructions as
  ``addi(A0, ZERO, 5)``, compressed ones as ``c_addi(A0, 5)``.  Operand order
  follows the assembly syntax, except that loads and stores take the base
  register before the offset: ``ld(rd, rs1, imm)``, ``sd(rs2, rs1, imm)``.
  Branch and jump offsets are byte offsets relative to the instruction.
* ``code_bytes(words)`` packs a list of encoded instructions (an int whose two
  low bits are 0b11 is 4 bytes, anything else 2 bytes) into guest memory bytes.
* ``make_vcpu`` / ``run_code`` load code at ``CODE`` in a 1 MiB RAM at
  ``RAM_BASE``, set registers and memory, and (``run_code``) run until the
  terminating ``ecall``.
* Both execution engines of the core are testable: ``new_vcpu`` makes a vCPU on
  the current engine ("fast", the pre-decoded fast path, the default; or
  "reference", the per-instruction interpreter), chosen with ``using_engine``.
* ``assemble(src)`` uses the real cross assembler, for readable tests and for
  checking these encoders; without the tool the test is skipped, or fails when
  the environment variable ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from hvemu._core import BUDGET, EXCEPTION, MMIO, SYSTEM, GuestMemory, VCpu

RAM_BASE = 0x8000_0000
RAM_SIZE = 1 << 20
CODE = RAM_BASE                 # where run_code puts the code
DATA = RAM_BASE + 0x8_0000      # a conventional data area, far from the code
MMIO_ADDR = 0x1000_0000         # guest-physical, neither RAM nor ROM
MASK64 = (1 << 64) - 1
INT64_MIN = 1 << 63             # as an unsigned 64-bit value
EXIT_NAMES = {BUDGET: "BUDGET", SYSTEM: "SYSTEM", EXCEPTION: "EXCEPTION", MMIO: "MMIO"}

# ---------------------------------------------------------------------------
# Registers
# ---------------------------------------------------------------------------

ABI_NAMES = ["zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1",
             "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7",
             "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
             "t3", "t4", "t5", "t6"]
REG = {name: i for i, name in enumerate(ABI_NAMES)} | {f"x{i}": i for i in range(32)}
REG["fp"] = 8

ZERO, RA, SP, GP, TP, T0, T1, T2, S0, S1 = range(10)
A0, A1, A2, A3, A4, A5, A6, A7 = range(10, 18)
S2, S3, S4, S5, S6, S7, S8, S9, S10, S11 = range(18, 28)
T3, T4, T5, T6 = range(28, 32)


def u64(v: int) -> int:
    """v as an unsigned 64-bit value (two's complement for negatives)."""
    return v & MASK64


def s64(v: int) -> int:
    """The unsigned 64-bit value v as a signed Python int."""
    v &= MASK64
    return v - (1 << 64) if v >> 63 else v


def sx(v: int, bits: int) -> int:
    """Sign-extend the low `bits` of v to an unsigned 64-bit value."""
    v &= (1 << bits) - 1
    if v >> (bits - 1):
        v -= 1 << bits
    return u64(v)


def reg(r: int | str) -> int:
    return REG[r] if isinstance(r, str) else r


# ---------------------------------------------------------------------------
# 32-bit instruction formats
# ---------------------------------------------------------------------------

def _check_reg(*regs: int) -> None:
    for r in regs:
        assert 0 <= r < 32, f"bad register {r}"


def _simm(imm: int, bits: int) -> int:
    assert -(1 << (bits - 1)) <= imm < (1 << (bits - 1)), f"{imm} does not fit {bits} bits"
    return imm & ((1 << bits) - 1)


def r_type(op: int, f3: int, f7: int, rd: int, rs1: int, rs2: int) -> int:
    _check_reg(rd, rs1, rs2)
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def i_type(op: int, f3: int, rd: int, rs1: int, imm: int) -> int:
    _check_reg(rd, rs1)
    return (_simm(imm, 12) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def s_type(op: int, f3: int, rs1: int, rs2: int, imm: int) -> int:
    _check_reg(rs1, rs2)
    imm = _simm(imm, 12)
    return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op


def b_type(op: int, f3: int, rs1: int, rs2: int, off: int) -> int:
    _check_reg(rs1, rs2)
    assert off % 2 == 0
    imm = _simm(off, 13)
    return (((imm >> 12) & 1) << 31) | (((imm >> 5) & 0x3F) << 25) | (rs2 << 20) | \
        (rs1 << 15) | (f3 << 12) | (((imm >> 1) & 0xF) << 8) | (((imm >> 11) & 1) << 7) | op


def u_type(op: int, rd: int, imm20: int) -> int:
    """imm20: the upper immediate as the assembler takes it (0..0xfffff, or negative)."""
    _check_reg(rd)
    assert -(1 << 19) <= imm20 < (1 << 20)
    return ((imm20 & 0xFFFFF) << 12) | (rd << 7) | op


def j_type(op: int, rd: int, off: int) -> int:
    _check_reg(rd)
    assert off % 2 == 0
    imm = _simm(off, 21)
    return (((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3FF) << 21) | \
        (((imm >> 11) & 1) << 20) | (((imm >> 12) & 0xFF) << 12) | (rd << 7) | op


def _r(op, f3, f7):
    return lambda rd, rs1, rs2: r_type(op, f3, f7, rd, rs1, rs2)


def _i(op, f3):
    return lambda rd, rs1, imm: i_type(op, f3, rd, rs1, imm)


def _shift(op, f3, hi, width):
    def enc(rd, rs1, shamt):
        assert 0 <= shamt < width
        return i_type(op, f3, rd, rs1, 0) | (hi << 25) | (shamt << 20)
    return enc


def _store(f3):
    return lambda rs2, rs1, imm: s_type(0x23, f3, rs1, rs2, imm)


def _branch(f3):
    return lambda rs1, rs2, off: b_type(0x63, f3, rs1, rs2, off)


# RV64I: register-register
add, sub = _r(0x33, 0, 0x00), _r(0x33, 0, 0x20)
sll, slt, sltu, xor = _r(0x33, 1, 0), _r(0x33, 2, 0), _r(0x33, 3, 0), _r(0x33, 4, 0)
srl, sra = _r(0x33, 5, 0x00), _r(0x33, 5, 0x20)
or_, and_ = _r(0x33, 6, 0), _r(0x33, 7, 0)
addw, subw = _r(0x3B, 0, 0x00), _r(0x3B, 0, 0x20)
sllw, srlw, sraw = _r(0x3B, 1, 0x00), _r(0x3B, 5, 0x00), _r(0x3B, 5, 0x20)
# RV64I: register-immediate
addi, slti, sltiu, xori, ori, andi = (_i(0x13, f3) for f3 in (0, 2, 3, 4, 6, 7))
slli, srli, srai = _shift(0x13, 1, 0x00, 64), _shift(0x13, 5, 0x00, 64), _shift(0x13, 5, 0x20, 64)
addiw = _i(0x1B, 0)
slliw, srliw, sraiw = _shift(0x1B, 1, 0x00, 32), _shift(0x1B, 5, 0x00, 32), \
    _shift(0x1B, 5, 0x20, 32)
# RV64M
mul, mulh, mulhsu, mulhu = (_r(0x33, f3, 1) for f3 in (0, 1, 2, 3))
div, divu, rem, remu = (_r(0x33, f3, 1) for f3 in (4, 5, 6, 7))
mulw, divw, divuw, remw, remuw = (_r(0x3B, f3, 1) for f3 in (0, 4, 5, 6, 7))
# loads and stores
lb, lh, lw, ld, lbu, lhu, lwu = (_i(0x03, f3) for f3 in (0, 1, 2, 3, 4, 5, 6))
sb, sh, sw, sd = (_store(f3) for f3 in (0, 1, 2, 3))
# control transfer
beq, bne, blt, bge, bltu, bgeu = (_branch(f3) for f3 in (0, 1, 4, 5, 6, 7))


def lui(rd, imm20):
    return u_type(0x37, rd, imm20)


def auipc(rd, imm20):
    return u_type(0x17, rd, imm20)


def jal(rd, off):
    return j_type(0x6F, rd, off)


def jalr(rd, rs1, imm=0):
    return i_type(0x67, 0, rd, rs1, imm)


def nop():
    return addi(ZERO, ZERO, 0)


# RV64A.  funct5 values from the unprivileged spec, "A" extension.
AMO_FUNCT5 = {"amoadd": 0x00, "amoswap": 0x01, "lr": 0x02, "sc": 0x03, "amoxor": 0x04,
              "amoor": 0x08, "amoand": 0x0C, "amomin": 0x10, "amomax": 0x14,
              "amominu": 0x18, "amomaxu": 0x1C}
AMO_NAMES = ["amoswap", "amoadd", "amoxor", "amoand", "amoor",
             "amomin", "amomax", "amominu", "amomaxu"]


def amo(name: str, width: str, rd: int, rs2: int, rs1: int, aq: int = 0, rl: int = 0) -> int:
    """amo('amoadd', 'w', rd, rs2, rs1) is `amoadd.w rd, rs2, (rs1)`."""
    f3 = {"w": 2, "d": 3}[width]
    f7 = (AMO_FUNCT5[name] << 2) | (aq << 1) | rl
    return r_type(0x2F, f3, f7, rd, rs1, rs2)


def lr_w(rd, rs1):
    return amo("lr", "w", rd, 0, rs1)


def lr_d(rd, rs1):
    return amo("lr", "d", rd, 0, rs1)


def sc_w(rd, rs2, rs1):
    return amo("sc", "w", rd, rs2, rs1)


def sc_d(rd, rs2, rs1):
    return amo("sc", "d", rd, rs2, rs1)


for _name, _f in list(globals().items()):      # name the generated encoders, for test ids
    if callable(_f) and getattr(_f, "__name__", "") in ("<lambda>", "enc"):
        _f.__name__ = _f.__qualname__ = _name.rstrip("_")


# MISC-MEM and SYSTEM
FENCE = 0x0FF0000F          # fence iorw, iorw
FENCE_TSO = 0x8330000F
FENCE_I = 0x0000100F
ECALL = 0x00000073
EBREAK = 0x00100073


def ecall():
    return ECALL


def ebreak():
    return EBREAK


def csrrs(rd, csr, rs1):
    return (csr << 20) | (rs1 << 15) | (2 << 12) | (rd << 7) | 0x73


# ---------------------------------------------------------------------------
# Compressed instructions (unprivileged spec, "C" extension)
# ---------------------------------------------------------------------------

def _bit(v: int, i: int) -> int:
    return (v >> i) & 1


def _bits(v: int, hi: int, lo: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def _creg(r: int) -> int:
    assert 8 <= r <= 15, f"x{r} is not one of x8..x15"
    return r - 8


def _ci(f3: int, rd: int, imm6: int, quadrant: int) -> int:
    """CI format: imm[5] at bit 12, imm[4:0] at bits 6:2."""
    return (f3 << 13) | (_bit(imm6, 5) << 12) | (rd << 7) | (_bits(imm6, 4, 0) << 2) | quadrant


def c_nop():
    return 0x0001


def c_addi(rd, imm):
    return _ci(0, rd, _simm(imm, 6), 1)


def c_addiw(rd, imm):
    return _ci(1, rd, _simm(imm, 6), 1)


def c_li(rd, imm):
    return _ci(2, rd, _simm(imm, 6), 1)


def c_lui(rd, nzimm):
    """c.lui rd, nzimm: rd = sign-extended nzimm << 12 (nzimm in -32..31, not 0)."""
    assert rd not in (0, 2) and nzimm != 0
    return _ci(3, rd, _simm(nzimm, 6), 1)


def c_addi16sp(nzimm):
    assert nzimm % 16 == 0 and nzimm != 0
    v = _simm(nzimm, 10)
    return (3 << 13) | (_bit(v, 9) << 12) | (2 << 7) | (_bit(v, 4) << 6) | (_bit(v, 6) << 5) | \
        (_bits(v, 8, 7) << 3) | (_bit(v, 5) << 2) | 1


def c_addi4spn(rd, nzuimm):
    assert nzuimm % 4 == 0 and 0 < nzuimm < 1024
    v = nzuimm
    return (_bits(v, 5, 4) << 11) | (_bits(v, 9, 6) << 7) | (_bit(v, 2) << 6) | \
        (_bit(v, 3) << 5) | (_creg(rd) << 2)


def _cmisc(f2, rd, imm6):
    return (4 << 13) | (_bit(imm6, 5) << 12) | (f2 << 10) | (_creg(rd) << 7) | \
        (_bits(imm6, 4, 0) << 2) | 1


def c_srli(rd, shamt):
    assert 0 < shamt < 64
    return _cmisc(0, rd, shamt)


def c_srai(rd, shamt):
    assert 0 < shamt < 64
    return _cmisc(1, rd, shamt)


def c_andi(rd, imm):
    return _cmisc(2, rd, _simm(imm, 6))


def _carith(bit12, f2, rd, rs2):
    return (4 << 13) | (bit12 << 12) | (3 << 10) | (_creg(rd) << 7) | (f2 << 5) | \
        (_creg(rs2) << 2) | 1


def c_sub(rd, rs2):
    return _carith(0, 0, rd, rs2)


def c_xor(rd, rs2):
    return _carith(0, 1, rd, rs2)


def c_or(rd, rs2):
    return _carith(0, 2, rd, rs2)


def c_and(rd, rs2):
    return _carith(0, 3, rd, rs2)


def c_subw(rd, rs2):
    return _carith(1, 0, rd, rs2)


def c_addw(rd, rs2):
    return _carith(1, 1, rd, rs2)


def c_slli(rd, shamt):
    assert 0 < shamt < 64
    return _ci(0, rd, shamt, 2)


def c_j(off):
    v = _simm(off, 12)
    assert off % 2 == 0
    return (5 << 13) | (_bit(v, 11) << 12) | (_bit(v, 4) << 11) | (_bits(v, 9, 8) << 9) | \
        (_bit(v, 10) << 8) | (_bit(v, 6) << 7) | (_bit(v, 7) << 6) | (_bits(v, 3, 1) << 3) | \
        (_bit(v, 5) << 2) | 1


def _cb(f3, rs1, off):
    v = _simm(off, 9)
    assert off % 2 == 0
    return (f3 << 13) | (_bit(v, 8) << 12) | (_bits(v, 4, 3) << 10) | (_creg(rs1) << 7) | \
        (_bits(v, 7, 6) << 5) | (_bits(v, 2, 1) << 3) | (_bit(v, 5) << 2) | 1


def c_beqz(rs1, off):
    return _cb(6, rs1, off)


def c_bnez(rs1, off):
    return _cb(7, rs1, off)


def c_jr(rs1):
    assert rs1 != 0
    return (4 << 13) | (rs1 << 7) | 2


def c_jalr(rs1):
    assert rs1 != 0
    return (4 << 13) | (1 << 12) | (rs1 << 7) | 2


def c_mv(rd, rs2):
    assert rs2 != 0
    return (4 << 13) | (rd << 7) | (rs2 << 2) | 2


def c_add(rd, rs2):
    assert rs2 != 0
    return (4 << 13) | (1 << 12) | (rd << 7) | (rs2 << 2) | 2


def c_ebreak():
    return 0x9002


def c_lw(rd, rs1, off):
    assert off % 4 == 0 and 0 <= off < 128
    return (2 << 13) | (_bits(off, 5, 3) << 10) | (_creg(rs1) << 7) | (_bit(off, 2) << 6) | \
        (_bit(off, 6) << 5) | (_creg(rd) << 2)


def c_ld(rd, rs1, off):
    assert off % 8 == 0 and 0 <= off < 256
    return (3 << 13) | (_bits(off, 5, 3) << 10) | (_creg(rs1) << 7) | \
        (_bits(off, 7, 6) << 5) | (_creg(rd) << 2)


def c_sw(rs2, rs1, off):
    return c_lw(rs2, rs1, off) | (4 << 13)


def c_sd(rs2, rs1, off):
    return c_ld(rs2, rs1, off) | (4 << 13)


def c_lwsp(rd, off):
    assert rd != 0 and off % 4 == 0 and 0 <= off < 256
    return (2 << 13) | (_bit(off, 5) << 12) | (rd << 7) | (_bits(off, 4, 2) << 4) | \
        (_bits(off, 7, 6) << 2) | 2


def c_ldsp(rd, off):
    assert rd != 0 and off % 8 == 0 and 0 <= off < 512
    return (3 << 13) | (_bit(off, 5) << 12) | (rd << 7) | (_bits(off, 4, 3) << 5) | \
        (_bits(off, 8, 6) << 2) | 2


def c_swsp(rs2, off):
    assert off % 4 == 0 and 0 <= off < 256
    return (6 << 13) | (_bits(off, 5, 2) << 9) | (_bits(off, 7, 6) << 7) | (rs2 << 2) | 2


def c_sdsp(rs2, off):
    assert off % 8 == 0 and 0 <= off < 512
    return (7 << 13) | (_bits(off, 5, 3) << 10) | (_bits(off, 8, 6) << 7) | (rs2 << 2) | 2


# ---------------------------------------------------------------------------
# Loading and running code
# ---------------------------------------------------------------------------

def insn_len(word: int) -> int:
    return 4 if (word & 3) == 3 else 2


def code_bytes(code: bytes | Iterable[int]) -> bytes:
    """Guest bytes of a list of encoded instructions (or bytes, unchanged)."""
    if isinstance(code, bytes | bytearray):
        return bytes(code)
    out = bytearray()
    for w in code:
        out += (w & 0xFFFFFFFF).to_bytes(insn_len(w), "little")
    return bytes(out)


ENGINES = ("fast", "reference")
_engine = "fast"


@contextlib.contextmanager
def using_engine(name: str):
    """Make new_vcpu (and so make_vcpu, run_code) use engine `name` inside the block."""
    global _engine
    assert name in ENGINES
    old, _engine = _engine, name
    try:
        yield name
    finally:
        _engine = old


def new_vcpu(memory: GuestMemory) -> VCpu:
    """A vCPU on memory, running on the current engine."""
    vcpu = VCpu(memory)
    vcpu.fast = _engine == "fast"
    return vcpu


def make_vcpu(code: bytes | Iterable[int] = (), regs: Mapping | None = None,
              mem: Mapping | None = None, pc: int = CODE, ram_size: int = RAM_SIZE) -> VCpu:
    """A vcpu (M-mode, bare) with code at pc, registers and memory set, not yet run.

    regs: {register number or ABI name: value}; mem: {address: bytes, or an int
    stored as 8 little-endian bytes}."""
    memory = GuestMemory(RAM_BASE, ram_size)
    memory.write(pc, code_bytes(code))
    for addr, data in (mem or {}).items():
        if isinstance(data, int):
            data = u64(data).to_bytes(8, "little")
        memory.write(addr, data)
    vcpu = new_vcpu(memory)
    vcpu.pc = pc
    for r, v in (regs or {}).items():
        vcpu.set_x(reg(r), u64(v))
    return vcpu


def describe_exit(vcpu: VCpu, reason: int) -> str:
    text = f"exit {EXIT_NAMES.get(reason, reason)} at pc={vcpu.exit_pc:#x}"
    if reason == EXCEPTION:
        text += f" cause={vcpu.exit_cause} tval={vcpu.exit_tval:#x}"
    elif reason == SYSTEM:
        text += f" insn={vcpu.exit_insn:#010x}"
    elif reason == MMIO:
        text += f" addr={vcpu.exit_addr:#x} size={vcpu.exit_size} write={vcpu.exit_is_write}"
    return text


def run(vcpu: VCpu, budget: int = 100_000) -> int:
    """Run at most `budget` instructions; return the exit reason."""
    vcpu.stop_at = vcpu.instret + budget
    return vcpu.run()


def run_to_ecall(vcpu: VCpu, budget: int = 100_000) -> VCpu:
    """Run until an `ecall` exits; anything else fails the test."""
    reason = run(vcpu, budget)
    if reason != SYSTEM or vcpu.exit_insn != ECALL:
        raise AssertionError(f"expected the final ecall, got {describe_exit(vcpu, reason)}")
    return vcpu


def run_code(code: bytes | Iterable[int], regs: Mapping | None = None,
             mem: Mapping | None = None, budget: int = 100_000, **kw) -> VCpu:
    """Load code (plus a terminating ecall) at CODE, run it to the ecall, return the vcpu."""
    vcpu = make_vcpu(code_bytes(code) + code_bytes([ECALL]), regs, mem, **kw)
    return run_to_ecall(vcpu, budget)


def run_until_exit(code: bytes | Iterable[int], regs: Mapping | None = None,
                   mem: Mapping | None = None, budget: int = 100_000,
                   **kw) -> tuple[VCpu, int]:
    """Load code (plus an ecall) and run it to its first exit: (vcpu, exit reason)."""
    vcpu = make_vcpu(code_bytes(code) + code_bytes([ECALL]), regs, mem, **kw)
    return vcpu, run(vcpu, budget)


def read_u64(vcpu: VCpu, addr: int) -> int:
    return int.from_bytes(vcpu.memory.read(addr, 8), "little")


# ---------------------------------------------------------------------------
# The real assembler (optional; required in CI)
# ---------------------------------------------------------------------------

AS = "riscv64-unknown-elf-as"
OBJCOPY = "riscv64-unknown-elf-objcopy"
MARCH = "rv64imac_zicsr_zifencei"


def require_tool(name: str) -> str:
    """Path of a tool; skip the test without it, but fail if $CI is set."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} is not installed (Debian: gcc-riscv64-unknown-elf)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def have_assembler() -> bool:
    return bool(shutil.which(AS) and shutil.which(OBJCOPY))


def assemble(src: str, rvc: bool = False, march: str = MARCH) -> bytes:
    """Assemble src with GNU as (no linker relaxation) and return the raw .text bytes.

    Unless rvc is true, `.option norvc` keeps every instruction 32-bit (and then
    the explicit `c.*` mnemonics are rejected); with rvc the assembler compresses
    whatever it can.  march: the -march of GNU as (extensions beyond RV64IMAC)."""
    as_, objcopy = require_tool(AS), require_tool(OBJCOPY)
    head = "" if rvc else ".option norvc\n"
    with tempfile.TemporaryDirectory() as tmp:
        src_path, obj, out = Path(tmp, "t.s"), Path(tmp, "t.o"), Path(tmp, "t.bin")
        src_path.write_text(head + src + "\n")
        res = subprocess.run([as_, f"-march={march}", "-mabi=lp64", "-mno-relax",
                              "-o", str(obj), str(src_path)], capture_output=True, text=True)
        if res.returncode:
            raise AssertionError(f"assembler failed:\n{res.stderr}")
        subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(obj), str(out)],
                       check=True, capture_output=True)
        return out.read_bytes()
