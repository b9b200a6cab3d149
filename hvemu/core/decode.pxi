# The pre-decoder: instruction words -> Decoded slots for the fast path.
#
# Each RAM page that holds executed code gets an array of Decoded slots, one per
# 2-byte offset, filled lazily the first time an instruction there runs (the fast
# path's OP_UNDECODED arm calls `decode_slot`).  Every write into such a page -- a
# guest store, the page walker setting A/D bits, device DMA -- drops the slots it
# overwrites (`code_written`), so self-modifying code stays correct without relying
# on FENCE.I.  Instructions the fast path leaves alone decode to OP_GENERIC and run
# in the reference interpreter.

cdef enum:
    OP_UNDECODED = 0
    OP_GENERIC
    OP_PAGE_END
    OP_NOP
    OP_ADDI
    OP_SLTI
    OP_SLTIU
    OP_XORI
    OP_ORI
    OP_ANDI
    OP_SLLI
    OP_SRLI
    OP_SRAI
    OP_ADDIW
    OP_SLLIW
    OP_SRLIW
    OP_SRAIW
    OP_ADD
    OP_SUB
    OP_SLL
    OP_SLT
    OP_SLTU
    OP_XOR
    OP_SRL
    OP_SRA
    OP_OR
    OP_AND
    OP_ADDW
    OP_SUBW
    OP_SLLW
    OP_SRLW
    OP_SRAW
    OP_MUL
    OP_MULH
    OP_MULHSU
    OP_MULHU
    OP_DIV
    OP_DIVU
    OP_REM
    OP_REMU
    OP_MULW
    OP_DIVW
    OP_DIVUW
    OP_REMW
    OP_REMUW
    OP_LUI
    OP_AUIPC
    OP_JAL
    OP_JALR
    OP_BEQ
    OP_BNE
    OP_BLT
    OP_BGE
    OP_BLTU
    OP_BGEU
    OP_LB
    OP_LH
    OP_LW
    OP_LD
    OP_LBU
    OP_LHU
    OP_LWU
    OP_SB
    OP_SH
    OP_SW
    OP_SD
    OP_RDCOUNTER
    OP_PRIV              # SFENCE.VMA or Zicsr on sstatus/a plain CSR: the privileged part's
    OP_AMO               # LR, SC, AMO*.W/.D: imm = funct5 | 0x100 for .D
    # Zba, Zbb, Zbc, Zbs, Zicond (bitmanip.pxi decodes them; the fast path's EXT_ALU
    # table says what each writes to x[d.rd]) and Zicbom/Zicboz (cmo.pxi)
    OP_ADD_UW
    OP_SH1ADD
    OP_SH2ADD
    OP_SH3ADD
    OP_SH1ADD_UW
    OP_SH2ADD_UW
    OP_SH3ADD_UW
    OP_SLLI_UW
    OP_ANDN
    OP_ORN
    OP_XNOR
    OP_CLZ
    OP_CLZW
    OP_CTZ
    OP_CTZW
    OP_CPOP
    OP_CPOPW
    OP_MAX
    OP_MAXU
    OP_MIN
    OP_MINU
    OP_SEXT_B
    OP_SEXT_H
    OP_ZEXT_H
    OP_ROL
    OP_ROLW
    OP_ROR
    OP_RORI
    OP_RORIW
    OP_RORW
    OP_ORC_B
    OP_REV8
    OP_CLMUL
    OP_CLMULH
    OP_CLMULR
    OP_BCLR
    OP_BCLRI
    OP_BEXT
    OP_BEXTI
    OP_BINV
    OP_BINVI
    OP_BSET
    OP_BSETI
    OP_CZERO_EQZ
    OP_CZERO_NEZ
    OP_CBO
    # F and D (core/fp.pxi), out of line so that the integer arms keep their registers.
    # OP_FP: rd/rs1/rs2 as in the instruction (f registers are never redirected;
    # fp_execute leaves x0 alone), imm = fp_decode's word.  OP_FPMEM: FLW, FLD, FSW,
    # FSD, C.FLD, C.FSD, C.FLDSP, C.FSDSP: rd = the f register loaded or stored, rs1
    # the base, imm the offset, rs2 = the size | FPMEM_STORE (see fp_mem_fast).
    OP_FP
    OP_FPMEM
    # compressed twins of the hottest operations: their arm steps the pointer by a
    # constant, so the next dispatch does not wait for a load of `step`
    OP_C_ADDI
    OP_C_ADDIW
    OP_C_ADD
    OP_C_SUB
    OP_C_ADDW
    OP_C_SUBW
    OP_C_AND
    OP_C_OR
    OP_C_XOR
    OP_C_ANDI
    OP_C_SLLI
    OP_C_SRLI
    OP_C_SRAI
    OP_C_LW
    OP_C_LD
    OP_C_SW
    OP_C_SD
    OP_C_LUI
    OP_C_BEQ
    OP_C_BNE
    OP_C_JAL
    OP_C_JALR
    FPMEM_STORE = 16
    SLOTS = 2048          # 2-byte slots in a 4 KiB page
    JUMP_OUT = -32768     # Decoded.jump: the target is on another page (or computed)
    NEAR_STOP = 2 * 2048 + 16   # more than a page of straight-line code: see run_loop

cdef uint8_t OPS_OP[8]
cdef uint8_t OPS_M[8]
cdef uint8_t OPS_LOAD[8]
cdef uint8_t OPS_BRANCH[8]
cdef uint8_t OPS_IMM[8]
cdef uint8_t OPS_W_DIV[4]
cdef uint8_t OPS_C_ALU[6]
OPS_IMM[:] = [OP_ADDI, OP_GENERIC, OP_SLTI, OP_SLTIU, OP_XORI, OP_GENERIC, OP_ORI, OP_ANDI]
OPS_W_DIV[:] = [OP_DIVW, OP_DIVUW, OP_REMW, OP_REMUW]
OPS_C_ALU[:] = [OP_C_SUB, OP_C_XOR, OP_C_OR, OP_C_AND, OP_C_SUBW, OP_C_ADDW]
OPS_OP[:] = [OP_ADD, OP_SLL, OP_SLT, OP_SLTU, OP_XOR, OP_SRL, OP_OR, OP_AND]
OPS_M[:] = [OP_MUL, OP_MULH, OP_MULHSU, OP_MULHU, OP_DIV, OP_DIVU, OP_REM, OP_REMU]
OPS_LOAD[:] = [OP_LB, OP_LH, OP_LW, OP_LD, OP_LBU, OP_LHU, OP_LWU, OP_GENERIC]
OPS_BRANCH[:] = [OP_BEQ, OP_BNE, OP_GENERIC, OP_GENERIC, OP_BLT, OP_BGE, OP_BLTU, OP_BGEU]


cdef void code_invalidate(Decoded* page, uint32_t off, uint32_t size) noexcept nogil:
    """Drop the decoded slots that bytes [off, off+size) of the page may belong to."""
    cdef int first = (<int>off - 2) >> 1
    cdef int last = (<int>(off + size) - 1) >> 1
    cdef int i
    if first < 0:
        first = 0
    if last >= SLOTS:
        last = SLOTS - 1
    for i in range(first, last + 1):
        page[i].op = OP_UNDECODED


cdef inline bint code_written(HartState* s, uint64_t pa, uint32_t size) noexcept nogil:
    """A write of size bytes at guest-physical pa: drop the decoded slots it overwrites.

    True if pa's page holds decoded instructions (its stores must not be cached)."""
    cdef uint64_t off = pa - s.ram_base
    cdef Decoded* page
    if off >= s.ram_size:
        return 0
    page = s.code[off >> 12]
    if page == NULL:
        return 0
    code_invalidate(page, <uint32_t>(off & PAGE_MASK), size)
    return 1


cdef Decoded* code_page(HartState* s, uint64_t ppn) noexcept nogil:
    """The decoded-slot array of RAM page ppn, made on first use (NULL if out of memory)."""
    cdef Decoded* page = s.code[ppn]
    cdef int p
    if page == NULL:
        page = <Decoded*>calloc(SLOTS + 1, sizeof(Decoded))
        if page == NULL:
            return NULL
        page[SLOTS].op = OP_PAGE_END
        s.code[ppn] = page
        # stores to this page must now take the slow path, which invalidates: this
        # vCPU drops its store entries now, the others when they next run
        flush_store_tlb(s)
        s.code_gen[0] += 1
        s.code_gen_seen = s.code_gen[0]
    return page


cdef inline void dset(Decoded* d, uint8_t op, uint32_t rd, uint32_t rs1, uint32_t rs2,
                      int64_t imm) noexcept nogil:
    d.op = op
    d.rd = <uint8_t>(rd if rd else 32)
    d.rs1 = <uint8_t>rs1
    d.rs2 = <uint8_t>rs2
    d.imm = <int32_t>imm


cdef void decode32(uint32_t insn, Decoded* d) noexcept nogil:
    """Pre-decode a 32-bit instruction into d (OP_GENERIC for what the fast path leaves alone)."""
    cdef uint32_t op = insn & 0x7f, rd = (insn >> 7) & 31, rs1 = (insn >> 15) & 31
    cdef uint32_t rs2 = (insn >> 20) & 31, f3 = (insn >> 12) & 7, f7 = insn >> 25
    cdef int64_t i_imm = <int64_t><int32_t>insn >> 20
    d.raw = insn
    d.step = 2
    dset(d, OP_GENERIC, rd, rs1, rs2, 0)
    if op == 0x13:
        if f3 == 1:
            if (insn >> 26) == 0:
                dset(d, OP_SLLI, rd, rs1, 0, (insn >> 20) & 63)
        elif f3 == 5:
            if (insn >> 26) == 0:
                dset(d, OP_SRLI, rd, rs1, 0, (insn >> 20) & 63)
            elif (insn >> 26) == 0x10:
                dset(d, OP_SRAI, rd, rs1, 0, (insn >> 20) & 63)
        else:
            dset(d, OPS_IMM[f3], rd, rs1, 0, i_imm)
    elif op == 0x33:
        if f7 == 0:
            dset(d, OPS_OP[f3], rd, rs1, rs2, 0)
        elif f7 == 1:
            dset(d, OPS_M[f3], rd, rs1, rs2, 0)
        elif f7 == 0x20 and f3 == 0:
            dset(d, OP_SUB, rd, rs1, rs2, 0)
        elif f7 == 0x20 and f3 == 5:
            dset(d, OP_SRA, rd, rs1, rs2, 0)
    elif op == 0x03:
        dset(d, OPS_LOAD[f3], rd, rs1, 0, i_imm)
    elif op == 0x23:
        if f3 <= 3:
            dset(d, OP_SB + f3, 0, rs1, rs2,
                 (<int64_t>(<int32_t>(insn & 0xfe000000u)) >> 20) | ((insn >> 7) & 31))
    elif op == 0x63:
        dset(d, OPS_BRANCH[f3], 0, rs1, rs2,
             (<int64_t>(<int32_t>(insn & 0x80000000u)) >> 19) | ((insn & 0x80) << 4) |
             ((insn >> 20) & 0x7e0) | ((insn >> 7) & 0x1e))
    elif op == 0x1b:
        if f3 == 0:
            dset(d, OP_ADDIW, rd, rs1, 0, i_imm)
        elif f3 == 1 and f7 == 0:
            dset(d, OP_SLLIW, rd, rs1, 0, rs2)
        elif f3 == 5 and f7 == 0:
            dset(d, OP_SRLIW, rd, rs1, 0, rs2)
        elif f3 == 5 and f7 == 0x20:
            dset(d, OP_SRAIW, rd, rs1, 0, rs2)
    elif op == 0x3b:
        if f7 == 0 and f3 == 0:
            dset(d, OP_ADDW, rd, rs1, rs2, 0)
        elif f7 == 0x20 and f3 == 0:
            dset(d, OP_SUBW, rd, rs1, rs2, 0)
        elif f7 == 0 and f3 == 1:
            dset(d, OP_SLLW, rd, rs1, rs2, 0)
        elif f7 == 0 and f3 == 5:
            dset(d, OP_SRLW, rd, rs1, rs2, 0)
        elif f7 == 0x20 and f3 == 5:
            dset(d, OP_SRAW, rd, rs1, rs2, 0)
        elif f7 == 1 and f3 == 0:
            dset(d, OP_MULW, rd, rs1, rs2, 0)
        elif f7 == 1 and f3 >= 4:
            dset(d, OPS_W_DIV[f3 - 4], rd, rs1, rs2, 0)
    elif op == 0x37:
        dset(d, OP_LUI, rd, 0, 0, <int32_t>(insn & 0xfffff000u))
    elif op == 0x17:
        dset(d, OP_AUIPC, rd, 0, 0, <int32_t>(insn & 0xfffff000u))
    elif op == 0x6f:
        dset(d, OP_JAL, rd, 0, 0,
             (<int64_t>(<int32_t>(insn & 0x80000000u)) >> 11) | (insn & 0xff000) |
             ((insn >> 9) & 0x800) | ((insn >> 20) & 0x7fe))
    elif op == 0x67:
        if f3 == 0:
            dset(d, OP_JALR, rd, rs1, 0, i_imm)
    elif op == 0x07:
        if f3 == 2 or f3 == 3:                   # FLW, FLD
            dset(d, OP_FPMEM, 0, rs1, 1 << f3, i_imm)
            d.rd = <uint8_t>rd
    elif op == 0x27:
        if f3 == 2 or f3 == 3:                   # FSW, FSD
            dset(d, OP_FPMEM, 0, rs1, (1 << f3) | FPMEM_STORE,
                 (<int64_t>(<int32_t>(insn & 0xfe000000u)) >> 20) | ((insn >> 7) & 31))
            d.rd = <uint8_t>rs2
    elif op == 0x53 or (op & 0x73) == 0x43:      # OP-FP; FMADD, FMSUB, FNMSUB, FNMADD
        f3 = fp_decode(insn)
        if f3:
            dset(d, OP_FP, 0, rs1, rs2, f3)
            d.rd = <uint8_t>rd
    elif op == 0x2f:
        f7 = insn >> 27                          # funct5
        if (f3 == 2 or f3 == 3) and ((f7 == 0x02 and rs2 == 0) or f7 == 0x03
                                     or (f7 & 3) == 0 or f7 == 0x01):
            dset(d, OP_AMO, rd, rs1, rs2, f7 | (0x100 if f3 == 3 else 0))
    elif op == 0x0f:
        if f3 <= 1:
            dset(d, OP_NOP, 0, 0, 0, 0)          # FENCE; FENCE.I (decoded slots follow stores)
    elif op == 0x73:
        if f3 == 2 and rs1 == 0 and (insn >> 20) >= 0xc00 and (insn >> 20) <= 0xc02:
            dset(d, OP_RDCOUNTER, rd, 0, 0, (insn >> 20) & 3)
        elif part_candidate(insn):      # imm: 1 for SFENCE.VMA and satp (the page is left)
            dset(d, OP_PRIV, 0, 0, 0, f3 == 0 or (insn >> 20) == 0x180)
    if d.op == OP_GENERIC:
        decode_ext32(insn, d)          # Zb*, Zicond, Zicbo* (bitmanip.pxi, cmo.pxi)


cdef void decode16(uint32_t insn, Decoded* d) noexcept nogil:
    """Pre-decode a compressed instruction as its 32-bit equivalent's operation."""
    cdef uint32_t op = ((insn >> 11) & 0x1c) | (insn & 3)
    cdef uint32_t rd = (insn >> 7) & 31, rs2 = (insn >> 2) & 31
    cdef uint32_t rdp = 8 + ((insn >> 2) & 7), rs1p = 8 + ((insn >> 7) & 7)
    cdef int64_t imm6 = <int64_t>(<int32_t>(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f)) << 26) >> 26
    cdef uint64_t imm
    cdef uint32_t f
    d.raw = insn
    d.step = 1
    dset(d, OP_GENERIC, 0, 0, 0, 0)
    if op == 0:                # C.ADDI4SPN
        imm = (((insn >> 7) & 0x30) | ((insn >> 1) & 0x3c0) | ((insn >> 4) & 4) | ((insn >> 2) & 8))
        if imm:
            dset(d, OP_C_ADDI, rdp, 2, 0, <int64_t>imm)
    elif op == 8:              # C.LW
        dset(d, OP_C_LW, rdp, rs1p, 0,
             ((insn >> 7) & 0x38) | ((insn << 1) & 0x40) | ((insn >> 4) & 4))
    elif op == 12:             # C.LD
        dset(d, OP_C_LD, rdp, rs1p, 0, ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0))
    elif op == 24:             # C.SW
        dset(d, OP_C_SW, 0, rs1p, rdp,
             ((insn >> 7) & 0x38) | ((insn << 1) & 0x40) | ((insn >> 4) & 4))
    elif op == 28:             # C.SD
        dset(d, OP_C_SD, 0, rs1p, rdp, ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0))
    elif op == 4 or op == 20:  # C.FLD, C.FSD
        dset(d, OP_FPMEM, rdp, rs1p, 8 if op == 4 else 8 | FPMEM_STORE,
             ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0))
    elif op == 6:              # C.FLDSP (f0 too: no redirect)
        dset(d, OP_FPMEM, 0, 2, 8,
             ((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0))
        d.rd = <uint8_t>rd
    elif op == 22:             # C.FSDSP
        dset(d, OP_FPMEM, 0, 2, 8 | FPMEM_STORE, ((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0))
        d.rd = <uint8_t>rs2
    elif op == 1:              # C.ADDI
        dset(d, OP_C_ADDI, rd, rd, 0, imm6)
    elif op == 5:              # C.ADDIW
        if rd:
            dset(d, OP_C_ADDIW, rd, rd, 0, imm6)
    elif op == 9:              # C.LI
        dset(d, OP_C_ADDI, rd, 0, 0, imm6)
    elif op == 13:             # C.ADDI16SP / C.LUI
        if rd == 2:
            imm = (((insn >> 3) & 0x200) | ((insn >> 2) & 0x10) | ((insn << 1) & 0x40) |
                   ((insn << 4) & 0x180) | ((insn << 3) & 0x20))
            if imm:
                dset(d, OP_C_ADDI, 2, 2, 0, <int64_t>(imm << 54) >> 54)
        else:
            imm = ((insn << 5) & 0x20000) | ((insn << 10) & 0x1f000)
            if imm:
                dset(d, OP_C_LUI, rd, 0, 0, <int64_t>(imm << 46) >> 46)
    elif op == 17:             # MISC-ALU
        f = (insn >> 10) & 3
        if f == 0:
            dset(d, OP_C_SRLI, rs1p, rs1p, 0, ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f))
        elif f == 1:
            dset(d, OP_C_SRAI, rs1p, rs1p, 0, ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f))
        elif f == 2:
            dset(d, OP_C_ANDI, rs1p, rs1p, 0, imm6)
        else:
            f = ((insn >> 10) & 4) | ((insn >> 5) & 3)
            if f < 6:
                dset(d, OPS_C_ALU[f], rs1p, rs1p, rdp, 0)
    elif op == 21:             # C.J
        imm = (((insn >> 1) & 0x800) | ((insn >> 7) & 0x10) | ((insn >> 1) & 0x300) |
               ((insn << 2) & 0x400) | ((insn >> 1) & 0x40) | ((insn << 1) & 0x80) |
               ((insn >> 2) & 0xe) | ((insn << 3) & 0x20))
        dset(d, OP_C_JAL, 0, 0, 0, <int64_t>(imm << 52) >> 52)
    elif op == 25 or op == 29:     # C.BEQZ, C.BNEZ
        imm = (((insn >> 4) & 0x100) | ((insn >> 7) & 0x18) | ((insn << 1) & 0xc0) |
               ((insn >> 2) & 6) | ((insn << 3) & 0x20))
        dset(d, OP_C_BEQ if op == 25 else OP_C_BNE, 0, rs1p, 0, <int64_t>(imm << 55) >> 55)
    elif op == 2:              # C.SLLI
        dset(d, OP_C_SLLI, rd, rd, 0, ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f))
    elif op == 10:             # C.LWSP
        if rd:
            dset(d, OP_C_LW, rd, 2, 0,
                 ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1c) | ((insn << 4) & 0xc0))
    elif op == 14:             # C.LDSP
        if rd:
            dset(d, OP_C_LD, rd, 2, 0,
                 ((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0))
    elif op == 18:
        if not (insn & 0x1000):
            if rs2 == 0:
                if rd:
                    dset(d, OP_C_JALR, 0, rd, 0, 0)          # C.JR
            else:
                dset(d, OP_C_ADD, rd, 0, rs2, 0)             # C.MV
        elif rs2 == 0:
            if rd:
                dset(d, OP_C_JALR, 1, rd, 0, 0)              # C.JALR (C.EBREAK stays generic)
        else:
            dset(d, OP_C_ADD, rd, rd, rs2, 0)                # C.ADD
    elif op == 26:             # C.SWSP
        dset(d, OP_C_SW, 0, 2, rs2, ((insn >> 7) & 0x3c) | ((insn >> 1) & 0xc0))
    elif op == 30:             # C.SDSP
        dset(d, OP_C_SD, 0, 2, rs2, ((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0))


cdef void decode_slot(Decoded* d, uint8_t* hp, uint32_t off) noexcept nogil:
    """Decode the instruction at byte off of the page at host address hp into slot d,
    with its in-page jump target as a slot delta (JUMP_OUT if it leaves the page)."""
    cdef uint16_t half
    cdef uint32_t word
    cdef uint64_t target
    memcpy(&half, hp + off, 2)
    if (half & 3) != 3:
        decode16(half, d)
    elif off != 0xffe:
        memcpy(&word, hp + off, 4)
        decode32(word, d)
    else:
        d.op = OP_GENERIC           # straddles two pages
        d.step = 2
    d.jump = JUMP_OUT
    if (d.op >= OP_BEQ and d.op <= OP_BGEU) or d.op == OP_JAL or d.op == OP_C_BEQ \
            or d.op == OP_C_BNE or d.op == OP_C_JAL:
        target = <uint64_t>(<int64_t>off + <int64_t>d.imm)      # target offset in the page
        if target < 4096:
            d.jump = <int16_t>(<int64_t>d.imm >> 1)
