"""Bundled guests on virtio-blk disks: a pattern that survives a reboot, two disks
carved from one host file, and flushed writes that survive `kill -9` of hvemu."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from hvemu import images
from hvemu.console import Console
from hvemu.disks import DiskSpec, create_disk
from hvemu.vm import VM, VMConfig


def boot(image: str, *disks: str):
    vm = VM(VMConfig(image=images.resolve(image), timeout=120,
                     disks=[DiskSpec.parse(d) for d in disks]), Console())
    return vm, vm.run()


def test_a_pattern_written_and_flushed_is_found_again_after_the_guest_reboots(tmp_path):
    disk = tmp_path / "disk.img"
    create_disk(str(disk), 1 << 20)
    vm, out = boot("disk-reboot", str(disk))
    text = vm.console.text
    assert (out.reason, out.exit_code) == ("poweroff", 0), text
    assert text.count("disk: capacity 2048 sectors") == 2          # booted twice
    assert "disk: pattern written and flushed, rebooting" in text
    assert text.rstrip().endswith("disk: pattern found after reboot: ok")
    assert disk.read_bytes()[512:525] == b"HVEMU-PATTERN"
    assert vm.disks[0].flushes >= 1 and vm.disks[0].fd == -1       # closed at the end


def test_two_disks_carved_from_one_host_file_stay_independent(tmp_path):
    disk = tmp_path / "physical.img"
    create_disk(str(disk), 2 << 20)
    vm, out = boot("disk-two", f"{disk},size=1M", f"{disk},offset=1M,size=1M")
    assert (out.reason, out.exit_code) == ("poweroff", 0), vm.console.text
    assert "twodisks: disk0 capacity 2048 sectors" in vm.console.text
    assert "twodisks: independent: ok" in vm.console.text
    data = disk.read_bytes()
    assert data[:16] == b"HVEMU-TWODISKS-A"
    assert data[1 << 20:(1 << 20) + 16] == b"HVEMU-TWODISKS-B"


def test_a_readonly_disk_refuses_the_guests_writes(tmp_path):
    disk = tmp_path / "ro.img"
    create_disk(str(disk), 1 << 20)
    vm, out = boot("disk-flush", f"{disk},readonly")
    assert out.reason == "poweroff" and out.exit_code == 1
    assert "status IOERR" in vm.console.text
    assert disk.read_bytes() == bytes(1 << 20)


def test_flushed_writes_survive_kill_9_of_the_emulator(tmp_path):
    disk = tmp_path / "durable.img"
    create_disk(str(disk), 1 << 20)
    proc = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", "disk-flush",
                             "--disk", str(disk)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if line.startswith(b"flush: done"):
                proc.send_signal(signal.SIGKILL)       # no chance to clean up
                break
            assert time.monotonic() < deadline, "the guest never flushed"
        else:
            raise AssertionError("the guest never printed 'flush: done'")
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    data = disk.read_bytes()
    assert data[:65536] == bytes((i * 7 + 3) % 256 for i in range(65536))
    assert data[65536:] == bytes(len(data) - 65536)


def test_empty_virtio_slots_answer_like_qemus_with_device_id_0(tmp_path):
    vm = VM(VMConfig(image=images.resolve("hello")), Console())
    dev, off = vm.bus.find(0x1000_8000)
    assert dev.read(0, 4) == 0x74726976 and dev.read(8, 4) == 0
    assert os.path.basename(images.resolve("disk-flush")) == "flush.elf"
