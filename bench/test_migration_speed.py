"""Live migration, measured (hvemu/migration_bench.py): a 128 MiB guest running a
memory-writing workload (memwrite) migrated mid-run to another process -- downtime
(the target: at most 60 ms, the figure Clark et al. report for a Quake 3 server), total
time, bytes sent, rounds, and the workload's checksum after the move -- side by side with
QEMU migrating the same guest (`-incoming tcp:`, QMP `migrate`)."""
from __future__ import annotations

import os

import pytest

from hvemu import migration_bench as mb

DOWNTIME_LIMIT = 30          # ms asked for; the target below is what the guest may see
DOWNTIME_TARGET = 60         # ms


def test_hvemu_live_migration_of_a_128_mib_memory_writing_guest(benchmark):
    runs = benchmark.pedantic(lambda: mb.measure_hvemu(DOWNTIME_LIMIT), rounds=3, iterations=1)
    r = runs
    benchmark.extra_info.update(r.to_dict())
    print(f"\nhvemu: downtime {r.downtime_ms:.1f} ms, total {r.total_ms:.0f} ms, setup "
          f"{r.setup_ms:.0f} ms, {r.transferred / (1 << 20):.1f} MiB in {r.rounds} rounds, "
          f"checksum {r.checksum} ({'ok' if r.checksum_ok else 'WRONG'})")
    assert r.checksum_ok and r.output_ok
    assert r.downtime_ms <= DOWNTIME_TARGET
    assert r.transferred >= 96 << 20


def test_qemu_live_migration_of_the_same_guest(benchmark):
    if not mb.qemu_available():
        if os.environ.get("CI"):
            pytest.fail("CI must install qemu-system-misc")
        pytest.skip("needs qemu-system-riscv64")
    r = benchmark.pedantic(lambda: mb.measure_qemu(DOWNTIME_LIMIT), rounds=3, iterations=1)
    benchmark.extra_info.update(r.to_dict())
    print(f"\nQEMU: downtime {r.downtime_ms:.1f} ms, total {r.total_ms:.0f} ms, setup "
          f"{r.setup_ms:.0f} ms, {r.transferred / (1 << 20):.1f} MiB in {r.rounds} rounds, "
          f"checksum {r.checksum} ({'ok' if r.checksum_ok else 'WRONG'}), "
          f"{r.pages_differ} RAM pages of the target differ from the stopped source's")
    assert r.transferred >= 96 << 20 and r.checksum       # it completed and the guest finished
