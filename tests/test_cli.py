"""End-to-end tests of the `hvemu` command: booting the bundled images and images
given by path, `hvemu images`, --stats/--stats-json/--trace, the limits
(--max-instructions, --timeout) and --memory, each as a subprocess."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import fdt
import pytest
from conftest import (
    BUNDLED,
    EXIT_FAULT,
    EXIT_IDLE,
    EXIT_IOERR,
    EXIT_MAX_INSNS,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    HELLO_ELF,
    HVEMU_FAILURES,
    REPO,
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
    # the reads of mscratch: finished by the privileged part in the core (native)
    assert re.search(r"exits finished in the core\W*1,0\d\d,\d\d\d", table)
    assert "Traceback" not in table


def test_stats_json_has_instructions_mips_exits_and_a_million_csr_reads_finished_in_the_core(
        csrloop_with_stats):
    proc, figures = csrloop_with_stats
    assert proc.returncode == 0
    for key in ("instructions", "mips", "exits", "privileged_instructions", "exits_per_second"):
        assert key in figures, key
    assert figures["instructions"] > 1_000_000
    assert figures["mips"] > 0 and figures["exits_per_second"] > 0
    assert set(figures["exits"]) == {"budget", "privileged instruction", "guest exception",
                                     "mmio", "out of host memory", "debugger"}
    assert figures["exits_finished_in_the_core"] >= 1_000_000
    assert 0 < figures["privileged_instructions"]["csr"] < 1_000
    assert figures["exits"]["privileged instruction"] < 1_000
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
    assert any(m["insn"].endswith("csrr a1, misa") and "a1=0x800000000014112f" in m["effects"]
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


# ---- exit status: hvemu's own failures never look like the guest's ----

@pytest.mark.parametrize("code", [1, 2])
def test_a_guest_exiting_1_or_2_is_told_apart_from_hvemus_own_failures(raw_image, code):
    proc = run_hvemu("boot", raw_image(RV.code(RV.poweroff(code))))
    assert proc.returncode == code and proc.stderr == ""
    assert code not in HVEMU_FAILURES
    assert run_hvemu("boot", "--no-such-option").returncode == EXIT_USAGE


def test_the_exit_status_table_is_documented_in_the_readme_and_the_cli_docstring():
    from hvemu import cli
    readme = (REPO / "README.md").read_text()
    paragraph = readme[readme.index("Exit status"):]
    paragraph = paragraph[:paragraph.index("\n\n")]
    for code in (*HVEMU_FAILURES, EXIT_FAULT, EXIT_IDLE, EXIT_TIMEOUT, EXIT_MAX_INSNS, 130):
        assert re.search(rf"\b{code}\b", paragraph), code
        assert re.search(rf"^ +{code} ", cli.__doc__, re.M), code


# ---- numbers on the command line ----

@pytest.mark.parametrize("option, value", [
    ("--memory", "128MB"), ("--memory", " 128M"), ("--memory", "128M "),
    ("--memory", "\u0661\u0662\u0668M"), ("--memory", "1_28M"), ("--memory", "+128M"),
    ("--memory", "0x80M"), ("--memory", "1.5G"),
    ("--max-instructions", "18446744073709551616"), ("--max-instructions", "\u0661\u0660"),
    ("--max-instructions", " 10"), ("--max-instructions", "1_000"), ("--max-instructions", "1e6"),
    ("--timeout", " 1"), ("--timeout", "1_0"), ("--timeout", "\u0661"), ("--timeout", "1e400"),
    ("--timeout", "-0"),
])
def test_a_number_with_anything_but_ascii_digits_and_a_suffix_is_refused(option, value):
    proc = run_hvemu("boot", option, value)
    lines = stderr_lines(proc)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("hvemu: ") and option in lines[0]
    assert proc.stdout == ""                               # the guest never ran


@pytest.mark.parametrize("seconds", ["18446744073709551616", "1e300"])
def test_a_timeout_too_long_to_wait_for_is_just_a_long_timeout(seconds):
    """Found by the fuzz suite: the watchdog once passed it to Event.wait, which refuses
    timeouts that large (OverflowError in the watchdog thread)."""
    proc = run_hvemu("boot", "--timeout", seconds)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "hello: all tests passed" in proc.stdout.splitlines()


def test_the_largest_instruction_count_is_accepted():
    proc = run_hvemu("boot", "--max-instructions", str((1 << 64) - 1))
    assert proc.returncode == 0, proc.stderr
    assert "hello: all tests passed" in proc.stdout.splitlines()


@pytest.mark.parametrize("value, dtb", [
    ("64M", "0x83e00000"), ("64", "0x83e00000"), ("67108864B", "0x83e00000"),
    ("65536K", "0x83e00000"), ("1g", "0xbfe00000"),
])
def test_memory_sizes_bare_numbers_are_mib_as_in_qemu(value, dtb):
    proc = run_hvemu("boot", "--memory", value)
    assert proc.returncode == 0, proc.stderr
    assert f"hello: dtb={dtb}" in proc.stdout.splitlines()


# ---- QEMU's spellings ----

def test_qemus_single_dash_options_work(tmp_path):
    """`-kernel` and `-m 64` (MiB, as in QEMU): the teaching kernel on the built-in SBI."""
    proc = run_hvemu("boot", "-kernel", "kernel", "-m", "64", "--timeout", "60")
    assert proc.returncode == 0, proc.stderr
    assert "kernel: all processes exited" in proc.stdout


def test_qemus_bios_spelling_and_bios_none(tmp_path):
    as_bios = run_hvemu("boot", "-bios", "hello")
    assert as_bios.returncode == 0, as_bios.stderr
    assert as_bios.stdout.splitlines()[0] == HELLO_BANNER
    none = run_hvemu("boot", "-bios", "none", "-kernel", "hello")   # M-mode, like QEMU
    assert none.returncode == 0, none.stderr
    assert none.stdout == as_bios.stdout


def test_qemu_spellings_are_rewritten_only_where_an_option_can_stand():
    from hvemu.cli import respell_qemu
    takes_value = {"--disk", "--memory", "-m", "--kernel", "--bios"}
    assert respell_qemu(["-bios", "fw.bin", "-kernel", "k", "-m", "512"], takes_value) == [
        "--bios", "fw.bin", "--kernel", "k", "--memory", "512"]
    assert respell_qemu(["--disk", "-kernel", "-m", "64"], takes_value) == [
        "--disk", "-kernel", "--memory", "64"]                 # a value stays a value
    assert respell_qemu(["--", "-bios"], takes_value) == ["--", "-bios"]


def test_the_help_names_the_qemu_spellings():
    proc = run_hvemu("boot", "--help")
    assert proc.returncode == 0
    for spelling in ("QEMU: -bios", "QEMU: -kernel", "QEMU: -m"):
        assert spelling in proc.stdout


def test_bios_none_needs_a_kernel():
    proc = run_hvemu("boot", "-bios", "none")
    assert proc.returncode == EXIT_USAGE and "--bios none needs a --kernel" in proc.stderr


# ---- output that cannot be written ----

def test_stats_json_that_cannot_be_written_keeps_the_guests_exit_status(raw_image):
    proc = run_hvemu("boot", "--stats-json", "/dev/full", raw_image(RV.code(RV.poweroff(3))))
    assert proc.returncode == 3
    assert stderr_lines(proc) == ["hvemu: --stats-json /dev/full: cannot write (No space left "
                                  "on device); the exit status is the guest's"]


def yes_guest() -> bytes:
    """Print "y\\n" forever."""
    t1, t2 = RV.T1, RV.T2
    return RV.code(RV.lui(t2, 0x10000), RV.addi(t1, 0, ord("y")), RV.sw(t1, t2, 0),
                   RV.addi(t1, 0, 10), RV.sw(t1, t2, 0), RV.jal(0, -16))


def test_a_reader_that_goes_away_stops_the_guest_with_exit_74_and_one_line(raw_image):
    """`hvemu boot ... | head -c1`: it used to exit 1 without a word."""
    proc = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", "--timeout", "60",
                             str(raw_image(yes_guest()))], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(1) == b"y"
    proc.stdout.close()                                     # what head -c1 does
    err = proc.stderr.read().decode()
    assert proc.wait(30) == EXIT_IOERR
    assert err.splitlines() == ["hvemu: stdout: cannot write the guest's console output "
                                "(Broken pipe); the guest was stopped"]


def test_a_full_stdout_is_exit_74_and_one_line():
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "hvemu.cli", "boot"], stdout=full,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == EXIT_IOERR
    assert proc.stderr.decode().splitlines() == [
        "hvemu: stdout: cannot write the guest's console output (No space left on device); "
        "the guest was stopped"]


def test_a_listing_whose_reader_went_away_is_exit_74_not_a_silent_1():
    proc = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "images"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(30) == EXIT_IOERR
    assert proc.stderr.read().decode() == "hvemu: stdout: cannot write (Broken pipe)\n"
