"""Wall time of a 100-guest fleet with 1 and with 2 Ray workers busy.

The matrix: five bundled guests (the bench workload cut at 10M instructions, the
teaching kernel, hello, htif, disk-journal with its disk shipped to the workers) ×
vcpus 1 and 2 × 10 repetitions = 100 Ray tasks, on one local Ray instance of two
workers: first one guest at a time (one worker busy), then two at a time.  Each figure
is the wall time of `Fleet.run` (Ray's start-up is timed apart); all go to `extra_info`
and are printed, and nothing here fails on speed -- only the results are checked (every
guest powered off with 0, the bench cut at its limit, the same instructions both times,
at most 1 and 2 guests at once).  Full length (the whole bench workload, fpbench for
htif): HVEMU_BENCH_FULL=1.
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
    guests = [Guest("bench", image=p("bench"), max_instructions=None if FULL else 10_000_000),
              Guest("kernel", kernel=p("kernel")), Guest("hello", image=p("hello")),
              Guest("fpbench", image=p("fpbench")) if FULL else Guest("htif", image=p("htif")),
              Guest("disk-journal", image=p("disk-journal"), disks=[DiskSpec(str(disk))])]
    return build_cells(guests, {"vcpus": [1, 2]}, timeout=600)


def test_wall_time_of_a_100_guest_fleet_on_1_and_2_workers(benchmark, tmp_path):
    _require_ray()
    from hvemu.fleet import Fleet
    cells = _matrix(tmp_path)
    assert len(cells) * 10 == 100
    t = time.perf_counter()
    with Fleet(workers=2) as fleet:
        assert fleet.slots == 2
        startup = time.perf_counter() - t
        fleet.run(cells[:2], slots=2)                # both workers up, hvemu imported

        def timed(slots):
            t = time.perf_counter()
            runs = fleet.run(cells, repeat=10, slots=slots)
            return time.perf_counter() - t, runs
        wall1, runs1 = timed(1)                      # one guest at a time: one worker busy
        wall2, runs2 = benchmark.pedantic(timed, args=(2,), rounds=1, iterations=1)
    for runs in (runs1, runs2):
        assert len(runs) == 100
        assert {(r["guest"], r["result"], r["exit_code"]) for r in runs} <= {
            *((c.guest.name, "poweroff", 0) for c in cells),
            ("bench", "max-instructions", 125)}, [r for r in runs if r["exit_code"]][:1]
    assert [r["instructions"] for r in runs1] == [r["instructions"] for r in runs2]
    assert len({r["pid"] for r in runs2}) == 2

    def most_at_once(runs):                          # guests running at one moment, at most
        return max(sum(1 for o in runs if o["started"] < r["ended"] <= o["ended"])
                   for r in runs)
    assert most_at_once(runs1) == 1 and most_at_once(runs2) == 2
    guest1, guest2 = (sum(r["seconds"] for r in runs) for runs in (runs1, runs2))
    info = {"guests": 100, "wall_1_worker": round(wall1, 2), "wall_2_workers": round(wall2, 2),
            "speedup": round(wall1 / wall2, 2), "ray_startup": round(startup, 2),
            "guest_seconds_1": round(guest1, 2), "guest_seconds_2": round(guest2, 2),
            "host_cpus": os.cpu_count(), "load_average": os.getloadavg()[0]}
    benchmark.extra_info.update(info)
    print(f"\n100-guest fleet: 1 worker {wall1:.2f} s, 2 workers {wall2:.2f} s "
          f"({wall1 / wall2:.2f}x); the guests' own run loops {guest1:.2f} s / {guest2:.2f} s "
          f"in all; Ray start-up {startup:.1f} s; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
