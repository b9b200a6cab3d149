"""End-to-end tests of the `hvemu` command: booting the bundled images and images
given by path, `hvemu images`, --stats/--stats-json/--trace, the limits
(--max-instructions, --timeout) and --memory, each as a subprocess."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import fdt
import pytest
from conftest import (
    BUNDLED,
    EXIT_IDLE,
    EXIT_MAX_INSNS,
    EXIT_TIMEOUT,
    HELLO_ELF,
    RV,
    run_hvemu,
    stderr_lines,
)

HELLO_BANNER = "hvemu hello: RV64 guest kernel, hart 0"
HELLO_TRAPS = (
    "trap: ecall from M-mode (mcause=11)",
    "trap: illegal instruction (mcause=2, mtval=0xb)",
    "trap: machine timer interrupt (mcause=0x8000000000000007)",
)
EXPECTED_OUTPUT = {
    "hello": "hello: all tests passed",
    "bench": "bench: checksum=0xa47dc73cf0f33c42",
    "csrloop": "csrloop: done",
    "htif": "htif: hello",
}
TRACE_LINE = re.compile(r"^pc=0x[0-9a-f]{16} [MSU]  (?P<insn>.*?) +"
                        r"(?P<reason>budget|privileged instruction|guest exception|mmio) *"
                        r"(?:\[(?P<detail>[^]]*)\])? -> (?P<effects>.*)$")


def raw_from_elf(elf, out):
    """A raw image of elf (its loadable bytes from 0x8000_0000), like objcopy -O binary."""
    objcopy = shutil.which("riscv64-unknown-elf-objcopy")
    if objcopy:
        subprocess.run([objcopy, "-O", "binary", str(elf), str(out)], check=True, timeout=60)
        return out
    from elftools.elf.elffile import ELFFile  # no toolchain: flatten the PT_LOADs

    with open(elf, "rb") as f:
        e = ELFFile(f)
        segs = [s for s in e.iter_segments() if s["p_type"] == "PT_LOAD" and s["p_filesz"]]
        base = min(s["p_paddr"] for s in segs)
        image = bytearray(max(s["p_paddr"] + s["p_filesz"] for s in segs) - base)
        for s in segs:
            image[s["p_paddr"] - base:s["p_paddr"] - base + s["p_filesz"]] = s.data()
    out.write_bytes(bytes(image))
    return out


@pytest.fixture(scope="module")
def csrloop_with_stats(tmp_path_factory):
    """One `hvemu boot csrloop --stats --stats-json F` run: (process, parsed JSON)."""
    path = tmp_path_factory.mktemp("stats") / "csrloop.json"
    proc = run_hvemu("boot", "csrloop", "--stats", "--stats-json", path)
    return proc, json.loads(path.read_text())


@pytest.fixture(scope="module")
def hello_traced(tmp_path_factory):
    """One `hvemu boot hello --trace --stats-json F` run: (process, parsed JSON)."""
    path = tmp_path_factory.mktemp("trace") / "hello.json"
    proc = run_hvemu("boot", "hello", "--trace", "--stats-json", path)
    return proc, json.loads(path.read_text())


# ---- booting ----

def test_boot_without_an_image_runs_hello_printing_its_banner_and_every_trap(tmp_path):
    proc = run_hvemu("boot", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == HELLO_BANNER
    for trap in HELLO_TRAPS:
        assert trap in lines
    assert lines.index(HELLO_TRAPS[0]) < lines.index(HELLO_TRAPS[1]) < lines.index(HELLO_TRAPS[2])
    assert lines[-1] == "hello: all tests passed"
    assert "hvemu:" not in proc.stderr


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_image_boots_by_name_with_its_expected_output_and_exit_0(name, tmp_path):
    proc = run_hvemu("boot", name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert EXPECTED_OUTPUT[name] in proc.stdout.splitlines()
    assert "Traceback" not in proc.stderr and "hvemu:" not in proc.stderr


def test_images_lists_the_bundled_images_with_their_descriptions():
    from hvemu.firmware import IMAGES
    proc = run_hvemu("images")
    assert proc.returncode == 0, proc.stderr
    listed = {}
    for line in proc.stdout.splitlines():
        name, _, desc = line.partition(" ")
        listed[name] = desc.strip()
    assert list(listed)[:4] == list(BUNDLED)         # hello, bench, csrloop, htif first
    assert listed == IMAGES                          # and every other bundled image
    assert all(len(desc) > 20 for desc in listed.values())
    assert "tohost" in listed["htif"] and "csrr" in listed["csrloop"]


def test_boot_by_path_of_an_elf_file(tmp_path):
    image = shutil.copy(HELLO_ELF, tmp_path / "my-guest.elf")
    proc = run_hvemu("boot", image, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == HELLO_BANNER


def test_a_raw_binary_loads_at_0x80000000_and_behaves_like_its_elf(tmp_path):
    raw = raw_from_elf(HELLO_ELF, tmp_path / "hello.bin")
    assert raw.read_bytes()[:4] != b"\x7fELF"
    from_raw = run_hvemu("boot", raw, cwd=tmp_path)
    from_elf = run_hvemu("boot", HELLO_ELF, cwd=tmp_path)
    assert from_raw.returncode == 0, from_raw.stderr
    assert from_raw.stdout.splitlines()[0] == HELLO_BANNER
    assert from_raw.stdout == from_elf.stdout


@pytest.mark.parametrize("code, status", [(3, 3), (255, 255), (300, 255)])
def test_the_guests_own_exit_code_becomes_the_exit_status(raw_image, code, status):
    image = raw_image(RV.code(RV.poweroff(code)))
    proc = run_hvemu("boot", image)
    assert proc.returncode == status               # a failure never wraps around to 0
    assert "hvemu:" not in proc.stderr


# ---- statistics and tracing ----

def test_stats_prints_a_table_of_instructions_mips_exits_by_reason_and_privileged_classes(
        csrloop_with_stats):
    proc, _ = csrloop_with_stats
    assert proc.returncode == 0, proc.stderr
    assert "csrloop: done" in proc.stdout
    table = proc.stderr
    for row in ("instructions retired", "MIPS", "exits/second", "exits: budget",
                "exits: privileged instruction", "exits: guest exception", "exits: mmio",
                "privileged: csr"):
        assert row in table, row
    assert re.search(r"privileged: csr\W*1,0\d\d,\d\d\d", table)
    assert "Traceback" not in table


def test_stats_json_has_instructions_mips_exits_and_a_million_privileged_csr_instructions(
        csrloop_with_stats):
    proc, figures = csrloop_with_stats
    assert proc.returncode == 0
    for key in ("instructions", "mips", "exits", "privileged_instructions", "exits_per_second"):
        assert key in figures, key
    assert figures["instructions"] > 1_000_000
    assert figures["mips"] > 0 and figures["exits_per_second"] > 0
    assert set(figures["exits"]) == {"budget", "privileged instruction", "guest exception",
                                     "mmio"}
    assert figures["privileged_instructions"]["csr"] >= 1_000_000
    assert figures["exits"]["privileged instruction"] >= 1_000_000
    assert figures["exits_total"] == sum(figures["exits"].values())
    assert figures["stop"] == "poweroff"


def test_trace_prints_one_line_per_exit_with_pc_disassembly_and_reason(hello_traced):
    proc, figures = hello_traced
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == HELLO_BANNER        # trace goes to stderr only
    lines = proc.stderr.splitlines()
    parsed = [TRACE_LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m][:3]
    assert len(lines) == figures["exits_total"]
    # the boot ROM's `csrr a0, mhartid` is the first exit
    assert lines[0].startswith("pc=0x0000000000001008 M  f1402573  csrr a0, mhartid")
    assert parsed[0]["reason"] == "privileged instruction"
    assert any(m["insn"].endswith("csrr a1, misa") and "a1=0x8000000000141107" in m["effects"]
               for m in parsed)
    uart_h = "write 1B at 0x10000000 (uart16550+0x0) = 0x68"    # the 'h' of the banner
    assert any(m["reason"] == "mmio" and m["detail"] == uart_h for m in parsed)
    assert any(m["insn"].endswith("  ecall") and "trap to M: ecall from M-mode" in m["effects"]
               for m in parsed)
    assert any(m["reason"] == "guest exception"
               and m["detail"] == "illegal instruction, tval 0xb" for m in parsed)
    assert any(m["insn"].endswith("  wfi") and "machine timer interrupt" in m["effects"]
               for m in parsed)


# ---- limits ----

def test_max_instructions_stops_the_guest_with_exit_125_and_a_clear_message(tmp_path):
    stats = tmp_path / "s.json"
    proc = run_hvemu("boot", "--max-instructions", "1000", "--stats-json", stats)
    assert proc.returncode == EXIT_MAX_INSNS
    assert stderr_lines(proc) == ["hvemu: stopped: --max-instructions 1000 reached"]
    figures = json.loads(stats.read_text())
    assert figures["instructions"] == 1000
    assert figures["stop"] == "max-instructions"


def test_timeout_stops_a_guest_that_spins_forever_with_exit_124(raw_image):
    spin = raw_image(RV.code(RV.J_SELF))                 # j .
    start = time.monotonic()
    proc = run_hvemu("boot", "--timeout", "0.5", spin, timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == EXIT_TIMEOUT
    assert stderr_lines(proc) == ["hvemu: stopped: --timeout of 0.5 s reached"]
    assert 0.5 <= elapsed < 15


# ---- memory size and the device tree ----

def test_memory_64m_boots_and_puts_the_device_tree_2mib_aligned_below_the_end_of_ram():
    proc = run_hvemu("boot", "--memory", "64M")
    assert proc.returncode == 0, proc.stderr
    assert "hello: dtb=0x83e00000" in proc.stdout.splitlines()
    default = run_hvemu("boot")
    assert "hello: dtb=0x87e00000" in default.stdout.splitlines()     # 128 MiB


def test_the_guests_device_tree_memory_node_says_64_mib_with_memory_64m():
    from hvemu.vm import VM, VMConfig
    vm = VM(VMConfig(image=str(HELLO_ELF), memory=64 << 20))
    assert vm.fdt_addr == 0x83E00000
    header = vm.memory.read(vm.fdt_addr, 8)
    assert header[:4] == b"\xd0\x0d\xfe\xed"
    size = int.from_bytes(header[4:8], "big")
    tree = fdt.parse_dtb(bytes(vm.memory.read(vm.fdt_addr, size)))
    assert list(tree.get_property("reg", "/memory@80000000").data) == [0, 0x80000000, 0, 64 << 20]
    # and the boot ROM hands exactly this address to the guest in a1
    assert int.from_bytes(vm.memory.read(0x1000 + 32, 8), "little") == vm.fdt_addr


# ---- bugs ----

def test_boot_without_an_image_ignores_an_unrelated_file_named_hello_in_the_cwd(tmp_path):
    (tmp_path / "hello").write_bytes(b"#!/bin/sh\necho not a guest\n")
    proc = run_hvemu("boot", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == HELLO_BANNER


def test_a_guest_waiting_for_an_interrupt_that_cannot_come_exits_121(raw_image):
    idle = raw_image(RV.code(RV.WFI, RV.jal(0, -4)))      # 1: wfi; j 1b   (mie = 0)
    proc = run_hvemu("boot", idle, timeout=3)
    assert proc.returncode == EXIT_IDLE
    assert stderr_lines(proc)[0].startswith("hvemu: guest stopped: ")


def test_timeout_also_stops_a_guest_that_idles_in_wfi(raw_image):
    idle = raw_image(RV.code(RV.WFI, RV.jal(0, -4)))
    proc = run_hvemu("boot", "--timeout", "0.5", idle, timeout=3)
    assert proc.returncode in (EXIT_TIMEOUT, EXIT_IDLE)
