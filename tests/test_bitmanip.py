"""Zba, Zbb, Zbc, Zbs and Zicond on the core: every instruction, on both engines.

Unicorn 2.1 (QEMU 5) implements none of these extensions, so each instruction is
checked three ways instead:
* hand-checked cases: operands and results worked out by hand from the
  unprivileged spec ("B" chapter, Zicond) and written as literals;
* hypothesis against `extkit.OPS`, an independent Python model of the spec's
  pseudo-code, on single instructions and on random sequences (register reuse,
  rd = rs1/rs2, writes to x0), in M-mode with bare addressing and in U-mode with
  the code on an Sv39 user page (the riscv-tests "p" and "v" environments);
* against QEMU 7.2 running a bare-metal image (tests/test_qemu_compare.py, bitmanip.elf).
The encoders are checked against GNU as (binutils 2.40 knows all but Zicond, whose
encodings are checked against the spec's table by hand).
"""
from __future__ import annotations

import os

import pytest
from corekit import (
    A0,
    A1,
    A2,
    CODE,
    ENGINES,
    INT64_MIN,
    MASK64,
    RAM_BASE,
    ZERO,
    assemble,
    code_bytes,
    i_type,
    r_type,
    run_code,
    run_to_ecall,
    run_until_exit,
    using_engine,
)
from extkit import (
    MARCH,
    OP_BY_NAME,
    OPS,
    asm_text,
    czero_eqz,
    czero_nez,
    encode,
    model,
    zext_w,
)
from hvemu._core import EXCEPTION, GuestMemory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ILLEGAL = 2
INT64_MAX = (1 << 63) - 1
EXAMPLES = int(os.environ.get("HVEMU_DIFF_EXAMPLES", "0"))


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request):
    """Run the test on the pre-decoded fast path and on the reference interpreter."""
    with using_engine(request.param):
        yield request.param


def examples(n: int) -> settings:
    return settings(max_examples=EXAMPLES or n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def run_op(name: str, a: int, b: int = 0, imm: int = 0) -> int:
    """a0 after `name a0, a1, a2` (or its unary/immediate form) with a1 = a, a2 = b."""
    op = OP_BY_NAME[name]
    return run_code([encode(op, A0, A1, A2, imm)], {A1: a, A2: b}).get_x(A0)


# ---------------------------------------------------------------------------
# The encoders agree with GNU as
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["none"])        # runs no code: one engine is enough
def test_encoders_match_gnu_as(engine):
    ops = [op for op in OPS if op.ext != "zicond"]
    text = [asm_text(op, "a0", "a1", "a2", {"i6": 63, "i5": 31}.get(op.form, 0)) for op in ops]
    text += [asm_text(op, "t6", "s1", "s2", {"i6": 1, "i5": 1}.get(op.form, 0)) for op in ops]
    from corekit import S1, S2, T6
    want = [encode(op, A0, A1, A2, {"i6": 63, "i5": 31}.get(op.form, 0)) for op in ops]
    want += [encode(op, T6, S1, S2, 1) for op in ops]
    got = assemble("\n".join(text), march=MARCH)
    assert [int.from_bytes(got[i:i + 4], "little") for i in range(0, len(got), 4)] == want
    assert assemble("zext.w a0, a1", march=MARCH) == code_bytes([zext_w(A0, A1)])


@pytest.mark.parametrize("engine", ["none"])
def test_czero_encodings_are_the_specs(engine):
    # Zicond: czero.eqz funct7 0000111 funct3 101, czero.nez funct3 111, opcode OP
    assert czero_eqz(A0, A1, A2) == 0b0000111_01100_01011_101_01010_0110011
    assert czero_nez(A0, A1, A2) == 0b0000111_01100_01011_111_01010_0110011


# ---------------------------------------------------------------------------
# Hand-checked cases
# ---------------------------------------------------------------------------

CASES = [
    # Zba: rs2 + (rs1 << n), rs1 zero-extended from 32 bits in the .uw forms
    ("sh1add", 5, 7, 0, 17), ("sh2add", 5, 7, 0, 27), ("sh3add", 5, 7, 0, 47),
    ("sh3add", MASK64, 0, 0, MASK64 - 7),
    ("sh1add.uw", 0xFFFF_FFFF_8000_0000, 1, 0, 0x1_0000_0001),
    ("sh2add.uw", 0x1234_5678_0000_0001, 0x10, 0, 0x14),
    ("sh3add.uw", 0xFFFF_FFFF, 0, 0, 0x7_FFFF_FFF8),
    ("add.uw", MASK64, 1, 0, 0x1_0000_0000),
    ("add.uw", 0x1234_5678_9ABC_DEF0, 0, 0, 0x9ABC_DEF0),             # zext.w
    ("slli.uw", MASK64, 0, 63, 1 << 63), ("slli.uw", MASK64, 0, 32, 0xFFFF_FFFF_0000_0000),
    ("slli.uw", MASK64, 0, 0, 0xFFFF_FFFF),
    # Zbb: logic with negate
    ("andn", 0xF0F0, 0xFF00, 0, 0x00F0), ("orn", 0, 0, 0, MASK64),
    ("xnor", 0xFF, 0x0F, 0, MASK64 ^ 0xF0), ("xnor", 0x1234, 0x1234, 0, MASK64),
    # counting
    ("clz", 0, 0, 0, 64), ("clz", 1, 0, 0, 63), ("clz", MASK64, 0, 0, 0),
    ("clz", 0x1_0000_0000, 0, 0, 31),
    ("clzw", 0, 0, 0, 32), ("clzw", 0xFFFF_FFFF_0000_0001, 0, 0, 31),
    ("clzw", 0x8000_0000, 0, 0, 0),
    ("ctz", 0, 0, 0, 64), ("ctz", 1 << 63, 0, 0, 63), ("ctz", 0x18, 0, 0, 3),
    ("ctzw", 0, 0, 0, 32), ("ctzw", 0x1_0000_0000, 0, 0, 32), ("ctzw", 0x10, 0, 0, 4),
    ("cpop", MASK64, 0, 0, 64), ("cpop", 0x5555_5555_5555_5555, 0, 0, 32), ("cpop", 0, 0, 0, 0),
    ("cpopw", 0xFFFF_FFFF_0000_000F, 0, 0, 4), ("cpopw", 0xFFFF_FFFF, 0, 0, 32),
    # min/max, signed and unsigned
    ("max", MASK64, 1, 0, 1), ("maxu", MASK64, 1, 0, MASK64),
    ("min", MASK64, 1, 0, MASK64), ("minu", MASK64, 1, 0, 1),
    ("min", INT64_MIN, INT64_MAX, 0, INT64_MIN), ("max", INT64_MIN, INT64_MAX, 0, INT64_MAX),
    # sign and zero extension
    ("sext.b", 0x80, 0, 0, 0xFFFF_FFFF_FFFF_FF80), ("sext.b", 0x7F, 0, 0, 0x7F),
    ("sext.b", 0x1234_5680, 0, 0, 0xFFFF_FFFF_FFFF_FF80),
    ("sext.h", 0x8000, 0, 0, 0xFFFF_FFFF_FFFF_8000), ("sext.h", 0xFFFF_7FFF, 0, 0, 0x7FFF),
    ("zext.h", 0xFFFF_FFFF_FFFF_8000, 0, 0, 0x8000),
    # rotates (the amount is rs2 mod 64, or mod 32 for the W forms, which sign-extend)
    ("rol", 0x8000_0000_0000_0001, 1, 0, 3), ("rol", 0x1234, 64, 0, 0x1234),
    ("ror", 1, 1, 0, 1 << 63), ("ror", 0x1234, 65, 0, 0x91A),
    ("rori", 1, 0, 63, 2), ("rori", 0xABCD, 0, 0, 0xABCD),
    ("rolw", 0x8000_0001, 1, 0, 3), ("rolw", 0x4000_0000, 1, 0, 0xFFFF_FFFF_8000_0000),
    ("rolw", 0xFFFF_FFFF_0000_0001, 33, 0, 2),
    ("rorw", 1, 1, 0, 0xFFFF_FFFF_8000_0000), ("rorw", 0x0000_0002, 32, 0, 2),
    ("roriw", 0xFFFF_FFFF_0000_0001, 0, 0, 1), ("roriw", 0xFFFF_FFFF_8000_0000, 0, 0,
                                                  0xFFFF_FFFF_8000_0000),
    ("roriw", 1, 0, 31, 2),
    # bytes
    ("orc.b", 0x0001_0200_0000_00FF, 0, 0, 0x00FF_FF00_0000_00FF), ("orc.b", 0, 0, 0, 0),
    ("rev8", 0x0102_0304_0506_0708, 0, 0, 0x0807_0605_0403_0201),
    # Zbc: carry-less products (x + 1)^2 = x^2 + 1, and the high / reversed halves
    ("clmul", 3, 3, 0, 5), ("clmul", 1 << 63, 2, 0, 0), ("clmulh", 1 << 63, 2, 0, 1),
    ("clmulh", 3, 3, 0, 0), ("clmulr", 1 << 63, 1 << 63, 0, 1 << 63),
    ("clmulh", 1 << 63, 1 << 63, 0, 1 << 62), ("clmulr", 1, 1, 0, 0),
    ("clmul", MASK64, MASK64, 0, 0x5555_5555_5555_5555),
    ("clmulh", MASK64, MASK64, 0, 0x5555_5555_5555_5555),
    ("clmulr", MASK64, MASK64, 0, 0xAAAA_AAAA_AAAA_AAAA),
    # Zbs: the bit index is rs2 mod 64
    ("bset", 0, 63, 0, 1 << 63), ("bset", 0, 64, 0, 1), ("bclr", MASK64, 0, 0, MASK64 - 1),
    ("binv", 5, 0, 0, 4), ("binv", 5, 65, 0, 7), ("bext", 1 << 63, 63, 0, 1),
    ("bext", 1 << 63, 127, 0, 1), ("bext", 1 << 63, 62, 0, 0),
    ("bseti", 0, 0, 63, 1 << 63), ("bclri", MASK64, 0, 63, INT64_MAX),
    ("binvi", 0, 0, 32, 1 << 32), ("bexti", 0x10, 0, 4, 1), ("bexti", 0x10, 0, 5, 0),
    # Zicond
    ("czero.eqz", 0x1234, 0, 0, 0), ("czero.eqz", 0x1234, 1 << 63, 0, 0x1234),
    ("czero.nez", 0x1234, 0, 0, 0x1234), ("czero.nez", 0x1234, 5, 0, 0),
]


@pytest.mark.parametrize("name, a, b, imm, value", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_hand_checked_case(name, a, b, imm, value):
    assert run_op(name, a, b, imm) == value


def test_the_hand_checked_cases_cover_every_instruction():
    assert {c[0] for c in CASES} == {op.name for op in OPS}


def test_every_instruction_writing_x0_leaves_it_zero():
    code = [encode(op, ZERO, A1, A2, 1) for op in OPS]
    vcpu = run_code(code, {A1: 0x1234_5678_9ABC_DEF0, A2: 3})
    assert vcpu.get_x(ZERO) == 0 and vcpu.instret == len(OPS)


def test_rd_equal_to_both_sources():
    vcpu = run_code([OP_BY_NAME["sh3add"].encode(A0, A0, A0),
                     OP_BY_NAME["clmul"].encode(A1, A1, A1)], {A0: 3, A1: 3})
    assert vcpu.get_x(A0) == 27 and vcpu.get_x(A1) == 5


# ---------------------------------------------------------------------------
# Near misses: encodings next to these that no implemented extension defines
# ---------------------------------------------------------------------------

def _r(op, f3, f7, rs2=A2):
    return r_type(op, f3, f7, A0, A1, rs2)


def _i(op, f3, f12):
    return i_type(op, f3, A0, A1, 0) | (f12 << 20)


RESERVED = [
    (_r(0x3B, 4, 0x04, rs2=1), "OP-32 funct7 0000100 funct3 100, rs2 != 0 (Zbkb packw)"),
    (_r(0x33, 4, 0x04, rs2=0), "OP funct7 0000100 funct3 100 (Zbkb pack; RV32's zext.h)"),
    (_i(0x13, 5, 0x687), "OP-IMM funct3 101 funct12 0x687 (Zbkb brev8)"),
    (_i(0x13, 5, 0x698), "rev8's RV32 encoding"),
    (_i(0x13, 5, 0x288), "orc.b's neighbour funct12 0x288"),
    (_i(0x13, 1, 0x603), "OP-IMM funct12 0x603, between cpop and sext.b"),
    (_i(0x13, 1, 0x606), "OP-IMM funct12 0x606"),
    (_i(0x1B, 1, 0x604), "OP-IMM-32 funct12 0x604 (no sext.b for words)"),
    (_i(0x1B, 5, 0x620), "roriw with shamt[5] set"),
    (_r(0x33, 0, 0x05), "OP funct7 0000101 funct3 000"),
    (_r(0x33, 6, 0x07), "OP funct7 0000111 funct3 110, between czero.eqz and .nez"),
    (_r(0x33, 0, 0x07), "OP funct7 0000111 funct3 000"),
    (_r(0x33, 2, 0x14), "OP funct7 0010100 funct3 010 (Zbkx xperm4)"),
    (_r(0x33, 3, 0x30), "OP funct7 0110000 funct3 011 (rol is 001, ror 101)"),
    (_r(0x33, 2, 0x24), "OP funct7 0100100 funct3 010 (bclr is 001, bext 101)"),
    (_r(0x3B, 1, 0x10), "OP-32 funct7 0010000 funct3 001 (the shNadd.uw are 010/100/110)"),
    (_r(0x3B, 0, 0x05), "OP-32 funct7 0000101 funct3 000"),
]


@pytest.mark.parametrize("word, what", RESERVED, ids=[f"{w:#010x}" for w, _ in RESERVED])
def test_a_reserved_neighbour_is_illegal(word, what):
    vcpu, reason = run_until_exit([word])
    assert reason == EXCEPTION and vcpu.exit_cause == ILLEGAL and vcpu.exit_tval == word, what
    assert vcpu.exit_pc == CODE and vcpu.instret == 0


# ---------------------------------------------------------------------------
# Against the model: single instructions and random sequences, bare and under Sv39
# ---------------------------------------------------------------------------

EDGES = [0, 1, 2, 31, 32, 33, 63, 64, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF,
         0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, INT64_MAX, INT64_MIN,
         MASK64, MASK64 - 1, 0x0101_0101_0101_0101, 0x8080_8080_8080_8080]
values = st.one_of(st.sampled_from(EDGES), st.integers(0, MASK64),
                   st.integers(0, 0xFF).map(lambda v: v << 56),
                   st.lists(st.sampled_from([0, 0xFF, 1, 0x80]), min_size=8, max_size=8)
                   .map(lambda bs: int.from_bytes(bytes(bs), "little")))


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
@examples(40)
@given(a=values, b=values, imm=st.integers(0, 63))
def test_instruction_agrees_with_the_model(op, a, b, imm):
    imm = imm & (31 if op.form == "i5" else 63)
    assert run_op(op.name, a, b, imm) == model(op, a, b, imm), f"{op.name} {a:#x} {b:#x} {imm}"


REGS = [0, 5, 6, 7, 10, 11, 12, 13]          # x0 included: writes to it must vanish


@st.composite
def sequences(draw):
    """A program of 1..24 extension instructions over a few registers, and their values."""
    items = draw(st.lists(st.tuples(st.sampled_from(OPS), st.sampled_from(REGS),
                                    st.sampled_from(REGS), st.sampled_from(REGS),
                                    st.integers(0, 63)), min_size=1, max_size=24))
    init = {r: draw(values) for r in REGS if r}
    return items, init


def run_model(items, init) -> dict[int, int]:
    regs = {0: 0, **init}
    for op, rd, rs1, rs2, imm in items:
        imm &= 31 if op.form == "i5" else 63
        if rd:
            regs[rd] = model(op, regs[rs1], regs[rs2], imm)
    return regs


def program(items) -> list[int]:
    return [encode(op, rd, rs1, rs2, imm & (31 if op.form == "i5" else 63))
            for op, rd, rs1, rs2, imm in items]


@examples(300)
@given(sequences())
def test_random_sequences_agree_with_the_model(seq):
    items, init = seq
    vcpu = run_code(program(items), init)
    want = run_model(items, init)
    assert {r: vcpu.get_x(r) for r in REGS} == want


# the "v" environment: U-mode code on an Sv39 user page, the page tables in guest RAM
USER_VA = 0x4000_0000
PT = RAM_BASE + 0x8_0000


def run_in_user_mode_under_sv39(code: list[int], regs: dict[int, int]):
    from corekit import ECALL, new_vcpu
    memory = GuestMemory(RAM_BASE, 1 << 20)
    memory.write(CODE, code_bytes(code + [ECALL]))
    v, r, x, u, a = 1, 2, 8, 16, 64
    l2, l1, l0 = PT, PT + 0x1000, PT + 0x2000
    for table, index, entry in ((l2, (USER_VA >> 30) & 511, ((l1 >> 12) << 10) | v),
                                (l1, (USER_VA >> 21) & 511, ((l0 >> 12) << 10) | v),
                                (l0, (USER_VA >> 12) & 511,
                                 ((CODE >> 12) << 10) | v | r | x | u | a)):
        memory.write(table + 8 * index, entry.to_bytes(8, "little"))
    vcpu = new_vcpu(memory)
    vcpu.set_mode(0, 0, 8, PT, False, False)
    vcpu.pc = USER_VA
    for reg_, value in regs.items():
        vcpu.set_x(reg_, value)
    return run_to_ecall(vcpu)


@examples(100)
@given(sequences())
def test_random_sequences_in_user_mode_under_sv39_agree_with_the_model(seq):
    items, init = seq
    vcpu = run_in_user_mode_under_sv39(program(items), init)
    assert vcpu.exit_pc == USER_VA + 4 * len(items)
    assert {r: vcpu.get_x(r) for r in REGS} == run_model(items, init)


def test_every_instruction_runs_in_user_mode_under_sv39():
    code = [encode(op, 10 + i % 6, 5, 6, 7) for i, op in enumerate(OPS)]
    vcpu = run_in_user_mode_under_sv39(code, {5: 0x8765_4321_0FED_CBA9, 6: 12})
    assert vcpu.instret == len(OPS)
    regs = {5: 0x8765_4321_0FED_CBA9, 6: 12}
    for i, op in enumerate(OPS):
        regs[10 + i % 6] = model(op, regs[5], regs[6], 7)
    assert all(vcpu.get_x(r) == regs[r] for r in range(10, 16))


@pytest.mark.parametrize("engine", ["none"])        # compares the two engines itself
def test_both_engines_count_and_stop_exactly_in_a_loop_of_extension_instructions(engine):
    """The budget stops at the same instruction wherever the engines hand over."""
    from corekit import addi, bne, make_vcpu, run
    body = [OP_BY_NAME["sh1add"].encode(A0, A0, A1), OP_BY_NAME["rori"].encode(A1, A1, 3),
            OP_BY_NAME["czero.nez"].encode(A2, A0, A2), addi(12, 12, 1)]
    code = body + [addi(13, 13, -1), bne(13, ZERO, -4 * (len(body) + 1))]
    results = []
    for name in ENGINES:
        with using_engine(name):
            vcpu = make_vcpu(code, {A0: 1, A1: 0xF0, 13: 10_000})
            run(vcpu, 20_003)
            results.append((vcpu.instret, vcpu.pc, vcpu.x))
    assert results[0] == results[1] and results[0][0] == 20_003
