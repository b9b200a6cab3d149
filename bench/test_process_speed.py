"""How fast `hvemu run` runs RISC-V Linux programs, next to qemu-riscv64 on the same binary.

The figures (MIPS, system calls per second, and hvemu/QEMU, on CPU time less each
emulator's start-up: see hvemu.benchmark) go to `extra_info` and are printed; nothing
here fails on speed.  The programs are compiled at test time with
Debian's riscv64-linux-gnu-gcc (tests/processkit.py); without it, or without qemu-user,
the benchmark is skipped -- or fails when CI is set.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hvemu import benchmark as hvbench

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from processkit import compile_c, unavailable  # noqa: E402

FULL = bool(os.environ.get("HVEMU_BENCH_FULL"))
COMPUTE = Path(__file__).resolve().parent / "process" / "compute.c"

SYSCALLS = r"""
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    for (long i = 0; i < n; i++) getppid();
    return 0;
}
"""


def _need_qemu_user() -> None:
    if not hvbench.qemu_user_available():
        unavailable("qemu-riscv64 not found (install qemu-user)")


def _side_by_side(benchmark, prog, args, repeat=3):
    _need_qemu_user()
    m = benchmark.pedantic(hvbench.run_process_hvemu, args=(str(prog), args, 1),
                           rounds=1, iterations=1)
    m = min([m, hvbench.run_process_hvemu(str(prog), args, repeat - 1)],
            key=lambda x: x.seconds) if repeat > 1 else m
    q = hvbench.run_process_qemu(str(prog), args, repeat)
    qmips = m.instructions / q / 1e6
    info = {"instructions": m.instructions, "syscalls": m.syscalls,
            "hvemu_cpu_seconds": round(m.seconds, 4), "hvemu_mips": round(m.mips, 1),
            "qemu_cpu_seconds": round(q, 4), "qemu_mips": round(qmips, 1),
            "hvemu_over_qemu": round(m.mips / qmips, 3), "hvemu_wall_seconds": round(m.wall, 4)}
    benchmark.extra_info.update(info)
    print(f"\n{benchmark.name}: {info}")
    return m, q


def test_compute_bound_program_next_to_qemu_riscv64(benchmark):
    prog = compile_c(COMPUTE.read_text(), name="compute")
    rounds = "10" if FULL else "3"
    m, q = _side_by_side(benchmark, prog, [rounds])
    print(f"compute ({m.instructions:,} instructions): hvemu {m.mips:,.0f} MIPS, "
          f"qemu-riscv64 {m.instructions / q / 1e6:,.0f} MIPS -> {q / m.seconds:.2f}x")


def test_system_calls_per_second_next_to_qemu_riscv64(benchmark):
    prog = compile_c(SYSCALLS, name="syscalls")
    n = 200_000 if FULL else 50_000
    m, q = _side_by_side(benchmark, prog, [str(n)])
    benchmark.extra_info["hvemu_syscalls_per_second"] = round(n / m.seconds)
    benchmark.extra_info["qemu_syscalls_per_second"] = round(n / q)
    print(f"getppid: hvemu {n / m.seconds:,.0f}/s, qemu-riscv64 {n / q:,.0f}/s")


def test_busybox_pipeline_time(benchmark, tmp_path):
    from linuxkit import debian_busybox
    busybox = debian_busybox()
    (tmp_path / "numbers").write_text("".join(f"{i * 7919 % 100003}\n" for i in range(20000)))
    script = "sort -n numbers | uniq | wc -l; md5sum numbers; sed s/1/x/g numbers | grep -c x"
    m = benchmark.pedantic(hvbench.run_process_hvemu,
                           args=(str(busybox), ["sh", "-c", f"cd {tmp_path} && {script}"], 1),
                           rounds=3, iterations=1)
    benchmark.extra_info.update({"instructions": m.instructions, "syscalls": m.syscalls,
                                 "cpu_seconds": round(m.seconds, 4),
                                 "wall_seconds": round(m.wall, 4)})
    print(f"\nbusybox pipeline: {m.instructions:,} instructions, {m.syscalls:,} system calls, "
          f"{m.seconds:.3f} s of CPU, {m.wall:.3f} s")

