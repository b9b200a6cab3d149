# The shadow TLB and the guest page-table walk (privileged spec, "Virtual address
# translation process", Sv39/Sv48).
#
# Per privilege (U, S, M) and access type (fetch, load, store) a direct-mapped table
# maps guest-virtual page -> host address with the effective permissions of the guest
# PTE; it is filled lazily on a miss by a walk that sets A/D bits as hardware does.
# MMIO is never cached, a page holding decoded instructions never gets a store entry
# (its stores must drop the decoded slots), and neither does a page with a watched
# word (HTIF's tohost), whose stores exit.

cdef inline uint32_t tlb_set(uint32_t priv) noexcept nogil:
    # privilege 0 U, 1 S, 3 M -> TLB set 0, 1, 2
    return 2 if priv == 3 else priv

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
                code_written(s, pte_addr, 8)    # the walker's write is a store, too
            a = ppn << 12
            if i > 0:
                a |= va & ((<uint64_t>1 << (12 + 9 * i)) - 1) & ~PAGE_MASK
                flags_out[0] |= TLB_SUPER | (<uint64_t>i << 8)
            if pte & PTE_G:
                flags_out[0] |= TLB_GLOBAL
            pa_out[0] = a | (va & PAGE_MASK)
            return 0
        # a pointer to the next level
        a = ppn << 12
        i -= 1
    return fault


cdef int tlb_fill(HartState* s, uint64_t va, int acc, uint32_t size,
                  uint8_t** out) noexcept nogil:
    """Translate va for an access of size bytes, fill the TLB entry, and give the host
    address in out.

    Returns MEM_OK, or MEM_EXIT with the exit record filled in (exception or MMIO).
    A store to a page holding decoded instructions, or to the page of a watched word,
    is not cached: it comes here every time, and drops the decoded instructions it
    may overwrite; a store that touches the watched word itself exits as MMIO."""
    cdef uint32_t priv = s.priv if acc == ACC_FETCH else s.ls_priv
    cdef uint64_t pa, flags
    cdef uint8_t* host
    cdef TlbEntry* e
    cdef int cause, level, watched
    cdef bint cache = 1
    cdef uint64_t first
    s.tlb_misses += 1
    cause = translate(s, va, acc, priv, &pa, &flags)
    if s.oom:                             # a page-table page had no frame, nor the pool one
        s.exit.reason = EXIT_NOMEM
        return MEM_EXIT
    if cause:
        set_exception(s, s.exit.pc, cause, va)
        return MEM_EXIT
    if s.dbg_data and acc != ACC_FETCH:  # a debugger's watchpoint (trigger.pxi)
        watched = dbg_data_check(s, va, size, acc)
        if watched == 1:
            return MEM_EXIT
        if watched == 2:
            cache = 0
    host = phys_ptr(s, pa & ~PAGE_MASK, 4096, acc == ACC_STORE)
    if host == NULL:
        if s.oom:
            s.exit.reason = EXIT_NOMEM
            s.exit.addr = pa
            return MEM_EXIT
        if acc == ACC_FETCH or (acc == ACC_STORE and phys_ptr(s, pa, 1, 0) != NULL):
            # no instructions from devices; no stores to ROM
            set_exception(s, s.exit.pc,
                          CAUSE_FETCH_ACCESS if acc == ACC_FETCH else CAUSE_STORE_ACCESS, va)
            return MEM_EXIT
        s.exit.reason = EXIT_MMIO
        s.exit.addr = pa
        s.exit.tval = va
        s.exit.is_write = acc == ACC_STORE
        s.exit.is_fp = 0                # an FP load sets it
        return MEM_EXIT
    out[0] = host + (va & PAGE_MASK)
    if acc == ACC_STORE:
        if (pa >> 12) == s.watch_page:
            if pa < s.watch_pa + 8 and s.watch_pa < pa + size:
                s.exit.reason = EXIT_MMIO
                s.exit.addr = pa
                s.exit.tval = va
                s.exit.is_write = 1
                return MEM_EXIT
            cache = 0
        if code_written(s, pa, size):
            cache = 0
    if not cache:
        return MEM_OK
    e = &s.tlb[tlb_set(priv)][acc][(va >> 12) & TLB_MASK]
    s.tlb_fills += 1
    e.tag = va >> 12
    e.addend = <uint64_t><uintptr_t>host - (va & ~PAGE_MASK)
    e.flags = flags
    e.gppn = pa >> 12
    if flags & TLB_SUPER:                 # the superpage's pages, for page-specific fences
        level = (flags >> 8) & 3
        first = (va >> (12 + 9 * level)) << (9 * level)
        if first < s.super_lo:
            s.super_lo = first
        if first + (<uint64_t>1 << (9 * level)) - 1 > s.super_hi:
            s.super_hi = first + (<uint64_t>1 << (9 * level)) - 1
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
    s.super_lo = TLB_INVALID
    s.super_hi = 0
    s.tlb_flushes += 1


cdef void flush_store_tlb(HartState* s) noexcept nogil:
    """Drop every store entry (a page became code: its stores must take the slow path)."""
    cdef int p
    for p in range(3):
        memset(s.tlb[p][ACC_STORE], 0xff, TLB_SIZE * sizeof(TlbEntry))


cdef void tlb_sfence(HartState* s, bint has_va, uint64_t va, bint has_asid) noexcept nogil:
    """SFENCE.VMA: drop all shadow entries, one page's, one ASID's or both.  The shadow
    holds only entries of the current address space (a satp write drops everything), so
    an ASID-specific flush drops its non-global entries; a page inside a cached
    superpage drops everything, as QEMU does."""
    cdef uint64_t vpn = va >> 12
    cdef int p, a, i
    cdef TlbEntry* e
    if not has_va and not has_asid:
        tlb_flush_all(s)
        return
    if has_va and s.super_lo <= vpn <= s.super_hi:
        tlb_flush_all(s)
        return
    s.tlb_flushes += 1
    if not has_va:
        for p in range(2):
            for a in range(3):
                for i in range(TLB_SIZE):
                    e = &s.tlb[p][a][i]
                    if not (e.flags & TLB_GLOBAL):
                        e.tag = TLB_INVALID
        return
    for p in range(2):
        for a in range(3):
            e = &s.tlb[p][a][vpn & TLB_MASK]
            if e.tag == vpn and (not has_asid or not (e.flags & TLB_GLOBAL)):
                e.tag = TLB_INVALID
