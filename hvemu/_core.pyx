# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The fast path: executes RV64IMAFDC (+ Zba/Zbb/Zbc/Zbs, Zicond, Zicbom/Zicboz) guest
code and walks guest page tables; matches Sdtrig triggers when the hypervisor arms them.

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

The core is one extension module in several files, one concern each (the state
structs are declared in _core.pxd):

    core/defs.pxi        exit reasons, exception causes, PTE bits, shared helpers
    core/frames.pxi      host frames for guest RAM: the frame pool behind each VM's P2M
    core/memory.pxi      guest-physical memory and the load/store/fetch slow paths
    core/tlb.pxi         the shadow TLB and the Sv39/Sv48 page walk
    core/alu.pxi         integer arithmetic shared by both engines (M, A)
    core/fp.pxi          the F and D extensions (on core/softfp.h), both engines'
    core/decode.pxi      the pre-decoder: instruction words -> Decoded slots
    core/bitmanip.pxi    Zba/Zbb/Zbc/Zbs/Zicond: decoder and helpers
    core/cmo.pxi         Zicbom/Zicboz: cache-block operations
    core/trigger.pxi     Sdtrig: debug trigger matching
    core/interp.pxi      the reference interpreter (`--reference`)
    core/fastpath.pxi.in the pre-decoded fast path, a template setup.py expands
    _core.pyx            this file: the Python interface (GuestMemory, VCpu)
"""


cdef object _numpy = None


cdef object numpy():
    """numpy, imported on first use: only snapshots and migration need it, and its
    import (~0.15 s) would otherwise delay every start of hvemu."""
    global _numpy
    if _numpy is None:
        import numpy as np
        _numpy = np
    return _numpy

cimport cython

from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t,
                          uint32_t, uint64_t, uintptr_t, INT64_MIN)
from libc.string cimport memcpy, memset
from libc.stdlib cimport calloc, free, realloc
from posix.unistd cimport read, write
from libc.errno cimport EINTR, errno
from cpython.exc cimport PyErr_CheckSignals
from posix.mman cimport (MAP_ANONYMOUS, MAP_FAILED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED,
                         PROT_READ, PROT_WRITE, mmap, munmap)
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

include "core/defs.pxi"
include "core/frames.pxi"
include "core/memory.pxi"
include "core/tlb.pxi"
include "core/privpart.pxi"       # before decode.pxi and fastpath.pxi, which use it
include "core/alu.pxi"
include "core/fp.pxi"
include "core/decode.pxi"
include "core/bitmanip.pxi"
include "core/cmo.pxi"
include "core/trigger.pxi"
include "core/interp.pxi"
include "core/fastpath.pxi"


# ---------------------------------------------------------------------------
# Python interface
# ---------------------------------------------------------------------------


cdef class FramePool:
    """The hypervisor's host frames for guest RAM (core/frames.pxi): handed to a VM's
    P2M on a guest page's first touch, back when the VM resets or goes away.  `limit`
    (bytes, a multiple of 4 KiB; None: no limit) caps what all VMs may hold at once."""

    def __cinit__(self, limit=None, bint shared=False):
        """shared: one region of `limit` bytes reserved now, in memory a forked process
        shares (the hosted hypervisor's), with the pool's bookkeeping in it too."""
        cdef uint64_t frames
        self.shared = shared
        if not shared:
            self.p = <FramePoolState*>calloc(1, sizeof(FramePoolState))
            if self.p == NULL:
                raise MemoryError()
            self.p.limit = 0 if limit is None else max(1, <uint64_t>limit // FRAME)
            return
        if limit is None:
            raise ValueError("a shared frame pool needs a limit")
        frames = max(1, <uint64_t>limit // FRAME)
        self.p = <FramePoolState*>shared_alloc(sizeof(FramePoolState))
        if self.p == NULL:
            raise MemoryError()
        self.p.limit = frames
        self.p.free = <uint8_t**>shared_alloc(frames * sizeof(uint8_t*))
        self.p.free_cap = frames
        self.p.region = <uint8_t*>shared_alloc(frames * FRAME)
        if self.p.free == NULL or self.p.region == NULL:
            raise MemoryError()
        self.p.region_frames = frames
        self.p.bump = self.p.region
        self.p.bump_left = frames

    def __dealloc__(self):
        cdef uint64_t i
        if self.p == NULL:
            return
        if self.shared:
            shared_free(self.p.region, self.p.region_frames * FRAME)
            shared_free(self.p.free, self.p.free_cap * sizeof(uint8_t*))
            shared_free(self.p, sizeof(FramePoolState))
            return
        for i in range(self.p.nchunks):
            munmap(self.p.chunks[i], CHUNK_FRAMES * FRAME)
        free(self.p.chunks)
        free(self.p.free)
        free(self.p)

    @property
    def limit(self):
        """Bytes the pool may hand out at once (None: no limit)."""
        return self.p.limit * FRAME if self.p.limit else None

    @property
    def in_use(self):
        """Bytes of frames held by guests now."""
        return self.p.in_use * FRAME

    @property
    def peak(self):
        """The most bytes of frames guests held at once."""
        return self.p.peak * FRAME

    @property
    def available(self):
        """Bytes that may still be handed out (None: no limit)."""
        return (self.p.limit - self.p.in_use) * FRAME if self.p.limit else None


@cython.no_gc_clear            # its frames go back to `pool` in __dealloc__: keep it till then
cdef class GuestMemory:
    """Guest-physical memory of one VM: RAM through its P2M (guest page -> host frame,
    from `pool` on first touch) and the boot ROM (a memoryview over it)."""

    def __cinit__(self, uint64_t ram_base, uint64_t ram_size,
                  uint64_t rom_base=0x1000, uint64_t rom_size=0x1000, FramePool pool=None):
        self.pool = pool if pool is not None else FramePool()
        self.ram_base = ram_base
        self.ram_size = ram_size
        self.rom_base = rom_base
        self.npages = (ram_size + 4095) >> 12
        # backed only where written; with a shared pool, in memory a forked process shares
        # (the hosted hypervisor's): the P2M, the ROM and the decoded-code marks; decoded
        # code itself is the core process's own
        self.shared = self.pool.shared
        self.p2m = <uint8_t**>shared_alloc(self.npages * sizeof(uint8_t*), self.shared)
        self.sync_size = sizeof(CodeSync) + (self.npages + 7) // 8
        self.sync = <CodeSync*>shared_alloc(self.sync_size, self.shared)
        self.rom_ptr = <uint8_t*>shared_alloc(rom_size, self.shared)
        self.dirty_size = sizeof(DirtyLog) + self.npages
        self.dirty = <DirtyLog*>shared_alloc(self.dirty_size, self.shared)
        self.code = <Decoded**>calloc(self.npages, sizeof(Decoded*))
        if self.code == NULL or self.p2m == NULL or self.sync == NULL or self.rom_ptr == NULL \
                or self.dirty == NULL:
            raise MemoryError()
        self.rom = memoryview(<uint8_t[:rom_size]>self.rom_ptr)

    def __dealloc__(self):
        if self.p2m != NULL and not self.remote_code:
            self.release_frames()
        self.drop_code()
        free(self.code)
        shared_free(self.p2m, self.npages * sizeof(uint8_t*))
        shared_free(self.sync, self.sync_size)
        shared_free(self.dirty, self.dirty_size)
        # the ROM's mapping stays: views of it may outlive this object

    cdef uint8_t* frame(self, uint64_t page, bint alloc) except? NULL:
        """The host frame of RAM page `page` (from ram_base); with alloc, given one if it
        has none (MemoryError when the pool is empty), else NULL for an untouched page."""
        cdef uint8_t* f = self.p2m[page]
        if f == NULL and alloc:
            f = frame_alloc(self.pool.p)
            if f == NULL:
                raise MemoryError("the host frame pool is exhausted")
            self.p2m[page] = f
        return f

    def drop_code(self):
        """Forget all pre-decoded instructions (call only while no vCPU runs)."""
        cdef uint64_t i
        if self.code == NULL:
            return
        for i in range(self.npages):
            if self.code[i] != NULL:
                free(self.code[i])
                self.code[i] = NULL

    def release_frames(self):
        """Give every RAM frame back to the pool: RAM reads zero again (call only while no
        vCPU runs, and flush their TLBs with VCpu.flush_all())."""
        cdef uint64_t i
        for i in range(self.npages):
            if self.p2m[i] != NULL:
                frame_free(self.pool.p, self.p2m[i])
                self.p2m[i] = NULL
                if self.dirty.on:                # it reads zero now: a change to send
                    self.dirty.pages[i] = 1

    def clear(self):
        """Zero RAM (a reset): its frames go back to the pool; decoded code is forgotten
        (by the core process, when this is a hosted hypervisor's)."""
        if self.remote_code:
            self.sync.drop_all = 1
            self.sync.gen += 1
        else:
            self.drop_code()
        self.release_frames()

    cdef void sync_code(self) noexcept:
        """The core process: drop the decoded slots of the pages the hypervisor's process
        wrote (CodeSync) since the last call."""
        cdef CodeSync* c = self.sync
        cdef uint64_t i
        if c.gen == c.seen:
            return
        c.seen = c.gen
        if c.drop_all:
            c.drop_all = 0
            for i in range(self.npages):
                if self.code[i] != NULL:
                    code_invalidate(self.code[i], 0, 4096)
        for i in range((self.npages + 7) // 8):
            if c.pages[i]:
                for j in range(8):
                    if (c.pages[i] >> j) & 1 and 8 * i + j < self.npages \
                            and self.code[8 * i + j] != NULL:
                        code_invalidate(self.code[8 * i + j], 0, 4096)
                c.pages[i] = 0

    @property
    def code_pages(self):
        """How many RAM pages hold pre-decoded instructions."""
        return sum(1 for i in range(self.npages) if self.code[i] != NULL)

    @property
    def touched_pages(self):
        """How many RAM pages have a host frame (were ever touched since the last clear)."""
        cdef uint64_t i, n = 0
        for i in range(self.npages):
            if self.p2m[i] != NULL:
                n += 1
        return n

    def touched(self):
        """The guest-physical addresses of the RAM pages that have a frame, in order."""
        cdef uint64_t i
        return [self.ram_base + (i << 12) for i in range(self.npages) if self.p2m[i] != NULL]

    def contains_ram(self, uint64_t addr, uint64_t size=1):
        """True if guest-physical [addr, addr+size) lies in RAM (no wrap-around)."""
        cdef uint64_t n = self.ram_size
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
        """Bytes of guest-physical RAM or ROM; IndexError outside them.  Reading an
        untouched RAM page gives zeros and does not give it a frame."""
        cdef uint64_t off, page, chunk, done = 0
        cdef uint8_t* f
        cdef bytearray out
        cdef uint8_t* dst
        if self.contains_ram(addr, size):
            out = bytearray(size)
            dst = out
            off = addr - self.ram_base
            while done < size:
                page = (off + done) >> 12
                chunk = min(size - done, 4096 - ((off + done) & PAGE_MASK))
                f = self.p2m[page]
                if f != NULL:
                    memcpy(dst + done, f + ((off + done) & PAGE_MASK), chunk)
                done += chunk
            return bytes(out)
        return bytes(self._rom_view(addr, size))

    def write(self, uint64_t addr, data):
        """Copy bytes into guest-physical RAM or ROM; IndexError outside them.

        Like a guest store, it drops pre-decoded instructions it overwrites."""
        cdef const uint8_t[::1] src
        cdef uint64_t n, off, page, chunk, done = 0, inpage
        cdef uint8_t* f
        buf = bytes(data)
        n = len(buf)
        if not self.contains_ram(addr, n):
            self._rom_view(addr, n)[:] = memoryview(buf).cast("B")
            return
        if n == 0:
            return
        src = buf
        off = addr - self.ram_base
        while done < n:
            page = (off + done) >> 12
            inpage = (off + done) & PAGE_MASK
            chunk = min(n - done, 4096 - inpage)
            f = self.frame(page, 1)
            memcpy(f + inpage, &src[done], chunk)
            if self.dirty.on:
                self.dirty.pages[page] = 1
            if self.remote_code:                 # the core process has the decoded code
                self.sync.pages[page >> 3] |= <uint8_t>(1 << (page & 7))
                self.sync.gen += 1
            elif self.code[page] != NULL:
                code_invalidate(self.code[page], <uint32_t>inpage, <uint32_t>chunk)
            done += chunk

    # ---- whole pages, for snapshots and live migration (hvemu/snapshot.py) ----
    @property
    def pages(self):
        """RAM pages (4 KiB each)."""
        return self.npages

    def touched_indices(self):
        """The indices (from ram_base) of the RAM pages that have a frame: a uint32 array."""
        cdef uint64_t i
        np = numpy()
        out = np.zeros(self.npages, dtype=np.uint8)
        cdef uint8_t[::1] o = out
        for i in range(self.npages):
            if self.p2m[i] != NULL:
                o[i] = 1
        return np.flatnonzero(out).astype(np.uint32)

    def read_pages(self, pages):
        """The bytes of the RAM pages whose indices are given, one after the other (an
        untouched page reads zero, and is not given a frame)."""
        np = numpy()
        cdef const uint32_t[::1] idx = np.ascontiguousarray(pages, dtype=np.uint32)
        cdef Py_ssize_t i, n = idx.shape[0]
        out = bytearray(n * 4096)
        cdef uint8_t* dst = out
        cdef uint8_t* f
        for i in range(n):
            if idx[i] >= self.npages:
                raise IndexError(f"RAM page {idx[i]} beyond {self.npages} pages")
            f = self.p2m[idx[i]]
            if f != NULL:
                memcpy(dst + 4096 * i, f, 4096)
        return out

    def write_pages(self, pages, data):
        """Copy whole pages into RAM (len(data) = 4096 per index), giving them frames;
        decoded instructions on them are dropped.  A page of zeros that has no frame
        gets none (it reads zero already); one that has a frame is zeroed."""
        np = numpy()
        cdef const uint32_t[::1] idx = np.ascontiguousarray(pages, dtype=np.uint32)
        cdef const uint8_t[::1] src = memoryview(data).cast("B")
        cdef Py_ssize_t i, n = idx.shape[0]
        cdef uint64_t page
        cdef uint8_t* f
        if <Py_ssize_t>src.shape[0] != n * 4096:
            raise ValueError(f"{src.shape[0]} bytes for {n} pages")
        for i in range(n):
            page = idx[i]
            if page >= self.npages:
                raise IndexError(f"RAM page {page} beyond {self.npages} pages")
            f = self.p2m[page]
            if f == NULL and page_is_zero(&src[4096 * i]):
                continue
            f = self.frame(page, 1)
            memcpy(f, &src[4096 * i], 4096)
            if self.dirty.on:
                self.dirty.pages[page] = 1
            if self.remote_code:
                self.sync.pages[page >> 3] |= <uint8_t>(1 << (page & 7))
                self.sync.gen += 1
            elif self.code[page] != NULL:
                code_invalidate(self.code[page], 0, 4096)

    def dirty_log_start(self):
        """Log from now on which RAM pages are written (the vCPUs' store-TLB entries must
        be dropped too, with VCpu.write_protect(), so that their next stores miss)."""
        memset(self.dirty.pages, 0, self.npages)
        self.dirty.on = 1

    def dirty_log_stop(self):
        self.dirty.on = 0

    @property
    def dirty_logging(self):
        return bool(self.dirty.on)

    def dirty_log_harvest(self):
        """The indices of the pages written since the log started or was last harvested
        (a uint32 array), and a fresh log.  Call with no vCPU running, then
        VCpu.write_protect() every vCPU of this memory."""
        np = numpy()
        view = np.asarray(<uint8_t[:self.npages]>self.dirty.pages)
        marked = np.flatnonzero(view).astype(np.uint32)
        view[marked] = 0
        return marked

    def _rom_view(self, uint64_t addr, uint64_t size):
        cdef uint64_t m = self.rom.shape[0]
        if addr >= self.rom_base and size <= m and addr - self.rom_base <= m - size:
            return self.rom[addr - self.rom_base:addr - self.rom_base + size]
        raise IndexError(f"guest-physical range {addr:#x}+{size:#x} is not memory")


cdef class VCpu:
    """One guest hart: registers, pc, translation state and shadow TLB."""

    def __cinit__(self, GuestMemory memory):
        # shared with a forked process when its memory is (a hosted hypervisor's, which
        # handles the exits)
        self.s = <HartState*>shared_alloc(sizeof(HartState), memory.shared)
        if self.s == NULL:
            raise MemoryError()
        self.remote_req = self.remote_resp = -1
        self.memory = memory
        self.s.p2m = memory.p2m
        self.s.pool = memory.pool.p
        self.s.ram_base = memory.ram_base
        self.s.ram_size = memory.ram_size
        self.s.rom = memory.rom_ptr
        self.s.rom_base = memory.rom_base
        self.s.rom_size = memory.rom.shape[0]
        self.s.dirty = memory.dirty
        self.s.priv = 3
        self.s.ls_priv = 3
        self.s.code = memory.code
        self.s.code_gen = &memory.code_gen
        self.s.code_gen_seen = memory.code_gen
        self.s.fast = 1
        self.s.insns_per_tick = 10
        self.s.watch_page = TLB_INVALID
        self.s.super_lo = TLB_INVALID
        memset(self.s.tlb, 0xff, sizeof(self.s.tlb))

    def __dealloc__(self):
        shared_free(self.s, sizeof(HartState))

    def run(self):
        """Run until instret reaches stop_at or an exit; return the exit reason.

        The GIL is released while guest code runs; the time spent is added to
        `core_seconds`."""
        return self._run()

    cdef int _run(self) except -1:
        cdef int r
        cdef timespec t0, t1
        if self.remote_req >= 0:
            return self._run_remote()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        self.s.oom = 0
        with nogil:
            r = run_loop(self.s)
            # the privileged part (core/privpart.pxi) finishes what it can, and the guest
            # goes on (a budget due meanwhile ends the next run_loop at once)
            while r == EXIT_SYSTEM and self.s.priv_part and privileged_part(self.s):
                r = run_loop(self.s)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        self.s.core_ns += (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
        return r

    def attach_remote(self, int req, int resp, int index):
        """Hosted hypervisor: from now on run() asks the core process to run this vCPU
        (its state is in memory both share), over two pipes: one more hop per exit."""
        self.remote_req, self.remote_resp, self.remote_index = req, resp, index

    cdef int _run_remote(self) except -1:
        cdef uint8_t msg = self.remote_index
        pipe_put(self.remote_req, msg)
        msg = pipe_get(self.remote_resp)
        self.s.remote_hops += 1
        return msg

    def run_part(self, csr, uint32_t sie_hold):
        """run() with the privileged part on: the CSR file's mstatus (less FS) pushed into
        HartState for it, with the hypervisor's sie_hold, and taken back after the run."""
        self.s.vcsr[8] = csr.mstatus
        self.s.sie_hold = sie_hold
        r = self._run()
        csr.mstatus = self.s.vcsr[8]
        return r

    def vcsr_get(self, int i):
        """Plain CSR i (0-3: mscratch mepc mcause mtval, 4-7: their S-mode twins), 8:
        mstatus less FS, 9: stvec, 10: satp."""
        if not 0 <= i < 11:
            raise IndexError(i)
        return self.s.vcsr[i]

    def vcsr_set(self, int i, uint64_t v):
        if not 0 <= i < 11:
            raise IndexError(i)
        self.s.vcsr[i] = v

    @property
    def sie_hold(self):
        """SIE_HOLD_PENDING (1): an S-level interrupt is pending and enabled, so setting
        sstatus.SIE must deliver it; SIE_HOLD_TRIGGERS (2): debug triggers depend on
        SIE.  Either sends the privileged part's SIE changes to the hypervisor."""
        return self.s.sie_hold

    @sie_hold.setter
    def sie_hold(self, uint32_t v):
        self.s.sie_hold = v

    @property
    def privileged_part(self):
        """The hypervisor's privileged part in the core (core/privpart.pxi) finishes the
        SYSTEM exits it can before any reach the Python handlers (native, dual)."""
        return bool(self.s.priv_part)

    @privileged_part.setter
    def privileged_part(self, bint on):
        self.s.priv_part = on

    @property
    def part_handled(self):
        """Exits the privileged part finished in the core (no Python, no hop)."""
        return self.s.part_handled

    @property
    def remote_hops(self):
        """Hosted: how many times this vCPU's exits went to the hypervisor's process and
        back through the host OS (0 for a native hypervisor)."""
        return self.s.remote_hops

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

    def get_f(self, int i):
        """f[i] as its 64 raw bits (a single is NaN-boxed: upper half all ones)."""
        return self.s.f[i & 31]

    def set_f(self, int i, uint64_t v):
        """Set f[i] to 64 raw bits (mstatus.FS is left as it is)."""
        self.s.f[i & 31] = v

    @property
    def f(self):
        """f0..f31 as a list of raw 64-bit values."""
        return [self.s.f[i] for i in range(32)]

    @property
    def fflags(self):
        """fcsr's accrued exception flags (NV DZ OF UF NX = bits 4..0)."""
        return self.s.fflags

    @fflags.setter
    def fflags(self, uint64_t v):
        self.s.fflags = v & 0x1f

    @property
    def frm(self):
        """fcsr's dynamic rounding mode (3 bits; 5-7 are stored but invalid to use)."""
        return self.s.frm

    @frm.setter
    def frm(self, uint64_t v):
        self.s.frm = v & 7

    @property
    def fs(self):
        """mstatus.FS (0 Off, 1 Initial, 2 Clean, 3 Dirty): the core holds it, since it
        sets Dirty when an instruction changes FP state; the CSR file reads it here."""
        return self.s.fs

    @fs.setter
    def fs(self, uint64_t v):
        self.s.fs = v & 3

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
    def stop_soft(self):
        """Whether run() may retire a little past stop_at (a page of straight-line
        code at most) instead of stopping on it exactly."""
        return bool(self.s.stop_soft)

    @stop_soft.setter
    def stop_soft(self, bint v):
        self.s.stop_soft = v

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
    def exit_is_fp(self):
        """The MMIO load's destination is f[exit_rd] (an FLW/FLD), not x[exit_rd]."""
        return bool(self.s.exit.is_fp)

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
        """Retire an MMIO load: extend value into rd as the load instruction says
        (an FP load writes f[rd], NaN-boxing a single, and sets mstatus.FS Dirty)."""
        cdef uint32_t rd = self.s.exit.rd
        if self.s.exit.is_fp:
            value = load_ext(value, self.s.exit.size, 0)
            self.s.f[rd & 31] = value | NAN_BOX if self.s.exit.size == 4 else value
            self.s.fs = FS_DIRTY
        elif rd:
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
        """Drop shadow entries as SFENCE.VMA would: all, one page, one ASID, or both
        (tlb_sfence in core/tlb.pxi)."""
        tlb_sfence(self.s, vaddr is not None, 0 if vaddr is None else <uint64_t>vaddr,
                   asid is not None)

    @property
    def tvm(self):
        """mstatus.TVM, pushed by the hypervisor: SFENCE.VMA and satp trap in S-mode
        (read by a dual hypervisor's privileged part)."""
        return bool(self.s.tvm)

    @tvm.setter
    def tvm(self, bint on):
        self.s.tvm = on

    def flush_all(self):
        """Drop every shadow entry, the M set's too (its host addresses go stale when the
        VM's RAM frames go back to the pool, at a reset)."""
        memset(self.s.tlb, 0xff, sizeof(self.s.tlb))
        self.s.super_lo = TLB_INVALID
        self.s.super_hi = 0
        self.s.tlb_flushes += 1
        self.s.resv = 0

    def watch_store(self, pa=None):
        """Make guest stores that touch the 8-byte word at guest-physical pa (in RAM) exit
        as MMIO (HTIF's tohost); other accesses to its page stay in the core.  None: no
        watched word."""
        if pa is None:
            self.s.watch_page = TLB_INVALID
            self.s.watch_pa = 0
        else:
            self.s.watch_page = <uint64_t>pa >> 12
            self.s.watch_pa = pa
        flush_store_tlb(self.s)

    def write_protect(self):
        """Drop every store entry of the shadow TLB, so that the next store to each page
        takes the slow path (and is logged, while the memory's dirty log is on)."""
        flush_store_tlb(self.s)

    @property
    def reservation(self):
        """The guest-physical address an LR reserved, or None (for snapshots)."""
        cdef uint64_t i
        cdef uintptr_t r = self.s.resv
        if r == 0:
            return None
        for i in range(self.memory.npages):
            if self.memory.p2m[i] != NULL and <uintptr_t>self.memory.p2m[i] <= r \
                    < <uintptr_t>self.memory.p2m[i] + 4096:
                return self.memory.ram_base + (i << 12) + (r - <uintptr_t>self.memory.p2m[i])
        return None

    @reservation.setter
    def reservation(self, pa):
        cdef uint8_t* f
        if pa is None or not self.memory.contains_ram(pa, 8):
            self.s.resv = 0
            return
        f = self.memory.frame((<uint64_t>pa - self.memory.ram_base) >> 12, 1)
        self.s.resv = <uintptr_t>f + ((<uint64_t>pa) & PAGE_MASK)

    @property
    def translation(self):
        """(priv, ls_priv, satp_mode, satp_root, sum, mxr) as last pushed (set_mode)."""
        return (self.s.priv, self.s.ls_priv, self.s.satp_mode, self.s.satp_root,
                bool(self.s.sum), bool(self.s.mxr))

    def set_envcfg(self, uint64_t menvcfg, uint64_t senvcfg):
        """menvcfg and senvcfg, whose CBIE/CBCFE/CBZE fields say which cache-block
        operations S and U may run (pushed by the hypervisor when they change)."""
        self.s.menvcfg = menvcfg
        self.s.senvcfg = senvcfg

    def set_triggers(self, triggers):
        """The debug triggers, [(tdata2, flags, match, size), ...] (TRIGGER_* flags; see
        core/trigger.pxi).  While one has TRIGGER_ARMED, run() checks every instruction
        in the reference interpreter."""
        trig_load(self.s, triggers)

    def set_debug_points(self, points):
        """The debugger's breakpoints and watchpoints, [(lo, hi, kind), ...]: guest-virtual
        [lo, hi), kind TRIGGER_EXEC and/or TRIGGER_LOAD/TRIGGER_STORE.  The guest cannot
        see them; run() returns EXIT_DEBUG before an instruction that would execute at a
        breakpoint or access a watched byte (exit_cause: the kind, exit_tval: the
        address).  The shadow TLB is dropped, so that no cached entry skips a watchpoint."""
        dbg_load(self.s, points)
        memset(self.s.tlb, 0xff, sizeof(self.s.tlb))
        self.s.super_lo = TLB_INVALID
        self.s.super_hi = 0

    @property
    def fast(self):
        """True: the pre-decoded fast path; False: the reference interpreter only."""
        return bool(self.s.fast)

    @fast.setter
    def fast(self, bint on):
        self.s.fast = on

    def set_counters(self, uint32_t native_mask, uint64_t insns_per_tick, uint64_t time_offset,
                     uint64_t cycle_offset, uint64_t instret_offset, uint64_t time_insns=0):
        """Let the core read cycle/time/instret (bit 0/1/2 of native_mask) without an exit.

        The twin of the CSR handler for those reads: time = (instret + time_insns) /
        insns_per_tick + time_offset (time_insns: what the VM's other harts have retired),
        cycle = instret + cycle_offset, instret + instret_offset.  The hypervisor pushes
        a mask of 0 to have every read exit."""
        self.s.counters_native = native_mask
        self.s.insns_per_tick = insns_per_tick if insns_per_tick else 1
        self.s.time_offset = time_offset
        self.s.time_insns = time_insns
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



class RemoteGone(ConnectionError):
    """The other process of a hosted hypervisor closed its end of the pipes."""


cdef int pipe_put(int fd, uint8_t msg) except -1:
    """Write one byte; a signal's Python handler runs (and may raise) meanwhile."""
    cdef ssize_t n
    while True:
        with nogil:
            n = write(fd, &msg, 1)
        if n == 1:
            return 0
        if n < 0 and errno == EINTR:
            PyErr_CheckSignals()
            continue
        raise RemoteGone("the other process of the hosted hypervisor is gone")


cdef int pipe_get(int fd) except -1:
    """Read one byte (0..255); RemoteGone at the end of the pipe."""
    cdef ssize_t n
    cdef uint8_t msg
    while True:
        with nogil:
            n = read(fd, &msg, 1)
        if n == 1:
            return msg
        if n < 0 and errno == EINTR:
            PyErr_CheckSignals()
            continue
        raise RemoteGone("the other process of the hosted hypervisor is gone")


def serve_remote(list vcpus, list memories, int req, int resp):
    """The core process of a hosted hypervisor: run the vCPU each request names until it
    exits, and answer with the exit reason; returns when the hypervisor's process closes
    its end (it stopped, or died)."""
    cdef int n = len(vcpus), i
    cdef HartState** states = <HartState**>calloc(n, sizeof(HartState*))
    cdef uint8_t msg
    cdef int r
    cdef timespec t0, t1
    if states == NULL:
        raise MemoryError()
    for i in range(n):
        states[i] = (<VCpu>vcpus[i]).s
    try:
        while True:
            try:
                msg = pipe_get(req)
            except RemoteGone:
                return
            if msg >= n:
                return
            PyErr_CheckSignals()               # the caller's handlers (SIGTERM: forwarded)
            for mem in memories:
                (<GuestMemory>mem).sync_code()
            with nogil:
                clock_gettime(CLOCK_MONOTONIC, &t0)
                states[msg].oom = 0
                r = run_loop(states[msg])
                # dual-mode: the privileged part finishes what it can, here, and the
                # guest goes on (a budget due meanwhile ends the next run_loop at once)
                while r == EXIT_SYSTEM and states[msg].priv_part and privileged_part(states[msg]):
                    r = run_loop(states[msg])
                clock_gettime(CLOCK_MONOTONIC, &t1)
                states[msg].core_ns += ((t1.tv_sec - t0.tv_sec) * 1000000000 +
                                        (t1.tv_nsec - t0.tv_nsec))
            try:
                pipe_put(resp, <uint8_t>r)
            except RemoteGone:
                return
    finally:
        free(states)
