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
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

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
    void hv_unreachable "__builtin_unreachable" () noexcept nogil

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


cdef int tlb_fill(HartState* s, uint64_t va, int acc, uint8_t** out) noexcept nogil:
    """Translate va for an access, fill the TLB entry, and give the host address in out.

    Returns MEM_OK, or MEM_EXIT with the exit record filled in (exception or MMIO).
    A store to a page holding decoded instructions is not cached: it comes here
    every time, and drops the decoded instructions it may overwrite."""
    cdef uint32_t priv = s.priv if acc == ACC_FETCH else s.ls_priv
    cdef uint64_t pa, flags, ppn
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
    out[0] = host + (va & PAGE_MASK)
    if acc == ACC_STORE and pa - s.ram_base < s.ram_size:
        ppn = (pa - s.ram_base) >> 12
        if s.code[ppn] != NULL:
            code_invalidate(s.code[ppn], <uint32_t>(pa & PAGE_MASK), 8)
            return MEM_OK
    e = &s.tlb[tlb_set(priv)][acc][(va >> 12) & TLB_MASK]
    s.tlb_fills += 1
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


cdef inline uint8_t* tlb_hit(TlbEntry* tlb, uint64_t va, uint32_t size) noexcept nogil:
    """The hit path with the TLB set already chosen: host address of [va, va+size), or NULL."""
    cdef TlbEntry* e = &tlb[(va >> 12) & TLB_MASK]
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
        if tlb_fill(s, va, ACC_LOAD, &p) != MEM_OK:
            s.exit.size = size
            return MEM_EXIT
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
                if tlb_fill(s, va + i, ACC_STORE, &p) != MEM_OK:
                    if s.exit.reason == EXIT_MMIO:
                        set_exception(s, s.exit.pc, CAUSE_STORE_ACCESS, va)
                    elif s.exit.reason == EXIT_EXCEPTION:
                        s.exit.tval = va + i
                    return MEM_EXIT
            parts[i] = p
        for i in range(size):
            parts[i][0] = <uint8_t>(v >> (8 * i))
        return MEM_OK
    p = tlb_lookup(s, va, ACC_STORE, size)
    if p == NULL:
        if tlb_fill(s, va, ACC_STORE, &p) != MEM_OK:
            s.exit.size = size
            s.exit.value = v if size == 8 else v & ((<uint64_t>1 << (8 * size)) - 1)
            return MEM_EXIT
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
        if tlb_fill(s, va, acc, &p) != MEM_OK:
            if s.exit.reason == EXIT_MMIO:   # no atomics on devices
                set_exception(s, s.exit.pc,
                              CAUSE_LOAD_ACCESS if acc == ACC_LOAD else CAUSE_STORE_ACCESS, va)
            return NULL
    return p


cdef int fetch_slow(HartState* s, uint64_t pc, uint32_t* insn) noexcept nogil:
    """Fetch the instruction at pc through the fetch TLB (any alignment, page crossing)."""
    cdef uint8_t* p
    cdef uint16_t lo, hi
    p = tlb_lookup(s, pc, ACC_FETCH, 2)
    if p == NULL:
        if tlb_fill(s, pc, ACC_FETCH, &p) != MEM_OK:
            return MEM_EXIT
    memcpy(&lo, p, 2)
    if (lo & 3) != 3:
        insn[0] = lo
        return MEM_OK
    p = tlb_lookup(s, pc + 2, ACC_FETCH, 2)
    if p == NULL:
        if tlb_fill(s, pc + 2, ACC_FETCH, &p) != MEM_OK:
            return MEM_EXIT
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

cdef int run_generic(HartState* s, uint64_t n) noexcept nogil:
    """Decode and execute up to n instructions, one at a time; return the exit reason.

    The reference interpreter: every instruction is fetched and decoded afresh.
    The pre-decoded fast path (`run_decoded`) hands it whatever it does not do
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
    cdef int reason = EXIT_BUDGET
    cdef TlbEntry* e

    while left:
        x[0] = 0
        s.exit.pc = pc
        # ---- fetch ----
        if (pc >> 12) != fpage:
            e = &s.tlb[tlb_set(s.priv)][ACC_FETCH][(pc >> 12) & TLB_MASK]
            if e.tag != (pc >> 12):
                if tlb_fill(s, pc, ACC_FETCH, &p) != MEM_OK:
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
# The pre-decoded fast path
#
# Each RAM page that holds executed code gets an array of Decoded slots, one per
# 2-byte offset, filled lazily the first time an instruction there runs.  The loop
# steps a pointer through them; pc is rebuilt only where an instruction needs it.
# Stores to such a page are never cached in the store TLB: they take the slow path,
# which drops the slots they overwrite (self-modifying code stays correct without
# relying on FENCE.I).  What the fast path does not do itself (SYSTEM, AMOs,
# illegal instructions, an instruction straddling pages, the ROM) it hands to the
# reference interpreter `run_generic`, one instruction at a time.
# ---------------------------------------------------------------------------

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


cdef void flush_store_tlb(HartState* s) noexcept nogil:
    cdef int p
    for p in range(3):
        memset(s.tlb[p][ACC_STORE], 0xff, TLB_SIZE * sizeof(TlbEntry))


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
    elif op == 0x0f:
        if f3 <= 1:
            dset(d, OP_NOP, 0, 0, 0, 0)          # FENCE; FENCE.I (decoded slots follow stores)
    elif op == 0x73:
        if f3 == 2 and rs1 == 0 and (insn >> 20) >= 0xc00 and (insn >> 20) <= 0xc02:
            dset(d, OP_RDCOUNTER, rd, 0, 0, (insn >> 20) & 3)


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


cdef int run_loop(HartState* s) noexcept nogil:
    """Execute until instret reaches stop_at or an exit; return the exit reason.

    Instructions are counted one by one, but stop_at is checked only where control
    lands after a jump within the page: straight-line code cannot run more than a
    page (2048 slots) before the next jump or the page end, so while more than
    NEAR_STOP instructions remain no check is needed in between.  The last
    NEAR_STOP instructions before stop_at run in the reference interpreter, which
    stops exactly."""
    cdef uint64_t* x = s.x
    cdef uint64_t n, cnt, soft, pc, vbase, a, b, v, addr, t, hits = 0
    cdef Decoded* page
    cdef Decoded* d
    cdef uint8_t* hp
    cdef uint8_t* p
    cdef uint16_t half
    cdef uint32_t size
    cdef TlbEntry* e
    cdef TlbEntry* tl_load = s.tlb[tlb_set(s.ls_priv)][ACC_LOAD]
    cdef TlbEntry* tl_store = s.tlb[tlb_set(s.ls_priv)][ACC_STORE]
    cdef int reason, generic, pc_set
    cdef uint32_t op
    if s.code_gen_seen != s.code_gen[0]:
        # another vCPU turned a page into code: our store entries may point into it
        flush_store_tlb(s)
        s.code_gen_seen = s.code_gen[0]
    if not s.fast:
        n = s.stop_at - s.instret if s.stop_at > s.instret else 0
        return run_generic(s, n)
    while True:
        if s.instret >= s.stop_at:
            s.exit.reason = EXIT_BUDGET
            s.exit.pc = s.pc
            return EXIT_BUDGET
        n = s.stop_at - s.instret
        if n <= NEAR_STOP:
            # close to stop_at: count every instruction exactly, in the reference interpreter
            return run_generic(s, n)
        pc = s.pc
        s.exit.pc = pc
        # ---- enter the page holding pc ----
        e = &s.tlb[tlb_set(s.priv)][ACC_FETCH][(pc >> 12) & TLB_MASK]
        if e.tag == (pc >> 12):
            hp = <uint8_t*><uintptr_t>(e.addend + (pc & ~<uint64_t>PAGE_MASK))
        else:
            if tlb_fill(s, pc, ACC_FETCH, &hp) != MEM_OK:
                reason = s.exit.reason
                s.exit.reason = reason
                return reason
            hp -= pc & PAGE_MASK
        page = NULL
        if <uintptr_t>hp - <uintptr_t>s.ram < s.ram_size:
            page = code_page(s, (<uintptr_t>hp - <uintptr_t>s.ram) >> 12)
        if page == NULL:                      # the ROM: the reference interpreter
            reason = run_generic(s, 1)
            if reason != EXIT_BUDGET:
                return reason
            continue
        vbase = pc & ~<uint64_t>PAGE_MASK
        d = page + ((pc & PAGE_MASK) >> 1)
        cnt = 0                               # instructions retired on this page
        soft = n - NEAR_STOP                  # past this, a landing jump hands back
        generic = 0
        reason = 0
        pc_set = 0
        # ---- run pre-decoded instructions until we leave the page ----
        while True:
            # >>> dispatch (copy 1 of 2; tests/test_core_source.py checks copy 2 is the same)
            op = d.op
            if op == OP_ADDI:
                x[d.rd] = x[d.rs1] + <uint64_t><int64_t>d.imm
            elif op == OP_LD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 8)
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 8, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 8)
                x[d.rd] = v
            elif op == OP_SD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 8)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 8, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 8)
            elif op == OP_LW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 4)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 4, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 4)
                x[d.rd] = <uint64_t>sx32(v)
            elif op == OP_LWU:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 4)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 4, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 4)
                x[d.rd] = v
            elif op == OP_LBU:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 1)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 1, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    v = p[0]
                x[d.rd] = v
            elif op == OP_LB:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 1)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 1, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    v = p[0]
                x[d.rd] = <uint64_t><int64_t><int8_t><uint8_t>v
            elif op == OP_LH:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 2)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 2, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 2)
                x[d.rd] = <uint64_t><int64_t><int16_t><uint16_t>v
            elif op == OP_LHU:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 2)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 2, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 2)
                x[d.rd] = v
            elif op == OP_SW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 4)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 4, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 4)
            elif op == OP_SB:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 1)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 1, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    p[0] = <uint8_t>v
            elif op == OP_SH:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 2)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 2, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 2)
            elif op == OP_BEQ:
                cnt += 1
                if x[d.rs1] == x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BNE:
                cnt += 1
                if x[d.rs1] != x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BLT:
                cnt += 1
                if <int64_t>x[d.rs1] < <int64_t>x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BGE:
                cnt += 1
                if <int64_t>x[d.rs1] >= <int64_t>x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BLTU:
                cnt += 1
                if x[d.rs1] < x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BGEU:
                cnt += 1
                if x[d.rs1] >= x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_JAL:
                t = vbase + (<uint64_t>(d - page) << 1)
                x[d.rd] = t + 4
                cnt += 1
                if d.jump != JUMP_OUT:
                    d += d.jump
                    if cnt > soft:
                        break
                    continue
                pc = t + <uint64_t><int64_t>d.imm
                pc_set = 1
                break
            elif op == OP_JALR:
                t = (x[d.rs1] + <uint64_t><int64_t>d.imm) & ~<uint64_t>1
                x[d.rd] = vbase + (<uint64_t>(d - page) << 1) + 4
                cnt += 1
                if (t & ~<uint64_t>PAGE_MASK) == vbase:
                    d = page + ((t & PAGE_MASK) >> 1)
                    if cnt > soft:
                        break
                    continue
                pc = t
                pc_set = 1
                break
            elif op == OP_ADD:
                x[d.rd] = x[d.rs1] + x[d.rs2]
            elif op == OP_SUB:
                x[d.rd] = x[d.rs1] - x[d.rs2]
            elif op == OP_ADDIW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + <uint64_t><int64_t>d.imm)
            elif op == OP_ADDW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + x[d.rs2])
            elif op == OP_SUBW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] - x[d.rs2])
            elif op == OP_SLLI:
                x[d.rd] = x[d.rs1] << d.imm
            elif op == OP_SRLI:
                x[d.rd] = x[d.rs1] >> d.imm
            elif op == OP_SRAI:
                x[d.rd] = <uint64_t>(<int64_t>x[d.rs1] >> d.imm)
            elif op == OP_ANDI:
                x[d.rd] = x[d.rs1] & <uint64_t><int64_t>d.imm
            elif op == OP_ORI:
                x[d.rd] = x[d.rs1] | <uint64_t><int64_t>d.imm
            elif op == OP_XORI:
                x[d.rd] = x[d.rs1] ^ <uint64_t><int64_t>d.imm
            elif op == OP_SLTI:
                x[d.rd] = <int64_t>x[d.rs1] < <int64_t>d.imm
            elif op == OP_SLTIU:
                x[d.rd] = x[d.rs1] < <uint64_t><int64_t>d.imm
            elif op == OP_LUI:
                x[d.rd] = <uint64_t><int64_t>d.imm
            elif op == OP_AUIPC:
                x[d.rd] = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
            elif op == OP_AND:
                x[d.rd] = x[d.rs1] & x[d.rs2]
            elif op == OP_OR:
                x[d.rd] = x[d.rs1] | x[d.rs2]
            elif op == OP_XOR:
                x[d.rd] = x[d.rs1] ^ x[d.rs2]
            elif op == OP_SLL:
                x[d.rd] = x[d.rs1] << (x[d.rs2] & 63)
            elif op == OP_SRL:
                x[d.rd] = x[d.rs1] >> (x[d.rs2] & 63)
            elif op == OP_SRA:
                x[d.rd] = <uint64_t>(<int64_t>x[d.rs1] >> (x[d.rs2] & 63))
            elif op == OP_SLT:
                x[d.rd] = <int64_t>x[d.rs1] < <int64_t>x[d.rs2]
            elif op == OP_SLTU:
                x[d.rd] = x[d.rs1] < x[d.rs2]
            elif op == OP_SLLIW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] << d.imm)
            elif op == OP_SRLIW:
                x[d.rd] = <uint64_t>sx32(<uint32_t>x[d.rs1] >> d.imm)
            elif op == OP_SRAIW:
                x[d.rd] = <uint64_t><int64_t>(<int32_t>x[d.rs1] >> d.imm)
            elif op == OP_SLLW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] << (x[d.rs2] & 31))
            elif op == OP_SRLW:
                x[d.rd] = <uint64_t>sx32(<uint32_t>x[d.rs1] >> (x[d.rs2] & 31))
            elif op == OP_SRAW:
                x[d.rd] = <uint64_t><int64_t>(<int32_t>x[d.rs1] >> (x[d.rs2] & 31))
            elif op == OP_MUL:
                x[d.rd] = x[d.rs1] * x[d.rs2]
            elif op == OP_MULH:
                x[d.rd] = hv_mulh(<int64_t>x[d.rs1], <int64_t>x[d.rs2])
            elif op == OP_MULHSU:
                x[d.rd] = hv_mulhsu(<int64_t>x[d.rs1], x[d.rs2])
            elif op == OP_MULHU:
                x[d.rd] = hv_mulhu(x[d.rs1], x[d.rs2])
            elif op == OP_DIV:
                x[d.rd] = op_div(<int64_t>x[d.rs1], <int64_t>x[d.rs2])
            elif op == OP_DIVU:
                x[d.rd] = op_divu(x[d.rs1], x[d.rs2])
            elif op == OP_REM:
                x[d.rd] = op_rem(<int64_t>x[d.rs1], <int64_t>x[d.rs2])
            elif op == OP_REMU:
                x[d.rd] = op_remu(x[d.rs1], x[d.rs2])
            elif op == OP_MULW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] * x[d.rs2])
            elif op == OP_DIVW:
                x[d.rd] = op_divw(x[d.rs1], x[d.rs2])
            elif op == OP_DIVUW:
                x[d.rd] = op_divuw(x[d.rs1], x[d.rs2])
            elif op == OP_REMW:
                x[d.rd] = op_remw(x[d.rs1], x[d.rs2])
            elif op == OP_REMUW:
                x[d.rd] = op_remuw(x[d.rs1], x[d.rs2])
            elif op == OP_C_ADDI:
                x[d.rd] = x[d.rs1] + <uint64_t><int64_t>d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ADDIW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + <uint64_t><int64_t>d.imm)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ADD:
                x[d.rd] = x[d.rs1] + x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SUB:
                x[d.rd] = x[d.rs1] - x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ADDW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + x[d.rs2])
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SUBW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] - x[d.rs2])
                d += 1
                cnt += 1
                continue
            elif op == OP_C_AND:
                x[d.rd] = x[d.rs1] & x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_OR:
                x[d.rd] = x[d.rs1] | x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_XOR:
                x[d.rd] = x[d.rs1] ^ x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ANDI:
                x[d.rd] = x[d.rs1] & <uint64_t><int64_t>d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SLLI:
                x[d.rd] = x[d.rs1] << d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SRLI:
                x[d.rd] = x[d.rs1] >> d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SRAI:
                x[d.rd] = <uint64_t>(<int64_t>x[d.rs1] >> d.imm)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_LUI:
                x[d.rd] = <uint64_t><int64_t>d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_LW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 4)
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 4, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 4)
                x[d.rd] = <uint64_t>sx32(v)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_LD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 8)
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 8, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 8)
                x[d.rd] = v
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 4)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 4, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 4)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 8)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 8, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 8)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_BEQ:
                cnt += 1
                if x[d.rs1] == 0:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 1
                continue
            elif op == OP_C_BNE:
                cnt += 1
                if x[d.rs1] != 0:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 1
                continue
            elif op == OP_C_JAL:
                t = vbase + (<uint64_t>(d - page) << 1)
                x[d.rd] = t + 2
                cnt += 1
                if d.jump != JUMP_OUT:
                    d += d.jump
                    if cnt > soft:
                        break
                    continue
                pc = t + <uint64_t><int64_t>d.imm
                pc_set = 1
                break
            elif op == OP_C_JALR:
                t = (x[d.rs1] + <uint64_t><int64_t>d.imm) & ~<uint64_t>1
                x[d.rd] = vbase + (<uint64_t>(d - page) << 1) + 2
                cnt += 1
                if (t & ~<uint64_t>PAGE_MASK) == vbase:
                    d = page + ((t & PAGE_MASK) >> 1)
                    if cnt > soft:
                        break
                    continue
                pc = t
                pc_set = 1
                break
            elif op == OP_NOP:
                pass
            elif op == OP_RDCOUNTER:
                if not ((s.counters_native >> d.imm) & 1):
                    generic = 1
                    break
                t = s.instret + cnt
                if d.imm == 0:
                    v = t + s.cycle_offset
                elif d.imm == 1:
                    v = t / s.insns_per_tick + s.time_offset
                else:
                    v = t + s.instret_offset
                x[d.rd] = v
            elif op == OP_UNDECODED:
                t = (<uint64_t>(d - page) << 1)
                memcpy(&half, hp + t, 2)
                s.decodes += 1
                if (half & 3) != 3:
                    decode16(half, d)
                elif t != 0xffe:
                    memcpy(&v, hp + t, 4)
                    decode32(<uint32_t>v, d)
                else:
                    d.op = OP_GENERIC           # straddles two pages
                    d.step = 2
                d.jump = JUMP_OUT
                if (d.op >= OP_BEQ and d.op <= OP_BGEU) or d.op == OP_JAL or d.op == OP_C_BEQ \
                        or d.op == OP_C_BNE or d.op == OP_C_JAL:
                    v = <uint64_t>(<int64_t>t + <int64_t>d.imm)      # target offset in the page
                    if v < 4096:
                        d.jump = <int16_t>(<int64_t>d.imm >> 1)
                continue
            elif op == OP_PAGE_END:
                pc = vbase + 4096
                pc_set = 1
                break
            elif op == OP_GENERIC:
                generic = 1
                break
            else:
                hv_unreachable()                # every op has an arm: no range check
            d += 2                              # every 16-bit operation has its own arm
            cnt += 1
            # <<< dispatch
            # >>> dispatch (copy 2 of 2: the same arms again, so each instruction is dispatched from
            # one of two indirect-jump sites and the branch predictor sees more history;
            # measured: bench 410 -> 500 MIPS)
            op = d.op
            if op == OP_ADDI:
                x[d.rd] = x[d.rs1] + <uint64_t><int64_t>d.imm
            elif op == OP_LD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 8)
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 8, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 8)
                x[d.rd] = v
            elif op == OP_SD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 8)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 8, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 8)
            elif op == OP_LW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 4)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 4, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 4)
                x[d.rd] = <uint64_t>sx32(v)
            elif op == OP_LWU:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 4)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 4, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 4)
                x[d.rd] = v
            elif op == OP_LBU:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 1)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 1, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    v = p[0]
                x[d.rd] = v
            elif op == OP_LB:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 1)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 1, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    v = p[0]
                x[d.rd] = <uint64_t><int64_t><int8_t><uint8_t>v
            elif op == OP_LH:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 2)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 2, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 2)
                x[d.rd] = <uint64_t><int64_t><int16_t><uint16_t>v
            elif op == OP_LHU:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 2)
                v = 0
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 2, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 2)
                x[d.rd] = v
            elif op == OP_SW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 4)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 4, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 4)
            elif op == OP_SB:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 1)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 1, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    p[0] = <uint8_t>v
            elif op == OP_SH:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 2)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 2, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 2)
            elif op == OP_BEQ:
                cnt += 1
                if x[d.rs1] == x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BNE:
                cnt += 1
                if x[d.rs1] != x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BLT:
                cnt += 1
                if <int64_t>x[d.rs1] < <int64_t>x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BGE:
                cnt += 1
                if <int64_t>x[d.rs1] >= <int64_t>x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BLTU:
                cnt += 1
                if x[d.rs1] < x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_BGEU:
                cnt += 1
                if x[d.rs1] >= x[d.rs2]:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 2
                continue
            elif op == OP_JAL:
                t = vbase + (<uint64_t>(d - page) << 1)
                x[d.rd] = t + 4
                cnt += 1
                if d.jump != JUMP_OUT:
                    d += d.jump
                    if cnt > soft:
                        break
                    continue
                pc = t + <uint64_t><int64_t>d.imm
                pc_set = 1
                break
            elif op == OP_JALR:
                t = (x[d.rs1] + <uint64_t><int64_t>d.imm) & ~<uint64_t>1
                x[d.rd] = vbase + (<uint64_t>(d - page) << 1) + 4
                cnt += 1
                if (t & ~<uint64_t>PAGE_MASK) == vbase:
                    d = page + ((t & PAGE_MASK) >> 1)
                    if cnt > soft:
                        break
                    continue
                pc = t
                pc_set = 1
                break
            elif op == OP_ADD:
                x[d.rd] = x[d.rs1] + x[d.rs2]
            elif op == OP_SUB:
                x[d.rd] = x[d.rs1] - x[d.rs2]
            elif op == OP_ADDIW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + <uint64_t><int64_t>d.imm)
            elif op == OP_ADDW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + x[d.rs2])
            elif op == OP_SUBW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] - x[d.rs2])
            elif op == OP_SLLI:
                x[d.rd] = x[d.rs1] << d.imm
            elif op == OP_SRLI:
                x[d.rd] = x[d.rs1] >> d.imm
            elif op == OP_SRAI:
                x[d.rd] = <uint64_t>(<int64_t>x[d.rs1] >> d.imm)
            elif op == OP_ANDI:
                x[d.rd] = x[d.rs1] & <uint64_t><int64_t>d.imm
            elif op == OP_ORI:
                x[d.rd] = x[d.rs1] | <uint64_t><int64_t>d.imm
            elif op == OP_XORI:
                x[d.rd] = x[d.rs1] ^ <uint64_t><int64_t>d.imm
            elif op == OP_SLTI:
                x[d.rd] = <int64_t>x[d.rs1] < <int64_t>d.imm
            elif op == OP_SLTIU:
                x[d.rd] = x[d.rs1] < <uint64_t><int64_t>d.imm
            elif op == OP_LUI:
                x[d.rd] = <uint64_t><int64_t>d.imm
            elif op == OP_AUIPC:
                x[d.rd] = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
            elif op == OP_AND:
                x[d.rd] = x[d.rs1] & x[d.rs2]
            elif op == OP_OR:
                x[d.rd] = x[d.rs1] | x[d.rs2]
            elif op == OP_XOR:
                x[d.rd] = x[d.rs1] ^ x[d.rs2]
            elif op == OP_SLL:
                x[d.rd] = x[d.rs1] << (x[d.rs2] & 63)
            elif op == OP_SRL:
                x[d.rd] = x[d.rs1] >> (x[d.rs2] & 63)
            elif op == OP_SRA:
                x[d.rd] = <uint64_t>(<int64_t>x[d.rs1] >> (x[d.rs2] & 63))
            elif op == OP_SLT:
                x[d.rd] = <int64_t>x[d.rs1] < <int64_t>x[d.rs2]
            elif op == OP_SLTU:
                x[d.rd] = x[d.rs1] < x[d.rs2]
            elif op == OP_SLLIW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] << d.imm)
            elif op == OP_SRLIW:
                x[d.rd] = <uint64_t>sx32(<uint32_t>x[d.rs1] >> d.imm)
            elif op == OP_SRAIW:
                x[d.rd] = <uint64_t><int64_t>(<int32_t>x[d.rs1] >> d.imm)
            elif op == OP_SLLW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] << (x[d.rs2] & 31))
            elif op == OP_SRLW:
                x[d.rd] = <uint64_t>sx32(<uint32_t>x[d.rs1] >> (x[d.rs2] & 31))
            elif op == OP_SRAW:
                x[d.rd] = <uint64_t><int64_t>(<int32_t>x[d.rs1] >> (x[d.rs2] & 31))
            elif op == OP_MUL:
                x[d.rd] = x[d.rs1] * x[d.rs2]
            elif op == OP_MULH:
                x[d.rd] = hv_mulh(<int64_t>x[d.rs1], <int64_t>x[d.rs2])
            elif op == OP_MULHSU:
                x[d.rd] = hv_mulhsu(<int64_t>x[d.rs1], x[d.rs2])
            elif op == OP_MULHU:
                x[d.rd] = hv_mulhu(x[d.rs1], x[d.rs2])
            elif op == OP_DIV:
                x[d.rd] = op_div(<int64_t>x[d.rs1], <int64_t>x[d.rs2])
            elif op == OP_DIVU:
                x[d.rd] = op_divu(x[d.rs1], x[d.rs2])
            elif op == OP_REM:
                x[d.rd] = op_rem(<int64_t>x[d.rs1], <int64_t>x[d.rs2])
            elif op == OP_REMU:
                x[d.rd] = op_remu(x[d.rs1], x[d.rs2])
            elif op == OP_MULW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] * x[d.rs2])
            elif op == OP_DIVW:
                x[d.rd] = op_divw(x[d.rs1], x[d.rs2])
            elif op == OP_DIVUW:
                x[d.rd] = op_divuw(x[d.rs1], x[d.rs2])
            elif op == OP_REMW:
                x[d.rd] = op_remw(x[d.rs1], x[d.rs2])
            elif op == OP_REMUW:
                x[d.rd] = op_remuw(x[d.rs1], x[d.rs2])
            elif op == OP_C_ADDI:
                x[d.rd] = x[d.rs1] + <uint64_t><int64_t>d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ADDIW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + <uint64_t><int64_t>d.imm)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ADD:
                x[d.rd] = x[d.rs1] + x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SUB:
                x[d.rd] = x[d.rs1] - x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ADDW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] + x[d.rs2])
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SUBW:
                x[d.rd] = <uint64_t>sx32(x[d.rs1] - x[d.rs2])
                d += 1
                cnt += 1
                continue
            elif op == OP_C_AND:
                x[d.rd] = x[d.rs1] & x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_OR:
                x[d.rd] = x[d.rs1] | x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_XOR:
                x[d.rd] = x[d.rs1] ^ x[d.rs2]
                d += 1
                cnt += 1
                continue
            elif op == OP_C_ANDI:
                x[d.rd] = x[d.rs1] & <uint64_t><int64_t>d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SLLI:
                x[d.rd] = x[d.rs1] << d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SRLI:
                x[d.rd] = x[d.rs1] >> d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SRAI:
                x[d.rd] = <uint64_t>(<int64_t>x[d.rs1] >> d.imm)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_LUI:
                x[d.rd] = <uint64_t><int64_t>d.imm
                d += 1
                cnt += 1
                continue
            elif op == OP_C_LW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 4)
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 4, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 4)
                x[d.rd] = <uint64_t>sx32(v)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_LD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_load, addr, 8)
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if load_slow(s, addr, 8, &v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(&v, p, 8)
                x[d.rd] = v
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SW:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 4)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 4, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 4)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_SD:
                addr = x[d.rs1] + <uint64_t><int64_t>d.imm
                p = tlb_hit(tl_store, addr, 8)
                v = x[d.rs2]
                if p == NULL:
                    s.exit.pc = vbase + (<uint64_t>(d - page) << 1)
                    if store_slow(s, addr, 8, v) != MEM_OK:
                        reason = 1
                        break
                else:
                    hits += 1
                    memcpy(p, &v, 8)
                d += 1
                cnt += 1
                continue
            elif op == OP_C_BEQ:
                cnt += 1
                if x[d.rs1] == 0:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 1
                continue
            elif op == OP_C_BNE:
                cnt += 1
                if x[d.rs1] != 0:
                    if d.jump != JUMP_OUT:
                        d += d.jump
                        if cnt > soft:
                            break
                        continue
                    pc = vbase + (<uint64_t>(d - page) << 1) + <uint64_t><int64_t>d.imm
                    pc_set = 1
                    break
                d += 1
                continue
            elif op == OP_C_JAL:
                t = vbase + (<uint64_t>(d - page) << 1)
                x[d.rd] = t + 2
                cnt += 1
                if d.jump != JUMP_OUT:
                    d += d.jump
                    if cnt > soft:
                        break
                    continue
                pc = t + <uint64_t><int64_t>d.imm
                pc_set = 1
                break
            elif op == OP_C_JALR:
                t = (x[d.rs1] + <uint64_t><int64_t>d.imm) & ~<uint64_t>1
                x[d.rd] = vbase + (<uint64_t>(d - page) << 1) + 2
                cnt += 1
                if (t & ~<uint64_t>PAGE_MASK) == vbase:
                    d = page + ((t & PAGE_MASK) >> 1)
                    if cnt > soft:
                        break
                    continue
                pc = t
                pc_set = 1
                break
            elif op == OP_NOP:
                pass
            elif op == OP_RDCOUNTER:
                if not ((s.counters_native >> d.imm) & 1):
                    generic = 1
                    break
                t = s.instret + cnt
                if d.imm == 0:
                    v = t + s.cycle_offset
                elif d.imm == 1:
                    v = t / s.insns_per_tick + s.time_offset
                else:
                    v = t + s.instret_offset
                x[d.rd] = v
            elif op == OP_UNDECODED:
                t = (<uint64_t>(d - page) << 1)
                memcpy(&half, hp + t, 2)
                s.decodes += 1
                if (half & 3) != 3:
                    decode16(half, d)
                elif t != 0xffe:
                    memcpy(&v, hp + t, 4)
                    decode32(<uint32_t>v, d)
                else:
                    d.op = OP_GENERIC           # straddles two pages
                    d.step = 2
                d.jump = JUMP_OUT
                if (d.op >= OP_BEQ and d.op <= OP_BGEU) or d.op == OP_JAL or d.op == OP_C_BEQ \
                        or d.op == OP_C_BNE or d.op == OP_C_JAL:
                    v = <uint64_t>(<int64_t>t + <int64_t>d.imm)      # target offset in the page
                    if v < 4096:
                        d.jump = <int16_t>(<int64_t>d.imm >> 1)
                continue
            elif op == OP_PAGE_END:
                pc = vbase + 4096
                pc_set = 1
                break
            elif op == OP_GENERIC:
                generic = 1
                break
            else:
                hv_unreachable()                # every op has an arm: no range check
            d += 2                              # every 16-bit operation has its own arm
            cnt += 1
            # <<< dispatch
        # ---- left the page: an exit, a generic instruction, the budget, a jump ----
        x[0] = 0
        if not pc_set:
            pc = vbase + (<uint64_t>(d - page) << 1)
        s.instret += cnt
        s.tlb_hits += hits
        hits = 0
        s.pc = pc
        if reason:
            # a load/store slow path exited (MMIO or exception): complete the record
            if s.exit.reason == EXIT_MMIO:
                s.exit.rd = d.rd if d.rd != 32 else 0
                s.exit.is_signed = (d.op == OP_LW or d.op == OP_LH or d.op == OP_LB or
                                    d.op == OP_LD or d.op == OP_C_LW or d.op == OP_C_LD)
                s.exit.insn = d.raw
                s.exit.insn_len = 2 * d.step
            s.exit.pc = pc
            return s.exit.reason
        if generic:
            reason = run_generic(s, 1)
            if reason != EXIT_BUDGET:
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
        self.npages = (ram_size + 4095) >> 12
        self.code = <Decoded**>calloc(self.npages, sizeof(Decoded*))
        if self.code == NULL:
            raise MemoryError()

    def __dealloc__(self):
        self.drop_code()
        free(self.code)

    def drop_code(self):
        """Forget all pre-decoded instructions (call only while no vCPU runs)."""
        cdef uint64_t i
        if self.code == NULL:
            return
        for i in range(self.npages):
            if self.code[i] != NULL:
                free(self.code[i])
                self.code[i] = NULL

    def clear(self):
        """Zero RAM (a reset) and forget decoded code."""
        self.drop_code()
        self.ram[:] = 0

    @property
    def code_pages(self):
        """How many RAM pages hold pre-decoded instructions."""
        return sum(1 for i in range(self.npages) if self.code[i] != NULL)

    @property
    def ram_size(self):
        return self.ram.shape[0]

    def contains_ram(self, uint64_t addr, uint64_t size=1):
        """True if guest-physical [addr, addr+size) lies in RAM (no wrap-around)."""
        cdef uint64_t n = self.ram.shape[0]
        return addr >= self.ram_base and size <= n and addr - self.ram_base <= n - size

    def dma_read(self, uint64_t addr, uint64_t size):
        """Bytes of guest RAM for a device (never the ROM); IndexError outside RAM."""
        if not self.contains_ram(addr, size):
            raise IndexError(f"DMA from {addr:#x}+{size:#x} is outside guest RAM")
        return self.read(addr, size)

    def dma_write(self, uint64_t addr, data):
        """Copy bytes into guest RAM for a device (never the ROM); IndexError outside RAM."""
        if not self.contains_ram(addr, len(data)):
            raise IndexError(f"DMA to {addr:#x}+{len(data):#x} is outside guest RAM")
        self.write(addr, data)

    def read(self, uint64_t addr, uint64_t size):
        """Bytes of guest-physical RAM or ROM; IndexError outside them."""
        return bytes(self._view(addr, size))

    def write(self, uint64_t addr, data):
        """Copy bytes into guest-physical RAM or ROM; IndexError outside them.

        Like a guest store, it drops pre-decoded instructions it overwrites."""
        cdef uint64_t n = len(data), off, page, end
        self._view(addr, n)[:] = np.frombuffer(bytes(data), dtype=np.uint8)
        if n and addr >= self.ram_base and addr - self.ram_base < <uint64_t>self.ram.shape[0]:
            off = addr - self.ram_base
            end = off + n
            while off < end:
                page = off >> 12
                if self.code[page] != NULL:
                    code_invalidate(self.code[page], <uint32_t>(off & PAGE_MASK),
                                    <uint32_t>min(end - off, 4096 - (off & PAGE_MASK)))
                off = (page + 1) << 12

    def _view(self, uint64_t addr, uint64_t size):
        cdef uint64_t n = self.ram.shape[0], m = self.rom.shape[0]
        if addr >= self.ram_base and size <= n and addr - self.ram_base <= n - size:
            return self.ram[addr - self.ram_base:addr - self.ram_base + size]
        if addr >= self.rom_base and size <= m and addr - self.rom_base <= m - size:
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
        self.s.code = memory.code
        self.s.code_gen = &memory.code_gen
        self.s.code_gen_seen = memory.code_gen
        self.s.fast = 1
        self.s.insns_per_tick = 10
        memset(self.s.tlb, 0xff, sizeof(self.s.tlb))

    def __dealloc__(self):
        free(self.s)

    def run(self):
        """Run until instret reaches stop_at or an exit; return the exit reason.

        The GIL is released while guest code runs; the time spent is added to
        `core_seconds`."""
        cdef int r
        cdef timespec t0, t1
        clock_gettime(CLOCK_MONOTONIC, &t0)
        with nogil:
            r = run_loop(self.s)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        self.s.core_ns += (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
        return r

    @property
    def core_seconds(self):
        """Host seconds spent inside run() (the fast path), since the vCPU was made."""
        return self.s.core_ns / 1e9

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

    @property
    def fast(self):
        """True: the pre-decoded fast path; False: the reference interpreter only."""
        return bool(self.s.fast)

    @fast.setter
    def fast(self, bint on):
        self.s.fast = on

    def set_counters(self, uint32_t native_mask, uint64_t insns_per_tick, uint64_t time_offset,
                     uint64_t cycle_offset, uint64_t instret_offset):
        """Let the core read cycle/time/instret (bit 0/1/2 of native_mask) without an exit.

        The twin of the CSR handler for those reads: time = instret / insns_per_tick
        + time_offset, cycle = instret + cycle_offset, instret + instret_offset.
        The hypervisor pushes a mask of 0 to have every read exit."""
        self.s.counters_native = native_mask
        self.s.insns_per_tick = insns_per_tick if insns_per_tick else 1
        self.s.time_offset = time_offset
        self.s.cycle_offset = cycle_offset
        self.s.instret_offset = instret_offset

    def kick(self):
        """Make a running run() return soon (callable from another thread): the core
        stops at its next page change or exit."""
        self.s.stop_at = 0

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
        """Shadow paging counters: hits (loads and stores on the fast path), misses (fills
        attempted, MMIO included), fills (entries made), guest page walks, flushes, guest
        page faults, decodes."""
        return {"tlb_hits": self.s.tlb_hits, "tlb_misses": self.s.tlb_misses,
                "tlb_fills": self.s.tlb_fills,
                "page_walks": self.s.page_walks,
                "flushes": self.s.tlb_flushes, "page_faults": self.s.page_faults,
                "decodes": self.s.decodes}


def measured(fn):
    """Call fn() and return its result: a landmark for instruction counting.

    The perf gate runs guests inside it under callgrind
    (`--toggle-collect=*measured* --dump-after=*measured*`), so that each call's
    host instructions are counted apart from start-up and from each other."""
    return fn()
