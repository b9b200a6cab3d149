"""hvemu fleet migrate: a VM in a Ray actor moves, live, to an actor on another node.

The cluster is real Ray with two nodes (two raylets on this machine, as
ray.cluster_utils.Cluster starts them; each node is its own set of Ray processes with
its own node id and CPU).  Each moved guest is checked against the same guest run
unmoved in this process: the same console output, instructions and exit status.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import pytest
from conftest import EXIT_NOINPUT, EXIT_TIMEOUT, EXIT_USAGE, run_hvemu, stderr_lines
from test_fleet import require_ray

from hvemu import images
from hvemu.disks import DiskSpec
from hvemu.vm import VM, VMConfig


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of one CPU each; this process is a driver connected to them."""
    require_ray()
    from ray.cluster_utils import Cluster

    from hvemu.fleet import Fleet
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        f = Fleet(address=c.address)
        try:
            yield c, f
        finally:
            f.close()
    finally:
        c.shutdown()


def unmoved(name: str, **kw) -> tuple[bytes, int, int]:
    """Console output, instructions and exit code of the guest run here, unmoved."""
    from hvemu.cli import exit_code_of
    vm = VM(VMConfig(image=images.bundled_path(name), **kw))
    out = vm.run()
    return vm.console.output_bytes, out.stats.instructions, exit_code_of(out)


def mover(f, name: str, vcpus: int = 1, timeout: float = 60, disks=()):
    import io

    from hvemu import fleet, fleetmigrate
    guest = fleet.Guest(name, image=images.bundled_path(name), disks=list(disks))
    m = fleetmigrate.Mover(f, fleetmigrate.payload_of(guest, vcpus, 128 << 20, timeout),
                           out=io.BytesIO())
    return m


def test_a_guest_moves_to_the_other_node_and_back_and_prints_what_it_prints_unmoved(
        cluster, tmp_path):
    c, _f = cluster
    console, instructions, _ = unmoved("memwrite")
    out = tmp_path / "moves.json"
    proc = run_hvemu("fleet", "migrate", "memwrite", "--address", c.address, "--hops", "2",
                     "--after", "0.6", "--json", out, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == console.decode()
    r = json.loads(out.read_text())
    hops = r["hops"]
    assert [h["status"] for h in hops] == ["completed", "completed"], hops
    first, second = hops
    assert first["from"]["node"] != first["to"]["node"]            # to the other node ...
    assert second["from"]["node"] == first["to"]["node"]
    assert second["to"]["node"] == first["from"]["node"]           # ... and back
    assert len({first["from"]["pid"], first["to"]["pid"], second["to"]["pid"]}) == 3
    assert 0 < first["instructions"] < second["instructions"] < instructions
    assert r["instructions"] == instructions and r["result"] == "poweroff"
    for h in hops:
        assert h["downtime_ms"] > 0 and h["bytes"] > 96 << 20 and h["rounds"] >= 1
    lines = [ln for ln in stderr_lines(proc) if ln.startswith("hvemu: move ")]
    assert len(lines) == 2 and "downtime" in lines[0], proc.stderr


def test_an_smp_guest_moves_with_all_its_harts(cluster):
    _c, f = cluster
    console, instructions, code = unmoved("smp-bench", vcpus=2)
    m = mover(f, "smp-bench", vcpus=2)
    r = m.run(after=0.15, hops=1, params={})
    assert r["moved"] == 1, r
    assert m.out.getvalue() == console
    assert (r["instructions"], r["exit_code"]) == (instructions, code)


def test_a_writable_disk_moves_with_the_vm(cluster, tmp_path):
    """disk-flush writes 64 KiB, flushes and spins: it is moved while it spins, and the
    disk the target's VM leaves (on its own copy) is the one the guest wrote."""
    _c, f = cluster
    ref = tmp_path / "ref.img"
    ref.write_bytes(bytes(1 << 20))
    vm = VM(VMConfig(image=images.bundled_path("disk-flush"), disks=[DiskSpec(str(ref))],
                     max_instructions=20_000_000))
    vm.run()
    written = hashlib.sha256(ref.read_bytes()).hexdigest()
    assert written != hashlib.sha256(bytes(1 << 20)).hexdigest()
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    m = mover(f, "disk-flush", timeout=2.5, disks=[DiskSpec(str(disk))])
    r = m.run(after=0.5, hops=1, params={})
    assert r["moved"] == 1 and r["result"] == "timeout", r
    assert r["exit_code"] == EXIT_TIMEOUT
    assert r["disks"] == [written]
    assert b"flush: done" in m.out.getvalue()
    assert disk.read_bytes() == bytes(1 << 20)                # the user's file: untouched


def test_a_target_that_refuses_the_stream_leaves_the_guest_running_on_its_source(cluster):
    _c, f = cluster
    console, instructions, _ = unmoved("memwrite")
    m = mover(f, "memwrite")
    m.target_payload = {**m.payload, "memory": 256 << 20}     # another machine
    r = m.run(after=0.3, hops=2, params={})
    assert [h["status"] for h in r["hops"]] == ["failed"], r["hops"]
    assert "memory" in r["hops"][0]["error"]
    assert m.out.getvalue() == console and r["instructions"] == instructions
    assert r["result"] == "poweroff" and r["exit_code"] == 75      # EX_TEMPFAIL


def test_a_worker_killed_under_its_guest_is_reported_lost(cluster):
    _c, f = cluster
    m = mover(f, "spin", timeout=60)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(m.run(after=60, hops=1, params={})))
    t.start()
    deadline = time.monotonic() + 60
    while m.place is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)                       # booted and spinning
    assert t.is_alive() and m.place is not None
    os.kill(m.place["pid"], signal.SIGKILL)
    t.join(60)
    assert result["result"] == "lost" and result["exit_code"] == 70, result


@pytest.mark.parametrize("args, code, words", [
    ([], EXIT_USAGE, "give an IMAGE"),
    (["no-such-image"], EXIT_NOINPUT, "no-such-image: no such file"),
    (["bench", "--hops", "0"], EXIT_USAGE, "bad number of moves"),
    (["bench", "--after", "-1"], EXIT_USAGE, "bad number of seconds"),
    (["bench", "--workers", "2", "--address", "127.0.0.1:1"], EXIT_USAGE, "--workers"),
    (["bench", "--address", "127.0.0.1:1"], 69, "no Ray cluster answers there"),
    (["--append", "x", "bench"], EXIT_USAGE, "--append needs a --kernel"),
])
def test_bad_command_line_is_one_line(args, code, words):
    proc = run_hvemu("fleet", "migrate", *args)
    lines = stderr_lines(proc)
    assert proc.returncode == code and len(lines) == 1, proc.stderr
    assert lines[0].startswith("hvemu: ") and words in lines[0], lines
