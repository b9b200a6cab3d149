"""The system-VM classes (`--hypervisor native|hosted`) run every guest to the same end.

A native hypervisor handles each exit in the core's own process; a hosted one is a
separate host process that each exit reaches through the host OS (a pipe round trip).
Where the hypervisor sits must not change what the guest sees: the same console output,
the same instructions retired, the same final registers and CSRs.  A hosted
hypervisor's process killed with SIGKILL stops its VM with one line, loses nothing the
guest flushed to disk and leaves no process behind.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import RV, run_hvemu, stderr_lines
from test_boot_modes import OPENSBI_DYNAMIC, UBOOT, need

from hvemu import images
from hvemu.console import Console
from hvemu.disks import DiskSpec, create_disk
from hvemu.hypervisor import CLASSES
from hvemu.hypervisor.hosted import HANDLERS, HostedHypervisor, make_hypervisor
from hvemu.vm import VM, VMConfig

GUESTS = {                      # name -> VMConfig arguments
    "hello": dict(image="hello"),
    "bench": dict(image="bench"),
    "htif": dict(image="htif"),
    "bench-sv39": dict(image="bench-sv39"),
    "sfence": dict(image="sfence"),
    "faults": dict(image="faults"),
    "mmioloop": dict(image="mmioloop"),
    "csrloop": dict(image="csrloop"),
    "fpu": dict(image="fpu"),
    "kernel": dict(kernel="kernel"),
    "kernel-3-harts": dict(kernel="kernel", vcpus=3),
}


def run_guest(kind: str, image=None, kernel=None, disks=(), **kw):
    config = VMConfig(image=images.resolve(image) if image else None,
                      kernel=images.resolve(kernel) if kernel else None, timeout=120,
                      disks=[DiskSpec.parse(d) for d in disks], **kw)
    vm = VM(config, Console(), hypervisor=make_hypervisor(kind, reserve=config.memory))
    out = vm.run()
    return out, vm


def ending(out, vm) -> tuple:
    return (out.reason, out.exit_code, out.stats.instructions, vm.console.output_bytes,
            vm.architectural_state())


@pytest.mark.parametrize("guest", GUESTS)
def test_every_class_ends_a_guest_the_same_way(guest):
    native = ending(*run_guest("native", **GUESTS[guest]))
    assert native[0] == "poweroff"
    for kind in CLASSES[1:]:
        other = ending(*run_guest(kind, **GUESTS[guest]))
        assert other[:3] == native[:3], kind
        assert other[3] == native[3], f"{kind}: the console output differs"
        assert other[4] == native[4], f"{kind}: the final architectural state differs"


def test_a_hosted_run_takes_one_host_round_trip_per_exit():
    out, vm = run_guest("hosted", image="csrloop")
    hops = sum(vc.vcpu.remote_hops for vc in vm.vcpus)
    # every return of the core to the hypervisor is one round trip through the host OS
    assert hops == sum(out.stats.exits) > 1_000_000
    out, vm = run_guest("native", image="csrloop")
    assert sum(vc.vcpu.remote_hops for vc in vm.vcpus) == 0


def test_a_disk_written_under_a_hosted_hypervisor_survives_its_reboot(tmp_path):
    disk = tmp_path / "disk.img"
    create_disk(str(disk), 1 << 20)
    out, vm = run_guest("hosted", image="disk-reboot", disks=[str(disk)])
    assert (out.reason, out.exit_code) == ("poweroff", 0), vm.console.text
    assert vm.console.text.rstrip().endswith("disk: pattern found after reboot: ok")
    assert disk.read_bytes()[512:525] == b"HVEMU-PATTERN"


class Session:
    """`hvemu boot ...` with its console on pipes, driven like a terminal."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "hvemu.cli", "boot", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b""
        self.chunks: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while chunk := self.proc.stdout.read1(4096):
            self.chunks.put(chunk)
        self.chunks.put(None)

    def expect(self, pattern: bytes, timeout: float = 120, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while not (m := re.search(pattern, self.out[start:])):
            left = deadline - time.monotonic()
            assert left > 0, f"never saw {pattern!r}: {self.out[-400:]!r}"
            try:
                chunk = self.chunks.get(timeout=left)
            except queue.Empty:
                continue
            assert chunk is not None, f"hvemu ended before {pattern!r}: {self.out[-400:]!r}"
            self.out += chunk
        return start + m.end()

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def command(self, line: str) -> bytes:
        start = len(self.out)
        self.send(line + "\n")
        end = self.expect(rb"\n=> ", start=start)
        return self.out[start:end]

    def close(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc.kill()
            self.proc.wait()


def uboot_session(kind: str) -> bytes:
    s = Session("--bios", str(OPENSBI_DYNAMIC), "--kernel", str(UBOOT), "--vcpus", "4",
                "--hypervisor", kind)
    s.expect(rb"Hit any key to stop autoboot")
    s.send("\n")
    s.expect(rb"=> ")
    transcript = s.command("version") + s.command("md.l 0x1000 6") + s.command("cpu list")
    s.send("poweroff\n")
    assert s.close() == 0
    return transcript


def test_opensbi_and_uboot_on_4_harts_answer_the_same_under_every_class():
    need(OPENSBI_DYNAMIC, "opensbi")
    need(UBOOT, "u-boot-qemu")
    native = uboot_session("native")
    assert b"U-Boot 2023.01" in native and b"00001000: 00000297" in native
    for kind in CLASSES[1:]:
        assert uboot_session(kind) == native, kind


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_the_hosted_hypervisor_killed_stops_the_vm_with_one_line_and_keeps_flushed_data(
        tmp_path):
    disk = tmp_path / "durable.img"
    create_disk(str(disk), 1 << 20)
    s = Session("disk-flush", "--disk", str(disk), "--hypervisor", "hosted")
    try:
        s.expect(rb"flush: done")
        (hypervisor,) = children_of(s.proc.pid)
        os.kill(hypervisor, signal.SIGKILL)
        code = s.proc.wait(30)
        err = s.proc.stderr.read().decode()
    finally:
        s.close()
    assert code == 70
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"hvemu: the hosted hypervisor's process (pid {hypervisor}) was killed "
                     "by SIGKILL; its VMs stopped"], err
    assert not Path(f"/proc/{hypervisor}").exists()      # reaped, not a zombie
    data = disk.read_bytes()
    assert data[:65536] == bytes((i * 7 + 3) % 256 for i in range(65536))


def test_the_core_process_killed_takes_the_hosted_hypervisor_with_it():
    s = Session("spin", "--hypervisor", "hosted")
    try:
        deadline = time.monotonic() + 30
        while not children_of(s.proc.pid):
            assert time.monotonic() < deadline, "the hypervisor's process never started"
            time.sleep(0.05)
        (hypervisor,) = children_of(s.proc.pid)
        s.proc.kill()
        s.proc.wait(30)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{hypervisor}").exists():      # PR_SET_PDEATHSIG; init reaps it
            assert time.monotonic() < deadline, "the hypervisor's process outlived the core"
            time.sleep(0.05)
    finally:
        s.close()


def test_sigterm_ends_a_hosted_run_as_it_ends_a_native_one():
    codes = {}
    for kind in CLASSES:
        s = Session("spin", "--hypervisor", kind)
        time.sleep(1.0)
        s.proc.send_signal(signal.SIGTERM)
        codes[kind] = s.close(30)
    assert len(set(codes.values())) == 1 and codes["native"] != 0, codes


def test_an_unknown_class_is_one_line():
    r = run_hvemu("boot", "--hypervisor", "type-3")
    assert r.returncode == 64
    lines = stderr_lines(r)
    assert len(lines) == 1 and lines[0].startswith("hvemu: ") and "type-3" in lines[0], lines
    with pytest.raises(Exception, match="type-3"):
        make_hypervisor("type-3")


def test_the_hosted_pool_is_shared_memory_and_reserves_only_address_space():
    hv = HostedHypervisor(reserve=256 << 20)
    assert hv.pool.shared and hv.pool.limit == 256 << 20 and hv.pool.in_use == 0


def test_exit_costs_show_hosted_paying_exactly_one_more_hop_per_exit_than_native():
    from hvemu import exitcosts
    kinds = ["CSR read", "timer interrupt"]
    rows = exitcosts.measure(repeat=1, counted=False, kinds=kinds)
    by = {(r["exit"], r["class"]): r for r in rows}
    for kind in kinds:
        native, hosted = by[kind, "native"], by[kind, "hosted"]
        assert native["exits"] == hosted["exits"] > 10_000
        assert native["hops_per_exit"] == 0 and hosted["hops_per_exit"] == 1.0
    # dual: the reads of mscratch never leave the core; a timer interrupt's mret, wfi and
    # MMIO still hop, its handler's mcause/mepc accesses do not
    dual = by["CSR read", "dual"]
    assert dual["exits"] == by["CSR read", "native"]["exits"] and dual["hops_per_exit"] < 0.001
    assert 0 < by["timer interrupt", "dual"]["hops_per_exit"] < 1


# ---- the dual class's privileged part is a twin of the Python CSR handler ---------------

PLAIN = [0x340, 0x341, 0x342, 0x343, 0x140, 0x141, 0x142, 0x143]
OTHER = [0x300, 0x304, 0x305, 0x100, 0x104, 0x105, 0x180]   # only read
REGS = list(range(5, 21))                                     # x30, x31: the trap handler's


def zicsr(f3: int, rd: int, rs1: int, csr: int) -> int:
    return (csr << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73


def beq(rs1: int, rs2: int, offset: int) -> int:
    o = offset & 0x1FFF
    return ((((o >> 12) & 1) << 31) | (((o >> 5) & 0x3F) << 25) | (rs2 << 20) | (rs1 << 15)
            | (((o >> 1) & 0xF) << 8) | (((o >> 11) & 1) << 7) | 0x63)


def random_csr_ops(rng, n: int, csrs: list[int]) -> list[int]:
    ops = []
    for _ in range(n):
        f3 = rng.choice([1, 2, 3, 5, 6, 7])
        rd = rng.choice([0, *REGS])
        rs1 = rng.choice([0, *REGS]) if f3 < 4 else rng.randrange(32)
        csr = rng.choice(csrs) if rng.random() < 0.85 else rng.choice(OTHER)
        if csr in (0x300, 0x100, 0x180, 0x304, 0x104, 0x305, 0x105):
            f3, rs1 = 2, 0          # only read those: the guest must stay where it is
        ops.append(zicsr(f3, rd, rs1, csr))
        if rng.random() < 0.1:      # SFENCE.VMA rs1, rs2 (illegal in S-mode under TVM)
            ops.append(0x12000073 | rng.choice([0, *REGS]) << 20 | rng.choice([0, *REGS]) << 15)
        if rng.random() < 0.2:      # new operands now and then
            ops += RV.li(rng.choice(REGS), rng.randrange(-(1 << 31), 1 << 31))
    return ops


def sstatus_ops(rng, n: int) -> list[int]:
    """Kernel-style interrupt masking: sstatus reads, SIE set and cleared (immediate and
    register forms, with and without rd), now and then another bit (the general
    handler), and SSIP and SSIE turned on and off, so that setting SIE sometimes must
    take a supervisor software interrupt at once."""
    ops = []
    for _ in range(n):
        r, rd, reg = rng.random(), rng.choice([0, *REGS]), rng.choice(REGS)
        if r < 0.25:
            ops.append(zicsr(rng.choice([2, 3]), rd, 0, 0x100))              # csrr
        elif r < 0.55:
            ops.append(zicsr(rng.choice([6, 7]), rd, rng.choice([0, 2, 2]), 0x100))
        elif r < 0.7:
            ops += RV.li(reg, rng.choice([0, 2])) + [zicsr(rng.choice([2, 3]), rd, reg, 0x100)]
        elif r < 0.75:
            ops.append(zicsr(rng.choice([6, 7]), rd, 3, 0x100))     # and bit 0: general
        elif r < 0.85:                  # xv6's w_sstatus(r_sstatus() | or & ~SSTATUS_SIE)
            flip = rng.choice([2, 2, 2, 0, 0x20, 0x100 | 2])    # SPIE, SPP too: general
            ops += [zicsr(2, reg, 0, 0x100), xori(reg, reg, flip),
                    zicsr(rng.choice([1, 1, 5]), rd, reg, 0x100)]   # 5: csrrwi, imm = reg
        elif r < 0.92:
            ops.append(zicsr(rng.choice([6, 7]), 0, 2, 0x144))      # sip.SSIP on/off
        else:
            ops.append(zicsr(rng.choice([6, 7]), 0, 2, 0x104))      # sie.SSIE on/off
        if rng.random() < 0.3:
            ops.append(zicsr(rng.choice([1, 2, 3]), rd, reg, rng.choice(PLAIN[4:])))
    return ops


def vector_ops(rng, n: int) -> list[int]:
    """stvec written with any value (reserved modes too), then set back from x27 (the S
    handler), what it held going to a register; satp written, set and cleared with
    random ASIDs and roots, in bare mode or an unsupported one (the write is then
    ignored), so that the guest stays where it is."""
    ops = []
    for _ in range(n):
        f3, rd, reg = rng.choice([1, 2, 3]), rng.choice([0, *REGS]), rng.choice(REGS)
        ops += RV.li(reg, rng.randrange(-(1 << 31), 1 << 31))
        if rng.random() < 0.5:
            ops += [zicsr(f3, rd, reg, 0x105), zicsr(1, rng.choice(REGS), 27, 0x105)]
        else:
            ops += [slli(reg, reg, rng.choice([0, 12, 20])), *RV.li(26, rng.choice([0, 0, 5])),
                    slli(26, 26, 60), or_(reg, reg, 26), zicsr(f3, rd, reg, 0x180)]
        if rng.random() < 0.3:
            ops.append(zicsr(2, rd, 0, rng.choice([0x105, 0x180])))   # csrr
    return ops


def slli(rd: int, rs1: int, shamt: int) -> int:
    return (shamt << 20) | (rs1 << 15) | (1 << 12) | (rd << 7) | 0x13


def or_(rd: int, rs1: int, rs2: int) -> int:
    return (rs2 << 20) | (rs1 << 15) | (6 << 12) | (rd << 7) | 0x33


def xori(rd: int, rs1: int, imm: int) -> int:
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (4 << 12) | (rd << 7) | 0x13


def auipc(rd: int) -> int:
    return (rd << 7) | 0x17                                   # auipc rd, 0


def flat(*parts) -> list[int]:
    return [w for p in parts for w in (p if isinstance(p, list) else [p])]


def twin_guest(seed: int) -> bytes:
    """M-mode: random accesses to the plain CSRs (and reads of others), SFENCE.VMAs and
    sstatus.SIE toggles; then S-mode (with mstatus.TVM for odd seeds): the same on the S
    ones and on M ones, which trap into an M handler that skips them (through mepc and
    mcause, which the privileged part handles too), as do SFENCE.VMAs under TVM, and
    kernel-style SIE masking with supervisor software interrupts (delegated) pending now
    and then, which an S handler counts in x29 and clears; stvec and satp written
    (vector_ops); ecall ends it."""
    import random
    rng = random.Random(seed)
    handler = flat(zicsr(2, 31, 0, 0x342), RV.addi(30, 0, 9), None,   # beq: patched
                   zicsr(2, 30, 0, 0x341), RV.addi(30, 30, 4), zicsr(1, 0, 30, 0x341),
                   RV.MRET)
    end = flat(RV.poweroff(0), RV.J_SELF)
    s_handler = flat(RV.addi(29, 29, 1), zicsr(7, 0, 2, 0x144), RV.SRET)   # csrci sip, SSIP
    h_at, end_at = 1, 1 + len(handler)
    sh_at = end_at + len(end)
    main_at = sh_at + len(s_handler)
    handler[2] = beq(31, 30, 4 * (end_at - (h_at + 2)))
    main = flat(auipc(5), RV.addi(5, 5, 4 * (h_at - main_at)), zicsr(1, 0, 5, 0x305),
                auipc(5), RV.addi(5, 5, 4 * (sh_at - main_at - 3)), zicsr(1, 0, 5, 0x105),
                RV.addi(27, 5, 0),                                  # x27: stvec
                RV.li(6, 2), zicsr(2, 0, 6, 0x303),                 # mideleg: SSI to S
                *[RV.li(r, rng.randrange(-(1 << 31), 1 << 31)) for r in REGS],
                random_csr_ops(rng, 300, PLAIN), sstatus_ops(rng, 40), vector_ops(rng, 30),
                zicsr(7, 0, 2, 0x100),                              # SIE off for the switch
                RV.li(6, 3 << 11), zicsr(3, 0, 6, 0x300),          # MPP = S
                RV.li(6, 1 << 11), zicsr(2, 0, 6, 0x300),
                RV.li(6, (seed & 1) << 20), zicsr(2, 0, 6, 0x300))  # odd seeds: TVM
    here = main_at + len(main)
    s_code = flat(random_csr_ops(rng, 200, PLAIN[4:] + PLAIN[:4]), sstatus_ops(rng, 150),
                  vector_ops(rng, 60), sstatus_ops(rng, 150), RV.ECALL)
    enter = flat(auipc(5), RV.addi(5, 5, 4 * 4), zicsr(1, 0, 5, 0x341), RV.MRET)
    assert here + len(enter) - here == 4
    words = flat(RV.jal(0, 4 * main_at), handler, end, s_handler, main, enter, s_code)
    return RV.code(words)


@pytest.mark.parametrize("seed", range(4))
def test_the_privileged_part_leaves_the_virtual_state_the_python_handlers_leave(
        seed, raw_image):
    # HANDLERS: every exit through the Python handlers; native and dual: the privileged
    # part first (dual: in the core's process, the rest across the hop)
    image = raw_image(twin_guest(seed), f"twin{seed}.bin")
    ends, finished = {}, {}
    for kind in (HANDLERS, "native", "dual"):
        out, vm = run_guest(kind, image=str(image))
        assert (out.reason, out.exit_code) == ("poweroff", 0), (kind, out.detail)
        ends[kind] = (out.stats.instructions, vm.architectural_state())
        finished[kind] = out.stats.privileged_part
    assert ends["dual"] == ends[HANDLERS] and ends["native"] == ends[HANDLERS]
    assert finished[HANDLERS] == 0
    assert finished["native"] == finished["dual"] > 400   # most plain accesses: in the core
    taken = ends[HANDLERS][1][0]["x"][29]
    assert taken >= 2, taken         # SSIs were taken (some at the very SIE set)
    # and step by step: the state after every 97 instructions is the same
    total = ends[HANDLERS][0]
    for k in range(40, total, 97):
        states = [run_guest(kind, image=str(image), max_instructions=k)[1]
                  .architectural_state() for kind in (HANDLERS, "native", "dual")]
        assert states[0] == states[1] == states[2], f"after {k} instructions"


def test_reference_runs_take_every_exit_to_the_python_handlers():
    """--reference turns the privileged part off under every class that has it."""
    for kind in ("native", "dual"):
        out, _ = run_guest(kind, image="csrloop", max_instructions=200_000)
        assert out.stats.privileged_part > 10_000, kind
        out, _ = run_guest(kind, image="csrloop", max_instructions=200_000, reference=True)
        assert out.stats.privileged_part == 0 and out.stats.exits[2] > 10_000, kind
