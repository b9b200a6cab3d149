"""The virtual CSR file's semantics (privileged spec: "Machine-Level ISA",
"Supervisor-Level ISA", Zicsr) and the virtual hart's trap rules: delegation,
interrupt priorities and enables, MRET/SRET."""
from __future__ import annotations

import pytest
from conftest import RV

from hvemu.hypervisor.csr import (
    MEIP,
    MIE,
    MPIE,
    MPP,
    MPP_SHIFT,
    MPRV,
    MSIP,
    MTIP,
    MXR,
    SEIP,
    SIE,
    SPIE,
    SPP,
    SSIP,
    STIP,
    SUM,
    TVM,
    IllegalCsrAccess,
    M,
    S,
    U,
    VirtualCsrFile,
)
from hvemu.hypervisor.hart import INTERRUPT

MISA, MHARTID, MSTATUS, MEDELEG, MIDELEG, MIE_CSR, MTVEC = (
    0x301, 0xF14, 0x300, 0x302, 0x303, 0x304, 0x305)
MCOUNTEREN, MEPC, MIP, MCYCLE, MINSTRET = 0x306, 0x341, 0x344, 0xB00, 0xB02
SSTATUS, SIE_CSR, STVEC, SCOUNTEREN, SEPC, SIP, SATP = (
    0x100, 0x104, 0x105, 0x106, 0x141, 0x144, 0x180)
CYCLE, TIME, INSTRET = 0xC00, 0xC01, 0xC02
ALL = (1 << 64) - 1


class Counters:
    """Stand-ins for the vCPU's retired-instruction count and the virtual mtime."""
    instret = 0
    time = 0


@pytest.fixture
def csr():
    counters = Counters()
    f = VirtualCsrFile(0, lambda: counters.instret, lambda: counters.time)
    f.counters = counters
    return f


def mpp(mstatus: int) -> int:
    return (mstatus & MPP) >> MPP_SHIFT


# ====================================================================== CSR file

def test_misa_is_rv64_abcdfimsu_and_ignores_writes(csr):
    value = csr.read(MISA, M)
    assert value == 0x8000_0000_0014_112F
    assert value >> 62 == 2                                        # MXL = 64-bit
    # B: Zba, Zbb and Zbs are all implemented (privileged spec, misa)
    assert {chr(ord("A") + i) for i in range(26) if value >> i & 1} == set("ABCDFIMSU")
    csr.write(MISA, 0, M)
    assert csr.read(MISA, M) == value


@pytest.mark.parametrize("number", [0xF11, 0xF12, 0xF13, 0xF14, 0xF15, CYCLE, TIME, INSTRET])
def test_read_only_csrs_raise_on_write(csr, number):
    csr.read(number, M)
    with pytest.raises(IllegalCsrAccess):
        csr.write(number, 0, M)


def test_mhartid_is_the_harts_id():
    f = VirtualCsrFile(3, lambda: 0, lambda: 0)
    assert f.read(MHARTID, M) == 3
    with pytest.raises(IllegalCsrAccess):
        f.write(MHARTID, 0, M)


@pytest.mark.parametrize("number", [0x001, 0x003, 0x7C0, 0x5A8, 0x600, 0x7B0, 0xFFF, 0x3A1])
def test_nonexistent_csrs_raise_on_read_and_write(csr, number):
    # fflags, fcsr (no F), custom, hypervisor (no H), debug (dcsr), custom read-only,
    # pmpcfg1 (RV32 only)
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, M)
    with pytest.raises(IllegalCsrAccess):
        csr.write(number, 0, M)


@pytest.mark.parametrize("number", [MSTATUS, MISA, MIE_CSR, MTVEC, MEPC, MHARTID, MCYCLE])
def test_s_mode_cannot_access_machine_csrs(csr, number):
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, S)
    with pytest.raises(IllegalCsrAccess):
        csr.write(number, 0, S)


@pytest.mark.parametrize("number", [SSTATUS, SIE_CSR, STVEC, SEPC, SATP])
def test_u_mode_cannot_access_supervisor_csrs(csr, number):
    csr.read(number, S)
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, U)


def test_sstatus_is_a_view_of_mstatus(csr):
    csr.write(MSTATUS, SIE | MIE | SPIE | MPIE | SPP | (3 << MPP_SHIFT) | SUM | MXR | TVM, M)
    s = csr.read(SSTATUS, S)
    assert s & (SIE | SPIE | SPP | SUM | MXR) == SIE | SPIE | SPP | SUM | MXR
    assert s & (MIE | MPIE | MPP | TVM) == 0                        # machine bits hidden
    assert (s >> 32) & 3 == 2                                       # UXL = 64
    csr.write(SSTATUS, 0, S)                                        # clears only S fields
    m = csr.read(MSTATUS, M)
    assert m & (SIE | SPIE | SPP | SUM | MXR) == 0
    assert m & (MIE | MPIE | TVM) == MIE | MPIE | TVM and mpp(m) == 3
    csr.write(SSTATUS, ALL, S)                                      # sets only S fields
    assert csr.read(MSTATUS, M) & (SIE | SPP | SUM) == SIE | SPP | SUM
    # FS is an S field too; it lives with the FP state (csr.fpu), SD summarises it
    assert csr.fpu.fs == 3
    assert csr.read(MSTATUS, M) == csr.mstatus | (3 << 13) | (1 << 63)


def test_mstatus_mpp_is_warl_and_keeps_its_value_on_the_reserved_2(csr):
    csr.write(MSTATUS, 1 << MPP_SHIFT, M)
    assert mpp(csr.read(MSTATUS, M)) == S
    csr.write(MSTATUS, 2 << MPP_SHIFT, M)
    assert mpp(csr.read(MSTATUS, M)) == S
    csr.write(MSTATUS, 0, M)
    assert mpp(csr.read(MSTATUS, M)) == U
    assert (csr.read(MSTATUS, M) >> 32) & 0xF == 0b1010              # SXL = UXL = 64


def test_sie_and_sip_are_mie_and_mip_masked_by_mideleg(csr):
    csr.write(MIE_CSR, ALL, M)
    csr.write(MIP, ALL, M)
    assert csr.read(MIE_CSR, M) == SSIP | MSIP | STIP | MTIP | SEIP | MEIP
    assert csr.read(MIP, M) == SSIP | STIP | SEIP                   # the software-writable part
    assert csr.read(SIE_CSR, S) == 0 and csr.read(SIP, S) == 0      # nothing delegated
    csr.write(MIDELEG, ALL, M)
    assert csr.read(MIDELEG, M) == SSIP | STIP | SEIP               # only S interrupts delegable
    csr.write(MIDELEG, SSIP | STIP, M)
    assert csr.read(SIE_CSR, S) == SSIP | STIP
    assert csr.read(SIP, S) == SSIP | STIP
    csr.write(SIE_CSR, 0, S)                                        # clears only delegated bits
    assert csr.read(MIE_CSR, M) == MSIP | MTIP | SEIP | MEIP
    csr.write(SIP, 0, S)                                            # only SSIP is writable in sip
    assert csr.read(MIP, M) == STIP | SEIP
    csr.write(MIDELEG, STIP, M)
    csr.write(SIP, SSIP, S)                                         # SSIP not delegated: no effect
    assert not csr.read(MIP, M) & SSIP


def test_mip_machine_bits_come_from_the_devices_not_from_writes(csr):
    csr.write(MIP, MSIP | MTIP | MEIP, M)
    assert csr.read(MIP, M) == 0
    csr.mip_hw = MTIP | MEIP
    assert csr.read(MIP, M) == MTIP | MEIP


def test_medeleg_can_never_delegate_ecall_from_m(csr):
    csr.write(MEDELEG, ALL, M)
    value = csr.read(MEDELEG, M)
    assert not value >> 11 & 1
    assert value == 0xB3FF                                          # 0-9, 12, 13, 15


@pytest.mark.parametrize("number", [MTVEC, STVEC])
def test_trap_vector_mode_is_warl(csr, number):
    priv = M if number == MTVEC else S
    csr.write(number, 0x8000_0101, priv)                            # vectored
    assert csr.read(number, priv) == 0x8000_0101
    csr.write(number, 0x8000_0202, priv)                            # mode 2 is reserved
    assert csr.read(number, priv) == 0x8000_0201
    csr.write(number, 0x8000_0303, priv)                            # so is 3
    assert csr.read(number, priv) == 0x8000_0301
    csr.write(number, 0x8000_0400, priv)                            # direct
    assert csr.read(number, priv) == 0x8000_0400


@pytest.mark.parametrize("number", [MEPC, SEPC])
def test_exception_pc_registers_clear_bit_0(csr, number):
    priv = M if number == MEPC else S
    csr.write(number, 0x8000_0003, priv)
    assert csr.read(number, priv) == 0x8000_0002
    csr.write(number, ALL, priv)
    assert csr.read(number, priv) == ALL - 1


def test_satp_accepts_bare_sv39_sv48_and_ignores_unsupported_modes(csr):
    sv39 = (8 << 60) | (0x1234 << 44) | 0x80123
    csr.write(SATP, sv39, S)
    assert csr.read(SATP, S) == sv39
    for mode in (1, 10, 15):                                        # Sv32, Sv57, reserved
        csr.write(SATP, (mode << 60) | 0x555, S)
        assert csr.read(SATP, S) == sv39
    csr.write(SATP, (9 << 60) | 7, S)
    assert csr.read(SATP, S) == (9 << 60) | 7
    csr.write(SATP, 0, S)
    assert csr.read(SATP, S) == 0


def test_satp_is_illegal_from_s_mode_when_mstatus_tvm_is_set(csr):
    csr.write(MSTATUS, TVM, M)
    with pytest.raises(IllegalCsrAccess):
        csr.read(SATP, S)
    csr.read(SATP, M)


def test_counters_follow_instret_and_time_and_minstret_writes(csr):
    csr.counters.instret, csr.counters.time = 1234, 99
    assert csr.read(MCYCLE, M) == 1234 and csr.read(MINSTRET, M) == 1234
    assert csr.read(CYCLE, M) == 1234 and csr.read(INSTRET, M) == 1234
    assert csr.read(TIME, M) == 99
    csr.write(MINSTRET, 10, M)
    csr.counters.instret += 5
    assert csr.read(MINSTRET, M) == 15 and csr.read(INSTRET, M) == 15
    assert csr.read(MCYCLE, M) == 1239                              # cycle is separate
    csr.write(MCYCLE, 0, M)
    assert csr.read(CYCLE, M) == 0


@pytest.mark.parametrize("number, bit", [(CYCLE, 0), (TIME, 1), (INSTRET, 2)])
def test_mcounteren_and_scounteren_gate_the_counters_below_m(csr, number, bit):
    for priv in (S, U):
        with pytest.raises(IllegalCsrAccess):
            csr.read(number, priv)
    csr.write(MCOUNTEREN, 1 << bit, M)
    csr.read(number, S)                                             # S needs mcounteren only
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, U)                                         # U needs scounteren too
    csr.write(SCOUNTEREN, 1 << bit, S)
    csr.read(number, U)
    csr.write(MCOUNTEREN, 0, M)                                     # mcounteren still rules
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, U)
    with pytest.raises(IllegalCsrAccess):
        csr.read(number, S)


# ====================================================================== traps

@pytest.fixture
def hart(hello_vm):
    return hello_vm.hart


def test_a_trap_to_m_stacks_mie_into_mpie_and_records_the_previous_privilege(hart):
    c = hart.csr
    c.mtvec = 0x8000_0100
    c.mstatus |= MIE
    assert hart.take_trap(2, 0xB, 0x8000_0714) == "M"
    assert (c.mcause, c.mepc, c.mtval) == (2, 0x8000_0714, 0xB)
    assert c.mstatus & MPIE and not c.mstatus & MIE
    assert mpp(c.mstatus) == M
    assert hart.priv == M and hart.vcpu.pc == 0x8000_0100
    hart.priv = U                                                   # from U with MIE clear
    hart.take_trap(8, 0, 0x1_0000)
    assert mpp(c.mstatus) == U and not c.mstatus & MPIE
    assert c.mcause == 8 and hart.priv == M


@pytest.mark.parametrize("from_priv", [U, S])
def test_medeleg_delegates_exceptions_from_s_and_u_to_s(hart, from_priv):
    c = hart.csr
    c.mtvec, c.stvec = 0x8000_0100, 0x8020_0000
    c.medeleg = (1 << 2) | (1 << 8)
    c.mstatus |= SIE
    hart.priv = from_priv
    cause = 8 if from_priv == U else 2
    assert hart.take_trap(cause, 0x33, 0x1_0004) == "S"
    assert (c.scause, c.sepc, c.stval) == (cause, 0x1_0004, 0x33)
    assert c.mcause == 0 and c.mepc == 0                            # M state untouched
    assert bool(c.mstatus & SPP) == (from_priv == S)
    assert c.mstatus & SPIE and not c.mstatus & SIE
    assert hart.priv == S and hart.vcpu.pc == 0x8020_0000


def test_medeleg_never_delegates_exceptions_taken_in_m(hart):
    c = hart.csr
    c.mtvec, c.stvec = 0x8000_0100, 0x8020_0000
    c.medeleg = 0xB3FF
    assert hart.priv == M
    assert hart.take_trap(2, 0, 0x8000_0000) == "M"
    assert c.mcause == 2 and c.scause == 0 and hart.vcpu.pc == 0x8000_0100


def test_an_exception_not_delegated_goes_from_s_to_m(hart):
    c = hart.csr
    c.mtvec = 0x8000_0100
    c.medeleg = 1 << 8                                              # only ecall from U
    hart.priv = S
    assert hart.take_trap(9, 0, 0x8020_0010) == "M"
    assert mpp(c.mstatus) == S and c.mepc == 0x8020_0010


def test_vectored_mtvec_sends_interrupts_to_base_plus_4_times_cause(hart):
    c = hart.csr
    c.mtvec = 0x8000_0101
    hart.take_trap(INTERRUPT | 7, 0, 0x8000_0040)
    assert hart.vcpu.pc == 0x8000_0100 + 4 * 7
    assert c.mcause == INTERRUPT | 7
    hart.take_trap(2, 0, 0x8000_0040)                               # exceptions: the base
    assert hart.vcpu.pc == 0x8000_0100


def test_interrupt_priority_is_mei_msi_mti_sei_ssi_sti(hart):
    c = hart.csr
    c.mstatus |= MIE
    c.mie = MEIP | MSIP | MTIP | SEIP | SSIP | STIP
    order = [(MEIP, 11), (MSIP, 3), (MTIP, 7), (SEIP, 9), (SSIP, 1), (STIP, 5)]
    pending = [bit for bit, _ in order]
    for bit, code in order:
        c.mip_hw = sum(pending)
        assert hart.pending_interrupt() == INTERRUPT | code
        pending.remove(bit)
    c.mip_hw = 0
    assert hart.pending_interrupt() is None


def test_an_interrupt_must_be_enabled_in_mie(hart):
    c = hart.csr
    c.mstatus |= MIE
    c.mip_hw = MTIP
    assert hart.pending_interrupt() is None
    c.mie = MTIP
    assert hart.pending_interrupt() == INTERRUPT | 7


def test_m_interrupts_wait_for_mstatus_mie_in_m_but_are_taken_in_s_and_u_regardless(hart):
    c = hart.csr
    c.mie, c.mip_hw = MTIP, MTIP
    assert not c.mstatus & MIE
    assert hart.pending_interrupt() is None                         # M, MIE = 0
    for priv in (S, U):
        hart.priv = priv
        assert hart.pending_interrupt() == INTERRUPT | 7
    hart.priv = M
    c.mstatus |= MIE
    assert hart.pending_interrupt() == INTERRUPT | 7


def test_delegated_s_interrupts_are_never_taken_in_m(hart):
    c = hart.csr
    c.mideleg = SSIP | STIP | SEIP
    c.mie = c.mip_sw = SSIP | STIP | SEIP
    c.mstatus |= MIE | SIE
    assert hart.pending_interrupt() is None                         # M: masked
    hart.priv = S
    assert hart.pending_interrupt() == INTERRUPT | 9                # S with SIE
    c.mstatus &= ~SIE
    assert hart.pending_interrupt() is None                         # S without SIE
    hart.priv = U
    assert hart.pending_interrupt() == INTERRUPT | 9                # U: always enabled


def test_a_delegated_interrupt_is_taken_in_s(hart):
    c = hart.csr
    c.stvec = 0x8020_0000
    c.mideleg = STIP
    c.mie = c.mip_sw = STIP
    hart.priv = U
    cause = hart.pending_interrupt()
    assert cause == INTERRUPT | 5
    assert hart.take_trap(cause, 0, 0x1_0000) == "S"
    assert c.scause == INTERRUPT | 5 and c.sepc == 0x1_0000
    assert not c.mstatus & SPP and hart.priv == S


def test_mret_returns_to_mpp_restores_mie_and_clears_mprv_when_leaving_m(hart):
    c = hart.csr
    c.mepc = 0x8020_0000
    c.mstatus = (c.mstatus & ~(MIE | MPP)) | MPIE | MPRV | (S << MPP_SHIFT)
    hart.mret()
    assert hart.priv == S and hart.vcpu.pc == 0x8020_0000
    assert c.mstatus & MIE and c.mstatus & MPIE
    assert mpp(c.mstatus) == U
    assert not c.mstatus & MPRV


def test_mret_back_to_m_keeps_mprv_and_can_leave_interrupts_off(hart):
    c = hart.csr
    c.mepc = 0x8000_0200
    c.mstatus = (c.mstatus & ~(MIE | MPIE)) | MPRV | (M << MPP_SHIFT)
    hart.mret()
    assert hart.priv == M and hart.vcpu.pc == 0x8000_0200
    assert not c.mstatus & MIE and c.mstatus & MPIE
    assert c.mstatus & MPRV
    assert mpp(c.mstatus) == U


@pytest.mark.parametrize("spp, target", [(SPP, S), (0, U)])
def test_sret_returns_to_spp_restores_sie_and_clears_mprv(hart, spp, target):
    c = hart.csr
    hart.priv = S
    c.sepc = 0x1_0000
    c.mstatus = (c.mstatus & ~(SIE | SPP)) | SPIE | MPRV | spp
    hart.sret()
    assert hart.priv == target and hart.vcpu.pc == 0x1_0000
    assert c.mstatus & SIE and c.mstatus & SPIE
    assert not c.mstatus & SPP and not c.mstatus & MPRV


def test_a_trap_and_its_return_round_trip_the_enable_bits(hart):
    c = hart.csr
    c.mtvec = 0x8000_0100
    hart.priv = S
    c.mstatus |= MIE
    hart.take_trap(9, 0, 0x8020_0040)
    c.mepc += 4
    hart.mret()
    assert hart.priv == S and hart.vcpu.pc == 0x8020_0044
    assert c.mstatus & MIE


# ====================================================================== in a guest

def la(rd: int, address: int) -> list[int]:
    """rd = 0x8000_0000 + offset (offset < 2 KiB) without lui's sign extension."""
    return [RV.addi(rd, RV.ZERO, 1), RV.slli(rd, rd, 31), RV.addi(rd, rd, address - 0x8000_0000)]


def guest(tmp_path, delegate: bool) -> str:
    """M sets its trap vectors, drops to S with mret, and S reads mstatus (illegal);
    the handler, wherever the trap lands, powers off."""
    s_code, handler = 0x8000_0100, 0x8000_0200
    words = [*la(RV.T0, handler), RV.csrrw(0, MTVEC, RV.T0), RV.csrrw(0, STVEC, RV.T0),
             *RV.li(RV.T1, 1 << 11), RV.csrrs(0, MSTATUS, RV.T1),          # MPP = S
             *la(RV.T0, s_code), RV.csrrw(0, MEPC, RV.T0)]
    if delegate:
        words += [RV.addi(RV.T1, RV.ZERO, 1 << 2), RV.csrrw(0, MEDELEG, RV.T1)]
    words += [RV.MRET]
    image = bytearray(0x300)
    image[:4 * len(words)] = RV.code(words)
    image[0x100:0x104] = RV.code(RV.csrrs(RV.A0, MSTATUS, RV.ZERO))        # csrr a0, mstatus
    image[0x200:0x200 + 12] = RV.code(RV.poweroff(0))
    path = tmp_path / "s-mode.bin"
    path.write_bytes(bytes(image))
    return str(path)


@pytest.mark.parametrize("delegate", [False, True])
def test_a_csr_access_above_the_guests_privilege_traps_as_illegal_instruction(tmp_path, delegate):
    from hvemu.vm import VM, VMConfig
    vm = VM(VMConfig(image=guest(tmp_path, delegate), max_instructions=1000))
    outcome = vm.run()
    assert (outcome.reason, outcome.exit_code) == ("poweroff", 0)
    c = vm.hart.csr
    insn = RV.csrrs(RV.A0, MSTATUS, RV.ZERO)
    if delegate:
        assert vm.hart.priv == S
        assert (c.scause, c.sepc, c.stval) == (2, 0x8000_0100, insn)
        assert c.mstatus & SPP
    else:
        assert vm.hart.priv == M
        assert (c.mcause, c.mepc, c.mtval) == (2, 0x8000_0100, insn)
        assert mpp(c.mstatus) == S
    assert outcome.stats.exceptions[2] == 1


def test_a_value_written_to_minstret_is_read_by_the_next_instruction(raw_image):
    from hvemu.vm import VM, VMConfig
    code = RV.code(RV.addi(RV.T0, RV.ZERO, 100), RV.csrrw(0, MINSTRET, RV.T0),
                   RV.csrrs(RV.A0, MINSTRET, RV.ZERO), RV.poweroff(0))
    vm = VM(VMConfig(image=str(raw_image(code)), max_instructions=1000))
    assert vm.run().reason == "poweroff"
    assert vm.vcpu.get_x(RV.A0) == 100


@pytest.mark.parametrize("delegated, kept", [(SSIP, STIP), (SEIP, STIP), (SEIP, SSIP)])
def test_an_interrupt_destined_for_m_is_taken_before_one_destined_for_s(hart, delegated, kept):
    c = hart.csr
    hart.priv = S
    c.mstatus |= SIE
    c.mideleg = delegated
    c.mie = c.mip_sw = delegated | kept
    code = {SSIP: 1, STIP: 5, SEIP: 9}[kept]
    assert hart.pending_interrupt() == INTERRUPT | code
