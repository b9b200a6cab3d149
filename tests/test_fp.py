"""The F and D extensions as the spec states them, checked by hand (both engines).

Expected values come from the unprivileged spec ("F" and "D" chapters, version 2.2)
and the privileged spec (mstatus.FS, misa): NaN boxing and the canonical NaN,
FMIN/FMAX's 2.2 rules, quiet and signalling compares, FCLASS, the FCVT saturation
table, the rounding modes and the accrued flags with tininess after rounding, the
illegal rounding modes, mstatus.FS (Off makes every FP instruction and fcsr access
illegal; FP state changes set Dirty and SD), loads and stores of every form including
MMIO, and fcsr through the hypervisor's CSR handler.  test_fp_differential.py checks
the same instructions against Unicorn on random and hard operands.
"""
from __future__ import annotations

import pytest
from conftest import RV
from corekit import (
    A0,
    CODE,
    DATA,
    ECALL,
    ENGINES,
    EXCEPTION,
    MMIO,
    MMIO_ADDR,
    RAM_BASE,
    RAM_SIZE,
    SP,
    code_bytes,
    make_vcpu,
    run,
    run_to_ecall,
    using_engine,
)
from fpkit import (
    CNAN_D,
    CNAN_S,
    DYN,
    DZ,
    FCSR,
    FFLAGS,
    FRM,
    MISA,
    MSTATUS,
    NV,
    NX,
    OF,
    OPS,
    RDN,
    RMM,
    RNE,
    RTZ,
    RUP,
    SSTATUS,
    UF,
    box,
    c_fld,
    c_fldsp,
    c_fsd,
    c_fsdsp,
    csr,
    d2b,
    fld,
    flw,
    fsd,
    fsw,
    s2b,
)

ILLEGAL = 2
QNAN_PAYLOAD_D, SNAN_D = 0x7FF8_0000_0000_0123, 0x7FF4_0000_0000_0001
QNAN_PAYLOAD_S, SNAN_S = 0x7FC0_0123, 0x7FA0_0001
INF_D, INF_S = 0x7FF0_0000_0000_0000, 0x7F80_0000
MIN_NORMAL_D, MIN_NORMAL_S = 0x0010_0000_0000_0000, 0x0080_0000
NEG = 1 << 63


@pytest.fixture(params=ENGINES)
def engine(request):
    with using_engine(request.param):
        yield request.param


def vcpu_with(words, f=None, x=None, fs=3, frm=0, mem=None):
    vcpu = make_vcpu(code_bytes(list(words)) + code_bytes([ECALL]), x, mem)
    for r, v in (f or {}).items():
        vcpu.set_f(r, v)
    vcpu.fs = fs
    vcpu.frm = frm
    return vcpu


def fp(words, f=None, x=None, fs=3, frm=0, mem=None):
    """Run words (then an ecall) with f/x registers set; the vCPU after the ecall."""
    return run_to_ecall(vcpu_with(words, f, x, fs, frm, mem))


def op1(name, a, b=0, c=0, rm=RNE, frm=0, fs=3):
    """One instruction on f1, f2, f3 (x5 for an integer source), result in f10 / x10:
    (result, fflags)."""
    op = OPS[name]
    rs1 = 5 if op.srcs[0] == "x" else 1
    vcpu = fp([op.word(10, rs1, 2, 3, rm)], f={1: a, 2: b, 3: c}, x={5: a}, frm=frm, fs=fs)
    return (vcpu.get_x(10) if op.dst == "x" else vcpu.get_f(10)), vcpu.fflags


def illegal(words, **kw):
    """Run words expecting an illegal-instruction exception at the first one."""
    vcpu = vcpu_with(words, **kw)
    before = (vcpu.f, vcpu.x, vcpu.fflags, vcpu.fs)
    reason = run(vcpu)
    assert reason == EXCEPTION and vcpu.exit_cause == ILLEGAL
    assert vcpu.exit_pc == CODE and vcpu.exit_tval == list(words)[0] & 0xFFFF_FFFF
    assert (vcpu.f, vcpu.x, vcpu.fflags, vcpu.fs) == before, "an illegal instruction changed state"
    return vcpu


# ====================================================================== NaN boxing

def test_single_results_are_nan_boxed(engine):
    assert op1("fadd.s", box(s2b(1.0)), box(s2b(2.0))) == (box(s2b(3.0)), 0)
    assert op1("fcvt.s.d", d2b(0.5)) == (box(s2b(0.5)), 0)
    assert op1("fmv.w.x", 0x1234_5678_DEAD_BEEF)[0] == box(0xDEAD_BEEF)
    assert op1("fcvt.s.w", 7)[0] == box(s2b(7.0))


@pytest.mark.parametrize("unboxed", [s2b(1.0), 0xFFFF_FFFE_3F80_0000, d2b(1.0)])
def test_a_single_operand_that_is_not_nan_boxed_reads_as_the_canonical_nan(engine, unboxed):
    assert op1("fadd.s", unboxed, box(s2b(2.0))) == (box(CNAN_S), 0)   # quiet: no NV
    assert op1("fclass.s", unboxed) == (1 << 9, 0)                       # a quiet NaN
    assert op1("fcvt.d.s", unboxed) == (CNAN_D, 0)
    assert op1("feq.s", unboxed, unboxed) == (0, 0)
    assert op1("fcvt.w.s", unboxed) == (0x7FFF_FFFF, NV)
    # sign injection keeps the canonical NaN's bits and takes rs2's sign
    assert op1("fsgnjn.s", unboxed, box(s2b(1.0))) == (box(CNAN_S | 1 << 31), 0)


def test_transfers_move_bits_unchanged_whatever_the_boxing(engine):
    assert op1("fmv.x.w", 0x1234_5678_8765_4321) == (0xFFFF_FFFF_8765_4321, 0)  # sign-extended
    assert op1("fmv.x.w", box(0x7FA0_0001)) == (0x7FA0_0001, 0)       # an sNaN, no NV
    assert op1("fmv.x.d", SNAN_D) == (SNAN_D, 0)
    assert op1("fmv.d.x", SNAN_D) == (SNAN_D, 0)
    vcpu = fp([fsw(1, 10, 0), fsw(2, 10, 4), flw(3, 10, 8)], f={1: 0x1234_5678_7FA0_0001,
              2: box(QNAN_PAYLOAD_S)}, x={10: DATA}, mem={DATA + 8: 0xDEAD_BEEF_7F80_0001})
    assert vcpu.memory.read(DATA, 8) == (0x7FA0_0001 | QNAN_PAYLOAD_S << 32).to_bytes(8, "little")
    assert vcpu.get_f(3) == box(0x7F80_0001)                           # flw boxes
    assert vcpu.fflags == 0


# ====================================================================== canonical NaN

def test_nan_results_are_the_canonical_nan_and_payloads_do_not_propagate(engine):
    assert op1("fadd.d", QNAN_PAYLOAD_D, d2b(1.0)) == (CNAN_D, 0)
    assert op1("fmul.d", SNAN_D | NEG, d2b(1.0)) == (CNAN_D, NV)
    assert op1("fsqrt.d", d2b(-1.0)) == (CNAN_D, NV)
    assert op1("fsub.d", INF_D, INF_D) == (CNAN_D, NV)
    assert op1("fdiv.s", box(0), box(0)) == (box(CNAN_S), NV)
    assert op1("fcvt.s.d", QNAN_PAYLOAD_D) == (box(CNAN_S), 0)
    assert op1("fcvt.d.s", box(SNAN_S)) == (CNAN_D, NV)
    assert op1("fmadd.s", box(QNAN_PAYLOAD_S), box(s2b(1.0)), box(s2b(1.0))) == (box(CNAN_S), 0)


def test_sign_injection_keeps_nan_payloads(engine):
    assert op1("fsgnj.d", SNAN_D, NEG) == (SNAN_D | NEG, 0)
    assert op1("fsgnjx.d", QNAN_PAYLOAD_D | NEG, NEG) == (QNAN_PAYLOAD_D, 0)
    assert op1("fsgnjn.s", box(SNAN_S), box(0)) == (box(SNAN_S | 1 << 31), 0)


def test_fma_of_infinity_times_zero_is_invalid_even_with_a_quiet_nan_addend(engine):
    for name in ("fmadd.d", "fmsub.d", "fnmsub.d", "fnmadd.d"):
        assert op1(name, INF_D, 0, QNAN_PAYLOAD_D) == (CNAN_D, NV), name
        assert op1(name, 0, INF_D | NEG, CNAN_D) == (CNAN_D, NV), name
    assert op1("fmadd.s", box(INF_S), box(0), box(CNAN_S)) == (box(CNAN_S), NV)


def test_the_negated_fmas_negate_the_product_and_the_addend(engine):
    a, b, c = d2b(2.0), d2b(3.0), d2b(1.0)
    assert op1("fmadd.d", a, b, c)[0] == d2b(7.0)
    assert op1("fmsub.d", a, b, c)[0] == d2b(5.0)
    assert op1("fnmsub.d", a, b, c)[0] == d2b(-5.0)
    assert op1("fnmadd.d", a, b, c)[0] == d2b(-7.0)
    # -(0 * 1) - 0 is -0; -(0 * 1) + 0 is +0 in every mode but RDN
    assert op1("fnmadd.d", 0, d2b(1.0), 0)[0] == NEG
    assert op1("fnmsub.d", 0, d2b(1.0), 0)[0] == 0
    assert op1("fnmsub.d", 0, d2b(1.0), 0, rm=RDN)[0] == NEG


# ====================================================================== FMIN / FMAX

ONE_D, TWO_D = d2b(1.0), d2b(2.0)


@pytest.mark.parametrize("a, b, fmin, fmax, flags", [
    (ONE_D, TWO_D, ONE_D, TWO_D, 0),
    (TWO_D, ONE_D, ONE_D, TWO_D, 0),
    (NEG, 0, NEG, 0, 0),                        # -0 < +0, in either order
    (0, NEG, NEG, 0, 0),
    (QNAN_PAYLOAD_D, ONE_D, ONE_D, ONE_D, 0),   # a NaN loses to a number
    (ONE_D, CNAN_D, ONE_D, ONE_D, 0),
    (SNAN_D, ONE_D, ONE_D, ONE_D, NV),          # even a signalling one (2.2), with NV
    (ONE_D, SNAN_D | NEG, ONE_D, ONE_D, NV),
    (QNAN_PAYLOAD_D, SNAN_D, CNAN_D, CNAN_D, NV),   # two NaNs: the canonical NaN
    (QNAN_PAYLOAD_D, QNAN_PAYLOAD_D | NEG, CNAN_D, CNAN_D, 0),
    (INF_D | NEG, INF_D, INF_D | NEG, INF_D, 0),
])
def test_fmin_fmax_follow_the_2_2_rules(engine, a, b, fmin, fmax, flags):
    assert op1("fmin.d", a, b) == (fmin, flags)
    assert op1("fmax.d", a, b) == (fmax, flags)
    single = {ONE_D: s2b(1.0), TWO_D: s2b(2.0), NEG: 1 << 31, 0: 0, QNAN_PAYLOAD_D:
              QNAN_PAYLOAD_S, QNAN_PAYLOAD_D | NEG: QNAN_PAYLOAD_S | 1 << 31, CNAN_D: CNAN_S,
              SNAN_D: SNAN_S, SNAN_D | NEG: SNAN_S | 1 << 31, INF_D: INF_S,
              INF_D | NEG: INF_S | 1 << 31}
    assert op1("fmin.s", box(single[a]), box(single[b])) == (box(single[fmin]), flags)
    assert op1("fmax.s", box(single[a]), box(single[b])) == (box(single[fmax]), flags)


# ====================================================================== compares, FCLASS

@pytest.mark.parametrize("a, b, eq, lt, le, flags_eq, flags_ordered", [
    (ONE_D, TWO_D, 0, 1, 1, 0, 0),
    (TWO_D, TWO_D, 1, 0, 1, 0, 0),
    (NEG, 0, 1, 0, 1, 0, 0),                    # -0 == +0
    (QNAN_PAYLOAD_D, ONE_D, 0, 0, 0, 0, NV),    # FEQ is quiet, FLT/FLE signal
    (ONE_D, SNAN_D, 0, 0, 0, NV, NV),
    (CNAN_D, CNAN_D, 0, 0, 0, 0, NV),
])
def test_feq_is_quiet_and_flt_fle_are_signalling(engine, a, b, eq, lt, le, flags_eq,
                                                 flags_ordered):
    assert op1("feq.d", a, b) == (eq, flags_eq)
    assert op1("flt.d", a, b) == (lt, flags_ordered)
    assert op1("fle.d", a, b) == (le, flags_ordered)


@pytest.mark.parametrize("bit, d, s", [
    (0, INF_D | NEG, INF_S | 1 << 31),
    (1, d2b(-1.5), s2b(-1.5)),
    (2, NEG | 1, 1 << 31 | 1),                  # negative subnormal
    (3, NEG, 1 << 31),
    (4, 0, 0),
    (5, 0x000F_FFFF_FFFF_FFFF, 0x007F_FFFF),    # positive subnormal
    (6, MIN_NORMAL_D, MIN_NORMAL_S),
    (7, INF_D, INF_S),
    (8, SNAN_D, SNAN_S),
    (9, QNAN_PAYLOAD_D | NEG, QNAN_PAYLOAD_S | 1 << 31),
])
def test_fclass_sets_exactly_one_bit(engine, bit, d, s):
    assert op1("fclass.d", d) == (1 << bit, 0)
    assert op1("fclass.s", box(s)) == (1 << bit, 0)


# ====================================================================== FCVT

M64 = (1 << 64) - 1
W_MAX, W_MIN, L_MAX, L_MIN = 0x7FFF_FFFF, 0xFFFF_FFFF_8000_0000, (1 << 63) - 1, 1 << 63


@pytest.mark.parametrize("value, w, wu, l_, lu", [
    # the spec's table: NaN and +inf saturate high, -inf low, all with NV
    (CNAN_D, (W_MAX, NV), (M64, NV), (L_MAX, NV), (M64, NV)),
    (INF_D, (W_MAX, NV), (M64, NV), (L_MAX, NV), (M64, NV)),
    (INF_D | NEG, (W_MIN, NV), (0, NV), (L_MIN, NV), (0, NV)),
    # out of range: clipped to the nearest value, NV and no NX; in range and exact: nothing
    (d2b(2.0 ** 31), (W_MAX, NV), (0xFFFF_FFFF_8000_0000, 0), (1 << 31, 0), (1 << 31, 0)),
    (d2b(-1.0), (M64, 0), (0, NV), (M64, 0), (0, NV)),
    (d2b(2.0 ** 64), (W_MAX, NV), (M64, NV), (L_MAX, NV), (M64, NV)),
    (d2b(-(2.0 ** 63)), (W_MIN, NV), (0, NV), (L_MIN, 0), (0, NV)),
    (d2b(2.0 ** 63), (W_MAX, NV), (M64, NV), (L_MAX, NV), (1 << 63, 0)),
    # inexact in range: NX; -0.5 truncates to 0, unsigned too, with NX
    (d2b(-0.5), (0, NX), (0, NX), (0, NX), (0, NX)),
    (d2b(2.0 ** 31 - 0.5), (W_MAX, NX), (W_MAX, NX), (W_MAX, NX), (W_MAX, NX)),
    (d2b(-2.75), (M64 - 1, NX), (0, NV), (M64 - 1, NX), (0, NV)),
])
def test_fcvt_to_integer_saturates_as_the_spec_table_says(engine, value, w, wu, l_, lu):
    assert op1("fcvt.w.d", value, rm=RTZ) == w
    assert op1("fcvt.wu.d", value, rm=RTZ) == wu
    assert op1("fcvt.l.d", value, rm=RTZ) == l_
    assert op1("fcvt.lu.d", value, rm=RTZ) == lu


def test_fcvt_range_is_checked_after_rounding(engine):
    v = d2b(2.0 ** 31 - 0.5)                    # 2^31 - 1/2
    assert op1("fcvt.w.d", v, rm=RTZ) == (W_MAX, NX)
    assert op1("fcvt.w.d", v, rm=RDN) == (W_MAX, NX)
    assert op1("fcvt.w.d", v, rm=RNE) == (W_MAX, NV)     # rounds to 2^31: out of range
    assert op1("fcvt.w.d", v, rm=RUP) == (W_MAX, NV)
    assert op1("fcvt.w.d", d2b(-(2.0 ** 31) - 0.5), rm=RTZ) == (W_MIN, NX)
    assert op1("fcvt.w.d", d2b(-(2.0 ** 31) - 0.5), rm=RMM) == (W_MIN, NV)
    assert op1("fcvt.wu.d", d2b(-0.5), rm=RDN) == (0, NV)   # rounds to -1
    assert op1("fcvt.lu.s", box(s2b(-0.75)), rm=RUP) == (0, NX)


def test_fcvt_wu_results_are_sign_extended(engine):
    assert op1("fcvt.wu.d", d2b(4294967295.0)) == (M64, 0)
    assert op1("fcvt.wu.s", box(s2b(2.0 ** 31))) == (0xFFFF_FFFF_8000_0000, 0)


def test_fcvt_from_integers_reads_the_right_width_and_rounds(engine):
    assert op1("fcvt.d.w", 0xFFFF_FFFF_FFFF_FFFF) == (d2b(-1.0), 0)
    assert op1("fcvt.d.wu", 0x1234_5678_FFFF_FFFF) == (d2b(4294967295.0), 0)
    assert op1("fcvt.d.l", (1 << 53) + 1) == (d2b(2.0 ** 53), NX)   # a tie: to even
    assert op1("fcvt.d.l", (1 << 53) + 1, rm=RMM) == (d2b(2.0 ** 53 + 2), NX)
    assert op1("fcvt.s.lu", M64) == (box(s2b(2.0 ** 64)), NX)
    assert op1("fcvt.s.lu", M64, rm=RTZ) == (box(0x5F7F_FFFF), NX)


# ====================================================================== rounding and flags

HALF_ULP = d2b(2.0 ** -53)                     # 1 + HALF_ULP is a tie


@pytest.mark.parametrize("rm, pos, neg", [
    (RNE, 1.0, -1.0),                          # ties to even
    (RTZ, 1.0, -1.0),
    (RDN, 1.0, -(1 + 2.0 ** -52)),
    (RUP, 1 + 2.0 ** -52, -1.0),
    (RMM, 1 + 2.0 ** -52, -(1 + 2.0 ** -52)),  # ties away from zero
])
def test_each_static_and_the_dynamic_rounding_mode(engine, rm, pos, neg):
    assert op1("fadd.d", d2b(1.0), HALF_ULP, rm=rm) == (d2b(pos), NX)
    assert op1("fadd.d", d2b(-1.0), HALF_ULP | NEG, rm=rm) == (d2b(neg), NX)
    assert op1("fadd.d", d2b(1.0), HALF_ULP, rm=DYN, frm=rm) == (d2b(pos), NX)
    assert op1("fsub.d", d2b(-1.0), HALF_ULP, rm=DYN, frm=rm) == (d2b(neg), NX)


def test_exact_zero_sums_are_negative_only_rounding_down(engine):
    for rm in (RNE, RTZ, RUP, RMM):
        assert op1("fsub.d", ONE_D, ONE_D, rm=rm) == (0, 0)
    assert op1("fsub.d", ONE_D, ONE_D, rm=RDN) == (NEG, 0)


MAX_D = 0x7FEF_FFFF_FFFF_FFFF


def test_overflow_gives_infinity_or_the_largest_finite_value_by_rounding_mode(engine):
    for rm, pos, neg in ((RNE, INF_D, INF_D | NEG), (RTZ, MAX_D, MAX_D | NEG),
                         (RDN, MAX_D, INF_D | NEG), (RUP, INF_D, MAX_D | NEG),
                         (RMM, INF_D, INF_D | NEG)):
        assert op1("fmul.d", MAX_D, TWO_D, rm=rm) == (pos, OF | NX)
        assert op1("fmul.d", MAX_D | NEG, TWO_D, rm=rm) == (neg, OF | NX)


def test_divide_by_zero_and_invalid(engine):
    assert op1("fdiv.d", ONE_D, NEG) == (INF_D | NEG, DZ)
    assert op1("fdiv.d", INF_D, 0) == (INF_D, 0)            # inf / 0 is exact
    assert op1("fdiv.d", 0, 0) == (CNAN_D, NV)
    assert op1("fsqrt.d", NEG) == (NEG, 0)                  # sqrt(-0) = -0


def test_underflow_is_signalled_with_tininess_after_rounding(engine):
    # (1 - 2^-52) * 2^-1022 (1 + 2^-52) = 2^-1022 (1 - 2^-104): tiny before rounding, but
    # rounded with an unbounded exponent it is 2^-1022, the smallest normal: no UF
    a, b = d2b(1 - 2.0 ** -52), MIN_NORMAL_D | 1
    assert op1("fmul.d", a, b, rm=RNE) == (MIN_NORMAL_D, NX)
    # rounding towards zero it stays below 2^-1022: tiny and inexact, UF
    assert op1("fmul.d", a, b, rm=RTZ) == (MIN_NORMAL_D - 1, UF | NX)
    # the same for singles
    a, b = box(s2b(1 - 2.0 ** -23)), box(MIN_NORMAL_S | 1)
    assert op1("fmul.s", a, b) == (box(MIN_NORMAL_S), NX)
    # an exact subnormal result raises nothing
    assert op1("fmul.d", MIN_NORMAL_D, d2b(0.5)) == (MIN_NORMAL_D >> 1, 0)
    assert op1("fmul.d", 1, d2b(0.5)) == (0, UF | NX)       # 2^-1075 rounds to 0


def test_flags_accrue_and_are_never_cleared_by_instructions(engine):
    op = OPS
    vcpu = fp([op["fdiv.d"].word(10, 1, 2), op["fadd.d"].word(11, 1, 1),
               op["fmul.d"].word(12, 3, 3)], f={1: ONE_D, 2: 0, 3: d2b(0.1)})
    assert vcpu.fflags == DZ | NX


# ====================================================================== illegal encodings

ROUNDING_OPS = sorted(n for n, o in OPS.items() if o.rounds)


@pytest.mark.parametrize("name", ROUNDING_OPS)
def test_reserved_static_rounding_modes_are_illegal(engine, name):
    for rm in (5, 6):
        illegal([OPS[name].word(10, 1, 2, 3, rm)])


@pytest.mark.parametrize("name", ROUNDING_OPS)
def test_the_dynamic_mode_with_an_invalid_frm_is_illegal(engine, name):
    for frm in (5, 6, 7):
        illegal([OPS[name].word(10, 1, 2, 3, DYN)], frm=frm)


def test_an_invalid_frm_does_not_matter_to_instructions_that_do_not_round(engine):
    vcpu = fp([OPS["fsgnj.d"].word(10, 1, 2), OPS["fmin.d"].word(11, 1, 2),
               OPS["feq.d"].word(12, 1, 2)], f={1: ONE_D, 2: TWO_D}, frm=7)
    assert (vcpu.get_f(10), vcpu.get_f(11), vcpu.get_x(12)) == (ONE_D, ONE_D, 0)


RESERVED = {
    "fsqrt.d rs2=1": OPS["fsqrt.d"].word(10, 1) | 1 << 20,
    "fadd.h": OPS["fadd.s"].word(10, 1, 2) | 2 << 25,
    "fadd.q": OPS["fadd.s"].word(10, 1, 2) | 3 << 25,
    "fmadd.h": OPS["fmadd.s"].word(10, 1, 2, 3) | 2 << 25,
    "fnmadd.q": OPS["fnmadd.s"].word(10, 1, 2, 3) | 3 << 25,
    "fsgnj.d funct3=3": OPS["fsgnj.d"].word(10, 1, 2) | 3 << 12,
    "fmin.d funct3=2": OPS["fmin.d"].word(10, 1, 2) | 2 << 12,
    "fle.d funct3=3": OPS["fle.d"].word(10, 1, 2) | 3 << 12,
    "fcvt.w.d rs2=4": OPS["fcvt.w.d"].word(10, 1) | 4 << 20,
    "fcvt.d.w rs2=5": OPS["fcvt.d.w"].word(10, 1) | 5 << 20,
    "fcvt.s.s": OPS["fcvt.s.d"].word(10, 1) & ~(1 << 20),
    "fcvt.d.q": OPS["fcvt.d.s"].word(10, 1) | 3 << 20,
    "fclass.d rs2=1": OPS["fclass.d"].word(10, 1) | 1 << 20,
    "fmv.x.d funct3=2": OPS["fmv.x.d"].word(10, 1) | 2 << 12,
    "fmv.d.x funct3=1": OPS["fmv.d.x"].word(10, 1) | 1 << 12,
    "flq": fld(1, 10, 0) ^ (3 << 12) | (4 << 12),
    "flh": fld(1, 10, 0) ^ (3 << 12) | (1 << 12),
    "fsq": fsd(1, 10, 0) ^ (3 << 12) | (4 << 12),
}


@pytest.mark.parametrize("word", list(RESERVED.values()), ids=list(RESERVED))
def test_reserved_fp_encodings_are_illegal(engine, word):
    illegal([word])


# ====================================================================== mstatus.FS

def fs_off_instructions():
    words = [op.word(10, 1, 2, 3) for op in OPS.values()]
    return words + [flw(1, SP, 0), fld(1, SP, 0), fsw(1, SP, 0), fsd(1, SP, 0),
                    c_fld(8, 9, 8), c_fsd(8, 9, 8), c_fldsp(1, 8), c_fsdsp(1, 8)]


@pytest.mark.parametrize("word", fs_off_instructions(), ids=lambda w: f"{w:#010x}")
def test_with_fs_off_every_fp_instruction_is_illegal(engine, word):
    illegal([word], fs=0, x={SP: DATA, 9: DATA}, f={1: ONE_D})


def test_fs_off_keeps_the_fp_state_and_turning_it_on_again_finds_it(engine):
    vcpu = vcpu_with([OPS["fadd.d"].word(3, 1, 2)], f={1: ONE_D, 2: TWO_D}, fs=0)
    assert run(vcpu) == EXCEPTION and vcpu.get_f(1) == ONE_D
    vcpu.fs = 1
    run_to_ecall(vcpu)
    assert vcpu.get_f(3) == d2b(3.0) and vcpu.fs == 3


@pytest.mark.parametrize("start", [1, 2])
@pytest.mark.parametrize("words, dirty", [
    ([OPS["fadd.d"].word(3, 1, 2)], True),              # writes an f register
    ([fld(3, 10, 0)], True),
    ([c_fldsp(3, 0)], True),
    ([OPS["fmv.d.x"].word(3, 10, 0)], True),
    ([fsd(1, 10, 0)], False),                           # stores do not change FP state
    ([c_fsdsp(1, 0)], False),
    ([OPS["fmv.x.d"].word(11, 1, 0)], False),           # to x, no flags
    ([OPS["feq.d"].word(11, 1, 2)], False),
    ([OPS["flt.d"].word(11, 1, 4)], True),              # to x, but raises NV
    ([OPS["fcvt.w.d"].word(11, 4, 0)], True),
    ([OPS["fclass.d"].word(11, 4, 0)], False),
])
def test_fp_state_changes_set_fs_dirty(engine, start, words, dirty):
    vcpu = fp(words, f={1: ONE_D, 2: TWO_D, 4: CNAN_D}, x={10: DATA, SP: DATA}, fs=start)
    assert vcpu.fs == (3 if dirty else start)


# ====================================================================== loads and stores

def test_loads_and_stores_of_every_form(engine):
    words = [fld(1, 10, 8), flw(2, 10, 16), fsd(1, 10, 24), fsw(2, 10, 32),
             c_fld(12, 10, 40), c_fsd(12, 10, 48), c_fldsp(0, 56), c_fsdsp(0, 64)]
    mem = {DATA + 8: d2b(1.25), DATA + 16: 0xAAAA_AAAA_3FC0_0000, DATA + 40: SNAN_D,
           DATA + 56: QNAN_PAYLOAD_D}
    vcpu = fp(words, x={10: DATA, SP: DATA}, mem=mem)
    read = lambda off: int.from_bytes(vcpu.memory.read(DATA + off, 8), "little")  # noqa: E731
    assert vcpu.get_f(1) == d2b(1.25) and read(24) == d2b(1.25)
    assert vcpu.get_f(2) == box(0x3FC0_0000) and read(32) == 0x3FC0_0000
    assert vcpu.get_f(12) == SNAN_D and read(48) == SNAN_D       # bits unchanged
    assert vcpu.get_f(0) == QNAN_PAYLOAD_D and read(64) == QNAN_PAYLOAD_D   # f0 is a register
    assert vcpu.fflags == 0


@pytest.mark.parametrize("offset", [0x0FFC, 0x0FFD, 0x0FFF, 0x1001])
def test_misaligned_fp_loads_and_stores_work_also_across_pages(engine, offset):
    addr = DATA + offset
    vcpu = fp([fld(1, 10, 0), fsd(1, 10, 16), flw(2, 10, 4), fsw(2, 10, 24)],
              x={10: addr}, mem={addr: bytes(range(1, 9))})
    assert vcpu.get_f(1) == int.from_bytes(bytes(range(1, 9)), "little")
    assert vcpu.memory.read(addr + 16, 8) == bytes(range(1, 9))
    assert vcpu.get_f(2) == box(0x0807_0605)
    assert vcpu.memory.read(addr + 24, 4) == bytes(range(5, 9))


@pytest.mark.parametrize("word, size, value", [
    (fld(7, 10, 0x10), 8, 0x1122_3344_5566_7788),
    (flw(7, 10, 0x10), 4, box(0x5566_7788)),
    (c_fld(15, 10, 0x10), 8, 0x1122_3344_5566_7788),
])
def test_an_fp_load_from_mmio_exits_and_completes_into_the_f_register(engine, word, size, value):
    vcpu = vcpu_with([word], x={10: MMIO_ADDR}, fs=2)
    assert run(vcpu) == MMIO
    assert (vcpu.exit_addr, vcpu.exit_size, vcpu.exit_is_write) == (MMIO_ADDR + 0x10, size, False)
    assert vcpu.exit_is_fp and vcpu.exit_rd == (15 if word & 3 != 3 else 7)
    vcpu.complete_load(0x1122_3344_5566_7788 & ((1 << 8 * size) - 1))
    assert vcpu.get_f(vcpu.exit_rd) == value and vcpu.fs == 3
    run_to_ecall(vcpu)
    assert vcpu.get_x(7) == 0 and vcpu.get_x(15) == 0           # not the x registers


def test_an_integer_load_from_mmio_is_not_an_fp_load(engine):
    vcpu = vcpu_with([fld(1, 11, 0), 0x0005_3503], x={10: MMIO_ADDR, 11: DATA})  # ld a0, 0(a0)
    assert run(vcpu) == MMIO and not vcpu.exit_is_fp and vcpu.exit_rd == A0


@pytest.mark.parametrize("word, size, value", [
    (fsd(7, 10, 8), 8, 0xFEDC_BA98_7654_3210),
    (fsw(7, 10, 8), 4, 0x7654_3210),
    (c_fsd(15, 10, 8), 8, 0xFEDC_BA98_7654_3210),
])
def test_an_fp_store_to_mmio_exits_with_the_f_register_bits(engine, word, size, value):
    vcpu = vcpu_with([word], x={10: MMIO_ADDR}, f={7: 0xFEDC_BA98_7654_3210,
                                                   15: 0xFEDC_BA98_7654_3210})
    assert run(vcpu) == MMIO
    assert (vcpu.exit_addr, vcpu.exit_size, vcpu.exit_is_write) == (MMIO_ADDR + 8, size, True)
    assert vcpu.exit_value == value


def test_an_fp_load_straddling_the_end_of_ram_is_an_access_fault(engine):
    end = RAM_BASE + RAM_SIZE
    vcpu = vcpu_with([fld(1, 10, 0)], x={10: end - 4})
    assert run(vcpu) == EXCEPTION
    assert (vcpu.exit_cause, vcpu.exit_tval, vcpu.exit_pc) == (5, end - 4, CODE)
    assert vcpu.get_f(1) == 0


# ====================================================================== through the hypervisor

MSTATUS_FS = 3 << 13
SD = 1 << 63


def boot(raw_image, words):
    from hvemu.vm import VM, VMConfig
    vm = VM(VMConfig(image=str(raw_image(RV.code(*words, RV.poweroff(0)))),
                     max_instructions=10_000))
    outcome = vm.run()
    return vm, outcome


def test_fcsr_accesses_are_illegal_with_fs_off_and_trap_into_the_guest(raw_image):
    handler = [RV.csrrs(RV.A1, 0x341, RV.ZERO), *RV.poweroff(0)]      # a1 = mepc
    words = [RV.jal(RV.ZERO, 4 * (1 + len(handler)))] + handler      # skip the handler
    words += [RV.addi(RV.T0, RV.ZERO, 1), RV.slli(RV.T0, RV.T0, 31),   # mtvec = the handler
              RV.addi(RV.T0, RV.T0, 4), RV.csrrw(0, 0x305, RV.T0),
              csr(2, RV.A0, FCSR, 0)]                                 # frcsr a0: illegal
    vm, outcome = boot(raw_image, words)
    assert outcome.reason == "poweroff"
    c = vm.hart.csr
    assert c.mcause == 2 and c.mtval == csr(2, RV.A0, FCSR, 0)
    assert vm.vcpu.get_x(RV.A1) == 0x8000_0000 + 4 * (len(words) - 1)


def test_fcsr_fflags_and_frm_through_the_csr_handler(raw_image):
    words = [*RV.li(RV.T0, MSTATUS_FS >> 1), RV.csrrs(0, MSTATUS, RV.T0),   # FS = Initial
             RV.csrrs(RV.A0, MSTATUS, RV.ZERO),
             *RV.li(RV.T1, 0xFF), RV.csrrw(RV.A1, FCSR, RV.T1),            # fcsr = 0xff
             RV.csrrs(12, FFLAGS, RV.ZERO), RV.csrrs(13, FRM, RV.ZERO),
             csr(5, 14, FRM, 1),                                         # fsrmi a4, 1
             csr(7, 15, FFLAGS, 0x10),                                   # csrci fflags, NV
             RV.csrrs(29, FCSR, RV.ZERO),
             RV.csrrs(30, MSTATUS, RV.ZERO), RV.csrrs(31, SSTATUS, RV.ZERO)]
    vm, outcome = boot(raw_image, words)
    assert outcome.reason == "poweroff"
    x = vm.vcpu.get_x
    assert x(RV.A0) & MSTATUS_FS == 1 << 13 and not x(RV.A0) & SD
    assert x(RV.A1) == 0                                  # the old fcsr
    assert (x(12), x(13)) == (0x1F, 7)              # bits above 7 are dropped
    assert x(14) == 7 and x(15) == 0x1F
    assert x(29) == (1 << 5) | 0x0F                       # fcsr = frm << 5 | fflags
    assert x(30) & MSTATUS_FS == MSTATUS_FS and x(30) & SD  # the writes made FS Dirty
    assert x(31) & MSTATUS_FS == MSTATUS_FS and x(31) & SD
    assert (vm.vcpu.frm, vm.vcpu.fflags) == (1, 0x0F)


def test_mstatus_reads_show_the_dirty_state_the_core_set(raw_image):
    fadd = OPS["fadd.d"].word(1, 2, 3)
    words = [*RV.li(RV.T0, 2 << 13), RV.csrrs(0, MSTATUS, RV.T0),          # FS = Clean
             RV.csrrs(RV.A0, MSTATUS, RV.ZERO), fadd,
             RV.csrrs(RV.A1, MSTATUS, RV.ZERO), RV.csrrs(12, SSTATUS, RV.ZERO),
             *RV.li(RV.T0, MSTATUS_FS), csr(3, 0, MSTATUS, RV.T0),          # FS = Off
             RV.csrrs(13, MSTATUS, RV.ZERO)]
    vm, outcome = boot(raw_image, words)
    assert outcome.reason == "poweroff"
    x = vm.vcpu.get_x
    assert x(RV.A0) & MSTATUS_FS == 2 << 13 and not x(RV.A0) >> 63
    assert x(RV.A1) & MSTATUS_FS == MSTATUS_FS and x(RV.A1) >> 63
    assert x(12) & MSTATUS_FS == MSTATUS_FS and x(12) >> 63
    assert x(13) & MSTATUS_FS == 0 and not x(13) >> 63
    assert vm.vcpu.fs == 0


def test_a_reset_turns_the_fpu_off_and_clears_its_state(hello_vm):
    vcpu = hello_vm.vcpu
    vcpu.fs, vcpu.fflags, vcpu.frm = 3, 0x1F, 4
    vcpu.set_f(5, ONE_D)
    hello_vm.hart.reset(0x8000_0000)
    assert (vcpu.fs, vcpu.fflags, vcpu.frm, vcpu.get_f(5)) == (0, 0, 0, 0)


def test_misa_has_f_and_d_and_the_device_tree_advertises_the_same_isa(hello_vm):
    import fdt

    from hvemu.board import ISA
    from hvemu.boot.devicetree import build_device_tree
    misa = hello_vm.hart.csr.read(MISA, 3)
    letters = {chr(ord("a") + i) for i in range(26) if misa >> i & 1}
    assert {"f", "d"} <= letters
    isa = fdt.parse_dtb(build_device_tree(hello_vm.board)).get_property(
        "riscv,isa", "/cpus/cpu@0").data[0]
    assert isa == ISA and isa.startswith("rv64imafdc")
    assert set(isa[4:].split("_")[0]) == letters - {"s", "u", "b"}   # B: Zba, Zbb and Zbs


def test_a_kernel_started_without_firmware_finds_the_fpu_on_as_opensbi_leaves_it():
    from conftest import FIRMWARE

    from hvemu.vm import VM, VMConfig
    vm = VM(VMConfig(kernel=str(FIRMWARE / "kernel" / "kernel.elf")))
    assert vm.vcpu.fs == 3 and vm.hart.priv == 1
    assert (vm.vcpu.fflags, vm.vcpu.frm, vm.vcpu.f) == (0, 0, [0] * 32)


# ====================================================================== the encoders

def gnu_assemble(lines: list[str], rvc: bool) -> bytes:
    """The .text bytes GNU as makes of lines (for checking fpkit's encoders)."""
    import subprocess
    import tempfile
    from pathlib import Path

    from corekit import AS, OBJCOPY, require_tool
    as_, objcopy = require_tool(AS), require_tool(OBJCOPY)
    with tempfile.TemporaryDirectory() as tmp:
        src, obj, out = Path(tmp, "t.s"), Path(tmp, "t.o"), Path(tmp, "t.bin")
        src.write_text((".option rvc\n" if rvc else ".option norvc\n") + "\n".join(lines) + "\n")
        res = subprocess.run([as_, "-march=rv64imafdc_zicsr", "-mabi=lp64d", "-o", str(obj),
                              str(src)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(obj), str(out)], check=True)
        return out.read_bytes()


EXACT_CONVERSIONS = {"fcvt.d.w", "fcvt.d.wu", "fcvt.d.s"}   # GNU as takes no rm for these


def test_the_fp_encoders_agree_with_the_gnu_assembler():
    lines, words = [], []
    for name, op in sorted(OPS.items()):
        regs = {"s": "f{}", "d": "f{}", "x": "x{}"}
        rd = regs[op.dst].format(10)
        srcs = [regs[k].format(n) for k, n in zip(op.srcs, (5 if op.srcs[0] == "x" else 1, 2, 3),
                                                   strict=False)]
        rm = ""
        if op.rounds and name not in EXACT_CONVERSIONS:
            rm = ", rtz"
        lines.append(f"{name} {rd}, {', '.join(srcs)}{rm}")
        words.append(op.word(10, 5 if op.srcs[0] == "x" else 1, 2, 3,
                             RTZ if rm else RNE))
    lines += ["flw f3, -4(x10)", "fld f31, 2047(x2)", "fsw f4, -2048(x9)", "fsd f0, 8(x31)"]
    words += [flw(3, 10, -4), fld(31, 2, 2047), fsw(4, 9, -2048), fsd(0, 31, 8)]
    got = gnu_assemble(lines, rvc=False)
    assert [int.from_bytes(got[i:i + 4], "little") for i in range(0, len(got), 4)] == words
    compressed = {"c.fld f9, 248(x15)": c_fld(9, 15, 248), "c.fsd f8, 0(x8)": c_fsd(8, 8, 0),
                  "c.fldsp f0, 504(x2)": c_fldsp(0, 504), "c.fldsp f31, 8(x2)": c_fldsp(31, 8),
                  "c.fsdsp f17, 264(x2)": c_fsdsp(17, 264)}
    got = gnu_assemble(list(compressed), rvc=True)
    assert [int.from_bytes(got[i:i + 2], "little") for i in range(0, len(got), 2)] == \
        list(compressed.values())


def test_an_fp_store_into_code_changes_the_instructions_that_run_next(engine):
    from corekit import addi, bne
    new = addi(A0, A0, 16) | addi(11, 11, 32) << 32      # two instructions as 64 bits
    words = [addi(5, 0, 2),
             addi(A0, A0, 1), addi(11, 11, 1),            # run once, then overwritten
             fsd(1, 12, 4), addi(5, 5, -1), bne(5, 0, -16)]
    vcpu = fp(words, f={1: new}, x={12: CODE})
    assert (vcpu.get_x(A0), vcpu.get_x(11)) == (1 + 16, 1 + 32)
