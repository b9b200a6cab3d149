"""Unit tests of the device models through their register interfaces (as the guest
sees them over MMIO), the MMIO bus, the boot ROM and the generated device tree."""
from __future__ import annotations

import struct

import fdt
import pytest
from conftest import HELLO_ELF

from hvemu.board import Board
from hvemu.boot.devicetree import build_device_tree
from hvemu.boot.rom import FW_DYNAMIC_MAGIC, boot_rom
from hvemu.devices.bus import MmioBus
from hvemu.devices.clint import Clint
from hvemu.devices.finisher import TestFinisher
from hvemu.devices.plic import Plic
from hvemu.devices.uart import Uart16550
from hvemu.disasm import disassemble
from hvemu.hypervisor.clock import VirtualClock

# ---------------------------------------------------------------- UART 16550A
RBR_THR_DLL, IER_DLM, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)
LSR_DR, LSR_THRE, LSR_TEMT = 0x01, 0x20, 0x40
IIR_NONE, IIR_THRE, IIR_RDA = 0x01, 0x02, 0x04


class UartRig:
    """A UART with its output and interrupt line recorded."""

    def __init__(self):
        self.out = bytearray()
        self.levels: list[bool] = []
        self.uart = Uart16550(self.out.extend, self.levels.append)

    @property
    def irq(self) -> bool:
        return self.levels[-1]

    def rd(self, reg: int) -> int:
        return self.uart.read(reg, 1)

    def wr(self, reg: int, value: int) -> None:
        self.uart.write(reg, 1, value)


@pytest.fixture
def rig():
    return UartRig()


def test_uart_resets_with_no_interrupt_and_an_empty_transmitter(rig):
    assert rig.irq is False
    assert rig.rd(IER_DLM) == 0 and rig.rd(LCR) == 0
    assert rig.rd(IIR_FCR) == IIR_NONE
    assert rig.rd(LSR) == LSR_THRE | LSR_TEMT


def test_uart_thr_writes_go_to_the_output_sink_byte_by_byte(rig):
    for ch in b"hi\n":
        rig.wr(RBR_THR_DLL, ch)
    rig.wr(RBR_THR_DLL, 0x1F5)                   # only the low byte of the bus value
    assert bytes(rig.out) == b"hi\n\xf5"
    assert rig.rd(LSR) & LSR_THRE                # the transmitter is always ready


def test_uart_lsr_data_ready_follows_the_receive_queue(rig):
    assert not rig.rd(LSR) & LSR_DR
    rig.uart.push_input(b"ab")
    assert rig.rd(LSR) & LSR_DR
    assert rig.rd(RBR_THR_DLL) == ord("a")
    assert rig.rd(LSR) & LSR_DR
    assert rig.rd(RBR_THR_DLL) == ord("b")
    assert not rig.rd(LSR) & LSR_DR
    assert rig.rd(RBR_THR_DLL) == 0              # reading an empty RBR gives 0


def test_uart_divisor_latch_is_behind_lcr_dlab(rig):
    rig.uart.push_input(b"x")
    rig.wr(IER_DLM, 0x01)
    rig.wr(LCR, 0x80 | 0x03)                     # DLAB, 8N1
    rig.wr(RBR_THR_DLL, 0x03)                    # 38400 baud at 1.8432 MHz
    rig.wr(IER_DLM, 0x00)
    assert rig.rd(RBR_THR_DLL) == 0x03 and rig.rd(IER_DLM) == 0x00
    assert rig.out == b""                        # a DLL write is not a character
    rig.wr(LCR, 0x03)                            # DLAB off: RBR/THR and IER again
    assert rig.rd(IER_DLM) == 0x01               # IER was not overwritten by the DLM write
    assert rig.rd(RBR_THR_DLL) == ord("x")       # the received byte was not consumed
    rig.wr(LCR, 0x83)
    assert (rig.rd(RBR_THR_DLL), rig.rd(IER_DLM)) == (0x03, 0x00)
    assert rig.rd(LCR) == 0x83


def test_uart_rx_data_interrupt_is_raised_when_enabled_and_cleared_by_reading_rbr(rig):
    rig.uart.push_input(b"k")
    assert rig.irq is False                      # IER.ERBFI off: no interrupt
    assert rig.rd(IIR_FCR) == IIR_NONE
    rig.wr(IER_DLM, 0x01)
    assert rig.irq is True
    assert rig.rd(IIR_FCR) == IIR_RDA
    assert rig.rd(RBR_THR_DLL) == ord("k")
    assert rig.irq is False
    assert rig.rd(IIR_FCR) == IIR_NONE
    rig.uart.push_input(b"z")                    # new data while enabled: raised at once
    assert rig.irq is True


def test_uart_thr_empty_interrupt_is_raised_by_enabling_and_cleared_by_reading_iir(rig):
    rig.wr(IER_DLM, 0x02)                        # ETBEI: THR is empty right away
    assert rig.irq is True
    assert rig.rd(IIR_FCR) == IIR_THRE           # reading IIR acknowledges it
    assert rig.irq is False
    assert rig.rd(IIR_FCR) == IIR_NONE
    rig.wr(RBR_THR_DLL, ord("A"))                # the byte leaves, THR is empty again
    assert rig.irq is True
    rig.wr(IER_DLM, 0x00)
    assert rig.irq is False


def test_uart_rx_data_interrupt_takes_priority_over_thr_empty_in_iir(rig):
    rig.wr(IER_DLM, 0x03)
    rig.uart.push_input(b"q")
    assert rig.rd(IIR_FCR) == IIR_RDA
    rig.rd(RBR_THR_DLL)
    assert rig.rd(IIR_FCR) == IIR_THRE


def test_uart_irq_callback_reports_each_level(rig):
    rig.levels.clear()
    rig.wr(IER_DLM, 0x01)
    rig.uart.push_input(b"1")
    rig.rd(RBR_THR_DLL)
    assert rig.levels[-2:] == [True, False]
    assert rig.levels[0] is False                # enabling with nothing received: low


def test_uart_fcr_clears_the_receive_fifo_and_enables_fifo_bits_in_iir(rig):
    rig.wr(IER_DLM, 0x01)
    rig.uart.push_input(b"junk")
    assert rig.irq is True
    rig.wr(IIR_FCR, 0x01)                        # FIFO enable, no clear
    assert rig.rd(LSR) & LSR_DR
    assert rig.rd(IIR_FCR) == 0xC0 | IIR_RDA
    rig.wr(IIR_FCR, 0x07)                        # enable + clear RX + clear TX
    assert not rig.rd(LSR) & LSR_DR
    assert rig.irq is False
    assert rig.rd(IIR_FCR) == 0xC0 | IIR_NONE


def test_uart_scratch_register_and_modem_status(rig):
    rig.wr(SCR, 0x5A)
    assert rig.rd(SCR) == 0x5A
    assert rig.rd(MSR) & 0xB0 == 0xB0            # CTS, DSR, DCD asserted


# ---------------------------------------------------------------- CLINT
MSIP0, MTIMECMP0, MTIME = 0x0000, 0x4000, 0xBFF8


class FakeVm:
    """What a VirtualClock reads of its VM: the harts and their retired instructions."""

    class board:
        harts = 1

    instret = 0

    @property
    def instructions(self):
        return self.instret


@pytest.fixture
def clint():
    vcpu = FakeVm()
    changes = []
    c = Clint(VirtualClock(vcpu), 1, on_change=lambda: changes.append(1))
    c.vcpu, c.changes = vcpu, changes
    return c


def test_clint_mtime_is_the_virtual_clock_in_64_and_32_bit_reads(clint):
    clint.vcpu.instret = 10 * 0x1_2345_6789          # 10 instructions per tick
    assert clint.read(MTIME, 8) == 0x1_2345_6789
    assert clint.read(MTIME, 4) == 0x2345_6789
    assert clint.read(MTIME + 4, 4) == 0x1


def test_clint_mtime_writes_move_the_clock(clint):
    clint.vcpu.instret = 1000
    clint.write(MTIME, 8, 5_000_000)
    assert clint.read(MTIME, 8) == 5_000_000
    clint.vcpu.instret += 100                        # time goes on from there
    assert clint.read(MTIME, 8) == 5_000_010
    clint.write(MTIME + 4, 4, 1)                     # high half only
    assert clint.read(MTIME, 8) == (1 << 32) | 5_000_010


def test_clint_mtimecmp_is_64_bit_and_accessible_as_32_bit_halves(clint):
    assert clint.read(MTIMECMP0, 8) == (1 << 64) - 1    # reset: never
    clint.write(MTIMECMP0, 8, 0x0123_4567_89AB_CDEF)
    assert clint.mtimecmp[0] == 0x0123_4567_89AB_CDEF
    assert clint.read(MTIMECMP0, 4) == 0x89AB_CDEF
    assert clint.read(MTIMECMP0 + 4, 4) == 0x0123_4567
    clint.write(MTIMECMP0 + 4, 4, 0xFFFF_FFFF)          # the usual "disable, then set low"
    clint.write(MTIMECMP0, 4, 0x1000)
    assert clint.read(MTIMECMP0, 8) == 0xFFFF_FFFF_0000_1000
    clint.write(MTIMECMP0 + 4, 4, 0)
    assert clint.read(MTIMECMP0, 8) == 0x1000
    assert clint.changes                                # the hypervisor hears of it


def test_clint_timer_is_pending_while_mtime_reaches_mtimecmp(clint):
    clint.write(MTIMECMP0, 8, 100)
    clint.vcpu.instret = 990
    assert not clint.timer_pending(0)
    clint.vcpu.instret = 1000
    assert clint.timer_pending(0)
    clint.write(MTIMECMP0, 8, 101)
    assert not clint.timer_pending(0)


def test_clint_msip_holds_one_bit_per_hart(clint):
    assert clint.read(MSIP0, 4) == 0
    clint.write(MSIP0, 4, 1)
    assert clint.msip[0] == 1 and clint.read(MSIP0, 4) == 1
    clint.write(MSIP0, 4, 0xFFFF_FFFE)                   # only bit 0 exists
    assert clint.read(MSIP0, 4) == 0
    assert len(clint.changes) == 2


def test_clint_unmapped_offsets_read_zero_and_ignore_writes(clint):
    clint.write(0x8000, 4, 0xFFFF)
    assert clint.read(0x8000, 4) == 0
    assert clint.read(MTIMECMP0, 8) == (1 << 64) - 1


# ---------------------------------------------------------------- PLIC
PRIO, PENDING, ENABLE, CONTEXT = 0x0, 0x1000, 0x2000, 0x200000


def threshold(ctx: int) -> int:
    return CONTEXT + 0x1000 * ctx


def claim(ctx: int) -> int:
    return CONTEXT + 0x1000 * ctx + 4


def enable(ctx: int, word: int = 0) -> int:
    return ENABLE + 0x80 * ctx + 4 * word


@pytest.fixture
def plic():
    changes = []
    p = Plic(96, 2, on_change=lambda: changes.append(1))
    p.changes = changes
    return p


def test_plic_priorities_are_3_bits_and_source_0_does_not_exist(plic):
    plic.write(PRIO + 4 * 10, 4, 5)
    plic.write(PRIO + 4 * 11, 4, 0xF)
    plic.write(PRIO, 4, 7)
    assert plic.read(PRIO + 4 * 10, 4) == 5
    assert plic.read(PRIO + 4 * 11, 4) == 7
    assert plic.read(PRIO, 4) == 0


def test_plic_enables_are_per_context_bitmaps(plic):
    plic.write(enable(0), 4, 1 << 10)
    plic.write(enable(1, 1), 4, 1 << 1)                 # source 33 in word 1 of context 1
    assert plic.read(enable(0), 4) == 1 << 10
    assert plic.read(enable(1), 4) == 0
    assert plic.read(enable(1, 1), 4) == 1 << 1
    assert plic.enable == [1 << 10, 1 << 33]
    plic.write(enable(0), 4, 1)                         # source 0 cannot be enabled
    assert plic.read(enable(0), 4) == 0


def test_plic_a_raised_line_is_pending_and_drives_only_contexts_that_enable_it(plic):
    plic.write(PRIO + 4 * 10, 4, 1)
    plic.write(enable(1), 4, 1 << 10)                   # S-mode context only
    plic.set_level(10, True)
    assert plic.read(PENDING, 4) == 1 << 10
    assert plic.ctx_pending == [False, True]
    assert plic.context_pending(1) and not plic.context_pending(0)
    plic.set_level(10, False)
    assert plic.read(PENDING, 4) == 0
    assert plic.ctx_pending == [False, False]
    assert plic.changes


def test_plic_priority_0_never_interrupts_and_the_threshold_must_be_exceeded(plic):
    plic.write(enable(0), 4, 1 << 10)
    plic.set_level(10, True)
    assert plic.ctx_pending[0] is False                 # priority 0: disabled
    plic.write(PRIO + 4 * 10, 4, 3)
    assert plic.ctx_pending[0] is True
    plic.write(threshold(0), 4, 3)
    assert plic.read(threshold(0), 4) == 3
    assert plic.ctx_pending[0] is False                 # 3 is not > 3
    assert plic.read(claim(0), 4) == 0                  # nothing to claim
    plic.write(threshold(0), 4, 2)
    assert plic.ctx_pending[0] is True


def test_plic_claim_returns_the_highest_priority_then_the_lowest_id(plic):
    plic.write(enable(0), 4, (1 << 3) | (1 << 5) | (1 << 7))
    for src, prio in ((3, 2), (5, 6), (7, 6)):
        plic.write(PRIO + 4 * src, 4, prio)
        plic.set_level(src, True)
    assert plic.read(claim(0), 4) == 5                  # 5 and 7 tie at 6: lower id
    assert plic.read(claim(0), 4) == 7
    assert plic.read(claim(0), 4) == 3
    assert plic.read(claim(0), 4) == 0
    assert plic.ctx_pending[0] is False


def test_plic_gateway_makes_a_request_per_assertion_like_qemus(plic):
    """A claimed source re-asserted by its device is claimable again after completion;
    a line merely held high is not re-forwarded on completion (QEMU's sifive_plic)."""
    plic.write(PRIO + 4 * 10, 4, 1)
    plic.write(enable(0), 4, 1 << 10)
    plic.set_level(10, True)
    assert plic.read(claim(0), 4) == 10
    assert plic.read(PENDING, 4) == 0 and plic.ctx_pending[0] is False
    plic.set_level(10, True)                            # re-asserted while in service
    assert plic.read(PENDING, 4) == 1 << 10 and plic.ctx_pending[0] is False
    plic.write(claim(0), 4, 10)                         # complete: the new request shows
    assert plic.ctx_pending[0] is True
    assert plic.read(claim(0), 4) == 10
    plic.write(claim(0), 4, 10)                         # line still high, no new assertion
    assert plic.read(PENDING, 4) == 0 and plic.ctx_pending[0] is False
    plic.set_level(10, False)
    assert plic.read(PENDING, 4) == 0


def test_plic_completing_a_source_not_in_service_is_ignored(plic):
    plic.write(PRIO + 4 * 10, 4, 1)
    plic.write(enable(0), 4, 1 << 10)
    plic.write(claim(0), 4, 10)
    plic.set_level(10, True)
    assert plic.read(claim(0), 4) == 10
    plic.write(claim(0), 4, 11)                         # wrong id: 10 stays in service
    assert plic.in_service[10]


def test_plic_claim_from_one_context_takes_the_source_from_both(plic):
    plic.write(PRIO + 4 * 10, 4, 1)
    plic.write(enable(0), 4, 1 << 10)
    plic.write(enable(1), 4, 1 << 10)
    plic.set_level(10, True)
    assert plic.ctx_pending == [True, True]
    assert plic.read(claim(1), 4) == 10
    assert plic.ctx_pending == [False, False]


# ---------------------------------------------------------------- test finisher

class FakePower:
    def __init__(self):
        self.calls = []

    def poweroff(self, code):
        self.calls.append(("poweroff", code))

    def reset(self):
        self.calls.append(("reset",))


@pytest.mark.parametrize("value, call", [
    (0x5555, ("poweroff", 0)),
    ((3 << 16) | 0x3333, ("poweroff", 3)),
    ((0xFFFF << 16) | 0x3333, ("poweroff", 0xFFFF)),
    (0x3333, ("poweroff", 1)),                 # a failure never exits 0
    (0x7777, ("reset",)),
])
def test_finisher_writes_power_off_fail_or_reset(value, call):
    power = FakePower()
    TestFinisher(power).write(0, 4, value)
    assert power.calls == [call]


def test_finisher_ignores_other_values_and_offsets_and_reads_zero():
    power = FakePower()
    f = TestFinisher(power)
    f.write(0, 4, 0x1234)
    f.write(4, 4, 0x5555)
    assert power.calls == []
    assert f.read(0, 4) == 0


# ---------------------------------------------------------------- MMIO bus

class Dev:
    def __init__(self, name):
        self.name = name

    def read(self, offset, size):
        return 0

    def write(self, offset, size, value):
        pass


def test_bus_finds_the_device_and_the_offset_within_it():
    bus = MmioBus()
    uart, clint = Dev("uart"), Dev("clint")
    bus.map(0x1000_0000, 0x1000, uart)
    bus.map(0x200_0000, 0x10000, clint)
    assert bus.find(0x1000_0005) == (uart, 5)
    assert bus.find(0x200_BFF8) == (clint, 0xBFF8)
    assert bus.find(0x200_0000) == (clint, 0)
    assert bus.find(0x1000_1000) is None
    assert bus.find(0x1FF_FFFF) is None
    assert bus.find(0x8000_0000) is None


@pytest.mark.parametrize("base, size", [
    (0x1000_0000, 0x1000),          # the same range
    (0x0FFF_F000, 0x2000),          # straddles the start
    (0x1000_0800, 0x100),           # inside
    (0x0F00_0000, 0x0200_0000),     # around
])
def test_bus_refuses_overlapping_regions(base, size):
    bus = MmioBus()
    bus.map(0x1000_0000, 0x1000, Dev("uart"))
    with pytest.raises(ValueError, match="overlaps uart"):
        bus.map(base, size, Dev("other"))
    assert len(bus.regions) == 1


def test_bus_accepts_adjacent_regions():
    bus = MmioBus()
    a, b = Dev("a"), Dev("b")
    bus.map(0x1000_0000, 0x1000, a)
    bus.map(0x1000_1000, 0x1000, b)
    assert bus.find(0x1000_0FFF) == (a, 0xFFF)
    assert bus.find(0x1000_1000) == (b, 0)


def test_bus_two_small_regions_in_one_page_are_each_found():
    bus = MmioBus()
    a, b = Dev("a"), Dev("b")
    bus.map(0x1000_0000, 0x100, a)
    bus.map(0x1000_0800, 0x100, b)
    assert bus.find(0x1000_0004) == (a, 4)
    assert bus.find(0x1000_0804) == (b, 4)
    assert bus.find(0x1000_0400) is None


# ---------------------------------------------------------------- boot ROM

def test_boot_rom_disassembles_as_the_documented_reset_vector():
    rom = boot_rom(0x8000_0000, 0x87E0_0000)
    code = [disassemble(rom[i:i + 4], 0x1000 + i).split("  ", 1)[1] for i in range(0, 24, 4)]
    assert code == [
        "auipc t0, 0",
        "addi a2, t0, 0x28",          # &fw_dynamic_info
        "csrr a0, mhartid",
        "ld a1, 0x20(t0)",            # the device tree
        "ld t0, 0x18(t0)",            # the entry
        "jr t0",
    ]
    entry, dtb = struct.unpack_from("<2Q", rom, 24)
    assert (entry, dtb) == (0x8000_0000, 0x87E0_0000)
    magic, version, next_addr, next_mode, options, boot_hart = struct.unpack_from("<6Q", rom, 40)
    assert (magic, version, next_mode, options) == (FW_DYNAMIC_MAGIC, 2, 1, 0)
    assert next_addr == 0 and boot_hart == (1 << 64) - 1
    assert len(rom) == 40 + 48


def test_boot_rom_runs_to_the_entry_with_hartid_device_tree_and_fw_dynamic_info():
    from hvemu.vm import VM, VMConfig
    vm = VM(VMConfig(image=str(HELLO_ELF), max_instructions=6))
    outcome = vm.run()
    assert outcome.reason == "max-instructions"
    assert vm.vcpu.pc == vm.images[0].entry == 0x8000_0000
    assert vm.vcpu.get_x(10) == 0                        # a0 = hart id
    assert vm.vcpu.get_x(11) == vm.fdt_addr              # a1 = device tree
    assert vm.vcpu.get_x(12) == 0x1028                   # a2 = fw_dynamic_info
    assert vm.memory.read(0x1028, 4) == b"OSBI"


# ---------------------------------------------------------------- device tree

@pytest.fixture(scope="module")
def tree():
    return fdt.parse_dtb(build_device_tree(Board(ram_size=128 << 20)))


def prop(tree, path, name):
    p = tree.get_property(name, path)
    assert p is not None, f"{path} has no {name}"
    return list(p.data)


@pytest.mark.parametrize("ram_size", [1 << 20, 64 << 20, 128 << 20, 3 << 30, 8 << 30])
def test_device_tree_memory_node_has_the_ram_base_and_size(ram_size):
    t = fdt.parse_dtb(build_device_tree(Board(ram_size=ram_size)))
    assert prop(t, "/memory@80000000", "device_type") == ["memory"]
    assert prop(t, "/memory@80000000", "reg") == [0, 0x8000_0000, ram_size >> 32,
                                                 ram_size & 0xFFFF_FFFF]


def test_device_tree_root_cells_and_cpu(tree):
    assert prop(tree, "/", "#address-cells") == [2] and prop(tree, "/", "#size-cells") == [2]
    assert prop(tree, "/cpus", "timebase-frequency") == [10_000_000]
    assert prop(tree, "/cpus/cpu@0", "riscv,isa")[0].startswith("rv64imafdc_")
    assert prop(tree, "/cpus/cpu@0", "reg") == [0]
    assert prop(tree, "/cpus/cpu@0/interrupt-controller", "compatible") == ["riscv,cpu-intc"]


def test_device_tree_serial_node_is_an_ns16550a_on_plic_irq_10(tree):
    serial = "/soc/serial@10000000"
    assert prop(tree, serial, "compatible") == ["ns16550a"]
    assert prop(tree, serial, "reg")[:2] == [0, 0x1000_0000]
    assert prop(tree, serial, "interrupts") == [10]
    assert prop(tree, serial, "interrupt-parent") == prop(tree, "/soc/plic@c000000", "phandle")
    assert prop(tree, "/chosen", "stdout-path") == [serial]


def test_device_tree_clint_and_plic_interrupts_extended_point_at_the_hart(tree):
    intc = prop(tree, "/cpus/cpu@0/interrupt-controller", "phandle")[0]
    assert "riscv,clint0" in prop(tree, "/soc/clint@2000000", "compatible")
    assert prop(tree, "/soc/clint@2000000", "reg") == [0, 0x200_0000, 0, 0x10000]
    assert prop(tree, "/soc/clint@2000000", "interrupts-extended") == [intc, 3, intc, 7]
    assert "riscv,plic0" in prop(tree, "/soc/plic@c000000", "compatible")
    assert prop(tree, "/soc/plic@c000000", "reg") == [0, 0xC00_0000, 0, 0x60_0000]
    assert prop(tree, "/soc/plic@c000000", "interrupts-extended") == [intc, 11, intc, 9]
    assert prop(tree, "/soc/plic@c000000", "riscv,ndev") == [95]


def test_device_tree_test_finisher_is_sifive_test0_with_poweroff_and_reboot(tree):
    test = "/soc/test@100000"
    assert "sifive,test0" in prop(tree, test, "compatible")
    assert prop(tree, test, "reg") == [0, 0x10_0000, 0, 0x1000]
    phandle = prop(tree, test, "phandle")
    assert prop(tree, "/soc/poweroff", "regmap") == phandle
    assert prop(tree, "/soc/poweroff", "value") == [0x5555]
    assert prop(tree, "/soc/reboot", "value") == [0x7777]


def test_a_receiver_fifo_reset_drops_only_what_the_chip_held_not_typed_ahead_input(rig):
    """Input piped in before the guest set its UART up waits on the host side (as in
    QEMU's chardev): a FIFO reset drops RBR's one byte with the FIFO off, 16 with it on."""
    rig.uart.push_input(b"xls\necho hi\n")
    rig.wr(IIR_FCR, 0x07)                       # FIFO on, both reset: RBR's "x" goes
    got = bytes(rig.rd(RBR_THR_DLL) for _ in range(11))
    assert got == b"ls\necho hi\n"
    rig.uart.push_input(bytes(range(65, 65 + 20)))
    rig.wr(IIR_FCR, 0x03)                       # FIFO was on: its 16 bytes go
    assert bytes(rig.rd(RBR_THR_DLL) for _ in range(4)) == bytes(range(81, 85))
    assert rig.rd(LSR) & 1 == 0                 # nothing left
