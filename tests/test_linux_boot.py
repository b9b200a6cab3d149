"""Booting Linux as QEMU's virt machine does, checked without a real kernel: where the
initrd goes, what /chosen and the CPU nodes of the device tree say, the Image header,
the fw_jump layout check, and the Goldfish RTC."""
from __future__ import annotations

import struct

import fdt
import pytest
from conftest import run_hvemu, stderr_lines

from hvemu.board import RAM_BASE
from hvemu.console import Console
from hvemu.devices.goldfish_rtc import GoldfishRtc
from hvemu.vm import VM, VMConfig

MIB = 1 << 20


def fake_image(path, image_size: int, body: int = 4096):
    """A file with a RISC-V Linux Image header (no EFI stub) whose code is `j .`."""
    header = struct.pack("<IIQQQIIQ8sII", 0x0000006F, 0, 0x200000, image_size, 0, 2, 0, 0,
                         b"RISCV\0\0\0", 0x05435352, 0)
    path.write_bytes(header + bytes(body - len(header)))
    return path


def device_tree(vm: VM) -> fdt.FDT:
    raw = vm.memory.read(vm.fdt_addr, 0x10000)
    return fdt.parse_dtb(raw[:struct.unpack(">I", raw[4:8])[0]])


def words64(prop) -> int:
    hi, lo = prop.data
    return (hi << 32) | lo


@pytest.mark.parametrize("memory, offset", [(128 * MIB, 64 * MIB), (512 * MIB, 128 * MIB)])
def test_the_initrd_goes_after_the_kernel_by_half_the_ram_at_most_128_mib(
        tmp_path, memory, offset):
    (tmp_path / "initrd").write_bytes(b"\x5a" * 10000)
    vm = VM(VMConfig(kernel=str(fake_image(tmp_path / "Image", 8 * MIB)),
                     initrd=str(tmp_path / "initrd"), memory=memory), Console())
    chosen = device_tree(vm).get_node("/chosen")
    start = words64(chosen.get_property("linux,initrd-start"))
    end = words64(chosen.get_property("linux,initrd-end"))
    assert start == RAM_BASE + 0x200000 + offset and end == start + 10000
    assert vm.memory.read(start, 10000) == b"\x5a" * 10000


def test_chosen_has_bootargs_stdout_and_a_reproducible_rng_seed(tmp_path):
    image = fake_image(tmp_path / "Image", MIB)
    seeds = []
    for _ in range(2):
        vm = VM(VMConfig(kernel=str(image), append="console=ttyS0 quiet"), Console())
        chosen = device_tree(vm).get_node("/chosen")
        assert chosen.get_property("bootargs").value == "console=ttyS0 quiet"
        assert chosen.get_property("stdout-path").value == "/soc/serial@10000000"
        seed = chosen.get_property("rng-seed")     # the parser reads 4n bytes as cells
        seeds.append(b"".join(w.to_bytes(4, "big") for w in seed.data)
                     if isinstance(seed, fdt.PropWords) else bytes(seed.data))
    assert len(seeds[0]) == 32 and seeds[0] == seeds[1]


def test_cpus_list_their_extensions_as_riscv_isa_does(hello_vm):
    cpu = device_tree(hello_vm).get_node("/cpus/cpu@0")
    isa = cpu.get_property("riscv,isa").value
    assert cpu.get_property("riscv,isa-base").value == "rv64i"
    extensions = list(cpu.get_property("riscv,isa-extensions").data)
    base, *multi = isa.split("_")
    assert extensions == list(base[4:]) + multi and extensions[:2] == ["i", "m"]


def test_the_rtc_is_in_the_device_tree_at_qemus_address(hello_vm):
    rtc = device_tree(hello_vm).get_node("/soc/rtc@101000")
    assert rtc.get_property("compatible").value == "google,goldfish-rtc"
    assert rtc.get_property("interrupts").value == 11


def test_the_kernel_image_size_counts_for_the_fit_check(tmp_path):
    # 2 MiB of file, 40 MiB once running: in 32 MiB of RAM it cannot fit
    proc = run_hvemu("boot", "--kernel", fake_image(tmp_path / "Image", 40 * MIB, 2 * MIB),
                     "--memory", "32M")
    lines = stderr_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1 and "does not fit" in lines[0]


def test_a_kernel_over_fw_jumps_device_tree_is_refused_with_the_way_out(tmp_path):
    fw_jump = tmp_path / "fw_jump.bin"
    fw_jump.write_bytes(struct.pack("<I", 0x0000006F))
    proc = run_hvemu("boot", "--bios", fw_jump,
                     "--kernel", fake_image(tmp_path / "Image", 36 * MIB), "--memory", "256M")
    lines = stderr_lines(proc)
    assert proc.returncode != 0 and len(lines) == 1
    assert "fw_jump" in lines[0] and "fw_dynamic" in lines[0]


# ---- the Goldfish RTC ----------------------------------------------------------------

class Clock:
    def __init__(self):
        self.t = 0

    def now(self):
        return self.t


def test_rtc_time_advances_with_the_vm_clock_from_the_host_time_at_start():
    clock, lines = Clock(), []
    rtc = GoldfishRtc(clock, lines.append, epoch_ns=1_700_000_000 * 10**9)

    def read_time():
        low = rtc.read(0x00, 4)
        return (rtc.read(0x04, 4) << 32) | low
    assert read_time() == 1_700_000_000 * 10**9
    clock.t = 10_000_000                      # one second of 10 MHz ticks
    assert read_time() == 1_700_000_001 * 10**9


def test_rtc_time_can_be_set_and_its_alarm_raises_the_interrupt():
    clock, levels = Clock(), []
    rtc = GoldfishRtc(clock, levels.append, epoch_ns=0)
    five, six = 5 * 10**9, 6 * 10**9
    rtc.write(0x04, 4, five >> 32)            # set the time to 5 s: TIME_HIGH then TIME_LOW
    rtc.write(0x00, 4, five & 0xFFFFFFFF)
    low = rtc.read(0x00, 4)
    assert (rtc.read(0x04, 4) << 32) | low == five
    rtc.write(0x10, 4, 1)                     # IRQ_ENABLED
    rtc.write(0x0C, 4, six >> 32)             # alarm at 6 s: ALARM_HIGH then ALARM_LOW arms
    rtc.write(0x08, 4, six & 0xFFFFFFFF)
    assert rtc.read(0x18, 4) == 1 and rtc.next_deadline() == 10_000_000
    assert levels[-1] is False
    clock.t = 10_000_000
    rtc.poll()
    assert levels[-1] is True and rtc.read(0x18, 4) == 0
    rtc.write(0x1C, 4, 1)                     # CLEAR_INTERRUPT
    assert levels[-1] is False
