"""Snapshots (hvemu/snapshot.py): a VM saved at instruction N and restored goes on exactly
as the run that was never interrupted -- the same console output and instret -- on the
bench workload and the teaching kernel, through the Python API and `hvemu boot
--restore`; a truncated, corrupt or foreign snapshot is refused with one line."""
from __future__ import annotations

import threading
import time

import pytest
from conftest import EXIT_DATAERR, EXIT_NOINPUT, RV, run_hvemu, stderr_lines

from hvemu import images
from hvemu.errors import HvemuError
from hvemu.snapshot import SnapshotError
from hvemu.vm import VM, VMConfig


def bench_config(**kw) -> VMConfig:
    return VMConfig(image=images.bundled_path("bench"), **kw)


def kernel_config(**kw) -> VMConfig:
    return VMConfig(kernel=images.bundled_path("kernel"), **kw)


_FULL: dict = {}


def full_run(make) -> tuple[bytes, int]:
    """The uninterrupted run's console output and instructions (cached per config)."""
    key = make.__name__
    if key not in _FULL:
        vm = VM(make())
        outcome = vm.run()
        assert outcome.reason == "poweroff"
        _FULL[key] = (vm.console.output_bytes, vm.instructions)
    return _FULL[key]


@pytest.mark.parametrize("make, stop_at", [
    (bench_config, 1),
    (bench_config, 50_000_001),
    (bench_config, 234_567_891),
    (kernel_config, 1_000),
    (kernel_config, 2_500_003),            # user processes running, timers armed
    (kernel_config, 9_876_543),
    (kernel_config, 17_000_000),
])
def test_a_vm_saved_at_instruction_n_goes_on_exactly_as_the_uninterrupted_run(
        tmp_path, make, stop_at):
    output, instructions = full_run(make)
    first = VM(make(max_instructions=stop_at))
    assert first.run().reason == "max-instructions"
    assert first.instructions == stop_at
    path = tmp_path / "vm.snap"
    first.save(path)
    second = VM.restore(path)
    assert second.instructions == stop_at
    outcome = second.run()
    assert outcome.reason == "poweroff" and outcome.exit_code == 0
    assert first.console.output_bytes + second.console.output_bytes == output
    assert second.instructions == instructions


def test_a_snapshot_restored_twice_gives_the_same_run_twice(tmp_path):
    vm = VM(kernel_config(max_instructions=4_000_000))
    vm.run()
    path = tmp_path / "k.snap"
    vm.save(path)
    runs = []
    for _ in range(2):
        again = VM.restore(path)
        again.run()
        runs.append((again.console.output_bytes, again.instructions,
                     again.hart.csr.snapshot()))
    assert runs[0] == runs[1]


def test_saving_a_running_vm_pauses_it_and_it_runs_on(tmp_path):
    """vm.save() from another thread while the VM runs: the VM pauses between two
    exits, is saved, and goes on; both it and the restored copy finish the workload."""
    output, instructions = full_run(bench_config)
    vm = VM(bench_config())
    vm.start()
    time.sleep(0.05)
    path = tmp_path / "live.snap"
    vm.save(path)
    assert vm.wait(60).reason == "poweroff"
    assert vm.console.output_bytes == output and vm.instructions == instructions
    copy = VM.restore(path)
    copy.run()
    assert copy.instructions == instructions
    assert output.endswith(copy.console.output_bytes)


def test_the_snapshot_holds_only_touched_frames_compressed(tmp_path):
    vm = VM(kernel_config(max_instructions=5_000_000, memory=256 << 20))
    vm.run()
    size = vm.save(tmp_path / "k.snap")
    touched = vm.memory.touched_pages * 4096
    assert size == (tmp_path / "k.snap").stat().st_size
    assert size < touched < 4 << 20          # 256 MiB of RAM, a few hundred KiB touched


def test_the_clock_and_devices_come_back(tmp_path):
    vm = VM(kernel_config(max_instructions=3_000_000))
    vm.run()
    vm.uart.push_input(b"typed")
    vm.save(tmp_path / "s")
    back = VM.restore(tmp_path / "s")
    assert back.clock.now() == vm.clock.now()
    assert bytes(back.uart.rx) == b"typed"
    assert back.plic.enable == vm.plic.enable and back.clint.mtimecmp == vm.clint.mtimecmp
    assert back.sbi.timecmp == vm.sbi.timecmp
    assert back.rtc.now_ns() == vm.rtc.now_ns()
    assert back.hart.csr.snapshot() == vm.hart.csr.snapshot()
    assert back.vcpu.x == vm.vcpu.x and back.vcpu.pc == vm.vcpu.pc
    assert back.hart.priv == vm.hart.priv


# ---- refusals ----

@pytest.fixture(scope="module")
def bench_snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "bench.snap"
    vm = VM(bench_config(max_instructions=100_000_000))
    vm.run()
    vm.save(path)
    return path


def test_a_truncated_snapshot_is_refused(tmp_path, bench_snapshot):
    data = bench_snapshot.read_bytes()
    for cut in (0, 7, 20, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}"
        bad.write_bytes(data[:cut])
        with pytest.raises(SnapshotError, match="truncated|incomplete|corrupt"):
            VM.restore(bad)


def test_a_corrupt_snapshot_is_refused_wherever_the_damage_is(tmp_path, bench_snapshot):
    data = bench_snapshot.read_bytes()
    for at in (3, 9, 17, 40, len(data) // 2, len(data) - 40, len(data) - 1):
        bad = tmp_path / f"flip{at}"
        damaged = bytearray(data)
        damaged[at] ^= 0x10
        bad.write_bytes(bytes(damaged))
        with pytest.raises(SnapshotError):
            VM.restore(bad)


def test_a_snapshot_of_another_image_or_machine_is_refused(bench_snapshot):
    for config, reason in ((VMConfig(image=images.bundled_path("hello")), "another image"),
                           (bench_config(memory=64 << 20), "memory"),
                           (bench_config(vcpus=2), "vcpus"),
                           (kernel_config(), "without a image")):
        vm = VM(config)
        with pytest.raises(SnapshotError, match=reason.split()[-1]):
            from hvemu.snapshot import restore_into
            restore_into(vm, bench_snapshot)


def test_a_snapshot_with_a_changed_disk_is_refused(tmp_path):
    from hvemu.disks import DiskSpec
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(1 << 20))
    cfg = VMConfig(image=images.bundled_path("disk-reboot"), disks=[DiskSpec(str(disk))],
                   max_instructions=200_000)
    vm = VM(cfg)
    vm.run()
    vm.save(tmp_path / "d.snap")
    VM.restore(tmp_path / "d.snap")            # the same disk: fine
    with open(disk, "r+b") as f:
        f.write(b"changed")
    with pytest.raises(SnapshotError, match="not the disk"):
        VM.restore(tmp_path / "d.snap")


def test_a_disk_guest_saved_mid_run_finishes_as_without(tmp_path):
    from hvemu.disks import DiskSpec
    results = []
    for stop in (None, "half"):
        if stop == "half":                       # in the middle of its rounds of writes
            stop = results[0][1] // 2
        disk = tmp_path / f"d{stop}.img"
        disk.write_bytes(bytes(128 << 10))
        cfg = dict(image=images.bundled_path("disk-journal"), disks=[DiskSpec(str(disk))])
        vm = VM(VMConfig(**cfg, max_instructions=stop))
        outcome = vm.run()
        out = vm.console.output_bytes
        if stop is not None:
            assert outcome.reason == "max-instructions"
            vm.save(tmp_path / "j.snap")
            back = VM.restore(tmp_path / "j.snap")
            outcome = back.run()
            out += back.console.output_bytes
            vm = back
        assert outcome.reason == "poweroff", out
        results.append((out, vm.instructions, disk.read_bytes()))
    assert results[0] == results[1]


# ---- the command line ----

def test_hvemu_boot_restore_goes_on_where_the_snapshot_was_taken(tmp_path):
    output, instructions = full_run(kernel_config)
    vm = VM(kernel_config(max_instructions=6_000_000))
    vm.run()
    vm.save(tmp_path / "k.snap")
    for args in (("--restore", tmp_path / "k.snap"),
                 ("--kernel", "kernel", "--restore", tmp_path / "k.snap")):
        proc = run_hvemu("boot", *args, "--stats-json", tmp_path / "s.json")
        assert proc.returncode == 0, proc.stderr
        assert vm.console.output_bytes + proc.stdout.encode() == output
        import json
        assert json.loads((tmp_path / "s.json").read_text())["instructions"] == instructions


def test_hvemu_boot_restore_refuses_bad_snapshots_with_one_line(tmp_path, bench_snapshot):
    data = bench_snapshot.read_bytes()
    (tmp_path / "cut").write_bytes(data[:len(data) // 3])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    (tmp_path / "flip").write_bytes(bytes(flipped))
    (tmp_path / "junk").write_bytes(b"not a snapshot at all")
    for args, code, words in (
            (("--restore", tmp_path / "cut"), EXIT_DATAERR, "truncated"),
            (("--restore", tmp_path / "flip"), EXIT_DATAERR, "corrupt"),
            (("--restore", tmp_path / "junk"), EXIT_DATAERR, "not an hvemu snapshot"),
            (("hello", "--restore", bench_snapshot), EXIT_DATAERR, "another image"),
            (("--restore", tmp_path / "missing"), EXIT_NOINPUT, "No such file")):
        proc = run_hvemu("boot", *args)
        assert proc.returncode == code, (args, proc.stderr)
        lines = stderr_lines(proc)
        assert len(lines) == 1 and lines[0].startswith("hvemu: ") and words in lines[0], lines
        assert "Traceback" not in proc.stderr


def test_a_snapshot_file_is_written_atomically(tmp_path):
    vm = VM(bench_config(max_instructions=10_000))
    vm.run()
    path = tmp_path / "a.snap"
    vm.save(path)
    before = path.read_bytes()
    stopped = threading.Event()

    class Boom(Exception):
        pass
    import hvemu.snapshot as snap
    real = snap.capture

    def failing(v):
        stopped.set()
        raise Boom
    snap.capture = failing
    try:
        with pytest.raises(Boom):
            vm.save(path)
    finally:
        snap.capture = real
    assert stopped.is_set() and path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.snap"]


def test_restore_of_a_shut_down_vm_state_is_refused_cleanly():
    with pytest.raises(HvemuError):
        VM.restore("/nonexistent/snapshot")


# ---- SMP: the scheduler's round goes on where it was cut ----

def _bne(rs1: int, rs2: int, offset: int) -> int:
    o = offset & 0x1FFF
    return ((((o >> 12) & 1) << 31) | (((o >> 5) & 0x3F) << 25) | (rs2 << 20) | (rs1 << 15)
            | (1 << 12) | (((o >> 1) & 0xF) << 8) | (((o >> 11) & 1) << 7) | 0x63)


def smp_printer(spins: int = 40_000) -> bytes:
    """Every hart prints its digit, then spins `spins` loop iterations, 60 times; hart 0
    then powers off.  The order of the digits is the scheduler's interleaving."""
    T3, T4 = 28, 29
    words = [RV.lui(RV.T2, 0x10000),                      # t2 = UART
             RV.addi(RV.T1, RV.A0, 48),                   # t1 = '0' + hart id
             RV.addi(T4, RV.ZERO, 60),                    # t4 = lines left
             RV.sw(RV.T1, RV.T2, 0),                      # outer: print
             *RV.li(T3, spins),                          # t3 = spins
             RV.addi(T3, T3, -1),                         # inner:
             _bne(T3, RV.ZERO, -4),
             RV.addi(T4, T4, -1),
             _bne(T4, RV.ZERO, -4 * (4 + len(RV.li(T3, spins)))),
             _bne(RV.A0, RV.ZERO, 0),                     # harts but 0: spin here
             *RV.poweroff(0)]
    return RV.code(*words)


@pytest.mark.parametrize("stop_at", [150_000, 1_234_567, 5_000_001])
def test_an_smp_vm_saved_mid_quantum_goes_on_with_the_same_interleaving(
        tmp_path, raw_image, stop_at):
    image = str(raw_image(smp_printer()))
    full = VM(VMConfig(image=image, vcpus=3))
    assert full.run().reason == "poweroff"
    text = full.console.text
    # hart 0 prints its 60 and powers off; the others may be a quantum behind by then
    counts = [text.count(d) for d in "012"]
    assert counts[0] == 60 and min(counts) >= 50 and text != "".join(sorted(text)), counts
    first = VM(VMConfig(image=image, vcpus=3, max_instructions=stop_at))
    assert first.run().reason == "max-instructions"
    first.save(tmp_path / "smp.snap")
    second = VM.restore(tmp_path / "smp.snap")
    second.run()
    assert first.console.output_bytes + second.console.output_bytes == full.console.output_bytes
    assert second.instructions == full.instructions


def test_a_snapshot_restores_onto_the_hosted_class(tmp_path):
    output, instructions = full_run(kernel_config)
    vm = VM(kernel_config(max_instructions=6_000_000))
    vm.run()
    vm.save(tmp_path / "k.snap")
    proc = run_hvemu("boot", "--hypervisor", "hosted", "--restore", tmp_path / "k.snap")
    assert proc.returncode == 0, proc.stderr
    assert vm.console.output_bytes + proc.stdout.encode() == output


def test_a_vm_run_by_a_hosted_hypervisor_is_not_saved_from_the_callers_stale_copy(tmp_path):
    from hvemu.hypervisor.hosted import make_hypervisor
    vm = VM(kernel_config(max_instructions=1_000_000),
            hypervisor=make_hypervisor("hosted", reserve=128 << 20))
    vm.save(tmp_path / "before.snap")                 # not run yet: its state is here
    vm.run()
    with pytest.raises(HvemuError, match="hosted hypervisor"):
        vm.save(tmp_path / "after.snap")
    with pytest.raises(HvemuError, match="hosted hypervisor"):
        vm.migrate("tcp:127.0.0.1:1")
