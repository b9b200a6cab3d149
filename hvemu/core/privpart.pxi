# The hypervisor's privileged part in the core: SYSTEM exits it can finish in C, in the
# core's own context, right where they happen -- without the Python handlers (native,
# as KVM finishes its fastpath exits before leaving vcpu_enter_guest) and without the
# hop to the hypervisor's process (dual-mode hosted).  The hosted class has it off, and
# so does --reference: there every exit reaches the Python handlers, the reference this
# is a twin of (tests/test_hypervisor_classes.py, tests/test_handler_twins.py).
#
# It handles SFENCE.VMA as privileged.py's sfence_vma does (privileged spec 4.2.1: illegal
# in U-mode, and in S-mode with mstatus.TVM -- those go to the hypervisor), and the Zicsr
# instructions (CSRRW/S/C and their immediate forms) on the plain
# CSRs -- mscratch, mepc, mcause, mtval and their S-mode twins, whose reads and writes
# have no side effect (privileged spec, sections 3.1.17-3.1.21 and 4.1.7-4.1.10) --
# exactly as hvemu/hypervisor/privileged.py's csr_instruction does: the same privilege
# check, the same WARL rule (xepc bit 0 reads zero: IALIGN 16, C is on), rd written only
# after the read, the write skipped for CSRRS/CSRRC with rs1 = x0.  The state is the one
# the Python CSR file reads and writes (HartState.vcsr), so the two stay one.
#
# It also reads sstatus and changes its SIE, SPIE and SPP (csrr a0, sstatus;
# csrrc a0, sstatus, SIE; csrs sstatus, a0 with a0 = SIE or 0; csrw sstatus, a0 with
# only those differing: how kernels save, disable and restore interrupts and set up an
# sret; privileged spec 4.1.1), as privileged.py's csr_instruction does,
# unless the hypervisor's sie_hold says an SIE change needs it: setting SIE while an
# S-level interrupt is pending and enabled (it must be taken at once), or any SIE change
# while debug triggers are configured (they depend on SIE).  And it reads and writes
# stvec (WARL: a reserved mode keeps the old one; 4.1.2) and satp (4.1.11: an
# unsupported mode leaves it as it was; illegal in S-mode under mstatus.TVM, which goes
# to the hypervisor), the new translation pushed into the core and the shadow TLB
# flushed when the root or the mode changes, as the hypervisor's sync_mode does.
# Anything else (another CSR, another sstatus bit, an access it would make illegal) is
# left to the hypervisor.

DEF SIE_BIT = 1 << 1
DEF SIE_HOLD_PENDING = 1
DEF SIE_HOLD_TRIGGERS = 2
DEF MSTATUS_SLOT = 8
DEF STVEC_SLOT = 9
DEF SATP_SLOT = 10
DEF SATP_PPN = (1 << 44) - 1
DEF SATP_ASID = 0xFFFF << 44
# the sstatus bits the part may change: SIE SPIE SPP
DEF SSTATUS_PART = (1 << 1) | (1 << 5) | (1 << 8)
# sstatus as the S-mode view of mstatus (csr.py's SSTATUS_VIEW): SIE SPIE SPP FS XS SUM
# MXR, UXL and SD
DEF SSTATUS_WRITABLE = (1 << 1) | (1 << 5) | (1 << 8) | (3 << 13) | (1 << 18) | (1 << 19)
DEF SSTATUS_VIEW_LOW = (1 << 1) | (1 << 5) | (1 << 8) | (3 << 13) | (3 << 15) | (1 << 18) \
    | (1 << 19) | (3 << 32)

cdef inline int plain_csr_index(uint32_t csr) noexcept nogil:
    """0-7 for mscratch mepc mcause mtval sscratch sepc scause stval, else -1."""
    if 0x340 <= csr <= 0x343:
        return csr - 0x340
    if 0x140 <= csr <= 0x143:
        return 4 + csr - 0x140
    return -1


cdef int sfence_part(HartState* s, uint32_t insn) noexcept nogil:
    cdef uint32_t rs1 = (insn >> 15) & 31, rs2 = (insn >> 20) & 31
    if s.priv == 0 or (s.priv == 1 and s.tvm):
        return 0
    tlb_sfence(s, rs1 != 0, s.x[rs1] if rs1 else 0, rs2 != 0)
    s.part_handled += 1
    return 1


cdef inline uint64_t sstatus_read(HartState* s) noexcept nogil:
    """sstatus as csr.py's _mstatus_read and SSTATUS_VIEW give it: FS from the core, SD
    when FS or XS is Dirty."""
    cdef uint64_t v = (s.vcsr[MSTATUS_SLOT] & ~(<uint64_t>3 << 13)) | (<uint64_t>s.fs << 13)
    if s.fs == 3 or (v & (<uint64_t>3 << 15)) == (<uint64_t>3 << 15):
        v |= <uint64_t>1 << 63
    return v & (<uint64_t>SSTATUS_VIEW_LOW | (<uint64_t>1 << 63))


cdef inline int sstatus_part(HartState* s, uint32_t f3, uint32_t rd, uint32_t rs1) noexcept nogil:
    """CSRRW/CSRRS/CSRRC[I] on sstatus that change at most SIE, SPIE and SPP; 1 if
    finished.  A CSRRW qualifies when every other writable bit (FS SUM MXR) is written
    as it is (xv6's w_sstatus(r_sstatus() | SSTATUS_SIE), its usertrapret's SPP and
    SPIE)."""
    cdef uint32_t op = f3 & 3
    cdef uint64_t src, old, before, after
    if s.priv < 1:                              # U-mode: illegal
        return 0
    src = rs1 if f3 & 4 else (s.x[rs1] if rs1 else 0)
    before = s.vcsr[MSTATUS_SLOT]
    after = before
    if op == 1:
        if (src ^ sstatus_read(s)) & SSTATUS_WRITABLE & ~(<uint64_t>SSTATUS_PART):
            return 0                            # another bit changes: the general handler
        after = (before & ~(<uint64_t>SSTATUS_PART)) | (src & SSTATUS_PART)
    elif rs1 and src & ~(<uint64_t>SSTATUS_PART):   # another bit: the general handler
        return 0
    elif rs1 and src:
        after = before & ~src if op == 3 else before | src
    if (after ^ before) & SIE_BIT:
        if s.sie_hold & SIE_HOLD_TRIGGERS:
            return 0
        if after & SIE_BIT and s.sie_hold & SIE_HOLD_PENDING:
            return 0
    old = sstatus_read(s)
    s.vcsr[MSTATUS_SLOT] = after
    if rd:
        s.x[rd] = old
    s.part_handled += 1
    return 1


cdef inline uint64_t tvec_warl(uint64_t v, uint64_t old) noexcept nogil:
    """xtvec's WARL rule (csr.py's _tvec): a reserved mode (2, 3) keeps the old mode."""
    cdef uint64_t mode = v & 3
    if mode >= 2:
        mode = old & 3
    return (v & ~(<uint64_t>3)) | mode


cdef void satp_write(HartState* s, uint64_t v) noexcept nogil:
    """satp's WARL rule (csr.py's _satp_write) and the hypervisor's sync_mode after it:
    the translation pushed, the shadow TLB flushed if the mode or the root changed."""
    cdef uint64_t mode = v >> 60, new, root
    if mode != 0 and mode != 8 and mode != 9:   # unsupported: the write has no effect
        return
    new = (mode << 60) | (v & <uint64_t>SATP_ASID) | (v & <uint64_t>SATP_PPN)
    s.vcsr[SATP_SLOT] = new
    root = (new & <uint64_t>SATP_PPN) << 12
    if mode != s.satp_mode or root != s.satp_root:
        tlb_flush_all(s)
    s.satp_mode = <uint32_t>mode
    s.satp_root = root


cdef inline bint part_candidate(uint32_t insn) noexcept nogil:
    """Whether the 32-bit insn is one the part may finish: SFENCE.VMA, or a Zicsr access
    to sstatus, stvec, satp or a plain CSR (the decoder gives these OP_PRIV)."""
    cdef uint32_t csr = insn >> 20
    if (insn & <uint32_t>0xFE007FFF) == <uint32_t>0x12000073:
        return True
    if (insn & 0x7F) != 0x73 or ((insn >> 12) & 3) == 0:
        return False
    return csr == 0x100 or csr == 0x105 or csr == 0x180 or plain_csr_index(csr) >= 0


cdef inline uint64_t csr_result(uint32_t op, uint32_t rs1, uint64_t src,
                                 uint64_t old) noexcept nogil:
    """The value CSRRW/CSRRS/CSRRC (op 1, 2, 3) leave, before the CSR's WARL rule."""
    if op == 1:                                # CSRRW
        return src
    if rs1 == 0:                               # CSRRS/CSRRC without a write
        return old
    return old | src if op == 2 else old & ~src


cdef int vector_part(HartState* s, uint32_t f3, uint32_t rd, uint32_t rs1,
                     uint32_t csr) noexcept nogil:
    """Zicsr on stvec (0x105) or satp (0x180) from S- or M-mode; 1 if finished (not satp
    in S-mode under TVM: illegal, raised by the hypervisor)."""
    cdef uint32_t op = f3 & 3
    cdef int i = STVEC_SLOT if csr == 0x105 else SATP_SLOT
    cdef uint64_t src, old, new
    if s.priv < 1 or (i == SATP_SLOT and s.priv == 1 and s.tvm):
        return 0
    src = rs1 if f3 & 4 else (s.x[rs1] if rs1 else 0)
    old = s.vcsr[i]
    new = csr_result(op, rs1, src, old)
    if i == STVEC_SLOT:
        s.vcsr[i] = tvec_warl(new, old)
    elif op == 1 or rs1:                       # satp written (CSRRS/C with x0: a read)
        satp_write(s, new)
    if rd:
        s.x[rd] = old
    s.part_handled += 1
    return 1


cdef int part_finish(HartState* s, uint32_t insn) noexcept nogil:
    """Do what the 32-bit insn does if it is an SFENCE.VMA or a CSR access above that
    the hypervisor would finish without a trap: 1, else 0 (nothing changed).  pc and
    instret are the caller's: privileged_part after an exit, or the fast path in its
    loop (OP_PRIV), which leaves the page only after SFENCE.VMA or a satp access."""
    cdef uint32_t f3 = (insn >> 12) & 7, rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31
    cdef uint32_t csr = insn >> 20, op = f3 & 3
    cdef int i
    cdef uint64_t src, old, new
    if (insn & <uint32_t>0xFE007FFF) == <uint32_t>0x12000073:
        return sfence_part(s, insn)                        # SFENCE.VMA
    if (insn & 0x7F) != 0x73 or op == 0:
        return 0
    if csr == 0x100:
        return sstatus_part(s, f3, rd, rs1)
    i = plain_csr_index(csr)
    if i < 0:
        if csr == 0x105 or csr == 0x180:
            return vector_part(s, f3, rd, rs1, csr)
        return 0
    if s.priv < ((csr >> 8) & 3):
        return 0
    src = rs1 if f3 & 4 else (s.x[rs1] if rs1 else 0)
    old = s.vcsr[i]
    new = csr_result(op, rs1, src, old)
    if i == 1 or i == 5:                       # mepc, sepc
        new &= ~(<uint64_t>1)
    s.vcsr[i] = new
    if rd:
        s.x[rd] = old
    s.part_handled += 1
    return 1


cdef int privileged_part(HartState* s) noexcept nogil:
    """Finish the SYSTEM exit in s.exit if the part can: 1 (pc and instret moved on),
    else 0 (nothing changed: the hypervisor's handlers take it)."""
    if s.exit.insn_len != 4 or not part_finish(s, s.exit.insn):
        return 0
    s.pc = s.exit.pc + 4
    s.instret += 1
    return 1
