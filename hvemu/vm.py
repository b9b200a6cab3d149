"""A VM: guest memory, a vCPU, the board's devices, boot, and the lifecycle.

Boot like QEMU's virt machine: the boot ROM at 0x1000 starts the hart in M-mode
with a0 = hart id and a1 = the generated device tree, and jumps to the image's
entry (an ELF's e_entry, or 0x8000_0000 for a raw image).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from . import _core
from .board import BOOT_ROM, VIRTIO_BASE, VIRTIO_SLOTS, Board
from .boot.devicetree import build_device_tree
from .boot.linux import check_command_line, initrd_address
from .boot.loader import LoadedImage, load_image, read_initrd
from .boot.rom import boot_rom
from .console import Console
from .devices.bus import MmioBus
from .devices.clint import Clint
from .devices.finisher import TestFinisher
from .devices.goldfish_rtc import GoldfishRtc
from .devices.htif import Htif, check_htif_words
from .devices.plic import Plic
from .devices.uart import Uart16550
from .devices.virtio_blk import DiskImage, VirtioBlk
from .devices.virtio_mmio import EmptyVirtioSlot, VirtioMmio
from .disks import DiskSpec, check_disks
from .errors import HostError, HostIOError, HvemuError, ImageError, NoInputError, UsageError
from .hypervisor.clock import make_clock
from .hypervisor.hypervisor import Hypervisor, RunControl
from .hypervisor.sbi import SbiFirmware
from .hypervisor.stats import ExitStats
from .hypervisor.vcpu import STARTED, STOPPED, Stop, VirtualCpu

MIN_MEMORY = 1 << 20
MAX_MEMORY = 64 << 30
MAX_VCPUS = 64


KERNEL_OFFSET = 0x200000   # a kernel loads at RAM + 2 MiB (fw_jump FW_JUMP_ADDR)
FW_JUMP_FDT_OFFSET = 0x2200000   # OpenSBI fw_jump (generic) copies the device tree here
# /chosen/rng-seed: the same every boot, so that runs stay reproducible
RNG_SEED = hashlib.sha256(b"hvemu rng-seed").digest()


def check_fw_jump(firmware: LoadedImage, kernel: LoadedImage) -> None:
    """OpenSBI's fw_jump puts the device tree at RAM + 34 MiB: a kernel reaching past it
    would overwrite it.  fw_dynamic takes the device tree where it is."""
    if "fw_jump" not in Path(firmware.path).name:
        return
    fdt = firmware.low + FW_JUMP_FDT_OFFSET
    if kernel.low < fdt <= kernel.high:
        raise ImageError(f"{kernel.path}: the kernel occupies {kernel.low:#x}-{kernel.high:#x}, "
                         f"over {fdt:#x} where OpenSBI's fw_jump puts the device tree; "
                         "use fw_dynamic.bin as --bios instead")


@dataclass
class VMConfig:
    image: str | None = None          # firmware or a bare-metal image, started in M-mode by the ROM
    kernel: str | None = None         # an S-mode kernel: after the firmware, or on the built-in SBI
    memory: int = 128 << 20
    max_instructions: int | None = None
    timeout: float | None = None      # seconds of host time
    reference: bool = False           # reference interpreter and Python handlers only
    disks: list[DiskSpec] = field(default_factory=list)
    initrd: str | None = None         # an initial RAM disk for the --kernel, placed as QEMU does
    append: str = ""                  # the kernel command line (/chosen/bootargs)
    clock: str = "virtual"            # "virtual" (instruction-counted) or "host"
    vcpus: int = 1                    # harts, 1 to MAX_VCPUS
    name: str = "vm"
    shares: int = 1                   # this VM's vCPUs get quanta of shares x the base quantum


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


def check_vcpus(n) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_VCPUS:
        raise UsageError(f"{n!r} vCPUs: give 1 to {MAX_VCPUS}")


class VM:
    """A guest machine: board, devices, guest memory (through a P2M onto the hypervisor's
    frames) and N vCPUs, booted as QEMU's virt machine boots; runs on a Hypervisor (its
    own, unless one is given) that shares the host among all its VMs."""

    def __init__(self, config: VMConfig, console: Console | None = None, pool=None,
                 hypervisor=None):
        check_memory_size(config.memory)
        check_vcpus(config.vcpus)
        if config.clock not in ("virtual", "host"):
            raise UsageError(f"clock {config.clock!r}: give virtual or host")
        if hypervisor is None:
            hypervisor = Hypervisor(pool=pool)
        self.hypervisor = hypervisor
        self.config = config
        self.name = config.name
        self.shares = config.shares
        self.board = Board(ram_size=config.memory, harts=config.vcpus)
        try:
            self.memory = _core.GuestMemory(self.board.ram_base, config.memory, BOOT_ROM, 0x1000,
                                            pool=hypervisor.pool)
        except MemoryError:
            raise HostError(f"cannot allocate {config.memory >> 20} MiB of guest RAM on this "
                            "host: give a smaller --memory") from None
        self.stats = ExitStats()
        self.control = RunControl(self)
        self.max_instructions = config.max_instructions
        self.deadline: float | None = None       # host monotonic time at which to stop
        self.seconds = 0.0                       # host time the scheduler spent on this VM
        self.sbi = None                          # the built-in SBI, when booting without firmware
        self.vcpus: list[VirtualCpu] = []
        self.clock = make_clock(config.clock, self, on_change=self._clock_moved)
        self.console = console or Console()
        self.power = PowerControl()
        self.bus = MmioBus()
        b = self.board
        harts = config.vcpus
        self.plic = Plic(b.plic_sources, 2 * harts, on_change=self._device_changed)
        self.clint = Clint(self.clock, harts, on_change=self._timer_changed)
        self.uart = Uart16550(self.console.output,
                              irq=lambda level: self.plic.set_level(b.uart_irq, level))
        self.console.receive = self.uart.push_input
        self.finisher = TestFinisher(self.power)
        self.rtc = GoldfishRtc(self.clock, irq=lambda level: self.plic.set_level(b.rtc_irq, level),
                               on_change=self._timer_changed)
        self.htif: Htif | None = None
        self.disks: list[DiskImage] = []
        self.virtio: list[VirtioMmio] = []
        self._attach_disks(check_disks(config.disks))
        self.bus.map(b.finisher, 0x1000, self.finisher)
        self.bus.map(b.rtc, 0x1000, self.rtc)
        self.bus.map(b.clint, 0x10000, self.clint)
        self.bus.map(b.plic, Plic.size, self.plic)
        self.bus.map(b.uart, 0x1000, self.uart)
        for hartid in range(harts):
            vc = VirtualCpu(self, hartid)
            vc.vcpu.fast = not config.reference
            vc.hart.native_counters = not config.reference
            self.vcpus.append(vc)
        # hart 0, for what a single-hart VM (and much of the Python API) calls the vCPU
        self.hv = self.vcpus[0]
        self.vcpu = self.hv.vcpu
        self.hart = self.hv.hart
        self.images: list[LoadedImage] = []
        self.adopted_state: list[dict] | None = None   # from a hosted hypervisor's process
        self.resume_point = None                 # (hart, instructions): where a round goes on
        self.sched_at = None                     # the hart whose quantum is running
        self.state = "created"
        # callables (event, data) told of the lifecycle, from the thread it happens on:
        # STOP, RESUME, RESET {guest}, SHUTDOWN {stop}, POWERDOWN (QMP's events)
        self.listeners: list = []
        self.debugger = None                     # the gdb stub, when one is attached
        self.boot()
        hypervisor.add(self)

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
                            check=lambda: self.control.check_limits())   # limits hold mid-request
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

    # ---- what devices and the clock tell the vCPUs ----
    def running_vcpu(self) -> VirtualCpu | None:
        """The vCPU running now (its exit is being handled), if any."""
        cur = self.clock.current
        for vc in self.vcpus:
            if vc.vcpu is cur:
                return vc
        return None

    def _device_changed(self) -> None:
        for vc in self.vcpus:
            vc.irq_dirty = True

    def _timer_changed(self) -> None:
        for vc in self.vcpus:
            vc.irq_dirty = True
        vc = self.running_vcpu()
        if vc is not None:
            vc.timers_changed()

    def _clock_moved(self) -> None:
        for vc in self.vcpus:
            vc.hart.sync_counters()

    @property
    def instructions(self) -> int:
        """Guest instructions retired by all harts."""
        return sum([vc.vcpu.instret for vc in self.vcpus])

    def next_timer_deadline(self) -> int | None:
        """The earliest timer deadline any started hart can take (its mie enables it)."""
        deadlines = [d for vc in self.vcpus if vc.hsm == STARTED and vc.timer_armed()
                     for d in (vc.next_timer_deadline(),) if d is not None]
        return min(deadlines) if deadlines else None

    def runnable_harts(self) -> int:
        return len([vc for vc in self.vcpus if vc.hsm == STARTED and not vc.waiting])

    def set_tracer(self, tracer) -> None:
        for vc in self.vcpus:
            vc.tracer = tracer

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
        if cfg.kernel is None and (cfg.initrd is not None or cfg.append):
            raise UsageError("--initrd and --append need a --kernel")
        self.images = []
        firmware = kernel = None
        if cfg.image is not None:
            firmware = load_image(cfg.image, self.memory)
            if firmware.kind == "linux":
                raise ImageError(f"{cfg.image}: a Linux Image runs in S-mode: give it with "
                                 "--kernel (alone, or after --bios firmware)")
            self.images.append(firmware)
        if cfg.kernel is not None:
            kernel = load_image(cfg.kernel, self.memory, self.board.ram_base + KERNEL_OFFSET)
            if firmware is not None and firmware.low <= kernel.high and kernel.low <= firmware.high:
                raise ImageError(f"{cfg.kernel}: kernel at {kernel.low:#x}-{kernel.high:#x} "
                                 f"overlaps the firmware at {firmware.low:#x}-{firmware.high:#x}")
            if firmware is not None:
                check_fw_jump(firmware, kernel)
            self.images.append(kernel)
        self.board.bootargs = check_command_line(cfg.append).decode() if cfg.append else ""
        self.board.initrd = None
        self.board.rng_seed = RNG_SEED
        initrd = None
        if cfg.initrd is not None:
            initrd = read_initrd(cfg.initrd, self.memory.ram_size)
            start = initrd_address(kernel.entry, self.memory.ram_size)
            if start <= kernel.high:
                start = (kernel.high + 0x1000) & ~0xFFF
            self.board.initrd = (start, start + len(initrd))
        dtb = build_device_tree(self.board)
        fdt_addr = self.board.fdt_address(len(dtb))
        for image in self.images:
            if image.high >= fdt_addr:
                raise ImageError(f"{image.path}: image overlaps the device tree at "
                                 f"{fdt_addr:#x}; give the VM more --memory")
            self._attach_htif(image)
        if initrd is not None:
            start, end = self.board.initrd
            if end > fdt_addr:
                raise ImageError(f"{cfg.initrd}: the initrd ({len(initrd):,} bytes at "
                                 f"{start:#x}) does not fit below the device tree at "
                                 f"{fdt_addr:#x}; give the VM more --memory")
            self.memory.write(start, initrd)
        self.memory.write(fdt_addr, dtb)
        self.fdt_addr = fdt_addr
        for vc in self.vcpus:
            vc.waiting = vc.suspended = False
            vc.fault = None
        if firmware is not None:
            # every hart starts in the ROM, as on QEMU's virt: a0 = its hart id (mhartid)
            self.sbi = None
            next_addr = kernel.entry if kernel is not None else 0
            self.memory.write(BOOT_ROM, boot_rom(firmware.entry, fdt_addr, next_addr))
            for vc in self.vcpus:
                vc.hart.reset(BOOT_ROM)
                vc.hsm = STARTED
        else:
            # the built-in SBI boots hart 0; the others wait for SBI HSM hart_start
            self.sbi = SbiFirmware(self)
            for vc in self.vcpus:
                vc.hart.reset(kernel.entry)
                vc.hsm = STOPPED
            self.hart.enter_supervisor(a0=self.hart.hartid, a1=fdt_addr)
            self.hv.hsm = STARTED

    def _attach_htif(self, image: LoadedImage) -> None:
        """Spike's HTIF for an ELF that defines `tohost` (the first such image wins):
        stores to tohost exit to the Htif device; kept across reboots."""
        tohost = image.symbols.get("tohost")
        if tohost is None or (self.htif is not None and self.htif.tohost != tohost):
            return
        fromhost = image.symbols.get("fromhost")
        check_htif_words(image.path, self.memory, tohost, fromhost)
        if self.htif is None:
            self.htif = Htif(self.memory, tohost, fromhost, self.console, self.power)
            self.bus.map(tohost, 8, self.htif)
        for vc in self.vcpus:
            vc.vcpu.watch_store(tohost)

    # ---- lifecycle: created -> running <-> paused -> shutdown ----
    def run(self) -> Outcome:
        """Run until the guest powers off, crashes, idles forever, hits a limit or is
        shut down; reboots (finisher reset, SBI SRST) happen inside.  Disks are flushed
        and closed at the end.  (Other VMs of the same hypervisor do not run meanwhile:
        `Hypervisor.run()` runs them all.)"""
        if self.state == "shutdown":
            raise HvemuError("the VM is shut down")
        return self.hypervisor.run([self])[self]

    def run_begin(self) -> None:
        """The scheduler starts running this VM."""
        import threading
        import time
        if self.state == "shutdown":
            raise HvemuError("the VM is shut down")
        self._loop_thread = threading.current_thread()     # snapshots taken from it
        self.deadline = (time.monotonic() + self.config.timeout
                         if self.config.timeout is not None else None)
        self.control.start_watchdog(self.deadline)
        self.state = "running"
        self.console.poll()                  # input (Ctrl-A keys) also across reboots

    def run_end(self, stop) -> Outcome:
        """The scheduler is done with this VM: flush and close, and say how it ended."""
        self.control.stop_watchdog()
        self.state = "shutdown"
        try:
            self.console.flush()
        finally:
            self.close_disks()
        self.notify("SHUTDOWN", stop=stop.reason)
        code = self.power.exit_code if stop.reason == "poweroff" else 0
        return Outcome(stop.reason, code, stop.detail, self.live_stats())

    def architectural_state(self) -> list[dict]:
        """Per hart: pc, privilege, x0-x31, f0-f31 and every CSR an M-mode read sees --
        what must come out the same under every hypervisor class.  After a hosted run,
        the state the hypervisor's process saw last (`adopted_state`)."""
        if self.adopted_state is not None:
            return self.adopted_state
        return [{"pc": vc.vcpu.pc, "priv": vc.hart.priv, "x": vc.vcpu.x, "f": vc.vcpu.f,
                 "csr": vc.hart.csr.snapshot()} for vc in self.vcpus]

    def live_stats(self) -> ExitStats:
        """The statistics so far (also in the middle of a run: Ctrl-A s)."""
        s = self.stats
        s.instructions = self.instructions
        s.seconds = self.seconds
        s.core_seconds = sum(vc.vcpu.core_seconds for vc in self.vcpus)
        shadow: dict = {}
        for vc in self.vcpus:
            for k, v in vc.vcpu.shadow_stats.items():
                shadow[k] = shadow.get(k, 0) + v
        s.shadow = shadow
        s.host_frames = self.memory.touched_pages * 4096
        s.privileged_part = sum(vc.vcpu.part_handled for vc in self.vcpus)
        return s

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

    def request(self, what: str) -> None:
        """Ask the run loop (from any thread) to pause, reset, stop at the deadline or
        shut down (RunControl's ranks)."""
        self.control.ask(what)

    def pause(self) -> None:
        """Stop running guest code at the next exit (within a slice) until `resume()`."""
        self.control.ask("pause")

    def resume(self) -> None:
        was = self.control.paused or self.control.request == "pause"
        self.control.resume()
        if self.state == "paused":
            self.state = "running"
        if was:
            self.notify("RESUME")

    def notify(self, event: str, **data) -> None:
        """Tell the listeners (QMP, the gdb stub) of a lifecycle event."""
        for fn in list(self.listeners):
            fn(event, data)

    def shutdown(self) -> None:
        """Stop the guest as if its power were cut; disks are flushed and closed."""
        self.control.ask("shutdown")

    # ---- snapshots and live migration (hvemu/snapshot.py, hvemu/migration.py) ----
    def save(self, path) -> int:
        """Save all of the VM's state to a snapshot file (pausing it meanwhile if it
        runs); returns the file's size."""
        from . import snapshot
        with snapshot.Stopped(self):
            return snapshot.save(self, path)

    @classmethod
    def restore(cls, path, console: Console | None = None, hypervisor=None, **overrides):
        """A VM made from a snapshot file, ready to run on from where it was saved."""
        from . import snapshot
        return snapshot.restore(path, console, hypervisor, **overrides)

    def migrate(self, uri: str, **parameters):
        """Live-migrate to `hvemu boot ... --incoming URI` (pre-copy, in a thread of its
        own); returns the Migration (query it with info(), cancel with cancel())."""
        from . import migration
        return migration.start(self, uri, **parameters)

    def reset(self) -> None:
        """Reboot: the harts, devices and RAM reset, images reloaded; disks kept."""
        if self.state == "running" and getattr(self, "_thread", None) is not None \
                and self._thread.is_alive():
            import threading
            if threading.current_thread() is not self._thread:
                self.control.ask("reset")
                return
        self.reboot()

    def reboot(self) -> None:
        self.resume_point = self.sched_at = None
        self.memory.clear()
        self.plic.reset()
        self.clint.reset()
        self.uart.reset()
        for dev in self.virtio:
            dev.reset()
            dev.backend.reset()
        for vc in self.vcpus:
            vc.vcpu.flush_all()             # its entries point at frames now returned
        self.boot()
