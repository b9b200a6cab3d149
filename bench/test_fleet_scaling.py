"""Wall time of a 100-guest fleet on a local Ray instance of 1 and of 2 workers.

The matrix: five bundled guests (the bench workload cut at 20M instructions, sfence,
hello, htif, disk-journal with its disk shipped to the workers) × vcpus 1 and 2 × 10
repetitions = 100 Ray tasks.  Each figure is the wall time of `Fleet.run` (Ray's own
start-up is timed apart); both go to `extra_info` and are printed, and nothing here
fails on speed -- only the results are checked (every guest powered off with 0, the bench
cut at its limit, the same instructions on both fleets).  Full length (the whole bench
workload, fpbench for htif): HVEMU_BENCH_FULL=1.
"""
from __future__ import annotations

import os
import time

import pytest

from hvemu import images
from hvemu.disks import DiskSpec

FULL = bool(os.environ.get("HVEMU_BENCH_FULL"))


def _require_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed (pip install -e '.[test]'); required when CI is set")
        pytest.skip("ray is not installed (pip install 'hvemu[fleet]')")


def _matrix(tmp_path):
    from hvemu.fleet import Guest, build_cells
    disk = tmp_path / "journal.img"
    disk.write_bytes(bytes(128 << 10))
    p = images.bundled_path
    guests = [Guest("bench", image=p("bench"), max_instructions=None if FULL else 20_000_000),
              Guest("sfence", image=p("sfence")), Guest("hello", image=p("hello")),
              Guest("fpbench", image=p("fpbench")) if FULL else Guest("htif", image=p("htif")),
              Guest("disk-journal", image=p("disk-journal"), disks=[DiskSpec(str(disk))])]
    return build_cells(guests, {"vcpus": [1, 2]}, timeout=600)


def _fleet_wall(cells, workers: int) -> tuple[float, float, list[dict]]:
    from hvemu.fleet import Fleet
    t = time.perf_counter()
    with Fleet(workers=workers) as fleet:
        assert fleet.slots == workers
        startup = time.perf_counter() - t
        t = time.perf_counter()
        runs = fleet.run(cells, repeat=10)
        wall = time.perf_counter() - t
    return startup, wall, runs


def test_wall_time_of_a_100_guest_fleet_on_1_and_2_workers(benchmark, tmp_path):
    _require_ray()
    cells = _matrix(tmp_path)
    assert len(cells) * 10 == 100
    start1, wall1, runs1 = _fleet_wall(cells, 1)
    start2, wall2, runs2 = benchmark.pedantic(_fleet_wall, args=(cells, 2), rounds=1,
                                              iterations=1)
    for runs in (runs1, runs2):
        assert len(runs) == 100
        assert {(r["guest"], r["result"], r["exit_code"]) for r in runs} <= {
            *((c.guest.name, "poweroff", 0) for c in cells),
            ("bench", "max-instructions", 125)}, [r for r in runs if r["exit_code"]][:1]
    assert [r["instructions"] for r in runs1] == [r["instructions"] for r in runs2]
    guest_seconds = sum(r["seconds"] for r in runs2)
    info = {"guests": 100, "wall_1_worker": round(wall1, 2), "wall_2_workers": round(wall2, 2),
            "speedup": round(wall1 / wall2, 2), "ray_startup_1": round(start1, 2),
            "ray_startup_2": round(start2, 2), "guest_seconds": round(guest_seconds, 2),
            "host_cpus": os.cpu_count()}
    benchmark.extra_info.update(info)
    print(f"\n100-guest fleet: 1 worker {wall1:.2f} s, 2 workers {wall2:.2f} s "
          f"({wall1 / wall2:.2f}x); Ray start-up {start1:.1f} s / {start2:.1f} s; "
          f"the guests' own run loops took {guest_seconds:.2f} s in all")
