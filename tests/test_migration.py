"""Live migration (hvemu/migration.py): pre-copy with dirty logging through shadow-TLB
write protection, from a VM in this process (`vm.migrate`) to `hvemu boot ...
--incoming tcp:127.0.0.1:PORT` in another; the console goes on on the target, which
prints exactly what the uninterrupted run would have.  Faults: a killed target, a
corrupt stream, a version or configuration mismatch, a cancel -- the target refuses
with one line and the source goes on, losing nothing."""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from conftest import EXIT_DATAERR, RV, stderr_lines

from hvemu import images
from hvemu.vm import VM, VMConfig

_FULL: dict = {}


def uninterrupted(name: str, **kw) -> bytes:
    key = (name, tuple(sorted(kw.items())))
    if key not in _FULL:
        vm = VM(config(name, **kw))
        assert vm.run().reason == "poweroff"
        _FULL[key] = vm.console.output_bytes
    return _FULL[key]


def config(name: str, **kw) -> VMConfig:
    if name == "kernel":
        return VMConfig(kernel=images.bundled_path("kernel"), **kw)
    return VMConfig(image=images.bundled_path(name), **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (from /proc/net/tcp: connecting to
    find out would be the migration)."""
    want = f"0100007F:{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[1].endswith(f":{port:04X}") and fields[3] == "0A" and (
                            fields[1] == want or fields[1].startswith("00000000")):
                        return True
        except OSError:
            pass
    return False


class Target:
    """`hvemu boot ARGS --incoming tcp:127.0.0.1:PORT` in a child process."""

    def __init__(self, *args):
        self.port = free_port()
        self.uri = f"tcp:127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.pop("HVEMU_DEBUG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", *map(str, args),
                                      "--incoming", self.uri], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 30
        while not listening(self.port):
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the target never listened"
            time.sleep(0.02)

    def finish(self, timeout: float = 120) -> tuple[int, bytes, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err.decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


def quit_source(qmp, source: subprocess.Popen) -> tuple[bytes, bytes]:
    """QMP quit (the connection may close under the reply), then the source's output."""
    try:
        qmp.command("quit")
    except (OSError, ValueError):
        pass
    return source.communicate(timeout=60)


def kill_source(source: subprocess.Popen) -> None:
    if source.poll() is None:
        source.kill()
        source.communicate()


def migrate_mid_run(name: str, target_args, delay: float, **kw):
    """Start name's VM here, migrate it after delay seconds; (source VM, info, target)."""
    vm = VM(config(name, **kw))
    target = Target(*target_args)
    vm.start()
    time.sleep(delay)
    m = vm.migrate(target.uri, downtime_limit=50)
    info = m.wait(120)
    return vm, info, target


# ---- the mechanism: dirty logging by write protection ----

def test_dirty_logging_catches_stores_only_through_write_protection(raw_image):
    """A store loop on one page: the log has that page; once harvested, stores that hit
    the shadow TLB's cached entry are not seen again until write_protect() drops it --
    which is why every round write-protects every vCPU."""
    code = RV.code(RV.lui(RV.T0, 0x40008), RV.slli(RV.T0, RV.T0, 1),   # t0 = 0x8001_0000
                   RV.addi(RV.T1, RV.ZERO, 1),
                   RV.sw(RV.T1, RV.T0, 0),                   # loop:
                   RV.addi(RV.T1, RV.T1, 1), RV.jal(RV.ZERO, -8))
    vm = VM(VMConfig(image=str(raw_image(code)), max_instructions=1000))
    mem = vm.memory
    mem.dirty_log_start()
    vm.vcpu.write_protect()
    vm.run()
    assert list(mem.dirty_log_harvest()) == [0x10]
    assert list(mem.dirty_log_harvest()) == []
    vm2 = VM(VMConfig(image=str(raw_image(code, "b.bin"))))
    vcpu, mem = vm2.vcpu, vm2.memory
    vcpu.pc = 0x8000_0000                     # straight into the loop, past the boot ROM
    for step in range(3):
        vcpu.stop_at = vcpu.instret + 100
        mem.dirty_log_start() if step == 0 else None
        assert vcpu.run() == 1                               # EXIT_BUDGET
        got = list(mem.dirty_log_harvest())
        if step == 0:
            assert got == [0x10]
        elif step == 1:
            assert got == []                 # the cached store entry hid the stores
            vcpu.write_protect()
        else:
            assert got == [0x10]
    assert mem.read(0x80010000, 4) != bytes(4)


def test_device_dma_and_the_page_walker_are_logged_too():
    vm = VM(config("kernel", max_instructions=3_000_000))
    mem = vm.memory
    mem.dirty_log_start()
    for vc in vm.vcpus:
        vc.vcpu.write_protect()
    vm.run()                                 # Sv39 with A/D bits, user processes
    pages = set(mem.dirty_log_harvest().tolist())
    assert len(pages) > 10
    mem.dma_write(mem.ram_base + 0x12345 * 8, b"dma")
    assert list(mem.dirty_log_harvest()) == [(0x12345 * 8) >> 12]
    mem.dirty_log_stop()
    mem.dma_write(mem.ram_base, b"x")
    assert list(mem.dirty_log_harvest()) == []


# ---- migrations that work ----

def test_a_128_mib_memory_writing_guest_migrates_mid_run_and_finishes_on_the_target():
    full = uninterrupted("memwrite")
    vm, info, target = migrate_mid_run("memwrite", ["memwrite"], 1.0)
    code, out, err = target.finish()
    assert info["status"] == "completed", info
    assert code == 0, err
    assert vm.console.output_bytes + out == full
    assert b"memwrite: checksum=" in out             # the checksum is the target's
    assert vm.state == "paused"                      # the source stays paused, as QEMU's
    ram = info["ram"]
    assert ram["total"] == 128 << 20 and ram["remaining"] == 0
    assert ram["transferred"] > 96 << 20             # the filled 96 MiB at least
    assert ram["dirty-sync-count"] >= 1 and info["downtime"] >= 0
    for key in ("status", "total-time", "downtime", "setup-time", "ram"):
        assert key in info
    for key in ("transferred", "remaining", "total", "dirty-pages-rate", "dirty-sync-count",
                "duplicate", "normal", "normal-bytes", "mbps"):
        assert key in ram
    vm.shutdown()
    vm.resume()
    vm.wait(10)


def test_a_bench_guest_migrated_mid_run_prints_the_same_result():
    full = uninterrupted("bench")
    vm, info, target = migrate_mid_run("bench", ["bench"], 0.05)
    code, out, err = target.finish()
    assert info["status"] == "completed", info
    assert code == 0, err
    assert vm.console.output_bytes + out == full       # checksum and instret


@pytest.mark.parametrize("name, vcpus", [("kernel", 2), ("memwrite", 3)])
def test_an_smp_guest_migrates(name, vcpus):
    full = uninterrupted(name, vcpus=vcpus)
    args = ["--kernel", "kernel"] if name == "kernel" else [name]
    vm, info, target = migrate_mid_run(name, [*args, "--vcpus", vcpus],
                                       0.02 if name == "kernel" else 0.5, vcpus=vcpus)
    code, out, err = target.finish()
    assert info["status"] == "completed", info
    assert code == 0, err
    assert vm.console.output_bytes + out == full


def test_a_migrated_vm_goes_on_from_a_snapshot_restored_vm(tmp_path):
    """Restore a snapshot, then migrate the restored VM: both mechanisms agree."""
    full = uninterrupted("bench")
    first = VM(config("bench", max_instructions=80_000_000))
    first.run()
    first.save(tmp_path / "b.snap")
    vm = VM.restore(tmp_path / "b.snap")
    target = Target("bench")
    m = vm.migrate(target.uri)                       # not running: one round, then done
    info = m.wait(60)
    code, out, _ = target.finish()
    assert info["status"] == "completed" and code == 0
    assert first.console.output_bytes + out == full


# ---- faults ----

def test_the_target_killed_mid_migration_leaves_the_source_running_intact():
    full = uninterrupted("memwrite")
    vm = VM(config("memwrite"))
    target = Target("memwrite")
    vm.start()
    time.sleep(0.5)
    m = vm.migrate(target.uri, max_bandwidth=20 << 20)     # slow: ~5 s for the RAM
    deadline = time.monotonic() + 30
    while m.info()["status"] != "active" or m.info()["ram"]["transferred"] < 4 << 20:
        assert m.info()["status"] in ("setup", "active") and time.monotonic() < deadline
        time.sleep(0.01)
    target.kill()                                          # in the middle of round 0
    info = m.wait(60)
    assert info["status"] == "failed" and "error-desc" in info
    outcome = vm.wait(120)
    assert outcome.reason == "poweroff"
    assert vm.console.output_bytes == full
    assert not vm.memory.dirty_logging


def test_a_configuration_mismatch_is_refused_by_the_target_and_the_source_goes_on():
    full = uninterrupted("bench")
    vm = VM(config("bench"))
    target = Target("bench", "-m", "64M")
    vm.start()
    m = vm.migrate(target.uri)
    info = m.wait(60)
    code, out, err = target.finish()
    assert info["status"] == "failed"
    assert "memory" in info["error-desc"]
    assert code == EXIT_DATAERR and out == b""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hvemu: ") and "memory" in lines[0], lines
    assert vm.wait(60).reason == "poweroff" and vm.console.output_bytes == full


def test_another_image_is_refused_by_the_target():
    vm = VM(config("bench"))                       # made, not run yet
    target = Target("hello")
    info = vm.migrate(target.uri).wait(60)
    code, _, err = target.finish()
    assert info["status"] == "failed" and "another image" in info["error-desc"]
    assert code == EXIT_DATAERR and "another image" in err and len(err.strip().splitlines()) == 1


def test_a_stream_of_another_version_is_refused_with_one_line():
    target = Target("bench")
    with socket.create_connection(("127.0.0.1", target.port)) as s:
        s.sendall(struct.pack("<8sII", b"HVEMUSNP", 99, 1))
        reply = s.makefile("rb").readline()
    code, out, err = target.finish()
    assert reply.startswith(b"refused: ") and b"version 99" in reply
    assert code == EXIT_DATAERR and out == b""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "version 99" in lines[0], lines


def test_a_corrupt_stream_is_refused_and_the_source_goes_on():
    """A proxy between source and target flips one byte 30 MiB into the stream."""
    full = uninterrupted("memwrite")
    target = Target("memwrite")
    proxy = socket.create_server(("127.0.0.1", 0))
    port = proxy.getsockname()[1]

    def relay():
        src, _ = proxy.accept()
        dst = socket.create_connection(("127.0.0.1", target.port))
        seen = 0

        def back():
            try:
                while data := dst.recv(1 << 16):
                    src.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    src.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=back, daemon=True).start()
        try:
            while data := src.recv(1 << 16):
                at = (30 << 20) - seen
                if 0 <= at < len(data):
                    data = data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            dst.close()
    threading.Thread(target=relay, daemon=True).start()
    vm = VM(config("memwrite"))
    vm.start()
    time.sleep(0.5)
    info = vm.migrate(f"tcp:127.0.0.1:{port}").wait(60)
    code, out, err = target.finish()
    assert info["status"] == "failed", info
    assert code == EXIT_DATAERR and out == b""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "corrupt" in lines[0], lines
    assert vm.wait(120).reason == "poweroff" and vm.console.output_bytes == full
    proxy.close()


def test_migrate_cancel_leaves_the_source_running():
    full = uninterrupted("memwrite")
    vm = VM(config("memwrite"))
    target = Target("memwrite")
    vm.start()
    time.sleep(0.3)
    m = vm.migrate(target.uri, max_bandwidth=20 << 20)
    time.sleep(0.3)
    m.cancel()
    info = m.wait(30)
    assert info["status"] == "cancelled"
    code, out, err = target.finish()
    assert code == EXIT_DATAERR and out == b"" and len(err.strip().splitlines()) == 1
    assert vm.wait(120).reason == "poweroff" and vm.console.output_bytes == full


def test_no_target_fails_the_migration_at_once():
    vm = VM(config("bench", max_instructions=1000))
    info = vm.migrate(f"tcp:127.0.0.1:{free_port()}").wait(30)
    assert info["status"] == "failed" and "cannot connect" in info["error-desc"]


def test_bad_incoming_uris_are_usage_errors(tmp_path):
    from conftest import run_hvemu
    for uri in ("unix:/tmp/x", "tcp:127.0.0.1", "tcp:127.0.0.1:99999", "tcp::12"):
        proc = run_hvemu("boot", "bench", "--incoming", uri)
        assert proc.returncode == 64, (uri, proc.stderr)
        lines = stderr_lines(proc)
        assert len(lines) == 1 and lines[0].startswith("hvemu: "), lines


def test_migration_parameters_are_checked():
    from hvemu import migration
    from hvemu.errors import UsageError
    vm = VM(config("bench"))
    assert migration.set_parameters(vm, **{"downtime-limit": 20})["downtime-limit"] == 20
    with pytest.raises(UsageError):
        migration.set_parameters(vm, **{"downtime-limit": -1})
    with pytest.raises(UsageError):
        migration.set_parameters(vm, bogus=1)
    assert migration.query(vm) == {}


def test_an_smp_guest_that_interleaves_its_harts_goes_on_exactly_as_without(raw_image):
    """Three harts printing their digits in turn: the pauses of the rounds and the move
    cut no quantum short (the round goes on where it stopped), so the target prints
    exactly the interleaving the uninterrupted run prints."""
    from test_snapshot import smp_printer
    image = raw_image(smp_printer(spins=1_000_000))
    full = VM(VMConfig(image=str(image), vcpus=3))
    full.run()
    vm = VM(VMConfig(image=str(image), vcpus=3))
    target = Target(image, "--vcpus", "3")
    vm.start()
    time.sleep(0.1)
    info = vm.migrate(target.uri).wait(60)
    code, out, err = target.finish()
    assert info["status"] == "completed" and code == 0, (info, err)
    assert out and vm.console.output_bytes + out == full.console.output_bytes


# ---- the handlers the QMP commands call ----

def test_the_qmp_handlers_drive_migration_and_snapshots(tmp_path):
    from hvemu import migration
    from hvemu.errors import HvemuError
    cmds = migration.QMP_COMMANDS
    assert {"migrate", "query-migrate", "migrate-set-parameters", "migrate_cancel",
            "query-migrate-parameters", "x-hvemu-savevm", "x-hvemu-loadvm"} <= set(cmds)
    for fn in cmds.values():
        assert isinstance(fn.parameters, dict)
    full = uninterrupted("bench")
    first = VM(config("bench", max_instructions=150_000_000))
    first.run()
    assert cmds["x-hvemu-savevm"](first, file=str(tmp_path / "s"))["bytes"] > 0
    running = VM(config("bench"))
    running.start()                               # loadvm into a VM that is running
    time.sleep(0.05)
    before = running.console.position
    assert cmds["x-hvemu-loadvm"](running, file=str(tmp_path / "s")) == {}
    assert running.wait(60).reason == "poweroff"
    assert running.instructions == VM(config("bench")).run().stats.instructions
    assert running.console.output_since(before) == full[len(first.console.output_bytes):]
    vm = VM(config("bench"))
    assert cmds["migrate-set-parameters"](vm, **{"downtime-limit": 10}) == {}
    assert cmds["query-migrate-parameters"](vm)["downtime-limit"] == 10
    assert cmds["query-migrate"](vm) == {}
    with pytest.raises(HvemuError, match="incremental block migration"):
        cmds["migrate"](vm, uri="tcp:127.0.0.1:1", inc=True)
    target = Target("bench")
    assert cmds["migrate"](vm, uri=target.uri) == {}
    vm.migration.wait(60)
    assert cmds["query-migrate"](vm)["status"] == "completed"
    assert target.finish()[1] == full


def test_a_disk_on_a_shared_host_file_is_flushed_and_handed_over(tmp_path):
    """disk-journal acknowledges each round of writes after its FLUSH: migrated mid-run,
    the target (on the same file) goes on, and the disk ends as the uninterrupted run's."""
    from hvemu.disks import DiskSpec
    ref_disk = tmp_path / "ref.img"
    ref_disk.write_bytes(bytes(128 << 10))
    ref = VM(config("disk-journal", disks=[DiskSpec(str(ref_disk))]))
    assert ref.run().reason == "poweroff"
    disk = tmp_path / "shared.img"
    disk.write_bytes(bytes(128 << 10))
    half = ref.instructions // 2               # the middle of its rounds, exactly:
    first = VM(config("disk-journal", disks=[DiskSpec(str(disk))], max_instructions=half))
    first.run()
    first.save(tmp_path / "half.snap")
    source = VM.restore(tmp_path / "half.snap")   # ... where the source stands
    target = Target("disk-journal", "--disk", disk)
    info = source.migrate(target.uri).wait(60)
    code, out, err = target.finish()
    assert info["status"] == "completed" and code == 0, (info, err)
    assert first.console.output_bytes + source.console.output_bytes + out == \
        ref.console.output_bytes
    assert disk.read_bytes() == ref_disk.read_bytes()


def test_a_disk_guest_migrated_while_it_writes_ends_with_the_same_disk(tmp_path):
    from hvemu.disks import DiskSpec
    ref_disk = tmp_path / "ref.img"
    ref_disk.write_bytes(bytes(16 << 20))
    ref = VM(config("disk-bench", disks=[DiskSpec(str(ref_disk))]))
    assert ref.run().reason == "poweroff"
    disk = tmp_path / "shared.img"
    disk.write_bytes(bytes(16 << 20))
    vm = VM(config("disk-bench", disks=[DiskSpec(str(disk))]))
    target = Target("disk-bench", "--disk", disk)
    vm.start()
    time.sleep(0.02)          # early: on a loaded machine the guest must outlast the move
    info = vm.migrate(target.uri).wait(60)
    code, out, err = target.finish()
    assert info["status"] == "completed" and code == 0, (info, err)
    assert out and vm.console.output_bytes + out == ref.console.output_bytes
    assert disk.read_bytes() == ref_disk.read_bytes()


def test_blk_true_copies_the_disk_onto_the_targets_own_file(tmp_path):
    """Block migration: the disk's blocks go with the RAM, those the guest writes during
    the move again; the target's own file ends as the uninterrupted run's disk."""
    from hvemu.disks import DiskSpec
    ref_disk = tmp_path / "ref.img"
    ref_disk.write_bytes(bytes(16 << 20))
    ref = VM(config("disk-bench", disks=[DiskSpec(str(ref_disk))]))
    assert ref.run().reason == "poweroff"
    source_disk, target_disk = tmp_path / "source.img", tmp_path / "target.img"
    source_disk.write_bytes(bytes(16 << 20))
    target_disk.write_bytes(b"\xa5" * (16 << 20))     # not what the source has
    vm = VM(config("disk-bench", disks=[DiskSpec(str(source_disk))]))
    target = Target("disk-bench", "--disk", target_disk)
    vm.start()
    time.sleep(0.02)          # early: round 0 carries the whole disk, the guest must outlast it
    m = vm.migrate(target.uri, blk=True)
    info = m.wait(60)
    code, out, err = target.finish()
    assert info["status"] == "completed" and code == 0, (info, err)
    assert out and vm.console.output_bytes + out == ref.console.output_bytes
    assert target_disk.read_bytes() == ref_disk.read_bytes()     # 0xa5 nowhere left


def test_a_vm_migrates_onto_a_hosted_hypervisor():
    """native -> user-mode hosted: the target runs with --hypervisor hosted."""
    full = uninterrupted("kernel")
    vm = VM(config("kernel"))
    target = Target("--kernel", "kernel", "--hypervisor", "hosted")
    vm.start()
    time.sleep(0.03)
    info = vm.migrate(target.uri).wait(60)
    code, out, err = target.finish()
    assert info["status"] == "completed" and code == 0, (info, err)
    assert vm.console.output_bytes + out == full


@pytest.mark.parametrize("source_class, target_class", [
    ("native", "native"), ("dual", "native"), ("native", "dual"), ("hosted", "dual")])
def test_qmp_migrate_moves_a_vm_between_two_hvemu_processes(source_class, target_class):
    """The whole thing from the command line: source `hvemu boot memwrite --qmp ...`,
    target `hvemu boot memwrite --incoming ...`, QMP migrate-set-parameters, migrate,
    query-migrate until completed (QEMU's field names), quit the source -- between
    hypervisor classes too (a hosted or dual source's QMP is served by its hypervisor's
    process, where the devices and the dirty log's reader are)."""
    from hvemu.migration_bench import Qmp
    full = uninterrupted("memwrite")
    target = Target("memwrite", "--hypervisor", target_class)
    qmp_port = free_port()
    source = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", "memwrite", "--qmp",
                               f"tcp:127.0.0.1:{qmp_port},server,wait=off",
                               "--hypervisor", source_class],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        qmp = Qmp(qmp_port)
        time.sleep(1.0)
        assert qmp.command("query-migrate") == {}
        assert qmp.command("migrate-set-parameters", **{"downtime-limit": 50}) == {}
        assert qmp.command("query-migrate-parameters")["downtime-limit"] == 50
        assert qmp.command("migrate", uri=target.uri) == {}
        deadline = time.monotonic() + 120
        while (info := qmp.command("query-migrate"))["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert info["status"] == "completed", info
        for key in ("total-time", "downtime", "setup-time"):
            assert isinstance(info[key], int)
        assert info["ram"]["dirty-sync-count"] >= 1 and info["ram"]["total"] == 128 << 20
        source_out, _ = quit_source(qmp, source)
    finally:
        kill_source(source)
    code, out, err = target.finish()
    assert code == 0, err
    assert source_out + out == full


@pytest.mark.parametrize("saved_on, restored_on", [("dual", "native"), ("hosted", "dual")])
def test_a_snapshot_taken_over_qmp_on_one_class_goes_on_on_another(tmp_path, saved_on,
                                                                   restored_on):
    """x-hvemu-savevm of a VM a hosted or dual hypervisor runs, then `hvemu boot --restore`
    under another class: the two runs together print what one uninterrupted run prints."""
    from hvemu.migration_bench import Qmp
    full = uninterrupted("kernel")
    snap = tmp_path / "vm.snap"
    qmp_port = free_port()
    source = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", "--kernel", "kernel",
                               "--hypervisor", saved_on, "-S", "--qmp",
                               f"tcp:127.0.0.1:{qmp_port},server,wait=off"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        qmp = Qmp(qmp_port)
        assert qmp.command("query-status")["status"] == "prelaunch"
        qmp.command("cont")
        time.sleep(0.05)
        qmp.command("stop")
        assert qmp.command("query-status")["status"] == "paused"
        assert qmp.command("x-hvemu-savevm", file=str(snap))["bytes"] > 0
        first, err = quit_source(qmp, source)
    finally:
        kill_source(source)
    assert source.returncode == 0, err
    proc = subprocess.run([sys.executable, "-m", "hvemu.cli", "boot", "--restore", snap,
                           "--hypervisor", restored_on], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert first + proc.stdout == full
    assert first and proc.stdout                     # saved in the middle, not at an end


def test_a_hosted_vm_is_refused_from_outside_its_hypervisors_process():
    from hvemu.errors import HvemuError
    from hvemu.hypervisor.hosted import HostedHypervisor
    vm = VM(config("bench", max_instructions=1_000_000),
            hypervisor=HostedHypervisor(reserve=128 << 20))
    vm.run()
    with pytest.raises(HvemuError, match="save or migrate it over QMP"):
        vm.migrate("tcp:127.0.0.1:1")
