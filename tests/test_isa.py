"""Unit tests of the fast path's instruction semantics (hvemu._core), one behaviour each.

Expected values are worked out by hand from the unprivileged spec (RV64IMAC) and
written as literals.  Programs are encoded by tests/corekit.py, whose encoders
are themselves checked against GNU as at the top of this file.  Every test runs
on both engines of the core: the pre-decoded fast path and the reference
interpreter (the `engine` fixture).
"""

import pytest
from corekit import (
    A0,
    A1,
    A2,
    A3,
    A4,
    A5,
    CODE,
    DATA,
    EBREAK,
    ECALL,
    ENGINES,
    FENCE,
    FENCE_I,
    FENCE_TSO,
    INT64_MIN,
    MASK64,
    MMIO_ADDR,
    RA,
    RAM_BASE,
    RAM_SIZE,
    S0,
    S1,
    SP,
    T0,
    ZERO,
    add,
    addi,
    addiw,
    addw,
    amo,
    and_,
    andi,
    assemble,
    auipc,
    beq,
    bge,
    bgeu,
    blt,
    bltu,
    bne,
    c_add,
    c_addi,
    c_addi4spn,
    c_addi16sp,
    c_addiw,
    c_addw,
    c_and,
    c_andi,
    c_beqz,
    c_bnez,
    c_ebreak,
    c_j,
    c_jalr,
    c_jr,
    c_ld,
    c_ldsp,
    c_li,
    c_lui,
    c_lw,
    c_lwsp,
    c_mv,
    c_nop,
    c_or,
    c_sd,
    c_sdsp,
    c_slli,
    c_srai,
    c_srli,
    c_sub,
    c_subw,
    c_sw,
    c_swsp,
    c_xor,
    code_bytes,
    csrrs,
    div,
    divu,
    divuw,
    divw,
    insn_len,
    jal,
    jalr,
    lb,
    lbu,
    ld,
    lh,
    lhu,
    lr_d,
    lr_w,
    lui,
    lw,
    lwu,
    make_vcpu,
    mul,
    mulh,
    mulhsu,
    mulhu,
    mulw,
    new_vcpu,
    nop,
    or_,
    ori,
    read_u64,
    rem,
    remu,
    remuw,
    remw,
    run,
    run_code,
    run_to_ecall,
    run_until_exit,
    sb,
    sc_d,
    sc_w,
    sd,
    sh,
    sll,
    slli,
    slliw,
    sllw,
    slt,
    slti,
    sltiu,
    sltu,
    sra,
    srai,
    sraiw,
    sraw,
    srl,
    srli,
    srliw,
    srlw,
    sub,
    subw,
    sw,
    u64,
    using_engine,
    xor,
    xori,
)
from hvemu._core import BUDGET, EXCEPTION, MMIO, SYSTEM

ILLEGAL, FETCH_ACCESS, LOAD_MISALIGNED, LOAD_ACCESS = 2, 1, 4, 5
STORE_MISALIGNED, STORE_ACCESS = 6, 7
INT64_MAX = (1 << 63) - 1


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request):
    """Run the test on the pre-decoded fast path and on the reference interpreter."""
    with using_engine(request.param):
        yield request.param


def result(code, regs=None, mem=None, rd=A0):
    """The value of rd after running code (to its final ecall)."""
    return run_code(code, regs, mem).get_x(rd)


def binop(op, a, b):
    """op(a0, a1, a2) with a1 = a, a2 = b: the value of a0."""
    return result([op(A0, A1, A2)], {A1: a, A2: b})


def immop(op, a, imm):
    return result([op(A0, A1, imm)], {A1: a})


def expect_exception(code, cause, regs=None, mem=None, tval=None, pc=CODE):
    vcpu, reason = run_until_exit(code, regs, mem)
    assert reason == EXCEPTION, f"exit {reason}, not EXCEPTION"
    assert vcpu.exit_cause == cause
    assert vcpu.exit_pc == pc
    assert vcpu.pc == pc, "an exception leaves pc at the instruction"
    if tval is not None:
        assert vcpu.exit_tval == tval
    return vcpu


# ---------------------------------------------------------------------------
# The harness's encoders agree with GNU as
# ---------------------------------------------------------------------------

ENCODINGS_32 = [
    (addi(A0, A1, -2048), "addi a0, a1, -2048"), (slli(A0, A1, 63), "slli a0, a1, 63"),
    (srai(A0, A1, 63), "srai a0, a1, 63"), (sraiw(A0, A1, 31), "sraiw a0, a1, 31"),
    (srliw(A0, A1, 1), "srliw a0, a1, 1"), (slliw(A0, A1, 31), "slliw a0, a1, 31"),
    (sub(A0, A1, A2), "sub a0, a1, a2"), (sra(A0, A1, A2), "sra a0, a1, a2"),
    (subw(A0, A1, A2), "subw a0, a1, a2"), (sraw(A0, A1, A2), "sraw a0, a1, a2"),
    (mulhsu(A0, A1, A2), "mulhsu a0, a1, a2"), (remuw(A0, A1, A2), "remuw a0, a1, a2"),
    (sd(A2, A1, -8), "sd a2, -8(a1)"), (sb(A2, A1, 2047), "sb a2, 2047(a1)"),
    (lwu(A2, A1, -2048), "lwu a2, -2048(a1)"), (lbu(A2, A1, 1), "lbu a2, 1(a1)"),
    (beq(A0, A1, -4096), "beq a0, a1, .-4096"), (bgeu(A0, A1, 4094), "bgeu a0, a1, .+4094"),
    (bltu(A0, A1, 2), "bltu a0, a1, .+2"),
    (jal(RA, -(1 << 20)), "jal ra, .-1048576"), (jal(ZERO, (1 << 20) - 2), "jal zero, .+1048574"),
    (jalr(RA, A0, -1), "jalr ra, -1(a0)"),
    (lui(A0, 0x80000), "lui a0, 0x80000"), (auipc(A0, 0xFFFFF), "auipc a0, 0xfffff"),
    (amo("amomaxu", "w", A0, A1, A2), "amomaxu.w a0, a1, (a2)"),
    (amo("amoadd", "d", A0, A1, A2, aq=1, rl=1), "amoadd.d.aqrl a0, a1, (a2)"),
    (lr_d(A0, A1), "lr.d a0, (a1)"), (sc_w(A0, A1, A2), "sc.w a0, a1, (a2)"),
    (FENCE, "fence"), (FENCE_I, "fence.i"), (FENCE_TSO, "fence.tso"),
    (EBREAK, "ebreak"), (ECALL, "ecall"), (csrrs(A0, 0x300, 0), "csrr a0, mstatus"),
]
ENCODINGS_16 = [
    (c_addi16sp(-512), "c.addi16sp sp, -512"), (c_addi16sp(496), "c.addi16sp sp, 496"),
    (c_addi4spn(S0, 1020), "c.addi4spn s0, sp, 1020"), (c_lui(A0, -1), "c.lui a0, 0xfffff"),
    (c_lui(A0, 31), "c.lui a0, 31"), (c_j(-2048), "c.j .-2048"), (c_j(2046), "c.j .+2046"),
    (c_beqz(A5, -256), "c.beqz a5, .-256"), (c_bnez(S1, 254), "c.bnez s1, .+254"),
    (c_lw(A0, S0, 124), "c.lw a0, 124(s0)"), (c_ld(A5, S1, 248), "c.ld a5, 248(s1)"),
    (c_sw(A0, S0, 68), "c.sw a0, 68(s0)"), (c_sd(A0, S0, 136), "c.sd a0, 136(s0)"),
    (c_lwsp(31, 252), "c.lwsp t6, 252(sp)"), (c_ldsp(RA, 504), "c.ldsp ra, 504(sp)"),
    (c_swsp(31, 252), "c.swsp t6, 252(sp)"), (c_sdsp(RA, 504), "c.sdsp ra, 504(sp)"),
    (c_srli(A0, 63), "c.srli a0, 63"), (c_srai(A0, 33), "c.srai a0, 33"),
    (c_andi(A0, -32), "c.andi a0, -32"), (c_sub(A0, A1), "c.sub a0, a1"),
    (c_xor(A0, A1), "c.xor a0, a1"), (c_or(A0, A1), "c.or a0, a1"),
    (c_and(A0, A1), "c.and a0, a1"), (c_subw(A0, A1), "c.subw a0, a1"),
    (c_addw(A0, A1), "c.addw a0, a1"), (c_slli(31, 63), "c.slli t6, 63"),
    (c_jr(RA), "c.jr ra"), (c_jalr(A0), "c.jalr a0"), (c_mv(A0, 31), "c.mv a0, t6"),
    (c_add(A0, 31), "c.add a0, t6"), (c_ebreak(), "c.ebreak"), (c_addi(A0, -32), "c.addi a0, -32"),
    (c_addiw(A0, 31), "c.addiw a0, 31"), (c_li(31, -1), "c.li t6, -1"), (c_nop(), "c.nop"),
]


@pytest.mark.parametrize("engine", ["none"])        # runs no code: one engine is enough
@pytest.mark.parametrize("rvc, table", [(False, ENCODINGS_32), (True, ENCODINGS_16)],
                         ids=["32-bit", "compressed"])
def test_corekit_encoders_match_gnu_as(rvc, table, engine):
    got = assemble("\n".join(text for _, text in table), rvc=rvc)
    offset = 0
    for word, text in table:
        n = insn_len(word)
        assert int.from_bytes(got[offset:offset + n], "little") == word, text
        offset += n
    assert offset == len(got)


def test_assembled_program_runs():
    code = assemble("""
        li a0, 0
        li a1, 10
    1:  add a0, a0, a1
        addi a1, a1, -1
        bnez a1, 1b
    """, rvc=True)
    assert run_code(code).get_x(A0) == 55


# ---------------------------------------------------------------------------
# RV64I: integer computation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("imm, value", [(-1, MASK64), (-2048, 0xFFFF_FFFF_FFFF_F800),
                                        (2047, 0x7FF), (0, 0)])
def test_addi_sign_extends_its_12_bit_immediate(imm, value):
    assert immop(addi, 0, imm) == value


def test_add_and_sub_wrap_modulo_2_to_the_64():
    assert binop(add, INT64_MAX, 1) == INT64_MIN
    assert binop(add, MASK64, 2) == 1
    assert binop(sub, 0, 1) == MASK64
    assert binop(sub, INT64_MIN, 1) == INT64_MAX


@pytest.mark.parametrize("op, a, value", [
    (slli, 1, 0x8000_0000_0000_0000), (slli, 3, 0x8000_0000_0000_0000),
    (srli, MASK64, 1), (srli, INT64_MIN, 1),
    (srai, INT64_MIN, MASK64), (srai, INT64_MAX, 0),
])
def test_immediate_shifts_by_63(op, a, value):
    assert immop(op, a, 63) == value


@pytest.mark.parametrize("op, a, value", [(slli, 0x1234, 0x1234), (srli, MASK64, MASK64),
                                          (srai, INT64_MIN, INT64_MIN)])
def test_immediate_shifts_by_0_change_nothing(op, a, value):
    assert immop(op, a, 0) == value


@pytest.mark.parametrize("op, a, b, value", [
    (sll, 1, 63, 0x8000_0000_0000_0000), (sll, 1, 127, 0x8000_0000_0000_0000),
    (sll, 1, 64, 1), (srl, INT64_MIN, 64 + 63, 1), (srl, MASK64, 4, 0x0FFF_FFFF_FFFF_FFFF),
    (sra, INT64_MIN, MASK64, MASK64), (sra, 0xF000_0000_0000_0000, 4, 0xFF00_0000_0000_0000),
])
def test_register_shifts_use_only_the_low_6_bits_of_rs2(op, a, b, value):
    assert binop(op, a, b) == value


@pytest.mark.parametrize("a, b, lt_signed, lt_unsigned", [
    (u64(-1), 0, 1, 0), (0, u64(-1), 0, 1), (INT64_MIN, INT64_MAX, 1, 0),
    (INT64_MAX, INT64_MIN, 0, 1), (5, 5, 0, 0), (u64(-2), u64(-1), 1, 1),
])
def test_slt_compares_signed_and_sltu_unsigned(a, b, lt_signed, lt_unsigned):
    assert binop(slt, a, b) == lt_signed
    assert binop(sltu, a, b) == lt_unsigned


@pytest.mark.parametrize("a, imm, value", [(5, -1, 1), (MASK64, -1, 0), (0, 1, 1), (1, 1, 0),
                                           (0xFFFF_FFFF_FFFF_F7FF, -2048, 1)])
def test_sltiu_sign_extends_the_immediate_then_compares_unsigned(a, imm, value):
    assert immop(sltiu, a, imm) == value


@pytest.mark.parametrize("a, imm, value", [(INT64_MIN, -2048, 1), (u64(-2048), -2048, 0),
                                           (u64(-2049), -2048, 1), (2046, 2047, 1), (0, -1, 0)])
def test_slti_compares_signed_with_the_sign_extended_immediate(a, imm, value):
    assert immop(slti, a, imm) == value


def test_logical_immediates_are_sign_extended():
    assert immop(xori, 0x1234, -1) == u64(~0x1234)
    assert immop(ori, 0, -2048) == 0xFFFF_FFFF_FFFF_F800
    assert immop(andi, MASK64, -2048) == 0xFFFF_FFFF_FFFF_F800
    assert immop(andi, MASK64, 2047) == 0x7FF


def test_register_logical_operations():
    a, b = 0xFF00_FF00_1234_5678, 0x0FF0_0FF0_FFFF_0000
    assert binop(xor, a, b) == 0xF0F0_F0F0_EDCB_5678
    assert binop(or_, a, b) == 0xFFF0_FFF0_FFFF_5678
    assert binop(and_, a, b) == 0x0F00_0F00_1234_0000


@pytest.mark.parametrize("imm20, value", [(0x80000, 0xFFFF_FFFF_8000_0000),
                                          (0xFFFFF, 0xFFFF_FFFF_FFFF_F000),
                                          (0x7FFFF, 0x7FFF_F000), (0, 0)])
def test_lui_sign_extends_bit_31(imm20, value):
    assert result([lui(A0, imm20)]) == value


def test_auipc_adds_the_sign_extended_upper_immediate_to_its_own_pc():
    vcpu = run_code([nop(), auipc(A0, 0xFFFFF), auipc(A1, 0x80000), auipc(A2, 1)])
    assert vcpu.get_x(A0) == CODE + 4 - 0x1000
    assert vcpu.get_x(A1) == CODE + 8 - 0x8000_0000
    assert vcpu.get_x(A2) == CODE + 12 + 0x1000


def test_writes_to_x0_are_discarded():
    vcpu = run_code([addi(ZERO, ZERO, 5), lui(ZERO, 1), ld(ZERO, A1, 0), add(A0, ZERO, ZERO)],
                    {A1: DATA}, {DATA: 0x1234})
    assert vcpu.get_x(ZERO) == 0
    assert vcpu.x[0] == 0
    assert vcpu.get_x(A0) == 0


def test_set_x_of_x0_is_ignored():
    vcpu = make_vcpu([add(A0, ZERO, ZERO), ECALL])
    vcpu.set_x(ZERO, 99)
    run_to_ecall(vcpu)
    assert vcpu.get_x(ZERO) == 0 and vcpu.get_x(A0) == 0


# ---------------------------------------------------------------------------
# RV64I: the *W instructions compute on 32 bits and sign-extend
# ---------------------------------------------------------------------------

def test_addiw_sign_extends_the_32_bit_sum():
    assert immop(addiw, 0x7FFF_FFFF, 1) == 0xFFFF_FFFF_8000_0000
    assert immop(addiw, 0xFFFF_FFFF, 1) == 0


def test_addiw_0_is_sext_w():
    assert immop(addiw, 0x1234_5678_8765_4321, 0) == 0xFFFF_FFFF_8765_4321
    assert immop(addiw, 0xFFFF_FFFF_7654_3210, 0) == 0x7654_3210


def test_addw_and_subw_ignore_the_upper_halves():
    assert binop(addw, 0xFFFF_FFFF_0000_0001, 0x1_0000_0002) == 3
    assert binop(addw, 0x7FFF_FFFF, 1) == 0xFFFF_FFFF_8000_0000
    assert binop(subw, 0, 1) == MASK64
    assert binop(subw, 0x8000_0000, 1) == 0x7FFF_FFFF


@pytest.mark.parametrize("op, a, b, value", [
    (sllw, 1, 31, 0xFFFF_FFFF_8000_0000), (sllw, 1, 33, 2), (sllw, 0xFFFF_FFFF, 0, MASK64),
    (srlw, 0xFFFF_FFFF_8000_0000, 31, 1), (srlw, 0x8000_0000, 0, 0xFFFF_FFFF_8000_0000),
    (srlw, 0xFFFF_FFFF_8000_0000, 32 + 1, 0x4000_0000),
    (sraw, 0x8000_0000, 31, MASK64), (sraw, 0xFFFF_FFFF_7FFF_FFFF, 0, 0x7FFF_FFFF),
    (sraw, 0x8000_0000, 4, 0xFFFF_FFFF_F800_0000),
])
def test_register_w_shifts_use_the_low_5_bits_and_sign_extend(op, a, b, value):
    assert binop(op, a, b) == value


@pytest.mark.parametrize("op, a, shamt, value", [
    (slliw, 0xFFFF_FFFF, 31, 0xFFFF_FFFF_8000_0000), (slliw, 0x1_0000_0001, 4, 0x10),
    (srliw, 0xFFFF_FFFF_8000_0000, 0, 0xFFFF_FFFF_8000_0000),
    (srliw, 0xFFFF_FFFF_8000_0000, 1, 0x4000_0000), (srliw, MASK64, 31, 1),
    (sraiw, 0x8000_0000, 31, MASK64), (sraiw, 0x1_7FFF_FFFF, 4, 0x07FF_FFFF),
])
def test_immediate_w_shifts_sign_extend_the_32_bit_result(op, a, shamt, value):
    assert immop(op, a, shamt) == value


# ---------------------------------------------------------------------------
# Branches and jumps
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("op, a, b, taken", [
    (beq, 5, 5, True), (beq, 5, 6, False), (bne, 5, 6, True), (bne, 5, 5, False),
    (blt, u64(-1), 1, True), (blt, 1, u64(-1), False), (blt, INT64_MIN, INT64_MAX, True),
    (bltu, u64(-1), 1, False), (bltu, 1, u64(-1), True), (bltu, 3, 3, False),
    (bge, u64(-1), u64(-1), True), (bge, 1, u64(-1), True), (bge, u64(-1), 1, False),
    (bgeu, 1, u64(-1), False), (bgeu, u64(-1), 1, True), (bgeu, 0, 0, True),
])
def test_conditional_branch_outcome(op, a, b, taken):
    vcpu = run_code([op(A1, A2, 8), addi(A0, ZERO, 1), addi(A3, ZERO, 7)], {A1: a, A2: b})
    assert vcpu.get_x(A0) == (0 if taken else 1)
    assert vcpu.get_x(A3) == 7
    assert vcpu.instret == (2 if taken else 3)


def test_backward_branch_loops():
    code = [addi(A0, ZERO, 5), addi(A1, A1, 3), addi(A0, A0, -1), bne(A0, ZERO, -8)]
    vcpu = run_code(code)
    assert vcpu.get_x(A1) == 15
    assert vcpu.instret == 1 + 3 * 5


def test_jal_links_pc_plus_4_and_jumps():
    vcpu = run_code([jal(RA, 8), addi(A0, ZERO, 1), addi(A1, ZERO, 2)])
    assert vcpu.get_x(RA) == CODE + 4
    assert vcpu.get_x(A0) == 0 and vcpu.get_x(A1) == 2


def test_jal_backwards():
    # 0: j +12 -> 12: jal ra, -8 -> 4: a0 = 1; 8: j +8 -> 16: ecall
    vcpu = run_code([jal(ZERO, 12), addi(A0, ZERO, 1), jal(ZERO, 8), jal(RA, -8)])
    assert vcpu.get_x(A0) == 1
    assert vcpu.get_x(RA) == CODE + 16


@pytest.mark.parametrize("base, imm", [(CODE + 9, 0), (CODE, 9), (CODE + 10, -1)])
def test_jalr_clears_bit_0_of_the_target(base, imm):
    vcpu = run_code([jalr(RA, A1, imm), addi(A0, ZERO, 1), addi(A2, ZERO, 2)], {A1: base})
    assert vcpu.get_x(A0) == 0 and vcpu.get_x(A2) == 2
    assert vcpu.get_x(RA) == CODE + 4


def test_jalr_with_rd_equal_to_rs1_jumps_to_the_old_value():
    vcpu = run_code([jalr(A1, A1, 0), addi(A0, ZERO, 1), addi(A2, ZERO, 2)], {A1: CODE + 8})
    assert vcpu.get_x(A0) == 0
    assert vcpu.get_x(A1) == CODE + 4


def test_jalr_x0_is_a_plain_indirect_jump():
    vcpu = run_code([jalr(ZERO, A1, -4), addi(A0, ZERO, 1), addi(A2, ZERO, 2)], {A1: CODE + 12})
    assert vcpu.get_x(A0) == 0 and vcpu.get_x(A2) == 2 and vcpu.get_x(ZERO) == 0


# ---------------------------------------------------------------------------
# Loads and stores
# ---------------------------------------------------------------------------

PATTERN = 0x8081_8283_8485_8687      # bytes 87 86 85 84 83 82 81 80 in memory


@pytest.mark.parametrize("op, off, value", [
    (lb, 0, 0xFFFF_FFFF_FFFF_FF87), (lbu, 0, 0x87), (lb, 7, 0xFFFF_FFFF_FFFF_FF80),
    (lb, 8, 0x7F), (lbu, 8, 0x7F),
    (lh, 0, 0xFFFF_FFFF_FFFF_8687), (lhu, 0, 0x8687), (lh, 8, 0x7E7F),
    (lw, 0, 0xFFFF_FFFF_8485_8687), (lwu, 0, 0x8485_8687), (lw, 8, 0x7C7D_7E7F),
    (ld, 0, PATTERN), (ld, 8, 0x7879_7A7B_7C7D_7E7F),
])
def test_load_extends_by_width_and_signedness(op, off, value):
    mem = {DATA: PATTERN, DATA + 8: 0x7879_7A7B_7C7D_7E7F}
    assert result([op(A0, A1, off)], {A1: DATA}, mem) == value


def test_load_with_negative_offset():
    assert result([ld(A0, A1, -8)], {A1: DATA + 8}, {DATA: 0x1122}) == 0x1122
    assert result([lbu(A0, A1, -2048)], {A1: DATA + 2048}, {DATA: 0xAB}) == 0xAB


@pytest.mark.parametrize("op, value", [(sb, 0xAAAA_AAAA_AAAA_AA11), (sh, 0xAAAA_AAAA_AAAA_2211),
                                       (sw, 0xAAAA_AAAA_4433_2211), (sd, 0x8877_6655_4433_2211)])
def test_store_writes_only_its_width(op, value):
    vcpu = run_code([op(A2, A1, 0)], {A1: DATA, A2: 0x8877_6655_4433_2211},
                    {DATA: 0xAAAA_AAAA_AAAA_AAAA, DATA + 8: 0xAAAA_AAAA_AAAA_AAAA})
    assert read_u64(vcpu, DATA) == value
    assert read_u64(vcpu, DATA + 8) == 0xAAAA_AAAA_AAAA_AAAA
    assert read_u64(vcpu, DATA - 8) == 0


def test_store_with_negative_offset_then_load_back():
    vcpu = run_code([sd(A2, A1, -16), ld(A0, A1, -16)], {A1: DATA + 16, A2: 0xDEAD_BEEF})
    assert read_u64(vcpu, DATA) == 0xDEAD_BEEF
    assert vcpu.get_x(A0) == 0xDEAD_BEEF


MISALIGNED_BYTES = bytes(range(0xF0, 0x100)) + bytes(range(0x00, 0x10))


def _le(data: bytes, signed: bool) -> int:
    return u64(int.from_bytes(data, "little", signed=signed))


@pytest.mark.parametrize("op, size, signed", [(lh, 2, True), (lhu, 2, False), (lw, 4, True),
                                              (lwu, 4, False), (ld, 8, True)])
@pytest.mark.parametrize("off", [1, 3, 5, 7])
def test_misaligned_load_within_a_page_works(op, size, signed, off):
    value = result([op(A0, A1, off)], {A1: DATA}, {DATA: MISALIGNED_BYTES})
    assert value == _le(MISALIGNED_BYTES[off:off + size], signed)


@pytest.mark.parametrize("op, size", [(sh, 2), (sw, 4), (sd, 8)])
@pytest.mark.parametrize("off", [1, 3, 7])
def test_misaligned_store_within_a_page_works(op, size, off):
    vcpu = run_code([op(A2, A1, off)], {A1: DATA, A2: 0x8877_6655_4433_2211})
    expect = bytes(off) + (0x8877_6655_4433_2211).to_bytes(8, "little")[:size]
    assert vcpu.memory.read(DATA, 16) == expect.ljust(16, b"\0")


PAGE_END = DATA + 0x1000        # a page boundary


@pytest.mark.parametrize("op, start, size, signed", [
    (ld, PAGE_END - 3, 8, True), (ld, PAGE_END - 7, 8, True), (lw, PAGE_END - 1, 4, True),
    (lwu, PAGE_END - 2, 4, False), (lh, PAGE_END - 1, 2, True), (lhu, PAGE_END - 1, 2, False),
])
def test_misaligned_load_across_a_page_boundary_works(op, start, size, signed):
    mem = {PAGE_END - 8: MISALIGNED_BYTES}
    value = result([op(A0, A1, 0)], {A1: start}, mem)
    assert value == _le(MISALIGNED_BYTES[start - (PAGE_END - 8):][:size], signed)


@pytest.mark.parametrize("op, start, size", [(sd, PAGE_END - 5, 8), (sw, PAGE_END - 2, 4),
                                             (sh, PAGE_END - 1, 2)])
def test_misaligned_store_across_a_page_boundary_works(op, start, size):
    vcpu = run_code([op(A2, A1, 0), ld(A0, A1, 0)], {A1: start, A2: 0x8877_6655_4433_2211})
    assert vcpu.memory.read(start, size) == (0x8877_6655_4433_2211).to_bytes(8, "little")[:size]
    assert vcpu.memory.read(start - 1, 1) == b"\0"
    assert vcpu.memory.read(start + size, 1) == b"\0"


def test_32_bit_instruction_straddling_a_page_boundary_executes():
    pc = RAM_BASE + 0x1FFE
    vcpu = make_vcpu([addi(A0, ZERO, 42), ECALL], pc=pc)
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 42
    assert vcpu.exit_pc == pc + 4


def test_compressed_instruction_at_the_end_of_a_page_then_32_bit_on_the_next():
    pc = RAM_BASE + 0x1FFE
    vcpu = make_vcpu([c_li(A0, 7), addi(A0, A0, 1), ECALL], pc=pc)
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 8


# ---------------------------------------------------------------------------
# M extension
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("op, a, b, value", [
    (div, 7, 0, MASK64), (divu, 7, 0, MASK64), (rem, 7, 0, 7), (remu, 7, 0, 7),
    (rem, u64(-7), 0, u64(-7)), (div, 0, 0, MASK64), (remu, MASK64, 0, MASK64),
], ids=["div", "divu", "rem", "remu", "rem-negative", "div-0-by-0", "remu-max"])
def test_division_by_zero(op, a, b, value):
    assert binop(op, a, b) == value


def test_signed_division_overflow_int64_min_by_minus_1():
    assert binop(div, INT64_MIN, MASK64) == INT64_MIN
    assert binop(rem, INT64_MIN, MASK64) == 0


@pytest.mark.parametrize("op, a, b, value", [
    (div, u64(-7), 2, u64(-3)), (rem, u64(-7), 2, u64(-1)), (div, 7, u64(-2), u64(-3)),
    (rem, 7, u64(-2), 1), (divu, u64(-7), 2, 0x7FFF_FFFF_FFFF_FFFC), (remu, u64(-7), 2, 1),
    (div, INT64_MIN, 2, 0xC000_0000_0000_0000),
])
def test_division_rounds_toward_zero(op, a, b, value):
    assert binop(op, a, b) == value


@pytest.mark.parametrize("op, a, b, value", [
    (divw, 7, 0, MASK64), (divuw, 7, 0, MASK64), (remw, u64(-7), 0, u64(-7)),
    (remw, 0x1_0000_0007, 0, 7), (remuw, 0x8000_0000, 0, 0xFFFF_FFFF_8000_0000),
    (divuw, 0x1_0000_0007, 0x1_0000_0000, MASK64),
], ids=["divw", "divuw", "remw", "remw-low-half", "remuw-sign-extends", "divuw-low-half-zero"])
def test_w_division_by_zero(op, a, b, value):
    assert binop(op, a, b) == value


def test_w_division_overflow_int32_min_by_minus_1():
    assert binop(divw, 0x8000_0000, MASK64) == 0xFFFF_FFFF_8000_0000
    assert binop(remw, 0x8000_0000, MASK64) == 0


@pytest.mark.parametrize("op, a, b, value", [
    (divw, 0x1_0000_0006, 0x1_0000_0003, 2), (divw, u64(-7), 2, u64(-3)),
    (remw, u64(-7), 2, u64(-1)), (divuw, 0xFFFF_FFFF, 1, MASK64),
    (divuw, 0xFFFF_FFFF, 2, 0x7FFF_FFFF), (remuw, 0xFFFF_FFFF, 0x10, 0xF),
    (remuw, 0xFFFF_FFFF, MASK64, 0),
])
def test_w_division_uses_low_32_bits_and_sign_extends(op, a, b, value):
    assert binop(op, a, b) == value


@pytest.mark.parametrize("op, a, b, value", [
    (mul, MASK64, 2, u64(-2)), (mul, 1 << 32, 1 << 32, 0), (mul, 0x1_0000_0001, 3, 0x3_0000_0003),
    (mulh, INT64_MIN, INT64_MIN, 0x4000_0000_0000_0000), (mulh, MASK64, MASK64, 0),
    (mulh, MASK64, 1, MASK64), (mulh, INT64_MAX, INT64_MAX, 0x3FFF_FFFF_FFFF_FFFF),
    (mulhu, MASK64, MASK64, 0xFFFF_FFFF_FFFF_FFFE), (mulhu, INT64_MIN, 2, 1), (mulhu, 5, 7, 0),
    (mulhsu, MASK64, MASK64, MASK64), (mulhsu, MASK64, 1, MASK64), (mulhsu, 1, MASK64, 0),
    (mulhsu, INT64_MIN, MASK64, INT64_MIN), (mulhsu, 2, INT64_MIN, 1),
])
def test_multiply_high_and_low_halves(op, a, b, value):
    assert binop(op, a, b) == value


@pytest.mark.parametrize("a, b, value", [
    (0x7FFF_FFFF, 2, 0xFFFF_FFFF_FFFF_FFFE), (0x1_0000_0003, 0x1_0000_0005, 15),
    (0x10000, 0x10000, 0), (0x8000, 0x10000, 0xFFFF_FFFF_8000_0000), (MASK64, MASK64, 1),
])
def test_mulw_sign_extends_the_low_32_bits_of_the_product(a, b, value):
    assert binop(mulw, a, b) == value


# ---------------------------------------------------------------------------
# A extension
# ---------------------------------------------------------------------------

def test_lr_then_sc_succeeds_and_writes():
    vcpu = run_code([lr_d(A0, A1), addi(A2, A0, 1), sc_d(A3, A2, A1)],
                    {A1: DATA, A3: 99}, {DATA: 0x1111})
    assert vcpu.get_x(A0) == 0x1111
    assert vcpu.get_x(A3) == 0
    assert read_u64(vcpu, DATA) == 0x1112


def test_sc_without_a_reservation_fails_and_does_not_write():
    vcpu = run_code([sc_d(A3, A2, A1)], {A1: DATA, A2: 5}, {DATA: 0x1111})
    assert vcpu.get_x(A3) == 1
    assert read_u64(vcpu, DATA) == 0x1111


def test_sc_to_another_address_than_the_reservation_fails():
    vcpu = run_code([lr_d(A0, A1), sc_d(A3, A2, A4)],
                    {A1: DATA, A4: DATA + 64, A2: 5}, {DATA: 0x1111, DATA + 64: 0x2222})
    assert vcpu.get_x(A3) != 0
    assert read_u64(vcpu, DATA) == 0x1111 and read_u64(vcpu, DATA + 64) == 0x2222


def test_sc_consumes_the_reservation():
    vcpu = run_code([lr_d(A0, A1), sc_d(A3, A2, A1), sc_d(A4, A5, A1)],
                    {A1: DATA, A2: 5, A5: 6})
    assert vcpu.get_x(A3) == 0 and vcpu.get_x(A4) == 1
    assert read_u64(vcpu, DATA) == 5


def test_lr_w_sign_extends_and_sc_w_writes_only_4_bytes():
    vcpu = run_code([lr_w(A0, A1), sc_w(A3, A2, A1)],
                    {A1: DATA, A2: 0x1234_5678_9ABC_DEF0}, {DATA: 0xAAAA_AAAA_8000_0000})
    assert vcpu.get_x(A0) == 0xFFFF_FFFF_8000_0000
    assert vcpu.get_x(A3) == 0
    assert read_u64(vcpu, DATA) == 0xAAAA_AAAA_9ABC_DEF0


def test_reservation_survives_an_exit():
    vcpu = make_vcpu([lr_d(A0, A1), ECALL, sc_d(A3, A2, A1), ECALL], {A1: DATA, A2: 5})
    run_to_ecall(vcpu)
    vcpu.complete()
    run_to_ecall(vcpu)
    assert vcpu.get_x(A3) == 0 and read_u64(vcpu, DATA) == 5


def test_clear_reservation_makes_the_next_sc_fail():
    vcpu = make_vcpu([lr_d(A0, A1), ECALL, sc_d(A3, A2, A1), ECALL], {A1: DATA, A2: 5})
    run_to_ecall(vcpu)
    vcpu.clear_reservation()
    vcpu.complete()
    run_to_ecall(vcpu)
    assert vcpu.get_x(A3) == 1 and read_u64(vcpu, DATA) == 0


@pytest.mark.parametrize("name, old, src, new", [
    ("amoswap", 0x1111, 0x2222, 0x2222),
    ("amoadd", MASK64, 2, 1),
    ("amoxor", 0xFF00_FF00_FF00_FF00, 0x0FF0_0FF0_0FF0_0FF0, 0xF0F0_F0F0_F0F0_F0F0),
    ("amoand", 0xFF00_FF00_FF00_FF00, 0x0FF0_0FF0_0FF0_0FF0, 0x0F00_0F00_0F00_0F00),
    ("amoor", 0xFF00_FF00_FF00_FF00, 0x0FF0_0FF0_0FF0_0FF0, 0xFFF0_FFF0_FFF0_FFF0),
    ("amomin", MASK64, 1, MASK64), ("amominu", MASK64, 1, 1),
    ("amomax", MASK64, 1, 1), ("amomaxu", MASK64, 1, MASK64),
    ("amomin", INT64_MIN, INT64_MAX, INT64_MIN), ("amomaxu", INT64_MIN, INT64_MAX, INT64_MIN),
])
def test_amo_d_returns_the_old_value_and_stores_the_result(name, old, src, new):
    vcpu = run_code([amo(name, "d", A0, A2, A1)], {A1: DATA, A2: src}, {DATA: old})
    assert vcpu.get_x(A0) == old
    assert read_u64(vcpu, DATA) == new


SENTINEL = 0xA5A5_A5A5 << 32     # the upper word next to a W-form AMO's target


@pytest.mark.parametrize("name, old, src, new", [
    ("amoswap", 0x8000_0000, 0x1_2345_6789, 0x2345_6789),
    ("amoadd", 0x7FFF_FFFF, 1, 0x8000_0000),
    ("amoadd", 0xFFFF_FFFF, 1, 0),                  # no carry into the next word
    ("amoxor", 0xFF00_FF00, 0xFFFF_FFFF_0FF0_0FF0, 0xF0F0_F0F0),
    ("amoand", 0xFF00_FF00, 0xFFFF_FFFF_0FF0_0FF0, 0x0F00_0F00),
    ("amoor", 0xFF00_FF00, 0xFFFF_FFFF_0FF0_0FF0, 0xFFF0_FFF0),
    ("amomin", 0xFFFF_FFFF, 1, 0xFFFF_FFFF),        # -1 < 1
    ("amomin", 0, 0x8000_0000, 0x8000_0000),        # src is INT32_MIN as a word
    ("amomax", 0x8000_0000, 1, 1),
    ("amomax", 5, 0x1_0000_0000, 5),                # src's word is 0
    ("amominu", 0xFFFF_FFFF, 0xFFFF_FFFF_0000_0001, 1),
    ("amomaxu", 1, 0x1_0000_0000, 1),               # src's word is 0
    ("amomaxu", 0x8000_0000, 0x7FFF_FFFF, 0x8000_0000),
])
def test_amo_w_operates_on_the_word_and_sign_extends_the_old_value(name, old, src, new):
    vcpu = run_code([amo(name, "w", A0, A2, A1)], {A1: DATA, A2: src}, {DATA: SENTINEL | old})
    assert vcpu.get_x(A0) == u64((old ^ 0x8000_0000) - 0x8000_0000)
    assert read_u64(vcpu, DATA) == SENTINEL | new


def test_amo_with_rd_equal_to_rs2_uses_the_source_before_overwriting():
    vcpu = run_code([amo("amoadd", "d", A2, A2, A1)], {A1: DATA, A2: 5}, {DATA: 10})
    assert vcpu.get_x(A2) == 10 and read_u64(vcpu, DATA) == 15


@pytest.mark.parametrize("width, off", [("w", 2), ("d", 4), ("d", 1)])
@pytest.mark.parametrize("name", ["amoadd", "amoswap", "amomaxu"])
def test_misaligned_amo_raises_store_misaligned(name, width, off):
    vcpu = expect_exception([amo(name, width, A0, A2, A1)], STORE_MISALIGNED,
                            {A1: DATA + off, A2: 1}, {DATA: 0x1111}, tval=DATA + off)
    assert read_u64(vcpu, DATA) == 0x1111 and vcpu.get_x(A0) == 0 and vcpu.instret == 0


@pytest.mark.parametrize("lr, off", [(lr_w, 2), (lr_d, 4)])
def test_misaligned_lr_raises_load_misaligned(lr, off):
    vcpu = expect_exception([lr(A0, A1)], LOAD_MISALIGNED, {A1: DATA + off}, tval=DATA + off)
    assert vcpu.get_x(A0) == 0


@pytest.mark.parametrize("sc, off", [(sc_w, 2), (sc_d, 4)])
def test_misaligned_sc_raises_store_misaligned(sc, off):
    expect_exception([sc(A0, A2, A1)], STORE_MISALIGNED, {A1: DATA + off}, tval=DATA + off)


def test_amo_on_mmio_raises_store_access_fault():
    expect_exception([amo("amoadd", "w", A0, A2, A1)], STORE_ACCESS, {A1: MMIO_ADDR},
                     tval=MMIO_ADDR)


def test_lr_on_mmio_raises_load_access_fault():
    expect_exception([lr_d(A0, A1)], LOAD_ACCESS, {A1: MMIO_ADDR}, tval=MMIO_ADDR)


# ---------------------------------------------------------------------------
# C extension
# ---------------------------------------------------------------------------

def test_c_addi_adds_a_sign_extended_6_bit_immediate():
    assert result([c_addi(A0, -6)], {A0: 5}) == MASK64
    assert result([c_addi(A0, 31)], {A0: 1}) == 32


def test_c_li_loads_a_sign_extended_6_bit_immediate():
    assert result([c_li(A0, -32)]) == u64(-32)
    assert result([c_li(A0, 31)]) == 31


@pytest.mark.parametrize("nzimm, value", [(-1, 0xFFFF_FFFF_FFFF_F000), (31, 0x1F000),
                                          (-32, 0xFFFF_FFFF_FFFE_0000), (1, 0x1000)])
def test_c_lui_sign_extends_bit_17(nzimm, value):
    assert result([c_lui(A0, nzimm)]) == value


@pytest.mark.parametrize("imm", [-512, -16, 16, 496])
def test_c_addi16sp_adjusts_sp_by_a_multiple_of_16(imm):
    assert result([c_addi16sp(imm)], {SP: DATA}, rd=SP) == DATA + imm


def test_c_addi4spn_adds_a_zero_extended_immediate_to_sp():
    assert result([c_addi4spn(S0, 1020)], {SP: DATA}, rd=S0) == DATA + 1020
    assert result([c_addi4spn(A5, 4)], {SP: DATA}, rd=A5) == DATA + 4


def test_c_addiw_sign_extends_the_32_bit_sum():
    assert result([c_addiw(A0, 1)], {A0: 0x7FFF_FFFF}) == 0xFFFF_FFFF_8000_0000
    assert result([c_addiw(A0, 0)], {A0: 0x1_8000_0000}) == 0xFFFF_FFFF_8000_0000


def test_c_lwsp_sign_extends_and_c_ldsp_loads_8_bytes():
    mem = {DATA + 252: (0x8000_0000).to_bytes(4, "little"), DATA + 504: 0x1122_3344_5566_7788}
    vcpu = run_code([c_lwsp(A0, 252), c_ldsp(A1, 504)], {SP: DATA}, mem)
    assert vcpu.get_x(A0) == 0xFFFF_FFFF_8000_0000
    assert vcpu.get_x(A1) == 0x1122_3344_5566_7788


def test_c_swsp_and_c_sdsp_store_relative_to_sp():
    vcpu = run_code([c_swsp(A2, 252), c_sdsp(A2, 504)],
                    {SP: DATA, A2: 0x8877_6655_4433_2211})
    assert vcpu.memory.read(DATA + 248, 12) == bytes(4) + bytes.fromhex("11223344") + bytes(4)
    assert read_u64(vcpu, DATA + 504) == 0x8877_6655_4433_2211


def test_c_lw_c_ld_c_sw_c_sd_use_a_compressed_base_register():
    mem = {DATA + 124: (0xFFFF_FFFE).to_bytes(4, "little"), DATA + 248: 0x0102_0304_0506_0708}
    vcpu = run_code([c_lw(A0, S0, 124), c_ld(A1, S0, 248), c_sw(A1, S1, 4), c_sd(A1, S1, 8)],
                    {S0: DATA, S1: DATA + 0x100}, mem)
    assert vcpu.get_x(A0) == u64(-2)
    assert vcpu.get_x(A1) == 0x0102_0304_0506_0708
    assert read_u64(vcpu, DATA + 0x100) == 0x0506_0708 << 32
    assert read_u64(vcpu, DATA + 0x108) == 0x0102_0304_0506_0708


@pytest.mark.parametrize("insn, a, b, value", [
    (c_srli(A0, 63), MASK64, 0, 1), (c_srai(A0, 63), INT64_MIN, 0, MASK64),
    (c_srai(A0, 32), 0x8000_0000_0000_0000, 0, 0xFFFF_FFFF_8000_0000),
    (c_andi(A0, -32), MASK64, 0, u64(-32)), (c_slli(A0, 63), 1, 0, INT64_MIN),
    (c_sub(A0, A1), 0, 1, MASK64), (c_xor(A0, A1), 0xF0, 0xFF, 0x0F),
    (c_or(A0, A1), 0xF0, 0x0F, 0xFF), (c_and(A0, A1), 0xF0, 0x3C, 0x30),
    (c_subw(A0, A1), 0x8000_0000, 1, 0x7FFF_FFFF), (c_addw(A0, A1), 0x7FFF_FFFF, 1,
                                                   0xFFFF_FFFF_8000_0000),
    (c_mv(A0, A1), 0, 0x1234, 0x1234), (c_add(A0, A1), MASK64, 2, 1),
], ids=["srli", "srai", "srai32", "andi", "slli", "sub", "xor", "or", "and", "subw", "addw",
        "mv", "add"])
def test_compressed_alu(insn, a, b, value):
    assert result([insn], {A0: a, A1: b}) == value


def test_c_j_jumps_forward_and_backward():
    # 0: c.j +6 -> 6: c.j -4 -> 2: c.li a0, 1; 4: c.j +4 -> 8: ecall
    vcpu = run_code([c_j(6), c_li(A0, 1), c_j(4), c_j(-4)])
    assert vcpu.get_x(A0) == 1 and vcpu.instret == 4


@pytest.mark.parametrize("branch, value, taken", [(c_beqz, 0, True), (c_beqz, 1, False),
                                                  (c_bnez, 1, True), (c_bnez, 0, False),
                                                  (c_bnez, INT64_MIN, True)])
def test_c_beqz_c_bnez(branch, value, taken):
    vcpu = run_code([branch(S0, 4), c_li(A0, 1), c_li(A1, 2)], {S0: value})
    assert vcpu.get_x(A0) == (0 if taken else 1)
    assert vcpu.get_x(A1) == 2


def test_c_jalr_links_pc_plus_2_and_clears_bit_0():
    vcpu = run_code([c_jalr(A1), c_li(A0, 1), c_li(A2, 2)], {A1: CODE + 5})
    assert vcpu.get_x(RA) == CODE + 2
    assert vcpu.get_x(A0) == 0 and vcpu.get_x(A2) == 2


def test_c_jalr_through_ra_jumps_to_the_old_ra():
    vcpu = run_code([c_jalr(RA), c_li(A0, 1), c_li(A2, 2)], {RA: CODE + 4})
    assert vcpu.get_x(RA) == CODE + 2 and vcpu.get_x(A0) == 0 and vcpu.get_x(A2) == 2


def test_c_jr_jumps_without_linking():
    vcpu = run_code([c_jr(A1), c_li(A0, 1), c_li(A2, 2)], {A1: CODE + 4, RA: 7})
    assert vcpu.get_x(RA) == 7 and vcpu.get_x(A0) == 0 and vcpu.get_x(A2) == 2


def test_c_nop_does_nothing_but_advance():
    vcpu = run_code([c_nop(), c_nop()])
    assert vcpu.pc == CODE + 4 and vcpu.instret == 2 and vcpu.x == [0] * 32


def test_c_ebreak_exits_system_as_ebreak():
    vcpu, reason = run_until_exit([c_li(A0, 1), c_ebreak(), c_li(A0, 2)])
    assert reason == SYSTEM
    assert vcpu.exit_insn == 0x0010_0073
    assert vcpu.exit_insn_len == 2
    assert vcpu.exit_pc == CODE + 2 and vcpu.pc == CODE + 2
    vcpu.complete()
    assert vcpu.pc == CODE + 4
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 2


def test_mixed_16_and_32_bit_instructions():
    vcpu = run_code([c_li(A0, 3), addi(A0, A0, 4), c_addi(A0, 5), slli(A0, A0, 1), c_nop()])
    assert vcpu.get_x(A0) == 24
    assert vcpu.pc == CODE + 2 + 4 + 2 + 4 + 2


# ---------------------------------------------------------------------------
# FENCE and FENCE.I
# ---------------------------------------------------------------------------

def test_fence_fence_tso_and_fence_i_are_no_ops():
    vcpu = run_code([addi(A0, ZERO, 1), FENCE, FENCE_TSO, FENCE_I, addi(A1, ZERO, 2)])
    assert vcpu.get_x(A0) == 1 and vcpu.get_x(A1) == 2
    assert vcpu.instret == 5
    assert sum(1 for v in vcpu.x if v) == 2


def test_code_written_by_a_store_runs_after_fence_i():
    # Overwrite the instruction at CODE+12 (addi a0, zero, 1) with addi a0, zero, 2.
    code = [sw(A2, A1, 0), FENCE_I, nop(), addi(A0, ZERO, 1)]
    vcpu = run_code(code, {A1: CODE + 12, A2: addi(A0, ZERO, 2)})
    assert vcpu.get_x(A0) == 2


# ---------------------------------------------------------------------------
# Illegal instructions: EXCEPTION cause 2, tval = the instruction bits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("word", [
    0x0000,                                  # the all-zero halfword (c.addi4spn, nzuimm 0)
    0x2000,                                  # c.fld (no D)
    0xA000,                                  # c.fsd
    0x2002,                                  # c.fldsp
    0x8000,                                  # quadrant 0, funct3 100: reserved
    0x4002,                                  # c.lwsp x0
    0x6002,                                  # c.ldsp x0
    0x8002,                                  # c.jr x0
    0x6101,                                  # c.addi16sp 0
    0x6501,                                  # c.lui a0, 0
    0x2001,                                  # c.addiw x0
    0x9C41,                                  # c.subw-space funct2 10 with bit 12 (reserved)
], ids=hex)
def test_reserved_compressed_encoding_is_illegal(word):
    vcpu = expect_exception([word], ILLEGAL, tval=word)
    assert vcpu.instret == 0


@pytest.mark.parametrize("word", [
    0x0000_500B,                             # custom-0 opcode
    0x0000_007B,                             # custom-3 opcode
    0x0231_00D3,                             # fadd.d f1, f2, f3
    0x0005_3007,                             # fld f0, 0(a0)
    0x00A5_2027,                             # fsw f10, 0(a0)
    0x0400_0033,                             # OP with funct7 0000010
    0x0000_2063,                             # branch funct3 010
    0x0000_7003,                             # load funct3 111
    0x0000_4023,                             # store funct3 100
    slli(A0, A0, 1) | (1 << 26),             # slli with funct6 000001
    srai(A0, A0, 1) | (1 << 26),             # srai with funct6 010001
    slliw(A0, A0, 1) | (1 << 25),            # slliw with shamt[5] set
    jalr(RA, A0, 0) | (1 << 12),             # jalr funct3 001
    amo("amoadd", "w", A0, A1, A2) & ~(7 << 12),        # AMO funct3 000
    lr_d(A0, A1) | (A2 << 20),               # lr with rs2 != 0
    0x0000_300F,                             # MISC-MEM funct3 011 (010 is Zicbom/Zicboz)
], ids=hex)
def test_unknown_or_reserved_instruction_is_illegal(word):
    vcpu = expect_exception([word], ILLEGAL, tval=word)
    assert vcpu.instret == 0


def test_illegal_instruction_after_others_reports_its_own_pc():
    vcpu = expect_exception([addi(A0, ZERO, 1), c_nop(), 0x0231_00D3], ILLEGAL,
                            tval=0x0231_00D3, pc=CODE + 6)
    assert vcpu.instret == 2 and vcpu.get_x(A0) == 1


# ---------------------------------------------------------------------------
# SYSTEM exits and exit bookkeeping
# ---------------------------------------------------------------------------

def test_ecall_exits_system_with_pc_at_the_ecall_and_does_not_retire_it():
    vcpu, reason = run_until_exit([nop(), nop()])
    assert reason == SYSTEM
    assert vcpu.exit_insn == ECALL and vcpu.exit_insn_len == 4
    assert vcpu.pc == CODE + 8 and vcpu.exit_pc == CODE + 8
    assert vcpu.instret == 2
    vcpu.complete()
    assert vcpu.pc == CODE + 12 and vcpu.instret == 3


def test_ebreak_exits_system():
    vcpu, reason = run_until_exit([EBREAK])
    assert reason == SYSTEM and vcpu.exit_insn == EBREAK and vcpu.exit_insn_len == 4


def test_csr_instruction_exits_system_and_complete_csr_writes_rd():
    insn = csrrs(A0, 0xF14, ZERO)            # csrr a0, mhartid
    vcpu, reason = run_until_exit([insn, addi(A1, A0, 1)])
    assert reason == SYSTEM and vcpu.exit_insn == insn and vcpu.exit_pc == CODE
    vcpu.complete_csr(A0, 41)
    run_to_ecall(vcpu)
    assert vcpu.get_x(A1) == 42 and vcpu.instret == 2


# ---------------------------------------------------------------------------
# MMIO exits: loads and stores outside RAM and ROM
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("op, size, device_value, value", [
    (lb, 1, 0x80, 0xFFFF_FFFF_FFFF_FF80), (lbu, 1, 0x80, 0x80),
    (lh, 2, 0x8001, 0xFFFF_FFFF_FFFF_8001), (lhu, 2, 0x8001, 0x8001),
    (lw, 4, 0x8000_0000, 0xFFFF_FFFF_8000_0000), (lwu, 4, 0x8000_0000, 0x8000_0000),
    (ld, 8, 0x8000_0000_0000_0001, 0x8000_0000_0000_0001), (lb, 1, 0x7F, 0x7F),
])
def test_mmio_load_exits_and_complete_load_extends_the_value(op, size, device_value, value):
    vcpu, reason = run_until_exit([op(A2, A1, 6), addi(A3, A2, 0)], {A1: MMIO_ADDR})
    assert reason == MMIO
    assert vcpu.exit_addr == MMIO_ADDR + 6
    assert vcpu.exit_size == size
    assert vcpu.exit_rd == A2
    assert not vcpu.exit_is_write
    assert vcpu.exit_pc == CODE and vcpu.pc == CODE and vcpu.instret == 0
    vcpu.complete_load(device_value)
    assert vcpu.get_x(A2) == value
    assert vcpu.pc == CODE + 4 and vcpu.instret == 1
    run_to_ecall(vcpu)
    assert vcpu.get_x(A3) == value


@pytest.mark.parametrize("op, device_value, value", [
    (lbu, 0x1234, 0x34), (lb, 0x12FF, MASK64), (lhu, 0xFFFF_0001, 1),
    (lw, 0x1_7FFF_FFFF, 0x7FFF_FFFF),
])
def test_complete_load_keeps_only_the_accessed_bytes(op, device_value, value):
    vcpu, reason = run_until_exit([op(A2, A1, 0)], {A1: MMIO_ADDR})
    assert reason == MMIO
    vcpu.complete_load(device_value)
    assert vcpu.get_x(A2) == value


def test_mmio_load_into_x0_discards_the_value():
    vcpu, reason = run_until_exit([lw(ZERO, A1, 0)], {A1: MMIO_ADDR})
    assert reason == MMIO and vcpu.exit_rd == 0
    vcpu.complete_load(0x1234)
    assert vcpu.get_x(ZERO) == 0 and vcpu.pc == CODE + 4


def test_compressed_mmio_load_reports_its_rd_and_advances_by_2():
    vcpu, reason = run_until_exit([c_lw(A0, S0, 4)], {S0: MMIO_ADDR})
    assert reason == MMIO
    assert vcpu.exit_addr == MMIO_ADDR + 4 and vcpu.exit_size == 4 and vcpu.exit_rd == A0
    vcpu.complete_load(0xFFFF_FFFE)
    assert vcpu.get_x(A0) == u64(-2)
    assert vcpu.pc == CODE + 2


@pytest.mark.parametrize("op, size, value", [(sb, 1, 0x7F), (sh, 2, 0x7FFF),
                                             (sw, 4, 0x1234_5678), (sd, 8, 0x8877_6655_4433_2211)])
def test_mmio_store_exits_with_address_size_and_value(op, size, value):
    vcpu, reason = run_until_exit([op(A2, A1, -8), addi(A3, ZERO, 1)],
                                  {A1: MMIO_ADDR + 8, A2: value})
    assert reason == MMIO
    assert vcpu.exit_is_write
    assert vcpu.exit_addr == MMIO_ADDR
    assert vcpu.exit_size == size
    assert vcpu.exit_value == value
    assert vcpu.exit_pc == CODE and vcpu.instret == 0
    vcpu.complete()
    assert vcpu.pc == CODE + 4 and vcpu.instret == 1
    run_to_ecall(vcpu)
    assert vcpu.get_x(A3) == 1


@pytest.mark.parametrize("op, size", [(sb, 1), (sh, 2), (sw, 4)])
def test_mmio_store_value_holds_only_the_stored_bytes(op, size):
    rs2 = 0xFFFF_FFFF_8765_4321
    vcpu, reason = run_until_exit([op(A2, A1, 0)], {A1: MMIO_ADDR, A2: rs2})
    assert reason == MMIO and vcpu.exit_size == size
    assert vcpu.exit_value == rs2 & ((1 << (8 * size)) - 1)


def test_compressed_mmio_store_advances_by_2():
    vcpu, reason = run_until_exit([c_sd(A0, S0, 8)], {S0: MMIO_ADDR, A0: 0x55})
    assert reason == MMIO and vcpu.exit_is_write and vcpu.exit_size == 8
    assert vcpu.exit_addr == MMIO_ADDR + 8 and vcpu.exit_value == 0x55
    vcpu.complete()
    assert vcpu.pc == CODE + 2


def test_mmio_access_is_never_cached():
    vcpu = make_vcpu([lw(A2, A1, 0), lw(A3, A1, 0), ECALL], {A1: MMIO_ADDR})
    assert run(vcpu) == MMIO
    vcpu.complete_load(1)
    assert run(vcpu) == MMIO and vcpu.exit_pc == CODE + 4
    vcpu.complete_load(2)
    run_to_ecall(vcpu)
    assert (vcpu.get_x(A2), vcpu.get_x(A3)) == (1, 2)


def test_load_from_rom_reads_it():
    vcpu = make_vcpu([ld(A0, A1, 8), ECALL], {A1: 0x1000})
    vcpu.memory.write(0x1008, (0x0BAD_F00D).to_bytes(8, "little"))
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 0x0BAD_F00D


def test_store_to_rom_raises_store_access_fault():
    vcpu = expect_exception([sd(A2, A1, 0)], STORE_ACCESS, {A1: 0x1000, A2: 5}, tval=0x1000)
    assert vcpu.memory.read(0x1000, 8) == bytes(8)


def test_code_in_rom_executes():
    vcpu = make_vcpu(pc=0x1000)
    vcpu.memory.write(0x1000, code_bytes([addi(A0, ZERO, 9), ECALL]))
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 9 and vcpu.exit_pc == 0x1004


@pytest.mark.parametrize("pc", [0x2000_0000, MMIO_ADDR, RAM_BASE + RAM_SIZE, 0x0])
def test_fetch_outside_ram_and_rom_raises_instruction_access_fault(pc):
    vcpu = make_vcpu(pc=RAM_BASE)
    vcpu.pc = pc
    assert run(vcpu) == EXCEPTION
    assert vcpu.exit_cause == FETCH_ACCESS
    assert vcpu.exit_tval == pc and vcpu.exit_pc == pc and vcpu.instret == 0


def test_jump_outside_ram_faults_at_the_target():
    vcpu = expect_exception([jalr(RA, A1, 0)], FETCH_ACCESS, {A1: MMIO_ADDR}, tval=MMIO_ADDR,
                            pc=MMIO_ADDR)
    assert vcpu.instret == 1 and vcpu.get_x(RA) == CODE + 4


def test_32_bit_instruction_running_off_the_end_of_ram_raises_fetch_access_fault():
    pc = RAM_BASE + RAM_SIZE - 2
    vcpu = make_vcpu(pc=pc)
    vcpu.memory.write(pc, (0x0013).to_bytes(2, "little"))   # low half of a 32-bit insn
    assert run(vcpu) == EXCEPTION
    assert vcpu.exit_cause == FETCH_ACCESS and vcpu.exit_pc == pc


# ---------------------------------------------------------------------------
# The instruction budget
# ---------------------------------------------------------------------------

LOOP = [addi(A0, A0, 1), jal(ZERO, -4)]          # forever: a0 += 1


# Small budgets and the last few thousand instructions before stop_at may run in
# the reference interpreter even on the fast path; large ones exercise the fast
# path's own accounting.
BUDGETS = [1, 2, 7, 1000, 4111, 4112, 4113, 4114, 5000, 8225, 10_001, 99_999]


@pytest.mark.parametrize("n", BUDGETS)
def test_stop_at_instret_plus_n_executes_exactly_n_instructions(n):
    vcpu = make_vcpu(LOOP)
    vcpu.stop_at = vcpu.instret + n
    assert vcpu.run() == BUDGET
    assert vcpu.instret == n
    assert vcpu.get_x(A0) == (n + 1) // 2
    assert vcpu.pc == CODE + 4 * (n % 2)
    assert vcpu.exit_pc == vcpu.pc


def test_budget_runs_resume_where_they_stopped():
    vcpu = make_vcpu(LOOP)
    for total in (3, 4, 10, 11, 20_000, 20_001, 30_002):
        vcpu.stop_at = total
        assert vcpu.run() == BUDGET
        assert vcpu.instret == total
    assert vcpu.get_x(A0) == 15_001


def test_stop_at_not_above_instret_executes_nothing():
    vcpu = make_vcpu(LOOP)
    vcpu.instret = 50
    for stop_at in (50, 10):
        vcpu.stop_at = stop_at
        assert vcpu.run() == BUDGET
        assert vcpu.instret == 50 and vcpu.pc == CODE and vcpu.get_x(A0) == 0


@pytest.mark.parametrize("n", BUDGETS)
def test_budget_counts_compressed_instructions_and_taken_branches(n):
    vcpu = make_vcpu([c_addi(A0, 1), c_j(-2)])
    vcpu.stop_at = n
    assert vcpu.run() == BUDGET
    assert vcpu.get_x(A0) == (n + 1) // 2 and vcpu.pc == CODE + 2 * (n % 2)


@pytest.mark.parametrize("n", BUDGETS)
def test_budget_stops_exactly_in_a_loop_over_three_pages(n):
    body = 3 * 1024                                     # three pages of addi, then jump back
    vcpu = make_vcpu([addi(A0, A0, 1)] * body + [jal(ZERO, -4 * body)])
    vcpu.stop_at = n
    assert vcpu.run() == BUDGET and vcpu.instret == n
    rounds, rest = divmod(n, body + 1)
    assert vcpu.get_x(A0) == rounds * body + rest
    assert vcpu.pc == CODE + 4 * rest


def test_exit_before_the_budget_counts_only_retired_instructions():
    vcpu = make_vcpu([nop(), nop(), ECALL])
    vcpu.stop_at = 100
    assert vcpu.run() == SYSTEM
    assert vcpu.instret == 2


def test_budget_stops_exactly_in_straight_line_code_across_pages():
    vcpu = make_vcpu([addi(A0, A0, 1)] * 2048)          # two pages of code
    vcpu.stop_at = 1024 + 3
    assert vcpu.run() == BUDGET
    assert vcpu.get_x(A0) == 1027 and vcpu.pc == CODE + 4 * 1027


# ---------------------------------------------------------------------------
# Code that changes: stores into code (the fast path caches decoded instructions)
# ---------------------------------------------------------------------------

def rewrite_loop(store):
    """A loop that runs the instruction at CODE once, then `store`s a2 over it (a1 = CODE)
    and runs it again; a0 holds what the instruction at CODE did the second time."""
    return [
        addi(A0, ZERO, 1),          # 0: rewritten to a2's instruction
        bne(T0, ZERO, 16),          # 4: second pass -> 20
        addi(T0, ZERO, 1),          # 8
        store,                      # 12: overwrite the instruction at 0
        jal(ZERO, -16),             # 16: -> 0
    ]                               # 20: ecall


@pytest.mark.parametrize("store", [sw(A2, A1, 0), sd(A2, A1, 0), c_sw(A2, A1, 0),
                                   amo("amoswap", "w", ZERO, A2, A1)],
                         ids=["sw", "sd", "c.sw", "amoswap.w"])
def test_store_over_an_executed_instruction_takes_effect_without_fence_i(store):
    new = addi(A0, ZERO, 2)
    code = rewrite_loop(store)
    if insn_len(store) == 2:        # keep the offsets: pad c.sw to 4 bytes
        code[3:4] = [store, c_nop()]
    vcpu = run_code(code, {A1: CODE, A2: new | (code[1] << 32)})   # sd keeps the bne
    assert vcpu.get_x(A0) == 2


def test_32_bit_instruction_rewritten_as_two_compressed_ones():
    new = c_li(A0, 5) | (c_addi(A0, 1) << 16)
    vcpu = run_code(rewrite_loop(sw(A2, A1, 0)), {A1: CODE, A2: new})
    assert vcpu.get_x(A0) == 6


def test_store_into_code_on_another_page_already_run():
    func = RAM_BASE + 0x3000                  # a function: a0 = 1; ret
    code = [jalr(RA, A3, 0), addi(A4, A0, 0), sw(A2, A3, 0), jalr(RA, A3, 0)]
    vcpu = make_vcpu(code + [ECALL], {A2: addi(A0, ZERO, 2), A3: func},
                     {func: code_bytes([addi(A0, ZERO, 1), jalr(ZERO, RA, 0)])})
    run_to_ecall(vcpu)
    assert (vcpu.get_x(A4), vcpu.get_x(A0)) == (1, 2)


def test_misaligned_store_across_pages_into_code():
    func = RAM_BASE + 0x3000                  # a0 = 1 at the very start of a page
    code = [jalr(RA, A3, 0), addi(A4, A0, 0), sd(A2, A3, -4), jalr(RA, A3, 0)]
    vcpu = make_vcpu(code + [ECALL], {A2: addi(A0, ZERO, 2) << 32, A3: func},
                     {func: code_bytes([addi(A0, ZERO, 1), jalr(ZERO, RA, 0)])})
    run_to_ecall(vcpu)
    assert (vcpu.get_x(A4), vcpu.get_x(A0)) == (1, 2)


def test_memory_write_from_the_hypervisor_replaces_executed_code():
    vcpu = make_vcpu([addi(A0, ZERO, 1), ECALL])
    run_to_ecall(vcpu)
    vcpu.memory.write(CODE, code_bytes([addi(A0, ZERO, 2)]))
    vcpu.pc = CODE
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 2


def test_jump_into_the_middle_of_an_executed_32_bit_instruction():
    # lui a1, 0x45150 is 0x451505b7; its upper half 0x4515 is c.li a0, 5
    word = lui(A1, 0x45150)
    assert word >> 16 == c_li(A0, 5)
    vcpu = make_vcpu([word, ECALL])
    run_to_ecall(vcpu)
    assert vcpu.get_x(A1) == 0x4515_0000 and vcpu.get_x(A0) == 0
    vcpu.pc = CODE + 2
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 5


@pytest.mark.parametrize("engine", ["fast"])
def test_code_stored_by_one_vcpu_is_seen_by_another_sharing_memory(engine):
    memory = make_vcpu().memory
    target, writer_code = RAM_BASE + 0x5000, RAM_BASE + 0x1000
    memory.write(writer_code, code_bytes([sw(A2, A1, 0), ECALL, sw(A3, A1, 0), ECALL]))
    memory.write(target, code_bytes([addi(A0, ZERO, 1), ECALL]))
    with using_engine("fast"):
        runner, writer = new_vcpu(memory), new_vcpu(memory)
    for r, v in {A1: target, A2: addi(A0, ZERO, 1), A3: addi(A0, ZERO, 2)}.items():
        writer.set_x(r, v)
    writer.pc = writer_code
    run_to_ecall(writer)                # the writer stores to target's page (not code yet)
    runner.pc = target
    run_to_ecall(runner)                # the runner executes it: a0 = 1
    assert runner.get_x(A0) == 1
    writer.complete()
    run_to_ecall(writer)                # the writer replaces the instruction
    assert memory.read(target, 4) == code_bytes([addi(A0, ZERO, 2)])
    runner.pc = target
    run_to_ecall(runner)
    assert runner.get_x(A0) == 2


# ---------------------------------------------------------------------------
# A watched word (HTIF's tohost): stores touching it exit as MMIO; everything else
# on its page, loads of the word itself and fetches stay in the core
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_only_stores_touching_the_watched_word_exit(engine):
    with using_engine(engine):
        vcpu = make_vcpu([ld(A0, A1, 8), sd(A2, A1, 16), sw(A2, A1, 12), sd(A2, A1, 8), ECALL],
                         {A1: DATA, A2: 7}, {DATA + 8: 0x1234})
    vcpu.watch_store(DATA + 8)
    assert run(vcpu) == MMIO                   # sw at +12 touches the watched word
    assert vcpu.exit_addr == DATA + 12 and vcpu.exit_is_write and vcpu.exit_size == 4
    assert vcpu.get_x(A0) == 0x1234            # the load ran in the core
    assert read_u64(vcpu, DATA + 16) == 7      # so did the store next to the word
    vcpu.complete()
    assert run(vcpu) == MMIO and vcpu.exit_addr == DATA + 8 and vcpu.exit_value == 7
    vcpu.complete()
    run_to_ecall(vcpu)
    assert read_u64(vcpu, DATA + 8) == 0x1234  # the hypervisor did not write it


def test_stores_next_to_the_watched_word_do_not_exit_however_many():
    vcpu = make_vcpu([addi(A0, ZERO, 1000), sd(A0, A1, 0), addi(A0, A0, -1),
                      bne(A0, ZERO, -8), ECALL], {A1: DATA})
    vcpu.watch_store(DATA + 8)
    run_to_ecall(vcpu)
    assert read_u64(vcpu, DATA) == 1
    vcpu.watch_store(None)


def test_code_on_the_watched_page_still_runs():
    vcpu = make_vcpu([addi(A0, ZERO, 3), ECALL])
    vcpu.watch_store(CODE + 0x800)
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 3


# ---------------------------------------------------------------------------
# The fast path's decoded-instruction cache
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["fast"])
def test_a_loop_is_decoded_once_however_often_it_runs(engine):
    def decodes(iterations):
        with using_engine("fast"):
            vcpu = run_code([addi(A0, ZERO, iterations), addi(A1, A1, 1), addi(A0, A0, -1),
                             bne(A0, ZERO, -8)])
        assert vcpu.get_x(A1) == iterations
        return vcpu.shadow_stats["decodes"]
    assert decodes(1000) == decodes(10) > 0


def test_budget_is_exact_through_instructions_the_fast_path_hands_over():
    # amoadd (handed to the reference interpreter), then addi, then back: 3 per round
    vcpu = make_vcpu([amo("amoadd", "d", ZERO, A2, A1), addi(A0, A0, 1), jal(ZERO, -8)],
                     {A1: DATA, A2: 1})
    for total, rounds in ((1, 1), (2, 1), (3, 1), (301, 101), (30_001, 10_001),
                          (60_002, 20_001)):
        vcpu.stop_at = total
        assert vcpu.run() == BUDGET and vcpu.instret == total
        assert read_u64(vcpu, DATA) == rounds


# ---------------------------------------------------------------------------
# Writes by the page walker (A/D bits) into a page of decoded instructions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_a_d_bits_the_walker_sets_in_a_code_page_drop_the_decoded_instructions(engine):
    # The root page table is the code page itself: its entry 32, at CODE + 0x100, is a
    # 1 GiB leaf (V R X U, A clear) mapping VA 0x8_0000_0000 -> RAM.  As an instruction
    # word it reads 0x2000001b, `addiw x0, x0, 512`, followed by the all-zero (illegal)
    # upper half.  The walker's A bit makes it 0x2000005b, itself illegal.
    pte = (RAM_BASE >> 12 << 10) | 0x1B
    with using_engine(engine):
        vcpu = make_vcpu([jal(ZERO, 0x100), ld(A0, A1, 0), ECALL],
                         {A1: (32 << 30) + (DATA - RAM_BASE)},
                         {CODE + 0x100: pte, DATA: 0x5A})
    assert run(vcpu) == EXCEPTION and vcpu.exit_pc == CODE + 0x104   # ran the PTE word
    vcpu.set_mode(3, 1, 8, CODE, True, False)       # loads at S through the table (MPRV)
    vcpu.pc = CODE + 4
    run_to_ecall(vcpu)
    assert vcpu.get_x(A0) == 0x5A and read_u64(vcpu, CODE + 0x100) == pte | 0x40
    vcpu.set_mode(3, 3, 0, 0, False, False)
    vcpu.pc = CODE + 0x100
    assert run(vcpu) == EXCEPTION
    assert (vcpu.exit_pc, vcpu.exit_tval) == (CODE + 0x100, 0x2000005B)
