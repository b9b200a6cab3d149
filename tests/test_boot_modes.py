"""Booting like QEMU: real firmware (OpenSBI + U-Boot), an S-mode kernel on the
built-in SBI and on OpenSBI, and the native twins behaving like the Python handlers."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from hvemu.console import Console
from hvemu.vm import VM, VMConfig

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "firmware" / "kernel" / "kernel.elf"
OPENSBI = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin")
OPENSBI_DYNAMIC = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin")
UBOOT = Path("/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin")


def need(path: Path, package: str) -> None:
    """Skip without the Debian package, but fail in CI, which must have installed it."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} missing: CI must install Debian's {package}")
        pytest.skip(f"{path} missing (apt-get install {package})")


def boot(image=None, kernel=None, **kw) -> tuple[VM, object]:
    console = Console()
    vm = VM(VMConfig(image=str(image) if image else None,
                     kernel=str(kernel) if kernel else None, timeout=120, **kw), console)
    return vm, vm.run()


def check_kernel_transcript(text: str) -> None:
    assert "kernel: hvemu teaching kernel booting on hart 0" in text
    assert "kernel: sv39 paging on" in text
    # two processes preempted by the timer: their lines interleave
    ticks = re.findall(r"proc ([AB]): tick \d", text)
    assert ticks.count("A") == 5 and ticks.count("B") == 5
    assert "".join(ticks) != "A" * 5 + "B" * 5, "processes A and B never interleaved"
    switches = int(re.search(r"kernel: (\d+) context switches", text).group(1))
    assert switches >= 2
    # demand paging and a process killed for touching kernel memory
    assert re.search(r"kernel: demand-paged 0x1000000 for pid 1", text)
    assert "proc A: read back 1024 words from the heap, 0 wrong: ok" in text
    assert re.search(r"kernel: killed pid 3 \(load page fault at 0x80200000, scause=13\)", text)
    assert text.rstrip().endswith("kernel: all processes exited")


def test_kernel_runs_on_the_builtin_sbi_in_virtual_s_mode():
    vm, out = boot(kernel=KERNEL)
    assert (out.reason, out.exit_code) == ("poweroff", 0)
    check_kernel_transcript(vm.console.text)
    assert out.stats.sbi["time"] >= 2 and out.stats.sbi["srst"] == 1
    assert out.stats.interrupts, "the timer never preempted anything"


def test_kernel_runs_on_opensbi_fw_jump_in_virtual_m_mode():
    need(OPENSBI, "opensbi")
    vm, out = boot(image=OPENSBI, kernel=KERNEL)
    assert (out.reason, out.exit_code) == ("poweroff", 0)
    text = vm.console.text
    assert "OpenSBI v1." in text
    check_kernel_transcript(text[text.index("kernel: hvemu teaching kernel"):])
    # OpenSBI's SBI calls are ecalls from virtual S into virtual M: reflected, not emulated
    assert out.stats.exceptions[9] > 0 and out.stats.privileged["mret"] > 0


def test_kernel_runs_on_opensbi_fw_dynamic_with_the_rom_info_block():
    need(OPENSBI_DYNAMIC, "opensbi")
    vm, out = boot(image=OPENSBI_DYNAMIC, kernel=KERNEL)
    assert (out.reason, out.exit_code) == ("poweroff", 0)
    assert "kernel: all processes exited" in vm.console.text


def test_opensbi_and_uboot_reach_the_prompt_and_answer_a_scripted_session():
    need(OPENSBI, "opensbi")
    need(UBOOT, "u-boot-qemu")
    console = Console()
    vm = VM(VMConfig(image=str(OPENSBI), kernel=str(UBOOT), timeout=120), console)
    runner = threading.Thread(target=vm.run, daemon=True)
    runner.start()
    console.expect(r"Hit any key to stop autoboot", 60)
    console.send("\n")
    console.expect(r"=> ", 60)

    def command(line: str) -> str:
        start = console.position
        console.send(line + "\n")
        console.expect(r"\n=> ", 60, start)
        return console.output_since(start).decode()

    assert "U-Boot 2023.01" in command("version")
    info = command("bdinfo")
    assert re.search(r"-> start\s+= 0x0+80000000", info)
    assert re.search(r"-> size\s+= 0x0+8000000", info)          # 128 MiB
    dump = command("md.l 0x1000 6")
    # the boot ROM: auipc t0,0 / addi a2,t0,40 / csrr a0,mhartid / ld a1 / ld t0 / jr t0
    assert "00001000: 00000297 02828613 f1402573 0202b583" in dump
    console.send("poweroff\n")
    runner.join(60)
    assert not runner.is_alive(), "U-Boot's poweroff did not stop the VM"


def test_native_counter_reads_match_the_csr_handler(tmp_path):
    """The core's twin for cycle/time/instret reads gives what the Python handler gives."""
    asm = shutil.which("riscv64-unknown-elf-as")
    if asm is None:
        if os.environ.get("CI"):
            pytest.fail("riscv64-unknown-elf-as missing: CI must install gcc-riscv64-unknown-elf")
        pytest.skip("no cross assembler")
    src = tmp_path / "counters.S"
    src.write_text("""
        .globl _start
    _start:
        li s0, 1000
        li s1, 0x10000000            # UART: the result as 8 bytes
        li a3, 0
    1:  rdtime t0
        rdcycle t1
        rdinstret t2
        add a3, a3, t0
        xor a3, a3, t1
        add a3, a3, t2
        addi s0, s0, -1
        bnez s0, 1b
        li t3, 8
    2:  sb a3, 0(s1)
        srli a3, a3, 8
        addi t3, t3, -1
        bnez t3, 2b
        li t0, 0x100000
        li t1, 0x5555
        sw t1, 0(t0)
    3:  j 3b
    """)
    obj, raw = tmp_path / "c.o", tmp_path / "c.bin"
    subprocess.run([asm, "-march=rv64imac_zicsr", "-o", obj, src], check=True)
    subprocess.run(["riscv64-unknown-elf-objcopy", "-O", "binary", obj, raw], check=True)
    results = []
    for reference in (False, True):
        vm, out = boot(image=raw, reference=reference)
        assert out.reason == "poweroff"
        results.append((vm.console.output_bytes, out.stats.instructions))
    assert results[0] == results[1]
