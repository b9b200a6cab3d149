"""Spike's HTIF through an image's `tohost`/`fromhost` symbols.

Only stores touching the tohost word exit to the hypervisor; the rest of its page
stays in the core.  The symbols must name aligned 8-byte words of guest RAM: an
image cannot use them to make the ROM, a device or a hole writable.  HTIF keeps
working across reboots.  The guests are linked at test time with Debian's
riscv64-unknown-elf toolchain, tohost placed with --defsym.
"""
from __future__ import annotations

import subprocess

import pytest
from conftest import EXIT_MAX_INSNS, require_tool, run_hvemu

GCC = "riscv64-unknown-elf-gcc"

# Print "hi\n" through HTIF (device 1, command 1), then the rest is up to `tail`.
PRINT_HI = """
    .globl _start
_start:
    la   s0, tohost
    la   s1, fromhost
    li   t1, 'h'
    call putc
    li   t1, 'i'
    call putc
    li   t1, '\\n'
    call putc
{tail}
putc:
    li   t0, (1 << 56) | (1 << 48)
    or   t0, t0, t1
    sd   t0, 0(s0)
1:  ld   t0, 0(s0)
    bnez t0, 1b
    sd   zero, 0(s1)
    ret
"""
EXIT_7 = """
    li   t0, (7 << 1) | 1
    sd   t0, 0(s0)
2:  j    2b
"""
REBOOT = """
    li   t0, 0x100000          # the test finisher: reset
    li   t1, 0x7777
    sw   t1, 0(t0)
3:  j    3b
"""
# 100,000 stores to the word after fromhost (same page as tohost), then exit 0.
BUSY_PAGE = """
    li   t2, 100000
4:  sd   t2, 8(s1)
    addi t2, t2, -1
    bnez t2, 4b
    li   t0, 1
    sd   t0, 0(s0)
5:  j    5b
"""


def link(tmp_path, tail: str, tohost: int | str = "data", fromhost: int | str = "data8"):
    """An ELF at 0x8000_0000 whose tohost/fromhost are given addresses, or its own words."""
    gcc = require_tool(GCC)
    data = """
    .data
    .balign 64
data: .dword 0
data8: .dword 0
    .dword 0
"""
    src = tmp_path / "guest.S"
    defs = []
    for name, value in (("tohost", tohost), ("fromhost", fromhost)):
        if isinstance(value, int):
            defs.append(f"-Wl,--defsym,{name}={value:#x}")
        else:
            data += f"    .globl {name}\n    .set {name}, {value}\n"
    src.write_text(PRINT_HI.format(tail=tail) + data)
    script = tmp_path / "guest.ld"
    script.write_text("SECTIONS { . = 0x80000000; .text : { *(.text) } "
                      ". = ALIGN(4096); .data : { *(.data) } }\n")
    elf = tmp_path / "guest.elf"
    subprocess.run([gcc, "-march=rv64imac_zicsr", "-mabi=lp64", "-mcmodel=medany", "-nostdlib",
                    "-static", "-T", str(script), "-Wl,--no-warn-rwx-segments",
                    *defs, "-o", str(elf), str(src)], check=True, capture_output=True)
    return elf


def test_htif_console_and_exit_code(tmp_path):
    proc = run_hvemu("boot", link(tmp_path, EXIT_7))
    assert proc.stdout == "hi\n" and proc.returncode == 7


def test_an_image_with_tohost_reboots_and_keeps_its_htif(tmp_path):
    proc = run_hvemu("boot", link(tmp_path, REBOOT), "--max-instructions", 20_000)
    assert proc.returncode == EXIT_MAX_INSNS, proc.stderr
    assert proc.stdout.count("hi\n") >= 2 and "internal error" not in proc.stderr


def test_stores_next_to_tohost_stay_in_the_core(tmp_path):
    import json
    stats = tmp_path / "stats.json"
    proc = run_hvemu("boot", link(tmp_path, BUSY_PAGE), "--stats-json", stats)
    assert proc.returncode == 0 and proc.stdout == "hi\n"
    figures = json.loads(stats.read_text())
    assert figures["mmio"] == {"htif": 4}          # three characters and the exit


@pytest.mark.parametrize("where, address", [
    ("the boot ROM", 0x1000),
    ("a device (the UART)", 0x1000_0000),
    ("a hole in the address space", 0x4000_0000),
    ("past the end of RAM", 0x8000_0000 + (128 << 20)),
    ("a misaligned word", "data + 4"),
])
@pytest.mark.parametrize("symbol", ["tohost", "fromhost"])
def test_tohost_or_fromhost_outside_guest_ram_is_refused(tmp_path, where, address, symbol):
    kwargs = {symbol: address}
    proc = run_hvemu("boot", link(tmp_path, EXIT_7, **kwargs))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0 and proc.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("hvemu: ")
    assert f"{symbol} symbol" in lines[0] and "not an aligned 8-byte word of guest RAM" in lines[0]
