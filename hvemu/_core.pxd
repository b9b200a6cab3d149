# Declarations of the fast path: the guest hart state, the shadow TLB and the
# exit record (hvemu's counterpart of `struct kvm_run`).
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t

cdef enum:
    TLB_SIZE = 256          # entries per (privilege, access type); direct mapped
    TLB_MASK = 255

cdef enum:  # access types
    ACC_FETCH = 0
    ACC_LOAD = 1
    ACC_STORE = 2

cdef enum ExitReason:
    EXIT_BUDGET = 1      # stop_at reached: the hypervisor's turn (timers, polling)
    EXIT_SYSTEM = 2      # a SYSTEM-opcode instruction: CSR*, ECALL, EBREAK, xRET, WFI, SFENCE.VMA
    EXIT_EXCEPTION = 3   # a guest exception to reflect: cause, tval
    EXIT_MMIO = 4        # a load/store to a guest-physical address that is not RAM
    EXIT_NOMEM = 5       # a RAM page was touched for the first time and the frame pool is empty
    EXIT_DEBUG = 6       # a debugger's breakpoint or watchpoint (core/trigger.pxi): before the
                         # instruction; cause = TRIG_EXEC/LOAD/STORE, tval = the address

cdef enum:  # TLB entry flags
    TLB_GLOBAL = 1       # filled from a PTE with G set
    TLB_SUPER = 2        # a 4 KiB slice of a superpage; its level in bits 8-9

cdef enum:
    TRIG_MAX = 4            # Sdtrig triggers per hart (core/trigger.pxi)
    DBG_MAX = 64            # the debugger's breakpoints and watchpoints per hart

ctypedef struct DebugPoint:
    # a gdb stub's breakpoint or watchpoint: guest-virtual [lo, hi), TRIG_EXEC/LOAD/STORE
    uint64_t lo
    uint64_t hi
    uint32_t kind

ctypedef struct Trigger:
    # what the core needs to match one debug trigger, pushed by the hypervisor
    uint64_t tdata2      # the compare value
    uint32_t flags       # TRIG_* of core/trigger.pxi: load/store/execute, armed, chain
    uint32_t match       # mcontrol6.match: 0 =, 1 napot, 2 >=, 3 <, 4/5 masked; +8 negated
    uint32_t size        # bytes of the access or instruction it matches; 0: any

ctypedef struct TlbEntry:
    uint64_t tag         # guest virtual page number, or TLB_INVALID
    uint64_t addend      # host address minus guest virtual address
    uint64_t flags
    uint64_t gppn        # the guest-physical page it translates to

ctypedef struct Decoded:
    # one pre-decoded instruction; a page of them is indexed by (pc & 0xfff) >> 1
    uint8_t op           # an Op of the fast path; 0 = not decoded yet
    uint8_t rd           # x0 as a destination is redirected to the scratch x[32]
    uint8_t rs1
    uint8_t rs2
    int32_t imm
    uint32_t raw         # the instruction as fetched
    uint16_t step        # 1 for a 16-bit instruction, 2 for a 32-bit one (in slots)
    int16_t jump         # branch/jump target as a slot delta within the page, or JUMP_OUT

ctypedef struct ExitRecord:
    uint32_t reason
    uint32_t insn        # the raw instruction (C.EBREAK is given as EBREAK)
    uint32_t insn_len    # 2 or 4
    uint32_t size        # MMIO access size in bytes
    uint32_t rd          # MMIO load destination register
    uint32_t is_write
    uint32_t is_signed
    uint32_t is_fp       # MMIO load destination is f[rd] (FLW, FLD, C.FLD, C.FLDSP)
    uint64_t pc
    uint64_t addr        # MMIO guest-physical address
    uint64_t value       # MMIO store data
    uint64_t cause       # exception cause
    uint64_t tval        # exception tval (and the virtual address of an MMIO access)

ctypedef struct FramePoolState:
    # host memory frames (4 KiB) for guest RAM: handed out on a guest page's first touch,
    # from chunks mmap'd as needed (untouched memory costs the host nothing)
    uint8_t** free       # a stack of returned frames (zero again: madvise'd away)
    uint64_t nfree
    uint64_t free_cap
    uint8_t** chunks     # the mmap'd chunks, for unmapping
    uint64_t nchunks
    uint64_t chunks_cap
    uint8_t* bump        # the next never-used frame of the newest chunk
    uint64_t bump_left
    uint64_t limit       # frames that may be in use at once; 0: no limit
    uint64_t in_use
    uint64_t peak
    uint8_t* region      # shared pools: all frames are in this one region (both processes
    uint64_t region_frames  # of a hosted hypervisor map it), reserved when the pool is made

ctypedef struct CodeSync:
    # a hosted hypervisor's process writes guest memory the core process has decoded
    # code in: it marks the pages here, and the core process drops their decoded slots
    uint64_t gen         # bumped on every mark
    uint64_t seen        # the core process's last gen handled
    uint32_t drop_all    # every page's decoded slots go (a reset)
    uint8_t pages[1]     # one bit per RAM page (the struct is allocated to fit)

ctypedef struct DirtyLog:
    # dirty logging for snapshots and live migration: while `on`, every write to a RAM
    # page that takes the slow path (a store-TLB fill, the page walker's A/D bits, a
    # cbo.zero, a device's DMA) sets its byte; the store-TLB entries are dropped at the
    # start of each round (write protection), so a page's first store after it misses
    uint32_t on
    uint8_t pages[1]     # one byte per RAM page (the struct is allocated to fit)

ctypedef struct HartState:
    uint64_t x[33]       # x0..x31; x[32] is scratch
    uint64_t pc
    uint64_t instret     # instructions retired
    uint64_t stop_at     # run() returns EXIT_BUDGET when instret reaches this
    uint32_t stop_soft   # stop_at may be overshot by up to a page of straight-line code
                         # (a quantum's end): no exact last stretch in the interpreter
    # translation state, pushed by the hypervisor whenever it changes (like a VMCS)
    uint32_t priv        # 0 U, 1 S, 3 M: privilege of instruction fetch
    uint32_t ls_priv     # effective privilege of loads/stores (MPRV applied)
    uint32_t satp_mode   # 0 bare, 8 Sv39, 9 Sv48
    uint32_t sum
    uint32_t mxr
    uint64_t satp_root   # guest-physical address of the root page table
    uintptr_t resv       # host address reserved by LR, 0 when none
    # the F and D extensions (core/fp.pxi): f0-f31 and fcsr, and mstatus.FS, which the
    # core owns because it sets Dirty; the hypervisor's CSR file reaches them through VCpu
    uint64_t f[32]
    uint32_t fflags
    uint32_t frm
    uint32_t fs          # mstatus.FS: 0 Off, 1 Initial, 2 Clean, 3 Dirty
    # guest-physical memory: RAM through the VM's P2M (guest page -> host frame, filled
    # from the hypervisor's frame pool on first touch), and the boot ROM
    uint8_t** p2m
    FramePoolState* pool
    uint32_t oom         # a first touch found the pool empty (EXIT_NOMEM)
    uint64_t ram_base
    uint64_t ram_size
    uint8_t* rom
    uint64_t rom_base
    uint64_t rom_size
    DirtyLog* dirty      # the VM's dirty log (GuestMemory's), never NULL
    Decoded** code       # per RAM page: its pre-decoded instructions, or NULL
    uint64_t* code_gen   # bumped (in the shared GuestMemory) whenever a page becomes code
    uint64_t code_gen_seen
    uint32_t fast        # use the pre-decoded fast path
    # native counter reads (a twin of the CSR handler for cycle/time/instret, off by default)
    uint32_t counters_native   # bit i: counter CSR 0xC00+i may be read without an exit
    uint64_t insns_per_tick
    uint64_t time_insns  # added to instret before the division: the other harts' instructions
    uint64_t time_offset
    uint64_t cycle_offset
    uint64_t instret_offset
    uint64_t decodes
    int64_t core_ns       # host nanoseconds spent in run()
    uint64_t remote_hops  # hosted: round trips between the hypervisor's process and the core's
    # the plain CSRs (no side effects: mscratch mepc mcause mtval, sscratch sepc scause
    # stval), kept here so that the hypervisor's privileged part in the core
    # (core/privpart.pxi) and the Python CSR file are one state; then mstatus (less FS,
    # which is `fs`), as run_part pushes it from the CSR file and takes it back after;
    # then stvec and satp, which the CSR file also keeps here (csr.py's CORE_CSRS)
    uint64_t vcsr[11]
    uint32_t priv_part    # the hypervisor's privileged part in the core finishes what it can
    uint32_t tvm          # mstatus.TVM, pushed by the hypervisor (sync_mode)
    uint32_t sie_hold     # SIE_HOLD_* (core/privpart.pxi): when an sstatus.SIE change must go
                          # to the hypervisor, pushed by it before each run
    uint64_t part_handled # ... and how many exits it finished in the core
    uint64_t watch_page  # the guest-physical page of a watched word, or ~0 (none)
    uint64_t watch_pa    # stores touching this 8-byte word exit as MMIO (HTIF's tohost)
    uint64_t menvcfg     # menvcfg and senvcfg: which cbo.* may run below M (core/cmo.pxi)
    uint64_t senvcfg
    uint32_t trig_armed  # a trigger can fire now: run the reference interpreter, checking
    uint32_t trig_n
    Trigger trig[TRIG_MAX]
    # the debugger's points, which the guest cannot see (no memory or CSR changes): a
    # page with a breakpoint runs in the reference interpreter, which checks each pc; the
    # pages a watchpoint covers are never cached in the shadow TLB for its access kinds,
    # so that every access to them reaches tlb_fill, which checks it (the fast path runs
    # every other page as usual)
    uint32_t dbg_n
    uint32_t dbg_exec    # some point is a breakpoint
    uint32_t dbg_data    # some point is a watchpoint
    DebugPoint dbg[DBG_MAX]
    # the shadow TLB: [privilege U/S/M][access type][index]
    TlbEntry tlb[3][3][TLB_SIZE]
    uint64_t super_lo    # the guest-virtual pages [super_lo, super_hi] that cached superpage
    uint64_t super_hi    # slices may translate (empty when super_lo > super_hi)
    # shadow paging statistics
    uint64_t tlb_hits
    uint64_t tlb_misses
    uint64_t tlb_fills
    uint64_t page_walks
    uint64_t tlb_flushes
    uint64_t page_faults
    ExitRecord exit


cdef class FramePool:
    cdef FramePoolState* p
    cdef readonly bint shared


cdef class GuestMemory:
    cdef Decoded** code            # pre-decoded instruction pages, shared by the vCPUs
    cdef uint64_t code_gen         # how many times a RAM page became code
    cdef uint64_t npages
    cdef uint8_t** p2m             # per RAM page: its host frame, or NULL (never touched)
    cdef readonly FramePool pool
    cdef readonly object rom       # numpy uint8 array: boot ROM
    cdef readonly uint64_t ram_base
    cdef readonly uint64_t ram_size
    cdef readonly uint64_t rom_base
    cdef uint8_t* rom_ptr
    cdef CodeSync* sync            # shared with a hosted hypervisor's process
    cdef readonly bint shared      # P2M, ROM, marks and vCPU states in MAP_SHARED memory
    cdef DirtyLog* dirty           # pages written while dirty logging is on (shared too)
    cdef uint64_t dirty_size
    cdef uint64_t sync_size
    cdef public bint remote_code   # this process does not run the core: mark, don't drop
    cdef void sync_code(self) noexcept
    cdef uint8_t* frame(self, uint64_t page, bint alloc) except? NULL


cdef class VCpu:
    cdef HartState* s
    cdef readonly GuestMemory memory
    cdef int remote_req            # hosted: run() asks the core process over these pipes
    cdef int remote_resp
    cdef uint8_t remote_index
    cdef int _run(self) except -1
    cdef int _run_remote(self) except -1
