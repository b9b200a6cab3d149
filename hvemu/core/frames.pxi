# Host frames for guest RAM: the hypervisor's frame pool (DESIGN.md, "The hypervisor and
# its VMs").  A VM's RAM is reached only through its P2M (GuestMemory.p2m: guest page ->
# host frame); a page gets its frame the first time anything touches it, so guest memory
# nobody touched costs the host nothing, and a pool with a limit lets the guests' RAM
# add up to more than the host gives them (overcommit).  Frames come from chunks mmap'd
# with MAP_NORESERVE and are zero when handed out: new ones are, and a returned frame is
# madvise'd away (MADV_DONTNEED), so the host takes its memory back and it reads zero.

cdef extern from "<sys/mman.h>" nogil:
    int madvise(void* addr, size_t length, int advice)
    enum: MADV_DONTNEED
    enum: MADV_REMOVE


cdef void* shared_alloc(size_t size, bint shared=1) noexcept nogil:
    """Zeroed memory, backed only where touched; NULL if the host refuses. With shared,
    a forked process shares it (MAP_SHARED: a hosted hypervisor's); without, a fork gets
    its own copy (MAP_PRIVATE: the process VM's fork(2) must not share its P2M)."""
    cdef void* p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        (MAP_SHARED if shared else MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE,
                        -1, 0)
    return NULL if p == MAP_FAILED else p


cdef void shared_free(void* p, size_t size) noexcept nogil:
    if p != NULL:
        munmap(p, size)

cdef enum:
    FRAME = 4096
    CHUNK_FRAMES = 512            # 2 MiB mapped at a time


cdef uint8_t* frame_alloc(FramePoolState* p) noexcept nogil:
    """A zeroed host frame, or NULL if the pool's limit is reached (or the host says no)."""
    cdef uint8_t* f
    cdef void* chunk
    cdef uint8_t** grown
    if p.limit and p.in_use >= p.limit:
        return NULL
    if p.nfree:
        p.nfree -= 1
        f = p.free[p.nfree]
    elif p.region != NULL:                 # a shared pool: the next frame of its region
        if p.bump_left == 0:
            return NULL
        f = p.bump
        p.bump += FRAME
        p.bump_left -= 1
    else:
        if p.bump_left == 0:
            if p.nchunks == p.chunks_cap:
                grown = <uint8_t**>realloc(p.chunks, (2 * p.chunks_cap + 16) * sizeof(uint8_t*))
                if grown == NULL:
                    return NULL
                p.chunks = grown
                p.chunks_cap = 2 * p.chunks_cap + 16
            chunk = mmap(NULL, CHUNK_FRAMES * FRAME, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if chunk == MAP_FAILED:
                return NULL
            p.chunks[p.nchunks] = <uint8_t*>chunk
            p.nchunks += 1
            p.bump = <uint8_t*>chunk
            p.bump_left = CHUNK_FRAMES
        f = p.bump
        p.bump += FRAME
        p.bump_left -= 1
    p.in_use += 1
    if p.in_use > p.peak:
        p.peak = p.in_use
    return f


cdef int frame_free(FramePoolState* p, uint8_t* f) noexcept nogil:
    """Give a frame back: its memory goes back to the host, and it reads zero again."""
    cdef uint8_t** grown
    if p.region != NULL:                   # shared memory: punch the page out (reads zero)
        madvise(f, FRAME, MADV_REMOVE)
        p.free[p.nfree] = f                # the free stack was sized for every frame
        p.nfree += 1
        p.in_use -= 1
        return 0
    madvise(f, FRAME, MADV_DONTNEED)
    if p.nfree == p.free_cap:
        grown = <uint8_t**>realloc(p.free, (2 * p.free_cap + 64) * sizeof(uint8_t*))
        if grown == NULL:
            p.in_use -= 1             # lost to the pool, still mapped: harmless
            return -1
        p.free = grown
        p.free_cap = 2 * p.free_cap + 64
    p.free[p.nfree] = f
    p.nfree += 1
    p.in_use -= 1
    return 0


cdef inline uint8_t* ram_frame(HartState* s, uint64_t page) noexcept nogil:
    """The host frame of RAM page `page` (an index from ram_base), given one on first
    touch; NULL with s.oom set if the pool has none."""
    cdef uint8_t* f = s.p2m[page]
    if f == NULL:
        f = frame_alloc(s.pool)
        if f == NULL:
            s.oom = 1
            return NULL
        s.p2m[page] = f
    return f


cdef inline bint page_is_zero(const uint8_t* p) noexcept nogil:
    """Whether the 4 KiB at p are all zero."""
    cdef const uint64_t* w = <const uint64_t*>p
    cdef int i
    for i in range(512):
        if w[i]:
            return 0
    return 1
