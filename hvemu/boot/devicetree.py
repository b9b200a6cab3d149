"""The flattened device tree handed to the guest in a1, generated from the VM's board.

Shaped like QEMU virt's (hw/riscv/virt.c), so OpenSBI, U-Boot and Linux find
their CPU, memory, CLINT, PLIC, UART and test finisher where they expect them.
"""
from __future__ import annotations

import fdt

from ..board import CACHE_BLOCK, Board

CPU_INTC_PHANDLE, PLIC_PHANDLE, TEST_PHANDLE = 1, 2, 3


def _reg(base: int, size: int) -> fdt.PropWords:
    return fdt.PropWords("reg", base >> 32, base & 0xFFFFFFFF, size >> 32, size & 0xFFFFFFFF)


def _node(name: str, *props) -> fdt.Node:
    n = fdt.Node(name)
    for p in props:
        n.append(p)
    return n


def build_device_tree(board: Board) -> bytes:
    """The DTB (version 17) describing board."""
    t = fdt.FDT()
    root = t.root
    for p in (fdt.PropWords("#address-cells", 2), fdt.PropWords("#size-cells", 2),
              fdt.PropStrings("compatible", "riscv-virtio"),
              fdt.PropStrings("model", "hvemu,virt")):
        root.append(p)

    chosen = _node("chosen", fdt.PropStrings("stdout-path", f"/soc/serial@{board.uart:x}"))
    if board.bootargs:
        chosen.append(fdt.PropStrings("bootargs", board.bootargs))
    if board.initrd is not None:
        start, end = board.initrd
        chosen.append(fdt.PropWords("linux,initrd-start", start >> 32, start & 0xFFFFFFFF))
        chosen.append(fdt.PropWords("linux,initrd-end", end >> 32, end & 0xFFFFFFFF))
    if board.rng_seed:
        chosen.append(fdt.PropBytes("rng-seed", data=board.rng_seed))
    root.append(chosen)
    root.append(_node(f"memory@{board.ram_base:x}", fdt.PropStrings("device_type", "memory"),
                      _reg(board.ram_base, board.ram_size)))

    extensions = board.isa_extensions
    cpus = _node("cpus", fdt.PropWords("#address-cells", 1), fdt.PropWords("#size-cells", 0),
                 fdt.PropWords("timebase-frequency", board.timebase))
    for hart in range(board.harts):
        intc = _node("interrupt-controller", fdt.PropWords("#interrupt-cells", 1),
                     fdt.Property("interrupt-controller"),
                     fdt.PropStrings("compatible", "riscv,cpu-intc"),
                     fdt.PropWords("phandle", CPU_INTC_PHANDLE + 16 * hart))
        cpu = _node(f"cpu@{hart}", fdt.PropStrings("device_type", "cpu"),
                    fdt.PropWords("reg", hart), fdt.PropStrings("status", "okay"),
                    fdt.PropStrings("compatible", "riscv"),
                    fdt.PropStrings("riscv,isa", board.isa),
                    fdt.PropStrings("riscv,isa-base", board.isa[:len("rv64i")]),
                    fdt.PropStrings("riscv,isa-extensions", *extensions),
                    *[fdt.PropWords(f"riscv,{cbo}-block-size", CACHE_BLOCK)
                      for cbo in ("cbom", "cbop", "cboz") if f"zi{cbo}" in extensions],
                    fdt.PropStrings("mmu-type", "riscv,sv39"), intc)
        cpus.append(cpu)
    root.append(cpus)

    soc = _node("soc", fdt.PropWords("#address-cells", 2), fdt.PropWords("#size-cells", 2),
                fdt.PropStrings("compatible", "simple-bus"), fdt.Property("ranges"))
    intcs = [CPU_INTC_PHANDLE + 16 * h for h in range(board.harts)]
    soc.append(_node(f"test@{board.finisher:x}",
                     fdt.PropStrings("compatible", "sifive,test1", "sifive,test0", "syscon"),
                     _reg(board.finisher, 0x1000), fdt.PropWords("phandle", TEST_PHANDLE)))
    soc.append(_node("poweroff", fdt.PropStrings("compatible", "syscon-poweroff"),
                     fdt.PropWords("regmap", TEST_PHANDLE), fdt.PropWords("offset", 0),
                     fdt.PropWords("value", 0x5555)))
    soc.append(_node("reboot", fdt.PropStrings("compatible", "syscon-reboot"),
                     fdt.PropWords("regmap", TEST_PHANDLE), fdt.PropWords("offset", 0),
                     fdt.PropWords("value", 0x7777)))
    soc.append(_node(f"rtc@{board.rtc:x}", fdt.PropStrings("compatible", "google,goldfish-rtc"),
                     _reg(board.rtc, 0x1000), fdt.PropWords("interrupts", board.rtc_irq),
                     fdt.PropWords("interrupt-parent", PLIC_PHANDLE)))
    soc.append(_node(f"serial@{board.uart:x}", fdt.PropStrings("compatible", "ns16550a"),
                     _reg(board.uart, 0x100), fdt.PropWords("clock-frequency", 0x384000),
                     fdt.PropWords("interrupts", board.uart_irq),
                     fdt.PropWords("interrupt-parent", PLIC_PHANDLE)))
    soc.append(_node(f"clint@{board.clint:x}",
                     fdt.PropStrings("compatible", "sifive,clint0", "riscv,clint0"),
                     _reg(board.clint, 0x10000),
                     fdt.PropWords("interrupts-extended",
                                   *[w for i in intcs for w in (i, 3, i, 7)])))
    soc.append(_node(f"plic@{board.plic:x}",
                     fdt.PropStrings("compatible", "sifive,plic-1.0.0", "riscv,plic0"),
                     _reg(board.plic, 0x600000), fdt.PropWords("#interrupt-cells", 1),
                     fdt.PropWords("#address-cells", 0), fdt.Property("interrupt-controller"),
                     fdt.PropWords("riscv,ndev", board.plic_sources - 1),
                     fdt.PropWords("interrupts-extended",
                                   *[w for i in intcs for w in (i, 11, i, 9)]),
                     fdt.PropWords("phandle", PLIC_PHANDLE)))
    for base in board.virtio_slots_used:
        soc.append(_node(f"virtio_mmio@{base:x}", fdt.PropStrings("compatible", "virtio,mmio"),
                         _reg(base, 0x1000), fdt.PropWords("interrupts", board.virtio_irq(base)),
                         fdt.PropWords("interrupt-parent", PLIC_PHANDLE)))
    root.append(soc)
    return t.to_dtb(version=17)
