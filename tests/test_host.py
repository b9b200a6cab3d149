"""Several VMs on one hypervisor: `hvemu host CONFIG.toml` and `Hypervisor().create_vm()`.

The hypervisor shares one host among its VMs: host frames from one pool (which may
hold less than the VMs' RAM adds up to: overcommit), host time in instruction quanta
round-robin (weighted by `shares`).  The VMs stay isolated — a hostile guest finds
nothing of another VM's RAM by loads, stores or device DMA — and one VM stopping
(power off, the pool running dry) does not stop the others.
"""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from conftest import run_hvemu, stderr_lines

from hvemu.console import Console
from hvemu.hypervisor.hypervisor import Hypervisor
from hvemu.vm import VMConfig

MIB = 1 << 20


def images(name):
    from hvemu import images
    return images.resolve(name)


def write(tmp_path, text: str, name: str = "host.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- the command -------------------------------------------------------------------

def host_rows(tmp_path, config, timeout: float = 180) -> dict:
    """`hvemu host CONFIG --json` in tmp_path, which must end with 0: its rows by VM name."""
    proc = run_hvemu("host", config, "--json", tmp_path / "out.json", cwd=tmp_path,
                     timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return {r["vm"]: r for r in json.loads((tmp_path / "out.json").read_text())["vms"]}


def test_two_vms_run_together_and_the_table_reports_each(tmp_path):
    config = write(tmp_path, """
[[vm]]
name = "a"
image = "hello"
console = "file:a.log"

[[vm]]
name = "b"
image = "bench"
vcpus = 2
console = "file:b.log"
""")
    proc = run_hvemu("host", config, "--json", tmp_path / "out.json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hello: all tests passed" in (tmp_path / "a.log").read_text()
    assert "bench: checksum=0xa47dc73cf0f33c42" in (tmp_path / "b.log").read_text()
    rows = {r["vm"]: r for r in json.loads((tmp_path / "out.json").read_text())["vms"]}
    assert rows["a"]["result"] == rows["b"]["result"] == "poweroff"
    assert rows["b"]["vcpus"] == 2 and rows["b"]["instructions"] > 299_000_000
    assert "poweroff" in proc.stderr and "host frames" in proc.stderr


def test_vms_of_both_classes_run_at_once_each_as_it_runs_alone(tmp_path):
    config = write(tmp_path, """
hypervisor = "hosted"

[[vm]]
name = "n"
image = "bench"
hypervisor = "native"
console = "file:n.log"

[[vm]]
name = "h"
kernel = "kernel"
console = "file:h.log"

[[vm]]
name = "h2"
image = "hello"
console = "file:h2.log"
""")
    rows = host_rows(tmp_path, config)
    assert {v: r["hypervisor"] for v, r in rows.items()} == {"n": "native", "h": "hosted",
                                                              "h2": "hosted"}
    for name, kwargs, log in (("n", dict(image="bench"), "n.log"),
                              # one hart: the kernel starts every other hart, and
                              # how several harts interleave depends on the other
                              # VMs' turns (the quantum is SLICE only for a lone hart)
                              ("h", dict(kernel="kernel"), "h.log"),
                              ("h2", dict(image="hello"), "h2.log")):
        hv = Hypervisor()
        vm = hv.create_vm(VMConfig(**{k: images(v) if isinstance(v, str) else v
                                      for k, v in kwargs.items()}), Console())
        alone = vm.run()
        assert rows[name]["result"] == alone.reason == "poweroff"
        assert rows[name]["instructions"] == alone.stats.instructions, name
        assert (tmp_path / log).read_bytes() == vm.console.output_bytes, name


def test_hosted_and_dual_vms_without_a_native_one_run_at_once(tmp_path):
    config = write(tmp_path, """
[[vm]]
name = "h"
image = "hello"
hypervisor = "hosted"
console = "file:h.log"

[[vm]]
name = "d"
image = "csrloop"
hypervisor = "dual"
console = "file:d.log"
""")
    rows = host_rows(tmp_path, config)
    assert {v: (r["hypervisor"], r["result"]) for v, r in rows.items()} == {
        "h": ("hosted", "poweroff"), "d": ("dual", "poweroff")}
    assert "hello: all tests passed" in (tmp_path / "h.log").read_text()
    assert "csrloop: done" in (tmp_path / "d.log").read_text()


def test_four_256_mib_vms_fit_in_a_512_mib_pool_when_what_they_touch_fits(tmp_path):
    vms = "".join(f'\n[[vm]]\nname = "v{i}"\nimage = "bench"\nmemory = "256M"\n'
                  for i in range(4))
    config = write(tmp_path, 'host_memory = "512M"\n' + vms)
    proc = run_hvemu("host", config, "--json", tmp_path / "out.json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert [r["result"] for r in out["vms"]] == ["poweroff"] * 4
    assert sum(r["guest_ram"] for r in out["vms"]) == 1024 * MIB
    assert out["host_frames_peak"] < 16 * MIB < 512 * MIB == out["host_memory"]


def test_the_vm_that_finds_the_pool_empty_stops_and_the_others_go_on(tmp_path, raw_image):
    from test_frames import page_toucher
    toucher = raw_image(page_toucher(8192))                  # 32 MiB of pages
    config = write(tmp_path, f"""
host_memory = "16M"
[[vm]]
name = "greedy"
image = "{toucher}"
memory = "64M"
[[vm]]
name = "modest"
image = "hello"
console = "file:modest.log"
""")
    proc = run_hvemu("host", config, "--json", tmp_path / "out.json", cwd=tmp_path)
    rows = {r["vm"]: r for r in json.loads((tmp_path / "out.json").read_text())["vms"]}
    assert rows["greedy"]["result"] == "nomem" and rows["greedy"]["exit_status"] == 71
    assert rows["modest"]["result"] == "poweroff" and rows["modest"]["exit_status"] == 0
    assert "hello: all tests passed" in (tmp_path / "modest.log").read_text()
    assert proc.returncode == 71
    assert "greedy" in proc.stderr and "frame pool is exhausted" in proc.stderr


def test_a_tcp_console_carries_the_guests_console_both_ways(tmp_path):
    with socket.socket() as s:                                # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = write(tmp_path, f'[[vm]]\nimage = "echo"\nconsole = "tcp:127.0.0.1:{port}"\n')
    result = {}
    runner = threading.Thread(target=lambda: result.update(
        proc=run_hvemu("host", config, timeout=60)))
    runner.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            assert time.monotonic() < deadline, "the console port never opened"
            time.sleep(0.1)
    with client:
        client.sendall(b"hello, tcp")
        seen = b""
        while b"HELLO, TCP" not in seen:
            chunk = client.recv(4096)
            assert chunk, f"the console closed: {seen!r}"
            seen += chunk
        client.sendall(b"q")
    runner.join(60)
    assert result["proc"].returncode == 0, result["proc"].stderr


# ---- isolation and fairness, through the Python API ---------------------------------

def test_a_hostile_guest_never_finds_another_vms_canary_nor_reaches_outside_its_frames(
        tmp_path):
    from hvemu.disks import DiskSpec, create_disk
    disk = tmp_path / "probe.img"
    create_disk(str(disk), MIB)
    hv = Hypervisor()
    victim_console = Console()
    victim = hv.create_vm(VMConfig(image=images("canary"), name="victim",
                                   max_instructions=400_000_000), victim_console)
    probe_console = Console()
    probe = hv.create_vm(VMConfig(image=images("probe"), name="probe", memory=128 * MIB,
                                  disks=[DiskSpec.parse(str(disk))]), probe_console)
    outcomes = hv.run()
    assert outcomes[probe].reason == "poweroff", probe_console.text
    assert outcomes[probe].exit_code == 0, probe_console.text
    assert "probe: canary found 0 times" in probe_console.text
    assert "DMA outside RAM: 0 of" in probe_console.text
    assert "stores: " in probe_console.text and " 0 succeeded" in probe_console.text
    assert "canary: ready" in victim_console.text and "CORRUPTED" not in victim_console.text
    assert outcomes[victim].reason == "max-instructions"
    assert probe.memory.touched_pages * 4096 <= 128 * MIB
    assert hv.pool.in_use == (probe.memory.touched_pages + victim.memory.touched_pages) * 4096


@pytest.mark.parametrize("shares, ratio", [(1, 1.0), (2, 0.5)])
def test_a_vm_spinning_with_interrupts_off_gets_only_its_share(shares, ratio):
    """bench (300M instructions) next to a guest that spins forever: when bench is done,
    the spinner has run as many instructions (half as many when bench has 2 shares)."""
    hv = Hypervisor()
    spinner = hv.create_vm(VMConfig(image=images("spin"), name="spin",
                                    max_instructions=10**12))
    worker = hv.create_vm(VMConfig(image=images("bench"), name="bench", shares=shares))
    seen = {}

    def watch():
        while worker.state != "shutdown":
            time.sleep(0.001)
        seen["spin"] = spinner.instructions
        spinner.shutdown()
    watcher = threading.Thread(target=watch)
    watcher.start()
    outcomes = hv.run()
    watcher.join()
    assert outcomes[worker].reason == "poweroff" and outcomes[worker].exit_code == 0
    fair = outcomes[worker].stats.instructions * ratio
    assert abs(seen["spin"] - fair) <= 0.1 * fair, (seen["spin"], fair)


# ---- bad configuration: one line naming the line and the key -------------------------

@pytest.mark.parametrize("text, line, fragment", [
    ('[[vm]]\nimage = "hello"\nmemory = \n', 3, "not valid TOML"),
    ('[[vm]]\nimage = "hello"\ncolour = "red"\n', 3, "unknown key 'colour'"),
    ('[[vm]]\nimage = "hello"\nvcpus = 0\n', 3, "vcpus"),
    ('[[vm]]\nimage = "hello"\nvcpus = 65\n', 3, "from 1 to 64"),
    ('[[vm]]\nimage = "hello"\nvcpus = "abc"\n', 3, "vcpus"),
    ('[[vm]]\nimage = "hello"\nmemory = "12Q"\n', 3, "memory"),
    ('[[vm]]\nname = "x"\nimage = "hello"\n[[vm]]\nname = "x"\nimage = "hello"\n', 5,
     "names VM #1 too"),
    ('[[vm]]\nimage = "nosuch"\n', 2, "no such file"),
    ('[[vm]]\nimage = "hello"\nconsole = "serial0"\n', 3, "console"),
    ('[[vm]]\nimage = "hello"\nconsole = "stdio"\n[[vm]]\nimage = "hello"\n'
     'console = "stdio"\n', 6, "at most one VM"),
    ('host_memory = "lots"\n[[vm]]\nimage = "hello"\n', 1, "host_memory"),
    ('speed = 3\n[[vm]]\nimage = "hello"\n', 1, "unknown setting"),
    ('host_memory = "64M"\n', None, "no [[vm]]"),
    ('[[vm]]\nimage = "hello"\nhypervisor = "bare"\n', 3, "give one of native, hosted"),
    ('hypervisor = 3\n[[vm]]\nimage = "hello"\n', 1, "hypervisor"),
    ('[[vm]]\nimage = "hello"\nhypervisor = "hosted"\nconsole = "tcp:127.0.0.1:4444"\n', 4,
     "a hosted VM's console"),
])
def test_a_malformed_config_is_one_line_naming_the_line_and_key(tmp_path, text, line, fragment):
    config = write(tmp_path, text)
    proc = run_hvemu("host", config)
    lines = stderr_lines(proc)
    assert proc.returncode == 64 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"hvemu: {config}:") and fragment in lines[0], lines[0]
    if line is not None:
        assert f"{config}:{line}:" in lines[0], lines[0]


def test_one_disk_file_writable_by_two_vms_is_refused(tmp_path):
    (tmp_path / "d.img").write_bytes(bytes(MIB))
    config = write(tmp_path, '[[vm]]\nimage = "hello"\ndisks = ["d.img"]\n'
                             '[[vm]]\nimage = "hello"\ndisks = ["d.img,readonly"]\n')
    lines = stderr_lines(proc := run_hvemu("host", config))
    assert proc.returncode == 64 and len(lines) == 1 and "one of them may write it" in lines[0]
    ok = write(tmp_path, '[[vm]]\nimage = "hello"\ndisks = ["d.img,readonly"]\n'
                         '[[vm]]\nimage = "hello"\ndisks = ["d.img,readonly"]\n', "ok.toml")
    assert run_hvemu("host", ok).returncode == 0


def test_a_console_port_already_in_use_is_refused(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        config = write(tmp_path, f'[[vm]]\nimage = "hello"\nconsole = "tcp:127.0.0.1:{port}"\n')
        proc = run_hvemu("host", config)
    lines = stderr_lines(proc)
    assert proc.returncode == 64 and len(lines) == 1 and "cannot listen there" in lines[0]


def test_a_pool_smaller_than_a_vms_boot_images_is_refused(tmp_path):
    config = write(tmp_path, 'host_memory = "64K"\n[[vm]]\nimage = "bench"\n')
    lines = stderr_lines(proc := run_hvemu("host", config))
    assert proc.returncode == 64 and len(lines) == 1 and "too small" in lines[0], proc.stderr
