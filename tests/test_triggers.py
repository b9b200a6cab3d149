"""Sdtrig debug triggers (riscv-debug-spec, "Sdtrig"): the trigger CSRs, matching in the
core on both engines, and guests that program them through the hypervisor.

What the riscv-tests rv64mi "breakpoint" test probes -- tselect, tdata1 types read
back, breakpoints on execute, load and store in M-mode with MIE set, a second
trigger -- is covered by the guests at the end; the rest pins down the choices the
spec leaves to the hart (hvemu/hypervisor/triggers.py's docstring lists them).
Neither Unicorn nor QEMU's ISA tests cover these, so the expectations are the
spec's, worked out by hand.
"""
from __future__ import annotations

import pytest
from corekit import (
    A0,
    A1,
    A2,
    CODE,
    DATA,
    ECALL,
    ENGINES,
    S0,
    SP,
    addi,
    amo,
    bne,
    c_addi,
    c_lw,
    c_sdsp,
    code_bytes,
    csrrs,
    jalr,
    lb,
    ld,
    lr_d,
    lw,
    make_vcpu,
    nop,
    run,
    run_to_ecall,
    sc_d,
    sd,
    sw,
    using_engine,
)
from extkit import cbo_clean, cbo_zero, prefetch_r, run_guest
from hvemu._core import EXCEPTION, TRIGGER_COUNT

from hvemu.hypervisor.csr import IllegalCsrAccess, M, S, VirtualCsrFile
from hvemu.hypervisor.triggers import (
    CHAIN,
    DISABLED_TDATA1,
    EXECUTE,
    LOAD,
    M6_HIT0,
    M6_SELECT,
    M_BIT,
    MC_HIT,
    MC_SELECT,
    MC_TIMING,
    S_BIT,
    STORE,
    TDATA1,
    TDATA2,
    TDATA3,
    TINFO,
    TSELECT,
    U_BIT,
    TriggerModule,
)

BREAKPOINT, ILLEGAL = 3, 2
MIE, SIE = 1 << 3, 1 << 1
TYPE2, TYPE6 = 2 << 60, 6 << 60
DMODE = 1 << 59


def mcontrol(*bits, match=0, size=0, action=0):
    """A type 2 tdata1: sizelo in 17:16, sizehi in 22:21."""
    v = TYPE2 | (match << 7) | (action << 12) | ((size & 3) << 16) | ((size >> 2) << 21)
    for b in bits:
        v |= b
    return v


def mcontrol6(*bits, match=0, size=0, action=0):
    v = TYPE6 | (match << 7) | (action << 12) | (size << 16)
    for b in bits:
        v |= b
    return v


@pytest.fixture
def csr():
    return VirtualCsrFile(0, lambda: 0, lambda: 0)


# ===================================================================== the CSRs

def test_there_are_four_triggers_and_tselect_keeps_only_existing_ones(csr):
    assert TRIGGER_COUNT == 4
    for i in range(4):
        csr.write(TSELECT, i, M)
        assert csr.read(TSELECT, M) == i
    for bad in (4, 1 << 63):
        csr.write(TSELECT, bad, M)
        assert csr.read(TSELECT, M) == 3


def test_tinfo_says_version_1_with_types_2_6_and_15(csr):
    assert csr.read(TINFO, M) == (1 << 24) | (1 << 2) | (1 << 6) | (1 << 15)
    csr.write(TINFO, 0, M)                         # read-only fields: the write is ignored
    assert csr.read(TINFO, M) == (1 << 24) | 0x8044


def test_every_trigger_starts_disabled(csr):
    for i in range(4):
        csr.write(TSELECT, i, M)
        assert csr.read(TDATA1, M) == DISABLED_TDATA1 == 15 << 60
        assert csr.read(TDATA2, M) == 0


@pytest.mark.parametrize("value", [
    mcontrol(M_BIT, EXECUTE), mcontrol(M_BIT, LOAD), mcontrol(M_BIT, STORE),
    mcontrol(M_BIT, S_BIT, U_BIT, LOAD, STORE, EXECUTE, match=2, size=3),
    mcontrol(U_BIT, STORE, match=13, size=5), mcontrol(S_BIT, LOAD, size=9),
    mcontrol6(M_BIT, EXECUTE), mcontrol6(S_BIT, LOAD, STORE, match=1, size=6),
    mcontrol6(U_BIT, EXECUTE, match=9, size=2), mcontrol6(M_BIT, LOAD, CHAIN, match=12),
], ids=hex)
def test_a_supported_tdata1_reads_back_as_written(csr, value):
    """riscv-tests' breakpoint test writes the first three and skips if they do not read back."""
    csr.write(TDATA1, value, M)
    assert csr.read(TDATA1, M) == value


@pytest.mark.parametrize("value, why", [
    (0, "0 disables the trigger"),
    (1 << 60, "type 1, legacy SiFive"), (3 << 60 | M_BIT, "icount"), (4 << 60, "itrigger"),
    (5 << 60, "etrigger"), (7 << 60, "tmexttrigger"), (12 << 60, "custom"),
    (mcontrol(M_BIT, EXECUTE, action=1), "action 1 needs Debug Mode"),
    (mcontrol6(M_BIT, EXECUTE, action=2), "trace actions"),
    (mcontrol6(M_BIT, EXECUTE, action=8), "external output actions"),
    (mcontrol(M_BIT, LOAD) | MC_SELECT, "data matches"),
    (mcontrol6(M_BIT, LOAD) | M6_SELECT, "data matches"),
    (mcontrol(M_BIT, EXECUTE, match=1), "napot in mcontrol: maskmax is 0"),
    (mcontrol6(M_BIT, EXECUTE, match=6), "reserved match"),
    (mcontrol6(M_BIT, EXECUTE, match=15), "reserved match"),
    (mcontrol6(M_BIT, EXECUTE, size=7), "reserved size"),
    (mcontrol(M_BIT, EXECUTE, size=10), "reserved size"),
], ids=lambda v: hex(v) if isinstance(v, int) else v)
def test_a_trigger_this_hart_cannot_honour_reads_back_disabled(csr, value, why):
    csr.write(TDATA1, mcontrol(M_BIT, STORE), M)
    csr.write(TDATA1, value, M)
    assert csr.read(TDATA1, M) == DISABLED_TDATA1, why


@pytest.mark.parametrize("extra, kind", [
    (DMODE, mcontrol), (DMODE, mcontrol6),            # only Debug Mode may set dmode
    (0x3F << 53, mcontrol),                           # maskmax: read-only 0
    (MC_TIMING, mcontrol),                            # timing: always "before"
    ((1 << 26) | (1 << 24) | (1 << 23) | (1 << 5), mcontrol6),   # uncertain, vs, vu, ...en
], ids=["mcontrol-dmode", "mcontrol6-dmode", "maskmax", "timing", "uncertain-vs-vu"])
def test_read_only_fields_read_zero(csr, extra, kind):
    value = kind(M_BIT, EXECUTE)
    csr.write(TDATA1, value | extra, M)
    assert csr.read(TDATA1, M) == value


def test_the_last_trigger_cannot_chain_to_a_next_one(csr):
    csr.write(TSELECT, 2, M)
    csr.write(TDATA1, mcontrol6(M_BIT, LOAD, CHAIN), M)
    assert csr.read(TDATA1, M) & CHAIN
    csr.write(TSELECT, 3, M)
    csr.write(TDATA1, mcontrol6(M_BIT, LOAD, CHAIN), M)
    assert csr.read(TDATA1, M) == mcontrol6(M_BIT, LOAD)


def test_hit_bits_are_writable(csr):
    csr.write(TDATA1, mcontrol(M_BIT, LOAD) | MC_HIT, M)
    assert csr.read(TDATA1, M) & MC_HIT
    csr.write(TDATA1, mcontrol6(M_BIT, LOAD) | M6_HIT0 | (1 << 25), M)
    assert csr.read(TDATA1, M) & (M6_HIT0 | 1 << 25) == M6_HIT0 | 1 << 25


def test_each_trigger_has_its_own_registers(csr):
    for i in range(4):
        csr.write(TSELECT, i, M)
        csr.write(TDATA1, mcontrol6(M_BIT, LOAD, match=2 if i & 1 else 0), M)
        csr.write(TDATA2, 0x1000 * (i + 1), M)
    for i in range(4):
        csr.write(TSELECT, i, M)
        assert csr.read(TDATA2, M) == 0x1000 * (i + 1)
        assert (csr.read(TDATA1, M) >> 7) & 15 == (2 if i & 1 else 0)


def test_tdata2_holds_any_64_bit_address_and_tdata3_reads_zero(csr):
    csr.write(TDATA1, mcontrol6(M_BIT, LOAD), M)
    for value in (0xFFFF_FFFF_FFFF_F000, 0x8000_0000, (1 << 64) - 1, 0):
        csr.write(TDATA2, value, M)
        assert csr.read(TDATA2, M) == value
    csr.write(TDATA3, (1 << 64) - 1, M)
    assert csr.read(TDATA3, M) == 0


def test_maskmax6_is_63_by_the_specs_discovery_sequence(csr):
    csr.write(TDATA1, 0, M)
    csr.write(TDATA2, 0, M)
    csr.write(TDATA1, mcontrol6(M_BIT, LOAD, match=1), M)
    assert (csr.read(TDATA1, M) >> 7) & 15 == 1                # napot is supported
    csr.write(TDATA2, (1 << 64) - 1, M)
    t2 = csr.read(TDATA2, M)
    assert max(i for i in range(64) if not t2 >> i & 1) + 1 == 63


@pytest.mark.parametrize("number", [0x7A5, 0x7A8, 0x5A8, 0x7AA], ids=["tcontrol", "mcontext",
                                                                       "scontext", "mscontext"])
def test_the_optional_trigger_csrs_are_not_there(csr, number):
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, M)


@pytest.mark.parametrize("number", [TSELECT, TDATA1, TDATA2, TDATA3, TINFO])
def test_the_trigger_csrs_are_machine_mode_only(csr, number):
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, S)


# ============================================================ arming, by mode

def view_flags(tm, priv, mstatus=0, medeleg=0):
    return [flags for _t2, flags, _m, _s in tm.core_view(priv, mstatus, medeleg)]


ARMED = 8


@pytest.mark.parametrize("priv, mstatus, medeleg, armed", [
    (M, MIE, 0, True), (M, 0, 0, False),             # M: only with mstatus.MIE set
    (S, 0, 0, True),                                 # S, breakpoints to M: always
    (S, 0, 1 << 3, False), (S, SIE, 1 << 3, True),   # S, breakpoints to S: with SIE
    (0, 0, 1 << 3, True),                            # U: always
])
def test_a_trigger_can_fire_only_where_its_handler_cannot_be_reentered(priv, mstatus,
                                                                       medeleg, armed):
    tm = TriggerModule()
    mode = {M: M_BIT, S: S_BIT, 0: U_BIT}[priv]
    tm.tdata1[0] = tm.legal_tdata1(0, mcontrol6(mode, EXECUTE))
    tm.tdata1[1] = tm.legal_tdata1(1, mcontrol6((M_BIT | S_BIT | U_BIT) ^ mode, EXECUTE))
    flags = view_flags(tm, priv, mstatus, medeleg)
    assert bool(flags[0] & ARMED) == armed
    assert not flags[1] & ARMED                      # not enabled in this mode


# ====================================================== matching in the core

@pytest.fixture(params=ENGINES)
def engine(request):
    with using_engine(request.param):
        yield request.param


def armed_vcpu(code, triggers, regs=None, mem=None, priv=M):
    """A vcpu with code (then ecall) and the given (tdata1, tdata2) triggers armed as the
    hypervisor would arm them at priv with MIE set."""
    tm = TriggerModule()
    for i, (t1, t2) in enumerate(triggers):
        tm.tdata1[i] = tm.legal_tdata1(i, t1)
        tm.tdata2[i] = t2
        assert tm.tdata1[i] == t1, "not a supported trigger"
    vcpu = make_vcpu(code_bytes(list(code) + [ECALL]), regs, mem)
    vcpu.set_triggers(tm.core_view(priv, MIE, 0))
    return vcpu


def expect_breakpoint(vcpu, pc, tval, fired=0b1):
    reason = run(vcpu)
    assert reason == EXCEPTION and vcpu.exit_cause == BREAKPOINT, f"exit {reason}"
    assert (vcpu.exit_pc, vcpu.exit_tval, vcpu.exit_value) == (pc, tval, fired)
    assert vcpu.pc == pc


@pytest.mark.parametrize("kind", [mcontrol, mcontrol6])
def test_an_execute_trigger_fires_before_the_instruction(engine, kind):
    vcpu = armed_vcpu([addi(A0, A0, 1), addi(A0, A0, 10), addi(A0, A0, 100)],
                      [(kind(M_BIT, EXECUTE), CODE + 4)])
    expect_breakpoint(vcpu, CODE + 4, CODE + 4)
    assert vcpu.get_x(A0) == 1 and vcpu.instret == 1


def test_an_execute_trigger_matches_any_byte_of_the_instruction(engine):
    vcpu = armed_vcpu([nop(), addi(A0, A0, 1)], [(mcontrol6(M_BIT, EXECUTE), CODE + 6)])
    expect_breakpoint(vcpu, CODE + 4, CODE + 4)


@pytest.mark.parametrize("kind", [mcontrol, mcontrol6])
def test_a_load_trigger_fires_before_the_load_with_its_address(engine, kind):
    vcpu = armed_vcpu([lw(A0, A1, 8)], [(kind(M_BIT, LOAD), DATA + 8)], {A1: DATA, A0: 7},
                      {DATA + 8: 0x1234})
    expect_breakpoint(vcpu, CODE, DATA + 8)
    assert vcpu.get_x(A0) == 7


@pytest.mark.parametrize("kind", [mcontrol, mcontrol6])
def test_a_store_trigger_fires_before_the_store(engine, kind):
    vcpu = armed_vcpu([sd(A0, A1, 0)], [(kind(M_BIT, STORE), DATA)], {A1: DATA, A0: -1})
    expect_breakpoint(vcpu, CODE, DATA)
    assert vcpu.memory.read(DATA, 8) == bytes(8)


def test_loads_do_not_match_store_triggers_nor_stores_load_triggers(engine):
    vcpu = armed_vcpu([sd(A0, A1, 0), ld(A2, A1, 8)],
                      [(mcontrol6(M_BIT, LOAD), DATA), (mcontrol6(M_BIT, STORE), DATA + 8)],
                      {A1: DATA, A0: 5})
    run_to_ecall(vcpu)
    assert vcpu.memory.read(DATA, 1) == b"\x05"


@pytest.mark.parametrize("off, size, hits", [(-4, 8, True), (-1, 2, True), (-8, 8, False),
                                             (1, 4, False), (0, 1, True)])
def test_an_address_trigger_matches_any_byte_the_access_touches(engine, off, size, hits):
    load = {1: lb, 2: lambda rd, rs1, imm: lb(rd, rs1, imm) | (1 << 12), 8: ld}.get(size, lw)
    vcpu = armed_vcpu([load(A0, A1, off)], [(mcontrol6(M_BIT, LOAD), DATA + 16)],
                      {A1: DATA + 16})
    if hits:
        expect_breakpoint(vcpu, CODE, DATA + 16 + off)
    else:
        run_to_ecall(vcpu)


@pytest.mark.parametrize("size_code, matches", [(0, {1, 4, 8}), (1, {1}), (3, {4}), (5, {8}),
                                                (4, set()), (6, set())])
def test_a_sized_trigger_matches_only_accesses_of_its_size(engine, size_code, matches):
    for size, load in ((1, lb), (4, lw), (8, ld)):
        vcpu = armed_vcpu([load(A0, A1, 0)], [(mcontrol6(M_BIT, LOAD, size=size_code), DATA)],
                          {A1: DATA})
        reason = run(vcpu)
        assert (reason == EXCEPTION and vcpu.exit_cause == BREAKPOINT) == (size in matches)


def test_an_execute_trigger_of_size_16_bits_matches_only_compressed_instructions(engine):
    code = [addi(A0, A0, 1), c_addi(A0, 1), c_addi(A0, 1)]
    vcpu = armed_vcpu(code, [(mcontrol6(M_BIT, EXECUTE, size=2, match=2), CODE)])
    expect_breakpoint(vcpu, CODE + 4, CODE + 4)
    # size 32 bits, at CODE + 4 or above: not the compressed ones, but the final ecall
    vcpu = armed_vcpu(code, [(mcontrol6(M_BIT, EXECUTE, size=3, match=2), CODE + 4)])
    expect_breakpoint(vcpu, CODE + 8, CODE + 8)
    assert vcpu.get_x(A0) == 3


# (match, tdata2, [(address, size, matches)])
MATCHES = [
    (2, DATA + 0x20, [(DATA + 0x1C, 4, False), (DATA + 0x1D, 4, True), (DATA + 0x40, 8, True)]),
    (3, DATA + 0x20, [(DATA + 0x20, 1, False), (DATA + 0x1F, 1, True), (DATA, 8, True)]),
    (1, DATA + 0x0F, [(DATA, 1, True), (DATA + 0x1C, 4, True), (DATA + 0x20, 1, False),
                      (DATA - 4, 4, False), (DATA - 2, 4, True)]),          # 32 bytes at DATA
    (1, DATA + 0x7FF, [(DATA + 0xFF8, 8, True), (DATA + 0x1000, 8, False)]),   # 4 KiB
    (8, DATA + 0x20, [(DATA + 0x20, 4, False), (DATA + 0x24, 4, True)]),    # not equal
    (9, DATA + 0x0F, [(DATA + 0x1C, 4, False), (DATA + 0x20, 4, True)]),    # not napot
    # mask low: low 32 bits & tdata2[63:32] == tdata2[31:0]
    (4, (0xFFFF_FFF0 << 32) | ((DATA + 0x40) & 0xFFFF_FFF0),
     [(DATA + 0x48, 4, True), (DATA + 0x50, 4, False)]),
    # mask high: high 32 bits & tdata2[63:32] == tdata2[31:0]
    (5, (0xFFFF_FFFF << 32) | 0, [(DATA, 8, True), (0xFFFF_FFFF_0000_0000 | DATA, 8, False)]),
    (12, (0xFFFF_FFF0 << 32) | ((DATA + 0x40) & 0xFFFF_FFF0),
     [(DATA + 0x48, 4, False), (DATA + 0x50, 4, True)]),                    # not mask low
    (13, (0xFFFF_FFFF << 32) | 0, [(DATA, 8, False)]),                      # not mask high
]


@pytest.mark.parametrize("match, tdata2, accesses", MATCHES,
                         ids=[f"match{m}-{i}" for i, (m, _t, _a) in enumerate(MATCHES)])
def test_match_modes(engine, match, tdata2, accesses):
    for addr, size, matches in accesses:
        load = {1: lb, 4: lw, 8: ld}[size]
        vcpu = armed_vcpu([load(A0, A1, 0)], [(mcontrol6(M_BIT, LOAD, match=match), tdata2)],
                          {A1: addr})
        reason = run(vcpu)
        fired = reason == EXCEPTION and vcpu.exit_cause == BREAKPOINT
        assert fired == matches, f"{size}-byte load at {addr:#x}"


def test_compressed_loads_and_stores_match_their_addresses(engine):
    vcpu = armed_vcpu([c_lw(A0, S0, 8)], [(mcontrol6(M_BIT, LOAD), DATA + 8)], {S0: DATA})
    expect_breakpoint(vcpu, CODE, DATA + 8)
    vcpu = armed_vcpu([c_sdsp(A0, 16)], [(mcontrol6(M_BIT, STORE), DATA + 16)], {SP: DATA})
    expect_breakpoint(vcpu, CODE, DATA + 16)


@pytest.mark.parametrize("insn, kinds", [
    (amo("amoadd", "d", A0, A2, A1), {LOAD, STORE}), (lr_d(A0, A1), {LOAD}),
    (sc_d(A0, A2, A1), {STORE}),
], ids=["amo", "lr", "sc"])
def test_atomics_match_as_loads_and_or_stores(engine, insn, kinds):
    for kind in (LOAD, STORE):
        vcpu = armed_vcpu([insn], [(mcontrol6(M_BIT, kind), DATA)], {A1: DATA})
        reason = run(vcpu)
        assert (reason == EXCEPTION and vcpu.exit_cause == BREAKPOINT) == (kind in kinds)


@pytest.mark.parametrize("insn", [cbo_zero, cbo_clean])
def test_cache_block_operations_match_mcontrol6_store_triggers_on_the_whole_block(engine, insn):
    for t1, t2, fires in [(mcontrol6(M_BIT, STORE), DATA + 0x7F, True),
                          (mcontrol6(M_BIT, STORE), DATA + 0x80, False),
                          (mcontrol6(M_BIT, LOAD), DATA + 0x40, False),
                          (mcontrol6(M_BIT, STORE, size=5), DATA + 0x40, False),
                          (mcontrol(M_BIT, STORE), DATA + 0x40, False)]:
        vcpu = armed_vcpu([insn(A0)], [(t1, t2)], {A0: DATA + 0x45})
        if fires:
            expect_breakpoint(vcpu, CODE, DATA + 0x45)       # tval: rs1, as for faults
        else:
            run_to_ecall(vcpu)


def test_prefetch_hints_never_match(engine):
    vcpu = armed_vcpu([prefetch_r(A0, 0)], [(mcontrol6(M_BIT, LOAD, STORE), DATA)], {A0: DATA})
    run_to_ecall(vcpu)


def test_a_chain_fires_only_when_all_its_triggers_match_one_instruction(engine):
    """Trigger 0 (chain): execute at the second instruction; trigger 1: a load of DATA."""
    code = [lw(A0, A1, 0), lw(A0, A2, 0), lw(A0, A1, 0)]
    chain = [(mcontrol6(M_BIT, EXECUTE, CHAIN), CODE + 4), (mcontrol6(M_BIT, LOAD), DATA)]
    vcpu = armed_vcpu(code, chain, {A1: DATA, A2: DATA + 8})     # the 2nd loads DATA + 8
    run_to_ecall(vcpu)
    vcpu = armed_vcpu(code, chain, {A1: DATA + 8, A2: DATA})     # the 2nd loads DATA
    expect_breakpoint(vcpu, CODE + 4, DATA, fired=0b11)


def test_a_trigger_after_a_chain_fires_on_its_own(engine):
    triggers = [(mcontrol6(M_BIT, EXECUTE, CHAIN), CODE + 100), (mcontrol6(M_BIT, LOAD), DATA),
                (mcontrol6(M_BIT, EXECUTE), CODE + 4)]
    vcpu = armed_vcpu([lw(A0, A1, 0), nop()], triggers, {A1: DATA})
    expect_breakpoint(vcpu, CODE + 4, CODE + 4, fired=0b100)


def test_an_execute_trigger_comes_before_the_fetch_fault(engine):
    vcpu = armed_vcpu([jalr(0, A1, 0)], [(mcontrol6(M_BIT, EXECUTE), 0x40)], {A1: 0x40})
    expect_breakpoint(vcpu, 0x40, 0x40)
    stats = vcpu.shadow_stats
    assert stats["page_faults"] == 0


def test_an_armed_trigger_is_checked_on_every_instruction_after_a_long_loop(engine):
    """The fast path checks no trigger: while one is armed the core must not use it,
    or the loop (which it would run) would carry on past the trigger."""
    loop = [addi(A0, A0, -1), bne(A0, 0, -4), addi(A1, A1, 1)]
    vcpu = armed_vcpu(loop, [(mcontrol6(M_BIT, EXECUTE), CODE + 8)], {A0: 40_000})
    expect_breakpoint(vcpu, CODE + 8, CODE + 8)
    assert vcpu.instret == 80_000 and vcpu.get_x(A1) == 0


def test_with_no_trigger_armed_the_fast_path_runs(engine):
    vcpu = armed_vcpu([addi(A0, A0, 1), sw(A0, A1, 0)], [(mcontrol6(U_BIT, STORE), DATA)],
                      {A1: DATA})
    run_to_ecall(vcpu)
    assert vcpu.memory.read(DATA, 1) == b"\x01"
    assert (vcpu.shadow_stats["decodes"] > 0) == (engine == "fast")


# ==================================== guests, through the hypervisor's CSR handlers

BODY_BREAKPOINT = """
    csrsi mstatus, 8                 # MIE: M-mode triggers may fire
    csrw tselect, zero
    la a2, exec_here
    csrw tdata2, a2
    li a0, (2 << 60) | (1 << 6) | (1 << 2)      # mcontrol, m, execute
    csrw tdata1, a0
    csrr s1, tdata1                  # reads back as written
exec_here:
    addi s2, s2, 1                   # breakpoint: skipped by the handler
    lw a0, 0(a2)                     # an execute trigger: reads do not match
    li a0, (2 << 60) | (1 << 6) | (1 << 0)      # mcontrol, m, load
    csrw tdata1, a0
    la a2, data1
    csrw tdata2, a2
bp_load:
    lw s3, 0(a2)                     # breakpoint
    sw zero, 0(a2)                   # a load trigger: stores do not match
    li a0, (2 << 60) | (1 << 6) | (1 << 1)      # mcontrol, m, store
    csrw tdata1, a0
    li t0, 0x55
bp_store:
    sw t0, 0(a2)                     # breakpoint: nothing stored
    lw s4, 0(a2)
    li a0, 1
    csrw tselect, a0
    csrr s5, tselect
    li a0, (2 << 60) | (1 << 6) | (1 << 0)
    csrw tdata1, a0
    la a3, data2
    csrw tdata2, a3
bp_second:
    lw s6, 0(a3)                     # breakpoint (trigger 1)
bp_first_again:
    sw t0, 0(a2)                     # breakpoint (trigger 0, still a store trigger)
    csrw tselect, zero
    csrr s7, tdata1                  # hit is set
    csrci mstatus, 8
    sw t0, 0(a2)                     # MIE = 0: M-mode triggers cannot fire
    csrr s8, tcontrol                # not implemented: illegal
"""
DATA_BREAKPOINT = "data1: .word 0\ndata2: .word 7\n"


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_the_breakpoint_test_of_riscv_tests_in_our_words(reference):
    run = run_guest(BODY_BREAKPOINT, DATA_BREAKPOINT, reference=reference)
    exec_here, data1, data2 = (run.symbol(n) for n in ("exec_here", "data1", "data2"))
    causes = [(t.cause, t.tval) for t in run.traps]
    assert causes == [(BREAKPOINT, exec_here), (BREAKPOINT, data1), (BREAKPOINT, data1),
                      (BREAKPOINT, data2), (BREAKPOINT, data1), (ILLEGAL, csrrs(24, 0x7A5, 0))]
    assert [t.epc for t in run.traps[:5]] == [run.symbol(n) for n in (
        "exec_here", "bp_load", "bp_store", "bp_second", "bp_first_again")]
    assert all(t.mode == "M" for t in run.traps)
    assert run.x(9) == mcontrol(M_BIT, EXECUTE)                 # s1: read back
    assert run.x(18) == 0 and run.x(19) == 0                    # s2, s3: never ran
    assert run.x(20) == 0 and run.x(21) == 1 and run.x(22) == 0  # s4, s5, s6
    assert run.x(23) == mcontrol(M_BIT, STORE) | MC_HIT         # s7
    assert run.read(data1, 4) == 0x55                           # the last, MIE = 0, store


def test_the_specs_enumeration_finds_four_triggers():
    run = run_guest("""
    li s1, 0
1:  csrw tselect, s1
    csrr t0, tselect
    bne t0, s1, 2f
    csrr t0, tinfo
    li t1, 1
    andi t2, t0, 0xff
    beq t2, t1, 2f                   # info = 1: no such trigger
    addi s1, s1, 1
    li t1, 64
    blt s1, t1, 1b
2:
    """)
    assert run.x(9) == 4 and run.traps == []


def test_an_s_mode_trigger_delegated_to_s_fires_there_only_with_sie():
    run = run_guest("""
    li t0, 1 << 3
    csrw medeleg, t0                 # breakpoints go to S
    la a2, data1
    csrw tdata2, a2
    li a0, (6 << 60) | (1 << 4) | (1 << 0)      # mcontrol6, s, load
    csrw tdata1, a0
    jal ra, enter_s
    lw s2, 0(a2)                     # SIE = 0: does not fire
    csrsi sstatus, 2
    lw s3, 0(a2)                     # fires into S
    ecall
    csrr s4, tdata1
    """, "data1: .word 9\n")
    [trap] = run.traps
    assert (trap.cause, trap.mode, trap.tval) == (BREAKPOINT, "S", run.symbol("data1"))
    assert run.x(18) == 9 and run.x(19) == 0
    assert run.x(20) == mcontrol6(S_BIT, LOAD) | M6_HIT0


def test_a_user_mode_trigger_fires_in_u_into_m_and_not_in_m():
    run = run_guest("""
    la a2, spot
    csrw tdata2, a2
    li a0, (6 << 60) | (1 << 3) | (1 << 2)      # mcontrol6, u, execute
    csrw tdata1, a0
    csrsi mstatus, 8
    jal ra, spot                     # M runs spot: no trigger
    jal ra, enter_u
    jal ra, spot                     # U: fires, the handler skips the addi
    ecall
    j 1f
spot:
    addi s2, s2, 1
    ret
1:
    """)
    [trap] = run.traps
    assert (trap.cause, trap.mode, trap.epc) == (BREAKPOINT, "M", run.symbol("spot"))
    assert (trap.status >> 11) & 3 == 0                          # from U
    assert run.x(18) == 1
