"""Measuring hvemu: guest MIPS, exits per second, the same guest on QEMU, and the CI gate.

Wall-clock speeds are too noisy on shared machines to gate on directly, so the
gate compares *ratios*: each speed divided by a calibration loop measured in the
same process just before it, so that a slower or busier machine moves both alike.
Fast-path figures (MIPS) are divided by a native calibration (zlib's CRC-32, C
code like the core); exit figures, which Python handlers dominate, by a Python
calibration (a loop shaped like an exit handler: attribute reads, calls, dict
lookups and integer operations).  Each figure is the best of a few repetitions.
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
from .errors import HvemuError
from .vm import VM, VMConfig

DEFAULT_BASELINE = Path("bench") / "baseline.json"
DEFAULT_TOLERANCE = 0.20          # a figure may fall 20 % below its baseline ratio


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
# the CI gate
# ---------------------------------------------------------------------------

# figure name -> (image, what is measured, max instructions in short mode, calibration)
GATE_FIGURES = {
    "bench_mips": ("bench", "mips", 120_000_000, "native"),
    "csr_exits_per_second": ("csrloop", "exits", None, "python"),
    "mmio_exits_per_second": ("mmioloop", "exits", None, "python"),
    "sfence_exits_per_second": ("sfence", "exits", None, "python"),
    "page_fault_exits_per_second": ("faults", "exits", None, "python"),
}


def gate_figures(names=None, repeat: int = 3) -> dict[str, dict]:
    """Measure each gate figure and its calibration; returns name -> details."""
    out = {}
    for name, (image, what, limit, cal) in GATE_FIGURES.items():
        if names is not None and name not in names:
            continue
        calibration = calibrate_native() if cal == "native" else calibrate_python()
        m = run_hvemu(image, repeat=repeat, max_instructions=limit)
        value = m.mips if what == "mips" else m.exits_per_second
        calibration = max(calibration, calibrate_native() if cal == "native"
                          else calibrate_python())
        out[name] = {"value": value, "calibration": calibration,
                     "ratio": value / calibration, "image": image}
    return out


def load_baseline(path: Path = DEFAULT_BASELINE) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HvemuError(f"{path}: no baseline (make one with: hvemu bench --update-baseline)"
                         ) from None
    except json.JSONDecodeError as e:
        raise HvemuError(f"{path}: not valid JSON ({e})") from None


def check_gate(path: Path = DEFAULT_BASELINE, repeat: int = 3) -> list[dict]:
    """Measure every figure in the baseline; each row says whether it passed."""
    base = load_baseline(path)
    tolerance = base.get("tolerance", DEFAULT_TOLERANCE)
    figures = gate_figures(set(base["ratios"]), repeat)
    rows = []
    for name, ratio in base["ratios"].items():
        got = figures[name]
        floor = ratio * (1 - tolerance)
        rows.append({"name": name, **got, "baseline": ratio, "floor": floor,
                     "ok": got["ratio"] >= floor})
    return rows


def update_baseline(path: Path = DEFAULT_BASELINE, runs: int = 3) -> dict:
    """Measure `runs` times and keep the median ratio of each figure as the baseline."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        for name, got in gate_figures().items():
            samples.setdefault(name, []).append(got["ratio"])
    ratios = {name: sorted(v)[len(v) // 2] for name, v in samples.items()}
    old = {}
    if Path(path).exists():
        old = json.loads(Path(path).read_text())
    data = {
        "about": "hvemu perf gate: each figure divided by a same-process calibration loop "
                 "(see hvemu/benchmark.py). Update with: hvemu bench --update-baseline",
        "tolerance": old.get("tolerance", DEFAULT_TOLERANCE),
        "ratios": {k: round(v, 6) for k, v in ratios.items()},
        "machine": os.uname().machine,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
    return data
