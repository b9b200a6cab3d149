"""How fast hvemu runs guests: MIPS, exits per second, boot times, next to QEMU.

Each benchmark records its figure in `extra_info` (see the pytest-benchmark JSON
with --benchmark-json) and prints it; only the gate (test_gate.py) fails on speed.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hvemu import benchmark as hvbench
from hvemu import images
from hvemu.console import Console
from hvemu.hypervisor import CLASSES
from hvemu.vm import VM, VMConfig

OPENSBI = Path("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin")
FULL = bool(os.environ.get("HVEMU_BENCH_FULL"))     # full-length workloads (default: short)
UBOOT = Path("/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin")


@pytest.fixture
def full() -> bool:
    return FULL


def run(image: str, max_instructions=None):
    vm = VM(VMConfig(image=images.resolve(image), max_instructions=max_instructions), Console())
    out = vm.run()
    assert out.reason in ("poweroff", "max-instructions"), out.detail
    return out


def record(benchmark_fixture, outcome, **extra):
    s = outcome.stats
    info = {"instructions": s.instructions, "exits": s.total_exits,
            "mips": round(s.instructions / s.seconds / 1e6, 2),
            "exits_per_second": round(s.total_exits / s.seconds), **extra}
    benchmark_fixture.extra_info.update(info)
    print(f"\n{benchmark_fixture.name}: {info}")


def test_guest_mips_on_the_bench_workload(benchmark, full):
    limit = None if full else 100_000_000
    out = benchmark.pedantic(run, args=("bench", limit), rounds=3, iterations=1)
    record(benchmark, out)


def test_guest_mips_on_the_bench_workload_under_sv39(benchmark, full):
    limit = None if full else 100_000_000
    out = benchmark.pedantic(run, args=("bench-sv39", limit), rounds=3, iterations=1)
    record(benchmark, out, shadow=out.stats.shadow)


@pytest.mark.parametrize("image", ["csrloop", "mmioloop", "sfence", "faults"])
def test_exits_per_second(benchmark, image):
    out = benchmark.pedantic(run, args=(image,), rounds=3, iterations=1)
    record(benchmark, out, shadow=out.stats.shadow)


def test_sv39_paging_costs_little_next_to_paging_off():
    """The shadow TLB hit path must be nearly free: bench under Sv39 within 10 % of bare.

    Checked on host instructions per guest instruction (callgrind), which do not
    depend on the clock; the wall-clock MIPS of whole runs are printed alongside."""
    bare = sv39 = 0.0
    for _ in range(3):                       # interleaved, best of three each
        bare = max(bare, hvbench.run_hvemu("bench", 1).mips)
        sv39 = max(sv39, hvbench.run_hvemu("bench-sv39", 1).mips)
    print(f"\nbench MIPS: paging off {bare:.1f}, Sv39 {sv39:.1f} ({sv39 / bare:.1%})")
    if not hvbench.valgrind_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install valgrind")
        pytest.skip("valgrind is not installed")
    counts = hvbench.count_figures({"fast_path_per_instruction",
                                    "fast_path_per_instruction_sv39"})
    plain = counts["fast_path_per_instruction"]["value"]
    paged = counts["fast_path_per_instruction_sv39"]["value"]
    print(f"host instructions per guest instruction: paging off {plain:.2f}, Sv39 {paged:.2f}")
    assert paged <= 1.10 * plain


def test_time_from_hvemu_boot_to_the_first_console_line(benchmark):
    def first_line() -> float:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", "hello"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        line = p.stdout.readline()
        elapsed = time.perf_counter() - t
        p.wait(60)
        assert line.startswith(b"hvemu hello:")
        return elapsed

    elapsed = benchmark.pedantic(first_line, rounds=3, iterations=1)
    benchmark.extra_info["seconds_to_first_line"] = round(elapsed, 4)


def _uboot_prompt_hvemu() -> float:
    console = Console()
    vm = VM(VMConfig(image=str(OPENSBI), kernel=str(UBOOT), timeout=60), console)
    t = time.perf_counter()
    vm.start()
    console.expect(r"Hit any key to stop autoboot", 60)
    elapsed = time.perf_counter() - t
    console.send("\n")                    # stop the countdown, then power off
    console.expect(r"=> ", 60)
    console.send("poweroff\n")
    assert vm.wait(60) is not None, "U-Boot did not power off"
    return elapsed


def _uboot_prompt_qemu() -> float:
    t = time.perf_counter()
    p = subprocess.Popen([hvbench.QEMU, "-M", "virt", "-nographic", "-m", "128M",
                          "-bios", str(OPENSBI), "-kernel", str(UBOOT)],
                         stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    buf = b""
    try:
        while b"Hit any key to stop autoboot" not in buf:
            ready, _, _ = select.select([p.stdout], [], [], 60)
            if not ready:
                raise TimeoutError("QEMU never reached the U-Boot prompt")
            buf += os.read(p.stdout.fileno(), 4096)
        return time.perf_counter() - t
    finally:
        p.kill()
        p.wait()


def test_uboot_time_to_prompt_next_to_qemu(benchmark):
    if not (OPENSBI.exists() and UBOOT.exists() and hvbench.qemu_available()):
        if os.environ.get("CI"):
            pytest.fail("CI must install opensbi, u-boot-qemu and qemu-system-misc")
        pytest.skip("needs opensbi, u-boot-qemu and qemu-system-riscv64")
    benchmark.pedantic(_uboot_prompt_hvemu, rounds=1, iterations=1)
    hv = min(_uboot_prompt_hvemu() for _ in range(3))
    qemu = min(_uboot_prompt_qemu() for _ in range(3))
    benchmark.extra_info.update({"hvemu_seconds": round(hv, 4), "qemu_seconds": round(qemu, 4)})
    print(f"\nU-Boot to its prompt: hvemu {hv:.3f} s, QEMU {qemu:.3f} s")


class _StampedConsole(Console):
    """Records the host time at which each diskbench phase line appears."""

    def __init__(self):
        super().__init__()
        self.stamps = {}

    def output(self, data: bytes) -> None:
        super().output(data)
        if b"\n" in data:
            tail = self.output_since(self.position - 256)   # the line just finished
            line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode()
            if line.startswith("diskbench: phase "):
                self.stamps[line.split()[2]] = time.perf_counter()


def test_disk_throughput_for_4k_and_64k_sequential_requests(benchmark, tmp_path):
    from hvemu.disks import DiskSpec, create_disk
    disk = tmp_path / "bench.img"
    create_disk(str(disk), 16 << 20)

    def run_diskbench():
        console = _StampedConsole()
        vm = VM(VMConfig(image=images.resolve("disk-bench"), disks=[DiskSpec.parse(str(disk))],
                         timeout=300), console)
        out = vm.run()
        assert out.reason == "poweroff" and out.exit_code == 0, console.text
        s = console.stamps
        mib = 8
        return {phase: round(mib / (s[nxt] - s[phase]), 1) for phase, nxt in
                (("4k-write", "4k-read"), ("4k-read", "64k-write"),
                 ("64k-write", "64k-read"), ("64k-read", "end"))}

    figures = benchmark.pedantic(run_diskbench, rounds=1, iterations=1)
    benchmark.extra_info.update({f"MB/s {k}": v for k, v in figures.items()})
    print(f"\ndisk throughput, MiB/s of host time: {figures}")


# ---- Linux: Debian's riscv64 kernel and a busybox initramfs to a shell prompt ----

def _until_prompt(cmd: list[str], prompt: bytes = b"~ # ", timeout: float = 300) -> float:
    """Seconds from starting cmd until its console shows the shell's prompt."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    buf = b""
    try:
        while prompt not in buf:
            ready, _, _ = select.select([p.stdout], [], [], timeout)
            if not ready:
                raise TimeoutError(f"no shell prompt: {buf[-300:]!r}")
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError(f"the console ended before the prompt: {buf[-300:]!r}")
            buf += chunk
        return time.perf_counter() - t
    finally:
        p.kill()
        p.wait()


def test_linux_time_to_a_shell_next_to_qemu(benchmark):
    """Both as a user starts them (the hvemu command, QEMU's own OpenSBI for QEMU), on
    the same kernel, initramfs, command line and RAM; the best of 3 each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from linuxkit import debian_kernel, initramfs
    if not hvbench.qemu_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install qemu-system-misc")
        pytest.skip("needs qemu-system-riscv64")
    kernel, initrd = str(debian_kernel()), str(initramfs())
    args = ["-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0", "-m", "256M"]
    hv_cmd = [sys.executable, "-m", "hvemu.cli", "boot", *args]
    qemu_cmd = [hvbench.QEMU, "-M", "virt", "-nographic", *args]
    benchmark.pedantic(_until_prompt, args=(hv_cmd,), rounds=1, iterations=1)
    hv = min(_until_prompt(hv_cmd) for _ in range(3))
    qemu = min(_until_prompt(qemu_cmd) for _ in range(3))
    benchmark.extra_info.update({"hvemu_seconds": round(hv, 3), "qemu_seconds": round(qemu, 3),
                                 "ratio": round(hv / qemu, 2)})
    print(f"\nLinux to a shell prompt: hvemu {hv:.2f} s, QEMU {qemu:.2f} s ({hv / qemu:.2f}x)")
    for kind in CLASSES[1:]:                  # the other hypervisor classes, in the same run
        t = min(_until_prompt([*hv_cmd, "--hypervisor", kind]) for _ in range(2))
        benchmark.extra_info[f"hvemu_{kind}_seconds"] = round(t, 3)
        print(f"  --hypervisor {kind}: {t:.2f} s ({t / qemu:.2f}x QEMU)")


# ---- one hypervisor, many VMs ----

def test_host_rss_per_vm_of_a_16_vm_host_booting_the_teaching_kernel(benchmark):
    """16 VMs of 128 MiB each booting the teaching kernel on one hypervisor: what each
    VM costs the host (RSS growth / 16) next to its guest RAM, and the frames it held."""
    from hvemu.host import host_rss
    from hvemu.hypervisor.hypervisor import Hypervisor

    def host16():
        before = host_rss()
        hv = Hypervisor()
        vms = [hv.create_vm(VMConfig(kernel=images.resolve("kernel"), name=f"k{i}"), Console())
               for i in range(16)]
        outcomes = hv.run()
        assert all(o.reason == "poweroff" and o.exit_code == 0 for o in outcomes.values())
        per_vm = (host_rss() - before) / 16
        frames = sum(vm.memory.touched_pages for vm in vms) * 4096 / 16
        return per_vm, frames
    per_vm, frames = benchmark.pedantic(host16, rounds=1, iterations=1)
    benchmark.extra_info.update({"rss_per_vm_mib": round(per_vm / (1 << 20), 2),
                                 "frames_per_vm_mib": round(frames / (1 << 20), 2),
                                 "guest_ram_per_vm_mib": 128})
    print(f"\n16 VMs booting the teaching kernel: host RSS {per_vm / (1 << 20):.1f} MiB per VM "
          f"({frames / (1 << 20):.1f} MiB of frames) for 128 MiB of guest RAM each")
