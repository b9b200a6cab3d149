"""The VM lifecycle (start, pause, resume, reset, shutdown, wait), console scripting
(Console.expect/send), the terminal console's Ctrl-A keys, and the CLI restoring
the terminal.

Guests are tiny raw images (tests/vmkit.Guest) that spin forever, print a byte,
reboot through the test finisher, or echo a UART byte, in a 4 MiB VM.
"""
from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time

import pytest
from conftest import HELLO_ELF
from vmkit import Guest, wait_for

from hvemu.console import Console, TerminalConsole
from hvemu.disks import DiskSpec
from hvemu.errors import HvemuError
from hvemu.vm import VM, VMConfig

MEMORY = 4 << 20
HELLO_BANNER = "hvemu hello: RV64 guest kernel, hart 0"


@pytest.fixture
def make_vm(tmp_path):
    """make_vm(image_bytes or path, console=None, disks=()) -> a VM; stopped at teardown."""
    vms = []

    def make(image, console=None, disks=(), **config):
        if isinstance(image, bytes):
            path = tmp_path / f"guest{len(vms)}.bin"
            path.write_bytes(image)
            image = path
        config.setdefault("memory", MEMORY)
        vm = VM(VMConfig(image=str(image), disks=[DiskSpec.parse(str(d)) for d in disks],
                         **config), console)
        vms.append(vm)
        return vm
    yield make
    for vm in vms:
        _stop(vm)


def _stop(vm) -> None:
    """Make sure no vCPU thread of vm is left running (even after a failed test)."""
    threads = [t for t in getattr(vm, "_threads_started", []) if t.is_alive()]
    thread = getattr(vm, "_thread", None)
    if thread is not None and thread.is_alive() and thread not in threads:
        threads.append(thread)
    for _ in range(50):
        threads = [t for t in threads if t.is_alive()]
        if not threads:
            return
        vm.max_instructions = 0             # forces a budget exit on every core entry
        vm.request("shutdown")
        vm.resume()
        for t in threads:
            t.join(0.1)
    raise AssertionError("a vCPU thread would not stop")


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(64 * 1024))
    return path


@pytest.fixture
def fsyncs(monkeypatch):
    """The file descriptors os.fsync was called on."""
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


# ---------------------------------------------------------------------------
# start / pause / resume / shutdown / wait
# ---------------------------------------------------------------------------

def test_start_pause_resume_shutdown(make_vm, disk, fsyncs):
    vm = make_vm(Guest.spin(), disks=[disk])
    assert vm.state == "created"
    fd = vm.disks[0].fd
    assert fd >= 0
    vm.start()
    assert vm.state == "running"
    assert wait_for(lambda: vm.vcpu.instret > 1_000_000, 5)

    vm.pause()
    assert wait_for(lambda: vm.state == "paused", 1.0), vm.state
    frozen = vm.vcpu.instret
    time.sleep(0.15)
    assert vm.vcpu.instret == frozen
    assert vm.state == "paused"
    assert vm.wait(0.05) is None                    # still alive, only paused

    vm.resume()
    assert wait_for(lambda: vm.vcpu.instret > frozen, 1.0)
    assert vm.state == "running"

    vm.shutdown()
    outcome = vm.wait(5)
    assert outcome is not None, "wait() timed out after shutdown()"
    assert outcome.reason == "shutdown"
    assert outcome.stats.instructions > frozen
    assert vm.state == "shutdown"
    assert vm.disks[0].fd == -1                     # closed
    assert fd in fsyncs                             # and flushed before closing


def test_shutdown_while_paused(make_vm, disk):
    vm = make_vm(Guest.spin(), disks=[f"{disk},readonly"])
    vm.start()
    vm.pause()
    assert wait_for(lambda: vm.state == "paused", 1.0)
    t = time.monotonic()
    vm.shutdown()
    outcome = vm.wait(2)
    assert outcome is not None and outcome.reason == "shutdown"
    assert time.monotonic() - t < 1.0
    assert vm.disks[0].fd == -1


def test_pause_and_resume_several_times(make_vm):
    vm = make_vm(Guest.spin())
    vm.start()
    for _ in range(3):
        vm.pause()
        assert wait_for(lambda: vm.state == "paused", 1.0)
        frozen = vm.vcpu.instret
        vm.resume()
        assert wait_for(lambda frozen=frozen: vm.vcpu.instret > frozen, 1.0)
        assert vm.state == "running"
    vm.shutdown()
    assert vm.wait(2).reason == "shutdown"


def test_resume_before_the_pause_is_served_does_not_hang(make_vm):
    vm = make_vm(Guest.spin())
    vm.start()
    vm.pause()
    vm.resume()
    start = vm.vcpu.instret
    assert wait_for(lambda: vm.vcpu.instret > start and vm.state == "running", 1.0)
    vm.shutdown()
    assert vm.wait(2).reason == "shutdown"


def test_wait_returns_the_guests_own_outcome(make_vm):
    vm = make_vm(HELLO_ELF, Console(), memory=16 << 20)
    vm.start()
    outcome = vm.wait(10)
    assert outcome is not None
    assert outcome.reason == "poweroff" and outcome.exit_code == 0
    assert vm.state == "shutdown"
    assert HELLO_BANNER in vm.console.text


def test_shutdown_before_start(make_vm):
    vm = make_vm(Guest.spin())
    vm.shutdown()
    vm.start()
    outcome = vm.wait(2)
    assert outcome is not None and outcome.reason == "shutdown"


def test_shutdown_is_not_cancelled_by_a_later_pause(make_vm):
    vm = make_vm(Guest.spin())
    vm.shutdown()                                   # all three before the vCPU thread
    vm.pause()                                      # runs: deterministic
    vm.resume()
    vm.start()
    outcome = vm.wait(0.5)
    assert outcome is not None and outcome.reason == "shutdown"


def test_run_after_shutdown_is_refused(make_vm):
    vm = make_vm(Guest.spin())
    vm.start()
    vm.shutdown()
    assert vm.wait(2).reason == "shutdown"
    with pytest.raises(HvemuError):
        vm.run()


def test_start_after_shutdown_is_refused(make_vm):
    vm = make_vm(Guest.spin())
    vm.start()
    vm.shutdown()
    assert vm.wait(2).reason == "shutdown"
    try:
        with pytest.raises(HvemuError):
            vm.start()
    finally:
        time.sleep(0.05)
        assert vm.state == "shutdown"


def test_second_start_is_refused(make_vm):
    vm = make_vm(Guest.spin())
    vm._threads_started = [vm.start()]
    try:
        with pytest.raises((HvemuError, RuntimeError)):
            vm._threads_started.append(vm.start())
    finally:
        vm.shutdown()
        vm.wait(1)
        time.sleep(0.1)
        assert not any(t.is_alive() for t in vm._threads_started)


# ---------------------------------------------------------------------------
# reset: from another thread, and by the guest
# ---------------------------------------------------------------------------

def test_reset_from_another_thread_reboots(make_vm, disk):
    console = Console()
    vm = make_vm(Guest.print_then_spin("A"), console, disks=[disk])
    image_disk = vm.disks[0]
    vm.start()
    console.expect("A", timeout=5)
    assert wait_for(lambda: vm.vcpu.instret > 100_000, 5)
    vm.reset()
    console.expect("AA", timeout=5)
    assert vm.state == "running"
    assert vm.disks == [image_disk] and image_disk.fd >= 0
    vm.reset()
    console.expect("AAA", timeout=5)
    vm.shutdown()
    assert vm.wait(5).reason == "shutdown"
    assert console.output_bytes == b"AAA"


def test_reset_while_paused_reboots_on_resume(make_vm):
    console = Console()
    vm = make_vm(Guest.print_then_spin("P"), console)
    vm.start()
    console.expect("P", timeout=5)
    vm.pause()
    assert wait_for(lambda: vm.state == "paused", 1.0)
    vm.reset()
    time.sleep(0.1)
    assert console.output_bytes == b"P"             # nothing runs while paused
    vm.resume()
    console.expect("PP", timeout=5)
    vm.shutdown()
    assert vm.wait(5).reason == "shutdown"


def test_reset_before_start(make_vm):
    console = Console()
    vm = make_vm(Guest.print_then_spin("C"), console)
    vm.reset()
    vm.start()
    console.expect("C", timeout=5)
    vm.shutdown()
    assert vm.wait(5).reason == "shutdown"
    assert console.output_bytes == b"C"


def test_guest_reboot_keeps_disks_attached(make_vm, disk):
    console = Console()
    vm = make_vm(Guest.print_then_reset("R", delay=1 << 22), console, disks=[disk])
    disk_image, device = vm.disks[0], vm.virtio[0]
    fd = disk_image.fd
    vm.start()
    console.expect("RR", timeout=5)                 # booted at least twice
    assert vm.disks == [disk_image] and vm.virtio == [device]
    assert disk_image.fd == fd
    assert os.fstat(fd)                             # still an open file
    assert vm.bus.find(0x10001000)[0] is device
    assert vm.board.virtio_slots_used == [0x10001000]
    vm.shutdown()
    outcome = vm.wait(5)
    assert outcome is not None and outcome.reason == "shutdown"
    assert disk_image.fd == -1


def test_guest_reboot_device_tree_still_has_the_disk(make_vm, disk):
    import struct

    import fdt
    console = Console()
    vm = make_vm(Guest.print_then_reset("T", delay=1 << 22), console, disks=[disk])
    vm.start()
    console.expect("TT", timeout=5)
    vm.pause()
    assert wait_for(lambda: vm.state == "paused", 1.0)
    total = struct.unpack(">I", vm.memory.read(vm.fdt_addr + 4, 4))[0]
    tree = fdt.parse_dtb(vm.memory.read(vm.fdt_addr, total))
    assert tree.exist_node("/soc/virtio_mmio@10001000")
    vm.shutdown()
    assert vm.wait(5).reason == "shutdown"


def test_shutdown_during_a_guest_reboot_is_not_lost(make_vm):
    console = Console()
    vm = make_vm(Guest.print_then_reset("L"), console)
    real_boot = vm.boot
    asked = []

    def boot():
        real_boot()
        if vm.state == "running" and not asked:    # a reboot, not the first boot
            asked.append(True)
            vm.shutdown()                           # as if from another thread, now
    vm.boot = boot
    vm.start()
    outcome = vm.wait(0.5)
    assert outcome is not None and outcome.reason == "shutdown"


# ---------------------------------------------------------------------------
# Console scripting
# ---------------------------------------------------------------------------

def test_expect_times_out_naming_the_pattern(make_vm):
    console = Console()
    vm = make_vm(Guest.print_then_spin("Q"), console)
    vm.start()
    console.expect("Q", timeout=5)
    t = time.monotonic()
    with pytest.raises(TimeoutError) as exc:
        console.expect("never-printed-[0-9]+", timeout=0.2)
    assert 0.15 < time.monotonic() - t < 2
    assert "never-printed-[0-9]+" in str(exc.value)
    assert "Q" in str(exc.value)                    # the last output, for debugging
    vm.shutdown()
    assert vm.wait(5).reason == "shutdown"


def test_expect_without_a_guest():
    with pytest.raises(TimeoutError, match="nothing-here"):
        Console().expect("nothing-here", timeout=0.05)


def test_expect_returns_the_match_and_honours_start():
    console = Console()
    console.output(b"abc abc")
    m = console.expect("abc", timeout=0.1)
    assert m.start() == 0
    assert console.expect("abc", timeout=0.1, start=1).start() == 4
    with pytest.raises(TimeoutError):
        console.expect("abc", timeout=0.05, start=5)


def test_send_reaches_the_uart(make_vm):
    console = Console(input_expected=True)
    vm = make_vm(Guest.echo_one(), console)
    vm.start()
    time.sleep(0.1)                                 # the guest waits (WFI) for input
    assert vm.wait(0.01) is None
    console.send("Z")
    outcome = vm.wait(5)
    assert outcome is not None and outcome.reason == "poweroff", outcome
    assert console.output_bytes == b"Z"


def test_input_sent_before_the_run(make_vm):
    console = Console()
    console.send(b"\x7f")
    vm = make_vm(Guest.echo_one(), console)
    outcome = vm.run()
    assert outcome.reason == "poweroff"
    assert console.output_bytes == b"\x7f"


def test_guest_waiting_for_input_that_cannot_come_stops_as_idle(make_vm):
    vm = make_vm(Guest.echo_one(), Console())
    outcome = vm.run()
    assert outcome.reason == "idle"


# ---------------------------------------------------------------------------
# TerminalConsole: Ctrl-A keys (on a pipe: enter()/restore() are never called)
# ---------------------------------------------------------------------------

@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_terminal_console_filters_ctrl_a(pipe):
    console = TerminalConsole(pipe[0])
    got = bytearray()
    console.receive = got.extend
    console.send(b"ab\x01\x01c")
    console.poll()
    assert bytes(got) == b"ab\x01c"
    console.send(b"d\x01")                          # an escape split across two sends
    console.poll()
    assert bytes(got) == b"ab\x01cd"
    console.send(b"\x01e")
    console.poll()
    assert bytes(got) == b"ab\x01cd\x01e"


def test_terminal_console_unknown_hotkey_prints_help(pipe, capsys):
    console = TerminalConsole(pipe[0])
    got = bytearray()
    console.receive = got.extend
    console.send(b"\x01hz\x01zq")
    console.poll()
    assert bytes(got) == b"zq"
    assert "Ctrl-A x" in capsys.readouterr().err


def test_ctrl_a_x_shuts_down(make_vm, pipe, disk):
    console = TerminalConsole(pipe[0])
    vm = make_vm(Guest.spin(), console, disks=[disk])
    console.vm = vm
    vm.start()
    assert wait_for(lambda: vm.vcpu.instret > 0, 5)
    console.send(b"\x01x")
    outcome = vm.wait(2)
    assert outcome is not None and outcome.reason == "shutdown"
    assert vm.disks[0].fd == -1


def test_ctrl_a_x_typed_on_the_terminal(make_vm, pipe):
    """Through the input fd, as the CLI reads it (Console.poll every slice)."""
    console = TerminalConsole(pipe[0])
    vm = make_vm(Guest.spin(), console)
    console.vm = vm
    vm.start()
    os.write(pipe[1], b"\x01X")                     # upper case works too
    outcome = vm.wait(2)
    assert outcome is not None and outcome.reason == "shutdown"


def test_ctrl_a_p_pauses_then_resumes(make_vm, pipe, capsys):
    console = TerminalConsole(pipe[0])
    vm = make_vm(Guest.spin(), console)
    console.vm = vm
    vm.start()
    assert wait_for(lambda: vm.vcpu.instret > 0, 5)
    console.send(b"\x01p")
    assert wait_for(lambda: vm.state == "paused", 1.0)
    frozen = vm.vcpu.instret
    time.sleep(0.1)
    assert vm.vcpu.instret == frozen
    os.write(pipe[1], b"\x01p")                     # typed while paused: read by the pause loop
    assert wait_for(lambda: vm.state == "running" and vm.vcpu.instret > frozen, 2.0)
    err = capsys.readouterr().err
    assert "paused" in err and "resumed" in err
    console.send(b"\x01x")
    assert vm.wait(2).reason == "shutdown"


def test_ctrl_a_x_while_paused(make_vm, pipe):
    console = TerminalConsole(pipe[0])
    vm = make_vm(Guest.spin(), console)
    console.vm = vm
    vm.start()
    os.write(pipe[1], b"\x01p")
    assert wait_for(lambda: vm.state == "paused", 1.0)
    os.write(pipe[1], b"\x01x")
    outcome = vm.wait(2)
    assert outcome is not None and outcome.reason == "shutdown"


def test_ctrl_a_s_shows_live_statistics(make_vm, pipe):
    console = TerminalConsole(pipe[0])
    vm = make_vm(Guest.spin(), console)
    console.vm = vm
    snapshots = []
    console.on_stats = lambda: snapshots.append(vm.live_stats().to_dict())  # as the CLI does
    vm.start()
    assert wait_for(lambda: vm.vcpu.instret > 20_000_000, 5)
    console.send(b"\x01s")
    assert len(snapshots) == 1
    figures = snapshots[0]
    assert figures["exits"]["budget"] > 0           # exits, instructions and time are live
    assert figures["instructions"] > 20_000_000
    assert figures["seconds"] > 0


@pytest.mark.parametrize("typed,echoed", [(b"\x01\x01", b"\x01"), (b"k", b"k"),
                                          (b"\x01s\x01h\x1b", b"\x1b")])
def test_keys_reach_the_guest(make_vm, pipe, typed, echoed):
    console = TerminalConsole(pipe[0])
    vm = make_vm(Guest.echo_one(), console)
    console.vm = vm
    vm.start()
    os.write(pipe[1], typed)
    outcome = vm.wait(5)
    assert outcome is not None and outcome.reason == "poweroff"
    assert console.output_bytes == echoed


# ---------------------------------------------------------------------------
# The CLI on a terminal: raw mode while running, restored however it ends
# ---------------------------------------------------------------------------

def _lflags(fd) -> tuple[bool, bool]:
    lflag = termios.tcgetattr(fd)[3]
    return bool(lflag & termios.ICANON), bool(lflag & termios.ECHO)


class PtyHvemu:
    """`hvemu ARGS` with stdin and stdout on a pseudo-terminal, stderr on a pipe."""

    def __init__(self, *args):
        self.master, self.slave = pty.openpty()
        env = dict(os.environ)
        env.pop("HVEMU_DEBUG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "hvemu.cli", *map(str, args)],
                                     stdin=self.slave, stdout=self.slave,
                                     stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.output = bytearray()

    def drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def wait_raw(self, timeout: float = 15) -> bool:
        def raw():
            self.drain()
            return _lflags(self.slave) == (False, False)
        return wait_for(raw, timeout, 0.01)

    def finish(self, timeout: float = 10) -> tuple[int, str]:
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self.drain()
            time.sleep(0.01)
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(5)
        err = self.proc.stderr.read().decode(errors="replace")
        self.drain()
        return code, err

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stderr.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty_hvemu():
    runs = []

    def start(*args):
        runs.append(PtyHvemu(*args))
        return runs[-1]
    yield start
    for r in runs:
        r.close()


@pytest.fixture
def spin_image(tmp_path):
    path = tmp_path / "spin.bin"
    path.write_bytes(Guest.spin())
    return path


def test_cli_restores_the_terminal_on_sigterm(pty_hvemu, spin_image):
    run = pty_hvemu("boot", spin_image, "-m", "4M")
    assert _lflags(run.slave) == (True, True)
    assert run.wait_raw(), "hvemu never put the terminal in raw mode"
    time.sleep(0.1)
    assert run.proc.poll() is None
    run.proc.send_signal(signal.SIGTERM)
    code, err = run.finish()
    assert _lflags(run.slave) == (True, True), "terminal left in raw mode"
    assert "Traceback" not in err
    assert code != 0 and code != -signal.SIGTERM, (code, err)   # exited by itself
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hvemu: "), err


def test_cli_ctrl_a_x_on_the_terminal(pty_hvemu, spin_image):
    run = pty_hvemu("boot", spin_image, "-m", "4M")
    assert run.wait_raw()
    os.write(run.master, b"\x01x")
    code, err = run.finish()
    assert code == 0, err
    assert "shut down" in err
    assert "Traceback" not in err
    assert _lflags(run.slave) == (True, True)


def test_cli_restores_the_terminal_when_the_guest_powers_off(pty_hvemu):
    run = pty_hvemu("boot", "hello")
    code, err = run.finish()
    assert code == 0, err
    assert b"hello: all tests passed" in bytes(run.output)
    assert _lflags(run.slave) == (True, True)
