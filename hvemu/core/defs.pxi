# Constants of the architecture and of the core, and the helpers every part uses.

# Exit reasons and access types, for Python.
BUDGET = EXIT_BUDGET
SYSTEM = EXIT_SYSTEM
EXCEPTION = EXIT_EXCEPTION
MMIO = EXIT_MMIO
NOMEM = EXIT_NOMEM
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
    void hv_unreachable "__builtin_unreachable" () noexcept nogil


cdef inline int64_t sx32(uint64_t v) noexcept nogil:
    return <int64_t><int32_t><uint32_t>v


cdef inline void set_exception(HartState* s, uint64_t pc, uint64_t cause,
                               uint64_t tval) noexcept nogil:
    """Fill the exit record with a guest exception for the hypervisor to reflect."""
    s.exit.reason = EXIT_EXCEPTION
    s.exit.pc = pc
    s.exit.cause = cause
    s.exit.tval = tval
    if cause == CAUSE_FETCH_PAGE or cause == CAUSE_LOAD_PAGE or cause == CAUSE_STORE_PAGE:
        s.page_faults += 1
