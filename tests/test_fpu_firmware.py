"""fpu.elf (firmware/fpu.c): the F and D extensions in a real guest, on hvemu and QEMU;
and fpbench.elf, an FP workload whose checksum must come out the same on all three.

The guest prints only values the spec fixes (see the top of fpu.c): traps with
mstatus.FS = Off, FS/SD after FP state changes, fcsr's fields, reserved rounding
modes, NaN boxing and canonical NaNs, and for every F/D operation in every rounding
mode a hash of the results and flags over tables of hard operands.  hvemu's fast path,
its reference interpreter and qemu-system-riscv64 (QEMU 7.2, whose softfloat follows
F/D 2.2) must print exactly the same text.  That the committed image is what the
sources build is test_firmware.py's (fpu.elf is one of firmware/*.elf).

Without qemu-system-riscv64 the QEMU comparison is skipped, or fails when CI is set.
"""
from __future__ import annotations

import functools

from conftest import FIRMWARE, run_hvemu
from test_qemu_compare import parse_dump, run_qemu

FPU_ELF = FIRMWARE / "fpu.elf"
FPBENCH_ELF = FIRMWARE / "fpbench.elf"
FPBENCH_CHECKSUM = "fpbench: checksum=0xed4a57daa5912db9"
ILLEGAL = 2
FS_DIRTY_SD = (3 << 13) | (1 << 63)


@functools.cache
def hvemu_output(*flags: str) -> str:
    proc = run_hvemu("boot", *flags, FPU_ELF, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr}"
    return proc.stdout


def test_hvemu_and_qemu_print_the_same_text():
    proc = run_qemu(FPU_ELF)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    hv, qemu = hvemu_output().splitlines(), proc.stdout.splitlines()
    diff = [f"hvemu {a!r} / qemu {b!r}" for a, b in zip(hv, qemu, strict=False) if a != b]
    assert not diff and len(hv) == len(qemu), "\n".join(diff[:20])


def test_the_reference_interpreter_prints_the_same_text_as_the_fast_path():
    assert hvemu_output("--reference") == hvemu_output()


def test_the_bundled_image_runs_by_name():
    proc = run_hvemu("boot", "fpu", timeout=300)
    assert proc.returncode == 0 and proc.stdout == hvemu_output()


def test_the_dump_covers_what_it_claims():
    """Anchors with the spec's values, so that a guest that skips its cases cannot pass."""
    dump = dict(parse_dump(hvemu_output(), "fpu"))
    assert dump["misa.fd"] == (1 << 3) | (1 << 5)
    off = [k[:-len(".mcause")] for k in dump if k.startswith("fs_off.") and k.endswith("mcause")]
    assert len(off) == 8 and all(dump[f"{k}.mcause"] == ILLEGAL for k in off)
    assert dump["fs_off.fadd_d.mtval"] == 0x0220F053              # fadd.d ft0, ft1, ft2
    assert dump["fs_off.c_fldsp.mtval"] == 0x2022                 # the 16-bit encoding
    assert dump["fs_off.mstatus"] == 0
    fs = [k for k in dump if k.startswith("fs.")]
    assert len(fs) == 7 and all(dump[k] == FS_DIRTY_SD for k in fs)
    assert (dump["fcsr.after_all_ones"], dump["fcsr.final"]) == (0xFF, (2 << 5) | 0x0E)
    for frm in (5, 6, 7):
        assert dump[f"rm.dyn_frm{frm}.mcause"] == ILLEGAL
        assert dump[f"rm.fsgnj_frm{frm}.mcause"] == 0              # does not round: no trap
    assert dump["rm.static5.mcause"] == dump["rm.fcvt_d_s_static5.mcause"] == ILLEGAL
    assert dump["box.fadd_s_unboxed"] == 0xFFFF_FFFF_7FC0_0000    # the canonical NaN, boxed
    assert dump["box.fclass_s_unboxed"] == 1 << 9
    assert dump["nan.fmin_snan_number"] == 0x3FF0_0000_0000_0000  # F 2.2 minimumNumber
    assert dump["nan.fmadd_inf_zero_qnan.flags"] == 0x10
    assert dump["static.fadd_d_rmm_tie"] == 0x3FF0_0000_0000_0001
    hashes = [k for k in dump if k.endswith(".hash")]
    assert len(hashes) == 33 * 5 + 23                              # 33 rounding ops x 5 modes
    assert len({dump[k] for k in hashes}) > 150                    # not one repeated value


def test_fpbench_computes_the_same_results_on_hvemu_both_engines_and_qemu():
    for flags in ((), ("--reference",)):
        proc = run_hvemu("boot", *flags, FPBENCH_ELF, timeout=300)
        assert proc.returncode == 0 and FPBENCH_CHECKSUM in proc.stdout.splitlines(), (
            flags, proc.stdout[-500:], proc.stderr[-500:])
    proc = run_qemu(FPBENCH_ELF)
    assert proc.returncode == 0 and FPBENCH_CHECKSUM in proc.stdout.splitlines(), proc.stdout
