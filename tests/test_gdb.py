"""The gdb stub, driven by Debian's gdb-multiarch in batch mode against the bundled
teaching kernel (it has symbols), and at the packet level for what gdb never sends."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import FIRMWARE, require_tool

KERNEL_ELF = FIRMWARE / "kernel" / "kernel.elf"
SPIN_ELF = FIRMWARE / "spin.elf"
EX_UNAVAILABLE = 69


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_hvemu(*args) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("HVEMU_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"hvemu ended early: {proc.stderr.read().decode()}") \
                    from None
            if time.monotonic() > end:
                raise AssertionError("the gdb port never opened") from None
            time.sleep(0.05)


def gdb(port: int, elf, *commands: str, timeout: float = 120) -> str:
    """gdb-multiarch -batch, one -ex per command (an error does not end the script)."""
    exe = require_tool("gdb-multiarch", "gdb-multiarch")
    args = [exe, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"target remote 127.0.0.1:{port}"]
    for c in commands:
        args += ["-ex", c]
    proc = subprocess.run([*args, str(elf)], capture_output=True, text=True, timeout=timeout)
    return proc.stdout + proc.stderr


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"hvemu did not end: {err.decode()}") from None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def symbol(name: str, elf=KERNEL_ELF) -> int:
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
            if sym.name == name:
                return sym["st_value"]
    raise KeyError(name)


def elf_bytes(addr: int, n: int, elf=KERNEL_ELF) -> bytes:
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] == "PT_LOAD" and seg["p_vaddr"] <= addr < seg["p_vaddr"] + \
                    seg["p_filesz"]:
                off = addr - seg["p_vaddr"]
                return seg.data()[off:off + n]
    raise KeyError(hex(addr))


def test_gdb_debugs_the_teaching_kernel_and_the_run_stays_the_same():
    plain = subprocess.run([sys.executable, "-m", "hvemu.cli", "boot", "--kernel", "kernel"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert plain.returncode == 0
    port = free_port()
    proc = start_hvemu("--kernel", "kernel", "-S", "--gdb", f"tcp::{port}")
    try:
        wait_port(port, proc)
        start = symbol("_start")
        out = gdb(port, KERNEL_ELF,
                  "info threads",
                  f"x/4xw {start}",
                  "break kprintf",
                  "continue",
                  "bt",
                  "info registers",
                  "p/x $mstatus",
                  "monitor info registers",
                  "p $priv",
                  "x/8xg $sp",
                  "p/x $pc",
                  "stepi",
                  "p/x $pc",
                  "delete",
                  "watch *(long *)&context_switches",
                  "continue",
                  "delete",
                  "rwatch *(long *)&have_time_ext",
                  "continue",
                  "delete",
                  "awatch *(long *)&next_free",
                  "continue",
                  "delete",
                  "detach")
        code, console, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err + out
    # gdb reads the guest's memory: the kernel's first instructions, as in the ELF file
    words = re.search(r"<_start>:\s+((?:0x[0-9a-f]{8}\s+){4})", out)
    assert words, out
    image = elf_bytes(start, 16)
    assert [int(w, 16) for w in words.group(1).split()] == [
        int.from_bytes(image[i:i + 4], "little") for i in range(0, 16, 4)]
    # the breakpoint at a function, and a backtrace through the kernel's frames
    kprintf = symbol("kprintf")
    hit = re.search(r"Breakpoint 1, (0x[0-9a-f]+) in kprintf \(\)", out)
    assert hit, out
    bp = int(hit.group(1), 16)
    assert kprintf <= bp < kprintf + 64
    assert re.search(r"#0\s+0x[0-9a-f]+ in kprintf \(\)", out), out
    assert re.search(r"#1\s+0x[0-9a-f]+ in kmain \(\)", out), out
    # registers: gdb's view and the human monitor's agree
    assert re.search(r"^ra\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <kmain\+\d+>", out, re.M), out
    mstatus = int(re.search(r"^\$1 = (0x[0-9a-f]+)", out, re.M).group(1), 16)
    monitor = int(re.search(r"^ mstatus  ([0-9a-f]{16})", out, re.M).group(1), 16)
    assert mstatus == monitor and mstatus & (0xF << 32) == 0xA << 32     # UXL = SXL = 64
    assert re.search(r"^\$2 = 1$", out, re.M), out              # priv: S-mode
    sp = int(re.search(r"^sp\s+(0x[0-9a-f]+)", out, re.M).group(1), 16)
    dump = re.findall(r"^(0x[0-9a-f]+):\s+(0x[0-9a-f]{16})\s+(0x[0-9a-f]{16})", out, re.M)
    assert len(dump) == 4 and int(dump[0][0], 16) == sp, out
    # stepi: one instruction on, by its length as the ELF holds it
    before = int(re.search(r"^\$3 = (0x[0-9a-f]+)", out, re.M).group(1), 16)
    after = int(re.search(r"^\$4 = (0x[0-9a-f]+)", out, re.M).group(1), 16)
    assert before == bp
    first = elf_bytes(bp, 2)
    assert after - before == (4 if first[0] & 3 == 3 else 2)
    # the watchpoint fires where schedule() counts a context switch
    watch = re.search(r"Hardware watchpoint 2: \*\(long \*\)&context_switches\s+"
                      r"Old value = (\d+)\s+New value = (\d+)\s+0x[0-9a-f]+ in schedule \(\)",
                      out)
    assert watch, out
    assert int(watch.group(2)) == int(watch.group(1)) + 1
    # a read watchpoint fires on a load, an access watchpoint on either
    assert re.search(r"Hardware read watchpoint 3: \*\(long \*\)&have_time_ext\s+"
                     r"Value = \d+\s+0x[0-9a-f]+ in \w+ \(\)", out), out
    assert re.search(r"Hardware access \(read/write\) watchpoint 4: \*\(long \*\)&next_free"
                     r"\s+Value = \d+\s+0x[0-9a-f]+ in alloc_page \(\)", out), out
    assert "detached" in out
    # breakpoints, steps and a watchpoint changed nothing the guest sees: the same output
    assert console.encode() == plain.stdout


def test_threads_ctrl_c_invisible_breakpoints_and_kill():
    port = free_port()
    proc = start_hvemu("spin", "-smp", "2", "-gdb", f"tcp::{port}")     # QEMU's spelling
    try:
        wait_port(port, proc)
        main = symbol("main", SPIN_ELF)
        original = elf_bytes(main, 4, SPIN_ELF)
        interrupt_later = ("python import threading, time, gdb; threading.Thread(target="
                           "lambda: (time.sleep(1), gdb.post_event(lambda: "
                           "gdb.execute('interrupt'))), daemon=True).start()")
        out = gdb(port, SPIN_ELF,
                  "info threads",
                  interrupt_later,
                  "continue",
                  "thread 2",
                  "p $mhartid",
                  "set breakpoint always-inserted on",
                  f"break *{main:#x}",
                  f"monitor xp/1xw {main:#x}",
                  "monitor info status",
                  "kill")
        code, _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert re.search(r"\* 1\s+Thread 1 \(hart 0", out), out
    assert re.search(r"  2\s+Thread 2 \(hart 1", out), out
    assert "received signal SIGINT" in out, out
    assert re.search(r"^\$1 = 1$", out, re.M), out              # thread 2 is hart 1
    # with the breakpoint inserted, the guest's memory still holds its own instruction
    word = re.search(rf"{main:016x}: (0x[0-9a-f]{{8}})", out)
    assert word and int(word.group(1), 16) == int.from_bytes(original, "little"), out
    assert "VM status: debug" in out
    assert "killed" in out
    assert code == 0, err


class Rsp:
    """A bare remote-protocol client, for what gdb itself never sends."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def raw(self, data: bytes) -> None:
        self.s.sendall(data)

    def read(self, n: int = 1) -> bytes:
        while len(self.buf) < n:
            self.buf += self.s.recv(4096)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def packet(self) -> bytes:
        while b"#" not in self.buf or len(self.buf) < self.buf.index(b"#") + 3:
            self.buf += self.s.recv(4096)
        start, end = self.buf.index(b"$"), self.buf.index(b"#")
        data, self.buf = self.buf[start + 1:end], self.buf[end + 3:]
        return data

    def ask(self, data: bytes) -> bytes:
        cs = b"%02x" % (sum(data) & 0xFF)
        self.raw(b"$" + data + b"#" + cs)
        assert self.read(1) == b"+"
        return self.packet()


def test_malformed_packets_get_a_nak_and_bad_arguments_an_error():
    port = free_port()
    proc = start_hvemu("spin", "--gdb", f"tcp::{port}")
    try:
        wait_port(port, proc)
        c = Rsp(port)
        c.raw(b"$g#00")                              # wrong checksum
        assert c.read(1) == b"-"
        assert len(c.ask(b"g")) == 33 * 16           # the same packet, right: x0-x31, pc
        assert c.ask(b"mzz,4") == b"E01"             # not hex
        assert c.ask(b"m80000000") == b"E01"         # no length
        assert c.ask(b"m0,4").startswith(b"E")       # nothing there
        assert c.ask(b"Hg9") == b"E01"               # no thread 9
        assert c.ask(b"qNoSuchThing") == b""         # unsupported: the empty reply
        assert c.ask(b"qfThreadInfo") == b"m1"
        # writes: M (hex), X (binary, with an escaped byte), P (a register); read back
        scratch = 0x8000_0F00
        assert c.ask(b"M%x,4:deadbeef" % scratch) == b"OK"
        assert c.ask(b"m%x,4" % scratch) == b"deadbeef"
        assert c.ask(b"X%x,3:a}\x03b" % scratch) == b"OK"      # }\x03 is '#'
        assert c.ask(b"m%x,4" % scratch) == b"612362ef"
        assert c.ask(b"P5=efbeadde00000000") == b"OK"           # t0
        assert c.ask(b"p5") == b"efbeadde00000000"
        assert c.ask(b"M%x,4:zz" % scratch) == b"E01"
        pc = int.from_bytes(bytes.fromhex(c.ask(b"p20").decode()), "little")
        assert c.ask(b"vCont?").startswith(b"vCont;c;C;s;S")
        stop = c.ask(b"vCont;s:1")                   # one step of thread 1
        assert stop.startswith(b"T05") and b"thread:1;" in stop
        after = int.from_bytes(bytes.fromhex(c.ask(b"p20").decode()), "little")
        assert after != pc
        c.raw(b"$c#63")                              # continue, then Ctrl-C
        assert c.read(1) == b"+"
        time.sleep(0.3)
        c.raw(b"\x03")
        assert c.packet().startswith(b"T02")
        assert c.ask(b"D") == b"OK"                  # detach: the guest runs on
        c.s.close()
        time.sleep(0.3)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()


def test_a_gdb_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = start_hvemu("spin", "--gdb", f"tcp::{port}")
        code, _, err = finish(proc)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == EX_UNAVAILABLE, err
    assert len(lines) == 1 and lines[0].startswith("hvemu: --gdb") and "in use" in lines[0]


@pytest.mark.parametrize("spec", ["tcp::0x10", "serial:/dev/ttyS0", "tcp:1234"])
def test_a_bad_gdb_spec_is_a_usage_error(spec):
    proc = start_hvemu("spin", "--gdb", spec)
    code, _, err = finish(proc)
    assert code == 64 and err.startswith("hvemu: --gdb"), err


# ---- the core's debugger points, without gdb ----
DATA = 0x8000_07F0


def watched_guest(raw_image):
    from conftest import RV
    return raw_image(RV.code(RV.addi(RV.T0, RV.ZERO, 1), RV.slli(RV.T0, RV.T0, 31),
                             RV.addi(RV.T0, RV.T0, DATA & 0xFFF), RV.addi(RV.T1, RV.ZERO, 42),
                             RV.sw(RV.T1, RV.T0, 0),            # at 0x8000_0010
                             RV.poweroff(0)))


class Catch:
    """A debugger that notes each stop and keeps the VM paused."""

    def __init__(self, vm):
        import threading
        self.vm = vm
        self.hits = []
        self.event = threading.Event()

    def stopped(self, vc, why):
        from hvemu.hypervisor.vcpu import Paused
        v = vc.vcpu
        self.hits.append((why, v.exit_pc, v.exit_cause, v.exit_tval,
                          self.vm.memory.read(DATA, 4), v.get_x(6)))
        self.vm.control.ask("pause")
        self.event.set()
        raise Paused


@pytest.mark.parametrize("kind, expect_pc", [("store", 0x8000_0010), ("exec", 0x8000_000C)])
def test_debugger_points_stop_before_the_instruction_and_leave_memory_alone(
        raw_image, kind, expect_pc):
    from hvemu._core import TRIGGER_EXEC, TRIGGER_STORE

    from hvemu.vm import VM, VMConfig
    vm = VM(VMConfig(image=str(watched_guest(raw_image))))
    catch = vm.debugger = Catch(vm)
    point = ((DATA, DATA + 4, TRIGGER_STORE) if kind == "store"
             else (0x8000_000C, 0x8000_000D, TRIGGER_EXEC))
    vm.vcpu.set_debug_points([point])
    vm.start()
    assert catch.event.wait(10)
    why, pc, cause, tval, data, t1 = catch.hits[0]
    assert (why, pc) == ("debug", expect_pc)
    assert data == b"\0\0\0\0"                      # the store has not happened
    if kind == "store":
        assert (cause, tval, t1) == (TRIGGER_STORE, DATA, 42)
    else:
        assert (cause, t1) == (TRIGGER_EXEC, 0)       # nor the instruction at the breakpoint
    vm.vcpu.set_debug_points([])
    vm.resume()
    outcome = vm.wait(10)
    assert outcome is not None and (outcome.reason, outcome.exit_code) == ("poweroff", 0)
    assert vm.memory.read(DATA, 4) == (42).to_bytes(4, "little")
    assert len(catch.hits) == 1


def test_the_guest_runs_on_when_gdb_goes_away():
    port = free_port()
    proc = start_hvemu("--kernel", "kernel", "-S", "--gdb", f"tcp::{port}")
    try:
        wait_port(port, proc)
        c = Rsp(port)
        assert c.ask(b"Z0,%x,2" % symbol("kprintf")) == b"OK"
        stop = c.ask(b"vCont;c")
        assert stop.startswith(b"T05swbreak:;")
        pc = int.from_bytes(bytes.fromhex(c.ask(b"p20").decode()), "little")
        assert pc == symbol("kprintf")
        c.s.close()                                  # no D, no k: the connection just ends
        code, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert "kernel: all processes exited" in out     # it ran to the end, breakpoint gone
