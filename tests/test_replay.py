"""--record and --replay: an interactive session (the echo guest reads the console and
answers each byte) recorded with input arriving whenever the host sends it, replayed
byte-identical with the same instruction count; the host clock recorded and replayed;
and recordings that must be refused."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import EXIT_DATAERR, require_module, run_hvemu

EXIT_SOFTWARE = 70


def hvemu_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "hvemu.cli", "boot", *map(str, args)]


def env() -> dict:
    e = dict(os.environ)
    e.pop("HVEMU_DEBUG", None)
    return e


def record_session(tmp_path, name: str, typed: list[tuple[float, bytes]], *extra,
                   qmp_pause: bool = False):
    """Run the echo guest with --record, feeding `typed` [(delay, bytes)] on its stdin;
    returns (exit code, stdout bytes, figures, recording path)."""
    rec = tmp_path / f"{name}.rec"
    stats = tmp_path / f"{name}.json"
    args = ["echo", "--record", rec, "--stats-json", stats, *extra]
    sock = tmp_path / f"{name}.sock"
    if qmp_pause:
        args += ["--qmp", f"unix:{sock},server,wait=off"]
    proc = subprocess.Popen(hvemu_cmd(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())
    try:
        if qmp_pause:
            pause_over_qmp(sock)
        for delay, data in typed:
            time.sleep(delay)
            proc.stdin.write(data)
            proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    return proc.returncode, out, json.loads(stats.read_text()), rec


def pause_over_qmp(sock) -> None:
    from qemu.qmp import QMPClient

    async def pause():
        end = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < end
            await asyncio.sleep(0.05)
        client = QMPClient("test")
        await client.connect(str(sock))
        await asyncio.sleep(0.3)
        await client.execute("stop")
        await asyncio.sleep(0.3)
        await client.execute("cont")
        await client.disconnect()
    asyncio.run(pause())


def replay(rec, stats, *args) -> subprocess.CompletedProcess:
    return subprocess.run(hvemu_cmd(*args, "--replay", rec, "--stats-json", stats),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                          env=env())


@pytest.mark.parametrize("vcpus", [1, 3])
def test_an_interactive_session_replays_byte_identical(tmp_path, vcpus):
    typed = [(0.5, b"ls -l\n"), (0.7, b"echo hi\n"), (0.4, b"cat /etc/motd\n"), (0.3, b"q")]
    code, out, figures, rec = record_session(tmp_path, "a", typed, "-smp", vcpus)
    assert out.startswith(b"echo: ready\n")
    assert b"LS -L\nECHO HI\nCAT /ETC/MOTD\n" in out           # the guest answered
    again = replay(rec, tmp_path / "replay.json", "echo", "-smp", vcpus)
    assert again.returncode == code, again.stderr.decode()
    assert again.stdout == out                                  # byte-identical
    replayed = json.loads((tmp_path / "replay.json").read_text())
    assert replayed["instructions"] == figures["instructions"]
    assert replayed["exits"] == figures["exits"]
    if vcpus == 1:
        # input typed at other times makes another run: the recording is what repeats one
        _, _, later, _ = record_session(tmp_path, "b", [(2.5, b"ls -l\n"), (0.1, b"q")])
        assert later["instructions"] != figures["instructions"]


def test_a_session_paused_over_qmp_replays_identically(tmp_path):
    require_module("qemu.qmp", "qemu.qmp")
    code, out, figures, rec = record_session(tmp_path, "p", [(0.5, b"abc"), (0.5, b"q")],
                                             qmp_pause=True)
    lines = [json.loads(line) for line in rec.read_text().splitlines()[1:-1]]
    quanta = [e for e in lines if e[0] == "q"]
    assert any(e[2] % (1 << 22) for e in quanta[:-1])          # the pause cut a quantum short
    again = replay(rec, tmp_path / "r.json", "echo")
    assert again.returncode == code and again.stdout == out, again.stderr.decode()
    assert json.loads((tmp_path / "r.json").read_text())["instructions"] == \
        figures["instructions"]


def test_the_host_clock_is_recorded_and_replayed(tmp_path):
    """The teaching kernel, preempted by timer interrupts that follow the host's clock:
    two recordings differ, each replays exactly."""
    runs = []
    for name in ("h1", "h2"):
        rec, stats = tmp_path / f"{name}.rec", tmp_path / f"{name}.json"
        proc = subprocess.run(hvemu_cmd("--kernel", "kernel", "--clock", "host", "--record",
                                        rec, "--stats-json", stats),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                              env=env())
        assert proc.returncode == 0, proc.stderr.decode()
        runs.append((proc.stdout, json.loads(stats.read_text())["instructions"], rec))
    for out, instructions, rec in runs:
        assert any(line.startswith('["c",') for line in rec.read_text().splitlines())
        again = replay(rec, tmp_path / "again.json", "--kernel", "kernel", "--clock", "host")
        assert again.returncode == 0, again.stderr.decode()
        assert again.stdout == out
        assert json.loads((tmp_path / "again.json").read_text())["instructions"] == instructions


def one_line(proc, code: int, *words: str) -> None:
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == code, err
    assert len(lines) == 1 and lines[0].startswith("hvemu: --replay"), err
    for w in words:
        assert w in lines[0], err


def test_refused_recordings_are_one_line(tmp_path):
    _, _, _, rec = record_session(tmp_path, "a", [(0.2, b"x"), (0.1, b"q")])
    text = rec.read_text()
    truncated = tmp_path / "truncated.rec"
    truncated.write_text(text.rsplit("\n", 2)[0] + "\n")       # the trailer is gone
    one_line(run_hvemu("boot", "echo", "--replay", truncated), EXIT_DATAERR, "truncated")
    cut = tmp_path / "cut.rec"
    cut.write_text(text[:len(text) // 2])                      # cut in a line
    one_line(run_hvemu("boot", "echo", "--replay", cut), EXIT_DATAERR)
    one_line(run_hvemu("boot", "hello", "--replay", rec), EXIT_DATAERR, "another image")
    one_line(run_hvemu("boot", "echo", "-m", "64M", "--replay", rec), EXIT_DATAERR, "memory")
    junk = tmp_path / "junk.rec"
    junk.write_text("not a recording\n")
    one_line(run_hvemu("boot", "echo", "--replay", junk), EXIT_DATAERR, "not an hvemu")
    one_line(run_hvemu("boot", "echo", "--replay", tmp_path / "missing.rec"), 66)
    # a recording that was edited so that the guest would see other input: caught
    edited = tmp_path / "edited.rec"
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith('["i",'))
    event = json.loads(lines[at])
    assert event[2].startswith("78")                           # the 'x' typed
    event[2] = "79" + event[2][2:]                             # becomes 'y'
    lines[at] = json.dumps(event)
    edited.write_text("\n".join(lines) + "\n")
    proc = run_hvemu("boot", "echo", "--replay", edited)
    assert proc.returncode == EXIT_SOFTWARE and "diverged" in proc.stderr, proc.stderr
    # the trailer's digest of the final registers, CSRs and RAM is checked too
    trailer = json.loads(lines[-1])
    trailer["state"] = "0" * 64
    lines = text.splitlines()
    lines[-1] = json.dumps(trailer)
    edited.write_text("\n".join(lines) + "\n")
    proc = run_hvemu("boot", "echo", "--replay", edited)
    assert proc.returncode == EXIT_SOFTWARE and "final registers" in proc.stderr, proc.stderr


def test_disks_must_be_as_they_were_when_recording_began(tmp_path):
    disk = tmp_path / "disk.img"
    assert run_hvemu("disk", "create", disk, "1M").returncode == 0
    saved = tmp_path / "disk.saved"
    shutil.copy(disk, saved)
    rec = tmp_path / "disk.rec"
    first = run_hvemu("boot", "disk-reboot", "--disk", disk, "--record", rec, timeout=120)
    assert first.returncode == 0, first.stderr
    # the run wrote to the disk: replaying on it now is refused
    one_line(run_hvemu("boot", "disk-reboot", "--disk", disk, "--replay", rec), EXIT_DATAERR,
             "disk 0", "differs")
    shutil.copy(saved, disk)                                   # as it was
    again = run_hvemu("boot", "disk-reboot", "--disk", disk, "--replay", rec, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_an_interactive_linux_shell_session_replays_byte_identical(tmp_path):
    """Debian's kernel and a busybox shell (tests/linuxkit.py), commands typed at the
    prompt over a pipe whenever it appears, recorded and replayed."""
    import select

    from linuxkit import SHELL_INIT, debian_kernel, initramfs
    args = ["--kernel", debian_kernel(), "--initrd", initramfs(SHELL_INIT),
            "--append", "console=ttyS0 quiet", "-m", "256M"]
    rec, stats = tmp_path / "linux.rec", tmp_path / "linux.json"
    proc = subprocess.Popen(hvemu_cmd(*args, "--record", rec, "--stats-json", stats),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())
    seen = bytearray()

    def prompt(start: int) -> int:
        end = time.monotonic() + 300
        while b"~ # " not in seen[start:]:
            assert time.monotonic() < end, bytes(seen[-500:])
            ready, _, _ = select.select([proc.stdout], [], [], 5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, bytes(seen[-500:])
                seen.extend(chunk)
        return seen.index(b"~ # ", start) + 4

    try:
        at = prompt(0)
        for line in (b"echo $((6*7)); uname -m\n", b"ls /proc | wc -l; date +%Y\n"):
            proc.stdin.write(line)
            proc.stdin.flush()
            at = prompt(at)
            time.sleep(0.3)
        proc.stdin.write(b"poweroff -f\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    seen.extend(out)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"\r\n42\r\nriscv64\r\n" in seen
    again = replay(rec, tmp_path / "again.json", *args)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert again.stdout == bytes(seen)
    assert json.loads((tmp_path / "again.json").read_text())["instructions"] == \
        json.loads(stats.read_text())["instructions"]


def test_a_replay_can_be_debugged_with_gdb(tmp_path):
    """Breakpoints, a step and a watchpoint stop the replay where gdb wants; its quanta go
    on afterwards and it still replays exactly."""
    from test_gdb import KERNEL_ELF, finish, free_port, gdb, wait_port
    rec = tmp_path / "kernel.rec"
    first = subprocess.run(hvemu_cmd("--kernel", "kernel", "--record", rec),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120, env=env())
    assert first.returncode == 0
    port = free_port()
    proc = subprocess.Popen(hvemu_cmd("--kernel", "kernel", "-S", "--gdb", f"tcp::{port}",
                                      "--replay", rec),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())
    try:
        wait_port(port, proc)
        out = gdb(port, KERNEL_ELF, "break kprintf", "continue", "continue", "stepi", "delete",
                  "watch *(long *)&context_switches", "continue", "delete", "detach")
        code, console, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.count("Breakpoint 1, ") == 2, out
    assert "Old value = 0" in out and "New value = 1" in out, out
    assert code == 0, err
    assert console.encode() == first.stdout


def test_a_recording_that_cannot_be_written_is_one_line(tmp_path):
    proc = run_hvemu("boot", "hello", "--record", "/dev/full")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 73, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("hvemu: --record /dev/full: cannot write"), \
        proc.stderr
    proc = run_hvemu("boot", "hello", "--record", tmp_path / "no" / "such" / "dir.rec")
    assert proc.returncode == 73 and proc.stderr.startswith("hvemu: --record"), proc.stderr
    proc = run_hvemu("boot", "hello", "--record", tmp_path / "a", "--replay", tmp_path / "b")
    assert proc.returncode == 64 and "not both" in proc.stderr, proc.stderr
