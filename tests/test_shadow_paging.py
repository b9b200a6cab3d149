"""Shadow paging: Sv39/Sv48 walks of hand-built guest page tables and the shadow TLB.

Each test builds page tables in guest RAM with `PageTables`, puts the vcpu in
S-mode (or U-mode) with `set_mode`, runs a few instructions fetched through the
translation and checks what the privileged spec ("Virtual address translation
process") says: the physical address reached, A/D updates, and page faults with
tval = the faulting virtual address.  Every test runs on both engines of the
core (the pre-decoded fast path and the reference interpreter); they share the
walker and the shadow TLB.

Physical layout (4 MiB of RAM at 0x8000_0000):
    0x8000_0000  code (mapped at CODE_VA by a 4 KiB leaf)
    0x8001_0000  4 KiB data frames, FRAME(i)
    0x8010_0000  page-table pool
    0x8020_0000  the 2 MiB frame of the megapage
Virtual layout (Sv39): 4 KiB pages at 0x4000_0000 + i*4 KiB, a megapage at
0x4020_0000 and 1 GiB gigapages at 0xc000_0000 and 0xffff_ffff_c000_0000, all
mapping into RAM.
"""

from __future__ import annotations

import pytest
from corekit import (
    A0,
    A1,
    A2,
    A3,
    A4,
    ECALL,
    ENGINES,
    RA,
    RAM_BASE,
    S0,
    SP,
    ZERO,
    addi,
    c_ld,
    c_lw,
    c_lwsp,
    c_nop,
    c_sd,
    c_sdsp,
    c_sw,
    code_bytes,
    describe_exit,
    jalr,
    lb,
    ld,
    new_vcpu,
    sd,
    sw,
    u64,
    using_engine,
)
from hvemu._core import EXCEPTION, LOAD, MMIO, STORE, SYSTEM, GuestMemory, VCpu

V, R, W, X, U, G, A, D = 1, 2, 4, 8, 16, 32, 64, 128
RW, RX, RWX = R | W, R | X, R | W | X
U_MODE, S_MODE, M_MODE = 0, 1, 3
BARE, SV39, SV48 = 0, 8, 9
FETCH_PAGE, LOAD_PAGE, STORE_PAGE = 12, 13, 15
LOAD_ACCESS = 5

RAM_SIZE = 4 << 20
CODE_PA = RAM_BASE
PT_POOL = RAM_BASE + 0x10_0000
MEGA_PA = RAM_BASE + 0x20_0000
CODE_VA = 0x4000_0000
MEGA_VA = 0x4020_0000
GIGA_VA = 0xC000_0000                    # -> RAM_BASE
HIGH_GIGA_VA = 0xFFFF_FFFF_C000_0000      # VPN[2] = 511, canonical (negative)


@pytest.fixture(autouse=True, params=ENGINES)
def engine(request):
    """Run the test on the pre-decoded fast path and on the reference interpreter."""
    with using_engine(request.param):
        yield request.param


def FRAME(i: int) -> int:           # upper case: reads like a constant
    return RAM_BASE + 0x1_0000 + i * 0x1000


def PAGE(i: int) -> int:
    """Virtual 4 KiB page i (page 0 is the code)."""
    return CODE_VA + i * 0x1000


def pte(pa: int, flags: int) -> int:
    return ((pa >> 12) << 10) | flags


class PageTables:
    """Radix page tables in guest RAM, allocated from a bump pool."""

    def __init__(self, memory: GuestMemory, levels: int = 3, pool: int = PT_POOL):
        self.memory, self.levels, self.next = memory, levels, pool
        self.root = self.alloc()

    def alloc(self) -> int:
        pa, self.next = self.next, self.next + 0x1000
        self.memory.write(pa, bytes(4096))
        return pa

    def read(self, addr: int) -> int:
        return int.from_bytes(self.memory.read(addr, 8), "little")

    def write(self, addr: int, value: int) -> None:
        self.memory.write(addr, u64(value).to_bytes(8, "little"))

    def slot(self, va: int, level: int = 0) -> int:
        """Address of the PTE for va at `level` (0 = 4 KiB leaf), making tables on the way."""
        table = self.root
        for i in range(self.levels - 1, level, -1):
            addr = table + ((va >> (12 + 9 * i)) & 0x1FF) * 8
            entry = self.read(addr)
            if not entry & V:
                entry = pte(self.alloc(), V)
                self.write(addr, entry)
            assert not entry & (R | W | X), "a leaf is in the way"
            table = (entry >> 10) << 12
        return table + ((va >> (12 + 9 * level)) & 0x1FF) * 8

    def map(self, va: int, pa: int, flags: int, level: int = 0) -> int:
        """Map va -> pa with a leaf at `level` (flags get V); return the PTE's address."""
        addr = self.slot(va, level)
        self.write(addr, pte(pa, flags | V))
        return addr

    def flags(self, va: int, level: int = 0) -> int:
        return self.read(self.slot(va, level)) & 0x3FF


class Guest:
    """A vcpu with code at CODE_VA, running translated in S-mode (or priv) from CODE_VA."""

    def __init__(self, code=(), regs=None, priv=S_MODE, mode=SV39, sum=False, mxr=False,
                 code_flags=RX):
        self.memory = GuestMemory(RAM_BASE, RAM_SIZE)
        self.memory.write(CODE_PA, code_bytes([*code, ECALL]))
        self.pt = PageTables(self.memory, levels=3 if mode == SV39 else 4)
        self.pt.map(CODE_VA, CODE_PA, code_flags)
        self.vcpu = new_vcpu(self.memory)
        self.priv, self.mode = priv, mode
        self.set_mode(sum=sum, mxr=mxr)
        for r, v in (regs or {}).items():
            self.vcpu.set_x(r, u64(v))

    def set_mode(self, priv=None, ls_priv=None, sum=False, mxr=False, root=None, mode=None):
        priv = self.priv if priv is None else priv
        self.vcpu.set_mode(priv, priv if ls_priv is None else ls_priv,
                           self.mode if mode is None else mode,
                           self.pt.root if root is None else root, sum, mxr)

    def run(self, pc=CODE_VA) -> int:
        """Run from pc (default: the start of the code) to the first exit."""
        self.vcpu.pc = pc
        return self.resume()

    def resume(self) -> int:
        self.vcpu.stop_at = self.vcpu.instret + 10_000
        return self.vcpu.run()

    def run_to_ecall(self, pc=CODE_VA) -> VCpu:
        reason = self.run(pc)
        assert reason == SYSTEM and self.vcpu.exit_insn == ECALL, describe_exit(self.vcpu, reason)
        return self.vcpu

    def expect_fault(self, cause: int, tval: int, pc: int | None = None,
                     start: int = CODE_VA) -> VCpu:
        """Run from start to an exception (at pc, if given)."""
        reason = self.run(start)
        vcpu = self.vcpu
        assert reason == EXCEPTION, describe_exit(vcpu, reason)
        assert (vcpu.exit_cause, vcpu.exit_tval) == (cause, tval), describe_exit(vcpu, reason)
        if pc is not None:
            assert vcpu.exit_pc == pc
        assert vcpu.pc == vcpu.exit_pc
        return vcpu

    def read_u64(self, pa: int) -> int:
        return int.from_bytes(self.memory.read(pa, 8), "little")

    def write_u64(self, pa: int, value: int) -> None:
        self.memory.write(pa, u64(value).to_bytes(8, "little"))


def load_guest(va, **kw):
    """A guest whose code is `ld a0, 0(a1)` with a1 = va."""
    return Guest([ld(A0, A1, 0)], {A1: va}, **kw)


def store_guest(va, value=0x5555, **kw):
    """A guest whose code is `sd a2, 0(a1)` with a1 = va, a2 = value."""
    return Guest([sd(A2, A1, 0)], {A1: va, A2: value}, **kw)


def jump_guest(va, **kw):
    """A guest whose code jumps to va."""
    return Guest([jalr(0, A1, 0)], {A1: va}, **kw)


# ---------------------------------------------------------------------------
# Translation: 4 KiB pages, megapages, gigapages
# ---------------------------------------------------------------------------

def test_translate_4k_leaf():
    g = Guest()
    g.pt.map(PAGE(1), FRAME(7), RW)
    assert g.vcpu.translate(PAGE(1) + 0x123, LOAD, S_MODE) == (FRAME(7) + 0x123, 0)


def test_translate_megapage_keeps_the_low_21_bits():
    g = Guest()
    g.pt.map(MEGA_VA, MEGA_PA, RW, level=1)
    assert g.vcpu.translate(MEGA_VA + 0x1_2345, LOAD, S_MODE) == (MEGA_PA + 0x1_2345, 0)
    assert g.vcpu.translate(MEGA_VA + 0x1F_FFFF, STORE, S_MODE) == (MEGA_PA + 0x1F_FFFF, 0)


def test_translate_gigapage_keeps_the_low_30_bits():
    g = Guest()
    g.pt.map(GIGA_VA, RAM_BASE, RW, level=2)
    assert g.vcpu.translate(GIGA_VA + 0x3_4567, LOAD, S_MODE) == (RAM_BASE + 0x3_4567, 0)


def test_load_and_store_through_a_4k_page():
    g = Guest([ld(A0, A1, 8), sd(A2, A1, 16)], {A1: PAGE(1), A2: 0x1234})
    g.pt.map(PAGE(1), FRAME(3), RW)
    g.write_u64(FRAME(3) + 8, 0xFEED)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0xFEED
    assert g.read_u64(FRAME(3) + 16) == 0x1234


def test_load_and_store_through_a_megapage():
    off = 0x1_2340
    g = Guest([ld(A0, A1, 0), sd(A2, A1, 8)], {A1: MEGA_VA + off, A2: 0x77})
    g.pt.map(MEGA_VA, MEGA_PA, RW, level=1)
    g.write_u64(MEGA_PA + off, 0xABCD)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0xABCD
    assert g.read_u64(MEGA_PA + off + 8) == 0x77


def test_load_and_store_through_a_gigapage():
    off = 0x9_0000
    g = Guest([ld(A0, A1, 0), sd(A2, A1, 8)], {A1: GIGA_VA + off, A2: 0x99})
    g.pt.map(GIGA_VA, RAM_BASE, RW, level=2)
    g.write_u64(RAM_BASE + off, 0xC0DE)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0xC0DE
    assert g.read_u64(RAM_BASE + off + 8) == 0x99


def test_load_through_a_gigapage_at_a_negative_canonical_address():
    g = load_guest(HIGH_GIGA_VA + 0x9_0000)
    g.pt.map(HIGH_GIGA_VA, RAM_BASE, RW, level=2)
    g.write_u64(RAM_BASE + 0x9_0000, 0x51)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0x51


def test_instructions_are_fetched_through_the_translation():
    g = Guest()
    g.memory.write(FRAME(2), code_bytes([ld(A0, A1, 0), ECALL]))
    g.pt.map(PAGE(5), FRAME(2), RX)
    g.pt.map(PAGE(6), FRAME(3), RW)
    g.vcpu.set_x(A1, PAGE(6))
    g.write_u64(FRAME(3), 42)
    g.run_to_ecall(pc=PAGE(5))
    assert g.vcpu.get_x(A0) == 42
    assert g.vcpu.exit_pc == PAGE(5) + 4 and g.vcpu.pc == PAGE(5) + 4


def test_code_runs_across_virtually_contiguous_physically_distant_pages():
    # A 32-bit instruction straddles PAGE(5) -> FRAME(9) and PAGE(6) -> FRAME(2).
    g = Guest()
    word = code_bytes([ld(A0, A1, 0)])
    g.memory.write(FRAME(9) + 0xFFE, word[:2])
    g.memory.write(FRAME(2), word[2:] + code_bytes([ECALL]))
    g.pt.map(PAGE(5), FRAME(9), RX)
    g.pt.map(PAGE(6), FRAME(2), RX)
    g.pt.map(PAGE(7), FRAME(3), RW)
    g.vcpu.set_x(A1, PAGE(7))
    g.write_u64(FRAME(3), 0x77)
    g.run_to_ecall(pc=PAGE(5) + 0xFFE)
    assert g.vcpu.get_x(A0) == 0x77


def test_instruction_straddling_into_an_unmapped_page_faults_at_the_second_page():
    g = Guest()
    g.memory.write(FRAME(9) + 0xFFC, code_bytes([c_nop(), ld(A0, A1, 0)])[:4])
    g.pt.map(PAGE(5), FRAME(9), RX)          # PAGE(6) is not mapped
    g.vcpu.pc = PAGE(5) + 0xFFC
    assert g.resume() == EXCEPTION
    assert (g.vcpu.exit_cause, g.vcpu.exit_tval) == (FETCH_PAGE, PAGE(6))
    assert g.vcpu.exit_pc == PAGE(5) + 0xFFE and g.vcpu.instret == 1


def test_misaligned_load_across_pages_reads_both_frames():
    g = load_guest(PAGE(2) + 0xFFC)
    g.pt.map(PAGE(2), FRAME(8), RW)
    g.pt.map(PAGE(3), FRAME(1), RW)         # physically before, not adjacent
    g.memory.write(FRAME(8) + 0xFFC, bytes.fromhex("11223344"))
    g.memory.write(FRAME(1), bytes.fromhex("55667788"))
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0x8877_6655_4433_2211


def test_misaligned_store_across_pages_writes_both_frames():
    g = store_guest(PAGE(2) + 0xFFD, 0x8877_6655_4433_2211)
    g.pt.map(PAGE(2), FRAME(8), RW)
    g.pt.map(PAGE(3), FRAME(1), RW)
    g.run_to_ecall()
    assert g.memory.read(FRAME(8) + 0xFFD, 3) == bytes.fromhex("112233")
    assert g.memory.read(FRAME(1), 6) == bytes.fromhex("445566778800")


def test_misaligned_store_faulting_on_the_second_page_stores_nothing():
    g = store_guest(PAGE(2) + 0xFFC, 0x8877_6655_4433_2211)
    g.pt.map(PAGE(2), FRAME(8), RW)
    g.pt.map(PAGE(3), FRAME(1), R)          # read-only
    g.expect_fault(STORE_PAGE, tval=PAGE(3), pc=CODE_VA)
    assert g.memory.read(FRAME(8) + 0xFFC, 4) == bytes(4)
    assert g.memory.read(FRAME(1), 4) == bytes(4)


# ---------------------------------------------------------------------------
# Accessed and dirty bits
# ---------------------------------------------------------------------------

def test_load_sets_a_but_not_d():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.run_to_ecall()
    assert g.pt.flags(PAGE(1)) & (A | D) == A


def test_store_sets_a_and_d():
    g = store_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.run_to_ecall()
    assert g.pt.flags(PAGE(1)) & (A | D) == A | D
    assert g.read_u64(FRAME(1)) == 0x5555


def test_fetch_sets_a_on_the_code_page_but_not_d():
    g = Guest()
    g.run_to_ecall()
    assert g.pt.flags(CODE_VA) & (A | D) == A


def test_a_page_first_read_then_written_gets_d_on_the_write():
    g = Guest([ld(A0, A1, 0), ECALL, sd(A2, A1, 0)], {A1: PAGE(1), A2: 0x66})
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.write_u64(FRAME(1), 0x11)
    assert g.run() == SYSTEM                      # after the load
    assert g.vcpu.get_x(A0) == 0x11
    assert g.pt.flags(PAGE(1)) & (A | D) == A
    g.vcpu.complete()
    assert g.resume() == SYSTEM                   # after the store
    assert g.pt.flags(PAGE(1)) & (A | D) == A | D
    assert g.read_u64(FRAME(1)) == 0x66


def test_a_read_then_write_in_one_run_sets_d_and_stores():
    g = Guest([ld(A0, A1, 0), sd(A2, A1, 0), ld(A3, A1, 0)], {A1: PAGE(1), A2: 0x66})
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.run_to_ecall()
    assert g.pt.flags(PAGE(1)) & (A | D) == A | D
    assert g.vcpu.get_x(A3) == 0x66 and g.read_u64(FRAME(1)) == 0x66


def test_a_and_d_are_set_on_a_megapage_leaf():
    g = store_guest(MEGA_VA + 0x1000)
    g.pt.map(MEGA_VA, MEGA_PA, RW, level=1)
    g.run_to_ecall()
    assert g.pt.flags(MEGA_VA, level=1) & (A | D) == A | D


def test_a_faulting_access_sets_neither_a_nor_d():
    g = store_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), R)
    g.expect_fault(STORE_PAGE, tval=PAGE(1))
    assert g.pt.flags(PAGE(1)) & (A | D) == 0


def test_translate_method_walks_like_an_access():
    g = Guest()
    g.pt.map(PAGE(1), FRAME(1), RW)
    assert g.vcpu.translate(PAGE(1), STORE, S_MODE) == (FRAME(1), 0)
    assert g.pt.flags(PAGE(1)) & (A | D) == A | D


# ---------------------------------------------------------------------------
# Permissions
# ---------------------------------------------------------------------------

def test_load_from_execute_only_page_faults_without_mxr():
    g = load_guest(PAGE(1) + 8)
    g.pt.map(PAGE(1), FRAME(1), X)
    g.expect_fault(LOAD_PAGE, tval=PAGE(1) + 8, pc=CODE_VA)
    assert g.vcpu.pc == CODE_VA and g.vcpu.instret == 0


def test_load_from_execute_only_page_succeeds_with_mxr():
    g = load_guest(PAGE(1) + 8, mxr=True)
    g.pt.map(PAGE(1), FRAME(1), X)
    g.write_u64(FRAME(1) + 8, 0xE0E0)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0xE0E0


def test_mxr_does_not_allow_stores_to_execute_only_pages():
    g = store_guest(PAGE(1), mxr=True)
    g.pt.map(PAGE(1), FRAME(1), X)
    g.expect_fault(STORE_PAGE, tval=PAGE(1))


@pytest.mark.parametrize("insn, cause", [
    (c_lw(A0, S0, 4), LOAD_PAGE), (c_ld(A0, S0, 8), LOAD_PAGE), (c_lwsp(A0, 4), LOAD_PAGE),
    (c_sw(A0, S0, 4), STORE_PAGE), (c_sd(A0, S0, 8), STORE_PAGE), (c_sdsp(A0, 8), STORE_PAGE),
], ids=["c.lw", "c.ld", "c.lwsp", "c.sw", "c.sd", "c.sdsp"])
def test_compressed_access_page_fault_reports_its_own_pc(insn, cause):
    g = Guest([c_nop(), insn, c_nop()], {S0: PAGE(1), SP: PAGE(1)})
    offset = 4 if insn in (c_lw(A0, S0, 4), c_lwsp(A0, 4), c_sw(A0, S0, 4)) else 8
    g.expect_fault(cause, tval=PAGE(1) + offset, pc=CODE_VA + 2)
    assert g.vcpu.instret == 1


def test_store_to_read_only_page_faults():
    g = store_guest(PAGE(1) + 0x10)
    g.pt.map(PAGE(1), FRAME(1), R)
    g.expect_fault(STORE_PAGE, tval=PAGE(1) + 0x10)
    assert g.read_u64(FRAME(1) + 0x10) == 0


def test_fetch_from_non_executable_page_faults_at_the_target():
    g = jump_guest(PAGE(1) + 4)
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.expect_fault(FETCH_PAGE, tval=PAGE(1) + 4, pc=PAGE(1) + 4)
    assert g.vcpu.instret == 1


def test_s_mode_load_from_u_page_faults_without_sum():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW | U)
    g.expect_fault(LOAD_PAGE, tval=PAGE(1))


def test_s_mode_store_to_u_page_faults_without_sum():
    g = store_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW | U)
    g.expect_fault(STORE_PAGE, tval=PAGE(1))


def test_s_mode_load_and_store_on_u_page_work_with_sum():
    g = Guest([ld(A0, A1, 0), sd(A2, A1, 8)], {A1: PAGE(1), A2: 3}, sum=True)
    g.pt.map(PAGE(1), FRAME(1), RW | U)
    g.write_u64(FRAME(1), 0x5A)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0x5A and g.read_u64(FRAME(1) + 8) == 3


@pytest.mark.parametrize("sum", [False, True])
def test_s_mode_fetch_from_u_page_always_faults(sum):
    g = jump_guest(PAGE(1), sum=sum)
    g.pt.map(PAGE(1), FRAME(1), RX | U)
    g.expect_fault(FETCH_PAGE, tval=PAGE(1), pc=PAGE(1))


def test_u_mode_runs_from_u_pages_and_uses_u_data():
    g = Guest([ld(A0, A1, 0), sd(A0, A1, 8)], {A1: PAGE(1)}, priv=U_MODE, code_flags=RX | U)
    g.pt.map(PAGE(1), FRAME(1), RW | U)
    g.write_u64(FRAME(1), 0x42)
    g.run_to_ecall()
    assert g.read_u64(FRAME(1) + 8) == 0x42


def test_u_mode_fetch_from_s_page_faults():
    g = Guest(priv=U_MODE, code_flags=RX)
    g.expect_fault(FETCH_PAGE, tval=CODE_VA, pc=CODE_VA)


@pytest.mark.parametrize("make, cause", [(load_guest, LOAD_PAGE), (store_guest, STORE_PAGE)])
@pytest.mark.parametrize("sum", [False, True])
def test_u_mode_access_to_s_page_faults_even_with_sum(make, cause, sum):
    g = make(PAGE(1), priv=U_MODE, code_flags=RX | U, sum=sum)
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.expect_fault(cause, tval=PAGE(1))


def test_m_mode_with_mprv_like_ls_priv_translates_loads_but_not_fetches():
    g = Guest([ld(A0, A1, 0)], {A1: PAGE(1)})
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.write_u64(FRAME(1), 0x3C)
    g.set_mode(priv=M_MODE, ls_priv=S_MODE)
    g.run_to_ecall(pc=CODE_PA)                # fetched bare, at the physical address
    assert g.vcpu.get_x(A0) == 0x3C


def test_priv_change_does_not_reuse_entries_of_another_privilege():
    g = Guest([ld(A0, A1, 0)], {A1: PAGE(1)}, sum=True)
    g.pt.map(PAGE(9), CODE_PA, RX | U)        # the same code for U-mode
    g.pt.map(PAGE(1), FRAME(1), RW)           # an S page
    g.run_to_ecall()                          # S-mode: works, and fills the shadow
    g.set_mode(priv=U_MODE, sum=True)
    g.expect_fault(LOAD_PAGE, tval=PAGE(1), pc=PAGE(9), start=PAGE(9))


def test_clearing_sum_takes_effect_without_a_flush():
    g = Guest([ld(A0, A1, 0)], {A1: PAGE(1)}, sum=True)
    g.pt.map(PAGE(1), FRAME(1), RW | U)
    g.run_to_ecall()
    g.set_mode(sum=False)
    g.expect_fault(LOAD_PAGE, tval=PAGE(1))


def test_clearing_mxr_takes_effect_without_a_flush():
    g = Guest([ld(A0, A1, 0)], {A1: PAGE(1)}, mxr=True)
    g.pt.map(PAGE(1), FRAME(1), X)
    g.run_to_ecall()
    g.set_mode(mxr=False)
    g.expect_fault(LOAD_PAGE, tval=PAGE(1))


# ---------------------------------------------------------------------------
# Malformed page tables and addresses: page faults with tval = the virtual address
# ---------------------------------------------------------------------------

ACCESSES = [(load_guest, LOAD_PAGE), (store_guest, STORE_PAGE), (jump_guest, FETCH_PAGE)]
ACCESS_IDS = ["load", "store", "fetch"]


@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_invalid_leaf_pte_faults(make, cause):
    g = make(PAGE(1) + 0x40)
    g.pt.write(g.pt.slot(PAGE(1)), pte(FRAME(1), RWX | A | D))      # V clear
    g.expect_fault(cause, tval=PAGE(1) + 0x40)


@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_invalid_non_leaf_pte_faults(make, cause):
    va = 0x1_4000_0000                        # VPN[2] = 5: nothing mapped there
    g = make(va)
    g.expect_fault(cause, tval=va)


@pytest.mark.parametrize("flags", [W, W | X], ids=["W", "WX"])
@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_write_without_read_pte_faults(make, cause, flags):
    g = make(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), flags)
    g.expect_fault(cause, tval=PAGE(1))


@pytest.mark.parametrize("bit", [54, 57, 60, 61, 62, 63])
@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_reserved_high_pte_bits_fault(make, cause, bit):
    g = make(PAGE(1) + 8)
    g.pt.write(g.pt.slot(PAGE(1)), pte(FRAME(1), V | RWX) | (1 << bit))
    g.expect_fault(cause, tval=PAGE(1) + 8)


def test_reserved_bit_in_a_non_leaf_pte_faults():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW)
    l1_slot = g.pt.slot(PAGE(1), level=2)
    g.pt.write(l1_slot, g.pt.read(l1_slot) | (1 << 60))
    # the code page shares this non-leaf PTE, so even the fetch faults
    g.expect_fault(FETCH_PAGE, tval=CODE_VA)


@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_misaligned_megapage_faults(make, cause):
    g = make(MEGA_VA + 0x1_0008)
    g.pt.map(MEGA_VA, MEGA_PA + 0x1000, RWX, level=1)     # PPN[0] != 0
    g.expect_fault(cause, tval=MEGA_VA + 0x1_0008)


@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_misaligned_gigapage_faults(make, cause):
    g = make(GIGA_VA + 0x10)
    g.pt.map(GIGA_VA, MEGA_PA, RWX, level=2)             # PPN[1] != 0
    g.expect_fault(cause, tval=GIGA_VA + 0x10)


def test_non_leaf_pte_at_the_last_level_faults():
    g = load_guest(PAGE(1))
    g.pt.write(g.pt.slot(PAGE(1)), pte(FRAME(1), V))          # a pointer, at level 0
    g.expect_fault(LOAD_PAGE, tval=PAGE(1))


NON_CANONICAL = [0x0000_0040_0000_0000,      # bit 38 set, bits 63:39 clear
                 0x0000_007F_C000_0000,      # HIGH_GIGA_VA without its sign extension
                 0x8000_0000_4000_0000,      # PAGE(0) with bit 63 set
                 0xFFFF_FF80_0000_0000 ^ (1 << 50)]


@pytest.mark.parametrize("va", NON_CANONICAL, ids=hex)
@pytest.mark.parametrize("make, cause", ACCESSES, ids=ACCESS_IDS)
def test_non_canonical_address_faults(make, cause, va):
    g = make(va)
    g.pt.map(HIGH_GIGA_VA, RAM_BASE, RWX, level=2)
    g.expect_fault(cause, tval=va)


def test_page_table_outside_ram_raises_access_fault():
    va = 0x4040_0000                          # VPN[1] = 2: not the code's L0 table
    g = load_guest(va)
    g.pt.map(va, FRAME(1), RW)
    g.pt.write(g.pt.slot(va, level=1), pte(0x2000_0000, V))      # its L0 table: no RAM there
    g.expect_fault(LOAD_ACCESS, tval=va)


def test_page_mapping_a_device_exits_mmio_with_the_physical_address():
    g = Guest([lb(A0, A1, 3)], {A1: PAGE(1)})
    g.pt.map(PAGE(1), 0x1000_0000, RW)
    assert g.run() == MMIO
    assert g.vcpu.exit_addr == 0x1000_0003 and g.vcpu.exit_tval == PAGE(1) + 3
    g.vcpu.complete_load(0xFF)
    assert g.vcpu.get_x(A0) == u64(-1)


# ---------------------------------------------------------------------------
# The shadow TLB: stale entries, flushes
# ---------------------------------------------------------------------------

def remap_guest(flags=RW):
    """Loads a0 from PAGE(1) and a2 from PAGE(2); both map to frames holding 1 and 2."""
    g = Guest([ld(A0, A1, 0), ld(A2, A3, 0)], {A1: PAGE(1), A3: PAGE(2)})
    g.pt.map(PAGE(1), FRAME(1), flags)
    g.pt.map(PAGE(2), FRAME(2), flags)
    for i in range(1, 5):
        g.write_u64(FRAME(i), i)
    g.run_to_ecall()
    assert (g.vcpu.get_x(A0), g.vcpu.get_x(A2)) == (1, 2)
    # Now point the pages elsewhere without telling the vcpu.
    g.pt.map(PAGE(1), FRAME(3), flags)
    g.pt.map(PAGE(2), FRAME(4), flags)
    return g


def loaded(g):
    g.run_to_ecall()
    return g.vcpu.get_x(A0), g.vcpu.get_x(A2)


def test_pte_change_without_flush_keeps_the_old_mapping():
    g = remap_guest()
    assert loaded(g) == (1, 2)


def test_flush_tlb_of_one_page_uses_its_new_mapping():
    g = remap_guest()
    g.vcpu.flush_tlb(PAGE(1))
    assert loaded(g)[0] == 3


def test_flush_tlb_of_everything_uses_all_new_mappings():
    g = remap_guest()
    g.vcpu.flush_tlb()
    assert loaded(g) == (3, 4)


def test_flush_tlb_by_asid_drops_non_global_entries():
    g = remap_guest()
    g.vcpu.flush_tlb(asid=1)
    assert loaded(g) == (3, 4)


def test_flush_tlb_by_asid_keeps_global_entries():
    g = Guest([ld(A0, A1, 0), ld(A2, A3, 0)], {A1: PAGE(1), A3: PAGE(2)})
    g.pt.map(PAGE(1), FRAME(1), RW | G)
    g.pt.map(PAGE(2), FRAME(2), RW)
    for i in range(1, 5):
        g.write_u64(FRAME(i), i)
    assert loaded(g) == (1, 2)
    g.pt.map(PAGE(1), FRAME(3), RW | G)
    g.pt.map(PAGE(2), FRAME(4), RW)
    g.vcpu.flush_tlb(asid=1)
    assert loaded(g) == (1, 4)


def test_flush_tlb_of_a_page_in_an_asid_keeps_a_global_entry():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW | G)
    g.write_u64(FRAME(1), 1)
    g.write_u64(FRAME(3), 3)
    g.run_to_ecall()
    g.pt.map(PAGE(1), FRAME(3), RW | G)
    g.vcpu.flush_tlb(PAGE(1), asid=1)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 1
    g.vcpu.flush_tlb(PAGE(1))
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 3


def test_flush_tlb_of_a_page_inside_a_cached_megapage():
    g = load_guest(MEGA_VA + 0x5000)
    g.pt.map(MEGA_VA, MEGA_PA, RW, level=1)
    g.write_u64(MEGA_PA + 0x5000, 1)
    g.run_to_ecall()
    g.pt.write(g.pt.slot(MEGA_VA, level=1), 0)            # now invalid
    g.vcpu.flush_tlb(MEGA_VA)                             # the superpage's base
    g.expect_fault(LOAD_PAGE, tval=MEGA_VA + 0x5000)


def test_permission_downgrade_needs_a_flush():
    g = store_guest(PAGE(1), 7)
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.run_to_ecall()
    g.pt.map(PAGE(1), FRAME(1), R | A | D)               # now read-only
    g.vcpu.flush_tlb(PAGE(1))
    g.expect_fault(STORE_PAGE, tval=PAGE(1))


def test_new_root_in_set_mode_switches_address_space_at_once():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.write_u64(FRAME(1), 1)
    g.write_u64(FRAME(2), 2)
    g.run_to_ecall()
    first_root = g.pt.root
    g.pt.root = g.pt.alloc()                   # a second address space
    g.pt.map(CODE_VA, CODE_PA, RX)
    g.pt.map(PAGE(1), FRAME(2), RW)
    g.set_mode()
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 2
    g.set_mode(root=first_root)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 1


def test_code_page_remapped_and_flushed_runs_the_new_frame():
    g = Guest([addi(A0, ZERO, 1)])
    g.memory.write(FRAME(5), code_bytes([addi(A0, ZERO, 2), ECALL]))
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 1
    g.pt.map(CODE_VA, FRAME(5), RX)
    g.vcpu.flush_tlb(CODE_VA)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 2


def test_code_rewritten_through_a_writable_alias_runs_the_new_instruction():
    # PAGE(1) (RX) and PAGE(2) (RW) are the same frame, as a JIT maps its code.
    g = Guest([jalr(RA, A1, 0), addi(A4, A0, 0), sw(A2, A3, 0), jalr(RA, A1, 0)],
              {A1: PAGE(1), A3: PAGE(2), A2: addi(A0, ZERO, 2)})
    g.memory.write(FRAME(1), code_bytes([addi(A0, ZERO, 1), jalr(0, RA, 0)]))
    g.pt.map(PAGE(1), FRAME(1), RX)
    g.pt.map(PAGE(2), FRAME(1), RW)
    g.run_to_ecall()
    assert (g.vcpu.get_x(A4), g.vcpu.get_x(A0)) == (1, 2)


# ---------------------------------------------------------------------------
# M-mode, bare mode, Sv48
# ---------------------------------------------------------------------------

def test_m_mode_with_satp_set_is_bare():
    g = Guest([ld(A0, A1, 0)], {A1: FRAME(1)})
    g.pt.map(FRAME(1), FRAME(2), RW)           # would redirect FRAME(1) if translated
    g.write_u64(FRAME(1), 1)
    g.write_u64(FRAME(2), 2)
    g.set_mode(priv=M_MODE)
    g.run_to_ecall(pc=CODE_PA)
    assert g.vcpu.get_x(A0) == 1
    assert g.vcpu.translate(PAGE(1), LOAD, M_MODE) == (PAGE(1), 0)


def test_s_mode_with_satp_bare_is_untranslated():
    g = Guest([ld(A0, A1, 0)], {A1: FRAME(1)}, mode=BARE)
    g.write_u64(FRAME(1), 9)
    g.run_to_ecall(pc=CODE_PA)
    assert g.vcpu.get_x(A0) == 9


def test_sv48_four_level_walk():
    va = 0x0000_0123_4567_8000                 # VPN[3] = 2
    g = Guest([ld(A0, A1, 8)], {A1: va}, mode=SV48)
    g.pt.map(va, FRAME(4), RW)
    g.write_u64(FRAME(4) + 8, 0x48)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0x48
    assert g.pt.flags(va) & A


def test_sv48_512_gib_page():
    va = 0x0000_0080_0000_0000                 # VPN[3] = 1 -> physical 0
    g = load_guest(va + RAM_BASE + 0x1_0000, mode=SV48)
    g.pt.map(va, 0, RW, level=3)
    g.write_u64(FRAME(0), 0x512)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0x512


def test_sv48_accepts_addresses_sv39_rejects():
    va = 0x0000_0040_0000_0000                 # bit 38: canonical in Sv48 only
    g = load_guest(va, mode=SV48)
    g.pt.map(va, FRAME(1), RW)
    g.write_u64(FRAME(1), 0x39)
    g.run_to_ecall()
    assert g.vcpu.get_x(A0) == 0x39


@pytest.mark.parametrize("va", [0x0000_8000_0000_0000, 0xFFFF_7FFF_FFFF_F000, 1 << 63],
                         ids=hex)
def test_sv48_non_canonical_address_faults(va):
    g = load_guest(va, mode=SV48)
    g.expect_fault(LOAD_PAGE, tval=va)


# ---------------------------------------------------------------------------
# shadow_stats
# ---------------------------------------------------------------------------

STATS = ("tlb_misses", "page_walks", "flushes", "page_faults")


def stats_delta(g, before):
    """Change of the shadow paging counters since `before` (other counters ignored)."""
    after = g.vcpu.shadow_stats
    return {k: after[k] - before[k] for k in STATS}


def test_shadow_stats_count_misses_and_walks_once_per_page_and_access_type():
    g = Guest([ld(A0, A1, 0), ld(A2, A1, 8), sw(A2, A1, 16), ld(A3, A1, 24)], {A1: PAGE(1)})
    g.pt.map(PAGE(1), FRAME(1), RW)
    before = g.vcpu.shadow_stats
    g.run_to_ecall()
    # one fill each: the code page (fetch), PAGE(1) for loads and for stores
    assert stats_delta(g, before) == {"tlb_misses": 3, "page_walks": 3, "flushes": 0,
                                      "page_faults": 0}


def test_shadow_stats_hits_cost_nothing_on_a_second_run():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.run_to_ecall()
    before = g.vcpu.shadow_stats
    g.run_to_ecall()
    assert stats_delta(g, before) == {"tlb_misses": 0, "page_walks": 0, "flushes": 0,
                                      "page_faults": 0}


def test_shadow_stats_count_page_faults():
    g = load_guest(PAGE(1))
    before = g.vcpu.shadow_stats
    g.expect_fault(LOAD_PAGE, tval=PAGE(1))
    g.expect_fault(LOAD_PAGE, tval=PAGE(1))
    delta = stats_delta(g, before)
    assert delta["page_faults"] == 2
    assert delta["tlb_misses"] == 1 + 2 and delta["page_walks"] == 1 + 2


def test_shadow_stats_count_flushes_and_the_misses_after_them():
    g = load_guest(PAGE(1))
    g.pt.map(PAGE(1), FRAME(1), RW)
    g.run_to_ecall()
    before = g.vcpu.shadow_stats
    g.vcpu.flush_tlb()
    g.run_to_ecall()
    assert stats_delta(g, before) == {"tlb_misses": 2, "page_walks": 2, "flushes": 1,
                                      "page_faults": 0}


def test_m_mode_misses_do_not_walk():
    g = Guest([ld(A0, A1, 0)], {A1: FRAME(1)})
    g.set_mode(priv=M_MODE)
    before = g.vcpu.shadow_stats
    g.run_to_ecall(pc=CODE_PA)
    delta = stats_delta(g, before)
    assert delta["tlb_misses"] == 2 and delta["page_walks"] == 0
