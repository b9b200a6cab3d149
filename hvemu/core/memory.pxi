# Guest memory as the execution engines reach it: guest-physical -> host addresses
# (RAM through the P2M of core/frames.pxi, and the boot ROM), and the slow paths of
# loads, stores, atomics and fetches, taken on a shadow-TLB miss or a page crossing
# (the hit path is inline in the engines).

cdef inline uint8_t* phys_ptr(HartState* s, uint64_t pa, uint64_t size,
                              bint write) noexcept nogil:
    """Host address of guest-physical [pa, pa+size) in RAM (or ROM, for reads), else NULL
    (also, with s.oom set, when a RAM page has no frame and the pool none to give).  The
    range must not cross a page: RAM frames are not contiguous on the host."""
    cdef uint64_t off = pa - s.ram_base
    cdef uint8_t* f
    if off < s.ram_size and s.ram_size - off >= size:
        f = ram_frame(s, off >> 12)
        if write and s.dirty.on:          # dirty logging: the slow path of every RAM write
            s.dirty.pages[off >> 12] = 1
        return f + (off & PAGE_MASK) if f != NULL else NULL
    off = pa - s.rom_base
    if not write and off < s.rom_size and s.rom_size - off >= size:
        return s.rom + off
    return NULL


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
        if tlb_fill(s, va, ACC_LOAD, size, &p) != MEM_OK:
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
                if tlb_fill(s, va + i, ACC_STORE, 1, &p) != MEM_OK:
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
        if tlb_fill(s, va, ACC_STORE, size, &p) != MEM_OK:
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
        if tlb_fill(s, va, acc, size, &p) != MEM_OK:
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
        if tlb_fill(s, pc, ACC_FETCH, 2, &p) != MEM_OK:
            return MEM_EXIT
    memcpy(&lo, p, 2)
    if (lo & 3) != 3:
        insn[0] = lo
        return MEM_OK
    p = tlb_lookup(s, pc + 2, ACC_FETCH, 2)
    if p == NULL:
        if tlb_fill(s, pc + 2, ACC_FETCH, 2, &p) != MEM_OK:
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


