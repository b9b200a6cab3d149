"""The handlers `prepare()` specialises for one instruction word behave exactly as the
general handler does: same CSR file, registers, pc, privilege, instret and trap.

Each case runs one privileged instruction to its exit in two identical VMs, then
handles it with the specialised closure in one and the general handler in the other.
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hvemu.hypervisor import privileged
from hvemu.hypervisor.csr import SIE, SPIE, SPP, SSIP, STIP, SUM, TVM, S, U
from hvemu.vm import VM, VMConfig

RAM = 0x8000_0000
CODE = RAM + 0x10_0000
SSTATUS = 0x100


def csr_insn(f3: int, rd: int, rs1: int, csr: int = SSTATUS) -> int:
    return (csr << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x73


def sfence(rs1: int, rs2: int = 0) -> int:
    return (0x09 << 25) | (rs2 << 20) | (rs1 << 15) | 0x73


def exited_vm(hello_image: str, insn: int, priv: int, mstatus_bits: int, regs: dict,
              pending: int) -> VM:
    vm = VM(VMConfig(image=hello_image))
    hart, vcpu = vm.hart, vm.vcpu
    vm.memory.write(CODE, insn.to_bytes(4, "little"))
    c = hart.csr
    c.mstatus = (c.mstatus & ~(SIE | SPIE | SPP | SUM | TVM)) | mstatus_bits
    c.mideleg = SSIP | STIP
    c.mie = SSIP | STIP
    c.mip_sw = pending
    c.stvec = RAM + 0x4000
    hart.priv = priv
    hart.sync_mode()
    for r, v in regs.items():
        vcpu.set_x(r, v)
    vcpu.pc = CODE
    vcpu.stop_at = vcpu.instret + 10
    assert vcpu.run() == 2                    # EXIT_SYSTEM: the instruction itself
    return vm


def state(vm: VM) -> tuple:
    c = vm.hart.csr
    return (c.mstatus, c.sepc, c.scause, c.stval, vm.hart.priv, vm.vcpu.pc,
            vm.vcpu.instret, tuple(vm.vcpu.x), dict(vm.hv.stats.privileged))


@settings(max_examples=300, deadline=None)
@given(f3=st.sampled_from([2, 3, 6, 7]), rd=st.sampled_from([0, 10, 15]),
       rs1=st.sampled_from([1, 2, 3, 11]),
       value=st.sampled_from([0, SIE, SIE | SPIE, SUM, 1 << 63, (1 << 64) - 1]),
       priv=st.sampled_from([U, S]),
       bits=st.integers(0, 31).map(lambda b: (SIE if b & 1 else 0) | (SPIE if b & 2 else 0)
                                   | (SPP if b & 4 else 0) | (SUM if b & 8 else 0)),
       pending=st.sampled_from([0, SSIP, STIP]))
def test_the_sie_toggle_closure_is_the_general_csr_handler(f3, rd, rs1, value, priv, bits,
                                                           pending):
    from conftest import HELLO_ELF
    insn = csr_insn(f3, rd, rs1)
    vms = [exited_vm(str(HELLO_ELF), insn, priv, bits, {rs1: value}, pending)
           for _ in range(2)]
    special, general = vms
    privileged.prepare(special.hv, insn)()
    privileged.csr_instruction(general.hv, insn)
    assert state(special) == state(general)


@settings(max_examples=100, deadline=None)
@given(rs1=st.sampled_from([5, 10]), priv=st.sampled_from([U, S]),
       tvm=st.booleans(), va=st.sampled_from([0, 0x1000, 0xFFFF_FFFF_FFFF_F000]))
def test_the_page_sfence_closure_is_the_general_sfence_handler(rs1, priv, tvm, va):
    from conftest import HELLO_ELF
    insn = sfence(rs1)
    vms = [exited_vm(str(HELLO_ELF), insn, priv, TVM if tvm else 0, {rs1: va}, 0)
           for _ in range(2)]
    special, general = vms
    privileged.prepare(special.hv, insn)()
    privileged.sfence_vma(general.hv, insn)
    assert state(special) == state(general)
    assert special.vcpu.shadow_stats == general.vcpu.shadow_stats


PLAIN = (0x340, 0x341, 0x342, 0x343, 0x140, 0x141, 0x142, 0x143)


@settings(max_examples=200, deadline=None)
@given(f3=st.sampled_from([1, 5]), rd=st.sampled_from([0, 10, 15]),
       rs1=st.sampled_from([0, 3, 11, 31]), csr=st.sampled_from(PLAIN),
       value=st.sampled_from([0, 1, 0x8000_0001, (1 << 64) - 1]),
       priv=st.sampled_from([U, S, 3]))
def test_the_plain_csr_write_closure_is_the_general_csr_handler(f3, rd, rs1, csr, value,
                                                               priv):
    """csrw/csrrw[i] to mscratch, mepc, ... and the S twins: the same old value in rd,
    the same WARL value stored (xepc bit 0 zero), the same illegal instruction below the
    CSR's privilege."""
    from conftest import HELLO_ELF
    insn = csr_insn(f3, rd, rs1, csr)
    vms = [exited_vm(str(HELLO_ELF), insn, priv, 0, {rs1: value} if rs1 else {}, 0)
           for _ in range(2)]
    for vm in vms:
        vm.hart.csr.fpu.vcsr_set(PLAIN.index(csr), 0x1234_5679)
    special, general = vms
    privileged.prepare(special.hv, insn)()
    privileged.csr_instruction(general.hv, insn)
    assert state(special) == state(general)
    assert [special.hart.csr.fpu.vcsr_get(i) for i in range(8)] == \
        [general.hart.csr.fpu.vcsr_get(i) for i in range(8)]


@settings(max_examples=200, deadline=None)
@given(rd=st.sampled_from([0, 10]), rs1=st.sampled_from([3, 11]),
       flip=st.sampled_from([0, SIE, SPIE, SUM, SIE | SPP, 3 << 13]),
       priv=st.sampled_from([U, S]),
       bits=st.integers(0, 31).map(lambda b: (SIE if b & 1 else 0) | (SPIE if b & 2 else 0)
                                   | (SPP if b & 4 else 0) | (SUM if b & 8 else 0)),
       pending=st.sampled_from([0, SSIP, STIP]))
def test_the_sstatus_write_closure_is_the_general_csr_handler(rd, rs1, flip, priv, bits,
                                                              pending):
    """csrw sstatus, rs1 with rs1 = sstatus with some bits flipped (xv6's
    w_sstatus(r_sstatus() | SSTATUS_SIE)): SIE alone takes the closure's own path."""
    from conftest import HELLO_ELF
    insn = csr_insn(1, rd, rs1)
    vms = []
    for _ in range(2):
        probe = exited_vm(str(HELLO_ELF), insn, priv, bits, {}, pending)
        value = probe.hart.csr.sstatus ^ flip
        vms.append(exited_vm(str(HELLO_ELF), insn, priv, bits, {rs1: value}, pending))
    special, general = vms
    privileged.prepare(special.hv, insn)()
    privileged.csr_instruction(general.hv, insn)
    assert state(special) == state(general)
    assert special.vcpu.fs == general.vcpu.fs
