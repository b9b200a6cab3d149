"""ptesfence.elf: PTE edits against sfence.vma, and privileged instructions in U-mode.

The guest (firmware/compare/ptesfence.c) prints a name=0x... dump; the rules
checked here are the privileged spec's, applied to hvemu and, when present, to
QEMU (same rules; missing QEMU skips, or fails when CI is set):

* A PTE rewritten without sfence.vma: the next access may use the old or the new
  translation.  After `sfence.vma` (all addresses, or just that one) it must use
  the new one; a PTE made invalid must then fault (load page fault, 13).  The
  same for a 2 MiB megapage fenced by an address in its middle, and for a
  remapped code page: the old or the new code before the fence, the new code
  after it.
* In U-mode every privileged instruction (M- and S-CSR reads and writes, mret,
  sret, wfi, sfence.vma, writes to the read-only counters, a counter read that
  mcounteren forbids) raises an illegal-instruction exception (mcause 2) taken
  in M, with mepc at the instruction and mtval = the instruction's bits.  A
  counter read needs mcounteren in S, and mcounteren and scounteren in U.

Also: the committed firmware/compare/*.elf are exactly what
`make -C firmware/compare OUT=<dir>` builds, byte for byte (needs make and
riscv64-unknown-elf-gcc: skipped without them, or failing when CI is set).
"""
from __future__ import annotations

import functools
import shutil
import subprocess

import pytest
from conftest import require_tool
from test_qemu_compare import COMPARE, dump_of, require_qemu

OLD, NEW = 0x01D01D01D01D01D0, 0x0E70E70E70E70E70
TEST_VA = 0xC0000040
LOAD_PAGE_FAULT = 13

# name -> the instruction's encoding (as the assembler writes it in ptesfence.c)
U_PRIVILEGED = {
    "u_csrr_mstatus": 0x30002573,     # csrr a0, mstatus
    "u_csrr_mscratch": 0x34002573,    # csrr a0, mscratch
    "u_csrr_sstatus": 0x10002573,     # csrr a0, sstatus
    "u_csrr_satp": 0x18002573,        # csrr a0, satp
    "u_csrw_sscratch": 0x14051073,    # csrw sscratch, a0
    "u_mret": 0x30200073,
    "u_sret": 0x10200073,
    "u_wfi": 0x10500073,
    "u_sfence_vma": 0x12000073,       # sfence.vma zero, zero
    "u_sfence_vma_a0": 0x12B50073,    # sfence.vma a0, a1
    "u_csrw_cycle": 0xC0051073,       # csrw cycle, a0
    "u_csrw_instret": 0xC0201073,     # csrw instret, zero
    "u_csrs_time": 0xC0152073,        # csrs time, a0 (a0 != 0: a write)
    "u_rdcycle": 0xC0002573,          # rdcycle a0 with mcounteren.CY = 0
}
EMULATORS = ("hvemu", "qemu")


@functools.cache
def _ptesfence_dump(emulator: str) -> tuple[tuple[str, int], ...]:
    return tuple(dump_of(emulator, "ptesfence"))


def ptesfence(emulator: str) -> dict[str, int]:
    """The guest's dump on emulator, run once per session (an error is not cached)."""
    if emulator == "qemu":
        require_qemu()
    return dict(_ptesfence_dump(emulator))


def check_remap(d: dict[str, int], name: str, old: int = OLD, new: int = NEW) -> None:
    assert d[f"{name}.loads_done"] == 3, f"{name}: an access faulted"
    assert d[f"{name}.faulting_load"] == 0
    assert d[f"{name}.before"] == old
    assert d[f"{name}.nofence"] in (old, new), (
        f"{name}: without sfence.vma the access saw {d[f'{name}.nofence']:#x}, "
        "neither the old nor the new page")
    assert d[f"{name}.fenced"] == new, (
        f"{name}: after sfence.vma the access still saw {d[f'{name}.fenced']:#x}")


def check_unmap(d: dict[str, int], name: str) -> None:
    assert d[f"{name}.before"] == OLD
    faulted = d[f"{name}.faulting_load"]
    if faulted == 2:                    # the new (invalid) PTE was seen at once
        assert d[f"{name}.loads_done"] == 1
    else:                               # the stale translation was used once
        assert faulted == 3, f"{name}: the load after sfence.vma did not fault"
        assert d[f"{name}.loads_done"] == 2
        assert d[f"{name}.nofence"] == OLD, (
            f"{name}: an unfenced load through a stale entry saw "
            f"{d[f'{name}.nofence']:#x}, not the old page")
    assert d[f"{name}.scause"] == LOAD_PAGE_FAULT
    assert d[f"{name}.stval"] == TEST_VA


def check_illegal(d: dict[str, int], name: str, encoding: int, mpp: int) -> None:
    assert d[f"{name}.insn"] == encoding, "the guest was built from other code"
    assert d[f"{name}.mcause"] == 2, f"{name}: mcause {d[f'{name}.mcause']:#x}, not 2"
    assert d[f"{name}.mepc_is_insn"] == 1, f"{name}: mepc is not the instruction"
    assert d[f"{name}.mtval"] == encoding, (
        f"{name}: mtval {d[f'{name}.mtval']:#x}, not the instruction bits {encoding:#x}")
    assert d[f"{name}.mpp"] == mpp, f"{name}: mstatus.MPP is {d[f'{name}.mpp']}, not {mpp}"


@pytest.mark.parametrize("emulator", EMULATORS)
def test_a_pte_edit_takes_effect_after_sfence_vma(emulator):
    d = ptesfence(emulator)
    assert d["old_value"] == OLD and d["new_value"] == NEW
    check_remap(d, "remap_fence_all")
    check_remap(d, "remap_fence_va")
    check_unmap(d, "unmap_fence_all")
    check_unmap(d, "unmap_fence_va")
    check_remap(d, "remap_mega_fence_va")          # a megapage, fenced mid-page


@pytest.mark.parametrize("emulator", EMULATORS)
def test_a_remapped_code_page_runs_the_new_code_after_sfence_vma(emulator):
    d = ptesfence(emulator)
    check_remap(d, "remap_fetch", old=1, new=2)     # the code returns 1 (old) or 2 (new)


@pytest.mark.parametrize("emulator", EMULATORS)
@pytest.mark.parametrize("name", sorted(U_PRIVILEGED))
def test_privileged_instruction_in_u_mode_is_illegal(emulator, name):
    check_illegal(ptesfence(emulator), name, U_PRIVILEGED[name], mpp=0)


@pytest.mark.parametrize("emulator", EMULATORS)
def test_counter_reads_below_m_follow_mcounteren_and_scounteren(emulator):
    d = ptesfence(emulator)
    rdcycle = U_PRIVILEGED["u_rdcycle"]
    check_illegal(d, "s_rdcycle_mcounteren0", rdcycle, mpp=1)   # S: mcounteren.CY = 0
    check_illegal(d, "u_rdcycle_scounteren0", rdcycle, mpp=0)   # U: only mcounteren.CY
    assert d["s_rdcycle_enabled.mcause"] == 9     # ran on to its ecall
    assert d["u_rdcycle_enabled.mcause"] == 8


# ---- the committed images are reproducible ----

IMAGES = ("traps", "paging", "ptesfence", "bitmanip")
TOOLS = ("make", "riscv64-unknown-elf-gcc")


def need_toolchain() -> None:
    for tool in TOOLS:
        require_tool(tool)


def snapshot(root):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


def make(*args) -> None:
    proc = subprocess.run(["make", "--no-print-directory", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rebuilding_reproduces_the_committed_compare_images_byte_for_byte(tmp_path):
    need_toolchain()
    before = snapshot(COMPARE)
    make("-C", COMPARE, f"OUT={tmp_path}")
    for name in IMAGES:
        built = (tmp_path / f"{name}.elf").read_bytes()
        assert built == (COMPARE / f"{name}.elf").read_bytes(), (
            f"firmware/compare/{name}.elf is not what its sources build to: "
            "run `make -C firmware/compare` and commit the result")
    assert snapshot(COMPARE) == before, "the build touched firmware/compare"


def test_the_compare_build_does_not_depend_on_the_checkout_location(tmp_path):
    need_toolchain()
    copy = tmp_path / "some" / "where" / "compare"
    shutil.copytree(COMPARE, copy, ignore=shutil.ignore_patterns("*.elf", "*.o"))
    make("-C", copy)
    for name in IMAGES:
        assert (copy / f"{name}.elf").read_bytes() == (COMPARE / f"{name}.elf").read_bytes()
