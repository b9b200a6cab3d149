"""`hvemu bench --exit-costs`: what one exit costs under each hypervisor class.

For each exit kind a bundled guest does little but that exit in a loop (csrloop,
csrwloop, sieloop, sfence, ecallloop, faults, mmioloop, timerloop).  Each runs under each class
(hvemu.hypervisor.CLASSES) and gives, per exit:

- ns: the VM's host time (the scheduler's, start-up excluded) over its exits;
- host instructions: counted by callgrind in every process of the run (the hosted
  hypervisor's too), over a shorter run of the same guest -- repeatable, as the perf
  gate's counts are;
- hops: host-level round trips between processes (`VCpu.remote_hops`) -- 0 when the
  hypervisor handles the exit in the core's own context, 1 when it goes through the
  host OS to the hypervisor's process.

Next to them stand Adams & Agesen's hardware figures (ASPLOS 2006: a VT-x exit and
entry round trip costs 937 to 2,409 cycles on the processors they measured).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import images
from .console import Console
from .errors import InternalError, ToolMissingError
from .hypervisor import CLASSES

# exit kind -> (guest, max guest instructions of its counted run)
KINDS = {
    "CSR read": ("csrloop", 80_000),
    "CSR write": ("csrwloop", 80_000),
    "sstatus.SIE toggle": ("sieloop", 80_000),
    "sfence.vma": ("sfence", 1_200_000),
    "ecall + mret (reflected)": ("ecallloop", 400_000),
    "page fault (reflected)": ("faults", 700_000),
    "MMIO to the UART": ("mmioloop", 80_000),
    "timer interrupt": ("timerloop", 200_000),
}
VTX_ROUND_TRIP_CYCLES = (937, 2409)          # Adams & Agesen, ASPLOS 2006, Table 1


def run_guest(image: str, kind: str, max_instructions: int | None = None, measured=False,
              vcpus: int = 1):
    """One run of a bundled guest under a hypervisor class (or HANDLERS, the native
    class with its privileged part off: hypervisor.hosted.make_hypervisor): (Outcome, VM)."""
    from . import _core
    from .hypervisor.hosted import make_hypervisor
    from .vm import VM, VMConfig
    config = VMConfig(image=images.resolve(image), max_instructions=max_instructions,
                      vcpus=vcpus)
    vm = VM(config, Console(), hypervisor=make_hypervisor(kind, reserve=config.memory))
    out = _core.measured(vm.run) if measured else vm.run()
    return out, vm


def timed(image: str, kind: str, repeat: int) -> dict:
    """ns and hops per exit: the best of `repeat` whole runs."""
    best = None
    for _ in range(repeat):
        out, vm = run_guest(image, kind)
        exits = sum(out.stats.exits) + out.stats.privileged_part
        hops = sum(vc.vcpu.remote_hops for vc in vm.vcpus)
        row = {"exits": exits, "ns_per_exit": out.stats.seconds / exits * 1e9,
               "hops_per_exit": hops / exits}
        if best is None or row["ns_per_exit"] < best["ns_per_exit"]:
            best = row
    return best


def _count_child(specs: list[str]) -> None:
    """Under callgrind: each IMAGE:CLASS:LIMIT[:HARTS] inside _core.measured(), one JSON
    line each."""
    for spec in specs:
        image, kind, limit, *harts = spec.split(":")
        out, vm = run_guest(image, kind, int(limit), measured=True,
                            vcpus=int(harts[0]) if harts else 1)
        print(json.dumps({"spec": spec,
                          "exits": sum(out.stats.exits) + out.stats.privileged_part,
                          "instructions": out.stats.instructions,
                          "child": getattr(vm.hypervisor, "last_pid", None)}), flush=True)


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    return 0


def proc_pid(files: list[Path], runs: list[dict]) -> int:
    """The pid of the process that ran the guests: the one whose files are not a child's."""
    children = {str(r["child"]) for r in runs}
    (pid,) = {p.name.split(".")[1] for p in files} - children
    return int(pid)


def count(specs: list[str]) -> dict[str, dict]:
    """Host instructions per exit for each IMAGE:CLASS:LIMIT, all in one callgrind run:
    the core's process dumps once per run (cg.PID.N), and a hosted hypervisor's process,
    forked inside _core.measured and so counting from its first instruction, at its end
    (cg.CHILD*), each named by the run that made it."""
    from .benchmark import valgrind_available
    if not valgrind_available():
        raise ToolMissingError("host instructions are counted with valgrind: "
                               "apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.%p",
               "--collect-atstart=no", "--toggle-collect=*_core_1measured",
               "--dump-after=*_core_1measured", sys.executable, "-m", "hvemu.exitcosts",
               "count", *specs]
        env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise InternalError(f"the instruction-count run failed: {proc.stderr.strip()[-500:]}")
        runs = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        files = list(Path(tmp).glob("cg.*"))
        results = {}
        for n, run in enumerate(runs, start=1):
            host = _totals(Path(tmp) / f"cg.{proc_pid(files, runs)}.{n}")
            if run["child"] is not None:          # the hosted hypervisor's process
                host += sum(_totals(p) for p in files
                            if p.name.split(".")[1] == str(run["child"]))
            results[run["spec"]] = {"host_instructions": host, "exits": run["exits"],
                                    "instructions": run["instructions"],
                                    "per_exit": host / max(1, run["exits"])}
    return results


def measure(repeat: int = 3, counted: bool = True, kinds=None) -> list[dict]:
    """Every exit kind under every class: one row each."""
    kinds = [k for k in KINDS if kinds is None or k in kinds]
    specs = {(k, c): f"{KINDS[k][0]}:{c}:{KINDS[k][1]}" for k in kinds for c in CLASSES}
    counts = count(list(specs.values())) if counted else {}
    rows = []
    for k in kinds:
        for c in CLASSES:
            row = {"exit": k, "guest": KINDS[k][0], "class": c, **timed(KINDS[k][0], c, repeat)}
            if counted:
                row["host_instructions_per_exit"] = counts[specs[k, c]]["per_exit"]
            rows.append(row)
    return rows


def table(rows: list[dict]):
    from rich.table import Table
    lo, hi = VTX_ROUND_TRIP_CYCLES
    t = Table(title="hvemu bench --exit-costs: per exit, by hypervisor class "
                    f"(hardware: a VT-x exit + entry is {lo:,}-{hi:,} cycles, "
                    "Adams & Agesen 2006)")
    for col in ("exit", "guest", "class", "exits", "ns/exit", "host instructions/exit",
                "hops/exit"):
        t.add_column(col, justify="left" if col in ("exit", "guest", "class") else "right")
    for r in rows:
        hi_ = r.get("host_instructions_per_exit")
        t.add_row(r["exit"], r["guest"], r["class"], f"{r['exits']:,}",
                  f"{r['ns_per_exit']:,.0f}", "-" if hi_ is None else f"{hi_:,.0f}",
                  f"{r['hops_per_exit']:.2f}")
    return t


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "count":
        _count_child(sys.argv[2:])
