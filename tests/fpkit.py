"""Encoders and values for testing the F and D extensions (companion of corekit.py).

* `OPS`: every F/D computational instruction as an `FpOp` -- its encoder, what it
  reads (`srcs`: "s" a NaN-boxed single, "d" a double, "x" an integer register) and
  writes (`dst`), and whether it has a rounding mode.  ``OPS["fadd.d"].word(rd, rs1,
  rs2, rm=0)`` is the instruction word.
* Loads, stores and moves: ``fld(rd, rs1, imm)``, ``fsw(rs2, rs1, imm)``, the
  compressed ``c_fld``/``c_fsd``/``c_fldsp``/``c_fsdsp``, and CSR instructions.
* Values as bits: ``d2b(1.5)``, ``s2b(1.5)`` (a single's 32 bits), ``box(bits32)``
  (NaN-boxed into 64), and the hard values the differential tests draw from.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from corekit import i_type, s_type

# fflags bits
NX, UF, OF, DZ, NV = 1, 2, 4, 8, 16
RNE, RTZ, RDN, RUP, RMM, DYN = 0, 1, 2, 3, 4, 7
BOX = 0xFFFF_FFFF_0000_0000
CNAN_S, CNAN_D = 0x7FC0_0000, 0x7FF8_0000_0000_0000
FFLAGS, FRM, FCSR, MSTATUS, SSTATUS, MISA = 0x001, 0x002, 0x003, 0x300, 0x100, 0x301
FS_SHIFT = 13


def d2b(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def b2d(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b & (1 << 64) - 1))[0]


def s2b(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def box(bits32: int) -> int:
    return BOX | (bits32 & 0xFFFF_FFFF)


@dataclass(frozen=True)
class FpOp:
    name: str
    opcode: int          # 0x53 (OP-FP) or one of the fused multiply-add opcodes
    funct7: int          # for the FMAs: the fmt field (0 S, 1 D)
    rs2_field: int | None  # a fixed rs2 field (FSQRT, FCVT, FMV, FCLASS), else None
    funct3: int | None   # a fixed funct3 (no rounding mode), else None: rm
    srcs: str            # one letter per source: s (single), d (double), x (integer)
    dst: str             # s, d or x

    @property
    def rounds(self) -> bool:
        return self.funct3 is None

    def word(self, rd: int, rs1: int, rs2: int = 0, rs3: int = 0, rm: int = RNE) -> int:
        f3 = rm if self.funct3 is None else self.funct3
        if self.opcode != 0x53:
            return ((rs3 << 27) | (self.funct7 << 25) | (rs2 << 20) | (rs1 << 15) |
                    (f3 << 12) | (rd << 7) | self.opcode)
        if self.rs2_field is not None:
            rs2 = self.rs2_field
        return (self.funct7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x53


def _ops() -> dict[str, FpOp]:
    ops = {}

    def add(name, opcode, f7, rs2, f3, srcs, dst):
        ops[name] = FpOp(name, opcode, f7, rs2, f3, srcs, dst)

    for fmt, t in ((0, "s"), (1, "d")):
        for base, name in ((0x00, "fadd"), (0x04, "fsub"), (0x08, "fmul"), (0x0C, "fdiv")):
            add(f"{name}.{t}", 0x53, base | fmt, None, None, t + t, t)
        add(f"fsqrt.{t}", 0x53, 0x2C | fmt, 0, None, t, t)
        for opcode, name in ((0x43, "fmadd"), (0x47, "fmsub"), (0x4B, "fnmsub"),
                             (0x4F, "fnmadd")):
            add(f"{name}.{t}", opcode, fmt, None, None, t * 3, t)
        for f3, name in ((0, "fsgnj"), (1, "fsgnjn"), (2, "fsgnjx")):
            add(f"{name}.{t}", 0x53, 0x10 | fmt, None, f3, t + t, t)
        add(f"fmin.{t}", 0x53, 0x14 | fmt, None, 0, t + t, t)
        add(f"fmax.{t}", 0x53, 0x14 | fmt, None, 1, t + t, t)
        for f3, name in ((0, "fle"), (1, "flt"), (2, "feq")):
            add(f"{name}.{t}", 0x53, 0x50 | fmt, None, f3, t + t, "x")
        add(f"fclass.{t}", 0x53, 0x70 | fmt, 0, 1, t, "x")
        for rs2, it in enumerate(("w", "wu", "l", "lu")):
            add(f"fcvt.{it}.{t}", 0x53, 0x60 | fmt, rs2, None, t, "x")
            add(f"fcvt.{t}.{it}", 0x53, 0x68 | fmt, rs2, None, "x", t)
    add("fcvt.s.d", 0x53, 0x20, 1, None, "d", "s")
    add("fcvt.d.s", 0x53, 0x21, 0, None, "s", "d")
    add("fmv.x.w", 0x53, 0x70, 0, 0, "s", "x")
    add("fmv.x.d", 0x53, 0x71, 0, 0, "d", "x")
    add("fmv.w.x", 0x53, 0x78, 0, 0, "x", "s")
    add("fmv.d.x", 0x53, 0x79, 0, 0, "x", "d")
    return ops


OPS = _ops()


# ---- loads, stores, CSRs ----

def flw(rd, rs1, imm):
    return i_type(0x07, 2, rd, rs1, imm)


def fld(rd, rs1, imm):
    return i_type(0x07, 3, rd, rs1, imm)


def fsw(rs2, rs1, imm):
    return s_type(0x27, 2, rs1, rs2, imm)


def fsd(rs2, rs1, imm):
    return s_type(0x27, 3, rs1, rs2, imm)


def _b(v, hi, lo):
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def c_fld(rd, rs1, off):
    """c.fld rd', off(rs1'): rd and rs1 in 8..15, off a multiple of 8 below 256."""
    assert 8 <= rd <= 15 and 8 <= rs1 <= 15 and off % 8 == 0 and 0 <= off < 256
    return (1 << 13) | (_b(off, 5, 3) << 10) | ((rs1 - 8) << 7) | (_b(off, 7, 6) << 5) | \
        ((rd - 8) << 2)


def c_fsd(rs2, rs1, off):
    return c_fld(rs2, rs1, off) | (4 << 13)


def c_fldsp(rd, off):
    assert off % 8 == 0 and 0 <= off < 512
    return (1 << 13) | (_b(off, 5, 5) << 12) | (rd << 7) | (_b(off, 4, 3) << 5) | \
        (_b(off, 8, 6) << 2) | 2


def c_fsdsp(rs2, off):
    assert off % 8 == 0 and 0 <= off < 512
    return (5 << 13) | (_b(off, 5, 3) << 10) | (_b(off, 8, 6) << 7) | (rs2 << 2) | 2


def csr(f3: int, rd: int, number: int, rs1: int) -> int:
    """A Zicsr instruction: f3 1 CSRRW, 2 CSRRS, 3 CSRRC (+4: immediate forms)."""
    return (number << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73


# ---- hard values ----

def _around(bits: list[int]) -> list[int]:
    return sorted({b + k for b in bits for k in (-1, 0, 1)})


# doubles: zeros, subnormals, the normal limits, infinities, NaNs with payloads,
# one and its neighbours, halfway and conversion-limit values
HARD_D = sorted({*(d2b(v) for v in (0.0, 1.0, 1.5, 2.0, 0.5, 2.5, 3.5, 0.1, 1 / 3,
                                     2.0 ** 31, 2.0 ** 31 - 0.5, 2.0 ** 32, 2.0 ** 32 - 0.5,
                                     2.0 ** 63, 2.0 ** 64, 2.0 ** 53, 2.0 ** 53 + 2,
                                     2.0 ** 52 + 0.5, 1 + 2.0 ** -52, 2.0 ** -53,
                                     1 + 2.0 ** -24, 1 + 3 * 2.0 ** -24, 2.0 ** 24 + 1,
                                     2.0 ** -149 * 1.5, 2.0 ** -126 * (1 - 2.0 ** -24),
                                     2.0 ** -1074, 2.0 ** -1022, 2.0 ** 1023,
                                     1.7976931348623157e308, float("inf"))),
                 0x000F_FFFF_FFFF_FFFF,                      # largest subnormal
                 0x7FF8_0000_0000_0000, 0x7FF8_0000_0000_0001, 0x7FFF_FFFF_FFFF_FFFF,  # qNaN
                 0x7FF0_0000_0000_0001, 0x7FF4_0000_0000_0000, 0x7FF7_FFFF_FFFF_FFFF,  # sNaN
                 *_around([d2b(2.0 ** 31), d2b(2.0 ** 32), d2b(2.0 ** 63), d2b(2.0 ** 64),
                           d2b(1.0), d2b(2.0 ** -1022), d2b(0.5)])})
HARD_D = sorted({b | s for b in HARD_D for s in (0, 1 << 63)})

HARD_S = sorted({*(s2b(v) for v in (0.0, 1.0, 1.5, 2.0, 0.5, 2.5, 0.1, 1 / 3,
                                     2.0 ** 31, 2.0 ** 32, 2.0 ** 63, 2.0 ** 64, 2.0 ** 24,
                                     2.0 ** 23 + 0.5, 1 + 2.0 ** -23, 2.0 ** -24,
                                     2.0 ** -149, 2.0 ** -126, 2.0 ** 127,
                                     3.4028234663852886e38, float("inf"))),
                 0x007F_FFFF,
                 0x7FC0_0000, 0x7FC0_0001, 0x7FFF_FFFF,                 # qNaN
                 0x7F80_0001, 0x7FA0_0000, 0x7FBF_FFFF,                 # sNaN
                 *_around([s2b(2.0 ** 31), s2b(2.0 ** 32), s2b(2.0 ** 63), s2b(2.0 ** 64),
                           s2b(1.0), s2b(2.0 ** -126), s2b(0.5), s2b(2.0 ** 24)])})
HARD_S = sorted({b | s for b in HARD_S for s in (0, 1 << 31)})

HARD_X = sorted({v & (1 << 64) - 1 for v in (
    0, 1, -1, 2, 3, 7, (1 << 24) + 1, (1 << 24) - 1, (1 << 53) + 1, (1 << 53) - 1,
    (1 << 31) - 1, 1 << 31, -(1 << 31), -(1 << 31) - 1, (1 << 32) - 1, 1 << 32,
    (1 << 63) - 1, 1 << 63, -(1 << 63) + 1, (1 << 64) - 1, (1 << 62) + 1,
    0x8000_0000_0000_0401, 0xFFFF_FFFF_0000_0001, 0x1234_5678_9ABC_DEF1)})
