"""The human monitor: QEMU's HMP commands that hvemu has, as text in and text out.

The same `Monitor` answers QMP's human-monitor-command and the console's Ctrl-A c.
Commands: info registers|status|cpus|version|stats, x/FMT ADDR and xp/FMT ADDR (QEMU's
formats: count, x d u o c i, sizes b h w g), cpu N, stop, cont (c), system_reset,
system_powerdown, quit (q), help."""
from __future__ import annotations

import re
import shlex

from .guestmem import Unmapped, read_virtual

ABI = ("zero ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 "
       "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6").split()
FABI = ("ft0 ft1 ft2 ft3 ft4 ft5 ft6 ft7 fs0 fs1 fa0 fa1 fa2 fa3 fa4 fa5 fa6 fa7 "
        "fs2 fs3 fs4 fs5 fs6 fs7 fs8 fs9 fs10 fs11 ft8 ft9 ft10 ft11").split()
# the CSRs `info registers` shows, in QEMU's order (target/riscv/cpu.c)
DUMP_CSRS = (("mhartid", 0xF14), ("mstatus", 0x300), ("mip", 0x344), ("mie", 0x304),
             ("mideleg", 0x303), ("medeleg", 0x302), ("mtvec", 0x305), ("stvec", 0x105),
             ("mepc", 0x341), ("sepc", 0x141), ("mcause", 0x342), ("scause", 0x142),
             ("mtval", 0x343), ("stval", 0x143), ("mscratch", 0x340), ("sscratch", 0x140),
             ("satp", 0x180))
PRIV = {0: "U", 1: "S", 3: "M"}
SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
HELP = """\
info registers      the current vCPU's pc, CSRs and integer/FP registers
info status         running or paused
info cpus           the vCPUs (* marks the current one)
info version        hvemu's version
info stats          hvemu's figures: exits by reason, MIPS, shadow TLB
x/FMT ADDR          guest-virtual memory (FMT: count, format x d u o c i, size b h w g)
xp/FMT ADDR         guest-physical memory
cpu N               make vCPU N the current one
stop | cont | c     pause or resume the VM
system_reset        reboot the VM
system_powerdown    power the VM off
quit | q            stop the VM and hvemu
help                this list"""


class MonitorError(Exception):
    """A bad command line: its message is what the monitor prints."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version("hvemu")
    except PackageNotFoundError:            # a source tree nobody installed
        return "0.1.0"


class Monitor:
    """HMP for one VM.  `control` is what stop/cont/reset/quit act through (the QMP
    server's, so that QMP and the human monitor behave alike)."""

    def __init__(self, vm, control):
        self.vm = vm
        self.control = control
        self.cpu = 0

    def execute(self, line: str) -> str:
        """The monitor's output for one command line (text, each line ending in \\r\\n as
        QEMU's does over QMP)."""
        try:
            out = self._execute(line.strip())
        except MonitorError as e:
            out = str(e)
        if out and not out.endswith("\n"):
            out += "\n"
        return out.replace("\r\n", "\n").replace("\n", "\r\n")

    def _execute(self, line: str) -> str:
        if not line:
            return ""
        words = line.split()
        cmd, args = words[0], words[1:]
        if cmd.startswith("x/") or cmd.startswith("xp/") or cmd in ("x", "xp"):
            return self.memory_dump(cmd, " ".join(args))
        if cmd == "info":
            if not args:
                raise MonitorError("info: give registers, status, cpus, version or stats")
            what = args[0]
            table = {"registers": self.info_registers, "status": self.info_status,
                     "cpus": self.info_cpus, "version": lambda: version(),
                     "stats": self.info_stats}
            fn = table.get(what)
            if fn is None:
                raise MonitorError(f"info {what}: unknown (give registers, status, cpus, "
                                   "version or stats)")
            return fn()
        if cmd == "cpu":
            if len(args) != 1 or not args[0].isdigit() or int(args[0]) >= len(self.vm.vcpus):
                raise MonitorError(f"cpu: give a vCPU number from 0 to {len(self.vm.vcpus) - 1}")
            self.cpu = int(args[0])
            return ""
        simple = {"stop": self.control.stop, "cont": self.control.cont,
                  "c": self.control.cont, "system_reset": self.control.system_reset,
                  "system_powerdown": self.control.system_powerdown,
                  "quit": self.control.quit, "q": self.control.quit}
        if cmd in simple:
            if args:
                raise MonitorError(f"{cmd}: takes no arguments")
            simple[cmd]()
            return ""
        if cmd in ("help", "?"):
            return HELP
        raise MonitorError(f"unknown command: '{shlex.quote(cmd)}'")

    # ---- info ----
    @property
    def vcpu(self):
        return self.vm.vcpus[self.cpu]

    def info_registers(self) -> str:
        vc = self.vcpu
        v = vc.vcpu
        csr = vc.hart.csr
        lines = [f" {'pc':<8} {v.pc:016x}", f" {'priv':<8} {PRIV.get(vc.hart.priv, '?')}"]
        readers = csr.readers
        for name, num in DUMP_CSRS:
            lines.append(f" {name:<8} {readers[num]() & (1 << 64) - 1:016x}")
        row = []
        for i in range(32):
            row.append(f" {f'x{i}/{ABI[i]}':<8} {v.get_x(i):016x}")
            if i % 4 == 3:
                lines.append("".join(row))
                row = []
        for i in range(32):
            row.append(f" {f'f{i}/{FABI[i]}':<8} {v.get_f(i):016x}")
            if i % 4 == 3:
                lines.append("".join(row))
                row = []
        lines.append(f" {'fcsr':<8} {(v.frm << 5) | v.fflags:016x}")
        return "\n".join(lines)

    def info_status(self) -> str:
        return f"VM status: {self.control.status()}"

    def info_cpus(self) -> str:
        return "\n".join(f"{'*' if i == self.cpu else ' '} CPU #{i}: pc=0x{vc.vcpu.pc:016x} "
                         f"thread_id={self.control.thread_id}"
                         for i, vc in enumerate(self.vm.vcpus))

    def info_stats(self) -> str:
        d = self.control.stats()
        lines = [f"instructions {d['instructions']}", f"seconds {d['seconds']}",
                 f"MIPS {d['mips']}"]
        for section in ("exits", "privileged_instructions", "exceptions", "interrupts",
                        "mmio", "sbi", "shadow"):
            for k, n in d[section].items():
                lines.append(f"{section}: {k} {n}")
        return "\n".join(lines)

    # ---- x, xp ----
    def address(self, text: str) -> int:
        text = text.strip()
        m = re.fullmatch(r"\$(\w+)", text)
        if m:
            name = m.group(1)
            v = self.vcpu.vcpu
            if name == "pc":
                return v.pc
            if name in ABI:
                return v.get_x(ABI.index(name))
            if re.fullmatch(r"x([0-9]|[12][0-9]|3[01])", name):
                return v.get_x(int(name[1:]))
            raise MonitorError(f"unknown register ${name}")
        try:
            return int(text, 0) & ((1 << 64) - 1)
        except ValueError:
            raise MonitorError(f"bad address {text!r}: give a number or $register") from None

    def memory_dump(self, cmd: str, arg: str) -> str:
        name, _, fmt = cmd.partition("/")
        m = re.fullmatch(r"(\d*)([xduoci]?)([bhwg]?)", fmt)
        if m is None or not arg:
            raise MonitorError(f"{name}: give {name}/FMT ADDR, FMT = count, format "
                               "(x d u o c i) and size (b h w g), e.g. x/8xg 0x80000000")
        count = int(m.group(1) or 1)
        form = m.group(2) or "x"
        size = SIZES[m.group(3) or ("b" if form == "c" else "w")]
        if count > 4096:
            raise MonitorError(f"{name}: at most 4096 items")
        addr = self.address(arg)
        if form == "i":
            return self._disassemble(name, addr, count)
        per_line = 16 // size if form in "xc" else 4 if size < 8 else 2
        if form == "c":
            per_line = 8
        nbytes = count * size
        try:
            data = self._read(name, addr, nbytes)
        except (Unmapped, IndexError) as e:
            raise MonitorError(f"Cannot access memory: {e}") from None
        lines = []
        for start in range(0, count, per_line):
            items = []
            for i in range(start, min(count, start + per_line)):
                raw = data[i * size:(i + 1) * size]
                val = int.from_bytes(raw, "little")
                if form == "x":
                    items.append(f"0x{val:0{2 * size}x}")
                elif form == "u":
                    items.append(f"{val:>{3 * size}}")
                elif form == "o":
                    items.append(f"{val:#o}")
                elif form == "d":
                    if val >> (8 * size - 1):
                        val -= 1 << (8 * size)
                    items.append(f"{val:>{3 * size}}")
                else:
                    items.append(repr(chr(val)) if 32 <= val < 127 else f"'\\x{val:02x}'")
            lines.append(f"{(addr + start * size) & (1 << 64) - 1:016x}: " + " ".join(items))
        return "\n".join(lines)

    def _read(self, name: str, addr: int, nbytes: int) -> bytes:
        if name == "xp":
            return self.vm.memory.read(addr, nbytes)
        return read_virtual(self.vcpu, addr, nbytes)

    def _disassemble(self, name: str, addr: int, count: int) -> str:
        from ..disasm import disassemble
        lines = []
        for _ in range(count):
            try:
                raw = self._read(name, addr, 2)
                if raw[0] & 3 == 3:
                    raw = self._read(name, addr, 4)
            except (Unmapped, IndexError) as e:
                lines.append(f"{addr:016x}: Cannot access memory: {e}")
                break
            lines.append(f"0x{addr:016x}:  {disassemble(raw, addr)}")
            addr += len(raw)
        return "\n".join(lines)
