"""Measuring hvemu: guest MIPS, exits per second, the same guest on QEMU, and the CI gate.

Two kinds of figures.  Speeds (MIPS, exits/s) are what users see; `bench/` records
them, and `calibrated()` divides them by a calibration loop measured in the same
process (zlib's CRC-32 for the fast path, a handler-shaped Python loop for exits) for
comparisons across busy machines.  The CI gate does not use the clock at all: it
counts host instructions with callgrind — per guest instruction on the fast path, and
per exit through the Python handlers — which is exactly repeatable on a given build,
so it cannot flake, and a slowdown that adds work shows at once.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import images
from .console import Console
from .errors import HvemuError, NoInputError, ToolMissingError
from .vm import VM, VMConfig

DEFAULT_BASELINE = Path("bench") / "baseline.json"


# ---------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------

_CAL_BUFFER = bytes(range(256)) * 4096          # 1 MiB


def calibrate_native(repeat: int = 5) -> float:
    """MB/s of zlib.crc32 over 1 MiB: a C loop, like the core (best of `repeat`)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(16):
            zlib.crc32(_CAL_BUFFER)
        best = min(best, time.perf_counter() - t)
    return 16 / best


class _Handlerish:
    def __init__(self) -> None:
        self.table = {i: i * 3 for i in range(64)}
        self.count = 0

    def handle(self, insn: int) -> int:
        csr = insn >> 20
        rd = (insn >> 7) & 31
        self.count += 1
        return self.table.get(csr & 63, 0) + rd


def calibrate_python(repeat: int = 5) -> float:
    """Million iterations/s of a handler-shaped Python loop (best of `repeat`)."""
    h = _Handlerish()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for i in range(200_000):
            h.handle(0x34002573 + i)
        best = min(best, time.perf_counter() - t)
    return 0.2 / best


# ---------------------------------------------------------------------------
# running guests
# ---------------------------------------------------------------------------

@dataclass
class Measurement:
    image: str
    instructions: int
    exits: int
    seconds: float              # host time inside the run loop, best of the repetitions

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6

    @property
    def exits_per_second(self) -> float:
        return self.exits / self.seconds


def run_hvemu(image: str, repeat: int = 3, max_instructions: int | None = None,
              **config) -> Measurement:
    """Run a guest `repeat` times in-process; the fastest run's figures."""
    path = images.resolve(image)
    best = None
    for _ in range(repeat):
        vm = VM(VMConfig(image=path, max_instructions=max_instructions, **config), Console())
        out = vm.run()
        if out.reason not in ("poweroff", "max-instructions"):
            raise HvemuError(f"{image}: the guest stopped with {out.reason} {out.detail}")
        m = Measurement(image, out.stats.instructions, out.stats.total_exits, out.stats.seconds)
        if best is None or m.seconds < best.seconds:
            best = m
    return best


QEMU = "qemu-system-riscv64"
# lui t0,0x100; lui t1,0x5; addiw t1,t1,0x555; sw t1,0(t0); j .  -- powers off at once
_NULL_GUEST = bytes.fromhex("b7021000" "37530000" "1b035355" "23a06200" "6f000000")


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def _qemu_wall(path: str, repeat: int, memory: str) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([QEMU, "-M", "virt", "-bios", "none", "-nographic", "-m", memory,
                        "-kernel", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, timeout=600, check=False)
        best = min(best, time.perf_counter() - t)
    return best


def run_qemu(image: str, repeat: int = 3, memory: str = "128M") -> float:
    """Seconds QEMU (TCG) takes to run a guest, less its start-up (a guest that powers
    off at once), best of `repeat`."""
    with tempfile.TemporaryDirectory() as tmp:
        null = Path(tmp) / "null.bin"
        null.write_bytes(_NULL_GUEST)
        startup = _qemu_wall(str(null), repeat, memory)
    return max(_qemu_wall(images.resolve(image), repeat, memory) - startup, 1e-6)


# ---------------------------------------------------------------------------
# process VMs: `hvemu run` next to qemu-riscv64
# ---------------------------------------------------------------------------

QEMU_USER = "qemu-riscv64"


def qemu_user_available() -> bool:
    return shutil.which(QEMU_USER) is not None


def null_program() -> bytes:
    """A static riscv64 Linux ELF that exits at once (exit(0)): start-up cost only."""
    import struct
    code = struct.pack("<3I", 0x05D00893, 0x00000513, 0x00000073)   # li a7,93; li a0,0; ecall
    base, start = 0x10000, 64 + 56
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 243, 1,
                       base + start, 64, 0, 4, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, start + len(code), start + len(code),
                       0x1000)
    return ehdr + phdr + code


@dataclass
class ProcessMeasurement:
    program: str
    instructions: int
    seconds: float              # CPU time (user + sys), less the start-up of a null program
    syscalls: int
    wall: float                 # inside hvemu: loading and running, without Python's start-up

    @property
    def mips(self) -> float:
        return self.instructions / self.seconds / 1e6


def _child_times(cmd: list[str], env=None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child and what it waited for, exit status)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=env)
    _pid, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime, p.returncode


def _null_file(tmp: str) -> str:
    null = Path(tmp) / "null"
    null.write_bytes(null_program())
    null.chmod(0o755)
    return str(null)


def run_process_hvemu(prog: str, args: list[str], repeat: int = 3,
                      sysroot: str | None = None) -> ProcessMeasurement:
    """`hvemu run` of a program, `repeat` times in fresh processes; the fastest run by CPU
    time (user + sys: steady on a shared machine), less what `hvemu run` of a program
    that exits at once costs (Python's start-up, the imports)."""
    import sys
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    best = None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stats.json"
        base = [sys.executable, "-m", "hvemu.cli", "run", "--stats-json", str(out),
                *(["-L", sysroot] if sysroot else [])]
        startup = min(_child_times([*base, _null_file(tmp)], env)[1] for _ in range(repeat))
        for _ in range(repeat):
            out.unlink(missing_ok=True)
            _wall, cpu, code = _child_times([*base, prog, *args], env)
            if not out.exists() or code > 125 or code < 0:
                raise HvemuError(f"{prog}: hvemu run failed (exit status {code})")
            d = json.loads(out.read_text())
            m = ProcessMeasurement(prog, d["instructions"], max(cpu - startup, 1e-6),
                                   d["syscalls_total"], d["seconds"])
            if best is None or m.seconds < best.seconds:
                best = m
    return best


def run_process_qemu(prog: str, args: list[str], repeat: int = 3,
                     sysroot: str | None = None) -> float:
    """CPU seconds (user + sys) qemu-riscv64 takes to run the program, less its start-up
    (a program that exits at once), best of `repeat`."""
    with tempfile.TemporaryDirectory() as tmp:
        startup = min(_child_times([QEMU_USER, _null_file(tmp)])[1] for _ in range(repeat))
    prefix = [QEMU_USER, *(["-L", sysroot] if sysroot else [])]
    cpu = min(_child_times([*prefix, prog, *args])[1] for _ in range(repeat))
    return max(cpu - startup, 1e-6)


def calibrated(value: float, kind: str) -> float:
    """A speed divided by the calibration loop of its kind ("native" or "python"),
    measured now, in this process."""
    return value / (calibrate_native() if kind == "native" else calibrate_python())


# ---------------------------------------------------------------------------
# the CI gate: host instructions counted by callgrind, which do not depend on the clock
# ---------------------------------------------------------------------------

# figure -> (image, per what, max guest instructions, hypervisor class).  Each guest runs
# inside _core.measured(); callgrind counts the host instructions of exactly that call,
# in every process it runs in (hvemu.exitcosts.count).
GATE_FIGURES = {
    "fast_path_per_instruction": ("bench", "instruction", 5_000_000, "native"),
    "fast_path_per_instruction_sv39": ("bench-sv39", "instruction", 5_000_000, "native"),
    # native-handlers: native with the core's privileged part off, so that these count
    # the Python handlers that hosted and --reference runs take (exitcosts.run_guest)
    "csr_exit": ("csrloop", "exit", 62_500, "native-handlers"),
    "csr_write_exit": ("csrwloop", "exit", 62_500, "native-handlers"),
    "mmio_exit": ("mmioloop", "exit", 62_500, "native"),
    "sfence_exit": ("sfence", "exit", 1_200_000, "native-handlers"),
    "page_fault_exit": ("faults", "exit", 700_000, "native"),
    "hosted_csr_exit": ("csrloop", "exit", 62_500, "hosted"),
    "hosted_mmio_exit": ("mmioloop", "exit", 62_500, "hosted"),
    "dual_csr_exit": ("csrloop", "exit", 62_500, "dual"),     # finished in the core
    "dual_page_fault_exit": ("faults", "exit", 700_000, "dual"),
    "dual_sfence_exit": ("sfence", "exit", 1_200_000, "dual"),   # finished in the core
    "sie_exit": ("sieloop", "exit", 62_500, "native-handlers"),  # kernels' interrupt masks
    "native_sie_exit": ("sieloop", "exit", 62_500, "native"),   # finished in the core
    "dual_sie_exit": ("sieloop", "exit", 62_500, "dual"),       # finished in the core
    # SMP (native, with the 5th field's harts): lr/sc and AMOs (the fast path's OP_AMO)
    # and the quantum switches of 4 harts hammering one lock; IPI
    # ping-pong between 2 harts: msip MMIO, WFI and the turns each wake-up takes
    "smp_lrsc_per_instruction": ("smp-lrsc", "instruction", 4_000_000, "native", 4),
    "ipi_exit": ("smp-ipi", "exit", 500_000, "native", 2),
}
DEFAULT_COUNT_TOLERANCE = 0.10       # a figure may cost 10 % more host instructions


def valgrind_available() -> bool:
    return shutil.which("valgrind") is not None


def count_figures(names=None) -> dict[str, dict]:
    """Host instructions per guest instruction (fast path) or per exit, under callgrind."""
    from . import exitcosts
    names = [n for n in GATE_FIGURES if names is None or n in names]
    if not valgrind_available():
        raise ToolMissingError("the perf gate counts instructions with valgrind: "
                         "apt-get install valgrind")
    spec = {n: ":".join(map(str, (GATE_FIGURES[n][0], GATE_FIGURES[n][3], GATE_FIGURES[n][2],
                                   *GATE_FIGURES[n][4:]))) for n in names}   # [:HARTS]
    counted = exitcosts.count(list(dict.fromkeys(spec.values())))
    results = {}
    for name in names:
        run, per = counted[spec[name]], GATE_FIGURES[name][1]
        units = run["instructions"] if per == "instruction" else run["exits"]
        results[name] = {"host_instructions": run["host_instructions"], "units": units,
                         "per": per, "value": run["host_instructions"] / units}
    return results


def load_baseline(path: Path = DEFAULT_BASELINE) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NoInputError(f"{path}: no baseline (make one with: hvemu bench --update-baseline)"
                         ) from None
    except json.JSONDecodeError as e:
        raise HvemuError(f"{path}: not valid JSON ({e})") from None


def check_gate(path: Path = DEFAULT_BASELINE) -> list[dict]:
    """Count every figure in the baseline; each row says whether it passed."""
    base = load_baseline(path)
    tolerance = base.get("tolerance", DEFAULT_COUNT_TOLERANCE)
    figures = count_figures(set(base["counts"]))
    rows = []
    for name, baseline in base["counts"].items():
        got = figures[name]
        ceiling = baseline * (1 + tolerance)
        rows.append({"name": name, **got, "baseline": baseline, "ceiling": ceiling,
                     "ok": got["value"] <= ceiling})
    return rows


def update_baseline(path: Path = DEFAULT_BASELINE) -> dict:
    """Count every figure and write them as the new baseline."""
    figures = count_figures()
    old = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    data = {
        "about": "hvemu perf gate: host instructions (callgrind) per guest instruction on the "
                 "fast path and per exit; see hvemu/benchmark.py. Update with: "
                 "hvemu bench --update-baseline",
        "tolerance": old.get("tolerance", DEFAULT_COUNT_TOLERANCE),
        "counts": {k: round(v["value"], 3) for k, v in figures.items()},
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "machine": os.uname().machine,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return data



