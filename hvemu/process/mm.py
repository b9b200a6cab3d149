"""The guest process's address space: its own Sv39 page tables over a private RAM.

The process's "physical" memory is one `GuestMemory`: its pages get host frames from a
frame pool on first touch, so it costs the host memory only where touched.  Its size,
`--memory`, is the hard bound on what a guest can make hvemu allocate: the runtime hands
its pages out one at a time (and caps the pool at the same size), and when they are
used up the process is killed as the kernel's OOM killer would.

The runtime keeps three things in step:

* VMAs -- sorted, non-overlapping `Vma`s, each a range of guest-virtual pages with
  protections, anonymous or backed by a file (mmap(2), the ELF's segments, the stack).
  mmap/munmap/mprotect/mremap/brk act on them, splitting and merging as Linux does.
* the page tables -- Sv39, written by the runtime into frames of the same RAM, with
  U, A and D preset so that the core's walker never writes them; the core walks them
  in U-mode, with satp pointing at the root, and caches translations in its shadow TLB
  (flushed whenever a mapping changes).
* `pages` -- a dict from virtual page to frame | protection for the pages present, so
  that system-call arguments are translated and checked without a walk.

Pages are made present on demand: a page fault exits to the runtime, which maps the
page if a VMA allows the access (zeroed, or read from the file) and resumes the guest,
or else delivers SIGSEGV.  System-call buffers are translated page by page with the
same rules (`read`, `write`, `pieces`, `read_cstr`); a page that cannot be reached is
EFAULT.  Guest addresses never become host addresses: a frame is an offset into RAM.
"""
from __future__ import annotations

import bisect
import errno
import os

from .. import _core
from .abi import (
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_SHARED,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)

PAGE = 4096
PAGE_SHIFT = 12
RAM_BASE = 0x8000_0000          # guest-physical base of the process's frames
TASK_SIZE = 1 << 38             # the user half of Sv39, as Linux has it (256 GiB)
SIGPAGE = TASK_SIZE - PAGE      # the signal trampoline (Linux's vDSO rt_sigreturn)
STACK_TOP = SIGPAGE
STACK_SIZE = 8 << 20            # RLIMIT_STACK
MMAP_BASE = STACK_TOP - STACK_SIZE - (128 << 20)   # mmap allocates top-down from here
DYN_BASE = (TASK_SIZE // 3 * 2) & ~0xFFFF          # ELF_ET_DYN_BASE: where PIEs load
MMAP_MIN = 0x10000
MAX_VMAS = 65530                # vm.max_map_count
FLUSH_ALL_PAGES = 16            # changing more pages than this flushes the whole TLB

# PTE bits (privileged spec, Sv39)
_V, _R, _W, _X, _U, _A, _D = 1, 2, 4, 8, 16, 64, 128
_PTE_PROT = []
for _p in range(8):
    if _p == 0:
        _PTE_PROT.append(0)
    else:
        _bits = _V | _U | _A | _D | _R
        if _p & PROT_WRITE:
            _bits |= _W
        if _p & PROT_EXEC:
            _bits |= _X
        _PTE_PROT.append(_bits)

BUS_ADRERR = 0x102             # fault(): SIGBUS with si_code BUS_ADRERR (2)
_ACCESS_PROT = (PROT_EXEC, PROT_READ, PROT_WRITE)    # core access type -> what it needs
_ZERO_PAGE = bytes(PAGE)


class GuestFault(Exception):
    """A system-call argument points at memory the guest cannot access (EFAULT)."""

    def __init__(self, addr: int):
        super().__init__(f"bad guest address {addr:#x}")
        self.addr = addr


class BeyondEOF(GuestFault):
    """A file-backed page that lies wholly past the end of its file (SIGBUS)."""


class OutOfMemory(Exception):
    """The process's RAM (--memory) is used up."""


class MappedFile:
    """A host file behind file-backed VMAs: its own descriptor (above the guest's fds),
    closed when no VMA refers to it any more."""

    def __init__(self, fd: int, name: str, high_fd: int):
        self.fd = os.dup(fd) if high_fd is None else _dup_high(fd, high_fd)
        self.name = name
        st = os.fstat(self.fd)
        self.key = (st.st_dev, st.st_ino)
        self.size = st.st_size

    def __del__(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


def _dup_high(fd: int, floor: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


class Vma:
    __slots__ = ("start", "end", "prot", "flags", "file", "offset", "file_end", "name")

    def __init__(self, start, end, prot, flags=0, file=None, offset=0, file_end=0, name=""):
        self.start = start
        self.end = end
        self.prot = prot
        self.flags = flags
        self.file = file            # MappedFile or None (anonymous)
        self.offset = offset        # file offset of `start`
        self.file_end = file_end    # file data stops here (the rest of the page is zero)
        self.name = name

    def copy(self, start: int, end: int) -> Vma:
        return Vma(start, end, self.prot, self.flags, self.file,
                   self.offset + (start - self.start), self.file_end, self.name)

    def can_merge(self, other: Vma) -> bool:
        return (self.end == other.start and self.file is None and other.file is None
                and self.prot == other.prot and self.flags == other.flags
                and self.name == other.name)

    def __repr__(self):
        return f"Vma({self.start:#x}-{self.end:#x} prot={self.prot} {self.name})"


def page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class AddressSpace:
    """One process's virtual memory: VMAs, Sv39 page tables and the frames behind them."""

    def __init__(self, memory_size: int, high_fd: int | None = None, memory=None):
        """A new, empty address space over `memory_size` bytes of frames: a fresh
        GuestMemory, or `memory` (already wiped, see `wipe`) reused by execve."""
        if memory is None:
            try:
                memory = _core.GuestMemory(RAM_BASE, memory_size,
                                           pool=_core.FramePool(memory_size))
            except MemoryError:
                raise OutOfMemory(f"the host refused {memory_size >> 20} MiB of guest "
                                  "memory (give less with --memory)") from None
        self.memory = memory
        self.nframes = memory_size >> PAGE_SHIFT
        self.next_frame = 0
        self.free_frames: list[int] = []
        self.pages: dict[int, int] = {}         # vpn -> frame address | prot
        self.vmas: list[Vma] = []
        self.starts: list[int] = []
        self.l1: dict[int, int] = {}            # vpn >> 18 -> word index of the L1 table
        self.l0: dict[int, int] = {}            # vpn >> 9 -> word index of the L0 table
        self.root = self._alloc_frame()
        self.brk_start = self.brk = 0
        self.high_fd = high_fd
        self.files: dict[tuple, MappedFile] = {}
        self.vcpu = None                        # set by the runtime: TLB flushes go to it
        self.faults = 0                         # demand-paging faults served
        self._last_retry = None

    def wipe(self) -> None:
        """Give every frame back for the next program (execve): the decoded code is
        dropped and the host frames go back to the pool, so a wiped RAM costs the host
        nothing again.  The address space is unusable afterwards (and the vCPU that ran
        in it must not run again: its shadow TLB points at the old frames)."""
        self.memory.clear()
        self.files.clear()
        self.pages.clear()
        self.vmas.clear()
        self.starts.clear()

    # ---- frames and page tables ----

    @property
    def frames_used(self) -> int:
        return self.next_frame - len(self.free_frames)

    def _alloc_frame(self) -> int:
        if self.free_frames:
            pa = self.free_frames.pop()
            self.memory.write(pa, _ZERO_PAGE)        # zeroed; drops decoded code
            return pa
        if self.next_frame >= self.nframes:
            raise OutOfMemory()
        pa = RAM_BASE + (self.next_frame << PAGE_SHIFT)
        self.next_frame += 1
        return pa

    def _pte(self, table: int, index: int, pte: int) -> None:
        self.memory.write(table + 8 * index, pte.to_bytes(8, "little"))

    def _l0(self, vpn: int) -> int:
        """Guest-physical address of the L0 page table covering vpn, made when missing."""
        t = self.l0.get(vpn >> 9)
        if t is None:
            l1 = self.l1.get(vpn >> 18)
            if l1 is None:
                l1 = self.l1[vpn >> 18] = self._alloc_frame()
                self._pte(self.root, (vpn >> 18) & 511, ((l1 >> 12) << 10) | _V)
            t = self.l0[vpn >> 9] = self._alloc_frame()
            self._pte(l1, (vpn >> 9) & 511, ((t >> 12) << 10) | _V)
        return t

    def _set_pte(self, vpn: int, pa: int, prot: int) -> None:
        self._pte(self._l0(vpn), vpn & 511, ((pa >> 12) << 10) | _PTE_PROT[prot & 7])

    def _map(self, vpn: int, pa: int, prot: int) -> None:
        self._set_pte(vpn, pa, prot)
        self.pages[vpn] = pa | (prot & 7)

    def _unmap(self, vpn: int) -> None:
        e = self.pages.pop(vpn)
        self._pte(self.l0[vpn >> 9], vpn & 511, 0)
        self.free_frames.append(e & ~0xFFF)

    def _flush(self, start: int, end: int) -> None:
        vcpu = self.vcpu
        if vcpu is None:
            return
        n = (end - start) >> PAGE_SHIFT
        if n > FLUSH_ALL_PAGES:
            vcpu.flush_tlb()
        else:
            for va in range(start, end, PAGE):
                vcpu.flush_tlb(va)

    def _present_in(self, start: int, end: int) -> list[int]:
        """The present virtual pages in [start, end), cheaply for huge sparse ranges."""
        lo, hi = start >> PAGE_SHIFT, end >> PAGE_SHIFT
        if hi - lo <= len(self.pages):
            pages = self.pages
            return [v for v in range(lo, hi) if v in pages]
        return sorted(v for v in self.pages if lo <= v < hi)

    # ---- VMAs ----

    def find(self, addr: int) -> Vma | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            v = self.vmas[i]
            if addr < v.end:
                return v
        return None

    def _split(self, addr: int) -> None:
        """Make addr a VMA boundary (if it falls inside one)."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return
        v = self.vmas[i]
        if v.start < addr < v.end:
            tail = v.copy(addr, v.end)
            v.end = addr
            self.vmas.insert(i + 1, tail)
            self.starts.insert(i + 1, addr)

    def _range(self, start: int, end: int) -> tuple[int, int]:
        """Indices [i, j) of the VMAs inside [start, end), after splitting at both ends."""
        self._split(start)
        self._split(end)
        i = bisect.bisect_left(self.starts, start)
        j = bisect.bisect_left(self.starts, end)
        return i, j

    def _insert(self, vma: Vma) -> None:
        if len(self.vmas) >= MAX_VMAS:
            raise OSError(errno.ENOMEM, "too many mappings")
        i = bisect.bisect_left(self.starts, vma.start)
        if i > 0 and self.vmas[i - 1].can_merge(vma):
            self.vmas[i - 1].end = vma.end
            i -= 1
        else:
            self.vmas.insert(i, vma)
            self.starts.insert(i, vma.start)
        if i + 1 < len(self.vmas) and self.vmas[i].can_merge(self.vmas[i + 1]):
            self.vmas[i].end = self.vmas[i + 1].end
            del self.vmas[i + 1]
            del self.starts[i + 1]

    def _is_free(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end) - 1
        return i < 0 or self.vmas[i].end <= start

    def _remove(self, start: int, end: int) -> None:
        """Unmap [start, end): drop the VMAs there and free their frames."""
        i, j = self._range(start, end)
        if i == j:
            return
        del self.vmas[i:j]
        del self.starts[i:j]
        present = self._present_in(start, end)
        for vpn in present:
            self._unmap(vpn)
        if present:
            self._flush(start, end)

    def find_gap(self, length: int, top: int = MMAP_BASE) -> int:
        """The highest free range of `length` bytes below `top` (mmap's top-down search)."""
        for v in reversed(self.vmas):
            if v.start >= top:
                continue
            if v.end <= top - length:
                break
            top = v.start
        if top - length < MMAP_MIN:
            raise OSError(errno.ENOMEM, "no room in the address space")
        return top - length

    def add_vma(self, vma: Vma) -> None:
        """Map a VMA, replacing whatever was there (MAP_FIXED semantics)."""
        self._remove(vma.start, vma.end)
        self._insert(vma)

    # ---- demand paging ----

    def populate(self, vma: Vma, vpn: int) -> int:
        """Make page vpn of vma present: a zeroed frame, filled from the file if backed
        (BeyondEOF for a page wholly past the file's end, as Linux's SIGBUS)."""
        va = vpn << PAGE_SHIFT
        data = b""
        if vma.file is not None:
            offset = vma.offset + (va - vma.start)
            if offset >= page_up(vma.file.size):
                raise BeyondEOF(va)
            if va < vma.file_end:
                data = os.pread(vma.file.fd, min(PAGE, vma.file_end - va), offset)
        pa = self._alloc_frame()
        if data:
            self.memory.write(pa, data)
        self._map(vpn, pa, vma.prot)
        return pa | (vma.prot & 7)

    def fault(self, va: int, access: int) -> int:
        """A guest page fault at va (access: 0 fetch, 1 load, 2 store).

        Returns 0 when the page is now mapped (resume the guest), else the si_code
        of the SIGSEGV to deliver (SEGV_MAPERR 1, SEGV_ACCERR 2), or BUS_ADRERR for a
        page of a file mapping past the file's end (SIGBUS)."""
        if va >= TASK_SIZE:
            return 1
        need = _ACCESS_PROT[access]
        vpn = va >> PAGE_SHIFT
        e = self.pages.get(vpn)
        if e is not None:
            if _allows(e & 7, need) and self._last_retry != vpn and self.vcpu is not None:
                # present and allowed: a stale shadow entry; dropped, and retried once
                self._last_retry = vpn
                self.vcpu.flush_tlb(va)
                return 0
            return 2
        vma = self.find(va)
        if vma is None:
            return 1
        if not _allows(vma.prot, need):
            return 2
        self.faults += 1
        self._last_retry = None
        try:
            self.populate(vma, vpn)
        except BeyondEOF:
            return BUS_ADRERR
        return 0

    # ---- guest memory for system calls ----

    def _page(self, vpn: int, write: bool) -> int:
        """Frame address of virtual page vpn for a read or write by the kernel, made
        present if a VMA allows; GuestFault if not."""
        e = self.pages.get(vpn)
        if e is None:
            vma = self.find(vpn << PAGE_SHIFT)
            if vma is None or not vma.prot & (PROT_WRITE if write else 7):
                raise GuestFault(vpn << PAGE_SHIFT)
            e = self.populate(vma, vpn)
        if not e & (PROT_WRITE if write else 7):
            raise GuestFault(vpn << PAGE_SHIFT)
        return e & ~0xFFF

    def chunks(self, va: int, n: int, write: bool = False) -> list[tuple[int, int]]:
        """[va, va+n) as (guest-physical address, length) runs; GuestFault if any page
        cannot be reached."""
        if n <= 0:
            return []
        if va < 0 or va + n > TASK_SIZE:
            raise GuestFault(va)
        out = []
        end = va + n
        while va < end:
            pa = self._page(va >> PAGE_SHIFT, write) + (va & 0xFFF)
            step = min(PAGE - (va & 0xFFF), end - va)
            if out and out[-1][0] + out[-1][1] == pa:
                out[-1] = (out[-1][0], out[-1][1] + step)
            else:
                out.append((pa, step))
            va += step
        return out

    def read(self, va: int, n: int) -> bytes:
        if n <= PAGE - (va & 0xFFF) and 0 <= va < TASK_SIZE:      # within one page
            return self.memory.read(self._page(va >> PAGE_SHIFT, False) + (va & 0xFFF), n)
        return b"".join(self.pieces(va, n))

    def pieces(self, va: int, n: int) -> list[bytes]:
        """[va, va+n) as the bytes of its physically contiguous runs (for writev)."""
        read = self.memory.read
        return [read(pa, k) for pa, k in self.chunks(va, n)]

    def write(self, va: int, data) -> None:
        n = len(data)
        if n <= PAGE - (va & 0xFFF) and 0 <= va < TASK_SIZE:
            if n:
                self.memory.write(self._page(va >> PAGE_SHIFT, True) + (va & 0xFFF), data)
            return
        mv = memoryview(data)
        i = 0
        for pa, k in self.chunks(va, n, write=True):
            self.memory.write(pa, mv[i:i + k])
            i += k

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read(va, 8), "little")

    def write_u64(self, va: int, value: int) -> None:
        self.write(va, (value & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little"))

    def write_u32(self, va: int, value: int) -> None:
        self.write(va, (value & 0xFFFF_FFFF).to_bytes(4, "little"))

    def read_cstr(self, va: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string; ENAMETOOLONG past limit bytes, GuestFault if unmapped."""
        out = b""
        while True:
            if va < 0 or va >= TASK_SIZE:
                raise GuestFault(va)
            k = PAGE - (va & 0xFFF)
            piece = self.memory.read(self._page(va >> PAGE_SHIFT, False) + (va & 0xFFF), k)
            nul = piece.find(b"\0")
            if nul >= 0:
                out += piece[:nul]
                if len(out) >= limit:
                    raise OSError(errno.ENAMETOOLONG, "string too long")
                return out
            out += piece
            if len(out) >= limit:
                raise OSError(errno.ENAMETOOLONG, "string too long")
            va += k

    def read_ptrs(self, va: int, limit: int = 1 << 17) -> list[int]:
        """A NULL-terminated array of pointers (argv, envp); E2BIG past limit entries."""
        out = []
        while True:
            chunk = self.read(va, 8 * 64 - (va & 0x1FF) if va & 7 == 0 else 8)
            for i in range(0, len(chunk), 8):
                p = int.from_bytes(chunk[i:i + 8], "little")
                if p == 0:
                    return out
                out.append(p)
                if len(out) > limit:
                    raise OSError(errno.E2BIG, "too many arguments")
            va += len(chunk)

    # ---- the system calls of memory management ----

    def mmap(self, addr: int, length: int, prot: int, flags: int, file: MappedFile | None,
             offset: int, name: str = "") -> int:
        if length <= 0 or offset & 0xFFF:
            raise OSError(errno.EINVAL, "bad length or offset")
        length = page_up(length)
        if length > TASK_SIZE:
            raise OSError(errno.ENOMEM, "too large")
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if addr & 0xFFF:
                raise OSError(errno.EINVAL, "unaligned MAP_FIXED")
            if addr < MMAP_MIN or addr + length > TASK_SIZE:
                raise OSError(errno.ENOMEM if addr >= MMAP_MIN else errno.EPERM,
                              "outside the address space")
            if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and \
                    not self._is_free(addr, addr + length):
                raise OSError(errno.EEXIST, "range in use")
            start = addr
        else:
            addr &= ~0xFFF
            if addr >= MMAP_MIN and addr + length <= TASK_SIZE and \
                    self._is_free(addr, addr + length):
                start = addr
            else:
                start = self.find_gap(length)
        end = start + length
        if file is not None:
            file_end = start + max(0, min(length, file.size - offset))
        else:
            file_end = 0
        self.add_vma(Vma(start, end, prot & 7, flags, file, offset, file_end, name))
        return start

    def munmap(self, addr: int, length: int) -> None:
        if addr & 0xFFF or length <= 0 or addr + length > TASK_SIZE:
            raise OSError(errno.EINVAL, "bad range")
        self._remove(addr, addr + page_up(length))

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & 0xFFF:
            raise OSError(errno.EINVAL, "unaligned")
        end = addr + page_up(length)
        if end > TASK_SIZE or end < addr:
            raise OSError(errno.ENOMEM, "outside the address space")
        # every page of the range must be mapped
        va = addr
        i = bisect.bisect_right(self.starts, addr) - 1
        while va < end:
            if i < 0 or i >= len(self.vmas) or not self.vmas[i].start <= va < self.vmas[i].end:
                raise OSError(errno.ENOMEM, "range not mapped")
            va = self.vmas[i].end
            i += 1
        i, j = self._range(addr, end)
        for v in self.vmas[i:j]:
            v.prot = prot & 7
        for vpn in self._present_in(addr, end):
            pa = self.pages[vpn] & ~0xFFF
            self._map(vpn, pa, prot)
        self._flush(addr, end)

    def madvise_dontneed(self, addr: int, length: int) -> None:
        """MADV_DONTNEED: private pages read back as zeros (or the file) afterwards."""
        end = addr + page_up(length)
        present = self._present_in(addr, end)
        for vpn in present:
            self._unmap(vpn)
        if present:
            self._flush(addr, end)

    def mremap(self, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
        if old & 0xFFF or new_len <= 0:
            raise OSError(errno.EINVAL, "bad arguments")
        old_len, new_len = page_up(old_len), page_up(new_len)
        vma = self.find(old)
        if vma is None or old + old_len > vma.end:
            raise OSError(errno.EFAULT, "not one mapping")
        if flags & MREMAP_FIXED:
            if not flags & MREMAP_MAYMOVE or new_addr & 0xFFF:
                raise OSError(errno.EINVAL, "MREMAP_FIXED without MREMAP_MAYMOVE")
            self._remove(new_addr, new_addr + new_len)
            return self._move(vma, old, old_len, new_addr, new_len)
        if new_len <= old_len:
            if new_len < old_len:
                self._remove(old + new_len, old + old_len)
            return old
        if self._is_free(old + old_len, old + new_len) and old + new_len <= TASK_SIZE:
            self._insert_grown(vma, old + old_len, old + new_len)
            return old
        if not flags & MREMAP_MAYMOVE:
            raise OSError(errno.ENOMEM, "cannot grow in place")
        return self._move(vma, old, old_len, self.find_gap(new_len), new_len)

    def _insert_grown(self, vma: Vma, start: int, end: int) -> None:
        piece = vma.copy(start, end)
        if vma.file is not None:
            piece.file_end = vma.file_end
        self._insert(piece)

    def _move(self, vma: Vma, old: int, old_len: int, new: int, new_len: int) -> int:
        template = vma.copy(old, old + min(old_len, new_len))
        delta = new - old
        moved = [(vpn, self.pages[vpn]) for vpn in self._present_in(old, old + old_len)
                 if (vpn << PAGE_SHIFT) < old + new_len]
        for vpn, _ in moved:                  # take the frames away from the old range
            del self.pages[vpn]
            self._pte(self.l0[vpn >> 9], vpn & 511, 0)
        self._remove(old, old + old_len)
        piece = Vma(new, new + new_len, template.prot, template.flags, template.file,
                    template.offset, template.file_end + delta if template.file else 0,
                    template.name)
        self._insert(piece)
        for vpn, e in moved:
            self._map(vpn + (delta >> PAGE_SHIFT), e & ~0xFFF, e & 7)
        self._flush(old, old + old_len)
        return new

    def set_brk(self, addr: int) -> int:
        """brk(2): move the program break; the (unchanged) break when it cannot."""
        if addr < self.brk_start:
            return self.brk
        old_top, new_top = page_up(self.brk), page_up(addr)
        if new_top > old_top:
            if new_top > MMAP_BASE or not self._is_free(old_top, new_top):
                return self.brk
            self._insert(Vma(old_top, new_top, PROT_READ | PROT_WRITE, 0, name="[heap]"))
        elif new_top < old_top:
            self._remove(new_top, old_top)
        self.brk = addr
        return addr

    def mapped_file(self, fd: int, name: str) -> MappedFile:
        """The MappedFile for host fd's file (one descriptor per file, shared)."""
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        mf = self.files.get(key)
        if mf is not None and mf.size == st.st_size:
            return mf
        mf = MappedFile(fd, name, self.high_fd)
        self.files[key] = mf
        return mf

    def maps_text(self) -> str:
        """/proc/self/maps, as the guest sees it."""
        lines = []
        for v in self.vmas:
            perms = ("r" if v.prot & 7 else "-") + ("w" if v.prot & PROT_WRITE else "-") + \
                ("x" if v.prot & PROT_EXEC else "-") + ("s" if v.flags & MAP_SHARED else "p")
            lines.append(f"{v.start:08x}-{v.end:08x} {perms} {v.offset:08x} 00:00 0"
                         + (f"{'':<10}{v.name or (v.file.name if v.file else '')}"
                            if (v.name or v.file) else ""))
        return "\n".join(lines) + "\n"


def _allows(prot: int, need: int) -> bool:
    if need == PROT_READ:
        return bool(prot & 7)
    return bool(prot & need)
