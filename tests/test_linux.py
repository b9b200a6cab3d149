"""Linux: Debian's riscv64 kernel with a busybox initramfs boots to a shell.

The kernel and busybox-static are Debian's own packages (fetched by tests/linuxkit.py);
the initramfs is built at test time.  The kernel boots as QEMU's virt machine boots
it: `--kernel Image --initrd FILE --append ARGS`, on the hypervisor's built-in SBI or
after OpenSBI's fw_dynamic.  Debian's userspace is lp64d, so the shell's FP (printf
%f) runs on the emulated F/D.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from conftest import require_tool, run_hvemu, stderr_lines
from linuxkit import SHELL_INIT, debian_kernel, initramfs

from hvemu.console import Console
from hvemu.vm import VM, VMConfig

FW_DYNAMIC = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin")
APPEND = "console=ttyS0 quiet"

# An /init that runs commands and powers off: the whole session in one boot.
SCRIPT_INIT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
echo "answer: $((6*7))"
printf 'pi: %.3f\\n' 3.14159
sleep 0.5 && echo "slept"
grep -m1 '^isa' /proc/cpuinfo
echo "year: $(date +%Y)"
poweroff -f
"""


@pytest.fixture(scope="module")
def kernel() -> Path:
    return debian_kernel()


def expect_session(text: str) -> None:
    assert "answer: 42" in text
    assert "pi: 3.142" in text
    assert "slept" in text
    isa = re.search(r"^isa\s*:\s*(\S+)", text, re.M)
    assert isa and isa.group(1).startswith("rv64imafdc"), text[-2000:]
    assert int(re.search(r"year: (\d+)", text).group(1)) >= 2025


def test_the_kernel_runs_a_busybox_session_and_poweroff_ends_hvemu_with_0(kernel):
    proc = run_hvemu("boot", "--kernel", kernel, "--initrd", initramfs(SCRIPT_INIT),
                     "--append", APPEND, "--memory", "256M", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expect_session(proc.stdout)


def test_after_opensbi_fw_dynamic_too(kernel):
    if not FW_DYNAMIC.exists():
        require_tool("opensbi-fw_dynamic.bin-not-installed")
    proc = run_hvemu("boot", "--bios", FW_DYNAMIC, "--kernel", kernel,
                     "--initrd", initramfs(SCRIPT_INIT), "--append", APPEND,
                     "--memory", "256M", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OpenSBI" in proc.stdout
    expect_session(proc.stdout)


def test_an_interactive_shell_answers_typed_commands(kernel):
    config = VMConfig(kernel=str(kernel), initrd=str(initramfs(SHELL_INIT)), append=APPEND,
                      memory=256 << 20)
    console = Console(input_expected=True)
    vm = VM(config, console)
    vm.start()
    try:
        at = console.expect(r"~ # ", timeout=300).end()
        console.send("echo $((6*7)); cat /proc/cpuinfo | grep -c processor\n")
        m = console.expect(r"\n42\r?\n(\d+)\r?\n", timeout=60, start=at)
        assert m.group(1) == b"1"
        console.send("poweroff -f\n")
        outcome = vm.wait(120)
    finally:
        vm.shutdown()
    assert outcome is not None and outcome.reason == "poweroff" and outcome.exit_code == 0


def test_an_idle_shell_with_the_host_clock_costs_the_host_under_5_percent(kernel):
    # cryptomgr.notests: the kernel's crypto self-tests go on in the background after the
    # prompt appears (minutes of RSA and ECC arithmetic at host speed): not an idle guest
    config = VMConfig(kernel=str(kernel), initrd=str(initramfs(SHELL_INIT)),
                      append=APPEND + " cryptomgr.notests", memory=256 << 20, clock="host")
    console = Console(input_expected=True)
    vm = VM(config, console)
    vm.start()
    try:
        console.expect(r"~ # ", timeout=300)
        time.sleep(1.0)                           # let the boot's last work settle
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(5.0)
        used = (time.process_time() - cpu) / (time.monotonic() - wall)
        console.send("echo alive\n")
        console.expect(r"alive\r?\n", timeout=30)
    finally:
        vm.shutdown()
        vm.wait(30)
    assert used < 0.05, f"idle shell used {used:.1%} of a host core"


# ---- bad input: one line, non-zero exit --------------------------------------------

def one_line_error(proc) -> str:
    lines = stderr_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("hvemu: "), \
        proc.stderr
    return lines[0]


def test_a_missing_initrd_is_refused(kernel, tmp_path):
    line = one_line_error(run_hvemu("boot", "--kernel", kernel, "--initrd", tmp_path / "none"))
    assert "no such file" in line


def test_an_initrd_that_is_not_a_file_is_refused(kernel, tmp_path):
    line = one_line_error(run_hvemu("boot", "--kernel", kernel, "--initrd", tmp_path))
    assert "is a directory" in line
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = one_line_error(run_hvemu("boot", "--kernel", kernel, "--initrd", fifo))
    assert "FIFO" in line and "not a regular file" in line


def test_an_initrd_that_does_not_fit_is_refused(kernel, tmp_path):
    big = tmp_path / "big.img"
    with open(big, "wb") as f:
        f.truncate(100 << 20)
    line = one_line_error(run_hvemu("boot", "--kernel", kernel, "--initrd", big,
                                    "--memory", "96M"))
    assert "more --memory" in line


def test_a_command_line_linux_would_truncate_is_refused(kernel):
    line = one_line_error(run_hvemu("boot", "--kernel", kernel, "--append", "x" * 1024))
    assert "at most 1023" in line


def test_initrd_and_append_need_a_kernel(tmp_path):
    (tmp_path / "i").write_bytes(b"x")
    line = one_line_error(run_hvemu("boot", "hello", "--initrd", tmp_path / "i"))
    assert "need a --kernel" in line


def test_a_truncated_image_is_refused(kernel, tmp_path):
    cut = tmp_path / "Image"
    cut.write_bytes(kernel.read_bytes()[: 8 << 20])
    line = one_line_error(run_hvemu("boot", "--kernel", cut))
    assert "truncated Linux Image" in line


def test_a_linux_image_given_as_firmware_is_refused(kernel):
    line = one_line_error(run_hvemu("boot", kernel))
    assert "give it with --kernel" in line
