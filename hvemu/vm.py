"""A VM: guest memory, a vCPU, the board's devices, boot, and the lifecycle.

Boot like QEMU's virt machine: the boot ROM at 0x1000 starts the hart in M-mode
with a0 = hart id and a1 = the generated device tree, and jumps to the image's
entry (an ELF's e_entry, or 0x8000_0000 for a raw image).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import _core
from .board import BOOT_ROM, VIRTIO_BASE, VIRTIO_SLOTS, Board
from .boot.devicetree import build_device_tree
from .boot.loader import LoadedImage, load_image
from .boot.rom import boot_rom
from .console import Console
from .devices.bus import MmioBus
from .devices.clint import Clint
from .devices.finisher import TestFinisher
from .devices.htif import Htif
from .devices.plic import Plic
from .devices.uart import Uart16550
from .devices.virtio_blk import DiskImage, VirtioBlk
from .devices.virtio_mmio import EmptyVirtioSlot, VirtioMmio
from .disks import DiskSpec, check_disks
from .errors import HostError, HostIOError, HvemuError, ImageError, NoInputError, UsageError
from .hypervisor.clock import VirtualClock
from .hypervisor.hart import VirtualHart
from .hypervisor.hypervisor import Hypervisor, Stop
from .hypervisor.sbi import SbiFirmware
from .hypervisor.stats import ExitStats

MIN_MEMORY = 1 << 20
MAX_MEMORY = 64 << 30


KERNEL_OFFSET = 0x200000   # a kernel loads at RAM + 2 MiB (fw_jump FW_JUMP_ADDR)


@dataclass
class VMConfig:
    image: str | None = None          # firmware or a bare-metal image, started in M-mode by the ROM
    kernel: str | None = None         # an S-mode kernel: after the firmware, or on the built-in SBI
    memory: int = 128 << 20
    max_instructions: int | None = None
    timeout: float | None = None      # seconds of host time
    reference: bool = False           # reference interpreter and Python handlers only
    disks: list[DiskSpec] = field(default_factory=list)


@dataclass
class Outcome:
    """How a run ended."""
    reason: str                       # poweroff, crash, idle, timeout, max-instructions
    exit_code: int = 0
    detail: str = ""
    stats: ExitStats = field(default_factory=ExitStats)


class PowerControl:
    """What the finisher, HTIF and SBI SRST act on."""

    def __init__(self) -> None:
        self.exit_code = 0

    def poweroff(self, code: int) -> None:
        self.exit_code = code
        raise Stop("poweroff")

    def reset(self) -> None:
        raise Stop("reset")


def check_memory_size(size: int) -> None:
    if size < MIN_MEMORY or size > MAX_MEMORY or size % 4096:
        raise UsageError(f"memory size {size} bytes is not usable: give 1M to 64G, "
                         "a multiple of 4 KiB (e.g. --memory 128M)")


class VM:
    def __init__(self, config: VMConfig, console: Console | None = None):
        check_memory_size(config.memory)
        self.config = config
        self.board = Board(ram_size=config.memory)
        try:
            self.memory = _core.GuestMemory(self.board.ram_base, config.memory, BOOT_ROM, 0x1000)
        except MemoryError:
            raise HostError(f"cannot allocate {config.memory >> 20} MiB of guest RAM on this "
                            "host: give a smaller --memory") from None
        self.vcpu = _core.VCpu(self.memory)
        self.clock = VirtualClock(self.vcpu, on_change=lambda: self.hart.sync_counters())
        self.hart = VirtualHart(self.vcpu, 0, self.clock)
        self.vcpu.fast = not config.reference
        self.hart.native_counters = not config.reference
        self.console = console or Console()
        self.power = PowerControl()
        self.bus = MmioBus()
        b = self.board
        self.plic = Plic(b.plic_sources, 2, on_change=self._device_changed)
        self.clint = Clint(self.clock, 1, on_change=self._timer_changed)
        self.uart = Uart16550(self.console.output,
                              irq=lambda level: self.plic.set_level(b.uart_irq, level))
        self.console.receive = self.uart.push_input
        self.finisher = TestFinisher(self.power)
        self.disks: list[DiskImage] = []
        self.virtio: list[VirtioMmio] = []
        self._attach_disks(check_disks(config.disks))
        self.bus.map(b.finisher, 0x1000, self.finisher)
        self.bus.map(b.clint, 0x10000, self.clint)
        self.bus.map(b.plic, Plic.size, self.plic)
        self.bus.map(b.uart, 0x1000, self.uart)
        self.hv = Hypervisor(self)
        self.hv.max_instructions = config.max_instructions
        self.hv.poll = self.console.poll
        self.images: list[LoadedImage] = []
        self.state = "created"
        self.boot()

    def _attach_disks(self, specs: list[DiskSpec]) -> None:
        """Each disk on a virtio-mmio slot, from slot 0 up (IRQ 1 + slot)."""
        b = self.board
        for slot, spec in enumerate(specs):
            try:
                disk = DiskImage(spec.path, spec.offset, spec.size, spec.readonly)
            except OSError as e:
                self.close_disks()
                raise NoInputError(f"disk {spec.path}: {e.strerror}") from None
            base = VIRTIO_BASE + 0x1000 * slot
            irq = b.virtio_irq(base)
            blk = VirtioBlk(disk, serial=f"hvemu-disk{slot}",
                            check=lambda: self.hv.check_limits())   # limits hold mid-request
            dev = VirtioMmio(self.memory, blk,
                             irq=lambda level, irq=irq: self.plic.set_level(irq, level))
            self.bus.map(base, 0x1000, dev)
            self.disks.append(disk)
            self.virtio.append(dev)
            b.virtio_slots_used.append(base)
        for slot in range(len(specs), VIRTIO_SLOTS):         # the rest answer "no device"
            self.bus.map(VIRTIO_BASE + 0x1000 * slot, 0x1000, EmptyVirtioSlot())

    def close_disks(self) -> None:
        """Flush and close every disk (shutdown); HostIOError if a flush fails (after
        closing all of them)."""
        failed = None
        for disk in self.disks:
            try:
                disk.close()
            except OSError as e:
                failed = failed or HostIOError(f"disk {disk.path}: cannot flush and close it "
                                               f"({e.strerror}); its last writes may be lost")
        if failed is not None:
            raise failed

    def _device_changed(self) -> None:
        self.hv.irq_dirty = True

    def _timer_changed(self) -> None:
        self.hv.irq_dirty = True
        self.hv.timers_changed()

    # ---- boot ----
    def boot(self) -> None:
        """Load the images, the device tree and the boot ROM, and reset the hart.

        With firmware (IMAGE or --bios) the ROM starts it in M-mode, like QEMU's
        `-bios`; a --kernel then waits at RAM + 2 MiB (fw_jump, fw_dynamic's
        next_addr).  With only --kernel the hypervisor is the SBI implementation
        and the kernel starts in S-mode with a0 = hart id, a1 = device tree."""
        cfg = self.config
        if cfg.image is None and cfg.kernel is None:
            raise UsageError("no guest image given")
        self.images = []
        firmware = kernel = None
        if cfg.image is not None:
            firmware = load_image(cfg.image, self.memory)
            self.images.append(firmware)
        if cfg.kernel is not None:
            kernel = load_image(cfg.kernel, self.memory, self.board.ram_base + KERNEL_OFFSET)
            if firmware is not None and firmware.low <= kernel.high and kernel.low <= firmware.high:
                raise ImageError(f"{cfg.kernel}: kernel at {kernel.low:#x}-{kernel.high:#x} "
                                 f"overlaps the firmware at {firmware.low:#x}-{firmware.high:#x}")
            self.images.append(kernel)
        dtb = build_device_tree(self.board)
        fdt_addr = self.board.fdt_address(len(dtb))
        for image in self.images:
            if image.high >= fdt_addr:
                raise ImageError(f"{image.path}: image overlaps the device tree at "
                                 f"{fdt_addr:#x}; give the VM more --memory")
            self._attach_htif(image)
        self.memory.write(fdt_addr, dtb)
        self.fdt_addr = fdt_addr
        if firmware is not None:
            self.hv.sbi = None
            next_addr = kernel.entry if kernel is not None else 0
            self.memory.write(BOOT_ROM, boot_rom(firmware.entry, fdt_addr, next_addr))
            self.hart.reset(BOOT_ROM)
        else:
            self.hv.sbi = SbiFirmware(self)
            self.hart.reset(kernel.entry)
            self.hart.enter_supervisor(a0=self.hart.hartid, a1=fdt_addr)

    def _attach_htif(self, image: LoadedImage) -> None:
        tohost = image.symbols.get("tohost")
        if tohost is None:
            return
        page = tohost & ~0xFFF
        htif = Htif(self.memory, page, tohost, image.symbols.get("fromhost"),
                    self.console, self.power)
        if not any(d is htif for _, _, d in self.bus.regions):
            self.bus.map(page, 0x1000, htif)
        self.vcpu.trap_page(page, 0x1000)

    # ---- lifecycle: created -> running <-> paused -> shutdown ----
    def run(self) -> Outcome:
        """Run until the guest powers off, crashes, idles forever, hits a limit or is
        shut down; reboots (finisher reset, SBI SRST) happen inside.  Disks are flushed
        and closed at the end."""
        import time
        if self.state == "shutdown":
            raise HvemuError("the VM is shut down")
        if self.config.timeout is not None:
            self.hv.deadline = time.monotonic() + self.config.timeout
        self.state = "running"
        try:
            while True:
                stop = self.hv.run()
                if stop.reason == "reset":
                    self.reset()
                    continue
                break
        finally:
            self.state = "shutdown"
            try:
                self.console.flush()
            finally:
                self.close_disks()
        code = self.power.exit_code if stop.reason == "poweroff" else 0
        return Outcome(stop.reason, code, stop.detail, self.hv.stats)

    def start(self):
        """Run in a background thread; `pause()`, `resume()`, `reset()`, `shutdown()`
        steer it and `wait()` returns the Outcome."""
        import threading
        if self.state == "shutdown":
            raise HvemuError("the VM is shut down")
        if getattr(self, "_thread", None) is not None and self._thread.is_alive():
            raise HvemuError("the VM is already running")
        self._outcome = None

        def body():
            self._outcome = self.run()
        self._thread = threading.Thread(target=body, name="hvemu-vcpu", daemon=True)
        self.state = "running"
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._thread.join(timeout)
        return self._outcome

    def pause(self) -> None:
        """Stop running guest code at the next exit (within a slice) until `resume()`."""
        self.hv.request("pause")

    def resume(self) -> None:
        self.hv.resume()

    def shutdown(self) -> None:
        """Stop the guest as if its power were cut; disks are flushed and closed."""
        self.hv.request("shutdown")

    def reset(self) -> None:
        """Reboot: the hart, devices and RAM reset, images reloaded; disks kept."""
        if self.state == "running" and getattr(self, "_thread", None) is not None \
                and self._thread.is_alive():
            import threading
            if threading.current_thread() is not self._thread:
                self.hv.request("reset")
                return
        self.memory.clear()
        self.plic.reset()
        self.clint.reset()
        self.uart.reset()
        for dev in self.virtio:
            dev.reset()
            dev.backend.reset()
        self.vcpu.flush_tlb()
        self.boot()
