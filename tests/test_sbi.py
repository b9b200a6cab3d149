"""The hypervisor as SBI firmware (SBI v2.0) for a kernel booted with --kernel alone:
a small S-mode kernel calls each extension and the test reads back its registers."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hvemu.console import Console
from hvemu.vm import VM, VMConfig

KERNEL_SRC = r"""
    .globl _start
_start:
    li a7, 0x10; li a6, 0; ecall            # base: spec version
    mv s1, a1
    li a7, 0x10; li a6, 3; li a0, 0x4442434E; ecall   # probe DBCN
    mv s2, a1
    li a7, 0x10; li a6, 3; li a0, 0x1234567; ecall    # probe nonsense
    mv s3, a1
    la a1, msg
    li a7, 0x4442434E; li a6, 0; li a0, 8; li a2, 0; ecall   # DBCN write
    mv s4, a1
    li a7, 0x4442434E; li a6, 2; li a0, 33; ecall             # DBCN write_byte '!'
    li a7, 0x48534D; li a6, 2; li a0, 0; ecall                # HSM status of hart 0
    mv s5, a0; mv s6, a1
    li a7, 0x48534D; li a6, 2; li a0, 5; ecall                # HSM status of hart 5
    mv s7, a0
    la t0, handler; csrw stvec, t0
    li t0, 2; csrs sie, t0                                    # SSIE
    csrsi sstatus, 2                                          # SIE
    li a7, 0x735049; li a6, 0; li a0, 1; li a1, 0; ecall      # IPI to hart 0
    nop
    li a7, 0x52464E43; li a6, 1; li a0, 1; li a1, 0; li a2, 0; li a3, -1; ecall  # RFENCE
    mv s9, a0
    li a7, 0x0abcdef; li a6, 0; ecall                          # unknown extension
    mv s10, a0
    li a7, 0x53525354; li a6, 0; li a0, 0; li a1, 1; ecall    # SRST: shutdown, failure
    j .
handler:
    li s8, 1
    li t0, 2; csrc sip, t0                                    # clear SSIP
    sret
    .data
msg: .ascii "dbcn ok\n"
"""


def build_kernel(tmp_path) -> str:
    if shutil.which("riscv64-unknown-elf-as") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install gcc-riscv64-unknown-elf")
        pytest.skip("no cross assembler")
    src, obj, elf = tmp_path / "k.S", tmp_path / "k.o", tmp_path / "k.elf"
    src.write_text(KERNEL_SRC)
    subprocess.run(["riscv64-unknown-elf-as", "-march=rv64imac_zicsr", "-o", obj, src],
                   check=True)
    subprocess.run(["riscv64-unknown-elf-ld", "-Ttext=0x80200000", "-o", elf, obj],
                   check=True)
    return str(elf)


def test_every_sbi_extension_answers_a_kernel_booted_without_firmware(tmp_path):
    vm = VM(VMConfig(kernel=build_kernel(tmp_path), max_instructions=100_000), Console())
    out = vm.run()
    x = vm.vcpu.get_x
    assert out.reason == "poweroff" and out.exit_code == 1      # SRST reason: failure
    assert x(9) == 2 << 24                                       # s1: spec version 2.0
    assert (x(18), x(19)) == (1, 0)                              # s2, s3: probes
    assert x(20) == 8                                            # s4: bytes written
    assert vm.console.text == "dbcn ok\n!"
    assert (x(21), x(22)) == (0, 0)                              # hart 0: started
    assert x(23) == (1 << 64) - 3                                # hart 5: invalid param
    assert x(24) == 1                                            # s8: the IPI was taken
    assert x(25) == 0 and x(26) == (1 << 64) - 2                 # RFENCE ok, unknown: -2
    sbi = out.stats.sbi
    assert sbi["base"] == 3 and sbi["dbcn"] == 2 and sbi["hsm"] == 2
    assert sbi["ipi"] == 1 and sbi["rfence"] == 1 and sbi["srst"] == 1
    assert out.stats.interrupts[(1 << 63) | 1] == 1              # supervisor software
