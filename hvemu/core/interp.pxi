# The reference interpreter: fetch, decode and execute one instruction at a time
# (unprivileged spec: RV64I, M, A, F, D, C, and through bitmanip.pxi and cmo.pxi Zba,
# Zbb, Zbc, Zbs, Zicond, Zicbom, Zicboz; every SYSTEM instruction exits).  It is what
# `--reference` runs, and the fast path hands it whatever it does not do itself.

cdef int run_generic(HartState* s, uint64_t n) noexcept nogil:
    """Decode and execute up to n instructions, one at a time; return the exit reason.

    The reference interpreter: every instruction is fetched and decoded afresh.
    The pre-decoded fast path (`run_loop`) hands it whatever it does not do
    itself.  Each instruction either completes (pc and instret advance) or exits
    with pc still pointing at it, so that the hypervisor can emulate or reflect it."""
    cdef uint64_t* x = s.x
    cdef uint64_t pc = s.pc
    cdef uint64_t left = n
    cdef uint64_t fpage = TLB_INVALID, faddend = 0
    cdef uint64_t a, b, v, addr, imm
    cdef uint32_t insn, op, f3, f7, rd, rs1, rs2
    cdef int64_t simm
    cdef uint8_t* p
    cdef uint16_t half
    cdef int reason = EXIT_BUDGET, fr
    cdef TlbEntry* e

    while left:
        x[0] = 0
        s.exit.pc = pc
        # ---- fetch ----
        if (pc >> 12) != fpage:
            e = &s.tlb[tlb_set(s.priv)][ACC_FETCH][(pc >> 12) & TLB_MASK]
            if e.tag != (pc >> 12):
                if tlb_fill(s, pc, ACC_FETCH, 2, &p) != MEM_OK:
                    reason = (trig_fetch_failed(s, pc) if s.trig_armed or s.dbg_exec
                              else s.exit.reason)
                    break
            fpage = pc >> 12
            faddend = e.addend
        p = <uint8_t*><uintptr_t>(faddend + pc)
        memcpy(&half, p, 2)
        if (half & 3) != 3:
            insn = half
        elif (pc & PAGE_MASK) != 0xffe:
            memcpy(&insn, p, 4)
        else:
            if fetch_slow(s, pc, &insn) != MEM_OK:
                reason = (trig_fetch_failed(s, pc) if s.trig_armed or s.dbg_exec
                              else s.exit.reason)
                break
        if ((s.trig_armed or s.dbg_exec)
                and trig_check(s, pc, insn, 4 if (insn & 3) == 3 else 2)):
            reason = s.exit.reason           # a debug trigger fired, or the debugger's point
            break

        if (insn & 3) != 3:
            # ============ RVC (unprivileged spec, "C" extension) ============
            op = ((insn >> 11) & 0x1c) | (insn & 3)     # funct3 << 2 | quadrant
            rd = (insn >> 7) & 31
            if op == 0:      # C.ADDI4SPN
                imm = (((insn >> 7) & 0x30) | ((insn >> 1) & 0x3c0) |
                       ((insn >> 4) & 4) | ((insn >> 2) & 8))
                if imm == 0:
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
                x[8 + ((insn >> 2) & 7)] = x[2] + imm
            elif op == 8 or op == 12:     # C.LW, C.LD
                addr = x[8 + ((insn >> 7) & 7)]
                rd = 8 + ((insn >> 2) & 7)
                if op == 8:
                    addr += ((insn >> 7) & 0x38) | ((insn << 1) & 0x40) | ((insn >> 4) & 4)
                    p = tlb_lookup(s, addr, ACC_LOAD, 4)
                    if p != NULL:
                        memcpy(&v, p, 4)
                    elif load_slow(s, addr, 4, &v) != MEM_OK:
                        s.exit.rd = rd
                        s.exit.is_signed = 1
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
                    x[rd] = <uint64_t>sx32(v)
                else:
                    addr += ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)
                    p = tlb_lookup(s, addr, ACC_LOAD, 8)
                    if p != NULL:
                        memcpy(&v, p, 8)
                    elif load_slow(s, addr, 8, &v) != MEM_OK:
                        s.exit.rd = rd
                        s.exit.is_signed = 1
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
                    x[rd] = v
            elif op == 24 or op == 28:     # C.SW, C.SD
                addr = x[8 + ((insn >> 7) & 7)]
                v = x[8 + ((insn >> 2) & 7)]
                if op == 24:
                    addr += ((insn >> 7) & 0x38) | ((insn << 1) & 0x40) | ((insn >> 4) & 4)
                    p = tlb_lookup(s, addr, ACC_STORE, 4)
                    if p != NULL:
                        memcpy(p, &v, 4)
                    elif store_slow(s, addr, 4, v) != MEM_OK:
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
                else:
                    addr += ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)
                    p = tlb_lookup(s, addr, ACC_STORE, 8)
                    if p != NULL:
                        memcpy(p, &v, 8)
                    elif store_slow(s, addr, 8, v) != MEM_OK:
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
            elif op == 1:    # C.ADDI (C.NOP)
                simm = <int64_t>(<int32_t>(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f)) << 26) >> 26
                x[rd] = x[rd] + <uint64_t>simm
            elif op == 5:    # C.ADDIW
                if rd == 0:
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
                simm = <int64_t>(<int32_t>(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f)) << 26) >> 26
                x[rd] = <uint64_t>sx32(x[rd] + <uint64_t>simm)
            elif op == 9:    # C.LI
                simm = <int64_t>(<int32_t>(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f)) << 26) >> 26
                x[rd] = <uint64_t>simm
            elif op == 13:   # C.ADDI16SP / C.LUI
                if rd == 2:
                    imm = (((insn >> 3) & 0x200) | ((insn >> 2) & 0x10) | ((insn << 1) & 0x40) |
                           ((insn << 4) & 0x180) | ((insn << 3) & 0x20))
                    simm = <int64_t>(imm << 54) >> 54
                else:
                    imm = ((insn << 5) & 0x20000) | ((insn << 10) & 0x1f000)
                    simm = <int64_t>(imm << 46) >> 46
                if imm == 0:
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
                if rd == 2:
                    x[2] = x[2] + <uint64_t>simm
                else:
                    x[rd] = <uint64_t>simm
            elif op == 17:   # MISC-ALU
                rd = 8 + ((insn >> 7) & 7)
                f3 = (insn >> 10) & 3
                if f3 == 0:      # C.SRLI
                    x[rd] = x[rd] >> (((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f))
                elif f3 == 1:    # C.SRAI
                    x[rd] = <uint64_t>(<int64_t>x[rd] >> (((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f)))
                elif f3 == 2:    # C.ANDI
                    simm = <int64_t>(<int32_t>(((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f)) << 26) >> 26
                    x[rd] = x[rd] & <uint64_t>simm
                else:
                    b = x[8 + ((insn >> 2) & 7)]
                    f7 = ((insn >> 10) & 4) | ((insn >> 5) & 3)
                    if f7 == 0:
                        x[rd] = x[rd] - b
                    elif f7 == 1:
                        x[rd] = x[rd] ^ b
                    elif f7 == 2:
                        x[rd] = x[rd] | b
                    elif f7 == 3:
                        x[rd] = x[rd] & b
                    elif f7 == 4:
                        x[rd] = <uint64_t>sx32(x[rd] - b)
                    elif f7 == 5:
                        x[rd] = <uint64_t>sx32(x[rd] + b)
                    else:
                        set_exception(s, pc, CAUSE_ILLEGAL, insn)
                        reason = EXIT_EXCEPTION
                        break
            elif op == 21:   # C.J
                imm = (((insn >> 1) & 0x800) | ((insn >> 7) & 0x10) | ((insn >> 1) & 0x300) |
                       ((insn << 2) & 0x400) | ((insn >> 1) & 0x40) | ((insn << 1) & 0x80) |
                       ((insn >> 2) & 0xe) | ((insn << 3) & 0x20))
                pc += <uint64_t>(<int64_t>(imm << 52) >> 52)
                left -= 1
                continue
            elif op == 25 or op == 29:    # C.BEQZ, C.BNEZ
                a = x[8 + ((insn >> 7) & 7)]
                if (a == 0) == (op == 25):
                    imm = (((insn >> 4) & 0x100) | ((insn >> 7) & 0x18) | ((insn << 1) & 0xc0) |
                           ((insn >> 2) & 6) | ((insn << 3) & 0x20))
                    pc += <uint64_t>(<int64_t>(imm << 55) >> 55)
                    left -= 1
                    continue
            elif op == 2:    # C.SLLI
                x[rd] = x[rd] << (((insn >> 7) & 0x20) | ((insn >> 2) & 0x1f))
            elif op == 10 or op == 14:     # C.LWSP, C.LDSP
                if rd == 0:
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
                if op == 10:
                    addr = x[2] + (((insn >> 7) & 0x20) | ((insn >> 2) & 0x1c) | ((insn << 4) & 0xc0))
                    p = tlb_lookup(s, addr, ACC_LOAD, 4)
                    if p != NULL:
                        memcpy(&v, p, 4)
                    elif load_slow(s, addr, 4, &v) != MEM_OK:
                        s.exit.rd = rd
                        s.exit.is_signed = 1
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
                    x[rd] = <uint64_t>sx32(v)
                else:
                    addr = x[2] + (((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0))
                    p = tlb_lookup(s, addr, ACC_LOAD, 8)
                    if p != NULL:
                        memcpy(&v, p, 8)
                    elif load_slow(s, addr, 8, &v) != MEM_OK:
                        s.exit.rd = rd
                        s.exit.is_signed = 1
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
                    x[rd] = v
            elif op == 18:   # C.JR, C.MV, C.EBREAK, C.JALR, C.ADD
                rs2 = (insn >> 2) & 31
                if not (insn & 0x1000):
                    if rs2 == 0:          # C.JR
                        if rd == 0:
                            set_exception(s, pc, CAUSE_ILLEGAL, insn)
                            reason = EXIT_EXCEPTION
                            break
                        pc = x[rd] & ~<uint64_t>1
                        left -= 1
                        continue
                    x[rd] = x[rs2]        # C.MV
                elif rs2 == 0:
                    if rd == 0:           # C.EBREAK: the hypervisor's, as EBREAK
                        s.exit.insn = 0x00100073
                        s.exit.insn_len = 2
                        reason = EXIT_SYSTEM
                        break
                    a = x[rd]             # C.JALR
                    x[1] = pc + 2
                    pc = a & ~<uint64_t>1
                    left -= 1
                    continue
                else:
                    x[rd] = x[rd] + x[rs2]    # C.ADD
            elif op == 26 or op == 30:    # C.SWSP, C.SDSP
                v = x[(insn >> 2) & 31]
                if op == 26:
                    addr = x[2] + (((insn >> 7) & 0x3c) | ((insn >> 1) & 0xc0))
                    p = tlb_lookup(s, addr, ACC_STORE, 4)
                    if p != NULL:
                        memcpy(p, &v, 4)
                    elif store_slow(s, addr, 4, v) != MEM_OK:
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
                else:
                    addr = x[2] + (((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0))
                    p = tlb_lookup(s, addr, ACC_STORE, 8)
                    if p != NULL:
                        memcpy(p, &v, 8)
                    elif store_slow(s, addr, 8, v) != MEM_OK:
                        s.exit.insn = insn
                        s.exit.insn_len = 2
                        reason = s.exit.reason
                        break
            elif op == 4 or op == 6 or op == 20 or op == 22:   # C.FLD, C.FLDSP, C.FSD, C.FSDSP
                fr = fp_load_store(s, insn, pc)
                if fr:
                    reason = fr
                    break
            else:            # reserved
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            pc += 2
            left -= 1
            continue

        # ============ 32-bit instructions (unprivileged spec, RV64I/M/A/F/D) ============
        op = insn & 0x7f
        rd = (insn >> 7) & 31
        rs1 = (insn >> 15) & 31
        rs2 = (insn >> 20) & 31
        f3 = (insn >> 12) & 7
        if op == 0x13:       # OP-IMM
            simm = <int64_t><int32_t>insn >> 20
            a = x[rs1]
            if f3 == 0:
                x[rd] = a + <uint64_t>simm
            elif f3 == 1:
                if insn >> 26 == 0:
                    x[rd] = a << ((insn >> 20) & 63)
                elif not bitmanip_exec(x, insn):         # Zbb, Zbs (bitmanip.pxi)
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
            elif f3 == 2:
                x[rd] = <int64_t>a < simm
            elif f3 == 3:
                x[rd] = a < <uint64_t>simm
            elif f3 == 4:
                x[rd] = a ^ <uint64_t>simm
            elif f3 == 5:
                f7 = insn >> 26
                if f7 == 0:
                    x[rd] = a >> ((insn >> 20) & 63)
                elif f7 == 0x10:
                    x[rd] = <uint64_t>(<int64_t>a >> ((insn >> 20) & 63))
                elif not bitmanip_exec(x, insn):
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
            elif f3 == 6:
                x[rd] = a | <uint64_t>simm
            else:
                x[rd] = a & <uint64_t>simm
        elif op == 0x33:     # OP
            a = x[rs1]
            b = x[rs2]
            f7 = insn >> 25
            if f7 == 0:
                if f3 == 0:
                    x[rd] = a + b
                elif f3 == 1:
                    x[rd] = a << (b & 63)
                elif f3 == 2:
                    x[rd] = <int64_t>a < <int64_t>b
                elif f3 == 3:
                    x[rd] = a < b
                elif f3 == 4:
                    x[rd] = a ^ b
                elif f3 == 5:
                    x[rd] = a >> (b & 63)
                elif f3 == 6:
                    x[rd] = a | b
                else:
                    x[rd] = a & b
            elif f7 == 0x20 and f3 == 0:
                x[rd] = a - b
            elif f7 == 0x20 and f3 == 5:
                x[rd] = <uint64_t>(<int64_t>a >> (b & 63))
            elif f7 == 1:
                if f3 == 0:
                    x[rd] = a * b
                elif f3 == 1:
                    x[rd] = hv_mulh(<int64_t>a, <int64_t>b)
                elif f3 == 2:
                    x[rd] = hv_mulhsu(<int64_t>a, b)
                elif f3 == 3:
                    x[rd] = hv_mulhu(a, b)
                elif f3 == 4:
                    x[rd] = op_div(<int64_t>a, <int64_t>b)
                elif f3 == 5:
                    x[rd] = op_divu(a, b)
                elif f3 == 6:
                    x[rd] = op_rem(<int64_t>a, <int64_t>b)
                else:
                    x[rd] = op_remu(a, b)
            elif not bitmanip_exec(x, insn):              # Zba, Zbb, Zbc, Zbs, Zicond
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
        elif op == 0x03:     # LOAD
            addr = x[rs1] + <uint64_t>(<int64_t><int32_t>insn >> 20)
            if f3 == 3:
                p = tlb_lookup(s, addr, ACC_LOAD, 8)
                if p != NULL:
                    memcpy(&v, p, 8)
                    x[rd] = v
                    pc += 4
                    left -= 1
                    continue
            elif f3 == 7:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            a = <uint64_t>1 << (f3 & 3)      # size
            p = tlb_lookup(s, addr, ACC_LOAD, <uint32_t>a)
            v = 0
            if p != NULL:
                memcpy(&v, p, a)
            elif load_slow(s, addr, <uint32_t>a, &v) != MEM_OK:
                s.exit.rd = rd
                s.exit.is_signed = f3 < 4
                s.exit.insn = insn
                s.exit.insn_len = 4
                reason = s.exit.reason
                break
            x[rd] = load_ext(v, <uint32_t>a, f3 < 4)
        elif op == 0x23:     # STORE
            addr = x[rs1] + <uint64_t>((<int64_t>(<int32_t>(insn & 0xfe000000u)) >> 20) |
                                       ((insn >> 7) & 31))
            if f3 > 3:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            a = <uint64_t>1 << f3
            v = x[rs2]
            p = tlb_lookup(s, addr, ACC_STORE, <uint32_t>a)
            if p != NULL:
                memcpy(p, &v, a)
            elif store_slow(s, addr, <uint32_t>a, v) != MEM_OK:
                s.exit.insn = insn
                s.exit.insn_len = 4
                reason = s.exit.reason
                break
        elif op == 0x63:     # BRANCH
            a = x[rs1]
            b = x[rs2]
            if f3 == 0:
                v = a == b
            elif f3 == 1:
                v = a != b
            elif f3 == 4:
                v = <int64_t>a < <int64_t>b
            elif f3 == 5:
                v = <int64_t>a >= <int64_t>b
            elif f3 == 6:
                v = a < b
            elif f3 == 7:
                v = a >= b
            else:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            if v:
                simm = ((<int64_t>(<int32_t>(insn & 0x80000000u)) >> 19) |
                        ((insn & 0x80) << 4) | ((insn >> 20) & 0x7e0) | ((insn >> 7) & 0x1e))
                pc += <uint64_t>simm
                left -= 1
                continue
        elif op == 0x1b:     # OP-IMM-32
            a = x[rs1]
            if f3 == 0:
                x[rd] = <uint64_t>sx32(a + <uint64_t>(<int64_t><int32_t>insn >> 20))
            elif f3 == 1 and (insn >> 25) == 0:
                x[rd] = <uint64_t>sx32(a << rs2)
            elif f3 == 5 and (insn >> 25) == 0:
                x[rd] = <uint64_t>sx32(<uint32_t>a >> rs2)
            elif f3 == 5 and (insn >> 25) == 0x20:
                x[rd] = <uint64_t><int64_t>(<int32_t>a >> rs2)
            elif not bitmanip_exec(x, insn):              # Zba, Zbb
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
        elif op == 0x3b:     # OP-32
            a = x[rs1]
            b = x[rs2]
            f7 = insn >> 25
            if f7 == 0 and f3 == 0:
                x[rd] = <uint64_t>sx32(a + b)
            elif f7 == 0x20 and f3 == 0:
                x[rd] = <uint64_t>sx32(a - b)
            elif f7 == 0 and f3 == 1:
                x[rd] = <uint64_t>sx32(a << (b & 31))
            elif f7 == 0 and f3 == 5:
                x[rd] = <uint64_t>sx32(<uint32_t>a >> (b & 31))
            elif f7 == 0x20 and f3 == 5:
                x[rd] = <uint64_t><int64_t>(<int32_t>a >> (b & 31))
            elif f7 == 1 and f3 == 0:
                x[rd] = <uint64_t>sx32(a * b)
            elif f7 == 1 and f3 == 4:
                x[rd] = op_divw(a, b)
            elif f7 == 1 and f3 == 5:
                x[rd] = op_divuw(a, b)
            elif f7 == 1 and f3 == 6:
                x[rd] = op_remw(a, b)
            elif f7 == 1 and f3 == 7:
                x[rd] = op_remuw(a, b)
            elif not bitmanip_exec(x, insn):              # Zba, Zbb
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
        elif op == 0x37:     # LUI
            x[rd] = <uint64_t><int64_t><int32_t>(insn & 0xfffff000u)
        elif op == 0x17:     # AUIPC
            x[rd] = pc + <uint64_t><int64_t><int32_t>(insn & 0xfffff000u)
        elif op == 0x6f:     # JAL
            simm = ((<int64_t>(<int32_t>(insn & 0x80000000u)) >> 11) | (insn & 0xff000) |
                    ((insn >> 9) & 0x800) | ((insn >> 20) & 0x7fe))
            x[rd] = pc + 4
            pc += <uint64_t>simm
            left -= 1
            continue
        elif op == 0x67:     # JALR
            if f3 != 0:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            a = (x[rs1] + <uint64_t>(<int64_t><int32_t>insn >> 20)) & ~<uint64_t>1
            x[rd] = pc + 4
            pc = a
            left -= 1
            continue
        elif op == 0x2f:     # AMO
            if f3 != 2 and f3 != 3:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            a = 4 if f3 == 2 else 8     # size
            addr = x[rs1]
            f7 = insn >> 27
            if f7 == 0x02:       # LR
                if rs2 != 0:
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
                p = amo_ptr(s, addr, <uint32_t>a, ACC_LOAD)
                if p == NULL:
                    reason = EXIT_EXCEPTION
                    break
                v = 0
                memcpy(&v, p, a)
                s.resv = <uintptr_t>p
                x[rd] = <uint64_t>sx32(v) if a == 4 else v
            elif f7 == 0x03:     # SC
                p = amo_ptr(s, addr, <uint32_t>a, ACC_STORE)
                if p == NULL:
                    reason = EXIT_EXCEPTION
                    break
                if s.resv == <uintptr_t>p:
                    v = x[rs2]
                    memcpy(p, &v, a)
                    x[rd] = 0
                else:
                    x[rd] = 1
                s.resv = 0
            elif (f7 & 0x3) == 0 or f7 == 0x01:
                p = amo_ptr(s, addr, <uint32_t>a, ACC_STORE)
                if p == NULL:
                    reason = EXIT_EXCEPTION
                    break
                v = 0
                memcpy(&v, p, a)
                b = amo_op(f7, v, x[rs2], a == 4)
                memcpy(p, &b, a)
                x[rd] = <uint64_t>sx32(v) if a == 4 else v
            else:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
        elif op == 0x0f:     # MISC-MEM: FENCE (PAUSE), FENCE.I (no caches), CBO (cmo.pxi)
            if f3 == 2:
                if cbo_exec(s, insn, x[rs1]) != MEM_OK:
                    reason = s.exit.reason
                    break
            elif f3 > 1:
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
        elif op == 0x07 or op == 0x27:      # LOAD-FP, STORE-FP (core/fp.pxi)
            fr = fp_load_store(s, insn, pc)
            if fr:
                reason = fr
                break
        elif op == 0x53 or (op & 0x73) == 0x43:     # OP-FP; FMADD, FMSUB, FNMSUB, FNMADD
            f3 = fp_decode(insn)
            if f3 == 0 or fp_execute(s, f3, rd, rs1, rs2):
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
        elif op == 0x73:     # SYSTEM: always the hypervisor's
            s.exit.insn = insn
            s.exit.insn_len = 4
            reason = EXIT_SYSTEM
            break
        else:
            set_exception(s, pc, CAUSE_ILLEGAL, insn)
            reason = EXIT_EXCEPTION
            break
        pc += 4
        left -= 1

    x[0] = 0
    s.exit.reason = reason
    s.instret += n - left
    if reason == EXIT_BUDGET:
        s.exit.pc = pc
    s.pc = pc
    return reason


