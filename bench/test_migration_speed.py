"""Live migration, measured (hvemu/migration_bench.py): a 128 MiB guest running a
memory-writing workload (memwrite) migrated mid-run to another process -- downtime
(the target: at most 60 ms, the figure Clark et al. report for a Quake 3 server), total
time, bytes sent, rounds, and the workload's checksum after the move -- side by side with
QEMU migrating the same guest (`-incoming tcp:`, QMP `migrate`).

Each side migrates three times; every run must be correct, and the best downtime is
the figure held against the target (the machine is shared: one run may be descheduled)."""
from __future__ import annotations

import os

import pytest

from hvemu import migration_bench as mb

DOWNTIME_LIMIT = 30          # ms asked for; the target below is what the guest may see
DOWNTIME_TARGET = 60         # ms
RUNS = 3


def _describe(who: str, r) -> str:
    extra = ("" if r.pages_differ is None else
             f", {r.pages_differ} RAM pages of the target differ from the stopped source's")
    sent = ("" if r.send_downtime_ms is None else
            f" ({r.send_downtime_ms:.1f} ms until the source had sent it all, QEMU's way)")
    return (f"{who}: downtime {r.downtime_ms:.1f} ms{sent}, total {r.total_ms:.0f} ms, setup "
            f"{r.setup_ms:.0f} ms, {r.transferred / (1 << 20):.1f} MiB in {r.rounds} rounds, "
            f"checksum {r.checksum} ({'ok' if r.checksum_ok else 'WRONG'}){extra}")


def _measure(benchmark, fn) -> list:
    runs = []
    benchmark.pedantic(lambda: runs.append(fn(DOWNTIME_LIMIT)), rounds=RUNS, iterations=1)
    benchmark.extra_info["runs"] = [r.to_dict() for r in runs]
    benchmark.extra_info["best_downtime_ms"] = min(r.downtime_ms for r in runs)
    return runs


def test_hvemu_live_migration_of_a_128_mib_memory_writing_guest(benchmark):
    runs = _measure(benchmark, mb.measure_hvemu)
    print()
    for r in runs:
        print(_describe("hvemu", r))
        assert r.checksum_ok and r.output_ok
        assert r.transferred >= 96 << 20
    # the downtime is a measured figure, not a pass/fail (bench/ never asserts the clock):
    # printed next to the target
    best = min(r.downtime_ms for r in runs)
    benchmark.extra_info["meets_downtime_target"] = best <= DOWNTIME_TARGET
    print(f"best downtime {best:.1f} ms (target {DOWNTIME_TARGET} ms)")


def test_qemu_live_migration_of_the_same_guest(benchmark):
    if not mb.qemu_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install qemu-system-misc")
        pytest.skip("needs qemu-system-riscv64")
    runs = _measure(benchmark, mb.measure_qemu)
    print()
    for r in runs:
        print(_describe("QEMU", r))
        assert r.transferred >= 96 << 20 and r.checksum   # it completed, the guest finished
