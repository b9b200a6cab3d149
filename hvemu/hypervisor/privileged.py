"""Handlers for privileged instructions: every SYSTEM-opcode instruction the guest runs.

Each handler emulates the instruction against the virtual hart (privileged spec:
"Zicsr", "Machine-Mode Privileged Instructions", "Supervisor Instructions"), or
reflects an illegal-instruction exception into the guest when the guest's virtual
privilege does not allow it.  `dispatch()` picks the handler by instruction class.
"""
from __future__ import annotations

from .csr import (
    CSR_NAMES,
    MIE,
    MPP,
    MPRV,
    MXR,
    PLAIN_CSRS,
    SIE,
    SSTATUS_WRITABLE,
    SUM,
    TSR,
    TVM,
    TW,
    IllegalCsrAccess,
    M,
    S,
    U,
)

SSTATUS = 0x100
ECALL, EBREAK, MRET, SRET, WFI = 0x00000073, 0x00100073, 0x30200073, 0x10200073, 0x10500073
ILLEGAL_INSTRUCTION, BREAKPOINT, ECALL_FROM_U = 2, 3, 8

# CSRs whose writes change what the core must know, or which interrupts are deliverable
MODE_CSRS = frozenset({0x300, 0x100, 0x180})                       # mstatus, sstatus, satp
IRQ_CSRS = frozenset({0x300, 0x100, 0x304, 0x104, 0x344, 0x144, 0x303, 0x14D, 0x30A})
TIMER_CSRS = frozenset({0x14D, 0x30A})                              # stimecmp, menvcfg
MIP_CSRS = frozenset({0x344, 0x144})
COUNTER_CSRS = frozenset({0x306, 0x106, 0xB00, 0xB02})   # what the core's counter reads use
ENVCFG_CSRS = frozenset({0x30A, 0x10A})                   # menvcfg, senvcfg: cbo.* gating
TRIGGER_CSRS = frozenset({0x7A0, 0x7A1, 0x7A2, 0x302})   # tselect, tdata1, tdata2, medeleg


def illegal(hv, insn: int) -> None:
    hv.deliver_exception(ILLEGAL_INSTRUCTION, insn, hv.vcpu.exit_pc)


def csr_instruction(hv, insn: int) -> None:
    """CSRRW/CSRRS/CSRRC and their immediate forms (Zicsr)."""
    f3 = (insn >> 12) & 7
    csr = insn >> 20
    rd = (insn >> 7) & 31
    rs1 = (insn >> 15) & 31
    hart = hv.hart
    vcpu = hv.vcpu
    priv = hart.priv
    file = hart.csr
    hv.stats.privileged["csr"] += 1
    if csr in MIP_CSRS:
        hv.update_mip()
    status_before = file.mstatus
    try:
        src = rs1 if f3 & 4 else vcpu.get_x(rs1)
        op = f3 & 3
        if op == 1:                               # CSRRW: read only if rd != x0
            old = file.read(csr, priv) if rd else 0
            file.write(csr, src, priv)
            written = True
        elif op == 2 or op == 3:                  # CSRRS / CSRRC: write only if rs1 != x0
            old = file.read(csr, priv)
            written = rs1 != 0
            if written:
                file.write(csr, old | src if op == 2 else old & ~src, priv)
        else:
            raise IllegalCsrAccess
    except IllegalCsrAccess:
        illegal(hv, insn)
        return
    if written and (csr == 0xB02 or csr == 0xB00):
        # Zicsr: the value written is what the *next* instruction reads, so the writing
        # instruction's own retirement (complete_csr below) must not show
        if csr == 0xB02:
            file.instret_offset -= 1
        else:
            file.cycle_offset -= 1
    vcpu.complete_csr(rd, old)
    if not written:
        return
    # tell the core and the interrupt logic only what this write changed
    if csr == 0x300 or csr == 0x100:              # mstatus, sstatus
        changed = status_before ^ file.mstatus
        if changed & (MPRV | MPP | SUM | MXR | TVM):
            hart.sync_mode()
        if changed & (MIE | SIE):
            hart.sync_triggers()                  # M/S triggers fire only with MIE/SIE set
            hv.check_interrupts()
        return
    if csr in COUNTER_CSRS:
        hart.sync_counters()
    if csr in ENVCFG_CSRS:
        hart.sync_envcfg()
    if csr in TRIGGER_CSRS:
        hart.sync_triggers()
    if csr in MODE_CSRS:
        hart.sync_mode()
    if csr in TIMER_CSRS:
        hv.timers_changed()
    if csr in IRQ_CSRS:
        hv.check_interrupts()


def ecall(hv, insn: int) -> None:
    hv.stats.privileged["ecall"] += 1
    priv = hv.hart.priv
    if priv == S and hv.sbi is not None:
        hv.sbi.call(hv)
        return
    hv.deliver_exception(ECALL_FROM_U + priv, 0, hv.vcpu.exit_pc)


def ebreak(hv, insn: int) -> None:
    hv.stats.privileged["ebreak"] += 1
    hv.deliver_exception(BREAKPOINT, 0, hv.vcpu.exit_pc)


def mret(hv, insn: int) -> None:
    hv.stats.privileged["mret"] += 1
    if hv.hart.priv != M:
        return illegal(hv, insn)
    hv.vcpu.instret += 1
    hv.hart.mret()
    hv.check_interrupts()


def sret(hv, insn: int) -> None:
    hv.stats.privileged["sret"] += 1
    hart = hv.hart
    if hart.priv == U or (hart.priv == S and hart.csr.mstatus & TSR):
        return illegal(hv, insn)
    hv.vcpu.instret += 1
    hart.sret()
    hv.check_interrupts()


def wfi(hv, insn: int) -> None:
    """WFI: with nothing pending, idle until the next timer deadline (or input)."""
    hv.stats.privileged["wfi"] += 1
    hart = hv.hart
    if hart.priv == U or (hart.priv == S and hart.csr.mstatus & TW):
        return illegal(hv, insn)
    hv.vcpu.complete()
    hv.idle()


def sfence_vma(hv, insn: int) -> None:
    """SFENCE.VMA rs1, rs2: drop the shadow entries it names (all, page, ASID, both)."""
    hv.stats.privileged["sfence.vma"] += 1
    hart = hv.hart
    if hart.priv == U or (hart.priv == S and hart.csr.mstatus & TVM):
        return illegal(hv, insn)
    vcpu = hv.vcpu
    rs1, rs2 = (insn >> 15) & 31, (insn >> 20) & 31
    vaddr = vcpu.get_x(rs1) if rs1 else None
    asid = vcpu.get_x(rs2) & 0xFFFF if rs2 else None
    vcpu.flush_tlb(vaddr, asid)
    vcpu.complete()


SYSTEM_HANDLERS = {ECALL: ecall, EBREAK: ebreak, MRET: mret, SRET: sret, WFI: wfi}


def classify(insn: int):
    """The handler for a privileged instruction word."""
    if insn & 0x7000:
        if insn & 0x7000 == 0x4000:               # funct3 4: hypervisor-extension loads
            return illegal
        return csr_instruction
    handler = SYSTEM_HANDLERS.get(insn)
    if handler is not None:
        return handler
    if insn >> 25 == 0x09 and (insn >> 7) & 31 == 0:
        return sfence_vma
    return illegal


# CSRs whose read has no side conditions beyond the privilege in the CSR number
# (counters, stimecmp, satp, mip/sip and fflags/frm/fcsr, which need FS on, need the
# full handler)
SPECIAL_READS = frozenset({0x001, 0x002, 0x003, 0x14D, 0x180, 0x344, 0x144}
                          | set(range(0xC00, 0xC20)))


def prepare(hv, insn: int):
    """A handler specialised for one instruction word, cached by the hypervisor.

    A CSR read with no side effects (CSRRS/CSRRC with rs1 = x0, e.g. `csrr`) of
    a plain CSR becomes a closure that checks the privilege and reads the value;
    setting or clearing only sstatus.SIE (how kernels disable and restore interrupts)
    and SFENCE.VMA of one page for every address space get closures of their own;
    everything else goes through the general handler.  Each behaves as it does."""
    handler = classify(insn)
    f3, csr, rd, rs1 = (insn >> 12) & 7, insn >> 20, (insn >> 7) & 31, (insn >> 15) & 31
    file = hv.hart.csr
    if handler is csr_instruction and csr == SSTATUS and (f3 & 3 in (2, 3) and rs1
                                                         or f3 & 3 == 1):
        return _sie_toggle(hv, insn, f3, rd, rs1)
    if handler is sfence_vma and rs1 and not (insn >> 20) & 31:
        return _sfence_page(hv, insn, rs1)
    if handler is csr_instruction and f3 & 3 == 1 and csr in PLAIN_WRITES:
        return _plain_write(hv, insn, f3, csr, rd, rs1)
    if (handler is csr_instruction and f3 & 3 in (2, 3) and rs1 == 0
            and csr not in SPECIAL_READS and csr in file.readers):
        reader = file.readers[csr]
        min_priv = (csr >> 8) & 3
        hart = hv.hart
        complete = hv.vcpu.complete_csr
        counts = hv.stats.privileged

        def read_csr() -> None:
            counts["csr"] += 1
            if hart.priv < min_priv:
                return illegal(hv, insn)
            complete(rd, reader())
        return read_csr
    return lambda: handler(hv, insn)


# CSRRW[I] targets with no side effect, stored in HartState.vcsr (csr.py's PLAIN_CSRS):
# number -> (index, WARL mask: xepc bit 0 reads zero)
PLAIN_WRITES = {num: (PLAIN_CSRS.index(name), ~1 if name.endswith("epc") else (1 << 64) - 1)
                for num, name in CSR_NAMES.items() if name in PLAIN_CSRS}


def _plain_write(hv, insn: int, f3: int, csr: int, rd: int, rs1: int):
    """CSRRW[I] on a plain CSR (csrw sscratch, t0; csrrw tp, sscratch, tp): the
    privilege check, the old value to rd, the new one stored -- nothing else changes."""
    hart, vcpu = hv.hart, hv.vcpu
    index, mask = PLAIN_WRITES[csr]
    get, put = hart.csr.fpu.vcsr_get, hart.csr.fpu.vcsr_set
    complete, get_x = vcpu.complete_csr, vcpu.get_x
    counts = hv.stats.privileged
    min_priv = (csr >> 8) & 3
    imm = rs1 if f3 & 4 else None

    def write_csr() -> None:
        counts["csr"] += 1
        if hart.priv < min_priv:
            return illegal(hv, insn)
        old = get(index) if rd else 0
        put(index, (imm if imm is not None else get_x(rs1)) & mask)
        complete(rd, old)
    return write_csr


def _sie_toggle(hv, insn: int, f3: int, rd: int, rs1: int):
    """CSRRS/CSRRC[I] on sstatus, and CSRRW[I] that writes every other writable bit as
    it is: when all it changes is SIE (csrci sstatus, 2 to disable interrupts, csrs
    sstatus, a0 to restore them; xv6's w_sstatus(r_sstatus() | SSTATUS_SIE)), only that
    bit moves and interrupts are checked only when it is set; any other write takes
    the general handler."""
    hart, vcpu, file = hv.hart, hv.vcpu, hv.hart.csr
    triggers = file.triggers
    reader = file.readers[SSTATUS]
    complete, get_x = vcpu.complete_csr, vcpu.get_x
    counts = hv.stats.privileged
    clear, write = f3 & 3 == 3, f3 & 3 == 1
    imm = rs1 if f3 & 4 else None
    general = lambda: csr_instruction(hv, insn)        # noqa: E731

    def toggle() -> None:
        src = imm if imm is not None else get_x(rs1)
        if hart.priv < S:
            return general()
        old = reader()
        if write:
            if (src ^ old) & SSTATUS_WRITABLE & ~SIE:
                return general()
            before = file.mstatus
            after = (before & ~SIE) | (src & SIE)
        else:
            if src & ~SIE:
                return general()
            before = file.mstatus
            after = before & ~src if clear else before | src
        counts["csr"] += 1
        if after == before:
            return complete(rd, old)
        file.mstatus = after
        complete(rd, old)
        if hart._triggers_live or triggers.configured:
            hart.sync_triggers()              # S-mode triggers fire only with SIE set
        if after & SIE and hv.sie_hold() & 1:     # an S-level interrupt is pending: take it
            hv.check_interrupts()
    return toggle


def _sfence_page(hv, insn: int, rs1: int):
    """SFENCE.VMA rs1, x0: one page, every address space."""
    hart, vcpu = hv.hart, hv.vcpu
    get_x, flush, complete = vcpu.get_x, vcpu.flush_tlb, vcpu.complete
    counts = hv.stats.privileged

    def fence() -> None:
        counts["sfence.vma"] += 1
        if hart.priv == U or (hart.priv == S and hart.csr.mstatus & TVM):
            return illegal(hv, insn)
        flush(get_x(rs1))
        complete()
    return fence
