"""Zicbom, Zicboz, Zicbop and Zihintpause (unprivileged spec, "Cache Management
Operations"; Zihintpause): the core on both engines, the CSR gating, the device tree.

The machine has no caches: cbo.clean/flush/inval only check that the block may be
accessed (as a load or a store would: store faults otherwise, tval = rs1); cbo.zero
stores zeros to the whole 64-byte block holding rs1 with a store's permissions,
A/D updates and faults, and drops decoded instructions it overwrites.  Below M,
menvcfg and senvcfg (CBIE, CBCFE, CBZE) decide which may run.  Unicorn implements
none of Zicbo*, and QEMU 7.2 neither: the expectations are worked out by hand from
the spec (the prefetch and pause hints, which Unicorn runs as ORI and FENCE, are in
tests/test_differential.py's random programs).
"""
from __future__ import annotations

import fdt
import pytest
from corekit import (
    A0,
    A1,
    A2,
    CODE,
    DATA,
    ECALL,
    ENGINES,
    MMIO_ADDR,
    RAM_BASE,
    addi,
    code_bytes,
    jal,
    lbu,
    make_vcpu,
    new_vcpu,
    run,
    run_code,
    run_to_ecall,
    run_until_exit,
    using_engine,
)
from extkit import (
    PAUSE,
    PTE_A,
    PTE_D,
    PTE_R,
    PTE_U,
    PTE_W,
    PTE_X,
    SV39,
    Sv39,
    cbo_clean,
    cbo_flush,
    cbo_inval,
    cbo_zero,
    prefetch_i,
    prefetch_r,
    prefetch_w,
    run_guest,
)
from hvemu._core import CBO_BLOCK_SIZE, EXCEPTION, GuestMemory

from hvemu.board import Board
from hvemu.boot.devicetree import build_device_tree
from hvemu.hypervisor.csr import M, VirtualCsrFile

ILLEGAL, STORE_ACCESS, STORE_PAGE = 2, 7, 15
BLOCK = 64
PATTERN = bytes(range(1, 129)) * 2           # 256 bytes, no zero byte
U_MODE, S_MODE, M_MODE = 0, 1, 3
CBIE_FLUSH, CBIE_INVAL, CBCFE, CBZE = 1 << 4, 3 << 4, 1 << 6, 1 << 7
ALL = CBIE_INVAL | CBCFE | CBZE
MANAGEMENT = [cbo_clean, cbo_flush, cbo_inval]
ALL_CBO = MANAGEMENT + [cbo_zero]


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request):
    """Run the test on the pre-decoded fast path and on the reference interpreter."""
    with using_engine(request.param):
        yield request.param


def expect_exception(vcpu, reason, cause, tval, pc):
    assert reason == EXCEPTION, f"exit {reason}"
    assert (vcpu.exit_cause, vcpu.exit_tval, vcpu.exit_pc) == (cause, tval, pc)
    assert vcpu.pc == pc and vcpu.instret == 0


# ---------------------------------------------------------------------------
# M-mode, bare addressing
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [0, 1, 0x27, 63])
def test_cbo_zero_zeros_exactly_the_block_holding_rs1(offset):
    block = DATA + 0x40
    vcpu = run_code([cbo_zero(A0)], {A0: block + offset}, {DATA: PATTERN})
    mem = vcpu.memory.read(DATA, 256)
    assert mem[:0x40] == PATTERN[:0x40]
    assert mem[0x40:0x80] == bytes(BLOCK)
    assert mem[0x80:] == PATTERN[0x80:]
    assert vcpu.get_x(A0) == block + offset and vcpu.instret == 1


def test_the_block_size_is_64_bytes_as_the_device_tree_says():
    assert CBO_BLOCK_SIZE == BLOCK
    cpu = fdt.parse_dtb(build_device_tree(Board(ram_size=1 << 20))).get_node("/cpus/cpu@0")
    for name in ("riscv,cbom-block-size", "riscv,cboz-block-size", "riscv,cbop-block-size"):
        assert list(cpu.get_property(name).data) == [BLOCK]
    extensions = list(cpu.get_property("riscv,isa-extensions").data)
    for ext in ("zicbom", "zicboz", "zicbop", "zihintpause", "zicond",
                "zba", "zbb", "zbc", "zbs", "sdtrig"):
        assert ext in extensions and f"_{ext}" in cpu.get_property("riscv,isa").value


@pytest.mark.parametrize("insn", MANAGEMENT)
def test_cbo_clean_flush_inval_leave_memory_as_it_is(insn):
    vcpu = run_code([insn(A0)], {A0: DATA + 5}, {DATA: PATTERN})
    assert vcpu.memory.read(DATA, 256) == PATTERN and vcpu.instret == 1


def test_cbo_zero_of_the_last_block_of_ram():
    end = RAM_BASE + (1 << 20)
    vcpu = run_code([cbo_zero(A0)], {A0: end - 1}, {end - 128: PATTERN[:128]})
    assert vcpu.memory.read(end - 128, 128) == PATTERN[:64] + bytes(64)


@pytest.mark.parametrize("addr", [MMIO_ADDR + 0x13, 0x1000 + 0x20, 0x30],
                         ids=["device", "rom", "nothing"])
def test_cbo_zero_outside_ram_raises_a_store_access_fault_with_rs1(addr):
    vcpu, reason = run_until_exit([cbo_zero(A0)], {A0: addr})
    expect_exception(vcpu, reason, STORE_ACCESS, addr, CODE)


@pytest.mark.parametrize("insn", MANAGEMENT)
@pytest.mark.parametrize("addr", [MMIO_ADDR + 0x13, 0x1000, 0x30], ids=["device", "rom", "nothing"])
def test_management_outside_ram_has_nothing_to_do(insn, addr):
    """Permitted wherever a load would be; a device's accesses are never cached, and the
    core cannot tell a hole from a device: no exit, no fault."""
    vcpu = run_code([insn(A0)], {A0: addr})
    assert vcpu.instret == 1


@pytest.mark.parametrize("f12", [3, 5, 6, 8, 0x7FF, 0xFFF])
def test_reserved_cbo_operations_are_illegal_even_in_m(f12):
    word = (f12 << 20) | (A0 << 15) | (2 << 12) | 0x0F
    vcpu, reason = run_until_exit([word], {A0: DATA})
    expect_exception(vcpu, reason, ILLEGAL, word, CODE)


@pytest.mark.parametrize("insn", ALL_CBO)
def test_a_cbo_with_rd_not_zero_is_reserved(insn):
    word = insn(A0) | (5 << 7)
    vcpu, reason = run_until_exit([word], {A0: DATA})
    expect_exception(vcpu, reason, ILLEGAL, word, CODE)


def test_cbo_zero_over_instructions_already_run_drops_them():
    """The body runs once, the tail zeros the block holding it and jumps back: the zero
    halfword there is an illegal instruction, not the old addi."""
    body, tail = CODE + 0x100, CODE + 0x200
    code = {CODE: code_bytes([jal(0, 0x100)]),
            body: code_bytes([addi(A1, A1, 1), addi(A1, A1, 1), jal(0, 0xF8)]),
            tail: code_bytes([cbo_zero(A0), addi(A2, A2, 1), jal(0, -0x108)])}
    vcpu = make_vcpu(b"", {A0: body + 4}, code)
    reason = run(vcpu)
    assert reason == EXCEPTION and vcpu.exit_cause == ILLEGAL
    assert vcpu.exit_pc == body and vcpu.exit_tval == 0
    assert vcpu.get_x(A1) == 2 and vcpu.get_x(A2) == 1
    assert vcpu.memory.read(body, BLOCK) == bytes(BLOCK)


def test_cbo_zero_of_its_own_block_makes_the_next_instruction_a_zero_halfword():
    block = CODE + 0x100
    code = {CODE: code_bytes([jal(0, 0x100)]),
            block: code_bytes([addi(A1, A1, 1), cbo_zero(A0), addi(A1, A1, 1)])}
    vcpu = make_vcpu(b"", {A0: block}, code)
    reason = run(vcpu)
    assert reason == EXCEPTION and vcpu.exit_cause == ILLEGAL
    assert (vcpu.exit_pc, vcpu.exit_tval, vcpu.get_x(A1)) == (block + 8, 0, 1)


def test_cbo_zero_of_the_watched_words_block_zeros_it_without_an_exit():
    """HTIF's tohost: a zero there is no command, so there is nothing to tell."""
    tohost = DATA + 0x48
    vcpu = make_vcpu(code_bytes([cbo_zero(A0), ECALL]), {A0: DATA + 0x40}, {DATA: PATTERN})
    vcpu.watch_store(tohost)
    run_to_ecall(vcpu)
    assert vcpu.memory.read(DATA + 0x40, BLOCK) == bytes(BLOCK)


@pytest.mark.parametrize("hint", [prefetch_i, prefetch_r, prefetch_w])
def test_prefetch_hints_do_nothing_even_on_addresses_that_do_not_exist(hint):
    vcpu = run_code([hint(A0, 0), hint(A0, -32), hint(A0, 2016)], {A0: 0x1234_5000})
    assert vcpu.instret == 3 and vcpu.get_x(A0) == 0x1234_5000


def test_pause_is_a_hint_that_retires_like_a_fence():
    vcpu = run_code([PAUSE, addi(A0, A0, 1), PAUSE], {A0: 1})
    assert vcpu.instret == 3 and vcpu.get_x(A0) == 2


# ---------------------------------------------------------------------------
# S and U, under Sv39 and with menvcfg/senvcfg
# ---------------------------------------------------------------------------

CODE_VA = 0x4000_0000
PAGE_VA = 0x4001_0000           # the data pages, page i at PAGE_VA + i * 4 KiB
FRAMES = RAM_BASE + 0x2_0000
PT_POOL = RAM_BASE + 0x8_0000


def paged_vcpu(code, priv, pages, regs=None, menvcfg=ALL, senvcfg=ALL, mxr=False, sumb=False):
    """A vcpu in priv under Sv39 with code at CODE_VA and data page i (flags pages[i],
    PATTERN in it) at PAGE_VA + i * 4 KiB -> FRAMES + i * 4 KiB."""
    memory = GuestMemory(RAM_BASE, 1 << 20)
    memory.write(CODE, code_bytes(list(code) + [ECALL]))
    pt = Sv39(memory, PT_POOL)
    code_flags = PTE_R | PTE_X | PTE_A | (PTE_U if priv == U_MODE else 0)
    pt.map(CODE_VA, CODE, code_flags)
    for i, flags in enumerate(pages):
        memory.write(FRAMES + i * 4096, PATTERN * 16)
        if flags is not None:
            pt.map(PAGE_VA + i * 4096, FRAMES + i * 4096, flags)
    vcpu = new_vcpu(memory)
    vcpu.set_mode(priv, priv, SV39, pt.root, sumb, mxr)
    vcpu.set_envcfg(menvcfg, senvcfg)
    vcpu.pc = CODE_VA
    for r, v in (regs or {}).items():
        vcpu.set_x(r, v)
    return vcpu, pt


def frame(vcpu, i, size=256):
    return vcpu.memory.read(FRAMES + i * 4096, size)


def test_cbo_zero_through_sv39_sets_a_and_d_and_zeros_the_frame():
    vcpu, pt = paged_vcpu([cbo_zero(A0)], S_MODE, [PTE_R | PTE_W], {A0: PAGE_VA + 0x85})
    run_to_ecall(vcpu)
    assert frame(vcpu, 0) == PATTERN[:0x80] + bytes(64) + PATTERN[0xC0:]
    assert pt.pte(PAGE_VA) & (PTE_A | PTE_D) == PTE_A | PTE_D


@pytest.mark.parametrize("flags", [None, PTE_R | PTE_A, PTE_R | PTE_X | PTE_A, PTE_X | PTE_A],
                         ids=["unmapped", "read-only", "read-execute", "execute-only"])
def test_cbo_zero_without_write_permission_is_a_store_page_fault_with_rs1(flags):
    vcpu, _ = paged_vcpu([cbo_zero(A0)], S_MODE, [flags], {A0: PAGE_VA + 0x85})
    reason = run(vcpu)
    expect_exception(vcpu, reason, STORE_PAGE, PAGE_VA + 0x85, CODE_VA)
    assert frame(vcpu, 0) == PATTERN


@pytest.mark.parametrize("insn", MANAGEMENT)
def test_management_on_a_read_only_page_is_permitted_and_sets_a_not_d(insn):
    vcpu, pt = paged_vcpu([insn(A0)], S_MODE, [PTE_R], {A0: PAGE_VA + 0x85})
    run_to_ecall(vcpu)
    assert pt.pte(PAGE_VA) & (PTE_A | PTE_D) == PTE_A
    assert frame(vcpu, 0) == PATTERN


@pytest.mark.parametrize("insn", MANAGEMENT)
@pytest.mark.parametrize("flags, mxr", [(None, False), (PTE_X | PTE_A, False),
                                        (PTE_R | PTE_A | PTE_U, False)],
                         ids=["unmapped", "execute-only", "user-page-from-s"])
def test_management_where_no_load_or_store_may_go_is_a_store_page_fault(insn, flags, mxr):
    vcpu, _ = paged_vcpu([insn(A0)], S_MODE, [flags], {A0: PAGE_VA + 0x85}, mxr=mxr)
    reason = run(vcpu)
    expect_exception(vcpu, reason, STORE_PAGE, PAGE_VA + 0x85, CODE_VA)


@pytest.mark.parametrize("insn", MANAGEMENT)
def test_management_on_an_execute_only_page_with_mxr_is_permitted(insn):
    vcpu, _ = paged_vcpu([insn(A0)], S_MODE, [PTE_X | PTE_A], {A0: PAGE_VA}, mxr=True)
    run_to_ecall(vcpu)


def test_cbo_zero_on_a_user_page_from_s_needs_sum():
    flags = PTE_R | PTE_W | PTE_U | PTE_A | PTE_D
    vcpu, _ = paged_vcpu([cbo_zero(A0)], S_MODE, [flags], {A0: PAGE_VA})
    expect_exception(vcpu, run(vcpu), STORE_PAGE, PAGE_VA, CODE_VA)
    vcpu, _ = paged_vcpu([cbo_zero(A0)], S_MODE, [flags], {A0: PAGE_VA}, sumb=True)
    run_to_ecall(vcpu)
    assert frame(vcpu, 0, 64) == bytes(64)


def test_cbo_zero_from_u_mode_on_a_user_page():
    flags = PTE_R | PTE_W | PTE_U
    vcpu, _ = paged_vcpu([cbo_zero(A0), lbu(A1, A0, 0)], U_MODE, [None, flags],
                         {A0: PAGE_VA + 4096 + 0xFFF, A1: 7})
    run_to_ecall(vcpu)
    assert frame(vcpu, 1, 4096)[-64:] == bytes(64) and vcpu.get_x(A1) == 0


# which cbo.* S and U may run, by menvcfg (S) and menvcfg & senvcfg (U)
GATING = [
    # (menvcfg, senvcfg, what S may run, what U may run)
    (0, ALL, set(), set()),
    (ALL, 0, set(ALL_CBO), set()),
    (ALL, ALL, set(ALL_CBO), set(ALL_CBO)),
    (CBZE, CBZE, {cbo_zero}, {cbo_zero}),
    (CBCFE, ALL, {cbo_clean, cbo_flush}, {cbo_clean, cbo_flush}),
    (CBIE_FLUSH, CBIE_INVAL, {cbo_inval}, {cbo_inval}),        # 0b01: inval flushes
    (CBIE_INVAL, CBIE_FLUSH, {cbo_inval}, {cbo_inval}),
    (CBIE_INVAL, CBCFE | CBZE, {cbo_inval}, set()),
]


@pytest.mark.parametrize("menvcfg, senvcfg, s_may, u_may", GATING)
@pytest.mark.parametrize("priv", [S_MODE, U_MODE], ids=["S", "U"])
@pytest.mark.parametrize("insn", ALL_CBO)
def test_envcfg_gates_each_cbo_below_m(insn, priv, menvcfg, senvcfg, s_may, u_may):
    flags = PTE_R | PTE_W | PTE_A | PTE_D | (PTE_U if priv == U_MODE else 0)
    vcpu, _ = paged_vcpu([insn(A0)], priv, [flags], {A0: PAGE_VA}, menvcfg, senvcfg)
    reason = run(vcpu)
    if insn in (s_may if priv == S_MODE else u_may):
        assert reason != EXCEPTION and vcpu.instret == 1
    else:
        expect_exception(vcpu, reason, ILLEGAL, insn(A0), CODE_VA)


@pytest.mark.parametrize("insn", ALL_CBO)
def test_m_mode_runs_every_cbo_whatever_menvcfg_says(insn):
    vcpu = make_vcpu(code_bytes([insn(A0), ECALL]), {A0: DATA})
    vcpu.set_envcfg(0, 0)
    run_to_ecall(vcpu)


def test_the_illegal_instruction_check_comes_before_translation():
    vcpu, _ = paged_vcpu([cbo_zero(A0)], S_MODE, [None], {A0: PAGE_VA}, menvcfg=0)
    expect_exception(vcpu, run(vcpu), ILLEGAL, cbo_zero(A0), CODE_VA)


# ---------------------------------------------------------------------------
# The CSRs, and a guest that programs them
# ---------------------------------------------------------------------------

@pytest.fixture
def csr():
    return VirtualCsrFile(0, lambda: 0, lambda: 0)


@pytest.mark.parametrize("engine", ["none"])
@pytest.mark.parametrize("number, writable", [(0x30A, (1 << 63) | 0xF1), (0x10A, 0xF1)],
                         ids=["menvcfg", "senvcfg"])
def test_envcfg_holds_fiom_cbie_cbcfe_cbze(csr, engine, number, writable):
    csr.write(number, (1 << 64) - 1, M)
    assert csr.read(number, M) == writable


@pytest.mark.parametrize("engine", ["none"])
@pytest.mark.parametrize("number", [0x30A, 0x10A], ids=["menvcfg", "senvcfg"])
def test_envcfg_cbie_keeps_its_value_on_a_write_of_the_reserved_0b10(csr, engine, number):
    csr.write(number, CBIE_FLUSH, M)
    csr.write(number, (2 << 4) | CBZE, M)
    assert csr.read(number, M) == CBIE_FLUSH | CBZE
    csr.write(number, CBIE_INVAL, M)
    assert csr.read(number, M) == CBIE_INVAL


@pytest.mark.parametrize("engine", ["none"])
def test_the_built_in_sbi_opens_the_cache_block_operations_to_s_as_opensbi_does(hello_vm,
                                                                            engine):
    hello_vm.hart.enter_supervisor(0, 0)
    assert hello_vm.hart.csr.menvcfg & ALL == ALL


@pytest.mark.parametrize("engine", ["none"])
@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_a_guest_enables_cbo_zero_for_s_through_menvcfg(engine, reference):
    """M clears menvcfg, S's cbo.zero traps; M sets CBZE, S's cbo.zero zeros the block."""
    run = run_guest("""
    csrw menvcfg, zero
    la a0, buf
    jal ra, enter_s
    cbo.zero (a0)            # illegal: logged, skipped
    ecall
    li t0, 0x80
    csrw menvcfg, t0
    jal ra, enter_s
    cbo.zero (a0)
    ecall
    """, data=".balign 64\nbuf: .fill 64, 1, 0xa5\n", reference=reference)
    [trap] = run.traps
    assert (trap.cause, trap.mode) == (ILLEGAL, "M")
    assert trap.tval == cbo_zero(A0)
    assert run.vm.memory.read(run.symbol("buf"), 64) == bytes(64)


@pytest.mark.parametrize("engine", ["none"])
def test_a_guest_gates_u_modes_cbo_zero_with_senvcfg(engine):
    """menvcfg allows everything; with senvcfg.CBZE = 0 U's cbo.zero traps, with 1 it runs."""
    run = run_guest("""
    li t0, 0xf0
    csrw menvcfg, t0
    csrw senvcfg, zero
    la a0, buf
    jal ra, enter_u
    cbo.zero (a0)            # illegal: logged, skipped
    ecall
    li t0, 0x80
    csrw senvcfg, t0
    jal ra, enter_u
    cbo.zero (a0)
    ecall
    """, data=".balign 64\nbuf: .fill 64, 1, 0xa5\n")
    [trap] = run.traps
    assert (trap.cause, trap.tval, trap.mode) == (ILLEGAL, cbo_zero(A0), "M")
    assert (trap.status >> 11) & 3 == U_MODE
    assert run.vm.memory.read(run.symbol("buf"), 64) == bytes(64)
