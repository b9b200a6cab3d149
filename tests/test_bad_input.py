"""Bad input to `hvemu boot` is one line on stderr, never a traceback; a crashing guest
is a `guest fault:` report (pc, cause, disassembled instruction) and exit 120."""
from __future__ import annotations

import os
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
    EXIT_MAX_INSNS,
    EXIT_NOINPUT,
    EXIT_OSERR,
    EXIT_USAGE,
    HELLO_ELF,
    RV,
    run_hvemu,
    run_hvemu_measured,
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
        "    def __init__(self, *args, **kwargs):\n"
        "        raise MemoryError('Unable to allocate 64.0 GiB for an array')\n"
        "core.GuestMemory = NoMemory\n"
        "from hvemu.cli import main\n"
        "main(['boot', '--memory', '64G'])\n")
    proc = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, EXIT_OSERR, "guest RAM", "--memory")


# ---- what the image loader refuses before reading (issue 8, items 9 and 10) ----

def elf64(segments, entry=0x8000_0000, phnum=None, extra_phdrs=b"") -> bytes:
    """A minimal RV64 ELF: segments are (p_paddr, p_filesz, p_memsz[, p_type]); the file
    bytes of each are `j .` instructions, laid out after the program headers."""
    phoff, n = 64, len(segments)
    data_at = phoff + 56 * n + len(extra_phdrs)
    phdrs, body = b"", b""
    for seg in segments:
        paddr, filesz, memsz, ptype = (*seg, 1)[:4]
        phdrs += struct.pack("<IIQQQQQQ", ptype, 7, data_at + len(body), paddr, paddr,
                             filesz, memsz, 0x1000)
        body += struct.pack("<I", RV.J_SELF) * (filesz // 4) + bytes(filesz % 4)
    ehdr = (b"\x7fELF\x02\x01\x01" + bytes(9)
            + struct.pack("<HHIQQQIHHHHHH", 2, 243, 1, entry, phoff, 0, 0, 64, 56,
                          n if phnum is None else phnum, 64, 0, 0))
    return ehdr + phdrs + extra_phdrs + body


def test_a_well_formed_elf64_of_the_test_builder_boots(raw_image):
    """The builder below makes images hvemu runs: the refusals are about what they vary."""
    proc = run_hvemu("boot", "--max-instructions", "100",
                     raw_image(elf64([(0x8000_0000, 8, 0x1000)]), "ok.elf"))
    assert proc.returncode == EXIT_MAX_INSNS, proc.stderr


@pytest.mark.parametrize("segments, entry, fragments", [
    ([(0x8000_0000, 0x2000, 0x2000), (0x8000_1000, 8, 0x1000)], 0x8000_0000,
     ["segments 0 and 1 overlap", "0x80001000-0x80001fff"]),
    ([(0x8000_0000, 8, 0x1000)], 0x9000_0000,
     ["entry point 0x90000000 is outside every loaded segment", "0x80000000-0x80000fff"]),
    ([(0x8000_0000, 8, 0x1000)], 0x8000_1000, ["entry point 0x80001000 is outside"]),
    ([(0x8000_0000, 0x20, 0x10)], 0x8000_0000,
     ["segment 0 has p_filesz 0x20 larger than p_memsz 0x10"]),
], ids=["overlapping-segments", "entry-outside", "entry-just-past-the-end", "filesz-gt-memsz"])
def test_an_elf_that_qemu_refuses_is_refused_with_what_is_wrong(raw_image, segments, entry,
                                                                fragments):
    proc = run_hvemu("boot", raw_image(elf64(segments, entry), "bad.elf"))
    line = assert_one_line_error(proc, EXIT_DATAERR, "bad.elf", *fragments)
    assert "negative" not in line


def test_e_phnum_0xffff_is_named_not_called_no_loadable_segments(raw_image):
    data = elf64([(0x8000_0000, 8, 0x1000)], phnum=0xFFFF)
    line = assert_one_line_error(run_hvemu("boot", raw_image(data, "xnum.elf")), EXIT_DATAERR,
                                 "e_phnum is 0xffff", "PN_XNUM")
    assert "no loadable segments" not in line


def test_an_elf_without_program_headers_says_so(raw_image):
    data = elf64([], phnum=0)
    assert_one_line_error(run_hvemu("boot", raw_image(data, "obj.elf")), EXIT_DATAERR,
                          "no program headers")


def test_program_headers_past_the_end_of_the_file_are_a_malformed_elf(raw_image):
    data = elf64([(0x8000_0000, 8, 0x1000)], phnum=200)
    assert_one_line_error(run_hvemu("boot", raw_image(data, "short.elf")), EXIT_DATAERR,
                          "malformed ELF", "200 program headers", "past the end of the file")


def test_a_segment_no_memory_size_could_hold_does_not_suggest_a_larger_memory(raw_image):
    data = elf64([(0x8000_0000, 8, 1 << 40)])                 # 1 TiB of p_memsz
    line = assert_one_line_error(run_hvemu("boot", raw_image(data, "huge.elf")), EXIT_DATAERR,
                                 "huge.elf", "ELF segment 0", "does not fit in RAM",
                                 "no --memory can hold it")
    assert "try a larger --memory" not in line


def test_a_segment_a_larger_memory_would_hold_suggests_it(raw_image):
    data = elf64([(0x8000_0000, 8, 256 << 20)])
    assert_one_line_error(run_hvemu("boot", raw_image(data, "big.elf")), EXIT_DATAERR,
                          "does not fit in RAM", "try a larger --memory")


@pytest.mark.parametrize("data", [b"\x13", b"\x13\x00", b"\x13\x00\x00"],
                         ids=["1-byte", "half-of-a-32-bit-insn", "3-bytes"])
def test_a_raw_image_shorter_than_its_first_instruction_is_refused(raw_image, data):
    proc = run_hvemu("boot", raw_image(data, "tiny.bin"))
    assert_one_line_error(proc, EXIT_DATAERR, "tiny.bin", "shorter than one instruction")


def test_a_raw_image_of_one_compressed_instruction_runs(raw_image):
    proc = run_hvemu("boot", "--max-instructions", "10", raw_image(b"\x01\xa0", "cj.bin"))
    assert proc.returncode == EXIT_MAX_INSNS, proc.stderr        # c.j . spins


@pytest.mark.parametrize("option", ["IMAGE", "--kernel"])
def test_a_fifo_as_the_image_is_refused_at_once_instead_of_blocking(tmp_path, option):
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    args = [fifo] if option == "IMAGE" else ["--kernel", fifo]
    proc = run_hvemu("boot", *args, timeout=30)                 # it used to block forever
    assert_one_line_error(proc, EXIT_NOINPUT, "image.fifo", "is a FIFO, not a regular file")


def test_dev_zero_as_the_image_is_refused_instead_of_read_until_memory_runs_out():
    proc = run_hvemu("boot", "/dev/zero", timeout=30)
    assert_one_line_error(proc, EXIT_NOINPUT, "/dev/zero", "is a character device")


def test_a_sparse_raw_image_larger_than_ram_is_refused_on_its_size_without_reading_it(tmp_path):
    """A 2 GiB sparse file cost 2.1 GB of RSS before it was refused; now its size is
    checked first (under a 1 GiB address-space limit the old code could not even try)."""
    image = tmp_path / "sparse.bin"
    with open(image, "wb") as f:
        f.write(RV.code(RV.J_SELF))
        f.truncate(2 << 30)
    proc, peak = run_hvemu_measured("boot", image, address_space=1 << 30)
    assert_one_line_error(proc, EXIT_DATAERR, "sparse.bin", "does not fit in RAM",
                          "try a larger --memory")
    assert peak < 256 << 20, peak
