"""hvemu fleet: a matrix of guests as Ray tasks on a local Ray cluster of two workers.

Each fleet result is checked against the same guest run sequentially in this process
(a VM on a fresh copy of its disks): same result, exit status, instructions and console
output.  A crashing and a hanging guest, a worker killed under its guest (SIGKILL) and a
worker that stops answering (SIGSTOP) are reported as such while the rest finish.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import EXIT_FAULT, EXIT_TIMEOUT, EXIT_USAGE, run_hvemu, stderr_lines
from vmkit import Enc

from hvemu import images
from hvemu.console import Console
from hvemu.disks import DiskSpec
from hvemu.vm import VM, VMConfig

A0, A1, A2, A3 = 10, 11, 12, 13


def require_ray():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("ray is not installed (pip install -e '.[test]'); required when CI is set")
        pytest.skip("ray is not installed (pip install 'hvemu[fleet]')")
    return ray


@pytest.fixture(scope="module")
def fleet():
    """A local Ray instance of two workers, started (and stopped) by hvemu.fleet."""
    require_ray()
    from hvemu.fleet import Fleet
    f = Fleet(workers=2)
    try:
        yield f
    finally:
        f.close()


# ---- ISA-test-style guests: compute, compare, print, power off with 0 or the test number

def _r(f7: int, f3: int, rd: int, rs1: int, rs2: int) -> int:
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x33


OPS = {"add": (0, 0), "sub": (0x20, 0), "xor": (0, 4), "or": (0, 6), "sll": (0, 1),
       "mul": (1, 0)}


def _print(text: str) -> list[int]:
    out = [Enc.lui(Enc.T2, 0x10000)]
    for ch in text.encode():
        out += [*Enc.li(Enc.T1, ch), Enc.sb(Enc.T1, Enc.T2, 0)]
    return out


def isa_guest(number: int, op: str, a: int, b: int, expected: int) -> bytes:
    """riscv-tests style: a2 = a OP b; equal to expected: print ok and pass (0), else
    print FAIL and fail with the test's number."""
    f7, f3 = OPS[op]
    check = [*Enc.li(A0, a), *Enc.li(A1, b), _r(f7, f3, A2, A0, A1), *Enc.li(A3, expected)]
    passed = [*_print("ok\n"), *Enc.poweroff(0)]
    failed = [*_print("FAIL\n"), *Enc.poweroff(number)]
    return Enc.code(_print(f"isa {number} {op}: "), check,
                    Enc.bne(A2, A3, 4 * (len(passed) + 1)), passed, failed, Enc.J_SELF)


# (number, op, a, b, expected): 3 and 6 expect a wrong value, so they fail
ISA_CASES = [(1, "add", 100, 23, 123), (2, "sub", 200, 58, 142), (3, "xor", 0xF0, 0x3C, 0),
             (4, "or", 0x50, 0x05, 0x55), (5, "sll", 3, 4, 48), (6, "mul", 7, 9, 64),
             (7, "mul", -3, 5, -15)]
CRASH = Enc.code(Enc.jalr(0, 0, 0))              # jump to 0: nothing there, no trap handler
HANG = Enc.code(Enc.J_SELF)


@pytest.fixture(scope="module")
def isa_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fleet") / "isa"
    d.mkdir()
    for case in ISA_CASES:
        (d / f"{case[0]:02d}-{case[1]}.bin").write_bytes(isa_guest(*case))
    (d / "README").write_text("not a guest: a directory's guests are its ELF and .bin files\n")
    (d.parent / "crash.bin").write_bytes(CRASH)
    (d.parent / "hang.bin").write_bytes(HANG)
    return d


def sequential(cell, tmp: Path) -> dict:
    """The cell's guest run here, one VM, on fresh copies of its disks."""
    g = cell.guest
    disks = []
    for i, d in enumerate(g.disks):
        copy = tmp / f"seq-{cell.index}-{i}-{os.path.basename(d.path)}"
        shutil.copyfile(d.path, copy)
        disks.append(DiskSpec(str(copy), d.readonly, d.offset, d.size))
    console = Console()
    out = VM(VMConfig(image=g.image, kernel=g.kernel, memory=cell.memory, vcpus=cell.vcpus,
                      reference=cell.engine == "reference", timeout=cell.timeout,
                      max_instructions=g.max_instructions, disks=disks), console).run()
    from hvemu.cli import exit_code_of
    return {"result": out.reason, "exit_code": exit_code_of(out),
            "instructions": out.stats.instructions, "console": console.output_bytes}


def assert_same_as_sequential(cells, runs, tmp: Path, skip=()) -> None:
    for cell, run in zip(cells, runs, strict=True):
        if cell.guest.name in skip:
            continue
        seq = sequential(cell, tmp)
        got = {k: run.get(k) for k in seq}
        assert got == seq, f"{cell.guest.name} ({cell.label})"


# ---- the bundled images


def test_bundled_images_on_two_workers_equal_a_sequential_run(fleet, tmp_path):
    from hvemu.fleet import Guest, build_cells
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    disk2 = tmp_path / "disk2.img"
    disk2.write_bytes(bytes(1 << 20))
    journal = tmp_path / "journal.img"
    journal.write_bytes(bytes(128 << 10))
    path = images.bundled_path
    guests = [Guest("hello", image=path("hello"), axes={"vcpus": [1, 2]}),
              Guest("htif", image=path("htif"), axes={"engine": ["fast", "reference"]}),
              Guest("fpu", image=path("fpu")),
              Guest("sfence", image=path("sfence")),
              Guest("kernel", kernel=path("kernel")),
              Guest("disk-reboot", image=path("disk-reboot"), disks=[DiskSpec(str(disk))]),
              Guest("disk-two", image=path("disk-two"),
                    disks=[DiskSpec(str(disk)), DiskSpec(str(disk2))]),
              Guest("disk-journal", image=path("disk-journal"),
                    disks=[DiskSpec(str(journal))])]
    cells = build_cells(guests, {}, timeout=60)
    assert fleet.slots == 2
    runs = fleet.run(cells, repeat=2)
    assert len(runs) == 2 * len(cells)
    first, second = runs[0::2], runs[1::2]
    assert [r["result"] for r in first] == ["poweroff"] * len(cells)
    assert len({r["pid"] for r in runs}) >= 2          # both workers took guests
    # every guest got its own copy of its disk: the second run of disk-reboot sees the same
    # blank disk as the first (a shared disk would hold the first run's pattern), and the
    # originals are untouched
    for a, b in zip(first, second, strict=True):
        assert (a["instructions"], a["console"]) == (b["instructions"], b["console"])
    assert disk.read_bytes() == bytes(1 << 20) and journal.read_bytes() == bytes(128 << 10)
    assert_same_as_sequential(cells, first, tmp_path)
    assert b"hello: all tests passed" in first[0]["console"]


# ---- a directory of ISA-test-style guests from SPEC.toml, with a crash and a hang

def write_spec(tmp: Path, isa_dir: Path, text: str | None = None) -> Path:
    spec = tmp / "fleet.toml"
    spec.write_text(text or f"""\
timeout = 30

[matrix]
engine = ["fast", "reference"]

[[guest]]
name = "isa"
image = "{isa_dir}/*.bin"

[[guest]]
image = "{isa_dir.parent}/crash.bin"

[[guest]]
image = "{isa_dir.parent}/hang.bin"
timeout = 1
engine = "fast"
""")
    return spec


def test_isa_directory_with_a_crash_and_a_hang(fleet, isa_dir, tmp_path):
    from hvemu.fleet import build_cells, load_spec, summarize
    spec = load_spec(str(write_spec(tmp_path, isa_dir)))
    cells = build_cells(spec.guests, spec.axes, spec.timeout)
    assert [c.guest.name for c in cells][:4] == ["isa/01-add"] * 2 + ["isa/02-sub"] * 2
    assert len(cells) == 2 * len(ISA_CASES) + 2 + 1
    runs = fleet.run(cells)
    by_name = {}
    for c, r in zip(cells, runs, strict=True):
        by_name.setdefault(c.guest.name, []).append(r)
    for number, op, *_ in ISA_CASES:
        for r in by_name[f"isa/{number:02d}-{op}"]:
            want = (0, b"ok\n") if number not in (3, 6) else (number, b"FAIL\n")
            assert (r["result"], r["exit_code"]) == ("poweroff", want[0])
            assert r["console"] == f"isa {number} {op}: ".encode() + want[1]
    assert [(r["result"], r["exit_code"]) for r in by_name["crash"]] == \
        [("crash", EXIT_FAULT)] * 2
    assert "instruction access fault" in by_name["crash"][0]["detail"]
    assert [(r["result"], r["exit_code"]) for r in by_name["hang"]] == \
        [("timeout", EXIT_TIMEOUT)]
    assert_same_as_sequential(cells, runs, tmp_path, skip={"hang"})
    rows = summarize(cells, runs)
    assert [r["exit_code"] for r in rows if r["guest"] == "isa/06-mul"] == [6, 6]


# ---- workers that die or stop under their guest


def _worker_with_open(name: str, timeout: float = 30.0) -> int:
    """The pid of the (Ray worker) process that has a fleet task's copy of `name` open."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if "/hvemu-fleet-" in target and target.endswith("/" + name):
                    return int(pid)
        time.sleep(0.05)
    raise AssertionError(f"no worker has {name} open")


def test_killed_and_stopped_workers_are_reported_and_the_rest_finish(fleet, isa_dir,
                                                                     tmp_path):
    from hvemu.fleet import Guest, build_cells
    kill_disk, stop_disk = tmp_path / "victim-kill.img", tmp_path / "victim-stop.img"
    for d in (kill_disk, stop_disk):
        d.write_bytes(bytes(4096))
    spin = images.bundled_path("spin")
    guests = [Guest("victim-kill", image=spin, disks=[DiskSpec(str(kill_disk))], timeout=60),
              Guest("victim-stop", image=spin, disks=[DiskSpec(str(stop_disk))], timeout=3),
              *[Guest(p.stem, image=str(p)) for p in sorted(isa_dir.iterdir())[:4]]]
    cells = build_cells(guests, {}, timeout=30)
    stopped, killed, errors = [], [], []

    def saboteur():
        try:
            pid = _worker_with_open("victim-stop.img")     # first: its guest times out
            os.kill(pid, signal.SIGSTOP)           # alive, but no longer answers
            stopped.append(pid)
            killed.append(_worker_with_open("victim-kill.img"))
            os.kill(killed[0], signal.SIGKILL)
        except Exception as e:                    # reported below
            errors.append(e)
    thread = threading.Thread(target=saboteur)
    thread.start()
    try:
        runs = fleet.run(cells, grace=1)
    finally:
        thread.join()
        for pid in stopped:                       # hung: the fleet must have killed it
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert not errors, errors
    kill, stop, *rest = runs
    assert (kill["result"], kill["exit_code"]) == ("lost", 70), kill
    assert "worker process died" in kill["detail"]
    assert (stop["result"], stop["exit_code"]) == ("hung", 124), stop
    assert [r["result"] for r in rest] == ["poweroff"] * 4
    assert_same_as_sequential(cells[2:], rest, tmp_path)
    assert fleet.run(cells[2:3])[0]["result"] == "poweroff"      # the fleet still works
    end = time.monotonic() + 30                  # and the hung worker was killed
    while os.path.exists(f"/proc/{stopped[0]}") and time.monotonic() < end:
        with open(f"/proc/{stopped[0]}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":     # dead, not yet reaped
                break
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{stopped[0]}/fd/0"), "the hung worker is still alive"
    # the next tasks sweep the temporary directories the dead workers left behind
    fleet.run(cells[2:4])
    left = [n for n in os.listdir(tempfile.gettempdir())
            if n.startswith((f"hvemu-fleet-{killed[0]}-", f"hvemu-fleet-{stopped[0]}-"))]
    assert not left, left


# ---- the command line


def test_cli_runs_images_with_repeat_and_qemu_on_its_own_local_ray(tmp_path):
    require_ray()
    from conftest import require_tool
    require_tool("qemu-system-riscv64", "qemu-system-misc")
    out = tmp_path / "fleet.json"
    proc = run_hvemu("fleet", "run", "hello", "htif", "-smp", "1", "--vcpus", "2",
                     "--repeat", "2", "--qemu", "--workers", "2", "--json", out, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "hvemu fleet: 4 guest configurations × 2" in proc.stdout
    assert "poweroff" in proc.stdout and "QEMU MIPS" in proc.stdout
    data = json.loads(out.read_text())
    assert data["workers"] == 2 and data["repeat"] == 2
    cells = data["cells"]
    assert [(c["guest"], c["configuration"]["vcpus"]) for c in cells] == \
        [("hello", 1), ("hello", 2), ("htif", 1), ("htif", 2)]
    for c in cells:
        assert len(c["runs"]) == 2 and c["result"] == "poweroff" and c["exit_code"] == 0
        assert c["instructions"] == c["runs"][0]["instructions"] == c["runs"][1]["instructions"]
        assert c["seconds"]["min"] <= c["seconds"]["median"] <= c["seconds"]["max"]
        assert len(c["seconds"]["values"]) == 2
    hello = cells[0]
    seq = VM(VMConfig(image=images.bundled_path("hello")), Console()).run()
    assert hello["instructions"] == seq.stats.instructions
    assert hello["qemu"]["result"] == "poweroff" and hello["qemu"]["seconds"]["median"] > 0
    assert hello["qemu"]["mips"] > 0
    assert "qemu" not in cells[2]                # HTIF: QEMU's virt board has none


def test_cli_joins_a_running_cluster_with_address(fleet, isa_dir, tmp_path):
    ray = require_ray()
    address = ray.get_runtime_context().gcs_address
    spec = write_spec(tmp_path, isa_dir)
    out = tmp_path / "fleet.json"
    proc = run_hvemu("fleet", "run", spec, "--address", address, "--json", out, timeout=180)
    # the first guest whose status is not 0, in matrix order: isa test 3 fails with 3
    assert proc.returncode == 3, proc.stderr
    rows = json.loads(out.read_text())["cells"]
    assert [(r["guest"], r["result"], r["exit_code"]) for r in rows[-3:]] == \
        [("crash", "crash", EXIT_FAULT), ("crash", "crash", EXIT_FAULT),
         ("hang", "timeout", EXIT_TIMEOUT)]
    assert any(line.startswith("hvemu: crash (1 vCPU 128M fast): crash: guest fault")
               for line in stderr_lines(proc)), proc.stderr
    assert ray.cluster_resources().get("CPU") == 2       # the cluster was left running
    cells = fleet_cells(isa_dir)
    assert [c.guest.name for c in cells] == [f"isa/{n:02d}-{op}" for n, op, *_ in ISA_CASES]
    assert fleet.run(cells[:1])[0]["exit_code"] == 0


def fleet_cells(isa_dir):
    from hvemu.fleet import build_cells, guests_from_paths
    return build_cells(guests_from_paths([str(isa_dir)], []), {}, 30)


@pytest.mark.parametrize("text, line, words", [
    ("bogus = 1\n[[guest]]\nimage = 'hello'\n", 1, "unknown setting 'bogus'"),
    ("[[guest]]\nimage = 'hello'\n\n[[guest]]\nimage = 'hello'\nvcpu = 2\n", 6,
     "[[guest]] #2 vcpu: unknown key 'vcpu'"),
    ("[matrix]\nvcpus = [1, 0]\n[[guest]]\nimage = 'hello'\n", 2, "[matrix] vcpus:"),
    ("[matrix]\nengine = 'turbo'\n[[guest]]\nimage = 'hello'\n", 2, "'turbo': give fast or"),
    ("[[guest]]\nimage = 'nothing/*.bin'\n", 2, "matches no file"),
    ("[[guest]]\nname = 'x'\nimage = 'no-such.elf'\n", 3, "no such file"),
    ("[[guest]]\nimage = 'hello'\nmemory = '12Q'\n", 3, "bad memory size"),
    ("repeat = 0\n[[guest]]\nimage = 'hello'\n", 1, "repeat: bad repeat"),
    ("[[guest]]\nimage = 'hello'\n[[guest]]\nappend = 'x'\nimage = 'hello'\n", 4,
     "append: needs a kernel"),
    ("timeout = 30\n", None, "no [[guest]] tables"),
    ("[[guest]\nimage = 1\n", 1, "not valid TOML"),
])
def test_bad_spec_is_one_line_naming_line_and_key(tmp_path, text, line, words):
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    proc = run_hvemu("fleet", "run", spec)
    lines = stderr_lines(proc)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"hvemu: {spec}:"), lines
    if line is not None:
        assert lines[0].startswith(f"hvemu: {spec}:{line}: "), lines
    assert words in lines[0]


@pytest.mark.parametrize("args, code, words", [
    (["hello", "--workers", "2", "--address", "127.0.0.1:1"], EXIT_USAGE, "--workers"),
    (["hello", "--address", "127.0.0.1:1"], 69, "no Ray cluster answers there"),
    (["hello", "--address", "head-node"], EXIT_USAGE, "give HOST:PORT"),
    (["spec.toml", "--vcpus", "2"], EXIT_USAGE, "give the guests' options in it"),
    (["hello", "no-such-image"], 66, "no-such-image: no such file"),
    (["hello", "--engine", "turbo"], EXIT_USAGE, "'turbo' is not one of"),
    (["hello", "--timeout", "-1"], EXIT_USAGE, "bad number of seconds"),
])
def test_bad_command_line_is_one_line(tmp_path, args, code, words):
    (tmp_path / "spec.toml").write_text("[[guest]]\nimage = 'hello'\n")
    proc = run_hvemu("fleet", "run", *args, cwd=tmp_path)
    lines = stderr_lines(proc)
    assert proc.returncode == code and len(lines) == 1, proc.stderr
    assert lines[0].startswith("hvemu: ") and words in lines[0], lines


def test_the_readme_spec_example_is_a_valid_spec(tmp_path, isa_dir):
    from hvemu.fleet import build_cells, load_spec
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### `hvemu fleet`"):]
    example = section[section.index("```toml\n") + 8:section.index("```\n", 8)]
    (tmp_path / "isa").symlink_to(isa_dir)
    (tmp_path / "journal.img").write_bytes(bytes(128 << 10))
    spec = tmp_path / "fleet.toml"
    spec.write_text(example)
    s = load_spec(str(spec))
    cells = build_cells(s.guests, s.axes, s.timeout)
    assert len(cells) == (len(ISA_CASES) + 1) * 4
    assert {c.label for c in cells} == {"1 vCPU 128M fast", "1 vCPU 128M reference",
                                        "2 vCPUs 128M fast", "2 vCPUs 128M reference"}
    assert cells[-1].guest.name == "disk-journal" and cells[-1].timeout == 30


def test_without_ray_fleet_run_says_how_to_install_it(tmp_path):
    shadow = tmp_path / "ray"                 # a `ray` that cannot be imported, first on the path
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    proc = run_hvemu("fleet", "run", "hello", env=env)
    assert proc.returncode == 69 and stderr_lines(proc) == [
        "hvemu: hvemu fleet runs on Ray, which is not installed: pip install 'hvemu[fleet]'"]
