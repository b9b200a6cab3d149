"""`hvemu fleet`: a matrix of guests run as Ray tasks, on this machine or a cluster.

    hvemu fleet run SPEC.toml [--address HOST:PORT | --workers N] [--repeat N] [--qemu]
    hvemu fleet run IMAGE|DIR... [--vcpus N]... [--memory SIZE]... [--engine fast|reference]...
                             [--disk SPEC]... [--timeout S] [--max-instructions N] [--json PATH]

Every guest of the matrix -- each guest x each combination of the axes (vcpus, memory,
engine) x each repetition -- is one Ray task (`max_retries=0`: a task is never run
twice).  Without --address hvemu starts a local Ray instance with --workers CPUs (default:
this machine's) and stops it at the end; with --address it joins an existing cluster
(`ray start --head` prints the address) and leaves it running.  Guest images, kernels,
initrds and disks are read once by the driver, put into Ray's object store as bytes, and
written by each task to its own temporary directory on its node, so nodes need no shared
file system and every guest gets its own copy of each disk (never a shared writable
file).  Each task runs its guest in the worker process (a VM is self-contained; in-process
saves a Python start-up per guest) on the guest's own hypervisor.

How a guest can end (the `result` column; `status` is the exit status `hvemu boot` would
have given it):

    poweroff            the guest powered off: status = its exit code (finisher, HTIF, SRST)
    crash, idle         a fault its own trap handler cannot take (120); WFI forever (121)
    timeout             the VM's --timeout watchdog stopped it (124)
    max-instructions    --max-instructions reached (125)
    nomem               the frame pool ran dry (71)
    refused             hvemu refused the guest (a bad image, a disk that does not fit...):
                        status = the <sysexits.h> code `hvemu boot` uses (64, 65, 66, 71)
    hung                the task outlived its timeout by the grace period (30 s) -- the
                        worker itself is stuck -- and was cancelled, its worker killed (124)
    lost                the worker process died under the guest (a signal, the OOM killer,
                        a lost node) (70)
    error               an exception in hvemu inside the task (a bug) (70)

Whatever one guest does, the others run on.  The fleet ends with 0 when every guest ended
with status 0, else with the first other status in matrix order (like `hvemu host`).

SPEC.toml (every error names the file, the line and the key; one `hvemu: ...` line, exit 64):

    repeat = 3                  # runs of every cell (as --repeat; the command line wins)
    timeout = 60                # default seconds of host time per guest (as --timeout)
    qemu = false                # also time each guest on qemu-system-riscv64 (as --qemu)

    [matrix]                    # the axes; every guest runs in every combination
    vcpus = [1, 2]              # a list or one value; default [1]
    memory = ["64M", "128M"]    # default ["128M"]
    engine = ["fast", "reference"]   # reference: as `hvemu boot --reference`; default fast

    [[guest]]
    name = "isa"                # default: the image's file name without its extension
    image = "isa/*.bin"         # a path (relative to SPEC.toml), a bundled image's name, or
                                # a glob: one guest per file (named NAME/FILE)
    # bios, kernel, initrd, append: as for `hvemu boot`
    disks = ["disk.img"]        # copied for every guest, on its worker
    timeout = 10                # this guest's own; max_instructions, clock as well
    vcpus = [4]                 # this guest's own axes (vcpus, memory, engine) replace [matrix]'s

`--repeat N` gives per-cell medians with their spread (half the range, min..max) of
seconds and MIPS; instructions are the same in every run of a deterministic guest.
`--qemu` also runs each guest that QEMU can run the same way (an image, no disks, no
kernel) on qemu-system-riscv64 on the workers, timed as `hvemu bench` times it (wall time
less QEMU's start-up), with hvemu's instruction count.

`hvemu fleet migrate` (a VM running as a Ray actor moving to an actor on another node,
over hvemu's migration stream) is in hvemu/fleetmigrate.py.

On a cluster, every node needs the same hvemu installed (`pip install 'hvemu[fleet]'`,
which also gives `ray`); the driver may run on any machine that reaches the head node.
On a local instance the workers import the driver's hvemu (its directory is put on their
PYTHONPATH).
"""
from __future__ import annotations

import glob
import logging
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field

from .disks import DiskSpec
from .errors import (
    EX_SOFTWARE,
    HvemuError,
    NoInputError,
    ToolMissingError,
    UsageError,
)
from .units import parse_count, parse_seconds, parse_size

DEFAULT_TIMEOUT = 60.0           # seconds of host time per guest
DEFAULT_GRACE = 30.0             # past its timeout, a task whose VM did not stop is hung
ENGINES = ("fast", "reference")
EXIT_LOST = EX_SOFTWARE
EXIT_HUNG = 124

TOP_KEYS = {"repeat", "timeout", "qemu", "matrix", "guest"}
AXES = ("vcpus", "memory", "engine")
GUEST_KEYS = {"name", "image", "bios", "kernel", "initrd", "append", "disks", "timeout",
              "max_instructions", "clock", *AXES}


class SpecError(UsageError):
    """A SPEC.toml that cannot be used (exit 64, one line naming the line and the key)."""


# ---------------------------------------------------------------------------
# the matrix
# ---------------------------------------------------------------------------

@dataclass
class Guest:
    """One guest, before the axes: what `hvemu boot` would be given."""
    name: str
    image: str | None = None         # firmware or a bare-metal image (also --bios)
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    disks: list[DiskSpec] = field(default_factory=list)
    timeout: float | None = None     # None: the fleet's
    max_instructions: int | None = None
    clock: str = "virtual"
    axes: dict = field(default_factory=dict)     # this guest's own axes

    def files(self) -> list[str]:
        return [p for p in (self.image, self.kernel, self.initrd) if p] + \
               [d.path for d in self.disks]

    @property
    def qemu_can_run(self) -> bool:
        """QEMU runs it as `hvemu bench` runs QEMU: an image alone, without disks, that
        does not talk HTIF (QEMU's virt board has none: it would never power off)."""
        return self.image is not None and self.kernel is None and not self.disks \
            and not _defines_tohost(self.image)


def _defines_tohost(path: str) -> bool:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"\x7fELF":
                return False
            f.seek(0)
            symtab = ELFFile(f).get_section_by_name(".symtab")
            return bool(symtab is not None and symtab.get_symbol_by_name("tohost"))
    except (OSError, ELFError, ValueError):
        return False


@dataclass
class Cell:
    """One guest in one configuration (one combination of the axes)."""
    index: int
    guest: Guest
    vcpus: int = 1
    memory: int = 128 << 20
    engine: str = "fast"
    timeout: float = DEFAULT_TIMEOUT

    @property
    def configuration(self) -> dict:
        return {"vcpus": self.vcpus, "memory": self.memory, "engine": self.engine}

    @property
    def label(self) -> str:
        return f"{self.vcpus} vCPU{'s' if self.vcpus > 1 else ''} {format_size(self.memory)} " \
               f"{self.engine}"


def format_size(n: int) -> str:
    for suffix, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return f"{n}B"


def build_cells(guests: list[Guest], axes: dict, timeout: float) -> list[Cell]:
    """Every guest in every combination of its axes (its own, else the fleet's)."""
    import itertools
    cells = []
    for g in guests:
        values = [g.axes.get(a, axes.get(a)) or [default] for a, default in
                  (("vcpus", 1), ("memory", 128 << 20), ("engine", "fast"))]
        for vcpus, memory, engine in itertools.product(*values):
            cells.append(Cell(len(cells), g, vcpus, memory, engine,
                              g.timeout if g.timeout is not None else timeout))
    return cells


def guests_from_paths(paths: list[str], disks: list[DiskSpec], max_instructions=None,
                      clock: str = "virtual") -> list[Guest]:
    """`hvemu fleet run IMAGE...`: each IMAGE a file, a bundled image's name, or a
    directory (its ELF files and *.bin raw images, sorted by name)."""
    from . import images
    guests = []
    for arg in paths:
        if os.path.isdir(arg):
            files = sorted(e.path for e in os.scandir(arg) if e.is_file()
                           and not e.name.startswith(".") and _is_image(e.path))
            if not files:
                raise NoInputError(f"{arg}: no guest images in this directory")
            prefix = os.path.basename(os.path.normpath(arg))
            for f in files:
                guests.append(Guest(f"{prefix}/{_stem(f)}", image=f, disks=list(disks),
                                    max_instructions=max_instructions, clock=clock))
            continue
        path = images.resolve(arg)
        _check_readable(path)
        guests.append(Guest(arg if arg in images.bundled() else _stem(path), image=path,
                            disks=list(disks), max_instructions=max_instructions, clock=clock))
    for d in disks:
        _check_readable(d.path, "disk ")
    return guests


def _bundled(path: str, given: str) -> bool:
    """Whether `given` named a bundled image, found at path."""
    from . import images
    return given in images.bundled() and path == images.bundled_path(given)


def _is_image(path: str) -> bool:
    """An ELF file, or a raw image named *.bin (what a directory of guests holds)."""
    if path.endswith(".bin"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _stem(path: str) -> str:
    base = os.path.basename(path)
    return base.rsplit(".", 1)[0] if "." in base[1:] else base


def _check_readable(path: str, what: str = "") -> None:
    import stat
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NoInputError(f"{what}{path}: no such file") from None
    except OSError as e:
        raise NoInputError(f"{what}{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise NoInputError(f"{what}{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise NoInputError(f"{what}{path}: cannot read (Permission denied)")


# ---------------------------------------------------------------------------
# SPEC.toml
# ---------------------------------------------------------------------------

def _line_of(text: str, table: str | None, index: int | None, key: str | None) -> int | None:
    """The line (1-based) where `key` is set in the index-th [[table]] (or the [table], or
    at the top level when table is None); that table's header if the key is not there."""
    current, count, header = None, -1, None
    for number, line in enumerate(text.splitlines(), start=1):
        s = line.split("#", 1)[0].strip().replace(" ", "")
        m = re.fullmatch(r"\[\[([^\]]+)\]\]|\[([^\]]+)\]", s)
        if m:
            current = m.group(1) or m.group(2)
            if current == table:
                count += 1
                if index is None or count == index:
                    header = number
            continue
        here = (table is None and current is None) or \
               (current == table and (index is None or count == index))
        if here and key is not None and s.split("=", 1)[0] == key:
            return number
    return header


@dataclass
class Spec:
    path: str
    guests: list[Guest]
    axes: dict
    repeat: int | None
    timeout: float | None
    qemu: bool


def load_spec(path: str) -> Spec:
    """Parse and check SPEC.toml (see the module docstring); SpecError names line and key."""
    import tomllib
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    except OSError as e:
        raise NoInputError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        where = re.search(r"\(at line (\d+), column \d+\)", str(e))
        raise SpecError(f"{path}:{where.group(1) + ':' if where else ''} not valid TOML: "
                        f"{e}") from None
    return _SpecParser(path, text).parse(data)


class _SpecParser:
    def __init__(self, path: str, text: str):
        self.path, self.text = path, text
        self.base = os.path.dirname(os.path.abspath(path))

    def fail(self, table, index, key, message):
        line = _line_of(self.text, table, index, key)
        what = {None: "", "matrix": "[matrix]"}.get(table, f"[[{table}]] #{(index or 0) + 1}")
        what = f"{what} {key}".strip() if key else what
        raise SpecError(f"{self.path}:{line if line is not None else '?'}: "
                        f"{what + ': ' if what else ''}{message}")

    def parse(self, data: dict) -> Spec:
        for key in data:
            if key not in TOP_KEYS:
                self.fail(None, None, key, f"unknown setting {key!r} (known: "
                          "repeat, timeout, qemu, [matrix], [[guest]])")
        repeat = self.count(None, None, "repeat", data["repeat"], 1, 1000) \
            if "repeat" in data else None
        timeout = self.seconds(None, None, data["timeout"]) if "timeout" in data else None
        qemu = data.get("qemu", False)
        if not isinstance(qemu, bool):
            self.fail(None, None, "qemu", f"give true or false, not {qemu!r}")
        matrix = data.get("matrix", {})
        if not isinstance(matrix, dict):
            self.fail(None, None, "matrix", "give a [matrix] table")
        axes = self.axes("matrix", None, matrix, set(AXES))
        entries = data.get("guest", [])
        if not isinstance(entries, list) or not entries:
            self.fail(None, None, None, "no [[guest]] tables: give at least one guest")
        guests = []
        for i, entry in enumerate(entries):
            guests.extend(self.guest(i, entry))
        return Spec(self.path, guests, axes, repeat, timeout, qemu)

    def axes(self, table, index, entry: dict, known: set) -> dict:
        if table == "matrix":
            for key in entry:
                if key not in known:
                    self.fail(table, index, key, f"unknown axis {key!r} (known: "
                              f"{', '.join(AXES)})")
        out = {}
        for axis in AXES:
            if axis not in entry:
                continue
            values = entry[axis] if isinstance(entry[axis], list) else [entry[axis]]
            if not values:
                self.fail(table, index, axis, "give at least one value")
            out[axis] = [self.axis_value(table, index, axis, v) for v in values]
        return out

    def axis_value(self, table, index, axis, value):
        from .vm import MAX_VCPUS, check_memory_size
        if axis == "vcpus":
            return self.count(table, index, axis, value, 1, MAX_VCPUS)
        if axis == "memory":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                self.fail(table, index, axis, f"give a size like \"256M\", not {value!r}")
            try:
                size = parse_size(str(value), "memory size", bare="M")
                check_memory_size(size)
            except HvemuError as e:
                self.fail(table, index, axis, str(e))
            return size
        if value not in ENGINES:
            self.fail(table, index, axis, f"{value!r}: give fast or reference")
        return value

    def count(self, table, index, key, value, low, high) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            self.fail(table, index, key, f"give a whole number from {low} to {high}, "
                      f"not {value!r}")
        try:
            return parse_count(str(value), key.replace("_", " "), low, high)
        except HvemuError as e:
            self.fail(table, index, key, str(e))

    def seconds(self, table, index, value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.fail(table, index, "timeout", f"give a number of seconds, not {value!r}")
        try:
            return parse_seconds(str(value), "timeout")
        except HvemuError as e:
            self.fail(table, index, "timeout", str(e))

    def string(self, i, key, value) -> str:
        if not isinstance(value, str):
            self.fail("guest", i, key, f"give a string, not {value!r}")
        return value

    def file(self, i, key, value) -> str:
        from . import images
        value = self.string(i, key, value)
        candidate = value if os.path.isabs(value) else os.path.join(self.base, value)
        if not os.path.exists(candidate) and key in ("image", "bios", "kernel") \
                and value in images.bundled():
            candidate = images.bundled_path(value)
        try:
            _check_readable(candidate)
        except HvemuError as e:
            self.fail("guest", i, key, str(e))
        return candidate

    def guest(self, i: int, entry) -> list[Guest]:
        if not isinstance(entry, dict):
            self.fail("guest", i, None, "each [[guest]] must be a table")
        for key in entry:
            if key not in GUEST_KEYS:
                self.fail("guest", i, key, f"unknown key {key!r} (known: "
                          f"{', '.join(sorted(GUEST_KEYS))})")
        if "image" in entry and "bios" in entry:
            self.fail("guest", i, "bios", "give either image or bios, not both")
        first = "image" if "image" in entry else "bios"
        if first not in entry and "kernel" not in entry:
            self.fail("guest", i, None, "no guest: give image, bios or kernel")
        images_ = [None]
        if first in entry:
            pattern = self.string(i, first, entry[first])
            if glob.has_magic(pattern):
                full = pattern if os.path.isabs(pattern) else os.path.join(self.base, pattern)
                images_ = sorted(p for p in glob.glob(full) if os.path.isfile(p))
                if not images_:
                    self.fail("guest", i, first, f"{pattern!r} matches no file")
            else:
                images_ = [self.file(i, first, pattern)]
        kernel = self.file(i, "kernel", entry["kernel"]) if "kernel" in entry else None
        initrd = self.file(i, "initrd", entry["initrd"]) if "initrd" in entry else None
        append = self.string(i, "append", entry.get("append", ""))
        if (initrd or append) and kernel is None:
            self.fail("guest", i, "initrd" if initrd else "append", "needs a kernel")
        disks = []
        raw = entry.get("disks", [])
        if not isinstance(raw, list):
            self.fail("guest", i, "disks", "give a list of disk specs")
        for text in raw:
            try:
                d = DiskSpec.parse(self.string(i, "disks", text))
            except HvemuError as e:
                self.fail("guest", i, "disks", str(e))
            if not os.path.isabs(d.path):
                d.path = os.path.join(self.base, d.path)
            try:
                _check_readable(d.path, "disk ")
            except HvemuError as e:
                self.fail("guest", i, "disks", str(e))
            disks.append(d)
        timeout = self.seconds("guest", i, entry["timeout"]) if "timeout" in entry else None
        max_insns = self.count("guest", i, "max_instructions", entry["max_instructions"], 1,
                               (1 << 64) - 1) if "max_instructions" in entry else None
        clock = self.string(i, "clock", entry.get("clock", "virtual"))
        if clock not in ("virtual", "host"):
            self.fail("guest", i, "clock", f"{clock!r}: give virtual or host")
        axes = self.axes("guest", i, entry, set(AXES))
        name = self.string(i, "name", entry["name"]) if "name" in entry else None
        out = []
        for image in images_:
            if len(images_) > 1 or (image and glob.has_magic(entry.get(first, ""))):
                gname = f"{name}/{_stem(image)}" if name else _stem(image)
            else:
                given = entry.get(first) if image else entry.get("kernel")
                gname = name or (given if _bundled(image or kernel, given) else
                                 _stem(image or kernel))
            out.append(Guest(gname, image=image, kernel=kernel, initrd=initrd, append=append,
                             disks=[DiskSpec(d.path, d.readonly, d.offset, d.size)
                                    for d in disks],
                             timeout=timeout, max_instructions=max_insns, clock=clock,
                             axes=axes))
        return out


# ---------------------------------------------------------------------------
# the worker side: one task
# ---------------------------------------------------------------------------

_ZERO = bytes(1 << 16)


def _write(path: str, data: bytes) -> None:
    """data into a new file at path, sparse where data has 64 KiB of zeros."""
    with open(path, "wb") as f:
        view = memoryview(data)
        for off in range(0, len(data), len(_ZERO)):
            chunk = view[off:off + len(_ZERO)]
            if chunk == _ZERO[:len(chunk)]:
                f.seek(len(chunk), os.SEEK_CUR)
            else:
                f.write(chunk)
        f.truncate(len(data))


def _place(tmp: str, payload: dict, blobs: tuple) -> dict:
    """Write each file the task was given into tmp; original path -> local path."""
    local = {}
    for i, (key, data) in enumerate(zip(payload["files"], blobs, strict=True)):
        os.mkdir(os.path.join(tmp, str(i)))           # each file keeps its own name
        path = os.path.join(tmp, str(i), os.path.basename(key))
        _write(path, data)
        local[key] = path
    return local


def _sweep() -> None:
    """Remove the temporary directories of tasks whose worker died (a killed process
    cannot clean up after itself): hvemu-fleet-PID-... where PID is gone."""
    import shutil
    for entry in os.scandir(tempfile.gettempdir()):
        m = re.match(r"hvemu-fleet-(\d+)-", entry.name)
        if m is None or not entry.is_dir(follow_symlinks=False):
            continue
        if not _alive(int(m.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether process pid runs (another user's counts; a zombie, killed and not yet
    reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                               # another user's: alive, not ours
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):                 # gone meanwhile, or no /proc
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")


def run_job(payload: dict, *blobs: bytes) -> dict:
    """Run one guest (payload["kind"] == "hvemu") or time it on QEMU ("qemu"), with the
    files it needs as blobs (in payload["files"]' order).  Returns a plain dict."""
    import shutil
    import socket
    started = time.time()
    _sweep()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", payload["name"])[:40]
    tmp = tempfile.mkdtemp(prefix=f"hvemu-fleet-{os.getpid()}-{name}-")
    try:
        local = _place(tmp, payload, blobs)
        run = (_qemu_job if payload["kind"] == "qemu" else _hvemu_job)(payload, local)
    except Exception as e:                      # a bug in hvemu: the fleet goes on
        import traceback
        run = {"result": "error", "exit_code": EX_SOFTWARE,
               "detail": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**run, "node": socket.gethostname(), "pid": os.getpid(), "started": started,
            "ended": time.time()}


def vm_config(p: dict, local: dict, timeout: float | None = None):
    """The VMConfig of a payload's guest, on the task's own copies of its files (`local`:
    the user's path -> the copy's); timeout overrides the payload's."""
    from .vm import VMConfig

    def where(path):
        return local[path] if path else None
    disks = [DiskSpec(where(d["path"]), d["readonly"], d["offset"], d["size"])
             for d in p["disks"]]
    return VMConfig(image=where(p["image"]), kernel=where(p["kernel"]),
                    initrd=where(p["initrd"]), append=p["append"], memory=p["memory"],
                    vcpus=p["vcpus"], reference=p["engine"] == "reference",
                    timeout=p["timeout"] if timeout is None else timeout,
                    max_instructions=p["max_instructions"], clock=p["clock"], disks=disks,
                    name=p["name"])


def unlocal(message: str, local: dict) -> str:
    """message naming the user's files, not the task's copies of them."""
    for original, path in local.items():
        message = message.replace(path, original)
    return message


def outcome_dict(out, console, local: dict) -> dict:
    """A finished run (an Outcome and its Console) as the plain dict a task returns."""
    from .cli import exit_code_of
    from .hypervisor.stats import REASON_NAMES
    s = out.stats
    return {"result": out.reason, "exit_code": exit_code_of(out),
            "detail": unlocal(out.detail, local),
            "instructions": s.instructions, "seconds": s.seconds, "mips": s.mips,
            "exits": s.total_exits,
            "exits_by_reason": {REASON_NAMES[i]: n for i, n in enumerate(s.exits)
                                if i in REASON_NAMES and n},
            "console": console.output_bytes, "console_bytes": console.position}


def _hvemu_job(p: dict, local: dict) -> dict:
    from .console import Console
    from .vm import VM

    console = Console()
    started = time.perf_counter()
    try:
        vm = VM(vm_config(p, local), console)
        out = vm.run()
    except HvemuError as e:
        return {"result": "refused", "exit_code": e.exit_code, "detail": unlocal(str(e), local),
                "wall": time.perf_counter() - started}
    return {**outcome_dict(out, console, local), "wall": time.perf_counter() - started}


_QEMU_STARTUP: dict[tuple[str, int], float] = {}    # per worker process


def _qemu_wall(path: str, memory: str, harts: int,
               timeout: float) -> tuple[float, int | None]:
    import subprocess

    from .benchmark import QEMU
    t = time.perf_counter()
    try:
        proc = subprocess.run([QEMU, "-M", "virt", "-bios", "none", "-nographic", "-m", memory,
                               "-smp", str(harts), "-kernel", path], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t, None
    return time.perf_counter() - t, proc.returncode


def _qemu_job(p: dict, local: dict) -> dict:
    """The guest on qemu-system-riscv64 as `hvemu bench` runs it: wall time less QEMU's
    start-up (a guest that powers off at once, best of 3, measured once per worker)."""
    from .benchmark import _NULL_GUEST, qemu_available
    if not qemu_available():
        return {"result": "unavailable", "detail": "qemu-system-riscv64 is not installed "
                "on this node"}
    memory, harts = format_size(p["memory"]), p["vcpus"]
    if (memory, harts) not in _QEMU_STARTUP:
        null = os.path.join(os.path.dirname(local[p["image"]]), "null.bin")
        _write(null, _NULL_GUEST)
        _QEMU_STARTUP[memory, harts] = min(_qemu_wall(null, memory, harts, 60)[0]
                                           for _ in range(3))
    wall, code = _qemu_wall(local[p["image"]], memory, harts, p["timeout"])
    if code is None:
        return {"result": "timeout", "exit_code": EXIT_HUNG, "wall": wall}
    return {"result": "poweroff", "exit_code": code, "wall": wall,
            "seconds": max(wall - _QEMU_STARTUP[memory, harts], 1e-6)}


# ---------------------------------------------------------------------------
# the driver side: Ray
# ---------------------------------------------------------------------------

def import_ray():
    try:
        import ray
    except ImportError:
        raise ToolMissingError("hvemu fleet runs on Ray, which is not installed: "
                               "pip install 'hvemu[fleet]'") from None
    return ray


class _interrupts_deferred:
    """SIGINT and SIGTERM wait until the block ends (in the main thread); the value
    of `with` is a list, non-empty if one came."""

    def __enter__(self):
        import signal
        import threading
        self.came: list = []
        self.old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, lambda n, f: self.came.append(n))
        return self.came

    def __exit__(self, *exc):
        import signal
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        return False


def check_address(address: str, timeout: float = 5.0) -> None:
    """--address HOST:PORT (or ray://HOST:PORT, Ray Client): well formed, and something
    answers there -- Ray itself would retry a dead address for ever."""
    import socket
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--address {address!r}: give HOST:PORT of a Ray cluster's head "
                         "(ray start --head prints it)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ToolMissingError(f"--address {address}: no Ray cluster answers there "
                               f"({e.strerror or e})") from None


class Fleet:
    """A connection to Ray: a local instance of `workers` CPUs that this object starts and
    stops, or an existing cluster at `address` (joined, left running).  When this process
    is connected to Ray already, that connection is used (and left open)."""

    def __init__(self, address: str | None = None, workers: int | None = None,
                 object_store: int | None = None):
        if address is not None:
            check_address(address)
        ray = self.ray = import_ray()
        self.address = address
        self.owned = False
        if ray.is_initialized():
            return
        import signal
        self._sigterm = signal.getsignal(signal.SIGTERM)    # ray.init installs its own
        if address is not None:
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            except Exception as e:               # ConnectionError, RuntimeError, ValueError
                raise ToolMissingError(f"--address {address}: cannot join a Ray cluster "
                                       f"there ({str(e).splitlines()[0][:200]})") from None
        else:
            import hvemu
            here = os.path.dirname(os.path.dirname(os.path.abspath(hvemu.__file__)))
            path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
            with _interrupts_deferred() as interrupted:  # half a Ray would outlive us
                try:
                    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                             log_to_driver=False, logging_level=logging.ERROR,
                             object_store_memory=max(object_store or 0, 128 << 20),
                             runtime_env={"env_vars": {"PYTHONPATH": path,
                                                       "OPENBLAS_NUM_THREADS": "1"}})
                except Exception as e:
                    ray.shutdown()
                    raise ToolMissingError(f"cannot start a local Ray instance "
                                           f"({str(e).splitlines()[0][:200]})") from None
            if interrupted:
                ray.shutdown()
                raise KeyboardInterrupt
        self.owned = True
        self._remote = None

    @property
    def slots(self) -> int:
        """Tasks that can run at once: the cluster's CPUs."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            import signal
            import threading
            self.ray.shutdown()
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, self._sigterm)
        self.owned = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def remote(self):
        if getattr(self, "_remote", None) is None:
            self._remote = self.ray.remote(num_cpus=1, max_retries=0)(run_job)
        return self._remote

    def run(self, cells: list[Cell], repeat: int = 1, qemu: bool = False,
            grace: float = DEFAULT_GRACE, on_result=None,
            slots: int | None = None) -> list[dict]:
        """Run every cell `repeat` times (and on QEMU, with qemu=True, each run of a guest
        QEMU can run that powered off on hvemu: next, on a free worker); one dict per run,
        in the order cell, repetition, kind.  on_result(run) is called as each ends.
        slots: how many guests may run at once (default: the cluster's CPUs)."""
        ray = self.ray
        exceptions = ray.exceptions
        jobs = [(cell, rep, "hvemu") for rep in range(repeat) for cell in cells]
        refs = {}
        for cell in cells:
            for path in cell.guest.files():
                if path not in refs:
                    refs[path] = ray.put(_read(path))
        task = self.remote()
        pending = list(reversed(jobs))
        running: dict = {}                    # ObjectRef -> [job, deadline or None]
        results: dict = {}
        cpus = self.slots
        slots = min(slots or cpus, cpus)
        if slots < cpus:                      # each task takes cpus/slots: `slots` at once
            task = task.options(num_cpus=cpus / slots)

        def finish(job, run: dict) -> None:
            cell, rep, kind = job
            run.update(cell=cell.index, repetition=rep, kind=kind, guest=cell.guest.name)
            results[cell.index, rep, kind] = run
            if on_result is not None:
                on_result(run)
            if qemu and kind == "hvemu" and cell.guest.qemu_can_run:
                if run["result"] == "poweroff":
                    pending.append((cell, rep, "qemu"))          # runs next
                else:
                    finish((cell, rep, "qemu"), {"result": "skipped", "detail": "not run: "
                                                 "the guest did not power off on hvemu"})

        # Twice as many tasks as slots are in flight, so that no worker waits for this
        # loop; a task's deadline (its timeout + grace) counts from when it can have
        # started: at once for the first `slots` of them, else when an earlier one ended.
        queued: list = []                     # in flight, not yet started (first in first)
        while pending or running:
            while pending and len(running) < 2 * slots:
                job = pending.pop()
                payload = _payload(*job)
                ref = task.remote(payload, *(refs[f] for f in payload["files"]))
                running[ref] = [job, None]
                queued.append(ref)
            while queued and len(running) - len(queued) < slots:
                entry = running[queued.pop(0)]
                entry[1] = time.monotonic() + entry[0][0].timeout + grace
            deadline = min(r[1] for r in running.values() if r[1] is not None)
            ready, _ = ray.wait(list(running), num_returns=1,
                                timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            for ref in ready:
                job, _deadline = running.pop(ref)
                if ref in queued:                 # it ran before one queued ahead of it
                    queued.remove(ref)
                try:
                    run = ray.get(ref)
                except (exceptions.WorkerCrashedError, exceptions.NodeDiedError,
                        exceptions.LocalRayletDiedError, exceptions.ObjectLostError) as e:
                    run = {
                        "result": "lost", "exit_code": EXIT_LOST,
                        "detail": f"the worker process died under the guest "
                                  f"({type(e).__name__})"}
                except exceptions.RayError as e:
                    run = {"result": "error", "exit_code": EX_SOFTWARE,
                           "detail": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
                finish(job, run)
            now = time.monotonic()
            for ref, (job, deadline) in list(running.items()):
                if deadline is not None and deadline <= now:    # hung: Ray kills its worker
                    ray.cancel(ref, force=True)
                    del running[ref]
                    finish(job, _hung(job, grace))
        return [results[key] for key in sorted(results, key=lambda k: (k[0], k[1],
                                                                        k[2] == "qemu"))]


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise NoInputError(f"{path}: cannot read ({e.strerror})") from None


def _hung(job, grace: float) -> dict:
    return {"result": "hung", "exit_code": EXIT_HUNG,
            "detail": f"no answer {job[0].timeout + grace:g} s after it started "
                      f"(its timeout plus {grace:g} s): cancelled, its worker killed"}


def _payload(cell: Cell, rep: int, kind: str) -> dict:
    g = cell.guest
    files = []
    for p in g.files():
        if p not in files:
            files.append(p)
    return {"kind": kind, "name": g.name, "image": g.image, "kernel": g.kernel,
            "initrd": g.initrd, "append": g.append,
            "disks": [{"path": d.path, "readonly": d.readonly, "offset": d.offset,
                       "size": d.size} for d in g.disks],
            "files": files, "memory": cell.memory, "vcpus": cell.vcpus, "engine": cell.engine,
            "timeout": cell.timeout, "max_instructions": g.max_instructions,
            "clock": g.clock, "repetition": rep}


# ---------------------------------------------------------------------------
# results: per-cell figures, the table, JSON
# ---------------------------------------------------------------------------

def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / 2, "values": values}


def summarize(cells: list[Cell], runs: list[dict]) -> list[dict]:
    """One row per cell: its result, status, instructions and the medians (with spreads)
    of seconds and MIPS over its runs; QEMU's figures beside them."""
    by_cell: dict[int, list[dict]] = {c.index: [] for c in cells}
    qemu: dict[int, list[dict]] = {c.index: [] for c in cells}
    for r in runs:
        (qemu if r["kind"] == "qemu" else by_cell)[r["cell"]].append(r)
    rows = []
    for c in cells:
        rs = by_cell[c.index]
        results = [r["result"] for r in rs]
        codes = [r["exit_code"] for r in rs]
        insns = sorted({r["instructions"] for r in rs if r.get("instructions") is not None})
        row = {"guest": c.guest.name, "configuration": c.configuration, "label": c.label,
               "result": results[0] if len(set(results)) == 1 else "mixed: " + ", ".join(
                   f"{k}×{results.count(k)}" for k in dict.fromkeys(results)),
               "exit_code": next((x for x in codes if x != 0), 0),
               "instructions": insns[0] if len(insns) == 1 else None,
               "instructions_vary": len(insns) > 1,
               "seconds": _spread([r["seconds"] for r in rs if "seconds" in r]),
               "mips": _spread([r["mips"] for r in rs if "mips" in r]),
               "exits": _spread([r["exits"] for r in rs if "exits" in r]),
               "details": sorted({r["detail"] for r in rs if r.get("detail")
                                  and r["result"] not in ("poweroff",)}),
               "runs": [{k: v for k, v in r.items() if k != "console"}
                        | ({"console_tail": r["console"][-2000:].decode("utf-8", "replace")}
                           if "console" in r else {}) for r in rs]}
        q = qemu[c.index]
        if q:
            secs = [r["seconds"] for r in q if "seconds" in r]
            row["qemu"] = {"result": q[0]["result"] if len({r["result"] for r in q}) == 1
                           else "mixed", "exit_code": q[0].get("exit_code"),
                           "seconds": _spread(secs),
                           "detail": next((r["detail"] for r in q if r.get("detail")), "")}
            if secs and row["instructions"]:
                qm = row["instructions"] / statistics.median(secs) / 1e6
                row["qemu"]["mips"] = qm
                if row["mips"]:
                    row["qemu"]["hvemu_over_qemu"] = row["mips"]["median"] / qm
        rows.append(row)
    return rows


def _fmt(fig: dict | None, fmt: str) -> str:
    if fig is None:
        return "-"
    text = format(fig["median"], fmt)
    if fig["max"] != fig["min"]:
        text += "±" + format(fig["spread"], fmt)
    return text


def table(rows: list[dict], title: str, qemu: bool = False):
    from rich.table import Table
    t = Table(title=title)
    cols = ["guest", "configuration", "result", "status", "instructions", "seconds", "MIPS",
            "exits"]
    if qemu:
        cols += ["QEMU s", "QEMU MIPS", "hvemu/QEMU"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("guest", "configuration", "result")
                     else "right", no_wrap=col != "guest")
    for r in rows:
        colour = "" if r["exit_code"] == 0 else "[red]"
        insns = f"{r['instructions']:,}" if r["instructions"] is not None else \
            ("varies" if r["instructions_vary"] else "-")
        exits = _fmt(r["exits"], ",.0f")
        cells = [r["guest"], r["label"], colour + r["result"], str(r["exit_code"]), insns,
                 _fmt(r["seconds"], ".3f"), _fmt(r["mips"], ",.1f"), exits]
        if qemu:
            q = r.get("qemu")
            if q is None:
                cells += ["-", "-", "-"]
            elif q["seconds"] is None:
                cells += [q["result"], "-", "-"]
            else:
                differs = q.get("exit_code") not in (None, r["exit_code"])
                cells += [_fmt(q["seconds"], ".3f") + (f" (exit {q['exit_code']})"
                                                       if differs else ""),
                          f"{q['mips']:,.1f}" if "mips" in q else "-",
                          f"{q['hvemu_over_qemu']:.2f}" if "hvemu_over_qemu" in q else "-"]
        t.add_row(*cells)
    return t

