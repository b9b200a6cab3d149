"""traps.elf, paging.elf and bitmanip.elf print the same dump on hvemu and on QEMU.

The guests (firmware/compare/) run trap and Sv39 page-walk experiments whose
outcome the RISC-V privileged spec fixes, and every Zba/Zbb/Zbc/Zbs instruction,
and print one `name=0x<16 hex digits>` line per value between `compare: <image>`
and `compare: end`, then power off through the test finisher.  Each is booted on
hvemu (`hvemu boot X.elf`) and on
`qemu-system-riscv64 -M virt -bios none -nographic -kernel X.elf` (QEMU 7.2,
Debian's qemu-system-misc) and the two dumps must be identical line for line.
Anything the spec leaves open is not printed by the guests (see the comments at
the top of firmware/compare/traps.c and paging.c).

QEMU 7.2 itself departs from the spec in a few printed values (QEMU_72_DEVIATIONS):
there hvemu must print the spec's value, and QEMU may print the spec's value or
its known 7.2 one, so a fixed QEMU passes too.

Without qemu-system-riscv64 the tests are skipped, or fail when the environment
variable CI is set.  Helpers here are shared with test_privileged_semantics.py.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, run_hvemu

COMPARE = REPO / "firmware" / "compare"
QEMU = "qemu-system-riscv64"
DUMP_LINE = re.compile(r"^([a-z0-9_.]+)=(0x[0-9a-f]{16})$")
TIMEOUT = 120

# (image, dump name) -> (the spec's value, QEMU 7.2's value, why)
QEMU_72_DEVIATIONS = {
    ("traps", "s_msi_before_ssi.mcause"): (
        0x8000000000000003, 0x8000000000000001,
        "MSI and SSI both pending for M: the spec's priority is MEI, MSI, MTI, SEI, SSI, "
        "STI, but QEMU 7.2 without AIA takes the lowest-numbered pending interrupt "
        "(ctz64(pending) in riscv_cpu_pending_to_irq), so SSI (1) beats MSI (3)"),
    ("traps", "s_ecall_mprv.mstatus"): (
        0x0000000000000802, 0x0000000000020802,
        "MRET to a mode below M sets mstatus.MPRV = 0 (privileged spec 1.12); QEMU 7.2's "
        "helper_mret keeps MPRV"),
    ("traps", "m_sret_mprv.mstatus"): (
        0x0000000000000822, 0x0000000000020822,
        "SRET (here executed in M, returning to S) sets mstatus.MPRV = 0 (privileged spec "
        "1.12); QEMU 7.2's helper_sret keeps MPRV"),
    ("traps", "view.mepc_odd"): (
        0x0000000080001002, 0x0000000080001003,
        "mepc[0] is always zero (privileged spec, 'Machine Exception Program Counter'); "
        "QEMU 7.2 stores and reads back the written value unmasked"),
    ("traps", "view.sepc_odd"): (
        0x0000000080001006, 0x0000000080001007,
        "sepc[0] is always zero; QEMU 7.2 reads back the written value unmasked"),
    ("bitmanip", "ctzw"): (
        0x4BCD72DB015D10BD, 0x1E29D2EB68E29125,
        "ctzw counts the trailing zeros of the low word, 32 when it is zero (unprivileged "
        "spec, Zbb); QEMU 7.2 gives 63 for 0x8000000000000000 (see one.ctzw_high)"),
    ("bitmanip", "one.ctzw_high"): (
        32, 63, "ctzw of 0x8000000000000000: the low word is zero, so 32; QEMU 7.2 says 63"),
    ("paging", "walk_nothing_load.s0.scause"): (
        5, 13,
        "a page-table entry whose address has nothing behind it (PMA violation) must raise "
        "an access fault of the original access type (Sv39 walk, step 2); QEMU 7.2 "
        "raises a page fault when the PTE read fails"),
}


def require_qemu() -> str:
    """The path of qemu-system-riscv64: skip without it, but fail when CI is set."""
    path = shutil.which(QEMU)
    if path is None:
        message = f"{QEMU} not found (Debian package qemu-system-misc)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; required when CI is set")
        pytest.skip(message)
    return path


def run_qemu(elf: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Boot elf on QEMU's virt board in M-mode, as `-bios none -kernel` does."""
    qemu = require_qemu()
    return subprocess.run([qemu, "-M", "virt", "-bios", "none", "-nographic", "-kernel",
                           str(elf)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout)


def guest_output(emulator: str, elf: Path) -> str:
    """The guest's UART text; the run must end with the finisher's pass (exit 0)."""
    if emulator == "qemu":
        proc = run_qemu(elf)
    else:
        proc = run_hvemu("boot", elf, timeout=TIMEOUT)
    assert proc.returncode == 0, (
        f"{emulator} {elf.name}: exit {proc.returncode}\n"
        f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc.stdout


def parse_dump(text: str, image: str) -> list[tuple[str, int]]:
    """The (name, value) lines between `compare: IMAGE` and `compare: end`, in order.

    Every line in between must be a dump line: anything else means the guest took
    a trap it did not expect or printed garbage."""
    lines = [line.rstrip("\r") for line in text.splitlines()]
    header = f"compare: {image}"
    assert header in lines, f"no '{header}' line in:\n{text[-3000:]}"
    start = lines.index(header) + 1
    assert "compare: end" in lines[start:], f"no 'compare: end' line in:\n{text[-3000:]}"
    end = lines.index("compare: end", start)
    dump = []
    for line in lines[start:end]:
        match = DUMP_LINE.match(line)
        assert match, f"not a dump line: {line!r}"
        dump.append((match.group(1), int(match.group(2), 16)))
    names = [name for name, _ in dump]
    assert len(set(names)) == len(names), "a dump name is printed twice"
    return dump


def dump_of(emulator: str, image: str) -> list[tuple[str, int]]:
    return parse_dump(guest_output(emulator, COMPARE / f"{image}.elf"), image)


def differences(image: str, hvemu: list[tuple[str, int]], qemu: list[tuple[str, int]]):
    """Human-readable differences between the two dumps, allowing QEMU 7.2's known ones."""
    problems = []
    hv_names = [name for name, _ in hvemu]
    q_names = [name for name, _ in qemu]
    if hv_names != q_names:
        only_hv = [n for n in hv_names if n not in q_names]
        only_q = [n for n in q_names if n not in hv_names]
        problems.append(f"different lines: only on hvemu {only_hv}, only on QEMU {only_q}"
                        if only_hv or only_q else "the lines come in a different order")
    q_values = dict(qemu)
    for name, value in hvemu:
        if name not in q_values:
            continue
        q_value = q_values[name]
        known = QEMU_72_DEVIATIONS.get((image, name))
        if known is not None:
            spec, q72, _ = known
            if value != spec:
                problems.append(f"{name}: hvemu {value:#018x}, the spec requires {spec:#018x}")
            if q_value not in (spec, q72):
                problems.append(f"{name}: QEMU {q_value:#018x}, expected {spec:#018x} "
                                f"(spec) or {q72:#018x} (QEMU 7.2)")
        elif value != q_value:
            problems.append(f"{name}: hvemu {value:#018x} != QEMU {q_value:#018x}")
    return problems


IMAGES = ("traps", "paging", "bitmanip")


@pytest.mark.parametrize("image", IMAGES)
def test_hvemu_and_qemu_print_the_same_dump(image):
    require_qemu()
    hvemu = dump_of("hvemu", image)
    qemu = dump_of("qemu", image)
    problems = differences(image, hvemu, qemu)
    assert not problems, f"{image}.elf: hvemu and QEMU differ:\n" + "\n".join(problems)


@pytest.mark.parametrize("image", IMAGES)
def test_the_dump_is_the_same_on_every_run(image):
    """Nothing printed depends on timing: two hvemu runs print the same dump."""
    assert dump_of("hvemu", image) == dump_of("hvemu", image)


def test_the_known_qemu_deviations_are_printed_and_hvemu_follows_the_spec_there():
    """hvemu's side of QEMU_72_DEVIATIONS, checked without QEMU."""
    dumps = {image: dict(dump_of("hvemu", image)) for image in IMAGES}
    for (image, name), (spec, _, why) in QEMU_72_DEVIATIONS.items():
        assert name in dumps[image], f"{image}.elf no longer prints {name}"
        assert dumps[image][name] == spec, f"{image} {name}: {why}"


def test_the_dumps_cover_what_they_claim():
    """A few anchors, so that a guest that silently skips its cases cannot pass."""
    traps = dict(dump_of("hvemu", "traps"))
    paging = dict(dump_of("hvemu", "paging"))
    assert traps["m_ecall.mcause"] == 11
    assert traps["m_illegal32.mtval"] == 0x0000000B
    assert traps["m_load_0.mcause"] == 5 and traps["m_store_0.mcause"] == 7
    assert traps["m_fetch_0.mcause"] == 1
    assert traps["s_illegal_delegated.s0.scause"] == 2
    assert traps["s_to_u.s1.scause"] == 8                   # ecall from U, delegated
    assert traps["s_to_u.mstatus"] & (3 << 11) == 0         # ebreak from U went to M
    assert traps["u_illegal.mcause"] == 2
    assert traps["s_ssi_delegated.s0.scause"] == (1 << 63) | 1
    assert paging["satp"] >> 60 == 8
    assert paging["rw_load.pte"] & 0xC0 == 0x40             # A set, D clear
    assert paging["rw_store.pte"] & 0xC0 == 0xC0            # A and D set
    assert paging["ro_store.s0.scause"] == 15
    assert paging["s_upage_load.s0.scause"] == 13
    assert paging["s_upage_load_sum.value"] == paging["u_load.value"]
    assert paging["xonly_load.s0.scause"] == 13
    assert paging["xonly_load_mxr.mcause"] == 9
    assert paging["mega_misaligned_load.s0.scause"] == 13
    assert paging["giga_store.pte"] & 0xC0 == 0xC0
    assert paging["mprv_s_upage.mcause"] == 13
    assert paging["mprv_u_upage.value"] == paging["mprv_s_upage_sum.value"]
    assert paging["giga_nothing_load.s0.scause"] == 5
    assert paging["straddle_fetch.s0.stval"] == paging["straddle_fetch.s0.sepc"] + 2
    assert paging["straddle_fetch_ok.value"] == 42
    bitmanip = dict(dump_of("hvemu", "bitmanip"))
    assert len(bitmanip) == 36 + 7 + 1 + 7      # register, immediate forms, compiled, anchors
    assert bitmanip["one.sh3add"] == 47 and bitmanip["one.clz"] == 63
    assert bitmanip["one.rev8"] == 0x0807060504030201 and bitmanip["one.clmul"] == 5
    assert bitmanip["one.orc_b"] == 0x00FFFF0000000000 and bitmanip["one.rori"] == 1 << 63
