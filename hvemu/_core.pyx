# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The fast path: executes RV64IMAC guest code and walks guest page tables.

`VCpu.run()` executes guest instructions in a `nogil` C loop until something
needs the hypervisor, then returns an exit reason; the operands are in the exit
record (`exit_*` properties), like `struct kvm_run`.  The core never interprets
a privileged instruction: every SYSTEM-opcode instruction exits.  What it needs
to translate addresses (privilege, satp, SUM, MXR, MPRV) is pushed into it by the
hypervisor with `set_mode()`.

Guest memory is reached only through the shadow TLB: guest-virtual page -> host
address, filled on a miss by an Sv39/Sv48 walk of the guest's page tables that
sets A/D bits as hardware does.  A guest-physical address that is neither RAM nor
ROM is MMIO: it exits, and is never cached.
"""
import numpy as np

from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t,
                          uint32_t, uint64_t, uintptr_t, INT64_MIN)
from libc.string cimport memcpy, memset
from libc.stdlib cimport calloc, free

cdef extern from *:
    """
    typedef __int128 hv_i128;
    typedef unsigned __int128 hv_u128;
    static inline uint64_t hv_mulh(int64_t a, int64_t b) {
        return (uint64_t)(((hv_i128)a * (hv_i128)b) >> 64); }
    static inline uint64_t hv_mulhu(uint64_t a, uint64_t b) {
        return (uint64_t)(((hv_u128)a * (hv_u128)b) >> 64); }
    static inline uint64_t hv_mulhsu(int64_t a, uint64_t b) {
        return (uint64_t)(((hv_i128)a * (hv_i128)(hv_u128)b) >> 64); }
    """
    uint64_t hv_mulh(int64_t a, int64_t b) noexcept nogil
    uint64_t hv_mulhu(uint64_t a, uint64_t b) noexcept nogil
    uint64_t hv_mulhsu(int64_t a, uint64_t b) noexcept nogil

# Exit reasons, for Python.
BUDGET = EXIT_BUDGET
SYSTEM = EXIT_SYSTEM
EXCEPTION = EXIT_EXCEPTION
MMIO = EXIT_MMIO
FETCH, LOAD, STORE = ACC_FETCH, ACC_LOAD, ACC_STORE

# Exception causes raised by the core (privileged spec, table "mcause values").
cdef enum:
    CAUSE_FETCH_ACCESS = 1
    CAUSE_ILLEGAL = 2
    CAUSE_LOAD_MISALIGNED = 4
    CAUSE_LOAD_ACCESS = 5
    CAUSE_STORE_MISALIGNED = 6
    CAUSE_STORE_ACCESS = 7
    CAUSE_FETCH_PAGE = 12
    CAUSE_LOAD_PAGE = 13
    CAUSE_STORE_PAGE = 15

# PTE bits (privileged spec, Sv39 "Page table entry")
cdef enum:
    PTE_V = 1
    PTE_R = 2
    PTE_W = 4
    PTE_X = 8
    PTE_U = 16
    PTE_G = 32
    PTE_A = 64
    PTE_D = 128

# Results of a slow-path memory access.
cdef enum:
    MEM_OK = 0
    MEM_EXIT = 1          # the exit record is filled in (exception or MMIO)
    PAGE_MASK = 0xfff

cdef extern from *:
    """#define HV_TLB_INVALID (~(uint64_t)0)"""
    const uint64_t TLB_INVALID "HV_TLB_INVALID"



# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

cdef inline int64_t sx32(uint64_t v) noexcept nogil:
    return <int64_t><int32_t><uint32_t>v

cdef inline uint32_t tlb_set(uint32_t priv) noexcept nogil:
    # privilege 0 U, 1 S, 3 M -> TLB set 0, 1, 2
    return 2 if priv == 3 else priv

cdef inline void set_exception(HartState* s, uint64_t pc, uint64_t cause,
                               uint64_t tval) noexcept nogil:
    s.exit.reason = EXIT_EXCEPTION
    s.exit.pc = pc
    s.exit.cause = cause
    s.exit.tval = tval
    if cause == CAUSE_FETCH_PAGE or cause == CAUSE_LOAD_PAGE or cause == CAUSE_STORE_PAGE:
        s.page_faults += 1

cdef inline uint8_t* phys_ptr(HartState* s, uint64_t pa, uint64_t size,
                              bint write) noexcept nogil:
    """Host address of guest-physical [pa, pa+size) in RAM (or ROM, for reads), else NULL."""
    cdef uint64_t off = pa - s.ram_base
    if off < s.ram_size and s.ram_size - off >= size:
        return s.ram + off
    off = pa - s.rom_base
    if not write and off < s.rom_size and s.rom_size - off >= size:
        return s.rom + off
    return NULL


# ---------------------------------------------------------------------------
# Page-table walk and the shadow TLB (privileged spec, "Virtual address translation process")
# ---------------------------------------------------------------------------

cdef int translate(HartState* s, uint64_t va, int acc, uint32_t priv,
                   uint64_t* pa_out, uint64_t* flags_out) noexcept nogil:
    """Translate va for an access at privilege priv. Returns 0 or an exception cause."""
    cdef int levels, i, shift
    cdef uint64_t a, pte, new_pte, ppn, vpn, pte_addr
    cdef uint8_t* p
    cdef int fault = CAUSE_FETCH_PAGE if acc == ACC_FETCH else (
        CAUSE_LOAD_PAGE if acc == ACC_LOAD else CAUSE_STORE_PAGE)
    cdef int access_fault = CAUSE_FETCH_ACCESS if acc == ACC_FETCH else (
        CAUSE_LOAD_ACCESS if acc == ACC_LOAD else CAUSE_STORE_ACCESS)
    flags_out[0] = 0
    if priv == 3 or s.satp_mode == 0:
        pa_out[0] = va
        return 0
    s.page_walks += 1
    levels = 3 if s.satp_mode == 8 else 4
    shift = 12 + 9 * levels   # va bits above this must copy the top bit
    if <uint64_t>((<int64_t>(va << (64 - shift))) >> (64 - shift)) != va:
        return fault
    a = s.satp_root
    i = levels - 1
    while i >= 0:
        vpn = (va >> (12 + 9 * i)) & 0x1ff
        pte_addr = a + vpn * 8
        p = phys_ptr(s, pte_addr, 8, 0)
        if p == NULL:
            return access_fault
        memcpy(&pte, p, 8)
        if not (pte & PTE_V) or ((pte & PTE_W) and not (pte & PTE_R)):
            return fault
        if pte >> 54:             # reserved bits, Svnapot, Svpbmt: not implemented
            return fault
        ppn = (pte >> 10) & 0xfffffffffffu
        if pte & (PTE_R | PTE_X):
            # a leaf: check permissions
            if acc == ACC_FETCH:
                if not (pte & PTE_X):
                    return fault
            elif acc == ACC_LOAD:
                if not (pte & PTE_R) and not (s.mxr and (pte & PTE_X)):
                    return fault
            else:
                if not (pte & PTE_W):
                    return fault
            if pte & PTE_U:
                if priv == 1 and (acc == ACC_FETCH or not s.sum):
                    return fault
            elif priv == 0:
                return fault
            if i > 0 and (ppn & ((<uint64_t>1 << (9 * i)) - 1)):
                return fault          # misaligned superpage
            new_pte = pte | PTE_A
            if acc == ACC_STORE:
                new_pte |= PTE_D
            if new_pte != pte:
                p = phys_ptr(s, pte_addr, 8, 1)
                if p == NULL:
                    return access_fault
                memcpy(p, &new_pte, 8)
            a = ppn << 12
            if i > 0:
                a |= va & ((<uint64_t>1 << (12 + 9 * i)) - 1) & ~PAGE_MASK
                flags_out[0] |= TLB_SUPER
            if pte & PTE_G:
                flags_out[0] |= TLB_GLOBAL
            pa_out[0] = a | (va & PAGE_MASK)
            return 0
        # a pointer to the next level
        a = ppn << 12
        i -= 1
    return fault


cdef int tlb_fill(HartState* s, uint64_t va, int acc) noexcept nogil:
    """Fill the TLB entry for va, or fill the exit record (exception or MMIO).

    Returns MEM_OK when va now hits in the TLB for this access type."""
    cdef uint32_t priv = s.priv if acc == ACC_FETCH else s.ls_priv
    cdef uint64_t pa, flags
    cdef uint8_t* host
    cdef TlbEntry* e
    cdef int cause
    s.tlb_misses += 1
    cause = translate(s, va, acc, priv, &pa, &flags)
    if cause:
        set_exception(s, s.exit.pc, cause, va)
        return MEM_EXIT
    host = phys_ptr(s, pa & ~PAGE_MASK, 4096, acc == ACC_STORE)
    if acc != ACC_FETCH and pa - s.trap_base < s.trap_size:
        host = NULL                       # a trapped RAM page (e.g. HTIF): always exits
    if host == NULL:
        if acc == ACC_FETCH or (acc == ACC_STORE and phys_ptr(s, pa, 1, 0) != NULL
                                and pa - s.trap_base >= s.trap_size):
            # no instructions from devices; no stores to ROM
            set_exception(s, s.exit.pc,
                          CAUSE_FETCH_ACCESS if acc == ACC_FETCH else CAUSE_STORE_ACCESS, va)
            return MEM_EXIT
        s.exit.reason = EXIT_MMIO
        s.exit.addr = pa
        s.exit.tval = va
        s.exit.is_write = acc == ACC_STORE
        return MEM_EXIT
    e = &s.tlb[tlb_set(priv)][acc][(va >> 12) & TLB_MASK]
    e.tag = va >> 12
    e.addend = <uint64_t><uintptr_t>host - (va & ~PAGE_MASK)
    e.flags = flags
    if flags & TLB_SUPER:
        s.tlb_has_super = 1
    return MEM_OK


cdef inline uint8_t* tlb_lookup(HartState* s, uint64_t va, int acc,
                                uint32_t size) noexcept nogil:
    """The hit path: the host address of [va, va+size), or NULL."""
    cdef uint32_t priv = s.priv if acc == ACC_FETCH else s.ls_priv
    cdef TlbEntry* e = &s.tlb[tlb_set(priv)][acc][(va >> 12) & TLB_MASK]
    if e.tag == (va >> 12) and (va & PAGE_MASK) <= 4096 - size:
        return <uint8_t*><uintptr_t>(e.addend + va)
    return NULL


cdef void tlb_flush_all(HartState* s) noexcept nogil:
    """Drop the U and S shadow entries (the M set is the identity map and never stale)."""
    memset(s.tlb, 0xff, 2 * 3 * TLB_SIZE * sizeof(TlbEntry))
    s.tlb_has_super = 0
    s.tlb_flushes += 1


# ---------------------------------------------------------------------------
# Loads and stores: hit path inline, slow path on a miss or a page crossing
# ---------------------------------------------------------------------------

cdef int load_slow(HartState* s, uint64_t va, uint32_t size, uint64_t* out) noexcept nogil:
    cdef uint8_t* p
    cdef uint64_t v = 0, b
    cdef uint32_t i
    if (va & PAGE_MASK) + size > 4096:
        # crosses a page: byte by byte, each through the TLB
        for i in range(size):
            if load_slow(s, va + i, 1, &b) != MEM_OK:
                if s.exit.reason == EXIT_MMIO:
                    set_exception(s, s.exit.pc, CAUSE_LOAD_ACCESS, va)
                return MEM_EXIT
            v |= b << (8 * i)
        out[0] = v
        return MEM_OK
    p = tlb_lookup(s, va, ACC_LOAD, size)
    if p == NULL:
        if tlb_fill(s, va, ACC_LOAD) != MEM_OK:
            s.exit.size = size
            return MEM_EXIT
        p = tlb_lookup(s, va, ACC_LOAD, size)
    memcpy(&v, p, size)
    out[0] = v
    return MEM_OK


cdef int store_slow(HartState* s, uint64_t va, uint32_t size, uint64_t v) noexcept nogil:
    cdef uint8_t* p
    cdef uint32_t i
    cdef uint8_t* parts[8]
    if (va & PAGE_MASK) + size > 4096:
        # crosses a page: translate every byte first so that a fault stores nothing
        for i in range(size):
            p = tlb_lookup(s, va + i, ACC_STORE, 1)
            if p == NULL:
                if tlb_fill(s, va + i, ACC_STORE) != MEM_OK:
                    if s.exit.reason == EXIT_MMIO:
                        set_exception(s, s.exit.pc, CAUSE_STORE_ACCESS, va)
                    elif s.exit.reason == EXIT_EXCEPTION:
                        s.exit.tval = va + i
                    return MEM_EXIT
                p = tlb_lookup(s, va + i, ACC_STORE, 1)
            parts[i] = p
        for i in range(size):
            parts[i][0] = <uint8_t>(v >> (8 * i))
        return MEM_OK
    p = tlb_lookup(s, va, ACC_STORE, size)
    if p == NULL:
        if tlb_fill(s, va, ACC_STORE) != MEM_OK:
            s.exit.size = size
            s.exit.value = v
            return MEM_EXIT
        p = tlb_lookup(s, va, ACC_STORE, size)
    memcpy(p, &v, size)
    return MEM_OK


cdef uint8_t* amo_ptr(HartState* s, uint64_t va, uint32_t size, int acc) noexcept nogil:
    """Host address for an LR/SC/AMO: aligned, in RAM, or NULL with an exception set."""
    cdef uint8_t* p
    if va & (size - 1):
        set_exception(s, s.exit.pc,
                      CAUSE_LOAD_MISALIGNED if acc == ACC_LOAD else CAUSE_STORE_MISALIGNED, va)
        return NULL
    p = tlb_lookup(s, va, acc, size)
    if p == NULL:
        if tlb_fill(s, va, acc) != MEM_OK:
            if s.exit.reason == EXIT_MMIO:   # no atomics on devices
                set_exception(s, s.exit.pc,
                              CAUSE_LOAD_ACCESS if acc == ACC_LOAD else CAUSE_STORE_ACCESS, va)
            return NULL
        p = tlb_lookup(s, va, acc, size)
    return p


cdef int fetch_slow(HartState* s, uint64_t pc, uint32_t* insn) noexcept nogil:
    """Fetch the instruction at pc through the fetch TLB (any alignment, page crossing)."""
    cdef uint8_t* p
    cdef uint16_t lo, hi
    p = tlb_lookup(s, pc, ACC_FETCH, 2)
    if p == NULL:
        if tlb_fill(s, pc, ACC_FETCH) != MEM_OK:
            return MEM_EXIT
        p = tlb_lookup(s, pc, ACC_FETCH, 2)
    memcpy(&lo, p, 2)
    if (lo & 3) != 3:
        insn[0] = lo
        return MEM_OK
    p = tlb_lookup(s, pc + 2, ACC_FETCH, 2)
    if p == NULL:
        if tlb_fill(s, pc + 2, ACC_FETCH) != MEM_OK:
            return MEM_EXIT
        p = tlb_lookup(s, pc + 2, ACC_FETCH, 2)
    memcpy(&hi, p, 2)
    insn[0] = lo | (<uint32_t>hi << 16)
    return MEM_OK


cdef inline uint64_t load_ext(uint64_t v, uint32_t size, bint signed) noexcept nogil:
    if signed:
        if size == 1:
            return <uint64_t><int64_t><int8_t><uint8_t>v
        if size == 2:
            return <uint64_t><int64_t><int16_t><uint16_t>v
        if size == 4:
            return <uint64_t><int64_t><int32_t><uint32_t>v
        return v
    if size == 8:
        return v
    return v & ((<uint64_t>1 << (8 * size)) - 1)


# ---------------------------------------------------------------------------
# Arithmetic (unprivileged spec, "M" extension: division by zero and overflow)
# ---------------------------------------------------------------------------

cdef inline uint64_t op_div(int64_t a, int64_t b) noexcept nogil:
    if b == 0:
        return <uint64_t>-1
    if a == INT64_MIN and b == -1:
        return <uint64_t>a
    return <uint64_t>(a / b)

cdef inline uint64_t op_divu(uint64_t a, uint64_t b) noexcept nogil:
    if b == 0:
        return <uint64_t>-1
    return a / b

cdef inline uint64_t op_rem(int64_t a, int64_t b) noexcept nogil:
    if b == 0:
        return <uint64_t>a
    if a == INT64_MIN and b == -1:
        return 0
    return <uint64_t>(a % b)

cdef inline uint64_t op_remu(uint64_t a, uint64_t b) noexcept nogil:
    if b == 0:
        return a
    return a % b

cdef inline uint64_t op_divw(uint64_t a, uint64_t b) noexcept nogil:
    cdef int32_t x = <int32_t>a, y = <int32_t>b
    if y == 0:
        return <uint64_t>-1
    if x == -2147483648 and y == -1:
        return <uint64_t><int64_t>x
    return <uint64_t><int64_t>(x / y)

cdef inline uint64_t op_divuw(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint32_t x = <uint32_t>a, y = <uint32_t>b
    if y == 0:
        return <uint64_t>-1
    return <uint64_t>sx32(x / y)

cdef inline uint64_t op_remw(uint64_t a, uint64_t b) noexcept nogil:
    cdef int32_t x = <int32_t>a, y = <int32_t>b
    if y == 0:
        return <uint64_t><int64_t>x
    if x == -2147483648 and y == -1:
        return 0
    return <uint64_t><int64_t>(x % y)

cdef inline uint64_t op_remuw(uint64_t a, uint64_t b) noexcept nogil:
    cdef uint32_t x = <uint32_t>a, y = <uint32_t>b
    if y == 0:
        return <uint64_t>sx32(x)
    return <uint64_t>sx32(x % y)


cdef inline uint64_t amo_op(uint32_t f5, uint64_t old, uint64_t src, bint word) noexcept nogil:
    """The new memory value of AMO<f5> (unprivileged spec, "A" extension)."""
    cdef int64_t a, b
    if word:
        a = sx32(old)
        b = sx32(src)
    else:
        a = <int64_t>old
        b = <int64_t>src
    if f5 == 0x01:
        return src
    if f5 == 0x00:
        return old + src
    if f5 == 0x04:
        return old ^ src
    if f5 == 0x0c:
        return old & src
    if f5 == 0x08:
        return old | src
    if f5 == 0x10:
        return <uint64_t>(a if a < b else b)
    if f5 == 0x14:
        return <uint64_t>(a if a > b else b)
    if word:
        old &= 0xffffffffu
        src &= 0xffffffffu
    if f5 == 0x18:
        return old if old < src else src
    return old if old > src else src      # 0x1c AMOMAXU


# ---------------------------------------------------------------------------
# The execution loop
# ---------------------------------------------------------------------------

cdef int run_loop(HartState* s) noexcept nogil:
    """Execute until instret reaches stop_at or an exit; return the exit reason.

    Each instruction either completes (pc and instret advance) or exits with pc
    still pointing at it, so that the hypervisor can emulate or reflect it."""
    cdef uint64_t* x = s.x
    cdef uint64_t pc = s.pc
    cdef uint64_t n = s.stop_at - s.instret if s.stop_at > s.instret else 0
    cdef uint64_t left = n
    cdef uint64_t fpage = TLB_INVALID, faddend = 0
    cdef uint64_t a, b, v, addr, imm
    cdef uint32_t insn, op, f3, f7, rd, rs1, rs2
    cdef int64_t simm
    cdef uint8_t* p
    cdef uint16_t half
    cdef int reason = EXIT_BUDGET
    cdef TlbEntry* e

    while left:
        x[0] = 0
        s.exit.pc = pc
        # ---- fetch ----
        if (pc >> 12) != fpage:
            e = &s.tlb[tlb_set(s.priv)][ACC_FETCH][(pc >> 12) & TLB_MASK]
            if e.tag != (pc >> 12):
                if tlb_fill(s, pc, ACC_FETCH) != MEM_OK:
                    reason = s.exit.reason
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
                reason = s.exit.reason
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
            else:            # C.FLD/C.FSD/C.FLDSP/C.FSDSP (no F/D here) and reserved
                set_exception(s, pc, CAUSE_ILLEGAL, insn)
                reason = EXIT_EXCEPTION
                break
            pc += 2
            left -= 1
            continue

        # ============ 32-bit instructions (unprivileged spec, RV64I/M/A) ============
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
                if insn >> 26:
                    set_exception(s, pc, CAUSE_ILLEGAL, insn)
                    reason = EXIT_EXCEPTION
                    break
                x[rd] = a << ((insn >> 20) & 63)
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
                else:
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
            else:
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
            else:
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
            else:
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
        elif op == 0x0f:     # MISC-MEM: FENCE, FENCE.I (no caches to keep coherent yet)
            if f3 > 1:
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


# ---------------------------------------------------------------------------
# Python interface
# ---------------------------------------------------------------------------

cdef class GuestMemory:
    """Guest-physical memory: RAM and the boot ROM, as host numpy arrays."""

    def __cinit__(self, uint64_t ram_base, uint64_t ram_size,
                  uint64_t rom_base=0x1000, uint64_t rom_size=0x1000):
        self.ram = np.zeros(ram_size, dtype=np.uint8)
        self.rom = np.zeros(rom_size, dtype=np.uint8)
        self.ram_base = ram_base
        self.rom_base = rom_base
        cdef uint8_t[::1] r = self.ram
        cdef uint8_t[::1] o = self.rom
        self.ram_ptr = &r[0]
        self.rom_ptr = &o[0]

    @property
    def ram_size(self):
        return self.ram.shape[0]

    def contains_ram(self, uint64_t addr, uint64_t size=1):
        """True if guest-physical [addr, addr+size) lies in RAM."""
        return addr >= self.ram_base and addr - self.ram_base + size <= self.ram.shape[0]

    def read(self, uint64_t addr, uint64_t size):
        """Bytes of guest-physical RAM or ROM; IndexError outside them."""
        return bytes(self._view(addr, size))

    def write(self, uint64_t addr, data):
        """Copy bytes into guest-physical RAM or ROM; IndexError outside them."""
        self._view(addr, len(data))[:] = np.frombuffer(bytes(data), dtype=np.uint8)

    def _view(self, uint64_t addr, uint64_t size):
        if addr >= self.ram_base and addr - self.ram_base + size <= self.ram.shape[0]:
            return self.ram[addr - self.ram_base:addr - self.ram_base + size]
        if addr >= self.rom_base and addr - self.rom_base + size <= self.rom.shape[0]:
            return self.rom[addr - self.rom_base:addr - self.rom_base + size]
        raise IndexError(f"guest-physical range {addr:#x}+{size:#x} is not memory")


cdef class VCpu:
    """One guest hart: registers, pc, translation state and shadow TLB."""

    def __cinit__(self, GuestMemory memory):
        self.s = <HartState*>calloc(1, sizeof(HartState))
        if self.s == NULL:
            raise MemoryError()
        self.memory = memory
        self.s.ram = memory.ram_ptr
        self.s.ram_base = memory.ram_base
        self.s.ram_size = memory.ram.shape[0]
        self.s.rom = memory.rom_ptr
        self.s.rom_base = memory.rom_base
        self.s.rom_size = memory.rom.shape[0]
        self.s.priv = 3
        self.s.ls_priv = 3
        memset(self.s.tlb, 0xff, sizeof(self.s.tlb))

    def __dealloc__(self):
        free(self.s)

    def run(self):
        """Run until instret reaches stop_at or an exit; return the exit reason."""
        cdef int r
        with nogil:
            r = run_loop(self.s)
        return r

    # ---- registers ----
    def get_x(self, int i):
        return self.s.x[i & 31] if i else 0

    def set_x(self, int i, uint64_t v):
        if i & 31:
            self.s.x[i & 31] = v

    @property
    def x(self):
        """x0..x31 as a list."""
        return [self.s.x[i] if i else 0 for i in range(32)]

    @property
    def pc(self):
        return self.s.pc

    @pc.setter
    def pc(self, uint64_t v):
        self.s.pc = v

    @property
    def instret(self):
        return self.s.instret

    @instret.setter
    def instret(self, uint64_t v):
        self.s.instret = v

    @property
    def stop_at(self):
        return self.s.stop_at

    @stop_at.setter
    def stop_at(self, uint64_t v):
        self.s.stop_at = v

    @property
    def priv(self):
        return self.s.priv

    # ---- the exit record ----
    @property
    def exit_reason(self):
        return self.s.exit.reason

    @property
    def exit_pc(self):
        return self.s.exit.pc

    @property
    def exit_insn(self):
        return self.s.exit.insn

    @property
    def exit_insn_len(self):
        return self.s.exit.insn_len

    @property
    def exit_addr(self):
        return self.s.exit.addr

    @property
    def exit_size(self):
        return self.s.exit.size

    @property
    def exit_value(self):
        return self.s.exit.value

    @property
    def exit_is_write(self):
        return bool(self.s.exit.is_write)

    @property
    def exit_rd(self):
        return self.s.exit.rd

    @property
    def exit_cause(self):
        return self.s.exit.cause

    @property
    def exit_tval(self):
        return self.s.exit.tval

    def complete(self):
        """Retire the exiting instruction: pc past it, instret + 1."""
        self.s.pc = self.s.exit.pc + self.s.exit.insn_len
        self.s.instret += 1

    def complete_load(self, uint64_t value):
        """Retire an MMIO load: extend value into rd as the load instruction says."""
        cdef uint32_t rd = self.s.exit.rd
        if rd:
            self.s.x[rd] = load_ext(value, self.s.exit.size, self.s.exit.is_signed)
        self.s.pc = self.s.exit.pc + self.s.exit.insn_len
        self.s.instret += 1

    def complete_csr(self, uint32_t rd, uint64_t value):
        """Retire a CSR instruction: rd = value, pc past it."""
        if rd:
            self.s.x[rd] = value
        self.s.pc = self.s.exit.pc + 4
        self.s.instret += 1

    # ---- translation state, pushed by the hypervisor ----
    def set_mode(self, uint32_t priv, uint32_t ls_priv, uint32_t satp_mode,
                 uint64_t satp_root, bint sum, bint mxr):
        """Set privilege and translation state; drop shadow entries it makes stale."""
        cdef HartState* s = self.s
        if (satp_mode != s.satp_mode or satp_root != s.satp_root or
                sum != s.sum or mxr != s.mxr):
            tlb_flush_all(s)
        s.priv = priv
        s.ls_priv = ls_priv
        s.satp_mode = satp_mode
        s.satp_root = satp_root
        s.sum = sum
        s.mxr = mxr

    def flush_tlb(self, vaddr=None, asid=None):
        """Drop shadow entries as SFENCE.VMA would: all, one page, one ASID, or both.

        The shadow holds only entries of the current address space (a satp write
        drops everything), so an ASID-specific flush drops its non-global entries."""
        cdef HartState* s = self.s
        cdef uint64_t va, vpn
        cdef int p, a, i
        cdef TlbEntry* e
        if vaddr is None and asid is None:
            tlb_flush_all(s)
            return
        if vaddr is not None and s.tlb_has_super:
            tlb_flush_all(s)
            return
        s.tlb_flushes += 1
        if vaddr is None:
            for p in range(2):
                for a in range(3):
                    for i in range(TLB_SIZE):
                        e = &s.tlb[p][a][i]
                        if not (e.flags & TLB_GLOBAL):
                            e.tag = TLB_INVALID
            return
        va = vaddr
        vpn = va >> 12
        for p in range(2):
            for a in range(3):
                e = &s.tlb[p][a][vpn & TLB_MASK]
                if e.tag == vpn and (asid is None or not (e.flags & TLB_GLOBAL)):
                    e.tag = TLB_INVALID

    def trap_page(self, uint64_t base, uint64_t size):
        """Make loads/stores to guest-physical [base, base+size) in RAM exit as MMIO."""
        self.s.trap_base = base & ~<uint64_t>PAGE_MASK
        self.s.trap_size = size
        tlb_flush_all(self.s)
        memset(self.s.tlb[2], 0xff, sizeof(self.s.tlb[2]))

    def clear_reservation(self):
        self.s.resv = 0

    def translate(self, uint64_t va, int access=ACC_LOAD, priv=None):
        """Guest-physical address of va (no A/D updates are skipped: it walks as the core does).

        Returns (pa, 0) or (None, cause)."""
        cdef uint64_t pa, flags
        cdef uint32_t pv = self.s.ls_priv if priv is None else priv
        cdef int cause = translate(self.s, va, access, pv, &pa, &flags)
        if cause:
            return None, cause
        return pa, 0

    @property
    def shadow_stats(self):
        """Shadow paging counters: TLB misses (fills attempted), page walks, flushes, page faults."""
        return {"tlb_misses": self.s.tlb_misses, "page_walks": self.s.page_walks,
                "flushes": self.s.tlb_flushes, "page_faults": self.s.page_faults}
