# Cache-block operations (unprivileged spec, "Cache Management Operations": Zicbom's
# cbo.clean/cbo.flush/cbo.inval, Zicboz's cbo.zero).  Zicbop's prefetch.i/r/w are
# ORI hints with rd = x0 and need nothing here.
#
# The machine has no caches, so the management operations only check that the block
# may be accessed; cbo.zero stores zeros to the whole block like any store (through
# the shadow TLB, dropping decoded instructions it overwrites).  Which of them S and U
# may run is up to menvcfg and senvcfg (their CBIE, CBCFE and CBZE fields), which the
# hypervisor pushes into HartState when they change, as it does the translation state.

cdef enum:
    CBO_BLOCK = 64          # bytes: the cache-block size the device tree advertises
    ENVCFG_CBIE = 0x30      # menvcfg/senvcfg: cbo.inval (0b00 illegal, 0b01 flush, 0b11 inval)
    ENVCFG_CBCFE = 0x40     # cbo.clean and cbo.flush
    ENVCFG_CBZE = 0x80      # cbo.zero

CBO_BLOCK_SIZE = CBO_BLOCK


cdef int cbo_exec(HartState* s, uint32_t insn, uint64_t addr) noexcept nogil:
    """Run cbo.inval/clean/flush/zero (the word insn) on the block holding addr (rs1's
    value).  MEM_OK, or MEM_EXIT with an exception in the exit record at s.exit.pc.

    Illegal instruction: a reserved encoding, or an operation the current privilege
    may not run.  Faults report addr, not the block's base, in tval, and are always
    store faults (CMO spec, "Page-Fault, Guest-Page-Fault, and Access-Fault
    Exceptions"); there are no misaligned-address exceptions."""
    cdef uint32_t f12 = insn >> 20
    cdef uint64_t block = addr & ~<uint64_t>(CBO_BLOCK - 1), need, cfg
    if f12 == 0:
        need = ENVCFG_CBIE
    elif f12 == 1 or f12 == 2:
        need = ENVCFG_CBCFE
    elif f12 == 4:
        need = ENVCFG_CBZE
    else:
        need = 0
    # "CSR controls for CMO instructions": below M menvcfg must enable the operation,
    # in U senvcfg too (CBIE is never the reserved 0b10, so 0b01 & 0b11 is not 0; the
    # flush that CBIE = 0b01 asks for is the same as an invalidate here)
    cfg = ~<uint64_t>0 if s.priv == 3 else (s.menvcfg if s.priv == 1 else s.menvcfg & s.senvcfg)
    if need == 0 or ((insn >> 7) & 31) != 0 or not (cfg & need):
        set_exception(s, s.exit.pc, CAUSE_ILLEGAL, insn)
        return MEM_EXIT
    if need == ENVCFG_CBZE:
        return cbo_zero(s, addr, block)
    return cbo_manage(s, addr, block)


cdef int cbo_manage(HartState* s, uint64_t addr, uint64_t block) noexcept nogil:
    """cbo.clean/flush/inval: permitted where a load or a store is (a page that allows
    stores allows loads); the walk sets A, never D.  No cache, so nothing else to do --
    also on a device, whose accesses are never cached."""
    cdef uint64_t pa, flags
    cdef int cause
    if tlb_lookup(s, block, ACC_LOAD, 1) != NULL or tlb_lookup(s, block, ACC_STORE, 1) != NULL:
        return MEM_OK
    cause = translate(s, block, ACC_LOAD, s.ls_priv, &pa, &flags)
    if cause:
        set_exception(s, s.exit.pc,
                      CAUSE_STORE_PAGE if cause == CAUSE_LOAD_PAGE else CAUSE_STORE_ACCESS, addr)
        return MEM_EXIT
    return MEM_OK


cdef int cbo_zero(HartState* s, uint64_t addr, uint64_t block) noexcept nogil:
    """cbo.zero: a store of CBO_BLOCK zero bytes at block, with a store's permission,
    A/D updates and faults.  Main memory only: on a device or the ROM it raises a
    store access fault."""
    cdef uint8_t* p = tlb_lookup(s, block, ACC_STORE, CBO_BLOCK)
    if p == NULL:
        if tlb_fill(s, block, ACC_STORE, CBO_BLOCK, &p) != MEM_OK:
            if s.exit.reason == EXIT_NOMEM:
                return MEM_EXIT
            if s.exit.reason == EXIT_EXCEPTION:
                s.exit.tval = addr
                return MEM_EXIT
            # EXIT_MMIO: a device, or a block holding the watched word (HTIF's tohost,
            # in RAM: a zero there is no command)
            p = phys_ptr(s, s.exit.addr, CBO_BLOCK, 1)
            if p == NULL:
                set_exception(s, s.exit.pc, CAUSE_STORE_ACCESS, addr)
                return MEM_EXIT
            code_written(s, s.exit.addr, CBO_BLOCK)
        # (tlb_fill dropped any decoded instructions in the block, as for every store)
    memset(p, 0, CBO_BLOCK)
    return MEM_OK
