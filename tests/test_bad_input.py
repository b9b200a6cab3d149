"""Bad input to `hvemu boot` is one line on stderr, never a traceback; a crashing guest
is a `guest fault:` report (pc, cause, disassembled instruction) and exit 120."""
from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    EXIT_CANTCREAT,
    EXIT_DATAERR,
    EXIT_FAULT,
    EXIT_NOINPUT,
    EXIT_OSERR,
    EXIT_USAGE,
    HELLO_ELF,
    RV,
    run_hvemu,
    stderr_lines,
)

FAULT_REPORT = re.compile(
    r"^hvemu: guest fault: (?P<cause>[a-zA-Z/ -]+) \(cause (?P<code>\d+)\) "
    r"at pc (?P<pc>0x[0-9a-f]{16}) in (?P<priv>[MSU])-mode, tval (?P<tval>0x[0-9a-f]+), "
    r"instruction: (?P<insn>.+?); the guest has no working trap handler for it$")


def elf32_riscv() -> bytes:
    """A well-formed 32-bit RISC-V ELF (one PT_LOAD holding `j .` at 0x8000_0000)."""
    ehdr = (b"\x7fELF\x01\x01\x01" + bytes(9)
            + struct.pack("<HHIIIIIHHHHHH", 2, 243, 1, 0x80000000, 52, 0, 0, 52, 32, 1, 40, 0, 0))
    phdr = struct.pack("<8I", 1, 84, 0x80000000, 0x80000000, 4, 4, 5, 4)
    return ehdr + phdr + struct.pack("<I", RV.J_SELF)


def garbage_with_elf_magic() -> bytes:
    rng = random.Random(7)
    return b"\x7fELF" + bytes(rng.getrandbits(8) for _ in range(60))


def host_elf() -> Path:
    true = shutil.which("true")
    if true is None or Path(true).read_bytes()[:4] != b"\x7fELF":
        pytest.skip("no host ELF executable to use as a foreign-architecture image")
    return Path(true)


def assert_one_line_error(proc, code: int, *fragments: str) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("hvemu: ")
    assert "internal error" not in line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


# ---- bad images ----

def test_a_missing_file_is_a_one_line_error(tmp_path):
    proc = run_hvemu("boot", tmp_path / "no-such-image.elf")
    assert_one_line_error(proc, EXIT_NOINPUT, "no-such-image.elf", "no such file")


def test_a_directory_is_a_one_line_error(tmp_path):
    proc = run_hvemu("boot", tmp_path)
    assert_one_line_error(proc, EXIT_NOINPUT, "is a directory")


def test_an_empty_file_is_a_one_line_error(raw_image):
    proc = run_hvemu("boot", raw_image(b"", "empty.bin"))
    assert_one_line_error(proc, EXIT_DATAERR, "empty.bin", "empty file")


@pytest.mark.parametrize("data", [
    garbage_with_elf_magic(),
    b"\x7fELF",
    b"\x7fELF\x02\x01\x01\x00",                      # a 64-bit LE ident, then nothing
], ids=["random-tail", "magic-only", "truncated-header"])
def test_garbage_that_starts_with_the_elf_magic_is_a_malformed_elf(raw_image, data):
    proc = run_hvemu("boot", raw_image(data, "garbage.elf"))
    assert_one_line_error(proc, EXIT_DATAERR, "garbage.elf", "malformed ELF")


def test_an_elf_for_another_architecture_is_refused():
    proc = run_hvemu("boot", host_elf())
    assert_one_line_error(proc, EXIT_DATAERR, "not RISC-V")


def test_a_32_bit_elf_is_refused(raw_image):
    proc = run_hvemu("boot", raw_image(elf32_riscv(), "rv32.elf"))
    assert_one_line_error(proc, EXIT_DATAERR, "rv32.elf", "not a 64-bit")


def test_an_image_larger_than_ram_is_refused(raw_image):
    big = raw_image(bytes(2 << 20), "big.bin")
    proc = run_hvemu("boot", "--memory", "1M", big)
    assert_one_line_error(proc, EXIT_DATAERR, "big.bin", "does not fit in RAM",
                          "0x80000000-0x801fffff", "--memory")


def test_an_image_overlapping_the_device_tree_asks_for_more_memory(raw_image):
    # 1 MiB RAM: the device tree goes at the RAM base, where any image starts
    proc = run_hvemu("boot", "--memory", "1M", raw_image(RV.code(RV.J_SELF)))
    assert_one_line_error(proc, EXIT_DATAERR, "device tree", "--memory")


# ---- bad options ----

@pytest.mark.parametrize("size, fragment", [
    ("0", "not usable"),
    ("lots", "bad memory size 'lots'"),
    ("3B", "not usable"),
    ("4097K", "multiple of 4 KiB"),
    ("1048577B", "multiple of 4 KiB"),
    ("65G", "not usable"),
    ("65537", "not usable"),                         # a bare number is MiB, as in QEMU
])
def test_an_unusable_memory_size_is_a_one_line_error(size, fragment):
    proc = run_hvemu("boot", "--memory", size)
    assert_one_line_error(proc, EXIT_USAGE, "--memory", fragment)


@pytest.mark.parametrize("args, fragment", [
    (["boot", "--no-such-option"], "No such option"),
    (["boot", "--max-instructions", "-5"], "--max-instructions"),
    (["boot", "--max-instructions", "0"], "--max-instructions"),
    (["boot", "--max-instructions", "many"], "--max-instructions"),
    (["boot", "--timeout", "0"], "--timeout"),
    (["boot", "--timeout", "-1"], "--timeout"),
    (["boot", "hello", "extra"], "unexpected extra argument"),
    (["reboot"], "No such command"),
], ids=["unknown-option", "negative-max-insns", "zero-max-insns", "word-max-insns",
        "zero-timeout", "negative-timeout", "extra-argument", "unknown-command"])
def test_a_bad_command_line_exits_64_with_one_line(args, fragment):
    proc = run_hvemu(*args)
    assert_one_line_error(proc, EXIT_USAGE, fragment)


# ---- guests that crash ----

def assert_fault_report(proc) -> re.Match:
    assert proc.returncode == EXIT_FAULT, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    m = FAULT_REPORT.match(lines[0])
    assert m, lines[0]
    return m


def test_a_zero_filled_image_crashes_on_an_illegal_instruction_with_mtvec_0(raw_image):
    m = assert_fault_report(run_hvemu("boot", raw_image(bytes(64), "zeros.bin")))
    assert m["cause"] == "illegal instruction" and m["code"] == "2"
    assert m["pc"] == "0x0000000080000000" and m["priv"] == "M"
    assert m["tval"] == "0x0"
    assert m["insn"] == "0000  c.unimp"


def test_a_jump_into_nowhere_crashes_with_an_instruction_access_fault(raw_image):
    wild = raw_image(RV.code(RV.lui(RV.T0, 0x12345), RV.jalr(RV.ZERO, RV.T0, 0)), "wild.bin")
    m = assert_fault_report(run_hvemu("boot", wild))
    assert m["cause"] == "instruction access fault" and m["code"] == "1"
    assert m["pc"] == "0x0000000012345000" and m["tval"] == "0x12345000"
    assert "unreadable" in m["insn"]                   # there is no instruction there


@pytest.mark.parametrize("seed, cause, insn", [
    (1, "illegal instruction", "1e4110c3  (not a valid RV64IMAC instruction)"),
    (2, "store/AMO access fault", "dcf4  c.sw a3, 0x7c(s1)"),
    (3, "illegal instruction", "973c  (not a valid RV64IMAC instruction)"),
])
def test_executing_random_bytes_crashes_with_a_report_naming_pc_cause_and_instruction(
        raw_image, seed, cause, insn):
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(4096))
    m = assert_fault_report(run_hvemu("boot", "--timeout", "20", raw_image(data, "random.bin")))
    assert m["cause"] == cause
    assert m["insn"] == insn
    # the reported instruction is the one at the reported pc
    offset = int(m["pc"], 16) - 0x80000000
    assert 0 <= offset < len(data)
    length = 4 if data[offset] & 3 == 3 else 2
    word = int.from_bytes(data[offset:offset + length], "little")
    assert m["insn"].startswith(f"{word:0{2 * length}x}  ")


def test_a_trap_handler_that_faults_itself_is_a_crash_not_a_hang(raw_image):
    # mtvec = 0x8000_0100 (zeros: c.unimp), then ecall: the handler faults forever
    code = RV.code(RV.addi(RV.T0, RV.ZERO, 1), RV.slli(RV.T0, RV.T0, 31),
                   RV.addi(RV.T0, RV.T0, 0x100), RV.csrrw(0, 0x305, RV.T0), RV.ECALL)
    m = assert_fault_report(run_hvemu("boot", "--timeout", "20", raw_image(code.ljust(512, b"\0"))))
    assert m["cause"] == "ecall from M-mode" and m["code"] == "11"
    assert m["pc"] == "0x0000000080000010"
    assert m["insn"] == "00000073  ecall"


# ---- errors found by these tests, since fixed ----

@pytest.mark.parametrize("field_offset", [32, 64 + 56 + 8], ids=["e_phoff", "p_offset"])
def test_an_elf_with_an_absurd_file_offset_is_a_malformed_elf(raw_image, field_offset):
    data = bytearray(HELLO_ELF.read_bytes())
    assert int.from_bytes(data[32:40], "little") == 64                # phdrs follow the header
    assert int.from_bytes(data[64 + 56:64 + 60], "little") == 1       # phdr 1 is the PT_LOAD
    data[field_offset:field_offset + 8] = (0xA700000000000000).to_bytes(8, "little")
    proc = run_hvemu("boot", raw_image(bytes(data), "phoff.elf"))
    assert_one_line_error(proc, EXIT_DATAERR, "phoff.elf", "malformed ELF")


def test_a_stats_json_path_that_cannot_be_written_is_refused_before_the_guest_runs(tmp_path):
    proc = run_hvemu("boot", "--stats-json", tmp_path / "missing" / "stats.json")
    assert_one_line_error(proc, EXIT_CANTCREAT, "--stats-json", "stats.json")
    assert proc.stdout == ""                       # hello never ran


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_timeout_that_is_not_a_finite_number_is_refused(value):
    proc = run_hvemu("boot", "--timeout", value, timeout=30)
    assert_one_line_error(proc, EXIT_USAGE, "--timeout")
    assert proc.stdout == ""


def test_guest_ram_the_host_cannot_allocate_is_a_one_line_error():
    # the host refusing the allocation, made deterministic: GuestMemory raises MemoryError
    script = (
        "import hvemu._core as core\n"
        "class NoMemory:\n"
        "    def __init__(self, *args):\n"
        "        raise MemoryError('Unable to allocate 64.0 GiB for an array')\n"
        "core.GuestMemory = NoMemory\n"
        "from hvemu.cli import main\n"
        "main(['boot', '--memory', '64G'])\n")
    proc = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, EXIT_OSERR, "guest RAM", "--memory")
