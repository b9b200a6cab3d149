# Debug triggers (Sdtrig, riscv-debug-spec "Sdtrig"): address matches on instruction
# execution, loads and stores that raise a breakpoint exception before the
# instruction runs (timing "before": nothing of it is done).
#
# The trigger CSRs live in the virtual CSR file (hvemu/hypervisor/triggers.py); the
# hypervisor pushes, with `VCpu.set_triggers`, what matching needs: per trigger its
# compare value, kinds, match mode, size, chain bit, and whether it can fire at the
# current privilege and interrupt-enable state (TRIG_ARMED).  Triggers are rare
# (debuggers, tests), so while any is armed the core runs the reference interpreter,
# which calls `trig_check` before each instruction; when none is, the fast path pays
# nothing.

cdef enum:
    TRIG_LOAD = 1           # Trigger.flags: the mcontrol6 load/store/execute bits
    TRIG_STORE = 2
    TRIG_EXEC = 4
    TRIG_ARMED = 8          # may fire now (its m/s/u bit for this privilege, MIE/SIE)
    TRIG_CHAIN = 16         # mcontrol6.chain: fires only together with the next one
    TRIG_CBO = 32           # may match cache-block operations (type 6, size any)
    CAUSE_BREAKPOINT = 3

TRIGGER_COUNT = TRIG_MAX
TRIGGER_LOAD, TRIGGER_STORE, TRIGGER_EXEC = TRIG_LOAD, TRIG_STORE, TRIG_EXEC
TRIGGER_ARMED, TRIGGER_CHAIN, TRIGGER_CBO = TRIG_ARMED, TRIG_CHAIN, TRIG_CBO


cdef uint32_t insn_access(uint64_t* x, uint32_t insn, uint64_t* lo, uint32_t* size,
                          uint64_t* ea) noexcept nogil:
    """The data access insn would make: TRIG_LOAD and/or TRIG_STORE (| TRIG_CBO for a
    cache-block operation), or 0 for none.  [lo, lo + size) are the bytes it touches
    (the whole block for a cbo.*), ea its effective address (what tval reports).

    Every load and store counts, the FP ones too (whether or not F/D runs them); an
    AMO is both; LR a load, SC a store; prefetch hints (ORI) are none."""
    cdef uint32_t op, f3, q
    cdef uint64_t off
    if (insn & 3) != 3:
        q = insn & 3
        f3 = (insn >> 13) & 7
        if q == 0:            # C.FLD C.LW C.LD / C.FSD C.SW C.SD, base rs1'
            if f3 == 2 or f3 == 6:
                off = ((insn >> 7) & 0x38) | ((insn << 1) & 0x40) | ((insn >> 4) & 4)
                size[0] = 4
            elif f3 & 1:
                off = ((insn >> 7) & 0x38) | ((insn << 1) & 0xc0)
                size[0] = 8
            else:
                return 0
            lo[0] = ea[0] = x[8 + ((insn >> 7) & 7)] + off
            return TRIG_STORE if f3 >= 5 else TRIG_LOAD
        if q == 2:            # C.FLDSP C.LWSP C.LDSP / C.FSDSP C.SWSP C.SDSP, base sp
            if f3 == 2:
                off = ((insn >> 7) & 0x20) | ((insn >> 2) & 0x1c) | ((insn << 4) & 0xc0)
                size[0] = 4
            elif f3 == 1 or f3 == 3:
                off = ((insn >> 7) & 0x20) | ((insn >> 2) & 0x18) | ((insn << 4) & 0x1c0)
                size[0] = 8
            elif f3 == 6:
                off = ((insn >> 7) & 0x3c) | ((insn >> 1) & 0xc0)
                size[0] = 4
            elif f3 == 5 or f3 == 7:
                off = ((insn >> 7) & 0x38) | ((insn >> 1) & 0x1c0)
                size[0] = 8
            else:
                return 0
            lo[0] = ea[0] = x[2] + off
            return TRIG_STORE if f3 >= 5 else TRIG_LOAD
        return 0
    op = insn & 0x7f
    f3 = (insn >> 12) & 7
    if op == 0x03 and f3 != 7:                       # LOAD
        size[0] = 1 << (f3 & 3)
        lo[0] = ea[0] = x[(insn >> 15) & 31] + <uint64_t>(<int64_t><int32_t>insn >> 20)
        return TRIG_LOAD
    if op == 0x07 and f3 >= 1 and f3 <= 4:           # LOAD-FP: FLH FLW FLD FLQ
        size[0] = 1 << f3
        lo[0] = ea[0] = x[(insn >> 15) & 31] + <uint64_t>(<int64_t><int32_t>insn >> 20)
        return TRIG_LOAD
    if (op == 0x23 and f3 <= 3) or (op == 0x27 and f3 >= 1 and f3 <= 4):    # STORE, STORE-FP
        size[0] = 1 << f3
        lo[0] = ea[0] = x[(insn >> 15) & 31] + <uint64_t>(
            (<int64_t>(<int32_t>(insn & 0xfe000000u)) >> 20) | ((insn >> 7) & 31))
        return TRIG_STORE
    if op == 0x2f and (f3 == 2 or f3 == 3):          # LR, SC, AMO*
        size[0] = 4 if f3 == 2 else 8
        lo[0] = ea[0] = x[(insn >> 15) & 31]
        if (insn >> 27) == 2:
            return TRIG_LOAD
        if (insn >> 27) == 3:
            return TRIG_STORE
        return TRIG_LOAD | TRIG_STORE
    if op == 0x0f and f3 == 2:                       # cbo.*: a store of the whole block
        ea[0] = x[(insn >> 15) & 31]
        lo[0] = ea[0] & ~<uint64_t>(CBO_BLOCK - 1)
        size[0] = CBO_BLOCK
        return TRIG_STORE | TRIG_CBO
    return 0


cdef bint trig_match(Trigger* t, uint64_t lo, uint32_t n) noexcept nogil:
    """Does some compare value in [lo, lo + n) match t (mcontrol6.match)?"""
    cdef uint64_t t2 = t.tdata2, ignore, base, v
    cdef uint32_t kind = t.match & 7, i
    cdef bint r = 0
    if kind == 0:                     # equal
        r = t2 - lo < n
    elif kind == 1:                   # napot: the bits above tdata2's lowest 0 bit
        ignore = t2 ^ (t2 + 1)
        base = t2 & ~ignore
        r = lo <= (base | ignore) and lo + (n - 1) >= base
    elif kind == 2:                   # greater than or equal (unsigned)
        r = lo + (n - 1) >= t2
    elif kind == 3:                   # less than (unsigned)
        r = lo < t2
    else:                             # 4, 5: mask low / mask high
        for i in range(n):
            v = lo + i
            if kind == 5:
                v >>= 32
            if (v & (t2 >> 32) & 0xffffffffu) == (t2 & 0xffffffffu):
                r = 1
                break
    if t.match & 8:                   # 8, 9, 12, 13: the negations
        r = not r
    return r


cdef bint dbg_exec_check(HartState* s, uint64_t pc) noexcept nogil:
    """A debugger breakpoint on pc: the exit record says EXIT_DEBUG (nothing else changes)."""
    cdef uint32_t i
    for i in range(s.dbg_n):
        if (s.dbg[i].kind & TRIG_EXEC) and s.dbg[i].lo <= pc < s.dbg[i].hi:
            s.exit.reason = EXIT_DEBUG
            s.exit.pc = pc
            s.exit.cause = TRIG_EXEC
            s.exit.tval = pc
            s.exit.addr = pc
            return 1
    return 0


cdef bint dbg_exec_page(HartState* s, uint64_t pc) noexcept nogil:
    """Whether the page holding pc has a debugger breakpoint (the fast path runs such a
    page in the reference interpreter, which checks every pc)."""
    cdef uint32_t i
    cdef uint64_t page = pc & ~<uint64_t>PAGE_MASK
    for i in range(s.dbg_n):
        if (s.dbg[i].kind & TRIG_EXEC) and page < s.dbg[i].hi and s.dbg[i].lo < page + 4096:
            return 1
    return 0


cdef int dbg_data_check(HartState* s, uint64_t va, uint32_t size, int acc) noexcept nogil:
    """For tlb_fill: 1 if the access [va, va + size) touches a watchpoint of its kind
    (the exit record then says EXIT_DEBUG), 2 if only its page does (do not cache the
    page), 0 if neither."""
    cdef uint32_t i, kind = TRIG_LOAD if acc == ACC_LOAD else TRIG_STORE
    cdef uint64_t page = va & ~<uint64_t>PAGE_MASK
    cdef int r = 0
    for i in range(s.dbg_n):
        if not (s.dbg[i].kind & kind):
            continue
        if va < s.dbg[i].hi and s.dbg[i].lo < va + size:
            s.exit.reason = EXIT_DEBUG
            s.exit.cause = kind
            s.exit.tval = va if va > s.dbg[i].lo else s.dbg[i].lo
            s.exit.addr = s.exit.tval
            return 1
        if page < s.dbg[i].hi and s.dbg[i].lo < page + 4096:
            r = 2
    return r


cdef int dbg_load(HartState* s, object points) except -1:
    """Fill s.dbg from [(lo, hi, kind), ...] (VCpu.set_debug_points)."""
    cdef uint32_t n = len(points), i
    if n > DBG_MAX:
        raise ValueError(f"at most {DBG_MAX} debugger breakpoints and watchpoints")
    s.dbg_exec = s.dbg_data = 0
    for i in range(n):
        lo, hi, kind = points[i]
        s.dbg[i].lo = lo
        s.dbg[i].hi = hi
        s.dbg[i].kind = kind
        if kind & TRIG_EXEC:
            s.dbg_exec = 1
        if kind & (TRIG_LOAD | TRIG_STORE):
            s.dbg_data = 1
    s.dbg_n = n
    return 0


cdef bint trig_check(HartState* s, uint64_t pc, uint32_t insn, uint32_t ilen) noexcept nogil:
    """Before the instruction insn (ilen bytes) at pc runs: True if triggers fire, and
    then the exit record holds the breakpoint exception (tval: the pc, or the
    accessed address) and s.exit.value the mask of the triggers that fired.
    ilen 0: fetching failed, and only execute triggers of any size can match.

    A chain (triggers with chain=1 and the first after them with chain=0) fires when
    all its triggers match this instruction; a trigger that cannot fire now does
    not match."""
    cdef uint64_t lo = 0, ea = 0, tval = 0, chain_tval = 0
    cdef uint32_t size = 0, acc = 0, fired = 0, group = 0, i
    cdef bint all_match = 1, m
    cdef Trigger* t
    if s.dbg_exec and dbg_exec_check(s, pc):      # the debugger's come first
        return 1
    if ilen:
        acc = insn_access(s.x, insn, &lo, &size, &ea)
    for i in range(s.trig_n):
        t = &s.trig[i]
        m = 0
        if t.flags & TRIG_ARMED:
            if ((t.flags & TRIG_EXEC) and (t.size == 0 or t.size == ilen)
                    and trig_match(t, pc, ilen if ilen else 2)):
                m = 1
                chain_tval = pc
            elif ((t.flags & acc & (TRIG_LOAD | TRIG_STORE))
                  and (not (acc & TRIG_CBO) or (t.flags & TRIG_CBO))
                  and (t.size == 0 or t.size == size) and trig_match(t, lo, size)):
                m = 1
                chain_tval = ea
        group |= <uint32_t>1 << i
        all_match = all_match and m
        if not (t.flags & TRIG_CHAIN):
            if all_match:
                if not fired:
                    tval = chain_tval
                fired |= group
            group = 0
            all_match = 1
    if not fired:
        return 0
    set_exception(s, pc, CAUSE_BREAKPOINT, tval)
    s.exit.value = fired
    return 1


cdef int trig_fetch_failed(HartState* s, uint64_t pc) noexcept nogil:
    """The fetch at pc failed (its exception is in the exit record): an execute trigger
    on pc comes first (Sdtrig, "Priority").  Returns the exit reason."""
    cdef uint64_t cause = s.exit.cause
    cdef uint32_t reason = s.exit.reason
    if trig_check(s, pc, 0, 0):
        if cause == CAUSE_FETCH_PAGE and reason == EXIT_EXCEPTION:
            s.page_faults -= 1           # that fault is not taken after all
        return s.exit.reason             # EXIT_EXCEPTION, or EXIT_DEBUG for the debugger's
    return s.exit.reason


cdef int trig_load(HartState* s, object triggers) except -1:
    """Fill s.trig from [(tdata2, flags, match, size), ...] (VCpu.set_triggers)."""
    cdef uint32_t n = len(triggers), i, armed = 0
    if n > TRIG_MAX:
        raise ValueError(f"at most {TRIG_MAX} triggers")
    for i in range(n):
        tdata2, flags, match, size = triggers[i]
        s.trig[i].tdata2 = tdata2
        s.trig[i].flags = flags
        s.trig[i].match = match
        s.trig[i].size = size
        if s.trig[i].flags & TRIG_ARMED:
            armed = 1
    s.trig_n = n
    s.trig_armed = armed
    return 0
