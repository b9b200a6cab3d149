"""Differential tests of the F and D extensions: every computational F/D instruction, in
every rounding mode, on hvemu's two engines and on Unicorn (QEMU's softfloat).

Each example runs one instruction from the same f/x registers, fflags = 0 and frm on
Unicorn and on both engines (the fast path and the reference interpreter), and compares
the destination and the accrued fflags.  Operands are biased to the hard values
(fpkit.HARD_D/HARD_S/HARD_X: signed zeros, subnormals, the normal limits, infinities,
quiet and signalling NaNs with payloads, the integer-conversion limits and their
neighbours), to exact ties of round-to-nearest, and otherwise random bits and floats.
Every rounding instruction is tested in each static mode and the dynamic one (frm).

hvemu also has to keep mstatus.FS right, which Unicorn cannot tell: starting from
Initial or Clean, FS must become Dirty exactly when the instruction writes an f
register or raises a flag.

Unicorn 2.1 is based on QEMU 5.0, which predates parts of the F/D 2.2 spec; where it
departs from the spec (UNICORN_DEVIATIONS) the test expects the spec's answer, which
test_fp.py also checks by hand and firmware/fpu.c checks against QEMU 7.2:

* single-precision results are not NaN-boxed by QEMU 5.0 (upper half zero): only the
  low 32 bits are compared, and hvemu's must be boxed;
* single-precision operands that are not NaN-boxed are used as they are by QEMU 5.0
  (the spec reads them as the canonical NaN): single operands here are always boxed;
* FMIN/FMAX with a signalling NaN return the canonical NaN in QEMU 5.0 (IEEE
  754-2008 minNum; F 2.2 returns the other operand when it is a number);
* FMADD and kin with inf * 0 and a quiet-NaN addend raise no NV in QEMU 5.0 (the spec
  requires NV).

Invalid rounding modes (illegal instructions) are test_fp.py's.  Without Unicorn these
tests are skipped, or fail when the environment variable CI is set.
HVEMU_DIFF_EXAMPLES=n raises the number of examples per test for a long run.
"""
from __future__ import annotations

import math
import os

import pytest
from corekit import (
    CODE,
    ECALL,
    ENGINES,
    RAM_BASE,
    RAM_SIZE,
    SYSTEM,
    code_bytes,
    make_vcpu,
    run,
    using_engine,
)
from fpkit import (
    BOX,
    CNAN_D,
    CNAN_S,
    DYN,
    HARD_D,
    HARD_S,
    HARD_X,
    NV,
    OPS,
    RDN,
    RMM,
    RNE,
    RTZ,
    RUP,
    d2b,
    s2b,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    import unicorn
    from unicorn import riscv_const as uc_const
except ImportError:                                    # pragma: no cover - depends on the host
    if os.environ.get("CI"):
        raise
    pytest.skip("unicorn is not installed (pip install unicorn)", allow_module_level=True)

EXAMPLES = int(os.environ.get("HVEMU_DIFF_EXAMPLES", "0"))
PER_MODE, PER_OP = 40, 150         # examples per (rounding op, mode) and per other op

RS1, RS2, RS3, FRD = 1, 2, 4, 3    # f registers of the operands and the result
XS, XD = 5, 6                      # x registers: integer source, integer destination
MODES = {"rne": (RNE, 0), "rtz": (RTZ, 0), "rdn": (RDN, 0), "rup": (RUP, 0), "rmm": (RMM, 0)}
MODES |= {f"dyn-frm{frm}": (DYN, frm) for frm in range(5)}


def examples(n: int) -> settings:
    return settings(max_examples=EXAMPLES or n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------
# Running one instruction on Unicorn and on hvemu
# ---------------------------------------------------------------------------

class UnicornHart:
    def __init__(self):
        self.uc = unicorn.Uc(unicorn.UC_ARCH_RISCV, unicorn.UC_MODE_RISCV64)
        self.uc.mem_map(RAM_BASE, RAM_SIZE)

    def run(self, insn: int, fregs: dict[int, int], xregs: dict[int, int], frm: int):
        uc = self.uc
        uc.mem_write(CODE, code_bytes([insn, ECALL]))
        uc.reg_write(uc_const.UC_RISCV_REG_MSTATUS, 3 << 13)        # FS Dirty: FPU on
        for r, v in fregs.items():
            uc.reg_write(uc_const.UC_RISCV_REG_F0 + r, v)
        for r, v in xregs.items():
            uc.reg_write(uc_const.UC_RISCV_REG_X0 + r, v)
        uc.reg_write(uc_const.UC_RISCV_REG_F0 + FRD, 0)
        uc.reg_write(uc_const.UC_RISCV_REG_X0 + XD, 0)
        uc.reg_write(uc_const.UC_RISCV_REG_FFLAGS, 0)
        uc.reg_write(uc_const.UC_RISCV_REG_FRM, frm)
        uc.emu_start(CODE, CODE + 4)
        return (uc.reg_read(uc_const.UC_RISCV_REG_F0 + FRD),
                uc.reg_read(uc_const.UC_RISCV_REG_X0 + XD),
                uc.reg_read(uc_const.UC_RISCV_REG_FFLAGS))


_harts: dict[str, object] = {}


def unicorn_hart() -> UnicornHart:
    if "unicorn" not in _harts:
        _harts["unicorn"] = UnicornHart()
    return _harts["unicorn"]


def hvemu_hart(engine: str):
    """A vCPU on `engine`, made once and reused (each run rewrites its code)."""
    if engine not in _harts:
        with using_engine(engine):
            _harts[engine] = make_vcpu()
    return _harts[engine]


def run_hvemu(engine: str, insn: int, fregs, xregs, frm: int, fs: int):
    vcpu = hvemu_hart(engine)
    vcpu.memory.write(CODE, code_bytes([insn, ECALL]))     # drops the decoded slots
    vcpu.pc = CODE
    for r, v in fregs.items():
        vcpu.set_f(r, v)
    for r, v in xregs.items():
        vcpu.set_x(r, v)
    vcpu.set_f(FRD, 0)
    vcpu.set_x(XD, 0)
    vcpu.fflags = 0
    vcpu.frm = frm
    vcpu.fs = fs
    reason = run(vcpu, 10)
    assert reason == SYSTEM and vcpu.exit_insn == ECALL and vcpu.exit_pc == CODE + 4, (
        f"{engine}: the instruction did not complete (exit {reason}, cause "
        f"{vcpu.exit_cause if reason != SYSTEM else '-'})")
    return vcpu.get_f(FRD), vcpu.get_x(XD), vcpu.fflags, vcpu.fs


# ---------------------------------------------------------------------------
# What the spec says where Unicorn (QEMU 5.0) does not
# ---------------------------------------------------------------------------

def is_nan(bits: int, kind: str) -> bool:
    if kind == "s":
        return (bits & 0x7FFF_FFFF) > 0x7F80_0000
    return (bits & ~(1 << 63)) > 0x7FF0_0000_0000_0000


def is_snan(bits: int, kind: str) -> bool:
    quiet = 1 << 22 if kind == "s" else 1 << 51
    return is_nan(bits, kind) and not bits & quiet


def is_inf_or_zero(bits: int, kind: str, want_inf: bool) -> bool:
    mag = bits & (0x7FFF_FFFF if kind == "s" else (1 << 63) - 1)
    return mag == (0x7F80_0000 if kind == "s" else 0x7FF0_0000_0000_0000) if want_inf \
        else mag == 0


UNICORN_DEVIATIONS = {
    "unboxed single results": "QEMU 5.0 leaves the upper half of a single's f register 0",
    "fmin/fmax signalling NaN": "QEMU 5.0 implements minNum/maxNum (IEEE 754-2008), not "
                                "F 2.2's minimumNumber/maximumNumber",
    "fma inf*0+qNaN": "QEMU 5.0 raises no NV for inf * 0 when the addend is a quiet NaN",
}


def spec_fixups(op, operands: list[int], value: int, flags: int) -> tuple[int, int]:
    """Unicorn's (value, flags) corrected where QEMU 5.0 departs from the spec."""
    kind = op.srcs[0]
    base = op.name.split(".")[0]
    if base in ("fmin", "fmax") and any(is_snan(v, kind) for v in operands):
        a, b = operands
        if is_nan(a, kind) and is_nan(b, kind):
            value = CNAN_S if kind == "s" else CNAN_D
        else:
            value = b if is_nan(a, kind) else a
    if base in ("fmadd", "fmsub", "fnmsub", "fnmadd"):
        a, b, c = operands
        inf_zero = ((is_inf_or_zero(a, kind, True) and is_inf_or_zero(b, kind, False)) or
                    (is_inf_or_zero(a, kind, False) and is_inf_or_zero(b, kind, True)))
        if inf_zero and is_nan(c, kind):
            flags |= NV
    return value, flags


# ---------------------------------------------------------------------------
# Operands
# ---------------------------------------------------------------------------

def ulp_neighbours(pool: list[int], width: int) -> st.SearchStrategy[int]:
    """A hard value moved by a few units in the last place (same sign)."""
    top = (1 << width) - 1
    return st.tuples(st.sampled_from(pool), st.integers(-3, 3)).map(
        lambda t: max(0, min(top, t[0] + t[1])))


def halves(kind: str) -> st.SearchStrategy[int]:
    """Values with a fraction of exactly 1/2 (ties when rounded to an integer)."""
    if kind == "d":
        return st.integers(-(1 << 51), 1 << 51).map(lambda t: d2b(t + 0.5))
    return st.integers(-(1 << 22), 1 << 22).map(lambda t: s2b(t + 0.5))


DOUBLE = st.one_of(
    st.sampled_from(HARD_D),
    ulp_neighbours(HARD_D, 64),
    st.integers(0, (1 << 64) - 1),
    st.floats(width=64, allow_nan=False).map(d2b),
    st.floats(-1e6, 1e6).map(d2b),
    halves("d"),
)
SINGLE_BITS = st.one_of(
    st.sampled_from(HARD_S),
    ulp_neighbours(HARD_S, 32),
    st.integers(0, (1 << 32) - 1),
    st.floats(width=32, allow_nan=False).map(s2b),
    st.floats(-1e4, 1e4, width=32).map(s2b),
    halves("s"),
)
SINGLE = SINGLE_BITS.map(lambda b: BOX | b)            # operands are NaN-boxed
INTEGER = st.one_of(
    st.sampled_from(HARD_X),
    st.integers(0, (1 << 64) - 1),
    st.integers(-(1 << 33), 1 << 33).map(lambda v: v & (1 << 64) - 1),
)
SOURCE = {"d": DOUBLE, "s": SINGLE, "x": INTEGER}


@st.composite
def near_ties(draw, kind: str):
    """(a, b) with b = +-half an ulp of a: a + b is exactly halfway between two values."""
    if kind == "d":
        x = draw(st.floats(1e-300, 1e300)) * draw(st.sampled_from([1, -1]))
        m, e = math.frexp(x)
        half_ulp = math.ldexp(1.0, e - 54) * draw(st.sampled_from([1, -1, 3, -3]))
        return [d2b(x), d2b(half_ulp)]
    x = draw(st.floats(2.0 ** -100, 2.0 ** 100, width=32)) * draw(st.sampled_from([1, -1]))
    m, e = math.frexp(x)
    half_ulp = math.ldexp(1.0, e - 25) * draw(st.sampled_from([1, -1, 3, -3]))
    return [BOX | s2b(x), BOX | s2b(half_ulp)]


@st.composite
def product_ties(draw, kind: str):
    """(a, b) whose exact product lies halfway between two values: a = m * 2^i with m odd
    and 3m one bit wider than the format's significand, b = +-3 * 2^j."""
    p = 53 if kind == "d" else 24
    m = draw(st.integers(((1 << p) + 2) // 3, ((1 << (p + 1)) - 1) // 3)) | 1
    i, j = draw(st.integers(-60, 60)), draw(st.integers(-60, 60))
    a, b = math.ldexp(m, i - p), math.ldexp(draw(st.sampled_from([3, -3])), j)
    return [d2b(a), d2b(b)] if kind == "d" else [BOX | s2b(a), BOX | s2b(b)]


def narrowing_ties(dst: str) -> st.SearchStrategy[int]:
    """Doubles (from FCVT.S.D) or integers (from FCVT.S.W and kin) halfway between two
    neighbours of the destination format: an odd significand one bit too wide."""
    p = 24 if dst == "s" else 53
    odd = st.integers(1 << p, (1 << (p + 1)) - 1).map(lambda m: m | 1)
    return st.tuples(odd, st.integers(-140, 100), st.booleans()).map(
        lambda t: d2b(math.copysign(math.ldexp(t[0], t[1]), -1.0 if t[2] else 1.0)))


def integer_ties(dst: str) -> st.SearchStrategy[int]:
    p = 24 if dst == "s" else 53
    odd = st.integers(1 << p, (1 << (p + 1)) - 1).map(lambda m: m | 1)
    return st.tuples(odd, st.integers(0, 62 - p), st.booleans()).map(
        lambda t: ((-(t[0] << t[1])) if t[2] else t[0] << t[1]) & (1 << 64) - 1)


def operands(op) -> st.SearchStrategy[list[int]]:
    plain = st.tuples(*(SOURCE[k] for k in op.srcs)).map(list)
    if op.name == "fcvt.s.d":
        return st.one_of(plain, narrowing_ties("s").map(lambda v: [v]))
    if op.srcs == "x" and op.dst != "x":
        return st.one_of(plain, integer_ties(op.dst).map(lambda v: [v]))
    kind = op.srcs[0]
    one = d2b(1.0) if kind == "d" else BOX | s2b(1.0)
    if op.srcs in ("dd", "ss") and op.rounds:
        ties = product_ties(kind) if op.name.startswith("fmul") else near_ties(kind)
        return st.one_of(plain, plain, ties)
    if len(op.srcs) == 3:                      # FMAs: a tie, a product cancelling the addend
        return st.one_of(
            plain, plain,
            near_ties(kind).map(lambda ac: [ac[0], one, ac[1]]),
            st.tuples(product_ties(kind), SOURCE[kind]).map(lambda t: [*t[0], t[1]]),
            st.tuples(SOURCE[kind], SOURCE[kind]).map(
                lambda ab: [ab[0], ab[1], ab[0] ^ (1 << (63 if kind == "d" else 31))]))
    return plain


# ---------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------

def check(op, rm: int, frm: int, values: list[int], fs: int) -> None:
    fregs, xregs = {}, {}
    regs = [RS1, RS2, RS3]
    for i, (kind, v) in enumerate(zip(op.srcs, values, strict=True)):
        if kind == "x":
            xregs[XS] = v
        else:
            fregs[regs[i]] = v
    rs = [XS if op.srcs[0] == "x" else RS1, RS2, RS3]
    insn = op.word(XD if op.dst == "x" else FRD, rs[0], rs[1], rs[2], rm)
    u_f, u_x, u_flags = unicorn_hart().run(insn, fregs, xregs, frm)
    want = u_x if op.dst == "x" else u_f
    if op.dst == "s":
        want &= 0xFFFF_FFFF                    # QEMU 5.0 does not box (see above)
    srcs = [v if k != "s" else v & 0xFFFF_FFFF for k, v in zip(op.srcs, values, strict=True)]
    want, want_flags = spec_fixups(op, srcs, want, u_flags)
    case = (f"{op.name} rm={rm} frm={frm} operands="
            + ", ".join(f"{v:#x}" for v in values) + f" insn={insn:#010x}")
    for engine in ENGINES:
        h_f, h_x, h_flags, h_fs = run_hvemu(engine, insn, fregs, xregs, frm, fs)
        got = h_x if op.dst == "x" else h_f
        if op.dst == "s":
            assert got >> 32 == 0xFFFF_FFFF, f"{engine}: single result not NaN-boxed: {case}"
            got &= 0xFFFF_FFFF
        assert got == want, f"{engine}: result {got:#x}, Unicorn/spec {want:#x}: {case}"
        assert h_flags == want_flags, (
            f"{engine}: fflags {h_flags:#x}, Unicorn/spec {want_flags:#x}: {case}")
        dirty = op.dst != "x" or h_flags != 0
        assert h_fs == (3 if dirty else fs), f"{engine}: mstatus.FS {h_fs} from {fs}: {case}"


ROUNDING = sorted(name for name, op in OPS.items() if op.rounds)
EXACT = sorted(name for name, op in OPS.items() if not op.rounds)
INITIAL_FS = st.sampled_from([1, 2, 3])                # Initial, Clean, Dirty


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", ROUNDING)
def test_rounding_instruction_agrees_with_unicorn_in_every_mode(name, mode):
    op = OPS[name]
    rm, frm = MODES[mode]

    @examples(PER_MODE)
    @given(operands(op), INITIAL_FS)
    def agree(values, fs):
        check(op, rm, frm, values, fs)
    agree()


@pytest.mark.parametrize("name", EXACT)
def test_non_rounding_instruction_agrees_with_unicorn(name):
    op = OPS[name]

    @examples(PER_OP)
    @given(operands(op), INITIAL_FS)
    def agree(values, fs):
        check(op, RNE, 0, values, fs)
    agree()


def test_every_f_and_d_computational_instruction_is_tested():
    assert len(OPS) == 58 and set(ROUNDING) | set(EXACT) == set(OPS)
    assert len(MODES) == 10
