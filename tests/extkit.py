"""Test kit for the extensions beyond RV64IMAC: Zba, Zbb, Zbc, Zbs, Zicond, Zicbom/Zicboz/
Zicbop, Zihintpause and Sdtrig.

* Encoders returning ints, as in corekit: ``sh1add(A0, A1, A2)``, ``clz(A0, A1)``,
  ``rori(A0, A1, 7)``, ``cbo_zero(A0)``, ``prefetch_r(A0, 64)``.
* ``OPS``: every Zb*/Zicond instruction with its encoder, its operand form and an
  independent Python model written from the spec's pseudo-code (unprivileged spec,
  "B" chapter, Zicond) -- not from hvemu's C.
* ``guest(body)``: a bare-metal M-mode guest (GNU as + ld, required in CI) around a
  test body, with an M-mode and an S-mode trap handler that log every trap (cause,
  epc, tval, mstatus) and step over the trapping instruction; ``ecall`` from S or U
  returns to M after it.  ``run_guest`` boots it on an in-process VM.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corekit import MASK64, i_type, r_type, require_tool

M32 = 0xFFFF_FFFF


# ---------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------

def _r(op, f3, f7):
    def enc(rd, rs1, rs2):
        return r_type(op, f3, f7, rd, rs1, rs2)
    return enc


def _unary(op, f3, f12):
    def enc(rd, rs1):
        return i_type(op, f3, rd, rs1, 0) | (f12 << 20)
    return enc


def _imm(op, f3, hi, shift, width):
    """Immediate form: shamt (0..width-1) in the bits below the fixed field hi << shift."""
    def enc(rd, rs1, shamt):
        assert 0 <= shamt < width
        return i_type(op, f3, rd, rs1, 0) | (hi << shift) | (shamt << 20)
    return enc


# Zba
add_uw = _r(0x3B, 0, 0x04)
sh1add, sh2add, sh3add = (_r(0x33, f3, 0x10) for f3 in (2, 4, 6))
sh1add_uw, sh2add_uw, sh3add_uw = (_r(0x3B, f3, 0x10) for f3 in (2, 4, 6))
slli_uw = _imm(0x1B, 1, 0x02, 26, 64)


def zext_w(rd, rs1):
    return add_uw(rd, rs1, 0)


# Zbb
andn, orn, xnor = _r(0x33, 7, 0x20), _r(0x33, 6, 0x20), _r(0x33, 4, 0x20)
min_, minu, max_, maxu = (_r(0x33, f3, 0x05) for f3 in (4, 5, 6, 7))
rol, ror = _r(0x33, 1, 0x30), _r(0x33, 5, 0x30)
rolw, rorw = _r(0x3B, 1, 0x30), _r(0x3B, 5, 0x30)
rori = _imm(0x13, 5, 0x18, 26, 64)
roriw = _imm(0x1B, 5, 0x30, 25, 32)
clz, ctz, cpop = (_unary(0x13, 1, f12) for f12 in (0x600, 0x601, 0x602))
sext_b, sext_h = _unary(0x13, 1, 0x604), _unary(0x13, 1, 0x605)
clzw, ctzw, cpopw = (_unary(0x1B, 1, f12) for f12 in (0x600, 0x601, 0x602))
orc_b, rev8 = _unary(0x13, 5, 0x287), _unary(0x13, 5, 0x6B8)
zext_h = _unary(0x3B, 4, 0x080)
# Zbc
clmul, clmulr, clmulh = (_r(0x33, f3, 0x05) for f3 in (1, 2, 3))
# Zbs
bclr, bext = _r(0x33, 1, 0x24), _r(0x33, 5, 0x24)
binv, bset = _r(0x33, 1, 0x34), _r(0x33, 1, 0x14)
bclri, bexti = _imm(0x13, 1, 0x12, 26, 64), _imm(0x13, 5, 0x12, 26, 64)
binvi, bseti = _imm(0x13, 1, 0x1A, 26, 64), _imm(0x13, 1, 0x0A, 26, 64)
# Zicond
czero_eqz, czero_nez = _r(0x33, 5, 0x07), _r(0x33, 7, 0x07)


# Zicbom / Zicboz: MISC-MEM funct3 010, the operation in imm[11:0], rs1 the address
def _cbo(f12):
    def enc(rs1):
        return (f12 << 20) | (rs1 << 15) | (2 << 12) | 0x0F
    return enc


cbo_inval, cbo_clean, cbo_flush, cbo_zero = (_cbo(f12) for f12 in (0, 1, 2, 4))


# Zicbop: ORI with rd = x0, the kind in rs2's field, imm[4:0] = 0
def _prefetch(kind):
    def enc(rs1, offset=0):
        assert offset % 32 == 0 and -2048 <= offset < 2048
        return i_type(0x13, 6, 0, rs1, offset) | (kind << 20)
    return enc


prefetch_i, prefetch_r, prefetch_w = (_prefetch(k) for k in (0, 1, 3))

PAUSE = 0x0100_000F           # Zihintpause: FENCE with pred = W, succ = 0

for _name, _f in list(globals().items()):      # name the generated encoders, for test ids
    if callable(_f) and getattr(_f, "__name__", "") == "enc":
        _f.__name__ = _f.__qualname__ = _name.rstrip("_")


# ---------------------------------------------------------------------------
# The reference model (the spec's pseudo-code, in Python)
# ---------------------------------------------------------------------------

def sext(v: int, bits: int) -> int:
    """The low `bits` of v, sign-extended to an unsigned 64-bit value."""
    v &= (1 << bits) - 1
    return (v - (1 << bits) if v >> (bits - 1) else v) & MASK64


def signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _clmul_full(a: int, b: int) -> int:
    out = 0
    for i in range(64):
        if (b >> i) & 1:
            out ^= a << i
    return out


def _rotl(v: int, s: int, width: int) -> int:
    m = (1 << width) - 1
    s %= width
    return ((v << s) | (v >> (width - s))) & m


def _orc_b(a: int) -> int:
    return int.from_bytes(bytes(0xFF if byte else 0 for byte in a.to_bytes(8, "little")),
                          "little")


@dataclass(frozen=True)
class Op:
    name: str          # the assembler mnemonic
    encode: object     # the encoder
    form: str          # "rr": rd, rs1, rs2 | "r": rd, rs1 | "i6"/"i5": rd, rs1, shamt
    model: object      # f(a, b) for "rr", f(a) for "r", f(a, shamt) for immediates
    ext: str


OPS = [
    # Zba
    Op("add.uw", add_uw, "rr", lambda a, b: (b + (a & M32)) & MASK64, "zba"),
    Op("sh1add", sh1add, "rr", lambda a, b: (b + (a << 1)) & MASK64, "zba"),
    Op("sh2add", sh2add, "rr", lambda a, b: (b + (a << 2)) & MASK64, "zba"),
    Op("sh3add", sh3add, "rr", lambda a, b: (b + (a << 3)) & MASK64, "zba"),
    Op("sh1add.uw", sh1add_uw, "rr", lambda a, b: (b + ((a & M32) << 1)) & MASK64, "zba"),
    Op("sh2add.uw", sh2add_uw, "rr", lambda a, b: (b + ((a & M32) << 2)) & MASK64, "zba"),
    Op("sh3add.uw", sh3add_uw, "rr", lambda a, b: (b + ((a & M32) << 3)) & MASK64, "zba"),
    Op("slli.uw", slli_uw, "i6", lambda a, s: ((a & M32) << s) & MASK64, "zba"),
    # Zbb
    Op("andn", andn, "rr", lambda a, b: a & ~b & MASK64, "zbb"),
    Op("orn", orn, "rr", lambda a, b: (a | ~b) & MASK64, "zbb"),
    Op("xnor", xnor, "rr", lambda a, b: ~(a ^ b) & MASK64, "zbb"),
    Op("min", min_, "rr", lambda a, b: a if signed(a) < signed(b) else b, "zbb"),
    Op("minu", minu, "rr", lambda a, b: min(a, b), "zbb"),
    Op("max", max_, "rr", lambda a, b: a if signed(a) > signed(b) else b, "zbb"),
    Op("maxu", maxu, "rr", lambda a, b: max(a, b), "zbb"),
    Op("rol", rol, "rr", lambda a, b: _rotl(a, b & 63, 64), "zbb"),
    Op("ror", ror, "rr", lambda a, b: _rotl(a, 64 - (b & 63), 64), "zbb"),
    Op("rolw", rolw, "rr", lambda a, b: sext(_rotl(a & M32, b & 31, 32), 32), "zbb"),
    Op("rorw", rorw, "rr", lambda a, b: sext(_rotl(a & M32, 32 - (b & 31), 32), 32), "zbb"),
    Op("rori", rori, "i6", lambda a, s: _rotl(a, 64 - s, 64), "zbb"),
    Op("roriw", roriw, "i5", lambda a, s: sext(_rotl(a & M32, 32 - s, 32), 32), "zbb"),
    Op("clz", clz, "r", lambda a: 64 - a.bit_length(), "zbb"),
    Op("ctz", ctz, "r", lambda a: (a & -a).bit_length() - 1 if a else 64, "zbb"),
    Op("cpop", cpop, "r", lambda a: bin(a).count("1"), "zbb"),
    Op("clzw", clzw, "r", lambda a: 32 - (a & M32).bit_length(), "zbb"),
    Op("ctzw", ctzw, "r", lambda a: ((a & M32) & -(a & M32)).bit_length() - 1 if a & M32
       else 32, "zbb"),
    Op("cpopw", cpopw, "r", lambda a: bin(a & M32).count("1"), "zbb"),
    Op("sext.b", sext_b, "r", lambda a: sext(a, 8), "zbb"),
    Op("sext.h", sext_h, "r", lambda a: sext(a, 16), "zbb"),
    Op("zext.h", zext_h, "r", lambda a: a & 0xFFFF, "zbb"),
    Op("orc.b", orc_b, "r", _orc_b, "zbb"),
    Op("rev8", rev8, "r", lambda a: int.from_bytes(a.to_bytes(8, "little"), "big"), "zbb"),
    # Zbc
    Op("clmul", clmul, "rr", lambda a, b: _clmul_full(a, b) & MASK64, "zbc"),
    Op("clmulh", clmulh, "rr", lambda a, b: _clmul_full(a, b) >> 64, "zbc"),
    Op("clmulr", clmulr, "rr", lambda a, b: (_clmul_full(a, b) >> 63) & MASK64, "zbc"),
    # Zbs
    Op("bset", bset, "rr", lambda a, b: a | (1 << (b & 63)), "zbs"),
    Op("bclr", bclr, "rr", lambda a, b: a & ~(1 << (b & 63)) & MASK64, "zbs"),
    Op("binv", binv, "rr", lambda a, b: a ^ (1 << (b & 63)), "zbs"),
    Op("bext", bext, "rr", lambda a, b: (a >> (b & 63)) & 1, "zbs"),
    Op("bseti", bseti, "i6", lambda a, s: a | (1 << s), "zbs"),
    Op("bclri", bclri, "i6", lambda a, s: a & ~(1 << s) & MASK64, "zbs"),
    Op("binvi", binvi, "i6", lambda a, s: a ^ (1 << s), "zbs"),
    Op("bexti", bexti, "i6", lambda a, s: (a >> s) & 1, "zbs"),
    # Zicond
    Op("czero.eqz", czero_eqz, "rr", lambda a, b: 0 if b == 0 else a, "zicond"),
    Op("czero.nez", czero_nez, "rr", lambda a, b: a if b == 0 else 0, "zicond"),
]
OP_BY_NAME = {op.name: op for op in OPS}


def model(op: Op, a: int, b: int = 0, imm: int = 0) -> int:
    """What op computes from rs1 = a, rs2 = b (or the immediate imm)."""
    if op.form == "rr":
        return op.model(a, b)
    if op.form == "r":
        return op.model(a)
    return op.model(a, imm)


def encode(op: Op, rd: int, rs1: int, rs2: int = 0, imm: int = 0) -> int:
    if op.form == "rr":
        return op.encode(rd, rs1, rs2)
    if op.form == "r":
        return op.encode(rd, rs1)
    return op.encode(rd, rs1, imm)


def asm_text(op: Op, rd: str, rs1: str, rs2: str = "", imm: int = 0) -> str:
    """The assembler's spelling of the same instruction."""
    if op.form == "rr":
        return f"{op.name} {rd}, {rs1}, {rs2}"
    if op.form == "r":
        return f"{op.name} {rd}, {rs1}"
    return f"{op.name} {rd}, {rs1}, {imm}"


# ---------------------------------------------------------------------------
# Sv39 page tables for core-level tests
# ---------------------------------------------------------------------------

PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D = 1, 2, 4, 8, 16, 32, 64, 128
SV39 = 8


class Sv39:
    """Sv39 page tables in a GuestMemory, from a bump pool of page-table frames."""

    def __init__(self, memory, pool: int):
        self.memory, self.next = memory, pool
        self.root = self._alloc()

    def _alloc(self) -> int:
        pa, self.next = self.next, self.next + 4096
        self.memory.write(pa, bytes(4096))
        return pa

    def _entry(self, table: int, index: int) -> int:
        return int.from_bytes(self.memory.read(table + 8 * index, 8), "little")

    def leaf(self, va: int) -> int:
        """The guest-physical address of va's 4 KiB leaf PTE (tables made on the way)."""
        table = self.root
        for level in (2, 1):
            index = (va >> (12 + 9 * level)) & 511
            entry = self._entry(table, index)
            if not entry & PTE_V:
                entry = ((self._alloc() >> 12) << 10) | PTE_V
                self.memory.write(table + 8 * index, entry.to_bytes(8, "little"))
            table = (entry >> 10) << 12
        return table + 8 * ((va >> 12) & 511)

    def map(self, va: int, pa: int, flags: int) -> None:
        self.memory.write(self.leaf(va), (((pa >> 12) << 10) | PTE_V | flags).to_bytes(8, "little"))

    def pte(self, va: int) -> int:
        return int.from_bytes(self.memory.read(self.leaf(va), 8), "little")


# ---------------------------------------------------------------------------
# Bare-metal guests (GNU as + ld)
# ---------------------------------------------------------------------------

# binutils 2.40 has no Zicond: czero.* are emitted with .insn
MARCH = "rv64imac_zicsr_zifencei_zba_zbb_zbc_zbs_zicbom_zicboz_zicbop_zihintpause"
CZERO_MACROS = """
.macro czero.eqz rd, rs1, rs2
.insn r 0x33, 5, 7, \\rd, \\rs1, \\rs2
.endm
.macro czero.nez rd, rs1, rs2
.insn r 0x33, 7, 7, \\rd, \\rs1, \\rs2
.endm
"""

GUEST_BASE = 0x8000_0000
LOG_ENTRY = 40               # bytes: cause, epc, tval, status, handler (0x4d 'M' / 0x53 'S')
FINISHER = 0x10_0000

# The guest's frame: M and S trap handlers around a body.  t5/t6 and the `log` area
# belong to the handlers.  A trap logs (cause, epc, tval, mstatus, 'M' or 'S') and
# returns past the 4-byte trapping instruction; an ecall from S or U (cause 8, 9)
# instead returns to M after the ecall, so `ecall` ends a lower-privilege stretch.
# The body ends by falling through to `done`, which powers off (exit 0).
FRAME = CZERO_MACROS + """
.option norvc
.section .text.start, "ax"
.globl _start
_start:
    la t0, m_trap
    csrw mtvec, t0
    la t0, s_trap
    csrw stvec, t0
    la sp, stack_top
    j body

.balign 4
m_trap:
    csrr t6, mcause
    addi t6, t6, -8
    beqz t6, m_to_m
    addi t6, t6, -1
    beqz t6, m_to_m
    la t5, log
    ld t6, 0(t5)
    addi t6, t6, 1
    sd t6, 0(t5)
    li t5, {entry}
    mul t6, t6, t5
    la t5, log
    add t5, t5, t6
    csrr t6, mcause
    sd t6, -32(t5)
    csrr t6, mepc
    sd t6, -24(t5)
    csrr t6, mtval
    sd t6, -16(t5)
    csrr t6, mstatus
    sd t6, -8(t5)
    li t6, 0x4d
    sd t6, 0(t5)
    csrr t6, mepc
    addi t6, t6, 4
    csrw mepc, t6
    mret
m_to_m:                          # ecall from S or U: back to M after it
    csrr t6, mepc
    addi t6, t6, 4
    csrw mepc, t6
    li t6, 0x1800
    csrs mstatus, t6
    mret

.balign 4
s_trap:
    la t5, log
    ld t6, 0(t5)
    addi t6, t6, 1
    sd t6, 0(t5)
    li t5, {entry}
    mul t6, t6, t5
    la t5, log
    add t5, t5, t6
    csrr t6, scause
    sd t6, -32(t5)
    csrr t6, sepc
    sd t6, -24(t5)
    csrr t6, stval
    sd t6, -16(t5)
    csrr t6, sstatus
    sd t6, -8(t5)
    li t6, 0x53
    sd t6, 0(t5)
    csrr t6, sepc
    addi t6, t6, 4
    csrw sepc, t6
    sret

# enter_s / enter_u: continue at the next instruction in S / U (call with jal ra)
enter_s:
    li t6, 0x1800
    csrc mstatus, t6
    li t6, 0x0800
    csrs mstatus, t6
    csrw mepc, ra
    mret
enter_u:
    li t6, 0x1800
    csrc mstatus, t6
    csrw mepc, ra
    mret

done:
    li t5, {finisher}
    li t6, 0x5555
    sw t6, 0(t5)
1:  j 1b

body:
{body}
    j done

.section .data
.balign 64
log: .zero {log_size}
{data}
.balign 16
stack: .zero 1024
stack_top:
"""


@dataclass
class Trap:
    cause: int
    epc: int
    tval: int
    status: int
    mode: str          # "M" or "S": the handler that took it


def build_guest(body: str, data: str, tmp: Path, log_entries: int = 16) -> Path:
    """Assemble and link FRAME around body at 0x8000_0000 into tmp/g.elf."""
    as_ = require_tool("riscv64-unknown-elf-as")
    ld = require_tool("riscv64-unknown-elf-ld")
    src = FRAME.format(body=body, data=data, entry=LOG_ENTRY, finisher=FINISHER,
                       log_size=8 + LOG_ENTRY * log_entries)
    (tmp / "g.s").write_text(src)
    for cmd in ([as_, f"-march={MARCH}", "-mabi=lp64", "-mno-relax", "-o", "g.o", "g.s"],
                [ld, "-N", "-Ttext=0x80000000", "-e", "_start", "--no-warn-rwx-segments",
                 "-o", "g.elf", "g.o"]):
        res = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if res.returncode:
            raise AssertionError(f"{cmd[0]} failed:\n{res.stderr}\n{src}")
    return tmp / "g.elf"


def elf_symbols(path: Path) -> dict[str, int]:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        return {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab")
                .iter_symbols() if s.name}


@dataclass
class GuestRun:
    vm: object
    reason: str
    traps: list[Trap]
    symbols: dict[str, int]

    def symbol(self, name: str) -> int:
        return self.symbols[name]

    def read(self, name_or_addr, size: int = 8) -> int:
        addr = self.symbol(name_or_addr) if isinstance(name_or_addr, str) else name_or_addr
        return int.from_bytes(self.vm.memory.read(addr, size), "little")

    def x(self, reg: int) -> int:
        return self.vm.vcpu.get_x(reg)


def run_guest(body: str, data: str = "", reference: bool = False,
              max_instructions: int = 200_000) -> GuestRun:
    """Build and boot a guest; it must power off.  Returns the VM and the trap log."""
    from hvemu.console import Console
    from hvemu.vm import VM, VMConfig
    with tempfile.TemporaryDirectory(prefix="hvemu-guest-") as tmp:
        elf = build_guest(body, data, Path(tmp))
        vm = VM(VMConfig(image=str(elf), max_instructions=max_instructions,
                         reference=reference), Console())
        symbols = elf_symbols(elf)
    outcome = vm.run()
    assert outcome.reason == "poweroff", f"{outcome.reason}: {outcome.detail}"
    log = symbols["log"]
    n = int.from_bytes(vm.memory.read(log, 8), "little")
    traps = []
    for i in range(n):
        raw = vm.memory.read(log + 8 + LOG_ENTRY * i, LOG_ENTRY)
        words = [int.from_bytes(raw[j:j + 8], "little") for j in range(0, LOG_ENTRY, 8)]
        traps.append(Trap(*words[:4], mode=chr(words[4])))
    return GuestRun(vm, outcome.reason, traps, symbols)
